"""The alignment search (unknown heading): candidates, the forced decodes, the choice by
matching score and the sub-bin refinement, on hand-made scores; then with the real decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unifygeo_ros.backends.base import Backend
from unifygeo_ros.inference.alignment_search import (
    AlignmentSearch,
    candidate_alignments,
    one_hot_logprior,
    parabolic_offset,
    search_alignments,
)
from unifygeo_ros.inference.heading import EXCLUDED
from unifygeo_ros.model.heading import heading_window_prior, unknown_heading_prior
from unifygeo_ros.model.unifygeo import UnifyGeo


def test_candidates_are_the_best_alignments_and_their_neighbours():
    scores = np.zeros((2, 8))
    scores[0, [2, 6]] = [0.9, 0.8]
    scores[1, [0, 7]] = [0.7, 0.95]
    got = candidate_alignments(scores, np.zeros(8), n=2)
    assert got[0].tolist() == [1, 2, 3, 5, 6, 7]
    assert got[1].tolist() == [0, 1, 6, 7]                       # wraps around: 7's neighbour is 0, 0's is 7
    # A prior excludes alignments: neither chosen nor added as neighbours.
    prior = np.full(8, EXCLUDED)
    prior[[5, 6, 7]] = 0.0
    assert candidate_alignments(scores[:1], prior, n=4)[0].tolist() == [5, 6, 7]
    with pytest.raises(ValueError, match="excludes every alignment"):
        candidate_alignments(scores[:1], np.full(8, EXCLUDED), n=1)
    with pytest.raises(ValueError, match="n >= 1"):
        candidate_alignments(scores, np.zeros(8), n=0)


def test_parabolic_offset_finds_the_vertex():
    f = lambda x: 3.0 - 0.7 * (x - 0.3) ** 2       # noqa: E731  vertex at +0.3 bins
    assert parabolic_offset(f(-1), f(0), f(1)) == pytest.approx(0.3)
    assert parabolic_offset(1.0, 2.0, 1.0) == 0.0
    assert parabolic_offset(1.0, 1.0, 1.0) == 0.0                # flat: no refinement
    assert parabolic_offset(0.0, 1.0, 1.2) == 0.5                # vertex at 0.75: clipped to half a bin
    assert parabolic_offset(0.0, 1.0, 5.0) == 0.0                # convex: no refinement


def test_one_hot_logprior_forces_each_row():
    p = one_hot_logprior(np.array([3, 0]), 4)
    assert p.dtype == np.float32 and p.tolist() == [[EXCLUDED, EXCLUDED, EXCLUDED, 0.0], [0.0, EXCLUDED, EXCLUDED, EXCLUDED]]


def test_search_picks_the_best_matching_alignment_per_tile():
    """The first pass ranks alignment 9 first on tile 0, but the matching score peaks at 4
    (in the first pass's top 3), 0.2 bins past it; tile 1 peaks at its top alignment 20."""
    k = 32
    first = np.zeros((2, k))
    first[0, [9, 4, 17]] = [0.9, 0.8, 0.7]
    first[1, [20, 2, 3]] = [0.9, 0.5, 0.4]
    peak = {0: 4.2, 1: 20.0}
    calls = []

    def decode_rows(tiles, aligns):
        calls.append((tiles.copy(), aligns.copy()))
        d = (aligns - np.array([peak[t] for t in tiles]) + 16) % 32 - 16
        return {"match_score": 2.0 - 0.05 * d ** 2, "D": np.stack([np.full(3, t) for t in tiles])}

    res = search_alignments(decode_rows, first, np.zeros(k), n=3)
    assert isinstance(res, AlignmentSearch)
    assert res.alignment.tolist() == [4, 20]
    assert res.offset == pytest.approx([0.2, 0.0])
    assert res.decodes == len(calls[0][1]) == 9 + 7      # tile 0: 3 best + 6 neighbours; tile 1: 2 and 3 adjoin
    per_tile = res.per_tile()
    assert per_tile["D"][:, 0].tolist() == [0, 1]         # each tile's own row
    with pytest.raises(ValueError, match="expected 16 match scores"):
        search_alignments(lambda t, a: {"match_score": np.zeros(3)}, first, np.zeros(k), n=3)


def test_search_with_the_decoder_recovers_a_turned_panorama():
    """Real decoder, untrained weights: the aerial tile carries the descriptors of the
    panorama turned by 5 whole columns at every level's centre cell, so the matching score
    is highest at the alignment that undoes the turn, and the search must find it whatever
    the first pass ranked first."""
    torch.manual_seed(0)
    model = UnifyGeo("small").eval()
    cfg = model.cfg
    r = cfg.heading_subdivisions
    pano = torch.randn(1, 3, *cfg.ground_size)
    with torch.no_grad():
        g = model.encode_ground(pano)
        a = model.encode_aerial(torch.randn(1, 3, cfg.aerial_size, cfg.aerial_size))
    shift = 5
    true_k = shift * r
    # Plant, at level 0, the panorama's level-0 descriptor rolled by `shift` columns.
    planted = torch.roll(g["descriptors"][0][0, 0], shifts=-shift, dims=-1).flatten()
    a["features"][0][0, :, 1, 1] = planted * 2.0 + 0.3

    def decode(prior):
        n = prior.shape[0]
        gb = {"descriptors": [d.expand(n, *d.shape[1:]) for d in g["descriptors"]],
              "valid": g["valid"].expand(n, -1, -1)}
        ab = {"features": [f.expand(n, *f.shape[1:]) for f in a["features"]]}
        with torch.no_grad():
            out = model.decode(gb, ab, prior)
        return {k2: v.numpy() for k2, v in out.items() if isinstance(v, torch.Tensor)}

    first = decode(unknown_heading_prior(1, cfg))
    assert int(first["shift"][0]) == true_k                    # M^0 alone finds it here too
    scores = first["shift_scores"].copy()
    scores[0, (true_k + 9) % cfg.heading_bins] = 5.0           # a first pass that ranks a wrong one first
    def forced(tiles, aligns):
        return decode(torch.from_numpy(one_hot_logprior(aligns, cfg.heading_bins)))

    res = search_alignments(forced, scores, np.zeros(cfg.heading_bins), n=2)
    assert res.alignment.tolist() == [true_k]
    # A heading window that excludes the truth keeps the search inside the window.
    window = heading_window_prior(90.0, 20.0, cfg).numpy()[0]
    res = search_alignments(forced, scores, window, n=2)
    assert window[res.alignment[0]] == 0.0


class _Counting(Backend):
    name = "counting"
    max_batch = {"decoder": 4}

    def __init__(self):
        self.batches = []

    def _run(self, module, feeds):
        n = len(next(iter(feeds.values())))
        self.batches.append(n)
        return {"rows": np.asarray(feeds["heading_logprior"])[:, 0].copy(), "n": np.full(n, n)}


def test_backend_splits_batches_larger_than_its_limit():
    be = _Counting()
    feeds = {name: np.zeros((10, 1)) for name in
             ["ground_desc0", "ground_desc1", "ground_desc2", "ground_desc3", "column_valid", "aerial_feat0",
              "aerial_feat1", "aerial_feat2", "aerial_feat3"]}
    feeds["heading_logprior"] = np.arange(10, dtype=np.float32)[:, None]
    out = be.decode(feeds)
    assert be.batches == [4, 4, 2]
    assert out["rows"].tolist() == list(range(10))             # order kept
    be.batches.clear()
    be.decode({k: v[:3] for k, v in feeds.items()})
    assert be.batches == [3]


def test_reusing_the_first_pass_row_changes_nothing_but_the_work():
    """The decoder forced to the alignment it picked itself computes the same outputs, so the
    search may reuse the first pass's row for it: same choice, same outputs, fewer decodes."""
    from unifygeo_ros.evaluation.evaluate import _decode

    torch.manual_seed(1)
    model = UnifyGeo("small").eval()
    cfg = model.cfg
    tiles = 3
    with torch.no_grad():
        g = model.encode_ground(torch.randn(1, 3, *cfg.ground_size))
        feats = model.encode_aerial(torch.randn(tiles, 3, cfg.aerial_size, cfg.aerial_size))["features"]
    ground = {"descriptors": [d.expand(tiles, *d.shape[1:]) for d in g["descriptors"]],
              "valid": g["valid"].expand(tiles, -1, -1)}
    first = _decode(model, ground, feats, unknown_heading_prior(tiles, cfg))

    def decode_rows(rows, aligns):
        idx = torch.as_tensor(rows, dtype=torch.long)
        sub = {"descriptors": [d[idx] for d in ground["descriptors"]], "valid": ground["valid"][idx]}
        return _decode(model, sub, [f[idx] for f in feats], torch.from_numpy(one_hot_logprior(aligns, cfg.heading_bins)))

    prior = np.zeros(cfg.heading_bins)
    plain = search_alignments(decode_rows, first["alignment_scores"], prior, n=3)
    reused = search_alignments(decode_rows, first["alignment_scores"], prior, n=3, first=first)
    assert reused.decodes == plain.decodes - tiles              # each tile's first-pass alignment is a candidate
    np.testing.assert_array_equal(reused.alignment, plain.alignment)
    np.testing.assert_allclose(reused.offset, plain.offset, atol=1e-6)
    a, b = plain.per_tile(), reused.per_tile()
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-5, err_msg=name)
    with pytest.raises(ValueError, match="lacks outputs"):
        search_alignments(decode_rows, first["alignment_scores"], prior, n=3,
                          first={"alignment": first["alignment"]})
