"""The ROS 2 node (``localize_node``) and its ROS-free core (``unifygeo_ros.ros_core``).

The first half needs no ROS: parameters, frames, the extrinsic and its covariance, image
decoding, priors, message building. The second half starts the real node (rclpy, from the
ROS 2 Jazzy wheels that ``make test`` installs) as a subprocess on a small synthetic
database, publishes panoramas rendered at known poses and bad frames from a test node, and
checks what comes back. It needs rclpy and skips, saying why, where rclpy is absent.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest

from unifygeo_ros.geo import MapFrame
from unifygeo_ros.options import OPTIONS as PARAMETERS
from unifygeo_ros.ros_core.config import ConfigError, NodeConfig
from unifygeo_ros.ros_core.geometry import (
    Extrinsic,
    FrameAdapter,
    covariance6,
    enu_true_covariance,
    quaternion_to_yaw,
    yaw_to_quaternion,
)
from unifygeo_ros.ros_core.images import ImageError, decode_image
from unifygeo_ros.ros_core.priors import PriorTracker

REPO = Path(__file__).resolve().parents[1]
ORIGIN = (48.137, 11.575)
CITY_SEED = 5              # not a training (11-16), validation (21), calibration (101-104) or demo (2026) city
CAMERA_XYZ = (0.4, 0.0, 2.2)
PANO_W, PANO_H = 512, 256
# Bounds on the position errors (m) of the frames at street_poses() in this city, measured
# with the shipped model (the test prints them): without a prior 150.3, 4.0 and 110.1 m
# (retrieval over the whole 200 m city is the shipped model's weak point, see its model
# card: one of the three frames finds its tile), with the GNSS prior 3.7 m. A broken
# pipeline (wrong frame, extrinsic, axis or stamp) misses every frame, the prior one too.
# The frame chain itself is checked exactly, model-free, by
# test_frame_processor_turns_the_camera_pose_into_base_link_in_the_map_frame.
BEST_ERROR_BOUND_M = 10.0          # the best of the frames without a prior
PRIOR_ERROR_BOUND_M = 10.0         # the frame with a GNSS prior


# =========================================================================================
# ROS-free core
# =========================================================================================

def test_launch_arguments_not_given_leave_the_parameter_file_in_force():
    from unifygeo_ros.ros_core.launch_args import FROM_CONFIG, PARAMETER_OF, argument_description, parameter_overrides

    untouched = {name: FROM_CONFIG for name in PARAMETER_OF}
    assert parameter_overrides(untouched) == {}
    given = {**untouched, "camera_topic": "/cam/image_raw", "database": "/data/db", "autostart": "False",
             "compressed_camera_topic": ""}
    assert parameter_overrides(given) == {"image_topic": "/cam/image_raw", "database": "/data/db",
                                          "autostart": False, "compressed_image_topic": ""}
    with pytest.raises(ValueError, match="autostart:=maybe: expected true or false"):
        parameter_overrides({**untouched, "autostart": "maybe"})
    with pytest.raises(ValueError, match="image_qos_reliability:=fast: expected one of best_effort, reliable"):
        parameter_overrides({**untouched, "image_qos_reliability": "fast"})
    assert "sets parameter image_topic" in argument_description("camera_topic")
    launch_text = (REPO / "launch" / "localize.launch.py").read_text()
    assert "parameter_overrides(" in launch_text and "FROM_CONFIG" in launch_text


def test_health_levels_follow_the_thresholds():
    from unifygeo_ros.ros_core.health import ERROR, OK, WARN, assess

    cfg = NodeConfig()
    base = {"input_rate_hz": 10.0, "output_rate_hz": 2.5, "drop_share": 0.7, "latency_ms_mean": 450.0,
            "seconds_since_pose": 0.4, "recent_failures_by_kind": {}, "last_error": ""}
    assert assess(base, cfg)[0] == OK
    assert assess(base, cfg, "inactive") == (WARN, "not localizing: lifecycle state inactive")
    assert assess({**base, "drop_share": 0.95}, cfg)[0] == WARN
    assert assess({**base, "latency_ms_mean": 2500.0}, cfg)[0] == WARN
    assert assess({**base, "latency_ms_mean": 2500.0}, cfg.with_params({"diagnostics.max_latency_ms": 3000.0}))[0] == OK
    assert assess({**base, "input_rate_hz": 0.0, "output_rate_hz": 0.0}, cfg)[0] == WARN
    level, message = assess({**base, "output_rate_hz": 0.0, "seconds_since_pose": 12.0}, cfg)
    assert level == ERROR and "no pose was published for 12 s" in message
    assert assess({**base, "recent_failures_by_kind": {"internal": 1}, "last_error": "internal: boom"}, cfg) == (
        ERROR, "the backend failed on a recent frame (internal: boom)")


def test_stats_clear_the_last_error_once_frames_succeed_and_count_drops_in_the_window():
    from unifygeo_ros.ros_core.stats import RollingStats

    now = [100.0]
    st = RollingStats(window_s=10.0, clock=lambda: now[0])
    for i in range(10):
        st.received(dropped_previous=i % 2 == 1)
    st.failed("localization", "not 2:1")
    assert st.snapshot()["last_error"] == "localization: not 2:1"
    assert st.snapshot()["drop_share"] == 0.5 and st.snapshot()["seconds_since_pose"] == 0.0
    now[0] += 3.0
    st.published(120.0)
    snap = st.snapshot()
    assert snap["last_error"] == "" and snap["totals"]["failed"] == 1 and snap["seconds_since_pose"] == 0.0
    now[0] += 20.0
    snap = st.snapshot()
    assert snap["input_rate_hz"] == 0.0 and snap["drop_share"] == 0.0 and snap["seconds_since_pose"] == 20.0


def test_config_names_every_bad_value():
    with pytest.raises(ConfigError) as err:
        NodeConfig.from_params({"database": "", "camera.model": "fisheye", "top_k": 0, "covariance.scale": "big",
                                "camera_extrinsic.xyz": [1.0, 2.0], "decoder_turns": 3, "no_such_param": 1})
    text = str(err.value)
    for part in ("camera.model: expected one of panorama, pinhole", "top_k: expected a value in [1, 100]",
                 "covariance.scale: expected a number", "camera_extrinsic.xyz: expected a list of 3 numbers",
                 "decoder_turns: expected one of 1, 4, 8, got 3",
                 "unknown parameter 'no_such_param'"):
        assert part in text, text
    with pytest.raises(ConfigError, match="database: expected the path"):
        NodeConfig.from_params({})
    with pytest.raises(ConfigError, match="both empty"):
        NodeConfig.from_params({"image_topic": ""}, require_database=False)


def test_extrinsic_moves_the_camera_pose_to_base_link_with_the_jacobian():
    ex = Extrinsic(0.4, -0.3, 2.2, math.radians(20.0))
    # base at (10, 5) with yaw 30 deg: the camera is at base + R(30) (0.4, -0.3), yaw 50 deg
    yb = math.radians(30.0)
    xc = 10 + math.cos(yb) * 0.4 - math.sin(yb) * -0.3
    ycam = 5 + math.sin(yb) * 0.4 + math.cos(yb) * -0.3
    cov = np.array([[4.0, 1.0, 0.1], [1.0, 2.0, -0.05], [0.1, -0.05, 0.02]])
    x, y, yaw, cb = ex.camera_to_base(xc, ycam, yb + ex.yaw, cov)
    assert (x, y) == pytest.approx((10.0, 5.0), abs=1e-12) and yaw == pytest.approx(yb)
    # covariance = J cov J^T with J the numeric Jacobian of the same map
    def f(v):
        return np.array(ex.camera_to_base(v[0], v[1], v[2], cov)[:3])
    v0 = np.array([xc, ycam, yb + ex.yaw])
    jac = np.stack([(f(v0 + d) - f(v0 - d)) / 2e-6 for d in np.eye(3) * 1e-6], axis=1)
    np.testing.assert_allclose(cb, jac @ cov @ jac.T, atol=1e-8)
    # unknown yaw: base at the camera, position variance + |t|^2 / 2 per axis
    x, y, yaw, cb = ex.camera_to_base(3.0, 4.0, None, cov)
    assert (x, y, yaw) == (3.0, 4.0, None)
    assert cb[0, 0] == pytest.approx(4.0 + 0.25 / 2) and cb[1, 1] == pytest.approx(2.0 + 0.25 / 2)
    # from a /tf_static-like transform
    qx, qy, qz, qw = yaw_to_quaternion(math.radians(20.0))
    assert Extrinsic.from_transform((0.4, -0.3, 2.2), (qx, qy, qz, qw)).yaw == pytest.approx(ex.yaw)
    assert quaternion_to_yaw(qx, qy, qz, qw) == pytest.approx(math.radians(20.0))


def test_frame_adapter_translates_within_a_crs_and_rotates_across_crss():
    a = MapFrame.utm_at(48.137, 11.575)
    b = MapFrame(a.crs_wkt, a.origin_e - 100.0, a.origin_n + 50.0)
    ad = FrameAdapter(a, b)
    assert ad.same_crs and ad.to_out(1.0, 2.0) == (101.0, -48.0, 0.0)
    assert ad.to_db(101.0, -48.0) == (1.0, 2.0, 0.0)
    # the next UTM zone: positions through lat/lon, yaw turned by the convergence difference
    other = MapFrame.utm_at(48.137, 12.3)          # zone 33 (a's is 32)
    ad2 = FrameAdapter(a, other)
    assert not ad2.same_crs
    xo, yo, dyaw = ad2.to_out(10.0, 20.0)
    lat, lon = a.to_latlon(10.0, 20.0)
    assert (xo, yo) == pytest.approx(tuple(float(v) for v in other.from_latlon(lat, lon)), abs=1e-6)
    assert math.degrees(dyaw) == pytest.approx(other.convergence_deg(xo, yo) - a.convergence_deg(10.0, 20.0))
    assert abs(math.degrees(dyaw)) > 1.0          # two zones: a real rotation
    back = ad2.to_db(xo, yo)
    assert back[:2] == pytest.approx((10.0, 20.0), abs=1e-6) and back[2] == pytest.approx(-dyaw, abs=1e-9)
    # a covariance turns with the yaw
    x, y, yaw, cov = ad2.pose_to_out(10.0, 20.0, 0.0, np.diag([4.0, 1.0, 0.01]))
    assert yaw == pytest.approx(dyaw) and np.trace(cov) == pytest.approx(5.01) and cov[0, 1] != 0.0


def test_covariance6_layout_and_navsat_rotation():
    c3 = np.array([[4.0, 1.0, 0.1], [1.0, 2.0, 0.2], [0.1, 0.2, 0.03]])
    c6 = covariance6(c3, True, 1.0, 0.0076)
    idx = [0, 1, 5]
    np.testing.assert_allclose(c6[np.ix_(idx, idx)], c3)
    assert c6[2, 2] == 1.0 and c6[3, 3] == c6[4, 4] == 0.0076 and c6[2, 3] == 0.0
    c6n = covariance6(c3, False, 1.0, 0.0076)
    assert c6n[5, 5] == pytest.approx(math.pi ** 2 / 3) and c6n[0, 5] == 0.0
    # a grid-east variance seen from true north-up axes, convergence +90 deg (exaggerated):
    # grid east points true south (bearing_true = 90 + 90), so it becomes a north variance
    e = enu_true_covariance(np.diag([9.0, 1.0]), 90.0)
    np.testing.assert_allclose(e, np.diag([1.0, 9.0]), atol=1e-12)


def _image(encoding, h, w, data, step=None):
    return NS(header=NS(stamp=NS(sec=1, nanosec=2), frame_id="cam"), height=h, width=w, encoding=encoding,
              step=step if step is not None else w * {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(encoding, 1),
              is_bigendian=0, data=data)


def test_decode_image_encodings_padding_and_errors():
    import array

    import cv2

    rgb = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(_image("rgb8", 4, 6, rgb.reshape(-1))), rgb)
    np.testing.assert_array_equal(decode_image(_image("bgr8", 4, 6, rgb[:, :, ::-1].tobytes())), rgb)
    rgba = np.concatenate([rgb, np.full((4, 6, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(decode_image(_image("bgra8", 4, 6, array.array("B", rgba[:, :, [2, 1, 0, 3]]
                                                                              .tobytes()))), rgb)
    padded = np.zeros((4, 20), np.uint8)          # step 20 > 6 * 3
    padded[:, :18] = rgb.reshape(4, 18)
    np.testing.assert_array_equal(decode_image(_image("rgb8", 4, 6, padded.reshape(-1), step=20)), rgb)
    ok, jpg = cv2.imencode(".png", rgb[:, :, ::-1])
    np.testing.assert_array_equal(decode_image(NS(header=None, format="png", data=jpg.reshape(-1))), rgb)
    for msg, expect in [
        (_image("mono16", 4, 6, np.zeros(48, np.uint8)), "unsupported encoding 'mono16'; expected one of rgb8"),
        (_image("rgb8", 0, 0, np.zeros(0, np.uint8)), "empty image (0 x 0 pixels"),
        (_image("rgb8", 4, 6, np.zeros(10, np.uint8)), "10 data bytes for 4 rows of 18 bytes"),
        (_image("rgb8", 4, 6, np.zeros(72, np.uint8), step=10), "step 10 < width x 3 channels"),
        (NS(header=None, format="jpeg", data=np.zeros(0, np.uint8)), "empty compressed image"),
        (NS(header=None, format="jpeg", data=np.arange(50, dtype=np.uint8)), "could not decode 50 bytes"),
    ]:
        with pytest.raises(ImageError) as err:
            decode_image(msg)
        assert expect in str(err.value)


def _fix(stamp_s, lat, lon, var=None, status=0):
    cov = np.zeros(9)
    if var is not None:
        cov[[0, 4, 8]] = var
    return NS(header=NS(stamp=NS(sec=int(stamp_s), nanosec=int(round((stamp_s % 1) * 1e9))), frame_id="gnss"),
              status=NS(status=status, service=1), latitude=lat, longitude=lon, altitude=0.0,
              position_covariance=cov, position_covariance_type=2 if var is not None else 0)


def _odom(stamp_s, frame, yaw, var):
    qx, qy, qz, qw = yaw_to_quaternion(yaw)
    cov = np.zeros(36)
    cov[35] = var
    return NS(header=NS(stamp=NS(sec=int(stamp_s), nanosec=0), frame_id=frame), child_frame_id="base_link",
              pose=NS(pose=NS(orientation=NS(x=qx, y=qy, z=qz, w=qw)), covariance=cov))


def test_priors_follow_the_frame_rules():
    db = MapFrame.utm_at(*ORIGIN)
    out = MapFrame(db.crs_wkt, db.origin_e + 10.0, db.origin_n)       # map = db shifted 10 m east
    base = NodeConfig(database="x")
    ex = Extrinsic(0.4, 0.0, 2.2, math.radians(90.0))                  # camera looks left
    lat, lon = db.to_latlon(30.0, 40.0)
    t = PriorTracker(base, FrameAdapter(db, out), ex)
    assert t.update_fix(_fix(100.0, float(lat), float(lon), var=4.0)) is None
    p = t.priors_for(int(100.5e9)).position
    # in the DATABASE frame, radius 3 x 2 m + 2 m margin, at least 10 m
    assert (p.x, p.y) == pytest.approx((30.0, 40.0), abs=1e-6) and p.radius_m == pytest.approx(10.0)
    t.update_fix(_fix(100.0, float(lat), float(lon), var=100.0))
    assert t.priors_for(int(100e9)).position.radius_m == pytest.approx(32.0)
    t.update_fix(_fix(100.0, float(lat), float(lon)))                  # no covariance
    assert t.priors_for(int(100e9)).position.radius_m == 50.0
    info = t.priors_for(int(102e9))                                     # 2 s later: stale
    assert info.position is None and "2.00 s from the image stamp" in info.position_note
    assert t.update_fix(_fix(100.0, math.nan, math.nan, status=-1)) == "NavSatFix status -1 (no fix)"
    assert t.priors_for(int(100e9)).position is None
    # odometry: off by default; map_frame mode refuses an odom-frame yaw; offset mode adds it
    assert t.update_odom(_odom(100.0, "odom", 0.3, 0.01)) == "odom_heading_mode is off"
    t2 = PriorTracker(NodeConfig(database="x", odom_heading_mode="map_frame"), FrameAdapter(db, out), ex)
    assert "not map_frame 'map'" in t2.update_odom(_odom(100.0, "odom", 0.3, 0.01))
    assert t2.priors_for(int(100e9)).heading is None
    assert t2.update_odom(_odom(100.0, "map", math.radians(10.0), math.radians(2.0) ** 2)) is None
    h = t2.priors_for(int(100e9)).heading
    # base yaw 10 deg + camera 90 deg; half-width max(15, 3 x 2 deg)
    assert h.yaw_deg == pytest.approx(100.0) and h.half_width_deg == pytest.approx(15.0)
    t3 = PriorTracker(NodeConfig(database="x", odom_heading_mode="offset", odom_yaw_offset_deg=-30.0),
                      FrameAdapter(db, out), Extrinsic())
    t3.update_odom(_odom(100.0, "odom", math.radians(10.0), math.radians(10.0) ** 2))
    h = t3.priors_for(int(100e9)).heading
    assert h.yaw_deg == pytest.approx(-20.0) and h.half_width_deg == pytest.approx(30.0)


class _TruthLocalizer:
    """Returns a prepared camera pose (database frame) as its result: checks the frame chain
    of FrameProcessor independently of the model's accuracy."""

    backend_name = "truth"

    def __init__(self, frame):
        self.frame = frame
        self.answer = None
        self.calls = []

    def localize(self, image, camera, prior=None, return_distribution=False):
        from unifygeo_ros.types import Candidate, LocalizationResult

        self.calls.append((image.shape, camera, prior))
        if isinstance(self.answer, Exception):
            raise self.answer
        x, y, yaw_deg, cov, conf = self.answer
        lat, lon = self.frame.to_latlon(x, y)
        return LocalizationResult(latitude=float(lat), longitude=float(lon), x=x, y=y, yaw_deg=yaw_deg,
                                  covariance=cov, confidence=conf,
                                  candidates=[Candidate(3, 0.5, 0.6, 0.6, 1.1, (x + 1.0, y), (float(lat), float(lon)))],
                                  tile_id=3, pixel=(10.0, 20.0), heading_mode="unknown", backend="truth",
                                  timings_ms={"ground": 1.0, "total": 2.0})

    def close(self):
        pass


def test_frame_processor_turns_the_camera_pose_into_base_link_in_the_map_frame():
    from unifygeo_ros.ros_core.pipeline import FrameProcessor
    from unifygeo_ros.ros_core.priors import PriorInfo
    from unifygeo_ros.types import HeadingPrior, LocalizationError, PositionPrior

    out = MapFrame.utm_at(*ORIGIN)                                   # the vehicle's map frame
    db = MapFrame(out.crs_wkt, out.origin_e + 250.0, out.origin_n - 40.0)  # the database's, elsewhere
    loc = _TruthLocalizer(db)
    cfg = NodeConfig.from_params({"database": "", "map_origin.mode": "latlon", "map_origin.latitude": ORIGIN[0],
                                  "map_origin.longitude": ORIGIN[1], "camera_extrinsic.xyz": [0.4, 0.1, 2.2],
                                  "camera_extrinsic.yaw_deg": 10.0, "min_confidence": 0.3,
                                  "covariance.scale": 2.0}, require_database=False)
    proc = FrameProcessor(loc, cfg)
    # truth: base_link at map (120, 80), yaw 30 deg; camera forward yaw 40 deg
    yb = math.radians(30.0)
    cam_map = (120 + math.cos(yb) * 0.4 - math.sin(yb) * 0.1, 80 + math.sin(yb) * 0.4 + math.cos(yb) * 0.1)
    cam_db = (cam_map[0] - 250.0, cam_map[1] + 40.0)
    cov = np.diag([4.0, 1.0, math.radians(2.0) ** 2])
    loc.answer = (cam_db[0], cam_db[1], 40.0, cov, 0.8)
    rgb = np.zeros((2, 4, 3), np.uint8)
    msg = _image("rgb8", 2, 4, rgb.reshape(-1))
    prior = PriorInfo(position=PositionPrior(1.0, 2.0, 30.0), heading=HeadingPrior(40.0, 20.0))
    o = proc.process(msg, 1_700_000_000_123_456_789, prior)
    e = o.estimate
    assert o.ok and e.stamp_ns == 1_700_000_000_123_456_789 and (e.frame_id, e.child_frame_id) == ("map", "base_link")
    assert (e.x, e.y) == pytest.approx((120.0, 80.0), abs=1e-9) and math.degrees(e.yaw) == pytest.approx(30.0)
    assert loc.calls[-1][2] == (prior.position, prior.heading) and e.position_prior_used and e.heading_prior_used
    lat, lon = out.to_latlon(120.0, 80.0)
    assert (e.latitude, e.longitude) == pytest.approx((float(lat), float(lon)), abs=1e-12)
    # covariance: scaled by 2, moved through the lever arm, laid out 6 x 6
    assert e.covariance[5, 5] == pytest.approx(2 * math.radians(2.0) ** 2)
    assert e.covariance[0, 0] > 8.0 and e.covariance[0, 5] != 0.0 and e.covariance[2, 2] == 1.0
    assert e.candidates[0]["center_x"] == pytest.approx(cam_map[0] + 1.0)
    assert e.stage_ms["ground"] == 1.0 and e.stage_ms["total"] >= e.stage_ms["decode"]
    assert e.navsat_covariance[2, 2] == 1.0 and np.trace(e.navsat_covariance[:2, :2]) == pytest.approx(
        np.trace(e.cov3[:2, :2]))
    # the confidence gate, a LocalizationError, a bad image: no estimate, a reason
    loc.answer = (cam_db[0], cam_db[1], 40.0, cov, 0.2)
    o = proc.process(msg)
    assert not o.ok and o.failure == "low_confidence" and "0.200 below min_confidence 0.3" in o.message
    loc.answer = LocalizationError("no database tile within 30 m")
    o = proc.process(msg)
    assert o.failure == "localization" and "no database tile" in o.message
    n = len(loc.calls)
    o = proc.process(_image("rgb8", 0, 0, b""))
    assert o.failure == "image" and len(loc.calls) == n           # never reached the localizer
    # no yaw: base at the camera, no pose unless publish_pose_without_yaw
    loc.answer = (cam_db[0], cam_db[1], None, np.diag([4.0, 1.0, 1e6]), 0.9)
    e = proc.process(msg).estimate
    assert e.yaw is None and (e.x, e.y) == pytest.approx(cam_map) and not proc.publishes_pose(e)
    assert e.covariance[5, 5] == pytest.approx(math.pi ** 2 / 3) and e.covariance[0, 0] == pytest.approx(
        2 * 4.0 + (0.4 ** 2 + 0.1 ** 2) / 2)


def test_messages_build_for_rosbags_and_serialize():
    from unifygeo_ros.replay.bagio import rosbags_types, typestore
    from unifygeo_ros.ros_core import messages as build
    from unifygeo_ros.ros_core.pipeline import FrameProcessor

    out = MapFrame.utm_at(*ORIGIN)
    loc = _TruthLocalizer(out)
    proc = FrameProcessor(loc, NodeConfig(database=""))
    loc.answer = (10.0, 20.0, 45.0, np.diag([1.0, 2.0, 0.01]), 0.9)
    est = proc.process(_image("rgb8", 2, 4, np.zeros(24, np.uint8)), 5 * 10**9 + 7).estimate
    ts = typestore()
    T = rosbags_types(ts)
    for make, name in ((build.pose_msg, "geometry_msgs/msg/PoseWithCovarianceStamped"),
                       (build.navsat_msg, "sensor_msgs/msg/NavSatFix"), (build.result_msg, build.RESULT_TYPE)):
        raw = ts.serialize_cdr(make(T, est), name)
        back = ts.deserialize_cdr(raw, name)
        assert back.header.stamp.sec == 5 and back.header.stamp.nanosec == 7
    pose = ts.deserialize_cdr(ts.serialize_cdr(build.pose_msg(T, est), "geometry_msgs/msg/PoseWithCovarianceStamped"),
                              "geometry_msgs/msg/PoseWithCovarianceStamped")
    q = pose.pose.pose.orientation
    assert math.degrees(quaternion_to_yaw(q.x, q.y, q.z, q.w)) == pytest.approx(45.0)
    np.testing.assert_allclose(pose.pose.covariance.reshape(6, 6), est.covariance)
    res = ts.deserialize_cdr(ts.serialize_cdr(build.result_msg(T, est), build.RESULT_TYPE), build.RESULT_TYPE)
    assert res.candidates[0].tile_id == 3 and res.yaw_observed and list(res.stage_names)[0] == "decode"
    img = build.image_msg(T, np.full((3, 5, 3), 9, np.uint8), 10, "map")
    assert (img.height, img.width, img.step, img.encoding) == (3, 5, 15, "rgb8")


# =========================================================================================
# The node, with rclpy
# =========================================================================================

def _test_weights() -> Path:
    """The shipped model (UNIFYGEO_TEST_WEIGHTS overrides it, e.g. to try another one)."""
    override = os.environ.get("UNIFYGEO_TEST_WEIGHTS")
    if override:
        return Path(override)
    from unifygeo_ros.model_config import shipped_model_path

    return shipped_model_path()


def build_world(root: Path, seed: int = CITY_SEED, size_m: float = 200.0) -> dict:
    """A small synthetic city, its orthophoto and a database built from it."""
    from unifygeo_ros.database.build import BuildConfig, build_database
    from unifygeo_ros.sim.render import write_orthophoto_geotiff
    from unifygeo_ros.sim.world import generate_city

    city = generate_city(seed, size_m, *ORIGIN, "downtown")
    city_dir = root / "city"
    city.save(city_dir)
    write_orthophoto_geotiff(city, city_dir / "orthophoto.tif", 0.2)
    db = root / "db"
    build_database(BuildConfig(orthos=[str(city_dir / "orthophoto.tif")], weights=str(_test_weights()),
                               out=str(db)), progress=False)
    return {"city": city, "city_dir": city_dir, "db": db}


def camera_panorama(city, base_xy, yaw_deg):
    """The panorama the drive's camera (CAMERA_XYZ in base_link, looking forward) sees."""
    from unifygeo_ros.sim.render import render_panorama

    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    cam = (base_xy[0] + c * CAMERA_XYZ[0] - s * CAMERA_XYZ[1], base_xy[1] + s * CAMERA_XYZ[0] + c * CAMERA_XYZ[1])
    return render_panorama(city, cam, yaw_deg, PANO_W, PANO_H, camera_height_m=CAMERA_XYZ[2])


def latest_values(diags, key: str) -> dict:
    """The key-values of the newest received diagnostics status that carries ``key`` ({} before one)."""
    for arr in reversed(diags):
        for st in arr.status:
            kv = {v.key: v.value for v in st.values}
            if key in kv:
                return kv
    return {}


def street_poses(city, n=3):
    """Deterministic street poses of the test city: (x, y, yaw_deg)."""
    rng = np.random.default_rng(123)
    pts = city.street_positions(n, rng, min_clearance_m=2.0)
    return [(float(p[0]), float(p[1]), float(rng.uniform(-180.0, 180.0))) for p in pts]



def _street_run(city, n: int, step_m: float, seed: int = 11):
    """``n`` poses (x, y, yaw_deg) ``step_m`` apart along a drive on the test city's roads."""
    route = city.road_route(n * step_m + 4.0, np.random.default_rng(seed), step_m=step_m / 2)[::2]
    heading = np.degrees(np.arctan2(np.diff(route[:, 1]), np.diff(route[:, 0])))
    return [(float(route[k, 0]), float(route[k, 1]), float(heading[k])) for k in range(n)]



def msgs_install() -> tuple[Path | None, str]:
    """Build the package (its messages) with scripts/colcon_build.sh (fast once built);
    returns the install folder or None with the reason."""
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            return None, f"{tool} not found: the messages of msg/ cannot be built here"
    run = subprocess.run(["bash", str(REPO / "scripts" / "colcon_build.sh")], capture_output=True, text=True,
                         timeout=900)
    if run.returncode != 0:
        raise AssertionError(f"scripts/colcon_build.sh failed ({run.returncode}):\n{run.stdout}\n"
                             f"{run.stderr[-3000:]}")
    return REPO / "build" / "colcon" / "ws" / "install", ""


def load_msgs_in_process(install: Path, package: str = "unifygeo_ros") -> None:
    """Make ``package``'s generated messages (unifygeo_ros.msg, tf2_msgs.msg) importable in this
    (already running) process: its shared libraries are preloaded, since LD_LIBRARY_PATH is read
    only at process start; the install's site-packages goes after this checkout (ros.messages
    extends the package path)."""
    lib = install / package / "lib"
    order = ["rosidl_generator_c", "rosidl_typesupport_c", "rosidl_typesupport_introspection_c",
             "rosidl_typesupport_fastrtps_c", "rosidl_generator_py"]
    for part in order:
        ctypes.CDLL(str(lib / f"lib{package}__{part}.so"), mode=ctypes.RTLD_GLOBAL)
    site = next((lib).glob("python3.*/site-packages"))
    if str(site) not in sys.path:
        sys.path.append(str(site))


def node_imports_tf2_msgs(env: dict) -> bool:
    """Whether a process started with ``env`` (the node's) imports tf2_msgs; this process may
    have loaded the tests' build of it already (:func:`with_tf2_msgs`), so it is not asked."""
    return subprocess.run([sys.executable, "-c", "import tf2_msgs.msg"], env=env, capture_output=True,
                          cwd=str(REPO)).returncode == 0


def with_tf2_msgs(env: dict) -> tuple[str | None, str]:
    """Make tf2_msgs (TFMessage, for /tf and /tf_static) importable in the node's ``env`` and in
    this process. A ROS 2 install provides it; without one, scripts/colcon_build.sh builds
    tf2_msgs/TFMessage in the tests' workspace (no PyPI wheel has it). Returns (where it comes
    from, "") or (None, why it cannot be had here)."""
    if node_imports_tf2_msgs(env):
        import tf2_msgs.msg  # noqa: F401
        return "installed", ""
    install, why_not = msgs_install()
    if install is None or not (install / "tf2_msgs").is_dir():
        return None, f"tf2_msgs does not import and cannot be built here: {why_not or 'not in the workspace'}"
    lib = install / "tf2_msgs" / "lib"
    env["PYTHONPATH"] = os.pathsep.join(p for p in [env.get("PYTHONPATH", ""), str(next(lib.glob(
        "python3.*/site-packages")))] if p)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in [str(lib), env.get("LD_LIBRARY_PATH", "")] if p)
    if not node_imports_tf2_msgs(env):
        raise AssertionError(f"tf2_msgs built in {install} does not import with PYTHONPATH={env['PYTHONPATH']}")
    try:
        import tf2_msgs.msg  # noqa: F401,F811
    except ImportError:
        load_msgs_in_process(install, "tf2_msgs")
    return f"built by scripts/colcon_build.sh in {install}", ""


@pytest.fixture(scope="module")
def rclpy_mod():
    return pytest.importorskip("rclpy", reason="rclpy is not installed: `make test` installs the ROS 2 Jazzy "
                                                 "wheels on x86_64 Linux; elsewhere source a ROS 2 install")


def test_parameter_descriptors_name_the_allowed_values(rclpy_mod):
    from unifygeo_ros.ros.node import _descriptor

    specs = {p.name: p for p in PARAMETERS}
    assert _descriptor(specs["decoder_turns"]).additional_constraints == "one of: 1, 4, 8"
    assert _descriptor(specs["camera.model"]).additional_constraints == "one of: panorama, pinhole"
    top_k = _descriptor(specs["top_k"]).integer_range[0]
    assert (top_k.from_value, top_k.to_value) == (1, 100)


@pytest.fixture(scope="module")
def world(small_world, rclpy_mod):
    return small_world


class NodeProcess:
    """``python -m unifygeo_ros.ros.node`` with its output collected line by line."""

    def __init__(self, params: dict, env: dict, namespace: str):
        import yaml

        self.param_file = Path(params.pop("_dir")) / "override.yaml"
        self.param_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
        cmd = [sys.executable, "-m", "unifygeo_ros.ros.node", "--ros-args", "--params-file",
               str(REPO / "config" / "localize.yaml"), "--params-file", str(self.param_file),
               "-r", f"__ns:={namespace}"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=str(REPO))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"node did not log {text!r} within {timeout} s (exit {self.proc.poll()}):\n"
                             + "\n".join(self.lines[-40:]))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


def ros_env(base: dict | None = None) -> dict:
    """A ROS domain of this test run only, discovery on loopback only."""
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)          # deprecated in Jazzy in favour of the above
    env.pop("ROS_STATIC_PEERS", None)
    return env


def spin_until(executor, predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
        if predicate():
            return True
    return False


def _publish_still_odometry(pub_odom, Odometry, stamp_ns: int) -> None:
    """Odometry of a vehicle standing still (odom -> base_link at the origin) at five stamps
    around ``stamp_ns``, 0.2 s apart."""
    for j in range(-2, 3):
        o = Odometry()
        ts = stamp_ns + j * 2 * 10**8
        o.header.stamp.sec, o.header.stamp.nanosec = ts // 10**9, ts % 10**9
        o.header.frame_id, o.child_frame_id = "odom", "base_link"
        o.pose.pose.orientation.w = 1.0
        pub_odom.publish(o)


def transform_msg(parent: str, child: str, stamp_ns: int, xyz=(0.0, 0.0, 0.0), xyzw=(0.0, 0.0, 0.0, 1.0)):
    """A geometry_msgs/TransformStamped ``parent`` -> ``child`` at ``stamp_ns``."""
    from geometry_msgs.msg import TransformStamped

    tr = TransformStamped()
    tr.header.stamp.sec, tr.header.stamp.nanosec = stamp_ns // 10**9, stamp_ns % 10**9
    tr.header.frame_id, tr.child_frame_id = parent, child
    t, q = tr.transform.translation, tr.transform.rotation
    t.x, t.y, t.z = (float(v) for v in xyz)
    q.x, q.y, q.z, q.w = (float(v) for v in xyzw)
    return tr


def _image_msg(Image, rgb: np.ndarray, stamp_ns: int, encoding="rgb8"):
    m = Image()
    m.header.stamp.sec, m.header.stamp.nanosec = stamp_ns // 10**9, stamp_ns % 10**9
    m.header.frame_id = "camera_panorama"
    m.height, m.width = int(rgb.shape[0]), int(rgb.shape[1]) if rgb.ndim > 1 else 0
    m.encoding = encoding
    m.step = m.width * 3
    m.data = rgb.tobytes()
    return m


def test_node_localizes_and_survives_bad_frames(world, rclpy_mod, tmp_path, monkeypatch):
    rclpy = rclpy_mod
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image, NavSatFix

    install, why_not = msgs_install()
    env = ros_env()
    if install is not None:
        # this checkout first (the code under test), then the install with the generated messages
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(next((install / "unifygeo_ros" / "lib").glob(
            "python3.*/site-packages"))), env.get("PYTHONPATH", "")])
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(install / "unifygeo_ros" / "lib"),
                                                  env.get("LD_LIBRARY_PATH", "")])
        load_msgs_in_process(install)
    else:
        print(f"custom result message not checked: {why_not}")
    params = {"_dir": str(tmp_path), "database": str(world["db"]), "map_origin": {
        "mode": "latlon", "latitude": ORIGIN[0], "longitude": ORIGIN[1]},
        "camera_extrinsic": {"xyz": list(CAMERA_XYZ)}, "camera_frame": "camera_panorama",
        "compressed_image_topic": "/camera/panorama/image_raw/compressed", "min_confidence": 0.0,
        "diagnostics_period_s": 0.5, "publish_heatmap": True, "gnss_prior_topic": "/test/fix", "publish_tf": True}
    ns = "/ugtest"
    node_proc = NodeProcess(params, env, ns)
    for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):     # this process joins the same domain
        monkeypatch.setenv(k, env[k])
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    context = rclpy.Context()
    rclpy.init(context=context)
    tester = rclpy.create_node("unifygeo_test_client", context=context)
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=context)
    ex.add_node(tester)
    try:
        t0 = time.monotonic()
        ready = node_proc.wait_for("ready: backend", timeout=180)
        startup_s = time.monotonic() - t0
        assert sum("ready:" in line for line in node_proc.lines) == 1
        poses, fixes, diags, results, heatmaps = [], [], [], [], []
        base = f"{ns}/unifygeo_localizer"
        tester.create_subscription(PoseWithCovarianceStamped, f"{base}/pose", poses.append, 10)
        tester.create_subscription(Image, f"{base}/heatmap", heatmaps.append, 10)
        tester.create_subscription(NavSatFix, f"{base}/fix", fixes.append, 10)
        tester.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        if install is not None:
            from unifygeo_ros.ros.messages import load_result_types

            LocalizationResult, _, why = load_result_types()      # the node's own loader
            assert LocalizationResult is not None, why
            tester.create_subscription(LocalizationResult, f"{base}/result", results.append, 10)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        pub = tester.create_publisher(Image, "/camera/panorama/image_raw", qos)
        pub_c = tester.create_publisher(CompressedImage, "/camera/panorama/image_raw/compressed", qos)
        pub_fix = tester.create_publisher(NavSatFix, "/test/fix", 10)
        assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and pub_fix.get_subscription_count() > 0
                          and pub_c.get_subscription_count() > 0 and tester.count_publishers(f"{base}/pose") > 0,
                          30), "the node's subscriptions / publishers were not discovered"
        import importlib.util

        if importlib.util.find_spec("tf2_ros") is None:   # the wheels have no tf2_ros: TF off, node runs on
            assert any("publish_tf is true but tf2_ros does not import" in line for line in node_proc.lines)

        # ---- bad frames: nothing is published, the node keeps running
        stamp0 = 1_700_000_000 * 10**9
        bad = [
            ("wrong encoding", lambda s: _image_msg(Image, np.zeros((256, 512, 3), np.uint8), s, "mono16")),
            ("empty image", lambda s: _image_msg(Image, np.zeros((0, 0, 3), np.uint8), s)),
            ("undecodable jpeg", lambda s: CompressedImage(header=_image_msg(Image, np.zeros((1, 1, 3), np.uint8),
                                                                             s).header, format="jpeg",
                                                          data=bytes(range(64)))),
            ("not 2:1 (LocalizationError)", lambda s: _image_msg(Image, np.full((100, 100, 3), 128, np.uint8), s)),
        ]

        def failed_count():
            kv = latest_values(diags, "frames_failed")
            return (int(kv["frames_failed"]), kv) if kv else (-1, {})

        # Images go best-effort (the default QoS): one can be lost, e.g. right after discovery.
        # Each bad frame is sent again until the node's diagnostics count it.
        for i, (what, make) in enumerate(bad):
            msg = make(stamp0 + i * 10**8)
            for _ in range(4):
                (pub_c if isinstance(msg, CompressedImage) else pub).publish(msg)
                if spin_until(ex, lambda: failed_count()[0] >= i + 1, 3.0):
                    break
            else:
                raise AssertionError(f"{what}: the node never reported the frame as failed:\n"
                                     + "\n".join(node_proc.lines[-30:]))
            assert failed_count()[0] == i + 1, failed_count()
            assert not poses and not fixes and not results, f"{what}: something was published"
            assert node_proc.proc.poll() is None, f"{what}: the node died:\n" + "\n".join(node_proc.lines[-30:])
        kv = failed_count()[1]
        assert kv["failed_image"] == "3" and kv["failed_localization"] == "1", kv
        assert "not 2:1" in kv["last_error"] and kv["backend"] == ready.split("backend ")[1].split(",")[0]
        warnings = [line for line in node_proc.lines if "not localized" in line]
        assert any("unsupported encoding 'mono16'" in w for w in warnings), warnings

        # ---- good frames at known poses; the last one with a GNSS prior at the truth
        city = world["city"]
        frame = MapFrame.utm_at(*ORIGIN)
        errors = []
        poses_k = street_poses(city, 4)
        for k, (x, y, yaw) in enumerate(poses_k):
            with_prior = k == len(poses_k) - 1
            rgb = camera_panorama(city, (x, y), yaw)
            stamp = stamp0 + (10 + k) * 10**9 + 123_456_789
            if with_prior:
                lat, lon = frame.to_latlon(x, y)
                fix = NavSatFix(latitude=float(lat), longitude=float(lon), position_covariance_type=2)
                fix.header.stamp.sec, fix.header.stamp.nanosec = stamp // 10**9, stamp % 10**9
                fix.status.status = 0      # STATUS_FIX (a new message says STATUS_UNKNOWN, -2, in Jazzy)
                fix.position_covariance[0] = fix.position_covariance[4] = 4.0
                pub_fix.publish(fix)
                spin_until(ex, lambda: False, 0.5)
            n_before = len(poses)
            t_pub = time.monotonic()
            for _ in range(3):          # best effort: send again if the frame was lost
                pub.publish(_image_msg(Image, rgb, stamp))
                if spin_until(ex, lambda: len(poses) > n_before and len(fixes) > n_before, 15):
                    break
            else:
                raise AssertionError("no pose within 45 s:\n" + "\n".join(node_proc.lines[-20:]))
            latency = time.monotonic() - t_pub
            p = poses[-1]
            got = p.header.stamp.sec * 10**9 + p.header.stamp.nanosec
            assert got == stamp, "the pose must carry the image's stamp"
            assert p.header.frame_id == "map"
            cov = np.array(p.pose.covariance).reshape(6, 6)
            obs = cov[np.ix_([0, 1, 5], [0, 1, 5])]
            np.testing.assert_allclose(obs, obs.T, atol=1e-12)
            assert np.linalg.eigvalsh(obs).min() > 0, obs
            q = p.pose.pose.orientation
            yaw_est = math.degrees(quaternion_to_yaw(q.x, q.y, q.z, q.w))
            err = math.hypot(p.pose.pose.position.x - x, p.pose.pose.position.y - y)
            yaw_err = (yaw_est - yaw + 180.0) % 360.0 - 180.0
            f = fixes[-1]
            assert f.header.stamp == p.header.stamp and f.position_covariance_type == 3
            fx, fy = MapFrame.utm_at(*ORIGIN).from_latlon(f.latitude, f.longitude)
            assert math.hypot(fx - p.pose.pose.position.x, fy - p.pose.pose.position.y) < 1e-3
            if with_prior:
                prior_err = err
            else:
                errors.append(err)
            print(f"pose {k}{' (GNSS prior)' if with_prior else ''}: error {err:.2f} m, yaw error {yaw_err:.1f} "
                  f"deg, sigma {math.sqrt(cov[0, 0]):.2f}/{math.sqrt(cov[1, 1]):.2f} m, {latency * 1e3:.0f} ms")
            assert spin_until(ex, lambda: len(heatmaps) > k, 5), "no heatmap"
            hm = heatmaps[-1]
            assert hm.encoding == "rgb8" and hm.height == hm.width >= 128 and hm.header.stamp == p.header.stamp
            if install is not None:
                assert spin_until(ex, lambda: len(results) > k, 5), "no LocalizationResult"
                r = results[-1]
                assert r.header.stamp == p.header.stamp and r.candidates and r.backend and r.stage_names
                assert r.pose.pose.position.x == p.pose.pose.position.x
                assert r.position_prior_used == with_prior and not r.heading_prior_used
            if with_prior:
                diag = {}
                assert spin_until(ex, lambda: diag.update(failed_count()[1]) or
                                  diag.get("position_prior", "").startswith("used: PositionPrior"), 5), diag
            else:
                assert failed_count()[1]["position_prior"].startswith("not used: "), failed_count()[1]
        print(f"node start-up {startup_s:.1f} s; errors (m): {[round(e, 2) for e in errors]}, "
              f"with the GNSS prior {prior_err:.2f}")
        assert min(errors) < BEST_ERROR_BOUND_M, errors
        assert prior_err < PRIOR_ERROR_BOUND_M, prior_err
        assert node_proc.proc.poll() is None
    finally:
        ex.shutdown()
        tester.destroy_node()
        rclpy.shutdown(context=context)
        code = node_proc.stop()
    assert code == 0, "\n".join(node_proc.lines[-30:])


def test_result_message_is_disabled_with_a_reason_when_the_generated_messages_are_absent(monkeypatch, rclpy_mod):
    from unifygeo_ros.ros.messages import load_result_types, rclpy_types

    monkeypatch.setitem(sys.modules, "unifygeo_ros.msg", None)
    result, candidate, reason = load_result_types()
    assert result is None and candidate is None
    assert "do not import" in reason and "colcon_build.sh" in reason
    types, why = rclpy_types()
    assert types.LocalizationResult is None and why == reason
    assert types.PoseWithCovarianceStamped.__module__.startswith("geometry_msgs")


# =========================================================================================
# The lifecycle node through its ROS interfaces (a real rclpy in another process)
# =========================================================================================

def _node_cli(args: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unifygeo_ros.ros.node", "--ros-args", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=str(REPO))


@pytest.mark.parametrize("args, expected", [
    (["-p", "top_k:=0"], "top_k: expected a value in [1, 100], got 0"),
    (["-p", "top_k:=many"], "top_k: expected an integer, got 'many'"),
    (["-p", "tile_choice:=best"], "tile_choice: expected one of consensus, rerank, got 'best'"),
    (["-p", "databse:=/data/db"], "unknown parameter 'databse' (did you mean 'database'?)"),
    (["-p", "camera_extrinsic.xyz:=[0.4, 0.0]"], "camera_extrinsic.xyz: expected a list of 3 numbers"),
    (["-p", "camera.model:=pinhole", "-p", "rig.image_topics:=[/cam/a, /cam/b]", "-p", "rig.yaws_deg:=[0.0]"],
     "rig.yaws_deg: expected one yaw per rig.image_topics entry (2), or none"),
    (["-p", "rig.yaws_deg:=0,200"], "rig.yaws_deg: expected numbers in [-180, 180], got [0.0, 200.0]"),
])
def test_bad_parameters_end_in_one_fatal_line(rclpy_mod, tmp_path, args, expected):
    proc = _node_cli(["-p", f"database:={tmp_path}", *args], ros_env())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1 and expected in fatal[0] and "bad parameters" in fatal[0], out
    assert "Traceback" not in out


def test_integer_values_are_accepted_for_numbers_and_a_bad_database_stops_the_start(rclpy_mod, tmp_path):
    """An integer list for camera_extrinsic.xyz is coerced (no rclpy type error); a folder that
    is not a database fails the autostart's configure: one FATAL line, exit status 2."""
    proc = _node_cli(["-p", f"database:={tmp_path}", "-p", "camera_extrinsic.xyz:=[0, 0, 2]",
                      "-p", "covariance.scale:=2"], ros_env())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out, out
    fatal = [line for line in out.splitlines() if "FATAL" in line]
    assert len(fatal) == 1 and "cannot start" in fatal[0] and "not a database" in fatal[0], out


@contextlib.contextmanager
def ros_client(rclpy, name: str, env: dict, monkeypatch):
    """A test node in the ROS domain of ``env`` with its executor; shut down on exit."""
    from rclpy.executors import SingleThreadedExecutor

    for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    context = rclpy.Context()
    rclpy.init(context=context)
    tester = rclpy.create_node(name, context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(tester)
    try:
        yield tester, ex
    finally:
        ex.shutdown()
        tester.destroy_node()
        rclpy.shutdown(context=context)


def _call(ex, client, request, timeout=30.0):
    assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
    future = client.call_async(request)
    assert spin_until(ex, future.done, timeout), f"{client.srv_name}: no answer"
    return future.result()


def _panorama_2048(world) -> np.ndarray:
    """A 2048 x 1024 rgb8 panorama (6.3 MB, a real 360-degree camera's size) at a street pose
    of the test city: rendered at 1024 x 512 and scaled up."""
    import cv2

    x, y, yaw = street_poses(world["city"], 3)[1]
    from unifygeo_ros.sim.render import render_panorama

    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cam = (x + c * CAMERA_XYZ[0] - s * CAMERA_XYZ[1], y + s * CAMERA_XYZ[0] + c * CAMERA_XYZ[1])
    small = render_panorama(world["city"], cam, yaw, 1024, 512, camera_height_m=CAMERA_XYZ[2])
    return cv2.resize(small, (2048, 1024), interpolation=cv2.INTER_LINEAR)


def test_lifecycle_transitions_runtime_parameters_and_6mb_frames(world, rclpy_mod, tmp_path, monkeypatch):
    """With autostart false the node waits unconfigured; configure / activate / deactivate /
    cleanup / shutdown through its lifecycle services; while active, 2048 x 1024 rgb8 frames
    published at 10 Hz by a plain publisher with the default QoS arrive (the default input QoS
    is reliable) and are localized; tunable parameters change at run time and bad values are
    refused with the reason; read-only ones are refused."""
    rclpy = rclpy_mod
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import GetParameters, SetParameters
    from sensor_msgs.msg import Image

    env = ros_env()
    params = {"_dir": str(tmp_path), "database": str(world["db"]), "autostart": False, "min_confidence": 0.0,
              "map_origin": {"mode": "latlon", "latitude": ORIGIN[0], "longitude": ORIGIN[1]},
              "camera_extrinsic": {"xyz": list(CAMERA_XYZ)}, "diagnostics_period_s": 0.5,
              "image_topic": "/lc/camera/image_raw"}
    ns = "/lctest"
    base = f"{ns}/unifygeo_localizer"
    node_proc = NodeProcess(params, env, ns)
    try:
        with ros_client(rclpy, "unifygeo_lifecycle_client", env, monkeypatch) as (tester, ex):
            get_state = tester.create_client(GetState, f"{base}/get_state")
            change = tester.create_client(ChangeState, f"{base}/change_state")
            set_params = tester.create_client(SetParameters, f"{base}/set_parameters")
            get_params = tester.create_client(GetParameters, f"{base}/get_parameters")
            diags, poses = [], []
            tester.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
            tester.create_subscription(PoseWithCovarianceStamped, f"{base}/pose", poses.append, 10)
            pub = tester.create_publisher(Image, "/lc/camera/image_raw", 10)      # rclpy's default QoS

            def state():
                return _call(ex, get_state, GetState.Request()).current_state.label

            def transition(tid):
                return _call(ex, change, ChangeState.Request(transition=Transition(id=tid)), timeout=180).success

            def last_diag():
                for arr in reversed(diags):
                    for st in arr.status:
                        if st.name.endswith(": localization"):
                            return st.level, st.message, {v.key: v.value for v in st.values}
                return None

            assert state() == "unconfigured"
            assert spin_until(ex, lambda: last_diag() is not None, 10)
            level, message, kv = last_diag()
            assert kv["lifecycle_state"] == "unconfigured" and message.startswith("not localizing")
            assert pub.get_subscription_count() == 0
            assert transition(Transition.TRANSITION_CONFIGURE) and state() == "inactive"
            spin_until(ex, lambda: False, 1.0)
            assert pub.get_subscription_count() == 0, "an inactive node must not subscribe"
            assert transition(Transition.TRANSITION_ACTIVATE) and state() == "active"
            assert spin_until(ex, lambda: pub.get_subscription_count() > 0, 15)
            node_proc.wait_for("ready: backend", timeout=30)

            # ---- 6.3 MB frames at 10 Hz through the default QoS
            rgb = _panorama_2048(world)
            assert rgb.nbytes == 2048 * 1024 * 3
            msg = _image_msg(Image, rgb, 0)
            stamps = []
            t_next = time.monotonic()
            for i in range(30):
                st = 1_700_000_000 * 10**9 + i * 10**8
                msg.header.stamp.sec, msg.header.stamp.nanosec = st // 10**9, st % 10**9
                pub.publish(msg)
                stamps.append(st)
                t_next += 0.1
                spin_until(ex, lambda: time.monotonic() >= t_next, 0.2)
            assert spin_until(ex, lambda: len(poses) >= 2, 60), "6 MB frames were not localized:\n" + "\n".join(
                node_proc.lines[-20:])
            spin_until(ex, lambda: False, 2.0)
            level, message, kv = last_diag()
            received = int(kv["frames_received"])
            print(f"6.3 MB frames: {received} of {len(stamps)} received, {kv['frames_published']} localized, "
                  f"drop share {kv['drop_share']}, node overhead {kv['node_overhead_ms_median']} ms")
            # Reliable delivery: a frame is lost only when a newer one replaced it in the keep-last-1
            # queue while the cores were busy localizing (best effort lost most 6 MB frames even to
            # an idle subscriber); how many that is depends on the machine's load, so the check is
            # that frames keep arriving and are localized one after another.
            assert received >= 5 and int(kv["frames_published"]) >= 2, kv
            got = {p.header.stamp.sec * 10**9 + p.header.stamp.nanosec for p in poses}
            assert got <= set(stamps)

            # ---- parameters at run time
            def set_param(name, value, kind):
                v = ParameterValue(type=kind)
                setattr(v, {ParameterType.PARAMETER_DOUBLE: "double_value", ParameterType.PARAMETER_INTEGER:
                            "integer_value", ParameterType.PARAMETER_STRING: "string_value"}[kind], value)
                return _call(ex, set_params, SetParameters.Request(parameters=[ParameterMsg(name=name, value=v)])
                             ).results[0]

            ok = set_param("min_confidence", 0.5, ParameterType.PARAMETER_DOUBLE)
            assert ok.successful, ok.reason
            answer = _call(ex, get_params, GetParameters.Request(names=["min_confidence"])).values[0]
            assert answer.double_value == 0.5
            bad = set_param("top_k", 0, ParameterType.PARAMETER_INTEGER)
            assert not bad.successful and "top_k" in bad.reason
            bad = set_param("tile_choice", "best", ParameterType.PARAMETER_STRING)
            assert not bad.successful and "expected one of consensus, rerank" in bad.reason
            ok = set_param("tile_choice", "rerank", ParameterType.PARAMETER_STRING)
            assert ok.successful, ok.reason
            ro = set_param("database", "/elsewhere", ParameterType.PARAMETER_STRING)
            assert not ro.successful and "read-only" in ro.reason.lower()

            # ---- deactivate: no input, nothing published; cleanup; configure again; shutdown
            assert transition(Transition.TRANSITION_DEACTIVATE) and state() == "inactive"
            assert spin_until(ex, lambda: pub.get_subscription_count() == 0, 15)
            n = len(poses)
            pub.publish(msg)
            spin_until(ex, lambda: False, 2.0)
            assert len(poses) == n
            assert spin_until(ex, lambda: (last_diag() or (0, "", {}))[2].get("lifecycle_state") == "inactive", 5)
            assert transition(Transition.TRANSITION_CLEANUP) and state() == "unconfigured"
            assert transition(Transition.TRANSITION_CONFIGURE) and state() == "inactive"
            assert transition(Transition.TRANSITION_INACTIVE_SHUTDOWN) and state() == "finalized"
            assert node_proc.proc.poll() is None
    finally:
        code = node_proc.stop()
    assert code == 0, "\n".join(node_proc.lines[-30:])
    assert not any("Traceback" in line for line in node_proc.lines), "\n".join(node_proc.lines)


def test_a_failing_configure_leaves_the_node_running_with_the_reason(rclpy_mod, tmp_path, monkeypatch):
    rclpy = rclpy_mod
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    not_a_db = tmp_path / "empty"
    not_a_db.mkdir()
    env = ros_env()
    node_proc = NodeProcess({"_dir": str(tmp_path), "database": str(not_a_db), "autostart": False,
                             "diagnostics_period_s": 0.3}, env, "/lcfail")
    try:
        with ros_client(rclpy, "unifygeo_lifecycle_fail_client", env, monkeypatch) as (tester, ex):
            base = "/lcfail/unifygeo_localizer"
            diags = []
            tester.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
            change = tester.create_client(ChangeState, f"{base}/change_state")
            result = _call(ex, change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
            assert not result.success
            assert _call(ex, tester.create_client(GetState, f"{base}/get_state"),
                         GetState.Request()).current_state.label == "unconfigured"
            line = node_proc.wait_for("configure failed", timeout=20)
            assert "not a database" in line

            def error_diag():
                for arr in reversed(diags):
                    for st in arr.status:
                        if st.level == DiagnosticStatus.ERROR and "configure failed" in st.message:
                            return st
                return None

            assert spin_until(ex, lambda: error_diag() is not None, 10), "diagnostics did not report ERROR"
            assert node_proc.proc.poll() is None, "the node must keep running"
    finally:
        code = node_proc.stop()
    assert code == 0, "\n".join(node_proc.lines[-30:])


def test_tracking_node_publishes_the_filtered_pose(world, rclpy_mod, tmp_path, monkeypatch):
    """tracking.enabled: odometry (a vehicle standing still) and repeated frames at a street
    pose; once the filter tracks, ~/pose carries its pose near the truth, ~/result the single
    frames with the tracking state; /diagnostics reports the state. An initial pose in another
    frame than map_frame is ignored with a warning; one in map_frame seeds the filter. A GNSS
    fix without a covariance reaches the filter's GNSS evidence and is refused with the reason."""
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Image, NavSatFix

    env = ros_env()
    ns = "/trk"
    params = {"_dir": str(tmp_path), "database": str(world["db"]), "min_confidence": 0.0,
              "map_origin": {"mode": "latlon", "latitude": ORIGIN[0], "longitude": ORIGIN[1]},
              "camera_extrinsic": {"xyz": list(CAMERA_XYZ)}, "diagnostics_period_s": 0.5,
              "image_topic": "/trk/camera/image_raw", "gnss_prior_topic": "/trk/gnss",
              "tracking": {"enabled": True, "odom_topic": "/trk/odom"}}
    node_proc = NodeProcess(params, env, ns)
    base = f"{ns}/unifygeo_localizer"
    x, y, yaw = street_poses(world["city"], 3)[1]
    rgb = camera_panorama(world["city"], (x, y), yaw)
    try:
        with ros_client(rclpy_mod, "unifygeo_tracking_client", env, monkeypatch) as (tester, ex):
            poses, diags = [], []
            tester.create_subscription(PoseWithCovarianceStamped, f"{base}/pose", poses.append, 10)
            tester.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
            pub = tester.create_publisher(Image, "/trk/camera/image_raw", 10)
            pub_odom = tester.create_publisher(Odometry, "/trk/odom", 50)
            pub_seed = tester.create_publisher(PoseWithCovarianceStamped, "/initialpose", 10)
            pub_fix = tester.create_publisher(NavSatFix, "/trk/gnss", 10)
            node_proc.wait_for("ready: backend", timeout=180)
            assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and pub_odom.get_subscription_count() > 0
                              and pub_seed.get_subscription_count() > 0 and pub_fix.get_subscription_count() > 0, 30)
            fix = NavSatFix()
            fix.header.frame_id = "gnss"
            fix.latitude, fix.longitude = ORIGIN
            fix.status.status = 0                       # STATUS_FIX (a default message says UNKNOWN, -2)
            fix.position_covariance_type = NavSatFix.COVARIANCE_TYPE_UNKNOWN
            pub_fix.publish(fix)
            node_proc.wait_for("GNSS fix not used by the tracking filter: NavSatFix without a covariance", timeout=20)
            seed = PoseWithCovarianceStamped()
            seed.header.frame_id = "odom"
            seed.pose.pose.position.x, seed.pose.pose.position.y = x, y
            half = math.radians(yaw) / 2
            seed.pose.pose.orientation.z, seed.pose.pose.orientation.w = math.sin(half), math.cos(half)
            pub_seed.publish(seed)
            node_proc.wait_for("initial pose in frame 'odom' ignored: expected map_frame 'map'", timeout=20)
            seed.header.frame_id = "map"
            pub_seed.publish(seed)
            node_proc.wait_for("tracking seeded at", timeout=20)
            t0 = 1_700_000_000 * 10**9
            for k in range(6):
                st = t0 + k * 10**9
                _publish_still_odometry(pub_odom, Odometry, st)    # odometry around the frame
                pub.publish(_image_msg(Image, rgb, st))
                n = len(poses)
                spin_until(ex, lambda: len(poses) > n, 20)
            assert poses, "no filtered pose:\n" + "\n".join(node_proc.lines[-20:])
            p = poses[-1]
            err = math.hypot(p.pose.pose.position.x - x, p.pose.pose.position.y - y)
            cov = np.array(p.pose.covariance).reshape(6, 6)
            print(f"tracking: {len(poses)} filtered poses of 6 frames, last error {err:.2f} m, sigma "
                  f"{math.sqrt(cov[0, 0]):.2f} m")
            assert err < BEST_ERROR_BOUND_M and np.linalg.eigvalsh(cov[np.ix_([0, 1, 5], [0, 1, 5])]).min() > 0

            def state():
                return latest_values(diags, "tracking_state").get("tracking_state")

            assert spin_until(ex, lambda: state() == "tracking", 5), state()
    finally:
        code = node_proc.stop()
    assert code == 0, "\n".join(node_proc.lines[-30:])


def test_tracking_node_publishes_a_held_pose_when_the_next_fix_agrees(world, rclpy_mod, tmp_path, monkeypatch):
    """tracking with GNSS evidence: a vehicle standing at a street pose, a fix (1 m) before each
    frame. One frame shows another street (it contradicts the track): nothing is published for
    it then, but its filtered pose is held; the next fix agrees with the track, and at the next
    frame the node publishes the held pose with the contradicting frame's own stamp, near the
    truth, besides that frame's pose."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Image, NavSatFix

    from unifygeo_ros.geo import MapFrame

    env = ros_env()
    ns = "/hold"
    params = {"_dir": str(tmp_path), "database": str(world["db"]), "min_confidence": 0.0,
              "map_origin": {"mode": "latlon", "latitude": ORIGIN[0], "longitude": ORIGIN[1]},
              "camera_extrinsic": {"xyz": list(CAMERA_XYZ)}, "image_topic": "/hold/camera/image_raw",
              "gnss_prior_topic": "/hold/gnss", "tracking": {"enabled": True, "odom_topic": "/hold/odom"}}
    node_proc = NodeProcess(params, env, ns)
    base = f"{ns}/unifygeo_localizer"
    streets = street_poses(world["city"], 3)
    x, y, yaw = streets[1]
    far = max(streets, key=lambda p: math.hypot(p[0] - x, p[1] - y))
    assert math.hypot(far[0] - x, far[1] - y) > 60.0
    rgb = camera_panorama(world["city"], (x, y), yaw)
    elsewhere = camera_panorama(world["city"], far[:2], far[2])
    lat, lon = (float(v) for v in MapFrame.utm_at(*ORIGIN).to_latlon(x, y))
    try:
        with ros_client(rclpy_mod, "unifygeo_hold_client", env, monkeypatch) as (tester, ex):
            poses = []
            tester.create_subscription(PoseWithCovarianceStamped, f"{base}/pose", poses.append, 10)
            pub = tester.create_publisher(Image, "/hold/camera/image_raw", 10)
            pub_odom = tester.create_publisher(Odometry, "/hold/odom", 50)
            pub_fix = tester.create_publisher(NavSatFix, "/hold/gnss", 10)
            node_proc.wait_for("ready: backend", timeout=180)
            assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and pub_odom.get_subscription_count() > 0
                              and pub_fix.get_subscription_count() > 0, 30)

            def fix_at(ts):
                f = NavSatFix()
                f.header.stamp.sec, f.header.stamp.nanosec = ts // 10**9, ts % 10**9
                f.header.frame_id = "gnss"
                f.latitude, f.longitude = lat, lon
                f.status.status = 0
                f.position_covariance = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0]
                f.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
                pub_fix.publish(f)

            def stamp_of(p):
                return p.header.stamp.sec * 10**9 + p.header.stamp.nanosec

            t0 = 1_700_000_000 * 10**9
            k_far = 6
            for k in range(k_far + 2):
                st = t0 + k * 10**9
                fix_at(st - 5 * 10**8)
                _publish_still_odometry(pub_odom, Odometry, st)
                spin_until(ex, lambda: False, 0.2)   # the fix and odometry before the frame
                pub.publish(_image_msg(Image, elsewhere if k == k_far else rgb, st))
                n = len(poses)
                if k == k_far:
                    spin_until(ex, lambda: False, 5)
                    assert all(stamp_of(p) != st for p in poses), "the contradicting frame was published at once"
                    fix_at(st + 5 * 10**8)           # after it: the receiver agrees with the track
                else:
                    spin_until(ex, lambda: len(poses) > n and stamp_of(poses[-1]) == st, 20)
            held = [p for p in poses if stamp_of(p) == t0 + k_far * 10**9]
            print(f"held poses {len(held)}; stamps published: {[(stamp_of(p) - t0) / 1e9 for p in poses]}")
            assert len(held) == 1, "\n".join(node_proc.lines[-20:])
            assert poses.index(held[0]) == len(poses) - 2          # published before the next frame's pose
            assert math.hypot(held[0].pose.pose.position.x - x, held[0].pose.pose.position.y - y) < BEST_ERROR_BOUND_M
    finally:
        code = node_proc.stop()
    assert code == 0, "\n".join(node_proc.lines[-30:])


def _tracking_tf_params(world, tmp_path) -> dict:
    return {"_dir": str(tmp_path), "database": str(world["db"]), "min_confidence": 0.0,
            "map_origin": {"mode": "latlon", "latitude": ORIGIN[0], "longitude": ORIGIN[1]},
            "camera_extrinsic": {"xyz": list(CAMERA_XYZ)}, "image_topic": "/trktf/camera/image_raw",
            "tracking": {"enabled": True, "odom_source": "tf"}}


def test_tracking_node_without_tf2_msgs_says_why(world, rclpy_mod, tmp_path, monkeypatch):
    """tracking.odom_source tf where tf2_msgs does not import (the PyPI wheels alone): the node
    says why and what to do, keeps running and tracks on without odometry."""
    from sensor_msgs.msg import Image

    env = ros_env()
    if node_imports_tf2_msgs(env):
        pytest.skip("tf2_msgs is installed here: the node's refusal cannot happen")
    node_proc = NodeProcess(_tracking_tf_params(world, tmp_path), env, "/trktf")
    x, y, yaw = street_poses(world["city"], 3)[1]
    try:
        with ros_client(rclpy_mod, "unifygeo_tracking_notf_client", env, monkeypatch) as (tester, ex):
            pub = tester.create_publisher(Image, "/trktf/camera/image_raw", 10)
            line = node_proc.wait_for("tracking.odom_source tf: tf2_msgs does not import", timeout=180)
            assert "tracking.odom_source topic" in line, line
            node_proc.wait_for("ready: backend", timeout=180)
            assert spin_until(ex, lambda: pub.get_subscription_count() > 0, 30)
            pub.publish(_image_msg(Image, camera_panorama(world["city"], (x, y), yaw), 1_700_000_000 * 10**9))
            spin_until(ex, lambda: False, 3)
            assert node_proc.proc.poll() is None, "the node must keep running"
    finally:
        code = node_proc.stop()
    assert code == 0, "\n".join(node_proc.lines[-30:])


def test_tracking_node_reads_its_odometry_from_tf(world, rclpy_mod, tmp_path, monkeypatch):
    """tracking.odom_source tf: the filter's odometry is odom -> base_link on /tf
    (tf2_msgs/TFMessage from a ROS 2 install, or built by scripts/colcon_build.sh). The vehicle
    drives 4 m a frame along its street; the /tf messages also carry a camera transform, which is
    ignored, and one transform that is not finite, which is dropped with a warning. The filter
    tracks along the drive: filtered poses near the truth up to the last frame."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from sensor_msgs.msg import Image

    env = ros_env()
    source, why_not = with_tf2_msgs(env)
    if source is None:
        pytest.skip(why_not)
    print(f"tf2_msgs: {source}")
    from tf2_msgs.msg import TFMessage

    ns = "/trktf"
    node_proc = NodeProcess(_tracking_tf_params(world, tmp_path), env, ns)
    base = f"{ns}/unifygeo_localizer"
    city = world["city"]
    poses_xy = _street_run(city, 6, 4.0)
    try:
        with ros_client(rclpy_mod, "unifygeo_tracking_tf_client", env, monkeypatch) as (tester, ex):
            poses = []
            tester.create_subscription(PoseWithCovarianceStamped, f"{base}/pose", poses.append, 10)
            pub = tester.create_publisher(Image, "/trktf/camera/image_raw", 10)
            pub_tf = tester.create_publisher(TFMessage, "/tf", 50)
            ready = node_proc.wait_for("ready: backend", timeout=180)
            assert "/tf odom -> base_link (odometry, tracking)" in ready, ready
            assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and pub_tf.get_subscription_count() > 0, 30)
            t0 = 1_700_000_000 * 10**9
            x0, y0, yaw0 = poses_xy[0]
            c0, s0 = math.cos(math.radians(yaw0)), math.sin(math.radians(yaw0))
            published = []
            for k, (x, y, yaw) in enumerate(poses_xy):
                st = t0 + k * 10**9
                # odom = the map frame turned and moved to the first pose: odom -> base_link is the
                # drive so far in the vehicle's starting frame (exact: no odometry noise)
                dx, dy = x - x0, y - y0
                dyaw = math.radians(yaw - yaw0)
                pub_tf.publish(TFMessage(transforms=[
                    transform_msg("odom", "base_link", st, (c0 * dx + s0 * dy, -s0 * dx + c0 * dy, 0.0),
                                  (0.0, 0.0, math.sin(dyaw / 2), math.cos(dyaw / 2))),
                    transform_msg("/base_link", "camera", st, (5.0, 0.0, 0.0))]))
                if k == 2:                  # a transform that is not finite is dropped, with a warning
                    pub_tf.publish(TFMessage(transforms=[
                        transform_msg("odom", "base_link", st - 5 * 10**8, (float("nan"), 0.0, 0.0))]))
                spin_until(ex, lambda: False, 0.2)
                pub.publish(_image_msg(Image, camera_panorama(city, (x, y), yaw), st))
                n = len(poses)
                spin_until(ex, lambda: len(poses) > n, 30)
                published += [(k, p) for p in poses[n:]]
            lines = "\n".join(node_proc.lines[-20:])
            assert published, "no filtered pose:\n" + lines
            errors = []
            for k, p in published:
                x, y, _ = poses_xy[k]
                errors.append(math.hypot(p.pose.pose.position.x - x, p.pose.pose.position.y - y))
            print(f"filtered poses at frames {[k for k, _ in published]}, errors {np.round(errors, 2).tolist()} m")
            assert published[-1][0] == len(poses_xy) - 1, lines       # still tracking at the last frame
            assert max(errors) < BEST_ERROR_BOUND_M, errors
            node_proc.wait_for("odometry not used by the tracking filter: odom -> base_link transform not finite",
                               timeout=5)
    finally:
        code = node_proc.stop()
    assert code == 0, "\n".join(node_proc.lines[-30:])


def test_node_takes_the_camera_info_of_a_pinhole_camera(world, rclpy_mod, tmp_path, monkeypatch):
    """camera_info_topic: pinhole frames wait for the first CameraInfo (refused, the reason in the
    diagnostics), then run through the localizer with its intrinsics; a frame of another size is
    refused as bad input. (The shipped model's calibration judges these pinhole views no fix, so a
    frame that ran counts as no_fix unless the model places it.)"""
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from unifygeo_ros.sim.render import render_pinhole

    env = ros_env()
    ns = "/pin"
    topic, info_topic = "/pin/camera/front/image_raw", "/pin/camera/front/camera_info"
    params = {"_dir": str(tmp_path), "database": str(world["db"]), "min_confidence": 0.0,
              "map_origin": {"mode": "latlon", "latitude": ORIGIN[0], "longitude": ORIGIN[1]},
              "camera_extrinsic": {"xyz": list(CAMERA_XYZ)}, "diagnostics_period_s": 0.5, "publish_result": False,
              "camera": {"model": "pinhole"}, "image_topic": topic, "camera_info_topic": info_topic,
              "decoder_turns": 1}
    node_proc = NodeProcess(params, env, ns)
    base = f"{ns}/unifygeo_localizer"
    x, y, yaw = street_poses(world["city"], 3)[0]
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cam_xy = (x + c * CAMERA_XYZ[0], y + s * CAMERA_XYZ[0])
    w, h, hfov = 320, 240, 90.0
    rgb = render_pinhole(world["city"], cam_xy, yaw, hfov, w, h, camera_height_m=CAMERA_XYZ[2])
    f = (w / 2) / math.tan(math.radians(hfov / 2))

    def image(st, pixels, frame="camera_front"):
        m = _image_msg(Image, pixels, st)
        m.header.frame_id = frame
        return m

    info = CameraInfo(width=w, height=h, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[f, 0.0, (w - 1) / 2, 0.0, f, (h - 1) / 2, 0.0, 0.0, 1.0])
    info.header.frame_id = "camera_front"
    try:
        with ros_client(rclpy_mod, "unifygeo_pinhole_client", env, monkeypatch) as (tester, ex):
            poses, diags = [], []
            tester.create_subscription(PoseWithCovarianceStamped, f"{base}/pose", poses.append, 10)
            tester.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
            pub = tester.create_publisher(Image, topic, 10)
            pub_info = tester.create_publisher(CameraInfo, info_topic, qos_profile_sensor_data)
            node_proc.wait_for("ready: backend", timeout=180)
            assert spin_until(ex, lambda: pub.get_subscription_count() > 0 and pub_info.get_subscription_count() > 0,
                              30)
            assert "camera_info" in node_proc.wait_for("ready: backend", 1)

            def values():
                return latest_values(diags, "frames_failed")

            def count(key):
                return int(values().get(key, 0))

            t0 = 1_700_000_000 * 10**9
            # before the first CameraInfo: refused with the reason
            for k in range(4):
                pub.publish(image(t0 + k * 10**8, rgb))
                if spin_until(ex, lambda: count("failed_camera_info") >= 1, 3.0):
                    break
            kv = values()
            assert kv["failed_camera_info"] == "1" and "no CameraInfo received yet" in kv["last_error"], kv
            assert kv["camera_info"] == f"waiting for the first CameraInfo on {info_topic}"

            # with the CameraInfo: the frame runs through the localizer
            for k in range(10):
                info.header.stamp.sec = 1_700_000_001 + k
                pub_info.publish(info)
                if spin_until(ex, lambda: values().get("camera_info", "").startswith("camera_front: 320 x 240"), 1.0):
                    break
            assert values()["camera_info"].startswith(f"camera_front: 320 x 240, fx {f:.1f}"), values()
            ran = lambda: len(poses) > 0 or count("failed_no_fix") + count("failed_low_confidence") >= 1  # noqa: E731
            for k in range(3):
                pub.publish(image(t0 + (10 + k) * 10**9, rgb))
                if spin_until(ex, ran, 60.0):
                    break
            assert ran(), "\n".join(node_proc.lines[-20:])
            kv = values()
            assert count("failed_camera_info") == 1 and count("failed_image") == 0 and count("failed_localization") == 0
            if poses:
                p = poses[-1].pose.pose.position
                print(f"pinhole frame with its CameraInfo: pose error {math.hypot(p.x - x, p.y - y):.1f} m")
            else:
                print(f"pinhole frame with its CameraInfo: no pose ({kv['last_error']})")
            assert any("camera_info: frame_id 'camera_front' uses 320 x 240" in line for line in node_proc.lines)

            # another size than the calibrated one: refused as bad input, nothing published
            n_poses = len(poses)
            small = np.ascontiguousarray(rgb[::2, ::2])
            for k in range(3):
                pub.publish(image(t0 + (20 + k) * 10**9, small))
                if spin_until(ex, lambda: count("failed_image") >= 1, 5.0):
                    break
            kv = values()
            assert kv["failed_image"] == "1" and "160 x 120 pixels, but the CameraInfo of frame_id 'camera_front' " \
                "is for 320 x 240" in kv["last_error"], kv
            assert len(poses) == n_poses
            assert any("not localized (image)" in line and "calibrated size" in line for line in node_proc.lines)
            assert node_proc.proc.poll() is None
    finally:
        code = node_proc.stop()
    assert code == 0, "\n".join(node_proc.lines[-30:])
