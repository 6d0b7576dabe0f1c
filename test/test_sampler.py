"""Training batches: no false negatives, geographic hard negatives, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from unifygeo_ros.training.sampler import ConflictFreeBatchSampler


def _grid_samples(n_side=12, per_tile=2, seed=0):
    """Cameras on a grid of tiles; each camera's tiles: its own and the 3 neighbours towards it."""
    rng = np.random.default_rng(seed)
    positives, tiles, positions = [], [], []
    for ty in range(n_side):
        for tx in range(n_side):
            for _ in range(per_tile):
                dx, dy = rng.uniform(-0.5, 0.5, size=2)
                sx, sy = (1 if dx > 0 else -1), (1 if dy > 0 else -1)
                tid = lambda x, y: y * 100 + x  # noqa: E731
                positives.append(tid(tx, ty))
                tiles.append({tid(tx, ty), tid(tx + sx, ty), tid(tx, ty + sy), tid(tx + sx, ty + sy)})
                positions.append(((tx + dx) * 32.0, (ty + dy) * 32.0))
    return np.array(positives), tiles, np.array(positions)


def _check_batches(sampler, positives, tiles):
    seen = []
    for batch in sampler:
        assert len(batch) == sampler.batch_size
        for a in batch:
            for b in batch:
                if a != b:
                    assert positives[b] not in tiles[a], "a tile of one sample holds another's camera"
        seen += batch
    assert len(seen) == len(set(seen))                     # each sample at most once per epoch
    return seen


def test_batches_have_no_false_negatives_and_cover_the_data():
    positives, tiles, positions = _grid_samples()
    sampler = ConflictFreeBatchSampler(positives, tiles, positions, batch_size=16, hard_fraction=0.0, seed=1)
    seen = _check_batches(sampler, positives, tiles)
    assert len(seen) >= 0.9 * len(positives)


def test_hard_batches_are_geographic_neighbourhoods():
    positives, tiles, positions = _grid_samples(n_side=30, per_tile=1)     # about 1 km across
    hard = ConflictFreeBatchSampler(positives, tiles, positions, batch_size=16, hard_fraction=1.0, seed=1)
    hard.set_epoch(1)
    seen = _check_batches(hard, positives, tiles)
    assert len(seen) >= 0.8 * len(positives)
    rand = ConflictFreeBatchSampler(positives, tiles, positions, batch_size=16, hard_fraction=0.0, seed=1)
    rand.set_epoch(1)

    def spread(s):   # median distance of a batch's samples from their centroid
        return np.median([np.median(np.linalg.norm(positions[b] - positions[b].mean(0), axis=1)) for b in s])
    assert spread(hard) < 0.5 * spread(rand)


def test_same_epoch_same_batches():
    positives, tiles, positions = _grid_samples()
    a = ConflictFreeBatchSampler(positives, tiles, positions, 16, 0.5, seed=3)
    b = ConflictFreeBatchSampler(positives, tiles, positions, 16, 0.5, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


def test_too_few_samples_is_refused():
    with pytest.raises(ValueError, match="at least one full batch"):
        ConflictFreeBatchSampler(np.array([1, 2]), [{1}, {2}], np.zeros((2, 2)), batch_size=4)


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="batch size: expected >= 1, got 0"):
        ConflictFreeBatchSampler(np.array([1, 2]), [{1}, {2}], np.zeros((2, 2)), batch_size=0)
