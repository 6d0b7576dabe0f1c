"""``unifygeo eval --paper`` end to end: the ``vigor`` network (weights in the authors' layout,
drawn from a seed) on a small synthetic VIGOR export, through the real command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from unifygeo_ros.model.released import released_state_dict
from unifygeo_ros.sim.vigor_export import VigorExportConfig, export_vigor
from unifygeo_ros.sim.world import generate_city

QUERIES = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper_eval")
    city = generate_city(3, 100.0, 60.17, 24.94)
    root = base / "VIGOR"
    export_vigor(city, root, VigorExportConfig(n_panoramas=8, city_name="Gamma", pano_size=(128, 64), tile_px=64,
                                               mpp=1.0, seed=4, max_per_tile=2, test_fraction=1.0))
    weights = base / "released_layout.pth"
    torch.save(released_state_dict(0), weights)         # a plain state dict, as the authors publish
    return root, weights


def _eval(root, weights, *extra):
    proc = subprocess.run([sys.executable, "-m", "unifygeo_ros", "eval", "--data", str(root), "--weights", str(weights),
                           "--protocol", "cross_area", "--cities", "Gamma", "--max-queries", str(QUERIES),
                           "--device", "cpu", *extra], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_eval_paper_runs_the_papers_pipeline_on_the_vigor_network(setup):
    root, weights = setup
    # --paper replaces the pipeline's options, whatever else is given.
    out = _eval(root, weights, "--paper", "--top-k", "3", "--turns", "4", "--heading", "both", "--json")
    assert len(out.strip().splitlines()) == 1
    r = json.loads(out)
    assert r["config"] == "vigor"
    cfg = r["eval_config"]
    assert cfg["paper"] is True
    assert (cfg["heading"], cfg["top_k"], cfg["rerank_score"], cfg["turns"], cfg["decoder_turns"]) == \
        ("known", 5, "m0", 1, 1)
    assert "unknown_heading" not in r
    known = r["known_heading"]
    pp = known["paper"]
    assert (pp["top_k"], pp["rerank_score"]) == (5, "m0")
    before, after = pp["retrieval_before_rerank"], pp["retrieval_after_rerank"]
    assert before["queries"] == after["queries"] == QUERIES
    assert before["references"] == 9 and before["R@1%_cutoff"] == 1
    for key in ("R@5", "R@10", "R@1%"):                   # re-ranking the top 5 cannot move these
        assert before[key] == after[key]
    assert before["R@1"] == known["retrieval"]["R@1"]
    assert after["R@1"] == known["retrieval_after_rerank_R@1"]
    loc = pp["localization_on_primary"]
    assert loc["count"] == QUERIES
    # Same D, same tile: the paper's pixel-index convention is within a pixel of ours.
    assert abs(loc["mean_m"] - known["localization_on_positive"]["mean_m"]) <= 1.5
    for stage, ret in (("before", before), ("after", after)):
        gated = pp[f"lf_cvgl_{stage}_rerank"]
        assert list(gated) == ["R@1m", "R@3m", "R@5m", "R@10m", "R@20m"]
        for t in gated:                                   # gated: at most both of its conditions
            assert gated[t] <= min(ret["R@1"], loc[t]) + 1e-12
        assert list(gated.values()) == sorted(gated.values())
    # The ungated full-pipeline recalls stay, under their own name.
    assert {"with_rerank", "without_rerank"} <= set(known["pipeline"])


def test_eval_paper_text_report(setup):
    root, weights = setup
    out = _eval(root, weights, "--paper")
    assert "the paper's pipeline" in out
    assert "LF-CVGL after re-ranking" in out and "ungated pipeline" in out
