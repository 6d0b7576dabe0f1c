"""Training augmentations keep the ground/aerial pair geometrically consistent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unifygeo_ros.conventions import angle_diff_deg, bearing_to_panorama_column
from unifygeo_ros.training.augment import AugmentConfig, PairAugment

L, H, W = 128, 64, 256


def _scene(dot_rc, cam_rc):
    """A tile with one bright dot and a north-aligned panorama with one bright column
    exactly where the dot is seen from the camera."""
    aerial = torch.zeros(3, L, L)
    aerial[:, dot_rc[0], dot_rc[1]] = 1.0
    bearing = math.degrees(math.atan2((dot_rc[1] + 0.5) - cam_rc[1], cam_rc[0] - (dot_rc[0] + 0.5)))
    ground = torch.zeros(3, H, W)
    ground[:, :, int(bearing_to_panorama_column(bearing, W))] = 1.0
    return {"ground": ground, "aerial": aerial, "pixel": torch.tensor(cam_rc, dtype=torch.float32),
            "yaw_deg": torch.tensor(90.0), "pano_index": 0}


def _bearing_seen(sample):
    a = sample["aerial"][0]
    r, c = np.unravel_index(int(a.argmax()), a.shape)
    cr, cc = (float(v) for v in sample["pixel"])
    return math.degrees(math.atan2((c + 0.5) - cc, cr - (r + 0.5)))


def _bearing_in_panorama(sample):
    col = int(sample["ground"][0, 0].argmax())
    rel = ((col + 0.5) / W - 0.5) * 360.0
    forward = 90.0 - float(sample["yaw_deg"])          # ENU yaw -> bearing in the tile's frame
    return forward + rel


@pytest.mark.parametrize("seed", range(24))
def test_flip_rotation_and_heading_keep_the_pair_consistent(seed):
    cfg = AugmentConfig(flip=0.5, rotate=True, unknown_heading=0.7, fov=0.0, color_jitter=0.0,
                        grid_dropout=0.0, coarse_dropout=0.0)
    sample = _scene((30, 90), (70.3, 52.8))
    assert abs(angle_diff_deg(_bearing_seen(sample), _bearing_in_panorama(sample))) < 360 / W
    out = PairAugment(cfg)(sample, np.random.default_rng(seed))
    assert out["ground"].shape == (3, H, W) and out["aerial"].shape == (3, L, L)
    assert abs(angle_diff_deg(_bearing_seen(out), _bearing_in_panorama(out))) < 1.5 * 360 / W


def test_all_geometric_cases_are_reached():
    cfg = AugmentConfig(color_jitter=0.0, grid_dropout=0.0, coarse_dropout=0.0, unknown_heading=0.0)
    seen = set()
    for seed in range(64):
        out = PairAugment(cfg)(_scene((30, 90), (70.3, 52.8)), np.random.default_rng(seed))
        seen.add(tuple(np.round(out["pixel"].numpy(), 1)))
        assert float(out["yaw_deg"]) == pytest.approx(90.0)   # known heading: still facing the tile's up
    assert len(seen) == 8                                        # 2 flips x 4 rotations


def test_field_of_view_mask_is_centred_on_the_forward_direction():
    cfg = AugmentConfig(flip=0.0, rotate=False, fov=1.0, fov_range_deg=(90.0, 90.0), color_jitter=0.0,
                        grid_dropout=0.0, coarse_dropout=0.0)
    out = PairAugment(cfg)(_scene((30, 90), (70.3, 52.8)), np.random.default_rng(0))
    mask = out["column_mask"].numpy()
    assert mask.sum() == pytest.approx(W / 4, abs=1)
    assert mask[W // 2 - 1] == 1 and mask[W // 2] == 1 and mask[0] == 0 and mask[-1] == 0


def test_photometric_augmentations_stay_in_range_and_change_the_image():
    cfg = AugmentConfig(flip=0.0, rotate=False, color_jitter=0.3, grid_dropout=1.0, coarse_dropout=1.0)
    g = torch.Generator().manual_seed(0)
    sample = {"ground": torch.rand(3, H, W, generator=g), "aerial": torch.rand(3, L, L, generator=g),
              "pixel": torch.tensor([64.0, 64.0]), "yaw_deg": torch.tensor(90.0)}
    out = PairAugment(cfg)(sample, np.random.default_rng(3))
    for key in ("ground", "aerial"):
        assert float(out[key].min()) >= 0.0 and float(out[key].max()) <= 1.0
        assert not torch.allclose(out[key], sample[key])
    assert torch.equal(out["pixel"], sample["pixel"])
