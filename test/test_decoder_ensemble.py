"""The decoder's rotation ensemble (model/decoder_ensemble.py): hand-made cases and the real network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unifygeo_ros.model.alignment_search import one_hot_logprior, parabolic_offset
from unifygeo_ros.model.decoder_ensemble import (check_decoder_turns, decode_turn_ensemble, turn_back,
                                                 turned_alignments)
from unifygeo_ros.model.heading import heading_window_prior, known_heading_prior, unknown_heading_prior

K = 32
Q = K // 4
L = 12


def _fake_turns(match_by_turn: np.ndarray, d_true: np.ndarray, calls: list):
    """A decoder whose turn j has matching scores ``match_by_turn[j]`` (indexed by the turned
    tile's alignment) and whose D is ``d_true`` turned j quarters counter-clockwise, the
    same for every alignment except alignment 0 (a marker row)."""
    def decode_turn(j, aligns):
        calls.append((j, np.asarray(aligns).copy()))
        d = np.repeat(np.rot90(d_true, j)[None], len(aligns), axis=0).astype(np.float32)
        return {"match_score": match_by_turn[j][aligns].astype(np.float32)[:, None], "D": d,
                "alignment": np.asarray(aligns, dtype=np.int64), "m0_max": np.zeros(len(aligns), np.float32)}
    return decode_turn


def test_turned_alignments_and_turn_back():
    assert turned_alignments(np.array([0, 5, 31]), 1, 4, K).tolist() == [8, 13, 7]
    assert turned_alignments(np.array([0, 5, 31]), 3, 4, K).tolist() == [24, 29, 23]
    with pytest.raises(ValueError, match="not divisible"):
        turned_alignments(np.array([0]), 1, 4, 30)
    img = np.arange(16.0).reshape(4, 4)
    for j in range(4):
        assert np.array_equal(turn_back(np.rot90(img, j), j), img)
    with pytest.raises(ValueError, match="expected one of"):
        check_decoder_turns(2)


def test_ensemble_averages_the_turns_in_the_tiles_frame():
    """Hand-made scores: in the tile's frame each turn's profile is a bump around 10.3 with a
    spike elsewhere; no single turn peaks at 10 but their mean does, and the parabola through
    the mean gives the offset. The turns are looked up at b + j K / 4, not b - j K / 4."""
    b = np.arange(K)
    bump = -0.02 * (b - 10.3) ** 2
    wrong = {0: (11, 0.02), 1: (9, 0.05), 2: (12, 0.08), 3: (8, 0.15)}     # (where, spike): each turn alone
    tile_frame = np.stack([bump + spike * (b == at) for at, spike in wrong.values()])   # peaks elsewhere
    assert [int(np.argmax(row)) for row in tile_frame] == [11, 9, 12, 8]
    by_turn = np.stack([np.roll(tile_frame[j], j * Q) for j in range(4)])    # turned frame: index b + jQ
    d_true = np.zeros((L, L))
    d_true[2, 7] = 1.0
    calls: list = []
    ens = decode_turn_ensemble(_fake_turns(by_turn, d_true, calls), unknown_heading_prior(1, _Cfg).numpy()[0], K)
    mean = tile_frame.mean(axis=0)
    assert ens.alignment == 10 == int(np.argmax(mean))
    assert ens.offset == pytest.approx(parabolic_offset(mean[9], mean[10], mean[11]))
    assert 0.0 < ens.offset < 0.5
    np.testing.assert_allclose(ens.scores, mean, atol=1e-6)
    assert ens.decodes == 4 * K
    assert [j for j, _ in calls] == [0, 1, 2, 3]
    for j, aligns in calls:
        assert aligns.tolist() == ((np.arange(K) + j * Q) % K).tolist()
    # D of every turn, turned back, is the tile's D: the mean is it.
    np.testing.assert_allclose(ens.out["D"][0], d_true)
    assert int(ens.out["alignment"][0]) == 10
    assert float(ens.out["match_score"][0]) == pytest.approx(mean[10], abs=1e-6)
    # The opposite pairing (b - jQ) would have averaged other rows: a different profile.
    opposite = np.mean([np.roll(by_turn[j], j * Q) for j in range(4)], axis=0)
    assert not np.allclose(opposite, mean)


class _Cfg:
    heading_bins = K
    heading_bin_deg = 360.0 / K


def test_the_heading_prior_limits_the_alignments_decoded():
    by_turn = np.random.default_rng(0).normal(size=(4, K))
    d = np.ones((L, L)) / L ** 2
    calls: list = []
    ens = decode_turn_ensemble(_fake_turns(by_turn, d, calls), known_heading_prior(1, _Cfg).numpy()[0], K)
    assert ens.alignment == 0 and ens.offset == 0.0 and ens.decodes == 4
    assert [a.tolist() for _, a in calls] == [[0], [8], [16], [24]]
    assert np.isneginf(ens.scores[1:]).all()
    window = heading_window_prior(90.0 + 3 * 360.0 / K, 12.0, _Cfg).numpy()[0]
    allowed = np.flatnonzero(window == 0.0)
    calls.clear()
    ens = decode_turn_ensemble(_fake_turns(by_turn, d, calls), window, K)
    assert ens.alignment in allowed.tolist()
    assert ens.decodes == 4 * len(allowed)
    with pytest.raises(ValueError, match="excludes every alignment"):
        decode_turn_ensemble(_fake_turns(by_turn, d, calls), np.full(K, -1e4), K)
    with pytest.raises(ValueError, match="log-prior over 32"):
        decode_turn_ensemble(_fake_turns(by_turn, d, calls), np.zeros(K - 1), K)


def test_real_decoder_ensemble_follows_a_quarter_turn_of_the_tile():
    """Real network, untrained weights: turning the tile a quarter counter-clockwise permutes
    the four decoded turns, so the ensemble's scores move by K / 4 alignments and its D
    and yaw field turn with the tile, while a single turn's scores do not follow."""
    from unifygeo_ros.model.unifygeo import UnifyGeo
    from unifygeo_ros.model.retrieval import turned_tiles

    torch.manual_seed(0)
    model = UnifyGeo("small").eval()
    cfg = model.cfg
    pano = torch.rand(1, 3, *cfg.ground_size)
    tile = torch.rand(1, 3, cfg.aerial_size, cfg.aerial_size)
    with torch.no_grad():
        g = model.encode_ground(pano)

    def ensemble(t):
        with torch.no_grad():
            feats = model.encode_aerial(turned_tiles(t, 4)[0])["features"]

        def decode_turn(j, aligns):
            n = len(aligns)
            gb = {"descriptors": [d.expand(n, *d.shape[1:]) for d in g["descriptors"]],
                  "valid": g["valid"].expand(n, -1, -1)}
            with torch.no_grad():
                out = model.decode(gb, {"features": [f[j:j + 1].expand(n, *f.shape[1:]) for f in feats]},
                                   torch.from_numpy(one_hot_logprior(aligns, cfg.heading_bins)))
            return {"match_score": out["match_score"].numpy(), "D": out["D"].numpy(),
                    "yaw_field": out["yaw_field"].numpy()}
        return decode_turn_ensemble(decode_turn, np.zeros(cfg.heading_bins), cfg.heading_bins)

    base = ensemble(tile)
    turned = ensemble(torch.rot90(tile, 1, dims=(-2, -1)))
    kq = cfg.heading_bins // 4
    np.testing.assert_allclose(turned.scores, np.roll(base.scores, kq), atol=1e-5)
    assert turned.alignment == (base.alignment + kq) % cfg.heading_bins
    np.testing.assert_allclose(turned.out["D"][0], np.rot90(base.out["D"][0]), atol=1e-6)
    np.testing.assert_allclose(turned.out["yaw_field"][0], np.rot90(base.out["yaw_field"][0], axes=(-2, -1)),
                               atol=1e-5)
