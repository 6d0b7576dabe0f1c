"""Calibrated cameras: intrinsics, distortion, pitch and roll placed in the panorama frame
(``inference/camera.py``, ``inference/fov.py``), the CameraInfo parser, ``unifygeo localize
--camera-info`` and the frame pipeline's CameraInfo handling. The node's CameraInfo topic is
tested with rclpy in test_node.py."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace as NS

import cv2
import numpy as np
import pytest

from unifygeo_ros.inference.camera import (
    CameraInfoError,
    intrinsics_from_camera_info,
    level_to_camera,
    max_radius,
    project,
    read_camera_info,
)
from unifygeo_ros.inference.fov import camera_to_panorama, pinhole_to_panorama
from unifygeo_ros.types import Camera, Intrinsics

sys.path.insert(0, str(Path(__file__).parent))
from test_node import ORIGIN  # noqa: E402

PANO = (128, 256)


def _legacy_pinhole_to_panorama(image, hfov_deg, pano_size, axis_offset_deg=0.0, pitch_deg=0.0):
    """The idealised pinhole's placement as it was before calibrated cameras (kept as the
    reference: the same image must give the same panorama)."""
    ph, pw = pano_size
    h, w = image.shape[:2]
    fx = (w / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    xs = (np.arange(pw) + 0.5) / pw
    ys = (np.arange(ph) + 0.5) / ph
    theta = np.radians((xs - 0.5) * 360.0 - axis_offset_deg)[None, :]
    phi = np.radians(90.0 - ys * 180.0)[:, None]
    dx = np.sin(theta) * np.cos(phi)
    dy = -np.sin(phi) * np.ones_like(theta)
    dz = np.cos(theta) * np.cos(phi)
    p = np.radians(pitch_deg)
    dy, dz = np.cos(p) * dy + np.sin(p) * dz, -np.sin(p) * dy + np.cos(p) * dz
    ahead = dz > 1e-6
    safe = np.where(ahead, dz, 1.0)
    u = fx * dx / safe + w / 2.0 - 0.5
    v = fx * dy / safe + h / 2.0 - 0.5
    inside = ahead & (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)
    u = np.where(inside, u, -10.0).astype(np.float32)
    v = np.where(inside, v, -10.0).astype(np.float32)
    pano = cv2.remap(image, u, v, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    pano[~inside] = 0
    rel = np.angle(np.exp(1j * theta[0]))
    return pano, (np.abs(rel) <= np.radians(hfov_deg) / 2.0).astype(np.float32)


def _direction(bearing_deg, elevation_deg):
    """Unit direction in the level camera frame (x right, y down, z forward)."""
    t, p = math.radians(bearing_deg), math.radians(elevation_deg)
    return np.array([math.sin(t) * math.cos(p), -math.sin(p), math.cos(t) * math.cos(p)])


def _ramp(w, h):
    """A float image whose pixel (r, c) holds (c, r, 1): bilinear sampling returns the coordinates."""
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.dstack([u, v, np.ones_like(u)])


# ---- the idealised pinhole is K without distortion --------------------------------------------

@pytest.mark.parametrize("hfov, hw, offset", [(90.0, (120, 160), 0.0), (60.0, (64, 96), 33.3),
                                              (120.0, (100, 300), -170.0), (45.0, (50, 50), 90.0)])
def test_the_idealised_pinhole_gives_the_same_panorama_as_before(hfov, hw, offset):
    img = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    old_pano, old_mask = _legacy_pinhole_to_panorama(img, hfov, (256, 512), offset)
    pano, mask = pinhole_to_panorama(img, hfov, (256, 512), offset)
    np.testing.assert_array_equal(pano, old_pano)
    np.testing.assert_array_equal(mask, old_mask)
    k = Intrinsics(hw[1], hw[0], *(2 * [(hw[1] / 2) / math.tan(math.radians(hfov / 2))]), (hw[1] - 1) / 2,
                   (hw[0] - 1) / 2, "plumb_bob", (0.0,) * 5)
    assert k == Intrinsics.ideal(hw[1], hw[0], hfov)
    pano_k, mask_k = camera_to_panorama(img, k, (256, 512), offset)
    np.testing.assert_array_equal(pano_k, old_pano)
    np.testing.assert_array_equal(mask_k, old_mask)


def test_a_pitched_idealised_pinhole_gives_the_same_pixels_and_masks_every_column_it_fills():
    img = np.random.default_rng(1).integers(1, 256, (120, 160, 3), dtype=np.uint8)
    old_pano, old_mask = _legacy_pinhole_to_panorama(img, 90.0, PANO, 10.0, pitch_deg=15.0)
    pano, mask = pinhole_to_panorama(img, 90.0, PANO, 10.0, pitch_deg=15.0)
    np.testing.assert_array_equal(pano, old_pano)
    # the mask holds the columns with any of the image's pixels: the horizontal field of view, and
    # where the pitched image's upper corners reach further round
    np.testing.assert_array_equal(mask, (pano.max(axis=(0, 2)) > 0).astype(np.float32))
    assert np.all(mask >= old_mask) and 0 < mask.sum() - old_mask.sum() <= 12


def test_ground_input_of_the_idealised_pinhole_and_of_its_intrinsics_agree():
    from unifygeo_ros.inference.preprocess import ground_input

    img = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    a, ma = ground_input(img, Camera("pinhole", hfov_deg=90.0), (128, 256), heading_deg=30.0)
    b, mb = ground_input(img, Camera("pinhole", intrinsics=Intrinsics.ideal(640, 480, 90.0)), (128, 256),
                         heading_deg=30.0)
    np.testing.assert_array_equal(ma, mb)
    # the same except for the shrunk image's rounded height (the intrinsics scale fy with it)
    assert np.mean(np.abs(a.astype(int) - b.astype(int))) < 1.0


# ---- projection against hand computation and OpenCV ----------------------------------------------

K = dict(width=320, height=240, fx=250.0, fy=260.0, cx=150.0, cy=125.0)


def test_a_direction_lands_where_fx_fy_cx_cy_put_it():
    intr = Intrinsics(**K)
    for bearing, elevation in ((20.0, 10.0), (-35.0, -5.0), (0.0, 0.0)):
        u, v, seen = project(_direction(bearing, elevation), intr)
        t, p = math.radians(bearing), math.radians(elevation)
        assert seen
        assert u == pytest.approx(250.0 * math.tan(t) + 150.0, abs=1e-9)
        assert v == pytest.approx(-260.0 * math.tan(p) / math.cos(t) + 125.0, abs=1e-9)
    assert not project(_direction(120.0, 0.0), intr)[2]          # behind the camera


@pytest.mark.parametrize("model, index, value", [
    ("plumb_bob", 0, -0.2), ("plumb_bob", 1, 0.05), ("plumb_bob", 2, 0.01), ("plumb_bob", 3, -0.01),
    ("plumb_bob", 4, 0.02),
    ("rational_polynomial", 5, 0.1), ("rational_polynomial", 6, -0.05), ("rational_polynomial", 7, 0.02),
    ("equidistant", 0, 0.05), ("equidistant", 1, -0.01), ("equidistant", 2, 0.003), ("equidistant", 3, -0.001),
])
def test_each_distortion_coefficient_projects_as_opencv_does(model, index, value):
    d = [0.0] * {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}[model]
    d[index] = value
    intr = Intrinsics(**K, distortion=model, d=tuple(d))
    dirs = np.stack([_direction(b, e) for b in (-30.0, -10.0, 0.0, 15.0, 32.0) for e in (-20.0, 0.0, 8.0, 25.0)])
    u, v, seen = project(dirs.T, intr)
    assert seen.all()
    if model == "equidistant":
        ref, _ = cv2.fisheye.projectPoints(dirs[:, None, :], np.zeros(3), np.zeros(3), intr.k, np.array(d))
    else:
        ref, _ = cv2.projectPoints(dirs, np.zeros(3), np.zeros(3), intr.k, np.array(d))
    np.testing.assert_allclose(np.stack([u, v], axis=1), ref.reshape(-1, 2), atol=1e-6)


def test_one_coefficient_by_hand():
    # plumb_bob k1: u = fx a (1 + k1 r^2) + cx
    a, b = math.tan(math.radians(20.0)), 0.0
    u, v, _ = project(np.array([a, b, 1.0]), Intrinsics(**K, distortion="plumb_bob", d=(-0.2,)))
    assert (u, v) == pytest.approx((250.0 * a * (1 - 0.2 * a * a) + 150.0, 125.0))
    # equidistant without coefficients: the image radius grows with the angle itself, past 90 degrees
    for angle in (30.0, 100.0):
        u, v, seen = project(_direction(angle, 0.0), Intrinsics(**K, distortion="equidistant"))
        assert seen and (u, v) == pytest.approx((150.0 + 250.0 * math.radians(angle), 125.0))
    # tangential t1 moves along v: v = fy (b + t1 (r^2 + 2 b^2)) + cy
    u, v, _ = project(np.array([0.0, 0.1, 1.0]), Intrinsics(**K, distortion="plumb_bob", d=(0, 0, 0.01, 0, 0)))
    assert (u, v) == pytest.approx((150.0, 260.0 * (0.1 + 0.01 * 3 * 0.01) + 125.0))


def test_directions_beyond_the_fold_of_a_barrel_distortion_are_not_seen():
    intr = Intrinsics(**K, distortion="plumb_bob", d=(-0.3,))
    r_fold = max_radius(intr)                       # r (1 - 0.3 r^2) peaks at r = 1 / sqrt(0.9)
    assert r_fold == pytest.approx(1.0 / math.sqrt(0.9), rel=1e-3)
    inside = math.degrees(math.atan(0.95 * r_fold))
    beyond = math.degrees(math.atan(1.1 * r_fold))
    assert project(_direction(inside, 0.0), intr)[2] and not project(_direction(beyond, 0.0), intr)[2]
    assert max_radius(Intrinsics(**K)) == math.inf


# ---- pitch and roll -----------------------------------------------------------------------------

def test_pitch_and_roll_turn_the_view_as_expected():
    intr = Intrinsics(**K)
    t = math.tan(math.radians(10.0))
    # pitched up 20 degrees: elevation 20 is the principal point, the horizon lies below it
    rot = level_to_camera(pitch_deg=20.0)
    assert project(rot @ _direction(0.0, 20.0), intr)[:2] == pytest.approx((150.0, 125.0))
    assert project(rot @ _direction(0.0, 0.0), intr)[:2] == pytest.approx(
        (150.0, 125.0 + 260.0 * math.tan(math.radians(20.0))))
    # rolled 90 degrees (right side down): what is right of the axis appears above the centre, what is
    # above it appears on the left
    rot = level_to_camera(roll_deg=90.0)
    assert project(rot @ _direction(10.0, 0.0), intr)[:2] == pytest.approx((150.0, 125.0 - 260.0 * t))
    assert project(rot @ _direction(0.0, 10.0), intr)[:2] == pytest.approx((150.0 - 250.0 * t, 125.0))
    # a small roll of the horizon: a point right of the axis on the horizon moves up by ~ x sin(roll)
    rot = level_to_camera(roll_deg=5.0)
    u, v, _ = project(rot @ _direction(20.0, 0.0), intr)
    x = math.tan(math.radians(20.0))
    assert (u, v) == pytest.approx((150.0 + 250.0 * x * math.cos(math.radians(5.0)),
                                    125.0 - 260.0 * x * math.sin(math.radians(5.0))))
    # pitch first, then roll about the pitched optical axis: the optical axis stays at elevation 20
    rot = level_to_camera(pitch_deg=20.0, roll_deg=30.0)
    assert project(rot @ _direction(0.0, 20.0), intr)[:2] == pytest.approx((150.0, 125.0))


@pytest.mark.parametrize("model, d, pitch, roll", [
    ("plumb_bob", (-0.2, 0.03, 0.002, -0.001, 0.0), 0.0, 0.0),
    ("rational_polynomial", (0.1, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0, 0.0), 10.0, -15.0),
    ("equidistant", (0.02, -0.01, 0.0, 0.0), -10.0, 20.0),
])
def test_the_panorama_samples_the_image_where_each_direction_projects(model, d, pitch, roll):
    """A coordinate ramp placed in the panorama: every filled panorama pixel holds the image
    coordinates its direction projects to (bilinear sampling of a ramp is exact)."""
    intr = Intrinsics(**K, distortion=model, d=d)
    pano, mask = camera_to_panorama(_ramp(320, 240), intr, PANO, axis_offset_deg=25.0, pitch_deg=pitch,
                                    roll_deg=roll)
    filled = pano[..., 2] > 0.999
    assert 200 < filled.sum() and np.array_equal(mask, filled.any(axis=0).astype(np.float32))
    rows, cols = np.nonzero(filled)
    bearing = ((cols + 0.5) / PANO[1] - 0.5) * 360.0 - 25.0
    elevation = 90.0 - (rows + 0.5) / PANO[0] * 180.0
    dirs = np.stack([_direction(b, e) for b, e in zip(bearing, elevation)])
    cam = dirs @ level_to_camera(pitch, roll).T
    if model == "equidistant":
        ref, _ = cv2.fisheye.projectPoints(cam[:, None, :], np.zeros(3), np.zeros(3), intr.k, np.array(d))
    else:
        ref, _ = cv2.projectPoints(cam, np.zeros(3), np.zeros(3), intr.k, np.array(d))
    ref = ref.reshape(-1, 2)
    interior = (ref[:, 0] > 0.5) & (ref[:, 0] < 318.5) & (ref[:, 1] > 0.5) & (ref[:, 1] < 238.5)
    assert interior.sum() > 0.8 * len(interior)
    np.testing.assert_allclose(pano[rows, cols, :2][interior], ref[interior], atol=2e-3)


def test_the_mask_covers_the_expected_bearings():
    ph, pw = PANO
    bearing = ((np.arange(pw) + 0.5) / pw - 0.5) * 360.0
    img = np.full((240, 320, 3), 200, np.uint8)
    # off-centre principal point: from -atan((cx + 0.5) / fx) to atan((W - 0.5 - cx) / fx)
    intr = Intrinsics(**K)
    _, mask = camera_to_panorama(img, intr, PANO)
    lo, hi = -math.degrees(math.atan(150.5 / 250.0)), math.degrees(math.atan(169.5 / 250.0))
    np.testing.assert_array_equal(mask, ((bearing >= lo) & (bearing <= hi)).astype(np.float32))
    # rolled 90 degrees: the image's height spans the bearings (up in the image = right of the axis)
    _, mask = camera_to_panorama(img, intr, PANO, roll_deg=90.0)
    lo, hi = -math.degrees(math.atan(114.5 / 260.0)), math.degrees(math.atan(125.5 / 260.0))
    np.testing.assert_array_equal(mask, ((bearing >= lo) & (bearing <= hi)).astype(np.float32))
    # a fisheye strip (equidistant, a few degrees tall) spanning 200 degrees sees behind the camera
    fish = Intrinsics(400, 10, 400 / math.radians(200.0), 400 / math.radians(200.0), 199.5, 4.5, "equidistant")
    _, mask = camera_to_panorama(np.full((10, 400, 3), 200, np.uint8), fish, PANO, axis_offset_deg=180.0)
    rel = (bearing - 180.0 + 180.0) % 360.0 - 180.0
    np.testing.assert_array_equal(mask, (np.abs(rel) <= 100.0).astype(np.float32))
    assert mask.sum() == pytest.approx(200.0 / 360.0 * pw, abs=1)


# ---- CameraInfo files and messages --------------------------------------------------------------

CALIBRATION_YAML = """\
image_width: 640
image_height: 480
camera_name: front
camera_matrix:
  rows: 3
  cols: 3
  data: [500.5, 0.0, 321.2, 0.0, 502.1, 243.9, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.28, 0.07, 0.001, -0.0005, 0.0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [400, 0, 320, 0, 0, 400, 240, 0, 0, 0, 1, 0]
"""


def test_camera_info_files_of_camera_calibration_and_of_the_message_fields(tmp_path):
    f = tmp_path / "front.yaml"
    f.write_text(CALIBRATION_YAML)
    intr = read_camera_info(f)
    assert intr == Intrinsics(640, 480, 500.5, 502.1, 321.2, 243.9, "plumb_bob", (-0.28, 0.07, 0.001, -0.0005, 0.0))
    g = tmp_path / "fisheye.yaml"
    g.write_text("width: 800\nheight: 600\ndistortion_model: equidistant\nd: [0.1, -0.02, 0.003, 0.0]\n"
                 "k: [300, 0, 400, 0, 300, 300, 0, 0, 1]\n")
    assert read_camera_info(g) == Intrinsics(800, 600, 300.0, 300.0, 400.0, 300.0, "equidistant",
                                             (0.1, -0.02, 0.003, 0.0))
    # a message (any object with its fields), an empty model with no coefficients, 4 plumb_bob coefficients
    msg = NS(header=NS(frame_id="cam"), width=96, height=64, distortion_model="", d=[], k=[50.0, 0, 47.5, 0, 50.0,
             31.5, 0, 0, 1], binning_x=0, binning_y=0, roi=NS(x_offset=0, y_offset=0, width=0, height=0))
    assert intrinsics_from_camera_info(msg) == Intrinsics(96, 64, 50.0, 50.0, 47.5, 31.5)
    msg.distortion_model, msg.d = "plumb_bob", [0.1, 0.0, 0.0, 0.0]
    assert intrinsics_from_camera_info(msg).d == (0.1, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("text, expected", [
    ("", "expected a CameraInfo: image_width, image_height, camera_matrix.data"),
    ("[1, 2]", "expected a CameraInfo"),
    ("image_width: 640\nimage_height: 480\n", "missing camera_matrix (k), distortion_model"),
    ("width: 640\nheight: 480\nk: [1, 0, 0, 0, 1, 0, 0, 0, 1]\ndistortion_model: kannala\nd: []\n",
     "distortion_model 'kannala' is not supported; expected one of plumb_bob, rational_polynomial, equidistant"),
    ("width: 640\nheight: 480\nk: [1, 0, 0, 0, 1]\ndistortion_model: plumb_bob\nd: []\n",
     "camera matrix (k): expected 9 finite numbers"),
    ("width: 640\nheight: 480\nk: [1, 0.5, 0, 0, 1, 0, 0, 0, 1]\ndistortion_model: plumb_bob\nd: []\n", "no skew"),
    ("width: 640\nheight: 480\nk: [1, 0, 0, 0, 1, 0, 0, 0, 1]\ndistortion_model: equidistant\nd: [1, 2, 3, 4, 5]\n",
     "equidistant: expected at most 4 distortion coefficients"),
    ("width: 0\nheight: 480\nk: [1, 0, 0, 0, 1, 0, 0, 0, 1]\ndistortion_model: plumb_bob\n",
     "image width: expected an image size in pixels"),
    ("width: 640\nheight: 480\nk: [0, 0, 0, 0, 1, 0, 0, 0, 1]\ndistortion_model: plumb_bob\n",
     "expected finite fx, fy > 0"),
    ("width: 640\nheight: 480\nk: [1, 0, 0, 0, 1, 0, 0, 0, 1]\ndistortion_model: plumb_bob\nbinning_x: 2\n",
     "binning 2 x 0 is not supported"),
    ("image_width: [", "not YAML"),
])
def test_bad_camera_info_files_name_what_was_expected(tmp_path, text, expected):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(CameraInfoError, match=None) as err:
        read_camera_info(f)
    assert expected in str(err.value) and str(f) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CameraInfoError, match="file not found"):
        read_camera_info(tmp_path / "absent.yaml")


def test_intrinsics_scale_with_the_image_and_check_their_values():
    intr = Intrinsics(640, 480, 500.0, 510.0, 319.5, 239.5, "plumb_bob", (0.1,))
    half = intr.scaled(320, 240)
    assert (half.fx, half.fy, half.cx, half.cy, half.d) == (250.0, 255.0, 159.5, 119.5, intr.d)
    assert Intrinsics.ideal(640, 480, 90.0).hfov_deg() == pytest.approx(90.0)
    with pytest.raises(ValueError, match="expected either hfov_deg or intrinsics"):
        Camera("pinhole", hfov_deg=90.0, intrinsics=intr)
    with pytest.raises(ValueError, match="expected a pinhole camera"):
        Camera("panorama", intrinsics=intr)
    with pytest.raises(ValueError, match="camera roll: expected -180..180"):
        Camera("pinhole", hfov_deg=90.0, roll_deg=200.0)
    with pytest.raises(ValueError, match="distortion model 'fisheye' is not supported"):
        Intrinsics(640, 480, 500.0, 500.0, 320.0, 240.0, "fisheye")


# ---- the frame pipeline with CameraInfo ------------------------------------------------------------

class _RecordingLocalizer:
    backend_name = "fake"

    def __init__(self, frame):
        self.frame = frame
        self.cameras = []

    def localize(self, image, camera, prior=None, return_distribution=False, heading=None):
        from unifygeo_ros.types import LocalizationError

        self.cameras.append((image.shape, camera))
        raise LocalizationError("recorded")

    def close(self):
        pass


def _info(frame, w, h, model="plumb_bob", d=(0.0,) * 5):
    return NS(header=NS(frame_id=frame), width=w, height=h, k=[60.0, 0, (w - 1) / 2, 0, 60.0, (h - 1) / 2, 0, 0, 1],
              distortion_model=model, d=list(d), binning_x=0, binning_y=0,
              roi=NS(x_offset=0, y_offset=0, width=0, height=0))


def _img(frame, w, h):
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return NS(header=NS(stamp=NS(sec=1, nanosec=2), frame_id=frame), height=h, width=w, encoding="rgb8",
              step=w * 3, is_bigendian=0, data=rgb.tobytes())


def test_the_frame_pipeline_uses_the_latest_camera_info_of_the_images_frame():
    from unifygeo_ros.geo import MapFrame
    from unifygeo_ros.ros_core.config import ConfigError, NodeConfig
    from unifygeo_ros.ros_core.pipeline import FrameProcessor

    with pytest.raises(ConfigError, match="camera_info_topic '/cam/info': expected camera.model pinhole"):
        NodeConfig.from_params({"camera_info_topic": "/cam/info"}, require_database=False)
    cfg = NodeConfig.from_params({"camera.model": "pinhole", "camera_info_topic": "/cam/info",
                                  "camera.pitch_deg": 5.0, "camera.roll_deg": -2.0}, require_database=False)
    loc = _RecordingLocalizer(MapFrame.utm_at(*ORIGIN))
    proc = FrameProcessor(loc, cfg)
    assert proc.camera_info_status() == "waiting for the first CameraInfo on /cam/info"
    o = proc.process(_img("cam", 96, 64))
    assert o.failure == "camera_info" and "no CameraInfo received yet on /cam/info" in o.message and not loc.cameras

    assert proc.update_camera_info(_info("cam", 96, 64)) is None
    o = proc.process(_img("/cam", 96, 64))
    assert o.failure == "localization" and len(loc.cameras) == 1
    camera = loc.cameras[-1][1]
    assert camera.intrinsics == Intrinsics(96, 64, 60.0, 60.0, 47.5, 31.5)
    assert (camera.pitch_deg, camera.roll_deg, camera.hfov_deg) == (5.0, -2.0, None)
    assert proc.camera_info_status().startswith("cam: 96 x 64, fx 60.0")

    # another size than the calibrated one: refused as bad input before the localizer
    o = proc.process(_img("cam", 128, 64))
    assert o.failure == "image" and "128 x 64 pixels, but the CameraInfo of frame_id 'cam' is for 96 x 64" \
        in o.message and len(loc.cameras) == 1
    # another camera's frame_id
    o = proc.process(_img("other", 96, 64))
    assert o.failure == "camera_info" and "no CameraInfo for the image's frame_id 'other'" in o.message
    # an unusable CameraInfo: that frame's images are refused with the reason until a good one arrives
    problem = proc.update_camera_info(_info("cam", 96, 64, "kannala", (0.1,)))
    assert "CameraInfo of frame_id 'cam' not used: distortion_model 'kannala' is not supported" in problem
    o = proc.process(_img("cam", 96, 64))
    assert o.failure == "camera_info" and o.message == problem and problem in proc.camera_info_status()
    assert proc.update_camera_info(_info("cam", 96, 64, "equidistant", (0.01, 0, 0, 0))) is None
    proc.process(_img("cam", 96, 64))
    assert loc.cameras[-1][1].intrinsics.distortion == "equidistant"


# ---- unifygeo localize --camera-info -------------------------------------------------------------

def test_localize_cli_takes_a_camera_info_file(small_world, tmp_path, run_cli):
    from unifygeo_ros.sim.render import render_pinhole

    city = small_world["city"]
    rng = np.random.default_rng(7)
    x, y = city.street_positions(1, rng, min_clearance_m=2.0)[0]
    rgb = render_pinhole(city, (float(x), float(y)), 30.0, 90.0, 320, 240, camera_height_m=2.2)
    png = tmp_path / "view.png"
    cv2.imwrite(str(png), rgb[:, :, ::-1])
    info = tmp_path / "cam.yaml"
    # the renderer's camera: f = (W / 2) / tan(45 deg), principal point at the image centre
    info.write_text(CALIBRATION_YAML.replace("640", "320").replace("480", "240").replace(
        "[500.5, 0.0, 321.2, 0.0, 502.1, 243.9, 0.0, 0.0, 1.0]", "[160, 0, 159.5, 0, 160, 119.5, 0, 0, 1]").replace(
        "[-0.28, 0.07, 0.001, -0.0005, 0.0]", "[0, 0, 0, 0, 0]"))
    code, out = run_cli(["localize", str(png), "--db", str(small_world["db"]), "--camera-info", str(info),
                      "--heading", "30", "--json"])
    assert code in (0, 3), out
    res = json.loads(out.out)
    assert res["heading_mode"] == "known" and math.isfinite(res["x"]) and len(res["candidates"]) >= 1
    error = math.hypot(res["x"] - x, res["y"] - y)
    # the idealised camera of the same field of view is the same camera
    code, out = run_cli(["localize", str(png), "--db", str(small_world["db"]), "--fov", "90", "--heading", "30",
                      "--json"])
    same = json.loads(out.out)
    assert (same["tile_id"], same["x"], same["y"]) == (res["tile_id"], pytest.approx(res["x"], abs=1e-3),
                                                       pytest.approx(res["y"], abs=1e-3))

    # bad input: one line, exit 2, one JSON object with --json
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_width: 320\nimage_height: 240\n")
    code, out = run_cli(["localize", str(png), "--db", str(small_world["db"]), "--camera-info", str(bad), "--json"])
    assert code == 2 and out.out.count("\n") == 1
    err = json.loads(out.out)["error"]
    assert "missing camera_matrix (k), distortion_model" in err and str(bad) in err
    code, out = run_cli(["localize", str(png), "--db", str(small_world["db"]), "--camera-info", str(tmp_path / "no.yaml")])
    assert code == 2 and "file not found" in out.err and out.err.strip().count("\n") == 0
    info.write_text(info.read_text().replace("320", "640"))
    code, out = run_cli(["localize", str(png), "--db", str(small_world["db"]), "--camera-info", str(info), "--json"])
    assert code == 2 and "320 x 240 pixels, but --camera-info" in json.loads(out.out)["error"]
    code, out = run_cli(["localize", str(png), "--db", str(small_world["db"]), "--camera-info", str(info), "--fov", "90"])
    assert code == 2 and "not allowed with argument" in out.err
    print(f"pinhole view with its CameraInfo (shipped model): error {error:.1f} m, fix {res['fix']}")


def test_replay_feeds_the_bags_camera_info_to_the_frames(small_world, tmp_path):
    from unifygeo_ros.replay.core import ReplayError, ReplayOptions, run_replay
    from unifygeo_ros.ros_core.config import NodeConfig
    from unifygeo_ros.sim.drive import DriveConfig, write_drive_bag

    bag = tmp_path / "pinhole_drive"
    write_drive_bag(small_world["city"], bag, DriveConfig(duration_s=2.0, rate_hz=1.0, seed=3, camera="pinhole",
                                                          hfov_deg=90.0, pinhole_size=(160, 120)),
                    city_dir=small_world["city_dir"], progress=False)
    params = {"database": str(small_world["db"]), "min_confidence": 0.0, "camera.model": "pinhole",
              "image_topic": "/camera/front/image_raw", "camera_info_topic": "/camera/front/camera_info",
              "decoder_turns": 1}
    run = run_replay(NodeConfig.from_params(params), ReplayOptions(bag=bag, image_topic="/camera/front/image_raw",
                                                                   progress=False))
    kinds = [f.outcome.failure for f in run.frames]
    # every frame reached the localizer with the CameraInfo's camera (a fix, or the model's no fix)
    assert len(kinds) == 3 and set(kinds) <= {None, "no_fix", "low_confidence"}, [f.outcome.message for f in run.frames]
    with pytest.raises(ReplayError, match="camera_info_topic /camera/front/info: not in the bag"):
        run_replay(NodeConfig.from_params({**params, "camera_info_topic": "/camera/front/info"}),
                   ReplayOptions(bag=bag, image_topic="/camera/front/image_raw", progress=False))
    with pytest.raises(ReplayError, match="camera_info_topic /odom is nav_msgs/msg/Odometry; expected "
                                          "sensor_msgs/msg/CameraInfo"):
        run_replay(NodeConfig.from_params({**params, "camera_info_topic": "/odom"}),
                   ReplayOptions(bag=bag, image_topic="/camera/front/image_raw", progress=False))
