"""Camera rigs composed into one masked panorama (``inference/rig.py``), the localizer's
:class:`Rig` frames and ``unifygeo localize --rig-camera``.

Hand-computed columns: in a W = 256 panorama, column ``c`` looks at bearing
``((c + 0.5) / 256 - 0.5) * 360`` degrees (clockwise from the centre column, the forward
direction). A 90-degree camera at yaw +90 (a left camera, REP-103) has its axis at bearing
-90 and sees bearings -135..-45: columns 32..95, the left quarter of the middle half."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from unifygeo_ros.inference.preprocess import ground_input
from unifygeo_ros.inference.rig import axis_bearing_deg, compose_rig
from unifygeo_ros.types import Camera, LocalizationError, Rig


PANO = (64, 256)
CAM90 = Camera("pinhole", hfov_deg=90.0)


def _flat(colour, w=64, h=48):
    return np.full((h, w, 3), colour, np.uint8)


def _columns(mask):
    return [int(c) for c in np.flatnonzero(mask)]


def test_a_left_camera_fills_the_columns_around_bearing_minus_90():
    ramp = np.tile(np.linspace(10, 250, 64).astype(np.uint8)[None, :, None], (48, 1, 3))
    pano, mask = compose_rig([ramp], [CAM90], [90.0], PANO)
    assert _columns(mask) == list(range(32, 96))
    assert not pano[:, :32].any() and not pano[:, 96:].any()
    # the image's left edge lies at the span's left side (bearing grows to the right, as in the image)
    horizon = pano[PANO[0] // 2, 32:96, 0].astype(int)
    assert horizon[0] < 20 and horizon[-1] > 240 and np.all(np.diff(horizon) >= 0)
    assert axis_bearing_deg(90.0) == -90.0 and axis_bearing_deg(-90.0) == 90.0 and axis_bearing_deg(180.0) == -180.0
    # a right camera: the mirror span
    _, right = compose_rig([ramp], [CAM90], [-90.0], PANO)
    assert _columns(right) == list(range(160, 224))


def test_four_90_degree_cameras_cover_every_column_each_with_its_own_quarter():
    colours = {0.0: 50, 90.0: 100, -90.0: 150, 180.0: 200}
    pano, mask = compose_rig([_flat(c) for c in colours.values()], [CAM90] * 4, list(colours), PANO)
    assert mask.min() == 1.0
    row = pano[PANO[0] // 2, :, 0]
    assert set(row[:32]) == {200} and set(row[224:]) == {200}      # back: both edges
    assert set(row[32:96]) == {100}                                # left
    assert set(row[96:160]) == {50}                                # front: the centre
    assert set(row[160:224]) == {150}                              # right


def test_a_front_and_back_pair_covers_two_spans():
    pano, mask = compose_rig([_flat(60), _flat(220)], [CAM90, CAM90], [0.0, 180.0], PANO)
    assert _columns(mask) == list(range(0, 32)) + list(range(96, 160)) + list(range(224, 256))
    row = pano[PANO[0] // 2, :, 0]
    assert set(row[96:160]) == {60} and set(row[:32]) == {220} and set(row[224:]) == {220}
    assert not pano[:, 32:96].any() and not pano[:, 160:224].any()


def test_overlapping_views_take_the_camera_whose_axis_is_closest():
    cam120 = Camera("pinhole", hfov_deg=120.0)
    # front sees bearings -60..60 (columns 85..170), left -150..-30 (columns 21..106); they meet at -45
    # (between columns 95 and 96), whichever camera comes first
    for order in (1, -1):
        imgs, yaws = [_flat(70), _flat(180)][::order], [0.0, 90.0][::order]
        pano, mask = compose_rig(imgs, [cam120, cam120], yaws, PANO)
        assert _columns(mask) == list(range(21, 171))
        row = pano[PANO[0] // 2, :, 0]
        assert set(row[21:96]) == {180} and set(row[96:171]) == {70}


def test_ground_input_of_a_rig_matches_its_single_camera_and_places_a_known_heading():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for heading in (None, 30.0, -120.0):
        single = ground_input(img, CAM90, PANO, heading)
        rig = ground_input([img], Rig((CAM90,), (0.0,)), PANO, heading)
        assert np.array_equal(single[0], rig[0]) and np.array_equal(single[1], rig[1])
    # the tile-up panorama of a known heading h: the rig's forward direction at compass 90 - h
    left = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    pano, mask = ground_input([img, left], Rig((CAM90, CAM90), (0.0, 90.0)), PANO, 0.0)   # forward = east
    # east is bearing 90 of a north-up panorama (columns 160..223); the left camera looks north (96..159)
    assert _columns(mask) == list(range(96, 224))


def test_a_rig_is_checked_and_its_images_too():
    with pytest.raises(ValueError, match="one yaw per camera"):
        Rig((CAM90, CAM90), (0.0,))
    with pytest.raises(ValueError, match="expected a pinhole Camera"):
        Rig((Camera(),), (0.0,))
    with pytest.raises(ValueError, match="at least one camera"):
        Rig((), ())
    with pytest.raises(ValueError, match="finite yaws"):
        Rig((CAM90,), (float("nan"),))
    assert Rig([CAM90], [90]).yaws_deg == (90.0,) and Rig([CAM90], [90]).model == "pinhole"
    from unifygeo_ros.inference.preprocess import check_rig_images

    rig = Rig((CAM90, CAM90), (0.0, 180.0))
    good = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    with pytest.raises(LocalizationError, match="expected 2 images"):
        check_rig_images([good], rig)
    with pytest.raises(LocalizationError, match=r"camera 1 \(yaw 180 deg\): image: no content"):
        check_rig_images([good, _flat(0)], rig)
    with pytest.raises(LocalizationError, match="expected a list of 2 images"):
        check_rig_images(good, rig)


# ---- the localizer and unifygeo localize --rig-camera ---------------------------------------------

def test_localize_cli_takes_a_camera_rig(small_world, tmp_path, run_cli):
    from unifygeo_ros.sim.render import render_pinhole

    city = small_world["city"]
    rng = np.random.default_rng(7)
    x, y = city.street_positions(1, rng, min_clearance_m=2.0)[0]
    heading = 30.0
    yaws = (0.0, 90.0, -90.0, 180.0)
    pngs = []
    for i, yaw in enumerate(yaws):
        rgb = render_pinhole(city, (float(x), float(y)), heading + yaw, 90.0, 160, 120, camera_height_m=2.2)
        pngs.append(tmp_path / f"cam{i}.png")
        cv2.imwrite(str(pngs[-1]), rgb[:, :, ::-1])
    info = tmp_path / "cam.yaml"
    info.write_text("image_width: 160\nimage_height: 120\ncamera_matrix: {rows: 3, cols: 3, data: [80, 0, 79.5, 0, "
                    "80, 59.5, 0, 0, 1]}\ndistortion_model: plumb_bob\ndistortion_coefficients: {rows: 1, cols: 5, "
                    "data: [0, 0, 0, 0, 0]}\n")
    db = str(small_world["db"])
    rig = ["--rig-camera", f"{pngs[0]},0,90", "--rig-camera", f"{pngs[1]},90,{info}",
           "--rig-camera", f"{pngs[2]},-90", "--rig-camera", f"{pngs[3]},180"]
    code, out = run_cli(["localize", "--db", db, *rig, "--fov", "90", "--heading", str(heading), "--json"])
    assert code in (0, 3), out
    res = json.loads(out.out)
    assert res["heading_mode"] == "known" and math.isfinite(res["x"]) and len(res["candidates"]) >= 1
    assert [c["yaw_deg"] for c in res["rig"]] == list(yaws) and res["rig"][1]["camera"] == str(info)
    assert res["rig"][0]["camera"] == {"hfov_deg": 90.0} and "image" not in res
    error = math.hypot(res["x"] - x, res["y"] - y)

    # the same frame through the library: the same answer
    from unifygeo_ros.localizer.localizer import Localizer

    loc = Localizer.open(db)
    images = [cv2.imread(str(p))[:, :, ::-1].copy() for p in pngs]
    lib = loc.localize(images, Rig((Camera("pinhole", hfov_deg=90.0),) * 4, yaws), heading=heading)
    assert lib.tile_id == res["tile_id"] and lib.x == pytest.approx(res["x"], abs=1e-3)
    with pytest.raises(LocalizationError, match="expected 4 images"):
        loc.localize(images[:3], Rig((Camera("pinhole", hfov_deg=90.0),) * 4, yaws))
    loc.close()

    # bad input: one line naming what was expected, exit 2, one JSON object with --json
    cases = [
        (["--rig-camera", str(pngs[0]), "--fov", "90"], "expected IMAGE,YAW_DEG[,FOV_DEG|,CAMERA_INFO_YAML]"),
        (["--rig-camera", f"{pngs[0]},left,90"], "expected IMAGE,YAW_DEG"),
        (["--rig-camera", f"{pngs[0]},90"], "no camera; expected IMAGE,YAW_DEG"),
        (["--rig-camera", f"{tmp_path / 'none.png'},90,90"], "image not found"),
        (["--rig-camera", f"{pngs[0]},90,{tmp_path / 'no.yaml'}"], "file not found"),
        (["--rig-camera", f"{pngs[0]},90,200"], "1 <= hfov_deg < 180"),
        ([str(pngs[0]), "--rig-camera", f"{pngs[0]},90,90"], "either IMAGE or --rig-camera"),
        ([], "expected an IMAGE"),
    ]
    info.write_text(info.read_text().replace("160", "320"))
    cases.append((["--rig-camera", f"{pngs[0]},0,{info}"], "is 160 x 120 pixels, but the CameraInfo"))
    for extra, expected in cases:
        code, out = run_cli(["localize", "--db", db, *extra, "--json"])
        assert code == 2 and out.out.count("\n") == 1, (extra, out)
        assert expected in json.loads(out.out)["error"], (extra, out.out)
        code, out = run_cli(["localize", "--db", db, *extra])
        assert code == 2 and out.err.strip().count("\n") == 0 and expected in out.err, (extra, out.err)
    print(f"four-camera rig (shipped model): error {error:.1f} m, fix {res['fix']}")
