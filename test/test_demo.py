"""The commands a person runs: demo, localize, calibrate, bench localize / retrieval (one JSON
object on stdout with --json, progress on stderr, clear errors). An untrained small model
keeps them fast: what is checked here is the plumbing, not the accuracy (the demo reports that)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from unifygeo_ros.model.unifygeo import UnifyGeo, save_checkpoint


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real command in a subprocess (what a person runs)."""
    proc = subprocess.run([sys.executable, "-m", "unifygeo_ros", *args], capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def cli(capsys):
    """The same command in this process (no interpreter start-up per call)."""
    from unifygeo_ros.cli import main

    def run(*args: str, check: bool = True) -> Ran:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        if check:
            assert code == 0, err[-3000:]
        return Ran(code, out, err)

    return run


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "small.pt"
    save_checkpoint(UnifyGeo("small").eval(), path, half=True, training={"aerial_mpp": 0.5})
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory, weights):
    out = tmp_path_factory.mktemp("demo")
    proc = run_cli("demo", "--weights", str(weights), "--views", "3", "--size-m", "200", "--out", str(out), "--json")
    return json.loads(proc.stdout), proc.stderr, out


def test_demo_json_table_and_picture(demo):
    result, stderr, out = demo
    assert set(result["modes"]) == {"panorama, known heading", "panorama, unknown heading",
                                    "pinhole 90 deg, known heading", "pinhole 90 deg, unknown heading",
                                    "panorama, unknown heading, GNSS prior", "pinhole 90 deg, known heading, GNSS prior",
                                    "rig of four, known heading", "front + back, known heading"}
    for row in result["modes"].values():
        assert row["queries"] == 3
        for key in ("R@1_tile", "mean_m", "median_m", "R@1m", "R@5m", "R@10m", "yaw_mean_deg", "in_95_ellipse"):
            assert np.isfinite(row[key]), key
        assert set(row["ms"]) == {"preprocess", "ground", "search", "aerial", "decoder", "ensemble", "posterior",
                                  "total"}
    assert result["city"]["seed"] == 2026 and result["database"]["tiles"] == 36
    png = cv2.imread(result["png"])
    assert png is not None and png.shape[0] > 400 and png.shape[1] > 400
    assert "backend: " in stderr and "encoding tiles" in stderr
    assert Path(result["city"]["geotiff"]).is_file()


@pytest.mark.parametrize("seed", ["12", "16", "21"])
def test_demo_refuses_a_training_seed(weights, tmp_path, cli, seed):
    proc = cli("demo", "--weights", str(weights), "--seed", seed, "--out", str(tmp_path), "--json", check=False)
    assert proc.returncode == 2 and "used in training" in json.loads(proc.stdout)["error"]
    assert not any(tmp_path.iterdir())                     # refused before any work


def test_demo_refuses_a_calibration_seed(weights, tmp_path, cli, monkeypatch):
    from unifygeo_ros.inference import calibration
    from unifygeo_ros.model.unifygeo import load_checkpoint
    from unifygeo_ros.tools.calibrate import write_calibration

    h = load_checkpoint(weights)[0].state_hash()
    table = tmp_path / "table" / "calibration.json"
    table.parent.mkdir()
    write_calibration(h, {"c_pos": 2.0, "c_yaw": 1.5, "measured_on": {"seeds": [2026, 101]}}, table)
    monkeypatch.setattr(calibration, "CALIBRATION_FILE", table)
    tmp_path = tmp_path / "out"
    proc = cli("demo", "--weights", str(weights), "--out", str(tmp_path), "--json", check=False)
    assert proc.returncode == 2 and "used to calibrate" in json.loads(proc.stdout)["error"]


def test_localize_command(demo, tmp_path, cli):
    from unifygeo_ros.sim.render import render_panorama
    from unifygeo_ros.sim.world import generate_city

    db = demo[0]["database"]["path"]
    city = generate_city(2026, 200.0, 52.52, 13.40)
    img = render_panorama(city, (100.0, 100.0), 45.0, 512, 256)
    png = tmp_path / "pano.png"
    cv2.imwrite(str(png), img[:, :, ::-1])
    res = json.loads(cli("localize", "--db", db, str(png), "--heading", "45", "--prior", "100,100,40",
                             "--distribution", str(tmp_path / "d.png"), "--json").stdout)
    assert res["heading_mode"] == "known" and len(res["covariance"]) == 3
    assert np.hypot(res["x"] - 100.0, res["y"] - 100.0) < 40.0 + 64.0
    assert cv2.imread(res["distribution_png"]) is not None
    text = cli("localize", "--db", db, str(png)).stdout
    assert "position  lat" in text and "heading mode unknown" in text
    # Clear errors: an unreadable file, a missing file, a panorama that is not 2:1.
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    for path, message in ((bad, "not a readable image"), (tmp_path / "nope.jpg", "image not found")):
        proc = cli("localize", "--db", db, str(path), "--json", check=False)
        assert proc.returncode == 2 and message in json.loads(proc.stdout)["error"]
    cv2.imwrite(str(tmp_path / "square.png"), img[:, :256, ::-1])
    proc = cli("localize", "--db", db, str(tmp_path / "square.png"), "--json", check=False)
    assert proc.returncode == 2 and "not 2:1" in json.loads(proc.stdout)["error"]
    proc = cli("localize", "--db", str(tmp_path), str(png), "--json", check=False)
    assert proc.returncode == 2 and "not a database" in json.loads(proc.stdout)["error"]


def test_bench_localize_json_shape(demo, cli):
    """Shape of the report only: timings are never asserted in tests."""
    report = json.loads(cli("bench", "localize", "--db", demo[0]["database"]["path"], "--repeats", "1",
                                "--warmup", "0", "--backends", "onnxruntime-cpu", "--json").stdout)
    assert set(report["backends"]) == {"onnxruntime-cpu"}
    for entry in report["backends"].values():
        for stages in entry["modes"].values():
            assert stages["total"] > 0 and set(stages) >= {"ground", "search", "aerial", "decoder", "posterior"}
    assert "tensorrt" in report["unavailable"]


def test_bench_retrieval_json_shape(cli):
    report = json.loads(cli("bench", "retrieval", "--tiles", "2000", "--queries", "5", "--kinds", "flat,pqfs,hnsw,ivf",
                            "--k-factor", "16", "--ef-search", "64", "--nprobe", "16", "--json").stdout)
    per = report["sizes"]["2000"]
    assert set(per) == {"flat", "pqfs", "hnsw", "ivf"}
    assert per["flat"]["settings"][0]["recall@5_matching"] == 1.0
    for entry in per.values():
        for s in entry["settings"]:
            assert 0.0 <= s["recall@5_random"] <= 1.0 and s["median_ms"] > 0
    proc = cli("bench", "retrieval", "--kinds", "lsh", "--json", check=False)
    assert proc.returncode == 2 and "expected flat" in json.loads(proc.stdout)["error"]


def test_calibrate_fits_and_writes_a_table_entry(weights, tmp_path):
    from unifygeo_ros.inference.calibration import lookup_calibration, read_calibrations
    from unifygeo_ros.tools.calibrate import calibrate, write_calibration
    from unifygeo_ros.tools.synthetic import DEMO_MODES as MODES

    report = calibrate(str(weights), [3003], ["suburb"], 200.0, 4, str(tmp_path / "cal"), progress=False)
    assert report["c_pos"] > 0 and report["c_yaw"] > 0 and report["measured_on"]["records"] == 4 * len(MODES)
    assert report["pinhole"]["c_pos"] > 0 and report["pinhole"]["c_yaw"] > 0     # fitted on the pinhole views alone
    assert set(report["per_mode_after_scaling"]) == set(MODES)
    assert (tmp_path / "cal" / "records.json").is_file()
    table = tmp_path / "calibration.json"
    write_calibration(report["model_hash"], {"c_pos": report["c_pos"], "c_yaw": report["c_yaw"]}, table)
    write_calibration("f" * 64, {"c_pos": 1.5, "c_yaw": 2.0}, table)
    stored = read_calibrations(table)          # plain JSON data, both entries
    assert stored[report["model_hash"]]["c_pos"] == report["c_pos"] and len(stored) == 2
    assert json.loads(table.read_text())["models"]["f" * 64] == {"c_pos": 1.5, "c_yaw": 2.0}
    assert lookup_calibration("f" * 64, table).scales("panorama") == (1.5, 2.0)
    for seed in (13, 15, 16, 21, 2026):
        with pytest.raises(ValueError, match="training or demo seeds"):
            calibrate(str(weights), [seed], ["default"], 200.0, 4, str(tmp_path / "x"), progress=False)


def _records(model_hash: str, seed: int = 101) -> list[dict]:
    """Hand-made view records: per mode (views, views in the right mode, the right-mode errors'
    standard deviation under a unit covariance) as the table below says."""
    rng = np.random.default_rng(7)
    plan = {"panorama, known heading": (200, 180, 1.5), "panorama, unknown heading": (200, 100, 0.5),
            "pinhole 90 deg, known heading": (100, 50, 2.0), "pinhole 90 deg, unknown heading": (200, 5, 1.0)}
    records = []
    for mode, (n, right, sd) in plan.items():
        for i in range(n):
            in_mode = i < right
            err = rng.normal(0.0, sd, 2) if in_mode else rng.normal(0.0, 100.0, 2)
            raw = float(np.clip(rng.beta(4, 2) if in_mode else rng.beta(2, 4), 1e-3, 1 - 1e-3))
            records.append({"mode": mode, "seed": seed, "style": "default", "model_hash": model_hash,
                            "err_xy": err.tolist(), "cov_xy": np.eye(2).tolist(), "d2": float(err @ err),
                            "error_m": float(np.hypot(*err)), "sigma_m": 1.0, "in_mode": in_mode,
                            "yaw_error_deg": float(abs(rng.normal(0.0, 2.0 * sd))), "sigma_yaw_deg": 1.0,
                            "confidence_raw": raw, "consensus_support": float(rng.uniform(0.1, 1.0))})
    return records


def test_calibrate_fits_each_calibration_case_from_records(weights, tmp_path):
    from unifygeo_ros.model.unifygeo import load_checkpoint
    from unifygeo_ros.tools.calibrate import calibrate

    model_hash = load_checkpoint(str(weights))[0].state_hash()
    path = tmp_path / "records.json"
    path.write_text(json.dumps(_records(model_hash)))
    report = calibrate(str(weights), [], ["default"], 400.0, 60, str(tmp_path / "cal"), progress=False,
                       records_from=[path])
    cases, pin = report["cases"], report["pinhole"]["cases"]
    assert set(cases) == {"known heading", "unknown heading"} and set(pin) == {"known heading", "unknown heading"}
    assert cases["known heading"]["c_pos"] == pytest.approx(1.5, rel=0.15)
    assert cases["unknown heading"]["c_pos"] == pytest.approx(0.5, rel=0.15)
    assert pin["known heading"]["c_pos"] == pytest.approx(2.0, rel=0.2)
    # 5 views in the right mode: no factors of its own, and the confidence is their share
    assert "c_pos" not in pin["unknown heading"] and pin["unknown heading"]["right_mode_views"] == 5
    assert pin["unknown heading"]["confidence"]["right_mode_share"] == pytest.approx(5 / 200)
    assert cases["known heading"]["confidence"]["weights"][0] > 0         # fitted: a higher raw confidence, likelier
    per = report["per_mode_after_scaling"]
    for mode in ("panorama, known heading", "panorama, unknown heading"):
        assert per[mode]["in_95_ellipse_right_mode"] == pytest.approx(0.95, abs=0.03)
    assert per["pinhole 90 deg, unknown heading"]["calibration_case"] == "unknown heading"
    assert report["measured_on"]["seeds"] == [101] and report["measured_on"]["views_per_city_and_mode"] == 200
    path.write_text(json.dumps(_records("e" * 64)))
    with pytest.raises(ValueError, match="views localized by model eeeeeeeeeeee"):
        calibrate(str(weights), [], ["default"], 400.0, 60, str(tmp_path / "cal"), progress=False, records_from=[path])
    path.write_text(json.dumps(_records(model_hash, seed=2026)))
    with pytest.raises(ValueError, match="training or demo seeds"):
        calibrate(str(weights), [], ["default"], 400.0, 60, str(tmp_path / "cal"), progress=False, records_from=[path])


def test_calibrate_command_bad_arguments(cli):
    for args, message in ((("--seeds", "101,x"), "--seeds: expected comma-separated integers"),
                          (("--seeds", "16"), "training or demo seeds"),
                          (("--views", "0"), "--views: expected >= 1"),
                          (("--records", "r.json", "--part", "tracking"), "--records: expected --part covariance"),
                          (("--records", "/nonexistent/records.json", "--part", "covariance"),
                           "expected the records.json of an earlier calibration run")):
        proc = cli("calibrate", *args, "--json", check=False)
        assert proc.returncode == 2 and message in json.loads(proc.stdout)["error"], proc.stdout
