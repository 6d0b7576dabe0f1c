"""The decoder's rotation and mirror ensemble (inference/decoder_ensemble.py): hand-made cases and the real network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unifygeo_ros.inference.alignment_search import one_hot_logprior, parabolic_offset
from unifygeo_ros.inference.decoder_ensemble import (
    check_decoder_turns,
    decode_turn_ensemble,
    member_alignments,
    member_back,
    member_tiles,
    mirror_panorama,
    turn_back,
)
from unifygeo_ros.model.heading import (
    heading_window_prior,
    known_heading_prior,
    unknown_heading_prior,
)

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


def test_member_alignments_tiles_and_back():
    b = np.array([0, 5, 31])
    assert member_alignments(b, 0, K).tolist() == [0, 5, 31]
    assert member_alignments(b, 1, K).tolist() == [8, 13, 7]
    assert member_alignments(b, 3, K).tolist() == [24, 29, 23]
    assert member_alignments(b, 4, K).tolist() == [0, 27, 1]          # mirrored: -b
    assert member_alignments(b, 5, K).tolist() == [8, 3, 9]           # mirrored, a quarter turn: -b + K/4
    with pytest.raises(ValueError, match="not divisible"):
        member_alignments(np.array([0]), 1, 30)
    img = np.arange(16.0).reshape(4, 4)
    for j in range(4):
        assert np.array_equal(turn_back(np.rot90(img, j), j), img)
    tiles = member_tiles(img[None, None], 8)[0, :, 0]
    assert np.array_equal(tiles[4], img[:, ::-1]) and np.array_equal(tiles[5], np.rot90(img[:, ::-1]))
    for j in range(8):
        assert np.array_equal(member_back(tiles[j], j), img)
    torch_tiles = member_tiles(torch.from_numpy(img)[None, None], 8)[0, :, 0].numpy()
    np.testing.assert_array_equal(torch_tiles, tiles)
    assert member_tiles(img[None, None], 4).shape[1] == 4
    # A yaw field (cos, sin) of the offset phi: the mirror maps phi -> 180 - phi.
    phi = np.radians(80.0)
    field = np.stack([np.full((4, 4), np.cos(phi)), np.full((4, 4), np.sin(phi))])
    back = member_back(member_tiles(field[None], 8)[0, 4], 4, vector=True)
    assert np.degrees(np.arctan2(back[1], back[0]))[0, 0] == pytest.approx(100.0)
    assert np.array_equal(mirror_panorama(np.arange(4)), [3, 2, 1, 0])
    for bad in (2, 3, 16):
        with pytest.raises(ValueError, match="expected one of"):
            check_decoder_turns(bad)


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


def test_mirrored_members_are_looked_up_at_minus_b_and_flipped_back():
    """Eight members: the mirrored four see the tile's alignment b at -b + jK/4 and D flipped
    left-right; their bump lies at 9.6 in the tile's frame, the turns' at 10.3, so the mean
    of all eight peaks at 10 only if both pairings are right."""
    b = np.arange(K)
    turns = np.stack([np.roll(-0.02 * (b - 10.3) ** 2, j * Q) for j in range(4)])
    mirrors = np.stack([-0.02 * (b - 9.6) ** 2] * 4)                       # in the tile's frame
    # member frame a = -b + jQ <=> tile frame b = -a + jQ
    by_member = np.concatenate([turns, np.stack([m[(-b + j * Q) % K] for j, m in enumerate(mirrors)])])
    d_true = np.zeros((L, L))
    d_true[2, 7] = 1.0
    field = np.zeros((2, L, L))
    field[0], field[1] = np.cos(np.radians(85.0)), np.sin(np.radians(85.0))
    calls: list = []

    def decode(j, aligns):
        calls.append((j, np.asarray(aligns).copy()))
        tile = member_tiles(np.stack([d_true, d_true, d_true])[None], 8)[0, j, 0]
        f = member_tiles(field[None], 8)[0, j]
        if j >= 4:
            f = f.copy()
            f[0] *= -1                                                      # phi -> 180 - phi
        n = len(aligns)
        return {"match_score": by_member[j][aligns][:, None], "D": np.repeat(tile[None], n, 0),
                "yaw_field": np.repeat(f[None], n, 0), "alignment": np.asarray(aligns)}

    ens = decode_turn_ensemble(decode, unknown_heading_prior(1, _Cfg).numpy()[0], K, turns=8)
    mean = (-0.02 * (b - 10.3) ** 2 - 0.02 * (b - 9.6) ** 2) / 2
    np.testing.assert_allclose(ens.scores, mean, atol=1e-9)
    assert ens.alignment == 10 and ens.decodes == 8 * K
    assert [j for j, _ in calls] == list(range(8))
    assert calls[4][1].tolist() == ((-b) % K).tolist() and calls[6][1].tolist() == ((-b + 2 * Q) % K).tolist()
    np.testing.assert_allclose(ens.out["D"][0], d_true, atol=1e-12)
    np.testing.assert_allclose(ens.out["yaw_field"][0], field, atol=1e-12)


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
    calls.clear()
    ens8 = decode_turn_ensemble(_fake_turns(np.concatenate([by_turn, by_turn]), d, calls),
                                known_heading_prior(1, _Cfg).numpy()[0], K, turns=8)
    assert ens8.decodes == 8 and [a.tolist() for _, a in calls] == [[0], [8], [16], [24]] * 2
    with pytest.raises(ValueError, match="excludes every alignment"):
        decode_turn_ensemble(_fake_turns(by_turn, d, calls), np.full(K, -1e4), K)
    with pytest.raises(ValueError, match="log-prior over 32"):
        decode_turn_ensemble(_fake_turns(by_turn, d, calls), np.zeros(K - 1), K)


def test_real_decoder_ensemble_follows_a_quarter_turn_of_the_tile():
    """Real network, untrained weights: turning the tile a quarter counter-clockwise permutes
    the four decoded turns, so the ensemble's scores move by K / 4 alignments and its D
    and yaw field turn with the tile, while a single turn's scores do not follow."""
    from unifygeo_ros.inference.retrieval import turned_tiles
    from unifygeo_ros.model.unifygeo import UnifyGeo

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


def test_real_decoder_ensemble_of_eight_is_mirror_symmetric():
    """Real network, untrained weights: mirroring the panorama and the tile together swaps the
    turns with the mirrored turns, so the eight-member ensemble's scores read b at -b, its D
    is mirrored and its yaw offset phi becomes 180 - phi; four members alone are not."""
    from unifygeo_ros.model.unifygeo import UnifyGeo

    torch.manual_seed(1)
    model = UnifyGeo("small").eval()
    cfg = model.cfg
    k = cfg.heading_bins
    pano = torch.rand(1, 3, *cfg.ground_size)
    tile = torch.rand(1, 3, cfg.aerial_size, cfg.aerial_size)

    def ensemble(p, t, turns):
        with torch.no_grad():
            grounds = [model.encode_ground(p), model.encode_ground(mirror_panorama(p))]
            feats = model.encode_aerial(member_tiles(t, turns)[0])["features"]

        def decode_turn(j, aligns):
            n, g = len(aligns), grounds[int(j >= 4)]
            gb = {"descriptors": [d.expand(n, *d.shape[1:]) for d in g["descriptors"]],
                  "valid": g["valid"].expand(n, -1, -1)}
            with torch.no_grad():
                out = model.decode(gb, {"features": [f[j:j + 1].expand(n, *f.shape[1:]) for f in feats]},
                                   torch.from_numpy(one_hot_logprior(aligns, k)))
            return {"match_score": out["match_score"].numpy(), "D": out["D"].numpy(),
                    "yaw_field": out["yaw_field"].numpy()}
        return decode_turn_ensemble(decode_turn, window, k, turns)

    window = heading_window_prior(90.0, 25.0, cfg).numpy()[0]      # alignments -2 .. 2: a mirror-symmetric set
    assert np.flatnonzero(window == 0.0).tolist() == [0, 1, 2, k - 2, k - 1]
    base = ensemble(pano, tile, 8)
    mirrored = ensemble(torch.flip(pano, dims=[-1]), torch.flip(tile, dims=[-1]), 8)
    np.testing.assert_allclose(mirrored.scores, base.scores[(-np.arange(k)) % k], atol=1e-5)
    assert mirrored.alignment == (-base.alignment) % k
    np.testing.assert_allclose(mirrored.out["D"][0], base.out["D"][0][:, ::-1], atol=1e-6)
    expect = base.out["yaw_field"][0][:, :, ::-1].copy()
    expect[0] *= -1
    np.testing.assert_allclose(mirrored.out["yaw_field"][0], expect, atol=1e-5)
    four = ensemble(pano, tile, 4).scores
    four_m = ensemble(torch.flip(pano, dims=[-1]), torch.flip(tile, dims=[-1]), 4).scores
    allowed = np.isfinite(four)
    assert not np.allclose(four_m[allowed], four[(-np.arange(k)) % k][allowed], atol=1e-5)
