"""The authors' released VIGOR checkpoints: the ``vigor`` configuration has their tensors,
files in their layout load strictly wherever our weights do, and the forward pass agrees with
their implementation (test/data/released_parity/, made as its README says).

No released weights are used: a state dict in their layout is drawn from a seed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from unifygeo_ros.model import released
from unifygeo_ros.model.heading import unknown_heading_prior
from unifygeo_ros.model.released import (RELEASED_TENSORS, RELEASED_VALUES, from_released, released_layout,
                                         released_name, released_parity_inputs, released_state_dict, to_released)
from unifygeo_ros.model.unifygeo import UnifyGeo, load_checkpoint
from unifygeo_ros.model_config import get_config

REPO = Path(__file__).resolve().parents[1]
PARITY = REPO / "test" / "data" / "released_parity"
ATLANTA = REPO / "test" / "data" / "orthophoto" / "atlanta_0p5m_epsg32616.tif"

# Checked by hand against the authors' state dict (their names on the right).
KNOWN_NAMES = {
    "logit_scale": "logit_scale",
    "logit_scale_rerank": "logit_scale_rerank",
    "ground.encoder.stem.conv.weight": "grd_encoder.model.stem_0.weight",
    "aerial.encoder.stem.norm.bias": "sat_encoder.model.stem_1.bias",
    "ground.encoder.stages.2.downsample.conv.weight": "grd_encoder.model.stages_2.downsample.1.weight",
    "aerial.encoder.stages.2.blocks.8.pwconv1.weight": "sat_encoder.model.stages_2.blocks.8.mlp.fc1.weight",
    "ground.encoder.stages.0.blocks.1.dwconv.bias": "grd_encoder.model.stages_0.blocks.1.conv_dw.bias",
    "ground.f_head.downsample.norm.weight": "grd_local_feats_decoder.model.downsample.0.weight",
    "aerial.s_head.blocks.0.gamma": "sat_global_feats_decoder.model.conv.gamma",
    "ground.aggregator.q_norm.weight": "grd_global_feats_decoder.aggregator.block.f.1.weight",
    "aerial.aggregator.to_v.weight": "sat_global_feats_decoder.aggregator.block.h.weight",
    "ground.aggregator.restore.bias": "grd_global_feats_decoder.aggregator.block.v.bias",
    "aerial.aggregator.p": "sat_global_feats_decoder.aggregator.gem.p",
    "ground.aggregator.post_norm.weight": "grd_global_feats_decoder.agg_post_norm.weight",
    "ground.projectors.0.reduce.weight": "pyramid_decoder.grd_feature_to_descriptor1.conv1.weight",
    "ground.projectors.3.column_fc.weight": "pyramid_decoder.grd_feature_to_descriptor4.conv2.weight",
    "decoder.ground_norms.1.bias": "pyramid_decoder.grd_descriptor_norm2.bias",
    "decoder.aerial_norms.0.weight": "pyramid_decoder.sat_matching_block_norm1.weight",
    "decoder.upsample.0.weight": "pyramid_decoder.deconv4.weight",
    "decoder.fuse.2.1.running_var": "pyramid_decoder.conv2.1.running_var",
    "decoder.final_upsample.3.bias": "pyramid_decoder.deconv1.3.bias",
    "decoder.to_logits.1.num_batches_tracked": "pyramid_decoder.conv1.1.num_batches_tracked",
}


@pytest.fixture(scope="module")
def seeded_state():
    return released_state_dict(0)


@pytest.fixture(scope="module")
def released_file(tmp_path_factory, seeded_state):
    path = tmp_path_factory.mktemp("released") / "seeded_vigor.pth"
    torch.save(seeded_state, path)
    return path


def test_vigor_state_dict_is_the_released_layout():
    layout = released_layout()
    assert len(layout) == RELEASED_TENSORS
    assert sum(int(np.prod(s)) for s, _ in layout.values()) == RELEASED_VALUES
    model = UnifyGeo("vigor")
    ours = model.state_dict()
    assert len(ours) == RELEASED_TENSORS and sum(t.numel() for t in ours.values()) == RELEASED_VALUES
    assert len({released_name(k) for k in ours}) == len(ours)                   # one to one
    for name, theirs in KNOWN_NAMES.items():
        assert released_name(name) == theirs
    assert tuple(layout["grd_global_feats_decoder.aggregator.block.f.0.weight"][0]) == (384, 768, 1, 1)
    assert tuple(layout["pyramid_decoder.grd_feature_to_descriptor1.conv2.weight"][0]) == (1, 12, 1, 1)
    back = from_released(to_released(ours))
    assert all(torch.equal(back[k], ours[k]) for k in ours)


def test_vigor_has_none_of_our_extensions():
    cfg = get_config("vigor")
    assert not cfg.yaw_head and cfg.layout_channels == 0 and not cfg.circular_ground_padding
    model = UnifyGeo(cfg)
    assert model.yaw_head_parameters() == 0 and len(model.temperature_parameters()) == 2
    assert abs(float(model.match_logit_scale().exp()) - 10.0) < 1e-5          # L_M at temperature 0.1
    assert model.heading_logit_scale() is model.logit_scale_rerank
    with pytest.raises(KeyError):
        released_name("decoder.yaw_head.0.weight")


def test_model_info_vigor_counts():
    out = subprocess.run([sys.executable, "-m", "unifygeo_ros", "model-info", "--config", "vigor", "--json"],
                         capture_output=True, text=True, timeout=600)
    info = json.loads(out.stdout)
    assert info["checkpoint_tensors"] == 457 and info["checkpoint_values"] == 57_700_330
    assert info["relative_difference_to_paper"] == 0.0 and info["modules"]["temperatures"] == 2


def test_seeded_state_dict_is_deterministic(seeded_state):
    again = released_state_dict(0)
    assert all(torch.equal(again[k], seeded_state[k]) for k in seeded_state)
    other = released_state_dict(1)
    assert not torch.equal(other["pyramid_decoder.deconv4.weight"], seeded_state["pyramid_decoder.deconv4.weight"])


def test_a_released_layout_file_loads_strictly(released_file, seeded_state):
    model, payload = load_checkpoint(released_file)
    assert model.cfg.name == "vigor" and not model.training
    assert payload["released_as"] is None and len(payload["sha256"]) == 64
    assert payload["training"]["aerial_mpp"] == pytest.approx(0.1848, abs=1e-3)
    state = to_released(model.state_dict())
    assert all(torch.equal(state[k], seeded_state[k]) for k in seeded_state)


def test_a_released_file_is_recognised_by_its_hash(released_file, monkeypatch):
    digest = released.sha256_file(released_file)
    monkeypatch.setitem(released.RELEASED_FILES, digest, ("unifygeo_vigor_cross_area.pth", "cross_area"))
    _, payload = load_checkpoint(released_file)
    assert payload["released_as"] == "unifygeo_vigor_cross_area.pth"
    assert payload["training"]["aerial_mpp"] == pytest.approx((0.113248 + 0.100817) / 2 * 640 / 384)
    assert "cross-area" in payload["training"]["data"]


def test_model_info_reports_a_released_layout_file(released_file):
    out = subprocess.run([sys.executable, "-m", "unifygeo_ros", "model-info", "--weights", str(released_file),
                          "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["config"] == "vigor" and info["weights_layout"] == "released"
    assert info["released_as"] is None and info["weights_sha256"] == released.sha256_file(released_file)
    assert info["checkpoint_tensors"] == 457 and info["checkpoint_values"] == 57_700_330


@pytest.mark.parametrize("damage", ["missing", "extra", "shape", "nan"])
def test_an_incomplete_released_layout_file_is_refused(tmp_path, seeded_state, damage):
    state = dict(seeded_state)
    if damage == "missing":
        del state["pyramid_decoder.deconv4.bias"]
        expected = "1 tensor(s) missing, 0 extra, 0 of another shape (e.g. pyramid_decoder.deconv4.bias is missing)"
    elif damage == "extra":
        state["pyramid_decoder.yaw_head.weight"] = torch.zeros(2)
        expected = "0 tensor(s) missing, 1 extra"
    elif damage == "shape":
        state["grd_global_feats_decoder.aggregator.block.h.weight"] = torch.zeros(384, 768)
        expected = "grd_global_feats_decoder.aggregator.block.h.weight is (384, 768), expected (384, 768, 1, 1)"
    else:
        state["pyramid_decoder.deconv4.bias"] = torch.full((384,), float("nan"))
        expected = "NaN or infinity (e.g. pyramid_decoder.deconv4.bias)"
    path = tmp_path / "damaged.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_foreign_file_gets_one_line_naming_both_layouts(tmp_path):
    path = tmp_path / "random.pth"
    torch.save({"weight": torch.randn(3, 3), "bias": torch.randn(3)}, path)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "\n" not in msg and "unifygeo_ros checkpoint" in msg and "released VIGOR checkpoints" in msg
    assert "a mapping of 2 entries (bias, weight)" in msg
    out = subprocess.run([sys.executable, "-m", "unifygeo_ros", "model-info", "--weights", str(path), "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "released VIGOR checkpoints" in json.loads(out.stdout)["error"]


def test_build_db_and_localizer_accept_a_released_layout_file(tmp_path, released_file):
    """build-db records the file in the manifest; the localizer's ``weights`` (the node's
    weights parameter) loads it and checks it is the database's model."""
    from unifygeo_ros.database.build import BuildConfig, build_database
    from unifygeo_ros.database.store import Database
    from unifygeo_ros.localizer.localizer import Localizer

    crop = tmp_path / "crop.tif"
    with rasterio.open(ATLANTA) as src:          # 160 m x 90 m at 0.5 m/px: two 384 px tiles at 0.18 m/px
        window = rasterio.windows.Window(0, 0, 320, 180)
        profile = src.profile | {"width": 320, "height": 180, "transform": src.window_transform(window),
                                 "tiled": False}
        data = src.read(1, window=window)
    with rasterio.open(crop, "w", **profile) as dst:
        dst.write(data, 1)
    out = tmp_path / "db"
    build_database(BuildConfig([str(crop)], str(released_file), str(out), backend="torch-cpu", batch_size=4,
                               max_upsample=4.0, overlap=0.0, turns=1), progress=False)
    manifest = Database(out).manifest
    assert manifest["model"]["name"] == "vigor" and manifest["model"]["released_as"] is None
    assert manifest["model"]["sha256"] == released.sha256_file(released_file)
    loc = Localizer.open(out, backend="torch-cpu", weights=released_file)
    assert loc.db.model_hash == load_checkpoint(released_file)[0].state_hash()
    # no yaw head: without a heading the yaw is the chosen alignment's, to a bin, with a finite
    # variance; with a known heading the frame reports no yaw of its own (the heading was an input)
    pano = (np.random.default_rng(3).random((256, 512, 3)) * 255).astype(np.uint8)
    res = loc.localize(pano)
    assert res.yaw_deg is not None and -180.0 <= res.yaw_deg <= 180.0
    bin_deg = loc.cfg.heading_bin_deg
    assert bin_deg / 12 ** 0.5 <= np.degrees(res.covariance[2, 2] ** 0.5) < 180.0
    res = loc.localize(pano, heading=30.0)
    assert res.yaw_deg is None and res.covariance[2, 2] == 1e6


def test_unknown_heading_falls_back_to_the_alignment_search(seeded_state):
    """No yaw head: the decoder picks the best of the 48 panorama rolls by max M^0."""
    model = UnifyGeo("vigor").eval()
    model.load_state_dict(from_released(seeded_state))
    ground, aerial = released_parity_inputs(1, 1)
    with torch.no_grad():
        g = model.encode_ground(ground)
        out = model.decode(g, model.encode_aerial(aerial), unknown_heading_prior(1, model.cfg))
    assert "yaw_field" not in out and out["shift_scores"].shape == (1, 48)
    assert int(out["shift"][0]) == int(out["shift_scores"][0].argmax())


def test_forward_matches_the_authors_implementation(seeded_state):
    """Ours against their code's outputs for the same seeded weights and inputs (fp32, CPU)."""
    meta = json.loads((PARITY / "meta.json").read_text())
    ref = np.load(PARITY / "reference.npz")
    model = UnifyGeo("vigor").eval()
    model.load_state_dict(from_released(released_state_dict(meta["seed"])), strict=True)
    ground, aerial = released_parity_inputs(meta["input_seed"], meta["batch"])
    with torch.no_grad():
        g = model.encode_ground(ground)
        a = model.encode_aerial(aerial)
        out = model.decode(g, a)
    side = model.cfg.aerial_size
    ours = {"ground_global": g["global"], "aerial_global": a["global"],
            **{f"M{i}": m for i, m in enumerate(out["matching"])},
            "logits": out["logits"].view(-1, side, side), "D": out["D"]}
    strides = {"M3": 2, "logits": 8, "D": 8}
    for name, tensor in ours.items():
        step = strides.get(name, 1)
        x = tensor.numpy() if tensor.ndim == 2 else tensor.numpy()[:, ::step, ::step]
        assert x.shape == ref[name].shape, name
        assert np.abs(x - ref[name]).max() <= 1e-4, name
    d = out["D"].flatten(1)
    assert np.array_equal(d.argmax(dim=1).numpy(), ref["D_argmax"])
    np.testing.assert_allclose(d.max(dim=1).values.numpy(), ref["D_max"], rtol=1e-4)
    np.testing.assert_allclose(out["logits"].logsumexp(dim=1).numpy(), ref["logits_logsumexp"], atol=1e-4)
