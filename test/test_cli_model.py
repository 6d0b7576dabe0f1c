"""The model subcommands print one JSON object with --json and fail clearly on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

PAPER_REFERENCE = 57_700_330


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "unifygeo_ros", *args], capture_output=True, text=True,
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_model_info_paper_json():
    info = json.loads(run_cli("model-info", "--config", "paper", "--json").stdout)
    for key in ("parameters", "parameters_without_yaw_head", "ground_input", "aerial_input", "descriptor_dim",
                "levels", "D"):
        assert key in info
    assert abs(info["parameters_without_yaw_head"] / PAPER_REFERENCE - 1) < 0.02
    assert info["ground_input"] == [3, 384, 768] and info["aerial_input"] == [3, 384, 384]
    assert info["descriptor_dim"] == 768 and info["D"] == [384, 384]
    assert [lv["cells"][0] for lv in info["levels"]] == [12, 24, 48, 96]
    assert [lv["channels"] for lv in info["levels"]] == [768, 384, 192, 96]


def test_model_info_bad_config_is_one_json_error():
    proc = run_cli("model-info", "--config", "huge", "--json", check=False)
    assert proc.returncode == 2
    assert "expected one of" in json.loads(proc.stdout)["error"]


def test_export_small_with_parity_check(tmp_path):
    out = json.loads(run_cli("export", "--config", "small", "--out", str(tmp_path), "--json").stdout)
    assert out["parity_ok"] is True and out["parity_max_abs_diff"] <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aerial_branch.onnx", "decoder.onnx",
                                                         "ground_branch.onnx", "manifest.json"]


def test_bench_model_json_shape():
    """Shape of the report only: timings are never asserted in tests."""
    report = json.loads(run_cli("bench", "model", "--config", "small", "--repeats", "2", "--warmup", "1",
                                "--json").stdout)
    assert set(report["backends"]) == {"torch", "onnxruntime"}
    for backend in report["backends"].values():
        for case in ("ground_b1", "aerial_b1", "aerial_b5", "decoder_b1", "decoder_b5"):
            assert backend[case]["median_ms"] > 0
        assert backend["peak_rss_mb"] > 0
    assert report["machine"]["cpu_count"] >= 1


def test_bench_train_json_reports_each_precision_or_why_not():
    out = json.loads(run_cli("bench", "train", "--batch-size", "2", "--steps", "2", "--warmup", "0",
                             "--precisions", "fp32,fp16", "--device", "cpu", "--json").stdout)
    assert out["device"] == "cpu" and out["batch_size"] == 2 and out["steps"] == 2
    fp32 = out["precisions"]["fp32"]
    assert fp32["autocast"] == "fp32" and fp32["median_step_s"] > 0 and fp32["speedup_vs_fp32"] == 1.0
    assert fp32["pairs_per_s"] == 2 / fp32["median_step_s"]
    assert "needs CUDA" in out["precisions"]["fp16"]["skipped"]      # no fp16 training on a CPU
    assert fp32["memory_format"] == "channels_last" and out["memory_formats"] == ["channels_last"]
    out = json.loads(run_cli("bench", "train", "--batch-size", "2", "--steps", "1", "--warmup", "0",
                             "--precisions", "fp32", "--memory-formats", "channels_last,contiguous",
                             "--device", "cpu", "--json").stdout)
    assert set(out["precisions"]) == {"fp32", "fp32 contiguous"}
    assert out["precisions"]["fp32 contiguous"]["memory_format"] == "contiguous"
    assert out["precisions"]["fp32 contiguous"]["median_step_s"] > 0


def test_bench_train_bad_input_is_one_json_error():
    proc = run_cli("bench", "train", "--steps", "0", "--json", check=False)
    assert proc.returncode == 2
    assert "expected steps >= 1" in json.loads(proc.stdout)["error"]
    proc = run_cli("bench", "train", "--precisions", "fp32,half", "--steps", "1", "--batch-size", "2",
                   "--json", check=False)
    assert proc.returncode == 2 and "expected one of" in json.loads(proc.stdout)["error"]
    proc = run_cli("bench", "train", "--memory-formats", "nhwc", "--steps", "1", "--batch-size", "2",
                   "--json", check=False)
    assert proc.returncode == 2 and "memory format: expected one of" in json.loads(proc.stdout)["error"]


def _subcommands(parser, path=("unifygeo",)):
    """Every (path, parser) below ``parser``, depth first."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subcommands(sub, (*path, name))


def test_every_option_has_help_and_every_command_takes_json():
    from unifygeo_ros.cli import build_parser

    subcommands = list(_subcommands(build_parser()))
    assert len(subcommands) >= 15                   # demo, train, eval, build-db, localize, replay, bench ..., sim ...
    missing = [f"{' '.join(path)} {action.option_strings[-1]}"
               for path, sub in subcommands for action in sub._actions
               if action.option_strings and action.help is None]
    assert not missing, "options without a help string: " + ", ".join(missing)
    leaves = [(path, sub) for path, sub in subcommands if not sub._subparsers]
    without_json = [" ".join(path) for path, sub in leaves
                    if "--json" not in {o for action in sub._actions for o in action.option_strings}]
    assert not without_json, "reporting commands without --json: " + ", ".join(without_json)
