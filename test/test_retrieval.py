"""Retrieval over heading alignments (inference/retrieval.py), checked by brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unifygeo_ros.inference.retrieval import (
    alignment_descriptors,
    best_alignment_scores,
    ensemble_queries,
    ensemble_references,
    merge_alignment_hits,
    query_descriptors,
    turned_tiles,
)
from unifygeo_ros.model.heading import (
    heading_window_prior,
    known_heading_prior,
    unknown_heading_prior,
)
from unifygeo_ros.model_config import SMALL


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


def test_rotation_ensemble_scores_are_the_mean_of_the_turns_cosines():
    rng = np.random.default_rng(3)
    k, d, turns = 16, 6, 4
    align = rng.normal(size=(k, d))
    align /= np.linalg.norm(align, axis=1, keepdims=True)
    tile = rng.normal(size=(1, turns, d))
    tile /= np.linalg.norm(tile, axis=2, keepdims=True)
    q, t = ensemble_queries(align, turns), ensemble_references(tile)[0]
    assert q.shape == (k, turns * d)
    for a in range(k):       # alignment a + j K/4 is the panorama turned with the tile's j-th quarter turn
        expect = np.mean([align[(a + j * k // turns) % k] @ tile[0, j] for j in range(turns)])
        assert q[a] @ t == pytest.approx(expect)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0)
    np.testing.assert_allclose(ensemble_queries(align, 1), align)
    with pytest.raises(ValueError, match="turns"):
        ensemble_queries(align, 3)
    with pytest.raises(ValueError, match="not divisible"):
        ensemble_queries(align[:6], 4)
    # query_descriptors: a known heading (one copy, W' whole-column alignments) keeps alignment 0
    # with its turned partners; an unknown heading keeps every alignment.
    cols = rng.normal(size=(1, SMALL.ground_columns, d))
    np.testing.assert_allclose(query_descriptors(cols, known_heading_prior(1, SMALL).numpy()[0], turns),
                               ensemble_queries(cols[0], turns)[:1], rtol=1e-6)
    rolls = rng.normal(size=(SMALL.heading_subdivisions, SMALL.ground_columns, d))
    np.testing.assert_allclose(query_descriptors(rolls, unknown_heading_prior(1, SMALL).numpy()[0], turns),
                               ensemble_queries(alignment_descriptors(rolls), turns), rtol=1e-6)


def test_turned_tiles_agree_in_numpy_and_torch():
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    out = turned_tiles(x, 4)
    assert out.shape == (2, 4, 3, 8, 8)
    np.testing.assert_array_equal(out, turned_tiles(torch.from_numpy(x), 4).numpy())
    np.testing.assert_array_equal(out[:, 1, :, 0, :], x[:, :, :, -1])   # counter-clockwise: the east column goes north


def test_rotation_ensemble_is_unchanged_by_a_synchronised_quarter_turn():
    """Turning the tile a quarter counter-clockwise and the panorama with it (as the training's
    synchronised rotation does) permutes the ensemble's four terms: the known-heading score
    stays the same. With the wrong pairing direction it would not."""
    from unifygeo_ros.model.unifygeo import UnifyGeo
    from unifygeo_ros.training.augment import roll_panorama

    torch.manual_seed(0)
    model = UnifyGeo("small").eval()
    for agg in (model.ground.aggregator, model.aerial.aggregator):    # a layout term that matters
        torch.nn.init.normal_(agg.layout_proj.weight, std=0.5)
    pano = torch.rand(1, 3, *SMALL.ground_size)
    tile = torch.rand(1, 3, SMALL.aerial_size, SMALL.aerial_size)
    width = SMALL.ground_size[1]

    def score(p, t):
        with torch.no_grad():
            q = ensemble_queries(model.encode_ground(p, subdivisions=False)["global_alignments"][0].numpy(), 4)[0]
            ref = ensemble_references(model.encode_aerial(turned_tiles(t, 4)[0])["global"][None].numpy())[0]
        return float(q @ ref), float(q[:SMALL.descriptor_dim] @ ref[:SMALL.descriptor_dim])

    base, base_single = score(pano, tile)
    turned, turned_single = score(roll_panorama(pano, width // 4), torch.rot90(tile, 1, dims=(-2, -1)))
    assert turned == pytest.approx(base, abs=1e-5)
    assert abs(turned_single - base_single) > 1e-3        # a single descriptor pair does change


@pytest.mark.parametrize("seed", range(3))
def test_ensemble_search_rescores_the_index_shortlist(seed):
    """The index proposes tiles by turn 0; the ensemble re-scores them. With a shortlist
    covering the database the result is the exact ensemble top-k; a smaller shortlist only
    ever returns tiles with their exact ensemble score."""
    import faiss

    from unifygeo_ros.inference.retrieval import (
        ensemble_search,
        first_turn,
        shortlist_size,
    )

    rng = np.random.default_rng(seed)
    n, d, k_align, turns, k = 400, 8, 8, 4, 5
    tiles = rng.normal(size=(n, turns, d))
    tiles /= np.linalg.norm(tiles, axis=2, keepdims=True)
    refs = ensemble_references(tiles).astype(np.float32)
    align = rng.normal(size=(k_align, d))
    align /= np.linalg.norm(align, axis=1, keepdims=True)
    queries = ensemble_queries(align, turns).astype(np.float32)
    index = faiss.IndexFlatIP(d)
    index.add(first_turn(refs, turns))
    np.testing.assert_allclose(first_turn(refs, turns), tiles[:, 0], atol=1e-6)
    exact = best_alignment_scores(queries, refs)
    assert shortlist_size(k, n) == 50 and shortlist_size(40, n) == n
    scores, ids = ensemble_search(index.search, refs, queries, k, turns, n)
    assert len(ids) == k == len(set(ids.tolist()))
    np.testing.assert_allclose(scores, exact[ids], rtol=1e-6)
    assert list(scores) == sorted(scores, reverse=True)
    # A shortlist of every tile: the exact ensemble top-k.
    _, whole = ensemble_search(index.search, refs, queries, 40, turns, n)
    np.testing.assert_array_equal(whole, np.argsort(-exact, kind="stable")[:40])
    # One turn: the index's merged search as it is.
    one = ensemble_search(index.search, tiles[:, 0], align, k, 1, n)
    np.testing.assert_array_equal(one[1], np.argsort(-best_alignment_scores(align, tiles[:, 0]), kind="stable")[:k])
