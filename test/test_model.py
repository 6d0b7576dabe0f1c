"""The UnifyGeo network: sizes, D, re-ranking, losses, heading search, field of view, inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unifygeo_ros.conventions import rotate_panorama
from unifygeo_ros.inference.fov import pinhole_to_panorama
from unifygeo_ros.inference.heading import true_alignment, yaw_from_alignment
from unifygeo_ros.inference.rerank import (
    check_tile_choice,
    consensus,
    rerank,
    rerank_output,
)
from unifygeo_ros.model.heading import (
    heading_window_prior,
    known_heading_prior,
    teacher_prior,
    unknown_heading_prior,
)
from unifygeo_ros.model.losses import unifygeo_loss
from unifygeo_ros.model.unifygeo import UnifyGeo, load_checkpoint, save_checkpoint
from unifygeo_ros.model_config import PAPER, SMALL, get_config

PAPER_REFERENCE = 57_700_330


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {"small": UnifyGeo("small").eval(), "paper": UnifyGeo("paper").eval()}


def _pair_batch(model, b, seed=0):
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    ground = torch.randn(b, 3, *cfg.ground_size, generator=g)
    aerial = torch.randn(b, 3, cfg.aerial_size, cfg.aerial_size, generator=g)
    return ground, aerial


@pytest.mark.parametrize("name", ["small", "paper"])
def test_shapes_at_every_level(models, name):
    model = models[name]
    cfg = model.cfg
    ground, aerial = _pair_batch(model, 2)
    with torch.no_grad():
        g = model.encode_ground(ground)
        a = model.encode_aerial(aerial)
        out = model.decode(g, a, unknown_heading_prior(2, cfg))
    r, cols = cfg.heading_subdivisions, cfg.ground_columns
    assert g["global"].shape == (2, cfg.descriptor_dim)
    assert torch.allclose(g["global"].norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(a["global"].norm(dim=1), torch.ones(2), atol=1e-5)
    for level in range(4):
        cells, ch, cc = cfg.level_cells[level], cfg.level_channels[level], cfg.column_channels[level]
        assert g["descriptors"][level].shape == (2, r, cc, cols)
        assert cc * cols == ch                                    # f_g^l matches level l's channels
        assert a["features"][level].shape == (2, ch, cells, cells)
        assert out["matching"][level].shape == (2, cells, cells)
    expected_cells = {"paper": (12, 24, 48, 96), "small": (4, 8, 16, 32)}[name]
    assert cfg.level_cells == expected_cells
    if name == "paper":
        assert cfg.level_channels == (768, 384, 192, 96) and cfg.ground_feature_size == (12, 24)
    side = cfg.aerial_size
    assert out["D"].shape == (2, side, side)
    assert out["yaw_field"].shape == (2, 2, side, side)
    assert out["shift_scores"].shape == (2, cfg.heading_bins)
    assert out["m0_max"].shape == (2,)


@pytest.mark.parametrize("name", ["small", "paper"])
def test_D_sums_to_one_per_sample(models, name):
    model = models[name]
    ground, aerial = _pair_batch(model, 3, seed=5)
    with torch.no_grad():
        out = model(ground, aerial)
    sums = out["D"].double().sum(dim=(1, 2))
    assert torch.allclose(sums, torch.ones(3, dtype=torch.float64), atol=1e-4)
    assert bool((out["D"] >= 0).all())
    assert bool(torch.isfinite(out["yaw_field"]).all())


def test_channels_last_layout_computes_the_same_outputs(models):
    """Training runs the model in NHWC (channels_last); every output must equal the NCHW one."""
    import copy

    model = models["small"]
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    ground, aerial = _pair_batch(model, 2, seed=7)
    with torch.no_grad():
        ref = model(ground, aerial)
        out = nhwc(ground.contiguous(memory_format=torch.channels_last),
                   aerial.contiguous(memory_format=torch.channels_last))
    assert set(out) == set(ref)
    for key, value in ref.items():
        for a, b in zip(value if isinstance(value, list) else [value], out[key] if isinstance(value, list) else [out[key]]):
            if torch.is_tensor(a) and a.is_floating_point():
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()) + 1e-7), key


def test_paper_parameter_count(models):
    model = models["paper"]
    without_yaw = model.parameter_count() - model.yaw_head_parameters()
    assert model.yaw_head_parameters() > 0
    assert abs(without_yaw / PAPER_REFERENCE - 1.0) < 0.02, without_yaw


def test_m0_max_is_the_decoders_own_level0_maximum(models):
    """Re-ranking reuses M^0 from the decoder: m0_max must be the max of matching[0]."""
    model = models["small"]
    ground, aerial = _pair_batch(model, 4, seed=3)
    with torch.no_grad():
        out = model(ground, aerial)
    assert torch.allclose(out["m0_max"], out["matching"][0].flatten(1).max(dim=1).values)
    chosen = out["shift_scores"].gather(1, out["shift"][:, None]).squeeze(1)
    assert torch.allclose(out["m0_max"], chosen)
    # The default re-ranking term: the maxima of the four matching levels, averaged.
    levels = torch.stack([m.flatten(1).max(dim=1).values for m in out["matching"]], dim=1)
    assert len(out["matching"]) == 4
    assert torch.allclose(out["match_score"], levels.mean(dim=1))


def test_rerank_picks_highest_combined_score():
    retrieval = [0.90, 0.85, 0.80, 0.70, 0.60]
    m0 = [0.10, 0.50, 0.20, 0.00, 0.95]
    order, combined = rerank(retrieval, m0)
    assert order[0] == 4                              # 0.60 + 0.95 beats 0.90 + 0.10
    np.testing.assert_allclose(combined, np.add(retrieval, m0))
    assert list(order) == list(np.argsort(-np.add(retrieval, m0), kind="stable"))
    order, _ = rerank([0.5, 0.4], [0.1, 0.1])         # a tie on M^0 keeps the retrieval order
    assert list(order) == [0, 1]
    with pytest.raises(ValueError, match="one matching score per candidate"):
        rerank([0.5, 0.4], [0.1])
    assert rerank_output("matching") == "match_score" and rerank_output("m0") == "m0_max"
    with pytest.raises(ValueError, match="expected one of"):
        rerank_output("m1")


def _peaked(side: int, row: int, col: int, peak: float) -> np.ndarray:
    d = np.full((side, side), (1.0 - peak) / (side * side - 1))
    d[row, col] = peak
    return d


def test_consensus_prefers_the_place_two_overlapping_candidates_confirm():
    """Hand-computed: 4 x 4 tiles at 1 m/px. Tiles 0 and 1 overlap (centres 2 m apart) and
    both peak at the map point (0.5, 0.5): tile 0 at pixel (1, 2) with 0.7, tile 1 at (1, 0)
    with 0.6. Tile 2, 100 m away, has the best re-ranking score and a 0.9 peak."""
    d = np.stack([_peaked(4, 1, 2, 0.7), _peaked(4, 1, 0, 0.6), _peaked(4, 0, 0, 0.9)])
    centers = [[0.0, 0.0], [2.0, 0.0], [100.0, 0.0]]
    combined = [0.0, 0.0, 1.0]
    assert rerank([0.0, 0.0, 0.5], [0.0, 0.0, 0.5])[0][0] == 2          # the paper's choice
    # beta 0: equal weights 1/3; supports (0.7 + 0.6) / 3 for tiles 0 and 1, 0.9 / 3 for tile 2.
    order, support = consensus(d, centers, 1.0, combined, beta=0.0, window=1)
    np.testing.assert_allclose(support, [1.3 / 3, 1.3 / 3, 0.3])
    assert list(order) == [0, 1, 2]                   # the tie between 0 and 1 keeps their order
    # beta ln 2: weights 1/4, 1/4, 1/2; supports 0.25 * 0.7 + 0.25 * 0.6 = 0.325 and 0.45.
    order, support = consensus(d, centers, 1.0, combined, beta=np.log(2.0), window=1)
    np.testing.assert_allclose(support, [0.325, 0.325, 0.45])
    assert list(order) == [2, 0, 1]
    # A 3 x 3 window: tile 0 sums rows 0-2, cols 1-3 (0.7 + 8 x 0.02); tile 1 rows 0-2, cols 0-1
    # (the window's left column is off the tile: 0.6 + 5 x 0.4 / 15).
    order, support = consensus(d, centers, 1.0, combined, beta=0.0, window=3)
    np.testing.assert_allclose(support[:2], [(0.86 + 0.6 + 5 * 0.4 / 15) / 3] * 2)
    np.testing.assert_allclose(support[2], (0.9 + 3 * 0.1 / 15) / 3)
    assert list(order) == [0, 1, 2]
    # Metres per pixel per candidate: tile 1 at 2 m/px puts the point (0.5, 0.5) at pixel
    # (floor(2 - 0.25), floor(2 - 0.75)) = (1, 1), where D_1 has only 0.4 / 15.
    _, support = consensus(d, centers, [1.0, 2.0, 1.0], combined, beta=0.0, window=1)
    np.testing.assert_allclose(support[0], (0.7 + 0.4 / 15) / 3)


def test_consensus_edge_cases_and_bad_input():
    one = _peaked(8, 3, 4, 0.5)[None]
    order, support = consensus(one, [[5.0, -3.0]], 0.5, [0.2])
    assert list(order) == [0] and support[0] == pytest.approx(0.5 + 8 * 0.5 / 63)   # its own 3 x 3 window
    with pytest.raises(ValueError, match=r"\(K, L, L\)"):
        consensus(np.zeros((2, 4, 5)), [[0, 0], [1, 1]], 1.0, [0, 0])
    with pytest.raises(ValueError, match=r"\(2, 2\) centres and 2 scores"):
        consensus(np.zeros((2, 4, 4)), [[0, 0]], 1.0, [0, 0])
    with pytest.raises(ValueError, match="finite"):
        consensus(np.full((1, 4, 4), np.nan), [[0, 0]], 1.0, [0])
    with pytest.raises(ValueError, match="odd window"):
        consensus(one, [[0, 0]], 1.0, [0], window=2)
    assert check_tile_choice("consensus") == "consensus"
    with pytest.raises(ValueError, match="expected one of consensus, rerank"):
        check_tile_choice("best")


def test_rerank_with_the_decoder_finds_the_matching_tile():
    """Five candidate tiles; the one whose level-0 cell carries the query's own descriptor
    wins after re-ranking although its retrieval score is the lowest."""
    torch.manual_seed(1)
    model = UnifyGeo("small").eval()
    cfg = model.cfg
    pano = torch.randn(1, 3, *cfg.ground_size)
    with torch.no_grad():
        g = model.encode_ground(pano)
        a = model.encode_aerial(torch.randn(5, 3, cfg.aerial_size, cfg.aerial_size))
        target = g["descriptors"][0][0, 0].flatten()              # aligned, level 0
        a["features"][0][3, :, 1, 2] = target * 3.0 + 0.5          # LN removes scale and offset
        gb = {"descriptors": [d.expand(5, *d.shape[1:]) for d in g["descriptors"]],
              "valid": g["valid"].expand(5, -1, -1)}
        out = model.decode(gb, a, known_heading_prior(5, cfg))
    order, _ = rerank([0.9, 0.8, 0.7, 0.6, 0.5], out["m0_max"].numpy())
    assert order[0] == 3
    assert out["m0_max"][3] > 0.999
    assert int(out["matching"][0][3].argmax()) == 1 * cfg.level_cells[0] + 2


def test_total_loss_halves_in_50_steps():
    torch.manual_seed(0)
    model = UnifyGeo("small").train()
    cfg = model.cfg
    ground, aerial = _pair_batch(model, 8, seed=11)
    g = torch.Generator().manual_seed(12)
    rows = torch.rand(8, generator=g) * cfg.aerial_size / 2 + cfg.aerial_size / 4
    cols = torch.rand(8, generator=g) * cfg.aerial_size / 2 + cfg.aerial_size / 4
    yaw = np.full(8, 90.0)
    k, field = true_alignment(yaw, cfg, whole_columns=True)
    k, field = torch.from_numpy(k), torch.from_numpy(field)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.04)
    losses = []
    for _ in range(50):
        out = model(ground, aerial, heading_logprior=teacher_prior(k, cfg))
        terms = unifygeo_loss(out, model, rows, cols, field, k, bin_stride=cfg.heading_subdivisions)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        losses.append(float(terms["total"].detach()))
    assert set(terms) == {"D", "G", "M", "R", "yaw", "total"}
    assert losses[-1] <= 0.5 * losses[0], (losses[0], losses[-1])


# ---- unknown heading -------------------------------------------------------------------------

def test_ground_encoder_is_equivariant_to_whole_stride_rolls():
    torch.manual_seed(3)
    model = UnifyGeo("small").eval()
    torch.nn.init.normal_(model.ground.aggregator.layout_proj.weight, std=0.05)   # a trained layout term
    pano = torch.randn(1, 3, *model.cfg.ground_size)
    with torch.no_grad():
        ref = model.ground(pano)
        rolled = model.ground(torch.roll(pano, shifts=-3 * 32, dims=-1))   # turn clockwise by 3 columns
    for a, b in zip(ref[1:5], rolled[1:5]):
        assert torch.allclose(torch.roll(a, shifts=-3, dims=-1), b, atol=1e-5)
    # The global descriptor keeps the layout: the turned panorama's is the reference's rolled
    # by 3 columns (global_rolls row 3), and no longer the reference's own.
    assert torch.allclose(ref[-1][:, 3], rolled[0], atol=1e-5)
    assert torch.allclose(ref[-1][:, 0], ref[0])
    assert not torch.allclose(ref[0], rolled[0], atol=1e-3)
    # encode_ground arranges them by alignment k = s * R + r, the decoder's order.
    with torch.no_grad():
        g = model.encode_ground(pano, subdivisions=True)
        r = model.cfg.heading_subdivisions
        turned = model.encode_ground(torch.roll(pano, shifts=-(3 * 32 + 2 * 32 // r), dims=-1), subdivisions=False)
    assert g["global_alignments"].shape == (1, model.cfg.heading_bins, model.cfg.descriptor_dim)
    assert torch.allclose(g["global_alignments"][0, 3 * r + 2], turned["global"][0], atol=1e-4)


@pytest.mark.parametrize("s,r0", [(0, 0), (3, 0), (5, 2), (7, 3), (1, 1)])
def test_unknown_heading_recovers_a_known_roll(s, r0):
    torch.manual_seed(2)
    model = UnifyGeo("small").eval()
    cfg = model.cfg
    h, w = cfg.ground_size
    pano = torch.rand(1, 3, h, w)                                        # north-aligned
    pixels = s * cfg.stride + r0 * cfg.stride // cfg.heading_subdivisions
    turned = torch.roll(pano, shifts=pixels, dims=-1)                    # rolled right: counter-clockwise
    # Same turn through the conventions helper: forward bearing -pixels/W*360.
    np.testing.assert_array_equal(turned[0].permute(1, 2, 0).numpy(),
                                  rotate_panorama(pano[0].permute(1, 2, 0).numpy(), -pixels / w * 360.0))
    with torch.no_grad():
        ref = model.encode_ground(pano)
        aerial = model.encode_aerial(torch.randn(1, 3, cfg.aerial_size, cfg.aerial_size))
        aerial["features"][0][0, :, 2, 1] = ref["descriptors"][0][0, 0].flatten()
        out = model.decode(model.encode_ground(turned), aerial, unknown_heading_prior(1, cfg))
    k = int(out["shift"])
    assert k == s * cfg.heading_subdivisions + r0
    assert int(out["matching"][0][0].argmax()) == 2 * cfg.level_cells[0] + 1
    assert float(out["m0_max"]) > 0.999
    expected_yaw = 90.0 + pixels / w * 360.0                             # ENU: counter-clockwise turn
    assert yaw_from_alignment(k, 90.0, cfg) == pytest.approx(((expected_yaw + 180) % 360) - 180)


def test_heading_priors_and_alignment_helpers():
    cfg = SMALL
    for yaw in (90.0, 101.0, -45.0, 179.0, -170.0, 12.3):
        k, field = true_alignment(yaw, cfg)
        assert abs(field - 90.0) <= cfg.heading_bin_deg / 2 + 1e-9
        assert yaw_from_alignment(k, field, cfg) == pytest.approx(yaw)
        kw, fw = true_alignment(yaw, cfg, whole_columns=True)
        assert kw % cfg.heading_subdivisions == 0 and abs(fw - 90.0) <= 360 / cfg.ground_columns / 2 + 1e-9
        prior = heading_window_prior(yaw, 20.0, cfg)[0]
        assert float(prior[k]) == 0.0                                   # the truth is allowed
        allowed = int((prior == 0).sum())
        assert 1 < allowed < cfg.heading_bins
    assert int((known_heading_prior(2, cfg) == 0).sum()) == 2


# ---- limited field of view -------------------------------------------------------------------

def _analytic_panorama(h, w, forward=0.0):
    xs = (np.arange(w) + 0.5) / w
    ys = (np.arange(h) + 0.5) / h
    bearing = np.radians(forward + (xs - 0.5) * 360.0)[None, :]
    elev = np.radians(90.0 - ys * 180.0)[:, None]
    img = np.stack([0.5 + 0.5 * np.sin(3 * bearing) * np.cos(elev),
                    0.5 + 0.5 * np.cos(2 * bearing + elev),
                    0.5 + 0.5 * np.sin(elev) * np.ones_like(bearing)], axis=-1)
    return img.astype(np.float32)


def test_pinhole_placed_in_the_panorama_frame():
    """A pinhole view of an analytic scene, placed back in the panorama frame, must agree
    with the panorama where the mask says the camera looks."""
    hfov, pw, ph = 90.0, 320, 240
    fx = (pw / 2) / np.tan(np.radians(hfov / 2))
    u, v = np.meshgrid(np.arange(pw) + 0.5 - pw / 2, np.arange(ph) + 0.5 - ph / 2)
    bearing = np.degrees(np.arctan2(u, fx))
    elev = np.degrees(np.arctan2(-v, np.hypot(u, fx)))
    b, e = np.radians(bearing), np.radians(elev)
    pin = np.stack([0.5 + 0.5 * np.sin(3 * b) * np.cos(e), 0.5 + 0.5 * np.cos(2 * b + e),
                    0.5 + 0.5 * np.sin(e)], axis=-1).astype(np.float32)
    pano, mask = pinhole_to_panorama(pin, hfov, (256, 512))
    truth = _analytic_panorama(256, 512)
    covered = mask.sum()
    assert abs(covered - 512 * hfov / 360) <= 1
    assert mask[256 - 60:256 + 60].all() and not mask[:100].any() and not mask[-100:].any()
    inside = (pano.sum(axis=-1) > 0) & (mask[None, :] > 0)
    inside[:, [int(np.argmax(mask)), 511 - int(np.argmax(mask[::-1]))]] = False   # border columns
    assert inside.sum() > 0.5 * covered * 256 * 0.5
    err = np.abs(pano[inside] - truth[inside])
    assert np.median(err) < 0.01 and np.percentile(err, 99) < 0.05


def test_column_mask_removes_what_the_camera_does_not_see(models):
    model = models["small"]
    cfg = model.cfg
    pano = torch.randn(2, 3, *cfg.ground_size)
    mask = torch.zeros(2, cfg.ground_size[1])
    mask[:, 96:160] = 1.0                                                # 90 degrees of 360
    other = pano.clone()
    other[..., :96] = torch.randn_like(other[..., :96])                  # change only unseen columns
    with torch.no_grad():
        a = model.ground(pano, mask)
        b = model.ground(other, mask)
        full = model.ground(pano, None)
    valid = a[-2]
    assert valid[0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    for x, y in zip(a[:5], b[:5]):
        assert torch.allclose(x, y, atol=1e-6)
    assert bool((a[1][:, :, valid[0] == 0] == 0).all())                  # unseen columns are zero
    assert not torch.allclose(a[0], full[0], atol=1e-3)                  # the FOV changes v_g


# ---- inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("branch,size", [("ground", SMALL.ground_size),
                                         ("aerial", (SMALL.aerial_size, SMALL.aerial_size))])
def test_bad_inputs_raise_clear_errors(models, branch, size):
    module = getattr(models["small"], branch)
    with pytest.raises(ValueError, match="expected 3 colour channels"):
        module(torch.zeros(1, 4, *size))
    with pytest.raises(ValueError, match=f"expected height x width {size[0]} x {size[1]}"):
        module(torch.zeros(1, 3, size[0] + 32, size[1]))
    bad = torch.zeros(1, 3, *size)
    bad[0, 1, 5, 7] = float("nan")
    with pytest.raises(ValueError, match="expected finite pixel values, found NaN"):
        module(bad)
    with pytest.raises(ValueError, match="expected a float tensor"):
        module(torch.zeros(3, *size))


def test_bad_column_mask_is_refused(models):
    model = models["small"]
    pano = torch.zeros(1, 3, *SMALL.ground_size)
    with pytest.raises(ValueError, match="all-zero mask"):
        model.ground(pano, torch.zeros(1, SMALL.ground_size[1]))
    with pytest.raises(ValueError, match="one value per panorama column"):
        model.ground(pano, torch.ones(1, 10))


def test_config_lookup_and_checkpoint_roundtrip(tmp_path):
    assert get_config("paper") is PAPER
    with pytest.raises(ValueError, match="expected one of"):
        get_config("huge")
    torch.manual_seed(3)
    model = UnifyGeo("small").eval()
    save_checkpoint(model, tmp_path / "m.pt", note="x")
    loaded, payload = load_checkpoint(tmp_path / "m.pt")
    assert payload["note"] == "x" and loaded.state_hash() == model.state_hash()
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="expected a unifygeo_ros checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_unreadable_or_mismatched_checkpoint_is_a_clear_error(tmp_path):
    """A text file, a truncated download and weights of another configuration all raise a
    ValueError naming the file and what was expected (the CLIs turn it into an error line)."""
    torch.manual_seed(3)
    model = UnifyGeo("small").eval()
    good = tmp_path / "m.pt"
    save_checkpoint(model, good)
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:2000])
    for name in ("text.pt", "cut.pt"):
        with pytest.raises(ValueError, match=rf"{name}: not a readable checkpoint .*expected a unifygeo_ros"):
            load_checkpoint(tmp_path / name)
    payload = torch.load(good, weights_only=True)
    payload["state_dict"].pop(next(iter(payload["state_dict"])))
    torch.save(payload, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="partial.pt: checkpoint does not match its model configuration"):
        load_checkpoint(tmp_path / "partial.pt")
