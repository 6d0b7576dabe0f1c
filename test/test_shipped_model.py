"""The model shipped in the package, evaluated on a small held-out synthetic city.

The city has a seed and a style never used in training (see weights/MODEL_CARD.md). The
bounds are loose (well below what the model measures on the full held-out city) so that a
broken model, a broken loader or a broken metric fails the build, not ordinary noise.
"""

from __future__ import annotations

import pytest

from unifygeo_ros.evaluation.evaluate import EvalConfig, evaluate
from unifygeo_ros.model.unifygeo import load_checkpoint
from unifygeo_ros.model_config import shipped_model_path
from unifygeo_ros.sim.vigor_export import VigorExportConfig, export_vigor
from unifygeo_ros.sim.world import generate_city

MAX_BYTES = 10_000_000
# Bounds at about half of (or 2-3 times) what model 6f8d38dd (2026-11-22) measured on this
# set (60 queries, 153 tiles, with the rotation ensembles of the retrieval and of the
# decoder, the evaluation's defaults): known heading median 0.65 m, retrieval R@10 0.80
# (chance 0.07), pipeline R@10m 0.67; unknown heading median 0.79 m, retrieval R@10 0.70
# (best over the alignments), pipeline R@10m 0.48, yaw median 3.9 deg (chance 90 deg).
# The shipped model (77fdda4b, 2026-12-04) measures better on the full held-out city.
KNOWN_MEDIAN_M = 2.0
KNOWN_R10 = 0.40
KNOWN_PIPELINE_R10M = 0.33
UNKNOWN_MEDIAN_M = 2.0
UNKNOWN_R10 = 0.35
UNKNOWN_PIPELINE_R10M = 0.24
UNKNOWN_YAW_MEDIAN_DEG = 10.0

@pytest.fixture(scope="module")
def heldout_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    city = generate_city(77, 400.0, 60.17, 24.94, "nordic")          # never a training seed or style
    export_vigor(city, root, VigorExportConfig(n_panoramas=120, city_name="HeldOut", pano_size=(512, 256),
                                               tile_px=256, mpp=0.25, seed=77, max_per_tile=2, workers=2))
    return root


def test_shipped_model_is_small_and_loads():
    path = shipped_model_path()
    assert path.stat().st_size <= MAX_BYTES
    model, payload = load_checkpoint(path)
    assert model.cfg.name == "small"
    assert payload["dtype"] == "float16"
    assert payload["training"]["aerial_mpp"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def report(heldout_root):
    return evaluate(EvalConfig(data=str(heldout_root), weights=str(shipped_model_path()), protocol="cross_area",
                               cities=("HeldOut",), heading="both", max_queries=60, seed=3), progress=False)


def test_known_heading_metrics_on_a_heldout_city(report):
    known = report["known_heading"]
    print("known heading:", known["retrieval"], known["localization_on_positive"], known["pipeline"])
    assert known["localization_on_positive"]["median_m"] <= KNOWN_MEDIAN_M
    assert known["retrieval"]["R@10"] >= KNOWN_R10
    assert known["pipeline"]["with_rerank"]["R@10m"] >= KNOWN_PIPELINE_R10M
    assert known["pipeline"]["with_consensus"]["R@10m"] >= KNOWN_PIPELINE_R10M
    # The consensus (the localizer's tile choice) does not do worse than the paper's re-ranking
    # by more than three of the 60 queries (on the full held-out city it does better).
    assert known["pipeline"]["with_consensus"]["R@10m"] >= known["pipeline"]["with_rerank"]["R@10m"] - 0.05


def test_unknown_heading_metrics_on_a_heldout_city(report):
    unknown = report["unknown_heading"]
    print("unknown heading:", unknown["retrieval"], unknown["localization_on_positive"], unknown["yaw"],
          unknown["pipeline"])
    assert unknown["localization_on_positive"]["median_m"] <= UNKNOWN_MEDIAN_M
    assert unknown["retrieval"]["R@10"] >= UNKNOWN_R10
    assert unknown["pipeline"]["with_rerank"]["R@10m"] >= UNKNOWN_PIPELINE_R10M
    assert unknown["pipeline"]["with_consensus"]["R@10m"] >= UNKNOWN_PIPELINE_R10M
    assert unknown["pipeline"]["with_consensus"]["R@10m"] >= unknown["pipeline"]["with_rerank"]["R@10m"] - 0.05
    assert unknown["yaw"]["median_deg"] <= UNKNOWN_YAW_MEDIAN_DEG


def test_the_mirror_ensemble_on_a_heldout_city(heldout_root):
    """``decoder_turns = 8`` (the turns and their mirror images, with the mirrored panorama)
    through the evaluation: retrieval untouched, position and yaw within the same bounds."""
    common = dict(data=str(heldout_root), weights=str(shipped_model_path()), protocol="cross_area",
                  cities=("HeldOut",), heading="unknown", max_queries=16, seed=3)
    four = evaluate(EvalConfig(**common), progress=False)["unknown_heading"]
    eight = evaluate(EvalConfig(**common, decoder_turns=8), progress=False)["unknown_heading"]
    print("4 members:", four["localization_on_positive"], four["yaw"])
    print("8 members:", eight["localization_on_positive"], eight["yaw"])
    assert eight["retrieval"] == four["retrieval"]
    assert eight["localization_on_positive"]["median_m"] <= UNKNOWN_MEDIAN_M
    assert eight["yaw"]["median_deg"] <= UNKNOWN_YAW_MEDIAN_DEG
