"""A short training run on a tiny synthetic VIGOR export."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from unifygeo_ros.model.unifygeo import UnifyGeo, load_checkpoint
from unifygeo_ros.sim.vigor_export import VigorExportConfig, export_vigor
from unifygeo_ros.sim.world import generate_city
from unifygeo_ros.training import trainer as trainer_module
from unifygeo_ros.training.augment import AugmentConfig
from unifygeo_ros.training.trainer import (
    PairStore,
    TrainConfig,
    autocast_dtype,
    learning_rate,
    train,
)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_vigor")
    city = generate_city(31, 260.0, 41.88, -87.63, "default")
    export_vigor(city, root, VigorExportConfig(n_panoramas=64, city_name="Tiny", pano_size=(512, 256), tile_px=256,
                                               mpp=0.25, seed=31, max_per_tile=4, workers=1))
    return root


def _read_log(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_learning_rate_schedule():
    assert learning_rate(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert learning_rate(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert learning_rate(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert learning_rate(100, 100, 10, 1.0) == pytest.approx(0.0, abs=1e-12)


def test_short_training_run_learns_saves_and_resumes(tiny_root, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(tiny_root), out=str(out), config="small", epochs=8, batch_size=8, lr=1e-3,
                      protocol="cross_area", cities=("Tiny",), hard_fraction=0.5, seed=0, precision="fp32",
                      augment=AugmentConfig(unknown_heading=0.3, fov=0.2))
    summary = train(cfg, progress=False)
    assert summary["autocast"] == "fp32"
    rows = _read_log(out / "log.csv")
    assert len(rows) == summary["steps"] > 10
    for term in ("total", "D", "G", "M", "R", "yaw"):
        values = np.array([float(r[term]) for r in rows])
        first, last = values[:6].mean(), values[-6:].mean()
        assert last < (0.85 if term == "total" else 1.0) * first, (term, first, last)
    assert set(summary["final_loss"]) == {"total", "D", "G", "M", "R", "yaw"}

    # model.pt loads back and computes exactly what the trained weights compute.
    model, payload = load_checkpoint(out / "model.pt")
    assert payload["training"]["steps"] == summary["steps"]
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    twin = UnifyGeo("small")
    twin.load_state_dict(state["model"])
    twin.eval()
    g = torch.randn(2, 3, *model.cfg.ground_size)
    a = torch.randn(2, 3, model.cfg.aerial_size, model.cfg.aerial_size)
    with torch.no_grad():
        o1, o2 = model(g, a), twin(g, a)
    for key in ("D", "ground_global", "aerial_global", "m0_max"):
        assert torch.equal(o1[key], o2[key])

    # --resume continues from the last epoch: one more epoch, steps and log carry on. Rows
    # that an interrupted epoch logged after the checkpoint are dropped, not duplicated.
    with (out / "log.csv").open("a") as f:
        f.write(f"9,{summary['steps'] + 1},0.001,1,1,1,1,1,1,1,1\n9,{summary['steps'] + 2},0.001,1,1,1,1,1,1,1,1\n")
    cfg.epochs, cfg.resume = 9, True
    more = train(cfg, progress=False)
    assert more["epochs_done"] == 9 and more["steps"] > summary["steps"]
    rows = _read_log(out / "log.csv")
    assert len(rows) == more["steps"] and rows[-1]["epoch"] == "9"
    assert [int(r["step"]) for r in rows] == list(range(1, more["steps"] + 1))


def test_precision_choices(monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    monkeypatch.setattr(trainer_module, "cpu_has_amx", lambda: False)
    assert autocast_dtype("auto", cpu) is None                # no AMX: bf16 would be emulated, slower
    monkeypatch.setattr(trainer_module, "cpu_has_amx", lambda: True)
    assert autocast_dtype("auto", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16 training needs CUDA"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(ValueError, match="expected one of auto, fp32, bf16, fp16, got 'half'"):
        autocast_dtype("half", cpu)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="this CPU has no bf16 support"):
        autocast_dtype("bf16", cpu)


def test_cpu_has_amx_reads_the_cpu_flags(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert not trainer_module.cpu_has_amx(str(info))            # AVX-512 BF16 alone is not AMX
    assert not trainer_module.cpu_has_amx(str(tmp_path / "missing"))
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    asked = []
    monkeypatch.setattr(torch._C._cpu, "_init_amx", lambda: asked.append(1) or True)
    assert trainer_module.cpu_has_amx(str(info)) and asked      # the tiles are requested from the kernel
    monkeypatch.setattr(torch._C._cpu, "_init_amx", lambda: False)
    assert not trainer_module.cpu_has_amx(str(info))            # the kernel refused them


def test_bf16_training_on_the_cpu_learns_like_fp32(tiny_root, tmp_path):
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no bf16 support (AVX-512 BF16 or AMX): bf16 training cannot run here")
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(data=str(tiny_root), out=str(tmp_path / precision), config="small", epochs=3, batch_size=8,
                          lr=1e-3, protocol="cross_area", cities=("Tiny",), seed=0, precision=precision,
                          augment=AugmentConfig(unknown_heading=0.3, fov=0.2))
        summary = train(cfg, progress=False)
        assert summary["autocast"] == ("bfloat16" if precision == "bf16" else "fp32")
        runs[precision] = np.array([float(r["total"]) for r in _read_log(tmp_path / precision / "log.csv")])
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert np.isfinite(bf16).all() and len(bf16) == len(fp32)
    assert bf16[-4:].mean() < 0.9 * bf16[:4].mean()
    # Same seed, same batches: the bf16 forward pass follows the fp32 run's loss closely.
    assert abs(bf16[0] - fp32[0]) < 0.02 * fp32[0]
    assert np.abs(bf16 - fp32).mean() < 0.1 * fp32.mean()
    model, payload = load_checkpoint(tmp_path / "bf16" / "model.pt")
    assert payload["training"]["autocast"] == "bfloat16"
    assert all(p.dtype == torch.float32 for p in model.parameters())   # the weights stay fp32


def test_channels_last_training_follows_the_contiguous_one(tiny_root, tmp_path):
    """The memory format changes the layout, not the arithmetic: same seed, same batches,
    the same losses (to convolution-algorithm rounding), and a checkpoint stored contiguous."""
    runs = {}
    for fmt in ("contiguous", "channels_last"):
        cfg = TrainConfig(data=str(tiny_root), out=str(tmp_path / fmt), config="small", epochs=2, batch_size=8,
                          lr=1e-3, protocol="cross_area", cities=("Tiny",), seed=0, precision="fp32",
                          memory_format=fmt, augment=AugmentConfig(unknown_heading=0.3, fov=0.2))
        train(cfg, progress=False)
        runs[fmt] = np.array([float(r["total"]) for r in _read_log(tmp_path / fmt / "log.csv")])
    assert len(runs["contiguous"]) == len(runs["channels_last"]) > 4
    assert abs(runs["channels_last"][0] - runs["contiguous"][0]) < 1e-4 * runs["contiguous"][0]
    assert np.abs(runs["channels_last"] - runs["contiguous"]).mean() < 0.01 * runs["contiguous"].mean()
    state = torch.load(tmp_path / "channels_last" / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert all(v.is_contiguous() for v in state.values())
    assert any(v.ndim == 4 for v in state.values())
    with pytest.raises(ValueError, match="expected one of channels_last, contiguous, got 'nhwc'"):
        train(TrainConfig(data=str(tiny_root), out=str(tmp_path / "bad"), memory_format="nhwc"), progress=False)


def test_cached_pairs_equal_the_uncached_ones(tiny_root):
    from unifygeo_ros.data.vigor import VigorPairDataset
    from unifygeo_ros.model_config import get_config
    from unifygeo_ros.training.augment import PairAugment

    cfg = get_config("small")
    base = VigorPairDataset(tiny_root, "cross_area", "train", ["Tiny"], "auto", ground_size=cfg.ground_size,
                            aerial_size=cfg.aerial_size, normalize=False)
    augment = PairAugment(AugmentConfig(unknown_heading=0.5, fov=0.5))
    cached, direct = PairStore(base, augment, 3, True, False), PairStore(base, augment, 3, False, False)
    # The images sit in one uint8 block per branch, not one tensor per pair.
    assert cached.images["ground"].shape == (len(base), 3, *cfg.ground_size)
    assert cached.images["ground"].dtype == torch.uint8 and cached.images["aerial"].dtype == torch.uint8
    for epoch in (0, 2):
        cached.epoch = direct.epoch = epoch
        for i in (0, len(base) // 2, len(base) - 1):
            a, b = cached[i], direct[i]
            assert a.keys() == b.keys()
            for key in a:     # the exported images are 8-bit, so the uint8 cache is exact
                assert torch.allclose(a[key], b[key], atol=1e-5), (epoch, i, key)


def test_training_refuses_missing_data(tmp_path):
    with pytest.raises(Exception, match="splits|VIGOR|not found|expected"):
        train(TrainConfig(data=str(tmp_path / "nothing"), out=str(tmp_path / "run")), progress=False)


def test_retrieval_stage_trains_only_the_descriptors(tiny_root, tmp_path):
    from unifygeo_ros.model.unifygeo import save_checkpoint
    from unifygeo_ros.model_config import get_config
    from unifygeo_ros.training.retrieval_stage import (
        TRAINED_PREFIXES,
        RetrievalStageConfig,
        train_retrieval,
    )

    torch.manual_seed(0)
    init = UnifyGeo(get_config("small").with_(layout_channels=0)).eval()     # a model without the layout term
    save_checkpoint(init, tmp_path / "init.pt", training={"aerial_mpp": 0.5, "steps": 7})
    out = tmp_path / "stage"
    cfg = RetrievalStageConfig(data=str(tiny_root), out=str(out), init=str(tmp_path / "init.pt"), config="small",
                               protocol="cross_area", cities=("Tiny",), epochs=6, batch_size=8, lr=2e-3,
                               fov=0.3, feature_dropout=0.0, seed=0)
    summary = train_retrieval(cfg, progress=False)
    assert summary["layout_channels"] == 32
    rows = _read_log(out / "log.csv")
    assert len(rows) == summary["steps"] > 10
    g = np.array([float(r["G"]) for r in rows])
    assert g[-6:].mean() < 0.8 * g[:6].mean(), (g[:6], g[-6:])

    model, payload = load_checkpoint(out / "model.pt")
    assert model.cfg.layout_channels == 32
    stage = payload["training"]["retrieval_stage"]
    assert stage["init_model_hash"] == init.state_hash() and stage["steps"] == summary["steps"]
    assert payload["training"]["aerial_mpp"] == 0.5                          # the first training's record is kept
    before = init.state_dict()
    changed = set()
    for name, value in model.state_dict().items():
        if name not in before:
            assert ".layout_" in name
            continue
        if not torch.equal(value, before[name]):
            changed.add(name)
    assert changed and all(n.startswith(TRAINED_PREFIXES) or n == "logit_scale" for n in changed), sorted(changed)[:5]
    assert any(n.startswith("ground.s_head.") for n in changed) and any(n.startswith("aerial.aggregator.") for n in changed)
    assert model.ground.aggregator.layout_proj.weight.abs().max() > 0        # the layout term was trained

    # --resume continues with one more epoch.
    cfg.epochs, cfg.resume = 7, True
    more = train_retrieval(cfg, progress=False)
    assert more["epochs_done"] == 7 and more["steps"] > summary["steps"]
    assert [int(r["step"]) for r in _read_log(out / "log.csv")] == list(range(1, more["steps"] + 1))


def test_retrieval_stage_refuses_what_it_cannot_do(tiny_root, tmp_path):
    from unifygeo_ros.model.unifygeo import save_checkpoint
    from unifygeo_ros.training.retrieval_stage import (
        RetrievalStageConfig,
        train_retrieval,
    )

    save_checkpoint(UnifyGeo("small"), tmp_path / "init.pt")
    base = dict(data=str(tiny_root), out=str(tmp_path / "o"), init=str(tmp_path / "init.pt"), protocol="cross_area",
                cities=("Tiny",))
    with pytest.raises(ValueError, match="batches can be filled"):
        train_retrieval(RetrievalStageConfig(**base, batch_size=64), progress=False)
    with pytest.raises(ValueError, match="holds a 'small' model, expected 'paper'"):
        train_retrieval(RetrievalStageConfig(**base, config="paper"), progress=False)
    with pytest.raises(ValueError, match="already has a layout term"):
        train_retrieval(RetrievalStageConfig(**base, layout_channels=16), progress=False)


def test_retrieval_stage_can_start_the_descriptors_afresh():
    from unifygeo_ros.model_config import get_config
    from unifygeo_ros.training.retrieval_stage import (
        TRAINED_PREFIXES,
        reinit_descriptors,
    )

    torch.manual_seed(1)
    model = UnifyGeo(get_config("small"))
    with torch.no_grad():                                   # "trained" weights, unlike any fresh draw
        for p in model.parameters():
            p.add_(0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reinit_descriptors(model, seed=3)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(TRAINED_PREFIXES) for k in changed)
    assert {k for k in before if k.startswith(TRAINED_PREFIXES) and before[k].is_floating_point()} <= changed
    again = UnifyGeo(get_config("small"))
    again.load_state_dict(before)
    reinit_descriptors(again, seed=3)                        # the seed decides the fresh weights
    assert all(torch.equal(again.state_dict()[k], after[k]) for k in after)


def test_descriptor_stage_options_are_refused_by_the_full_training(tmp_path, capsys):
    import json

    from unifygeo_ros.cli import main

    rc = main(["train", "--stage", "retrieval", "--init", str(tmp_path / "x.pt"), "--data", str(tmp_path), "--out",
               str(tmp_path / "o"), "--memory-format", "contiguous", "--json"])
    assert rc == 2 and "applies to the full stage only" in json.loads(capsys.readouterr().out)["error"]
    for flag in (["--reinit-descriptors"], ["--layout-channels", "16"]):
        rc = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *flag, "--json"])
        assert rc == 2
        assert "applies to --stage retrieval only" in json.loads(capsys.readouterr().out)["error"]


def test_the_fov_stage_continues_a_model_through_the_command(tiny_root, tmp_path, capsys):
    """``unifygeo train --stage fov`` starts from --init's weights and trains on pinhole views and rigs."""
    import json

    from unifygeo_ros.cli import main
    from unifygeo_ros.model.unifygeo import save_checkpoint
    from unifygeo_ros.model_config import get_config

    torch.manual_seed(0)
    init = UnifyGeo(get_config("small")).eval()
    save_checkpoint(init, tmp_path / "init.pt", training={"aerial_mpp": 0.5, "steps": 7})
    out = tmp_path / "fov"
    code = main(["train", "--stage", "fov", "--init", str(tmp_path / "init.pt"), "--data", str(tiny_root),
                 "--out", str(out), "--protocol", "cross_area", "--cities", "Tiny", "--batch-size", "8",
                 "--max-steps", "3", "--precision", "fp32", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3
    model, payload = load_checkpoint(out / "model.pt")
    config = payload["training"]["config"]
    assert config["init"] == str(tmp_path / "init.pt") and config["augment"]["pinhole"] == 0.35
    assert config["augment"]["rig"] == 0.25 and config["lr"] == 1.5e-4
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, init.state_dict()[k])]
    assert moved and any(k.startswith("decoder") for k in moved)
