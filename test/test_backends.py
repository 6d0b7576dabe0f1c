"""Backends: one interface, parity between every backend this machine has, the automatic
choice (and its log line), engine folders of another model, and the TensorRT code
type-checked with mypy against tensorrt-stubs."""

from __future__ import annotations

import importlib.metadata
import logging
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from unifygeo_ros.backends import registry
from unifygeo_ros.backends.onnx_files import EnginesMismatch, ensure_onnx
from unifygeo_ros.backends.ort_backend import OrtBackend
from unifygeo_ros.backends.torch_backend import TorchBackend
from unifygeo_ros.database.build import BuildConfig, build_database
from unifygeo_ros.localizer.localizer import Localizer
from unifygeo_ros.model.unifygeo import UnifyGeo, save_checkpoint
from unifygeo_ros.onnx_names import DECODER_OUTPUTS
from unifygeo_ros.sim.render import (
    render_panorama,
    render_pinhole,
    write_orthophoto_geotiff,
)
from unifygeo_ros.sim.world import generate_city
from unifygeo_ros.types import DatabaseError

ROOT = Path(__file__).resolve().parent.parent
TRT_FILE = ROOT / "unifygeo_ros" / "backends" / "tensorrt_backend.py"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return UnifyGeo("small").eval()


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("engines")
    ensure_onnx(folder, model.state_hash(), model)
    return folder


def test_availability_names_every_backend_with_a_reason():
    avail = registry.availability()
    assert set(avail) == set(registry.BACKEND_ORDER)
    assert avail["torch-cpu"] is None and avail["onnxruntime-cpu"] is None
    for name, why in avail.items():
        assert why is None or len(why) > 10, name
        print(f"{name}: {'available' if why is None else why}")
    assert registry.available_backends()[0] == next(n for n in registry.BACKEND_ORDER if avail[n] is None)


def test_torch_and_onnxruntime_modules_agree(model, onnx_dir):
    """Every available backend runs the three modules to the same outputs (fp32 tolerance)."""
    ref = TorchBackend(model)
    others = [OrtBackend(onnx_dir, "cpu")]
    if registry.availability()["onnxruntime-cuda"] is None:
        others.append(OrtBackend(onnx_dir, "cuda"))
    if registry.availability()["tensorrt"] is None:
        from unifygeo_ros.backends.tensorrt_backend import TensorRTBackend

        others.append(TensorRTBackend(onnx_dir, fp16=False))
    rng = np.random.default_rng(0)
    cfg = model.cfg
    h, w = cfg.ground_size
    r = cfg.heading_subdivisions
    img = rng.normal(size=(2 * r, 3, h, w)).astype(np.float32)
    mask = np.ones((2 * r, w), np.float32)
    mask[:, : w // 3] = 0.0
    tiles = rng.normal(size=(3, 3, cfg.aerial_size, cfg.aerial_size)).astype(np.float32)
    g_ref = ref.encode_ground(img, mask)
    a_ref = ref.encode_aerial(tiles[:2])
    dec_in = {f"ground_desc{lv}": g_ref[f"ground_desc{lv}"].reshape(2, r, *g_ref[f"ground_desc{lv}"].shape[1:])
              for lv in range(4)}
    dec_in["column_valid"] = g_ref["column_valid"].reshape(2, r, -1)
    dec_in.update({f"aerial_feat{lv}": a_ref[f"aerial_feat{lv}"] for lv in range(4)})
    dec_in["heading_logprior"] = np.zeros((2, cfg.heading_bins), np.float32)
    d_ref = ref.decode(dec_in)
    assert set(d_ref) == set(DECODER_OUTPUTS)
    for be in others:
        for name, got in be.encode_ground(img, mask).items():
            np.testing.assert_allclose(got, g_ref[name], atol=1e-4, err_msg=f"{be.name} ground/{name}")
        for name, got in be.encode_aerial(tiles[:2]).items():
            np.testing.assert_allclose(got, a_ref[name], atol=1e-4, err_msg=f"{be.name} aerial/{name}")
        out = be.decode(dec_in)
        np.testing.assert_array_equal(out["alignment"], d_ref["alignment"])
        np.testing.assert_allclose(out["D"], d_ref["D"], atol=1e-3 * d_ref["D"].max())
        np.testing.assert_allclose(out["m0_max"], d_ref["m0_max"], atol=1e-4)
    # Torch tensors are accepted too.
    np.testing.assert_allclose(others[0].encode_aerial(torch.from_numpy(tiles[:1]))["global_descriptor"],
                               a_ref["global_descriptor"][:1], atol=1e-4)


@pytest.fixture(scope="module")
def city_db(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("db")
    weights = root / "w.pt"
    save_checkpoint(model, weights, training={"aerial_mpp": 0.5})
    city = generate_city(3002, 200.0, 40.0, -3.7, style="oldtown")
    tif = root / "city.tif"
    write_orthophoto_geotiff(city, tif, 0.25)
    build_database(BuildConfig([str(tif)], str(weights), str(root / "db"), backend="torch-cpu"), progress=False)
    return root / "db", city


def test_localizer_parity_between_backends(city_db):
    """Same database, same frames: the same chosen tile and position within a pixel, on every backend."""
    db, city = city_db
    names = registry.available_backends()
    assert {"torch-cpu", "onnxruntime-cpu"} <= set(names)
    locs = {n: Localizer.open(db, backend=n) for n in names}
    frames = [(render_panorama(city, (90.0, 110.0), 10.0, 512, 256), {}),
              (render_panorama(city, (90.0, 110.0), 10.0, 512, 256), {"heading": 10.0}),
              (render_pinhole(city, (120.0, 80.0), -60.0, 90.0, 320, 240), {"heading": -60.0})]
    from unifygeo_ros.types import Camera

    for i, (img, kw) in enumerate(frames):
        cam = Camera("pinhole", hfov_deg=90.0) if i == 2 else Camera()
        res = {n: loc.localize(img, camera=cam, **kw) for n, loc in locs.items()}
        ref = res["torch-cpu"]
        for n, r in res.items():
            assert r.backend == n
            assert r.tile_id == ref.tile_id, n
            assert np.hypot(r.x - ref.x, r.y - ref.y) <= 0.5 + 1e-9, n
            assert abs(r.yaw_deg - ref.yaw_deg) < 0.5, n
            np.testing.assert_allclose(r.covariance, ref.covariance, rtol=0.05, atol=1e-3)


def test_auto_takes_the_fastest_available_and_logs_it(city_db, caplog):
    with caplog.at_level(logging.INFO, logger="unifygeo_ros.backends"):
        loc = Localizer.open(city_db[0], backend="auto")
    assert loc.backend_name == registry.available_backends()[0]
    assert any(re.match(rf"backend: {loc.backend_name} \(auto", rec.getMessage()) for rec in caplog.records)


def test_unknown_or_missing_backend_is_a_clear_error(city_db):
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        Localizer.open(city_db[0], backend="tpu")
    if registry.availability()["tensorrt"] is not None:
        with pytest.raises(RuntimeError, match="backend 'tensorrt' is not available here"):
            Localizer.open(city_db[0], backend="tensorrt")


def test_engines_of_another_model_are_refused(tmp_path, city_db):
    other = UnifyGeo("small").eval()
    folder = tmp_path / "engines"
    ensure_onnx(folder, other.state_hash(), other)
    with pytest.raises(EnginesMismatch, match="holds ONNX files of model"):
        ensure_onnx(folder, "0" * 64)
    with pytest.raises(DatabaseError, match="holds ONNX files of model"):
        Localizer.open(city_db[0], backend="onnxruntime-cpu", engines=folder)


def test_export_tensorrt_flag_without_tensorrt(tmp_path):
    if registry.tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT is installed here: the engine build itself is exercised instead")
    proc = subprocess.run([sys.executable, "-m", "unifygeo_ros", "export", "--config", "small", "--out",
                           str(tmp_path), "--no-check", "--tensorrt", "--json"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    import json

    assert "--tensorrt:" in json.loads(proc.stdout)["error"]
    assert (tmp_path / "decoder.onnx").is_file()        # the ONNX files are still written


def test_onnxruntime_threads_follow_omp_num_threads(onnx_dir, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    opts = OrtBackend(onnx_dir, "cpu")._sessions["decoder"].get_session_options()
    assert opts.intra_op_num_threads == 1
    assert OrtBackend(onnx_dir, "cpu", threads=2)._sessions["decoder"].get_session_options().intra_op_num_threads == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert OrtBackend(onnx_dir, "cpu")._sessions["decoder"].get_session_options().intra_op_num_threads == 0


def test_tensorrt_module_imports_without_tensorrt_and_fails_clearly(onnx_dir):
    """The module is import-guarded: it loads on a machine without TensorRT (or with the type
    stubs only) and says why it cannot run."""
    from unifygeo_ros.backends import tensorrt_backend

    reason = registry.tensorrt_unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT is usable here: test_torch_and_onnxruntime_modules_agree runs its engines instead")
    with pytest.raises(RuntimeError, match="tensorrt: "):
        tensorrt_backend.TensorRTBackend(onnx_dir)
    with pytest.raises(RuntimeError, match="tensorrt: "):
        tensorrt_backend.ensure_engines(onnx_dir, "0" * 64, fp16=True)


def _stub_dir(tmp_path: Path) -> Path | None:
    """A copy of tensorrt-stubs' .pyi packages for mypy's path (the wheel lacks py.typed), with the
    few lines of stubs 10.13.0.35.1 that are not valid Python (parameters named ``in``) fixed."""
    try:
        files = importlib.metadata.files("tensorrt-stubs") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    out = tmp_path / "stubs"
    for f in files:
        if str(f).endswith(".pyi"):
            src = Path(f.locate())
            dst = out / str(f)
            dst.parent.mkdir(parents=True, exist_ok=True)
            text = src.read_text()
            text = re.sub(r"(def \w+\([^)]*?)\bin: ", r"\1in_: ", text)
            text = text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, "
                                                                              "channel_axis: int = ...)")
            dst.write_text(text)
    return out if (out / "tensorrt" / "__init__.pyi").is_file() else None


def test_tensorrt_code_type_checks_with_mypy_and_tensorrt_stubs(tmp_path):
    if shutil.which("mypy", path=str(Path(sys.executable).parent)) is None and importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install mypy tensorrt-stubs, the [test] extra)")
    stubs = _stub_dir(tmp_path)
    if stubs is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    ini = tmp_path / "mypy.ini"
    ini.write_text(textwrap.dedent(f"""
        [mypy]
        mypy_path = {stubs}
        python_version = 3.11
        follow_imports = silent
        ignore_missing_imports = True
        check_untyped_defs = True
        warn_unused_ignores = True
        [mypy-torch.*]
        follow_imports = skip
        [mypy-numpy.*]
        follow_imports = skip
        [mypy-tensorrt.*]
        ignore_errors = True
        [mypy-tensorrt_bindings.*]
        ignore_errors = True
        """))

    def mypy(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ini), "--cache-dir",
                               str(tmp_path / "cache"), str(path)], capture_output=True, text=True, timeout=300,
                              cwd=ROOT)

    proc = mypy(TRT_FILE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The stubs are really in use: a wrong call of the same API is caught.
    bad = tmp_path / "bad_trt.py"
    bad.write_text("import tensorrt as trt\n"
                   "b = trt.Builder(trt.Logger(trt.Logger.WARNING))\n"
                   "c = b.create_builder_config()\n"
                   "c.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, '1 GiB')\n")
    proc = mypy(bad)
    assert proc.returncode == 1 and "set_memory_pool_limit" in proc.stdout, proc.stdout
