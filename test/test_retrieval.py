"""Retrieval over heading alignments (model/retrieval.py), checked by brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unifygeo_ros.model.config import SMALL
from unifygeo_ros.model.heading import heading_window_prior, known_heading_prior, unknown_heading_prior
from unifygeo_ros.model.retrieval import (alignment_descriptors, best_alignment_scores, merge_alignment_hits,
                                          query_descriptors)


def test_alignment_order_is_the_decoders_and_the_models():
    r, w, d = 4, 8, 3
    rolls = np.zeros((r, w, d), dtype=np.float32)
    for copy in range(r):
        for s in range(w):
            rolls[copy, s] = (copy, s, s * r + copy)            # the third value is the alignment k
    out = alignment_descriptors(rolls)
    assert out.shape == (r * w, d)
    assert out[:, 2].tolist() == list(range(r * w))
    np.testing.assert_array_equal(alignment_descriptors(torch.from_numpy(rolls)[None])[0].numpy(), out)


def test_query_descriptors_follow_the_heading_prior():
    rolls = np.random.default_rng(0).normal(size=(SMALL.heading_subdivisions, SMALL.ground_columns, 5))
    every = alignment_descriptors(rolls)
    assert query_descriptors(rolls, unknown_heading_prior(1, SMALL).numpy()[0]).shape == (SMALL.heading_bins, 5)
    # A heading window of +-20 deg around ENU yaw 90 + 45 allows the alignments near k = 4.
    window = heading_window_prior([135.0], 20.0, SMALL).numpy()[0]
    allowed = np.flatnonzero(window > -1)
    np.testing.assert_allclose(query_descriptors(rolls, window), every[allowed].astype(np.float32))
    assert 4 in allowed and 0 not in allowed
    # A known heading: one copy (the turned panorama), only its unrolled descriptor.
    one = rolls[:1]
    np.testing.assert_allclose(query_descriptors(one, known_heading_prior(1, SMALL).numpy()[0]), one[0, :1])
    with pytest.raises(ValueError, match="excludes every alignment"):
        query_descriptors(rolls, np.full(SMALL.heading_bins, -1e4))


@pytest.mark.parametrize("seed", range(5))
def test_merged_per_alignment_top_k_is_the_exact_best_over_alignments(seed):
    rng = np.random.default_rng(seed)
    refs = rng.normal(size=(300, 16)).astype(np.float32)
    queries = rng.normal(size=(7, 16)).astype(np.float32)
    k = 10
    per = refs @ queries.T                                     # (N, A)
    top = np.argsort(-per, axis=0)[:k].T                       # (A, k) per-alignment top-k
    scores, ids = merge_alignment_hits(np.take_along_axis(per.T, top, axis=1), top, k)
    best = best_alignment_scores(queries, refs)
    np.testing.assert_array_equal(ids, np.argsort(-best, kind="stable")[:k])
    np.testing.assert_allclose(scores, best[ids], rtol=1e-6)


def test_merge_keeps_each_tile_once_with_its_best_score_and_drops_padding():
    scores = np.array([[0.9, 0.5, 0.1], [0.7, 0.6, -1.0]])
    ids = np.array([[3, 1, 2], [1, 4, -1]])
    s, i = merge_alignment_hits(scores, ids, 3)
    assert i.tolist() == [3, 1, 4] and np.allclose(s, [0.9, 0.7, 0.6])
