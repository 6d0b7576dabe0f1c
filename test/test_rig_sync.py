"""Camera rigs in the node's ROS-free core: the approximate-time pairing of the cameras' frames
(``ros_core/rig_sync.py``), the cameras' calibration and orientation (``ros_core/rig_cameras.py``:
CameraInfo, ``/tf_static``, ``rig.yaws_deg``), the ``rig.*`` options and a set of frames through
``FrameProcessor`` with a stand-in localizer. No model, no ROS: hand-made stamps and messages."""

from __future__ import annotations

import math
from types import SimpleNamespace as NS

import numpy as np
import pytest

from unifygeo_ros.geo import MapFrame
from unifygeo_ros.ros_core.config import ConfigError, NodeConfig
from unifygeo_ros.ros_core.rig_cameras import RigCameras, StaticTransforms, camera_angles, rig_status_values
from unifygeo_ros.ros_core.rig_sync import RigSet, RigSynchronizer
from unifygeo_ros.types import Rig

MS = 1_000_000
T0 = 1_700_000_000 * 10**9
OPTICAL_XYZW = (-0.5, 0.5, -0.5, 0.5)      # body frame (x forward) -> optical frame (z forward, x right)


def feed(sync, events):
    """``events``: (camera, stamp in ms); returns the sets as tuples of member stamps (ms)."""
    out = []
    for cam, ms in events:
        for s in sync.add(cam, f"c{cam}@{ms}", T0 + int(ms * MS)):
            out.append(tuple((st - T0) / MS for st in s.stamps_ns))
    return out


# ---- the synchronizer ------------------------------------------------------------------------------

def test_exact_stamps_make_one_set_each_once_every_camera_has_its_frame():
    sync = RigSynchronizer(3, 50 * MS)
    assert feed(sync, [(0, 0), (1, 0)]) == []                   # camera 2 missing: no set yet
    got = []
    for s in sync.add(2, "c2", T0):
        got.append(s)
    assert len(got) == 1 and got[0].messages == ("c0@0", "c1@0", "c2") and got[0].stamp_ns == T0
    assert got[0].spread_ns == 0 and got[0].header.stamp.sec == T0 // 10**9 and got[0].header.frame_id == ""
    assert feed(sync, [(0, 100), (2, 100), (1, 100), (1, 200), (0, 200), (2, 200)]) == [(100, 100, 100),
                                                                                      (200, 200, 200)]
    st = sync.stats.as_dict()
    assert st["sets"] == 3 and st["received"] == [3, 3, 3] and st["dropped"] == [0, 0, 0] and sync.pending() == [0] * 3


def test_jitter_inside_the_slop_pairs_and_the_set_is_stamped_with_the_mean():
    sync = RigSynchronizer(4, 50 * MS)
    sets = []
    for k in range(5):                                  # 10 Hz, each camera 0-40 ms late, arriving in any order
        base = 100 * k
        for cam, late in sorted(enumerate((3, 40, 17, 0)), key=lambda c: (c[1] * 7 + k) % 5):
            sets += sync.add(cam, (cam, k), T0 + (base + late) * MS)
    assert len(sets) == 5
    for k, s in enumerate(sets):
        assert s.messages == tuple((cam, k) for cam in range(4))
        assert s.stamp_ns == T0 + (100 * k + 15) * MS            # mean of 3, 40, 17, 0 ms
        assert s.spread_ns == 40 * MS
    assert sync.stats.max_spread_ms == 40.0 and sync.stats.dropped == [0] * 4


def test_a_camera_late_beyond_the_slop_makes_no_set_and_its_partners_are_dropped():
    sync = RigSynchronizer(2, 50 * MS)
    # camera 1 is 80 ms behind camera 0 at 4 Hz (250 ms): never within 50 ms of each other
    assert feed(sync, [(0, 0), (1, 80), (0, 250), (1, 330), (0, 500), (1, 580)]) == []
    st = sync.stats.as_dict()
    assert st["sets"] == 0 and sum(st["dropped"]) >= 4 and max(sync.pending()) <= 1
    # ... and a set again once it is back within the slop
    assert feed(sync, [(0, 750), (1, 760)]) == [(750, 760)]


def test_dropped_frames_of_one_camera_skip_their_sets_only():
    sync = RigSynchronizer(2, 20 * MS)
    events = []
    for k in range(6):
        events.append((0, 100 * k))
        if k not in (2, 3):                             # camera 1 loses two frames
            events.append((1, 100 * k + 5))
    assert feed(sync, events) == [(0, 5), (100, 105), (400, 405), (500, 505)]
    assert sync.stats.dropped == [2, 0] and sync.stats.sets == 4


def test_the_newest_frame_within_the_slop_is_taken_and_older_ones_dropped():
    sync = RigSynchronizer(2, 50 * MS)
    # camera 0 runs at 33 Hz, camera 1 at 10 Hz: each set takes camera 0's newest frame not newer than camera 1's
    events = [(0, t) for t in (0, 30, 60, 90)] + [(1, 95)]
    assert feed(sync, events) == [(90, 95)]
    assert sync.stats.dropped == [3, 0]


def test_out_of_order_stamps_are_sorted_and_late_ones_dropped():
    sync = RigSynchronizer(2, 10 * MS)
    assert feed(sync, [(0, 200), (0, 100), (1, 100)]) == [(100, 100)]      # 200 then 100: sorted
    assert feed(sync, [(1, 200)]) == [(200, 200)]
    assert feed(sync, [(0, 150), (1, 150)]) == []                          # older than the last set: late
    assert sync.stats.dropped == [1, 1] and sync.pending() == [0, 0]


def test_queues_are_bounded_and_the_oldest_frame_goes_first():
    sync = RigSynchronizer(2, 10 * MS, queue_size=3)
    assert feed(sync, [(0, t) for t in (0, 100, 200, 300, 400)]) == []     # camera 1 silent
    assert sync.pending() == [3, 0] and sync.stats.dropped == [2, 0]
    assert feed(sync, [(1, 205)]) == [(200, 205)]
    assert sync.pending() == [2, 0] and sync.stats.dropped == [2, 0]
    sync.reset()
    assert sync.pending() == [0, 0] and sync.stats.as_dict()["received"] == [0, 0]


def test_synchronizer_checks_its_arguments():
    with pytest.raises(ValueError, match="at least one camera"):
        RigSynchronizer(0, MS)
    with pytest.raises(ValueError, match="slop > 0"):
        RigSynchronizer(2, 0)
    with pytest.raises(IndexError):
        RigSynchronizer(2, MS).add(2, "x", 0)
    one = RigSynchronizer(1, MS)
    assert [s.stamp_ns for s in one.add(0, "a", 5)] == [5]


# ---- the options ------------------------------------------------------------------------------------

RIG = {"camera.model": "pinhole", "rig.image_topics": ["/c/front/image_raw", "/c/left/image_raw"]}


def test_rig_options_take_lists_or_comma_separated_strings():
    cfg = NodeConfig.from_params({**RIG, "rig.image_topics": "/c/front/image_raw, /c/left/image_raw",
                                  "rig.camera_info_topics": ["/c/front/camera_info", "/c/left/camera_info"],
                                  "rig.yaws_deg": "0, 90", "rig.slop_s": 0.02}, require_database=False)
    assert cfg.rig and cfg.rig_image_topics == ("/c/front/image_raw", "/c/left/image_raw")
    assert cfg.rig_yaws_deg == (0.0, 90.0) and cfg.rig_frame_source == "tf" and cfg.rig_slop_s == 0.02
    ints = NodeConfig.from_params({**RIG, "rig.yaws_deg": [0, -90]}, require_database=False)
    assert ints.rig_yaws_deg == (0.0, -90.0)
    assert NodeConfig.from_params({"rig.image_topics": None}, require_database=False).rig is False   # YAML []
    assert cfg.with_params({"top_k": 3}).rig_image_topics == cfg.rig_image_topics
    assert cfg.as_params()["rig.yaws_deg"] == [0.0, 90.0]


@pytest.mark.parametrize("params, expected", [
    ({"rig.camera_info_topics": ["/a"]}, "rig.camera_info_topics: expected one CameraInfo topic per "
                                         "rig.image_topics entry (2), or none, got 1"),
    ({"rig.yaws_deg": [0.0]}, "rig.yaws_deg: expected one yaw per rig.image_topics entry (2), or none"),
    ({"rig.frame_source": "parameters"}, "rig.yaws_deg: expected one yaw per rig.image_topics entry (2) with "
                                         "rig.frame_source parameters, got 0"),
    ({"rig.yaws_deg": [0.0, 200.0]}, "rig.yaws_deg: expected numbers in [-180, 180], got [0.0, 200.0]"),
    ({"rig.yaws_deg": "0,left"}, "rig.yaws_deg: expected a list of numbers"),
    ({"rig.slop_s": 0.0}, "rig.slop_s: expected a value in [0.001, 10]"),
    ({"rig.frame_source": "gps"}, "rig.frame_source: expected one of tf, parameters"),
    ({"rig.image_topics": ["/a", "/a"]}, "expected distinct topics"),
    ({"rig.image_topics": ["/a", ""]}, "rig.image_topics: expected a list of non-empty strings"),
    ({"camera.model": "panorama"}, "rig.image_topics: expected camera.model pinhole"),
    ({"camera_info_topic": "/c/camera_info"}, "camera_info_topic '/c/camera_info': expected '' with a camera rig"),
    ({"camera_extrinsic.yaw_deg": 5.0}, "camera_extrinsic.yaw_deg: expected 0 with a camera rig"),
    ({"rig.image_topics": [], "rig.yaws_deg": [0.0]}, "rig.yaws_deg [0.0]: expected rig.image_topics"),
])
def test_rig_options_are_checked_with_what_was_expected(params, expected):
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_params({**RIG, **params}, require_database=False)
    assert expected in str(err.value) and "\n" not in str(err.value)


CRIG = {"camera.model": "pinhole",
        "rig.compressed_image_topics": ["/c/front/image_raw/compressed", "/c/left/image_raw/compressed"]}


def test_a_rig_of_compressed_image_topics():
    cfg = NodeConfig.from_params({**CRIG, "rig.camera_info_topics": "/c/front/camera_info, /c/left/camera_info",
                                  "rig.yaws_deg": [0, 90]}, require_database=False)
    assert cfg.rig and cfg.rig_compressed and cfg.rig_image_topics == ()
    assert cfg.rig_topics == ("/c/front/image_raw/compressed", "/c/left/image_raw/compressed")
    assert cfg.rig_topics_option == "rig.compressed_image_topics"
    assert RigSynchronizer.from_config(cfg).n == 2
    assert cfg.with_params({"top_k": 3}).rig_topics == cfg.rig_topics
    assert cfg.as_params()["rig.compressed_image_topics"] == list(cfg.rig_topics)
    raw = NodeConfig.from_params(RIG, require_database=False)
    assert raw.rig and not raw.rig_compressed and raw.rig_topics == raw.rig_image_topics
    assert raw.rig_topics_option == "rig.image_topics"
    one = NodeConfig.from_params({"rig.compressed_image_topics": None}, require_database=False)   # YAML []
    assert not one.rig and one.rig_topics == ()


@pytest.mark.parametrize("params, expected", [
    ({"rig.image_topics": ["/c/a", "/c/b"]}, "rig.image_topics ['/c/a', '/c/b'] and rig.compressed_image_topics "
                                             "['/c/front/image_raw/compressed', '/c/left/image_raw/compressed']: "
                                             "expected one of the two"),
    ({"rig.camera_info_topics": ["/a"]}, "rig.camera_info_topics: expected one CameraInfo topic per "
                                         "rig.compressed_image_topics entry (2), or none, got 1"),
    ({"rig.yaws_deg": [0.0, 90.0, 180.0]}, "rig.yaws_deg: expected one yaw per rig.compressed_image_topics entry "
                                           "(2), or none"),
    ({"rig.frame_source": "parameters"}, "rig.yaws_deg: expected one yaw per rig.compressed_image_topics entry (2) "
                                         "with rig.frame_source parameters, got 0"),
    ({"rig.compressed_image_topics": ["/a", "/a"]}, "rig.compressed_image_topics ['/a', '/a']: expected distinct "
                                                    "topics"),
    ({"rig.compressed_image_topics": ["/a", ""]}, "rig.compressed_image_topics: expected a list of non-empty "
                                                  "strings"),
    ({"rig.compressed_image_topics": 5}, "rig.compressed_image_topics: expected a list of non-empty strings"),
    ({"camera.model": "panorama"}, "rig.compressed_image_topics: expected camera.model pinhole"),
    ({"camera_extrinsic.yaw_deg": 5.0}, "camera_extrinsic.yaw_deg: expected 0 with a camera rig"),
    ({"rig.compressed_image_topics": [], "rig.camera_info_topics": ["/a"]},
     "rig.camera_info_topics ['/a']: expected rig.image_topics or rig.compressed_image_topics"),
])
def test_compressed_rig_options_are_checked_with_what_was_expected(params, expected):
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_params({**CRIG, **params}, require_database=False)
    assert expected in str(err.value) and "\n" not in str(err.value)


# ---- orientation from /tf_static ---------------------------------------------------------------------

def _tf(parent, child, xyz=(0.0, 0.0, 0.0), xyzw=(0.0, 0.0, 0.0, 1.0)):
    return NS(header=NS(frame_id=parent), child_frame_id=child,
              transform=NS(translation=NS(x=xyz[0], y=xyz[1], z=xyz[2]),
                           rotation=NS(x=xyzw[0], y=xyzw[1], z=xyzw[2], w=xyzw[3])))


def _yaw_q(deg):
    return (0.0, 0.0, math.sin(math.radians(deg) / 2), math.cos(math.radians(deg) / 2))


def _quat_mul(a, b):
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)


def test_static_transforms_compose_along_the_tree_and_give_yaw_pitch_roll():
    tf = StaticTransforms()
    # base_link -> camera_left (yaw 90, 0.4 m ahead) -> camera_left_optical; base_link -> gnss
    assert tf.update(NS(transforms=[_tf("base_link", "camera_left", (0.4, 0.1, 2.0), _yaw_q(90.0)),
                                    _tf("camera_left", "camera_left_optical", xyzw=OPTICAL_XYZW),
                                    _tf("/base_link", "gnss", (-0.5, 0.0, 1.9))])) == 3
    rot, t = tf.lookup("base_link", "camera_left_optical")
    np.testing.assert_allclose(t, [0.4, 0.1, 2.0], atol=1e-12)
    np.testing.assert_allclose(rot[:, 2], [0.0, 1.0, 0.0], atol=1e-12)            # the optical axis looks left
    assert camera_angles(rot, optical=True) == pytest.approx((90.0, 0.0, 0.0), abs=1e-9)
    assert camera_angles(tf.lookup("base_link", "camera_left")[0], optical=False) == pytest.approx((90.0, 0.0, 0.0))
    # between two children: the gnss antenna seen from the camera
    rot, t = tf.lookup("camera_left", "gnss")
    np.testing.assert_allclose(t, [-0.1, 0.9, -0.1], atol=1e-12)   # 0.9 m behind: the left camera's left
    assert tf.lookup("base_link", "nowhere") is None and tf.lookup("map", "camera_left") is None
    # pitched up 10 degrees and rolled 5 (right side down), yaw -30: R = Rz(yaw) Ry(-pitch) Rx(roll) in the body frame
    q = _quat_mul(_quat_mul(_yaw_q(-30.0), (0.0, -math.sin(math.radians(5.0)), 0.0, math.cos(math.radians(5.0)))),
                  (math.sin(math.radians(2.5)), 0.0, 0.0, math.cos(math.radians(2.5))))
    tf.update(NS(transforms=[_tf("base_link", "cam_p", xyzw=q), _tf("cam_p", "cam_p_optical", xyzw=OPTICAL_XYZW)]))
    assert camera_angles(tf.lookup("base_link", "cam_p")[0], optical=False) == pytest.approx((-30.0, 10.0, 5.0))
    assert camera_angles(tf.lookup("base_link", "cam_p_optical")[0], optical=True) == pytest.approx((-30.0, 10.0, 5.0))


def _info(w, h, f):
    return NS(header=NS(frame_id="x"), width=w, height=h, distortion_model="plumb_bob", d=[0.0] * 5,
              k=[f, 0.0, (w - 1) / 2, 0.0, f, (h - 1) / 2, 0.0, 0.0, 1.0])


def _image(frame, w=8, h=6, stamp=0):
    return NS(header=NS(stamp=NS(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame), height=h, width=w,
              encoding="rgb8", step=w * 3, is_bigendian=0,
              data=np.random.default_rng(w).integers(0, 255, h * w * 3, dtype=np.uint8))


def test_rig_cameras_wait_for_every_camera_info_and_take_tf_before_the_yaw_parameters():
    cfg = NodeConfig.from_params({**RIG, "rig.camera_info_topics": ["/c/front/info", "/c/left/info"],
                                  "rig.yaws_deg": [0.0, 80.0]}, require_database=False)
    cams = RigCameras(cfg)
    frames = RigSet((_image("camera_front_optical"), _image("camera_left_optical")), (0, 0), 0)
    rig, kind, why = cams.rig_for(frames)
    assert rig is None and kind == "camera_info" and "no CameraInfo received yet for rig cameras 0 (/c/front/info), " \
        "1 (/c/left/info)" in why
    assert cams.update_camera_info(0, _info(8, 6, 4.0)) is None
    assert "rig camera 1 (/c/left/info)" in cams.rig_for(frames)[2]
    problem = cams.update_camera_info(1, NS(header=NS(frame_id="x"), width=0, height=0, distortion_model="x", d=[],
                                            k=[0.0] * 9))
    assert "CameraInfo of rig camera 1 (/c/left/info) not used" in problem and cams.rig_for(frames)[2] == problem
    cams.update_camera_info(1, _info(8, 6, 4.0))
    rig, kind, why = cams.rig_for(frames)
    assert isinstance(rig, Rig) and rig.yaws_deg == (0.0, 80.0) and rig.cameras[1].intrinsics.fx == 4.0
    assert "yaw 80.0, pitch 0.0, roll 0.0 deg from rig.yaws_deg" in cams.status()
    # /tf_static gives the left camera's true yaw, 90; the front one stays on its parameter
    cams.update_tf(NS(transforms=[_tf("base_link", "camera_left", (0.4, 0.0, 2.2), _yaw_q(90.0)),
                                  _tf("camera_left", "camera_left_optical", xyzw=OPTICAL_XYZW)]))
    assert cams.rig_for(frames)[0].yaws_deg == pytest.approx((0.0, 90.0))
    assert "from /tf_static camera_left_optical" in cams.status()
    assert cams.centre(["camera_left_optical"]).x == pytest.approx(0.4)
    assert cams.centre(["camera_front_optical", "camera_left_optical"]) is None      # the front one is not placed
    # parameters only: /tf_static is not read
    params = RigCameras(cfg.with_params({"rig.frame_source": "parameters"}))
    params.update_tf(NS(transforms=[_tf("base_link", "camera_left_optical", xyzw=_yaw_q(45.0))]))
    params.update_camera_info(0, _info(8, 6, 4.0))
    params.update_camera_info(1, _info(8, 6, 4.0))
    assert params.rig_for(frames)[0].yaws_deg == (0.0, 80.0)
    # tf without yaw parameters: a camera without a transform is refused with the reason
    bare = RigCameras(NodeConfig.from_params(RIG, require_database=False))
    rig, kind, why = bare.rig_for(frames)
    assert rig is None and kind == "rig" and "no /tf_static transform base_link -> 'camera_front_optical' for rig " \
        "camera 0 (/c/front/image_raw) and no rig.yaws_deg" in why
    sync = RigSynchronizer(2, MS)
    values = dict(rig_status_values(sync, cams))
    assert values["rig_sets"] == "0" and values["rig_frames_dropped"] == "0 0" and "rig_cameras" in values
    assert rig_status_values(None, None) == []


# ---- a set of frames through the node's per-frame path ---------------------------------------------------

class _RigLocalizer:
    backend_name = "stand-in"

    def __init__(self, frame):
        self.frame = frame
        self.calls = []

    def localize(self, image, camera, prior=None, return_distribution=False):
        from unifygeo_ros.types import LocalizationResult

        self.calls.append((image, camera))
        lat, lon = self.frame.to_latlon(10.0, 20.0)
        return LocalizationResult(latitude=float(lat), longitude=float(lon), x=10.0, y=20.0, yaw_deg=90.0,
                                  covariance=np.diag([1.0, 1.0, 0.01]), confidence=0.9, candidates=[], tile_id=0,
                                  pixel=(1.0, 2.0), heading_mode="unknown", backend="stand-in",
                                  timings_ms={"total": 1.0})

    def close(self):
        pass


def test_frame_processor_localizes_a_set_with_its_rig():
    from unifygeo_ros.ros_core.pipeline import FrameProcessor

    frame = MapFrame.utm_at(48.137, 11.575)
    loc = _RigLocalizer(frame)
    cfg = NodeConfig.from_params({**RIG, "rig.camera_info_topics": ["/c/front/info", "/c/left/info"],
                                  "rig.yaws_deg": [0.0, 90.0], "camera_extrinsic.xyz": [0.4, 0.0, 2.2]},
                                 require_database=False)
    proc = FrameProcessor(loc, cfg)
    sync = RigSynchronizer.from_config(cfg)
    assert sync.add(0, _image("camera_front_optical", stamp=T0), T0) == []
    (rig_set,) = sync.add(1, _image("camera_left_optical", stamp=T0 + 20 * MS), T0 + 20 * MS)
    out = proc.process(rig_set)
    assert out.failure == "camera_info" and "no CameraInfo received yet" in out.message and not loc.calls
    proc.rig.update_camera_info(0, _info(8, 6, 4.0))
    proc.rig.update_camera_info(1, _info(8, 6, 4.0))
    out = proc.process(rig_set, rig_set.stamp_ns)
    assert out.ok and out.estimate.stamp_ns == T0 + 10 * MS
    images, rig = loc.calls[-1]
    assert isinstance(rig, Rig) and rig.yaws_deg == (0.0, 90.0) and [i.shape for i in images] == [(6, 8, 3)] * 2
    # base_link: the rig faces its x axis; the centre 0.4 m ahead of it
    assert math.degrees(out.estimate.yaw) == pytest.approx(90.0) and (out.estimate.x, out.estimate.y) == pytest.approx(
        (10.0, 19.6))
    # a camera's image of another size than its CameraInfo: refused, naming the camera
    small = RigSet((rig_set.messages[0], _image("camera_left_optical", w=4, h=3)), rig_set.stamps_ns, rig_set.stamp_ns)
    out = proc.process(small)
    assert out.failure == "image" and out.message.startswith("rig camera 1 (/c/left/image_raw): image of 4 x 3 pixels")
    assert len(loc.calls) == 1


def _jpeg(frame, rgb, stamp=0):
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    return NS(header=NS(stamp=NS(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame),
              format="rgb8; jpeg compressed bgr8", data=buf.tobytes())


def test_frame_processor_decodes_a_compressed_set_and_refuses_one_with_a_corrupt_jpeg():
    from unifygeo_ros.ros_core.pipeline import FrameProcessor

    frame = MapFrame.utm_at(48.137, 11.575)
    loc = _RigLocalizer(frame)
    cfg = NodeConfig.from_params({**CRIG, "rig.yaws_deg": [0.0, 90.0], "camera.hfov_deg": 100.0},
                                 require_database=False)
    proc = FrameProcessor(loc, cfg)
    front, left = np.full((6, 8, 3), (200, 40, 10), np.uint8), np.full((6, 8, 3), (10, 90, 220), np.uint8)
    sync = RigSynchronizer.from_config(cfg)
    assert sync.add(0, _jpeg("camera_front_optical", front, T0), T0) == []
    (rig_set,) = sync.add(1, _jpeg("camera_left_optical", left, T0 + 20 * MS), T0 + 20 * MS)
    out = proc.process(rig_set)
    assert out.ok and out.estimate.stamp_ns == T0 + 10 * MS and "decode" in out.timings_ms
    images, rig = loc.calls[-1]
    assert isinstance(rig, Rig) and rig.yaws_deg == (0.0, 90.0) and [i.shape for i in images] == [(6, 8, 3)] * 2
    assert np.abs(images[0].astype(int) - front).max() <= 3 and np.abs(images[1].astype(int) - left).max() <= 3
    # one camera's frame is no JPEG: the set is refused, naming the camera, and the localizer not called
    bad = NS(header=rig_set.messages[1].header, format="jpeg", data=bytes(range(50)))
    out = proc.process(RigSet((rig_set.messages[0], bad), rig_set.stamps_ns, rig_set.stamp_ns))
    assert out.failure == "image" and out.message.startswith(
        "rig camera 1 (/c/left/image_raw/compressed): could not decode 50 bytes of compressed image"), out.message
    assert len(loc.calls) == 1
