"""Pinhole views and camera rigs drawn in training are what the localizer makes of pinhole images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unifygeo_ros.inference.fov import place_camera
from unifygeo_ros.inference.rig import compose_rig
from unifygeo_ros.training.augment import AugmentConfig, PairAugment, camera_view_mask, draw_camera_view
from unifygeo_ros.types import Camera, Intrinsics

PANO_HW = (128, 256)


@pytest.mark.parametrize("hfov, width, height, pitch", [(90.0, 320, 240, 0.0), (60.0, 640, 360, 4.0),
                                                        (120.0, 400, 250, -5.0)])
def test_a_pinhole_views_coverage_is_the_localizers(hfov, width, height, pitch):
    image = np.full((height, width, 3), 200, np.uint8)
    _, inside = place_camera(image, Intrinsics.ideal(width, height, hfov), PANO_HW, pitch_deg=pitch)
    mask = camera_view_mask(PANO_HW, hfov, width / height, pitch)
    assert np.mean(mask != inside) < 0.002          # the image's pixel grid aside, the same pixels
    # by hand: a level 90-degree 4:3 camera sees bearings within +-45 deg and, on its axis,
    # elevations within +-atan(0.75) = 36.9 deg
    if pitch == 0.0 and hfov == 90.0:
        cols = np.flatnonzero(mask.any(axis=0))
        bearings = (cols + 0.5) / PANO_HW[1] * 360.0 - 180.0
        assert bearings.min() == pytest.approx(-45.0, abs=1.5) and bearings.max() == pytest.approx(45.0, abs=1.5)
        rows = np.flatnonzero(mask[:, PANO_HW[1] // 2])
        elev = 90.0 - (rows + 0.5) / PANO_HW[0] * 180.0
        assert elev.max() == pytest.approx(36.87, abs=1.5) and elev.min() == pytest.approx(-36.87, abs=1.5)


def test_a_rigs_coverage_is_the_composed_panoramas():
    image = np.full((240, 320, 3), 200, np.uint8)
    yaws = (0.0, 90.0, -90.0, 180.0)
    pano, column_mask = compose_rig([image] * 4, [Camera("pinhole", hfov_deg=90.0)] * 4, yaws, PANO_HW)
    mask = camera_view_mask(PANO_HW, 90.0, 4 / 3, 0.0, yaws)
    assert np.array_equal(mask, pano[..., 0] > 0)
    assert np.array_equal(mask.any(axis=0), column_mask > 0)
    left = np.flatnonzero(camera_view_mask(PANO_HW, 90.0, 4 / 3, 0.0, (90.0,)).any(axis=0))
    assert left.max() < PANO_HW[1] // 2            # a camera turned left looks left of the centre column


def test_augmented_pinhole_views_are_black_outside_the_frusta():
    rng = np.random.default_rng(0)
    sample = {"ground": torch.rand(3, *PANO_HW) * 0.8 + 0.1, "aerial": torch.rand(3, 128, 128),
              "pixel": torch.tensor([60.0, 70.0]), "yaw_deg": torch.tensor(30.0), "mpp": torch.tensor(0.5)}
    augment = PairAugment(AugmentConfig(pinhole=0.5, rig=0.5, grid_dropout=0, coarse_dropout=0))
    widths = []
    for i in range(40):
        out = augment(dict(sample), np.random.default_rng((7, i)))
        black = (out["ground"] == 0).all(dim=0)
        assert black.any() and not black.all()
        covered = (~black).any(dim=0).float()
        assert torch.equal(covered, out["column_mask"])
        widths.append(int(out["column_mask"].sum()))
    # single cameras of 60-120 deg cover 43-86 of 256 columns; rigs more
    assert min(widths) >= 42 and max(widths) > 86
    views = [draw_camera_view(AugmentConfig(pinhole=0.35, rig=0.25), rng) for _ in range(2000)]
    share = np.mean([v is not None for v in views])
    assert share == pytest.approx(0.6, abs=0.04)
    assert all(60 <= v["hfov_deg"] <= 120 and abs(v["pitch_deg"]) <= 5 for v in views if v)
    # the other recipes draw nothing for it: their random stream is unchanged
    assert draw_camera_view(AugmentConfig(), rng) is None
