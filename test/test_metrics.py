"""The paper's metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from unifygeo_ros.evaluation.metrics import (distance_stats, map_pixel, positive_ranks, recall_at_distances,
                                             retrieval_metrics, vigor_hits, yaw_stats)

# 4 queries x 6 references. Positives 0, 1, 2, 3; semi-positives listed per query.
SCORES = np.array([
    [0.90, 0.10, 0.20, 0.30, 0.40, 0.50],   # q0: positive first                     -> rank 0
    [0.95, 0.80, 0.10, 0.10, 0.10, 0.10],   # q1: an unrelated tile (0) first        -> rank 1
    [0.10, 0.20, 0.60, 0.10, 0.70, 0.10],   # q2: its semi-positive (4) first        -> rank 1
    [0.50, 0.60, 0.70, 0.10, 0.80, 0.90],   # q3: positive last                      -> rank 5
])
POSITIVES = np.array([0, 1, 2, 3])
SEMI = np.array([[1, 2, 3], [3, 4, 5], [4, 5, 0], [0, 1, 2]])


def test_ranks_and_hits_by_hand():
    assert positive_ranks(SCORES, POSITIVES).tolist() == [0, 1, 1, 5]
    # Official hit rate: semi-positives masked, positive must beat every other tile.
    # q0 yes; q1 no (unrelated 0 scores 0.95); q2 yes (only its semi 4 beat it); q3 no (tile 4 and 5 beat it).
    assert vigor_hits(SCORES, POSITIVES, SEMI).tolist() == [True, False, True, False]


def test_retrieval_metrics_by_hand():
    m = retrieval_metrics(SCORES, POSITIVES, SEMI)
    assert m["R@1"] == pytest.approx(1 / 4)
    assert m["R@5"] == pytest.approx(3 / 4)
    assert m["R@10"] == pytest.approx(1.0)
    assert m["R@1%"] == pytest.approx(1 / 4)            # 1 % of 6 references rounds to 1
    assert m["hit_rate"] == pytest.approx(2 / 4)
    # Looser reading: top-1 is the positive (q0) or a semi-positive (q2: tile 4).
    assert m["top1_positive_or_semi"] == pytest.approx(2 / 4)
    assert (m["queries"], m["references"]) == (4, 6)


def test_ties_do_not_count_against_the_positive():
    scores = np.array([[0.5, 0.5, 0.1]])
    assert positive_ranks(scores, np.array([1])).tolist() == [0]


def test_distance_and_recall_by_hand():
    errors = [0.5, 1.0, 3.0, 7.5, 12.0]
    d = distance_stats(errors)
    assert d["mean_m"] == pytest.approx(24.0 / 5) and d["median_m"] == pytest.approx(3.0)
    r = recall_at_distances(errors)
    assert (r["R@1m"], r["R@5m"], r["R@10m"]) == (pytest.approx(0.4), pytest.approx(0.6), pytest.approx(0.8))


def test_yaw_errors_wrap_around():
    y = yaw_stats([179.0, -170.0, 10.0], [-179.0, 170.0, 40.0])
    assert y["mean_deg"] == pytest.approx((2 + 20 + 30) / 3)
    assert y["median_deg"] == pytest.approx(20.0)


def test_map_pixel_is_the_centre_of_the_most_probable_pixel():
    d = np.zeros((8, 8))
    d[5, 2] = 1.0
    assert map_pixel(d) == (5.5, 2.5)


def test_tile_centres_for_the_consensus_are_east_north_metres():
    """The evaluation's consensus places the candidates by their centres' east / north metres
    from the first one (WGS 84 at 45 deg N: 0.001 deg of latitude is 111.13 m, 0.001 deg of
    longitude 78.85 m)."""
    from types import SimpleNamespace

    from unifygeo_ros.evaluation.evaluate import _tile_centers

    sats = [SimpleNamespace(lat=45.0, lon=7.0), SimpleNamespace(lat=45.001, lon=7.0),
            SimpleNamespace(lat=45.0, lon=7.001)]
    refs = SimpleNamespace(index=SimpleNamespace(satellites=sats))
    np.testing.assert_allclose(_tile_centers(refs, [0, 1, 2]), [[0, 0], [0, 111.13], [78.85, 0]], atol=0.02)
    np.testing.assert_allclose(_tile_centers(refs, [1, 0])[1], [0, -111.13], atol=0.02)


# ---- the paper's protocol, as the authors' evaluator computes it ----------------------------

def test_paper_retrieval_uses_one_based_ranks_and_a_floor_one_percent():
    from unifygeo_ros.evaluation.metrics import paper_retrieval_metrics

    m = paper_retrieval_metrics([1, 2, 10, 11], [True, True, True, False], [True, True, False, False], 250)
    assert (m["R@1"], m["R@5"], m["R@10"]) == (0.25, 0.5, 0.75)
    assert m["R@1%_cutoff"] == 2 and m["R@1%"] == 0.5          # floor(250 / 100) = 2 (rounding would give 3)
    assert m["hit_rate"] == 0.75 and m["top1_positive_or_semi"] == 0.5
    assert paper_retrieval_metrics([1], [True], [True], 50)["R@1%_cutoff"] == 1


def test_reranked_ranks_by_hand():
    from unifygeo_ros.evaluation.metrics import reranked_ranks

    cand = np.array([[11, 10, 90, 91, 92],      # primary 10 second, lifted to first
                     [90, 20, 21, 22, 23],      # primary 20 second, stays second
                     [90, 91, 92, 93, 94]])     # primary 30 not a candidate: its rank stays 7
    fused = np.array([[1.0, 1.5, 0.2, 0.1, 0.0],
                      [2.0, 1.5, 0.2, 0.1, 0.0],
                      [1.0, 0.9, 0.8, 0.7, 0.6]])
    assert reranked_ranks([2, 2, 7], cand, fused, np.array([10, 20, 30])).tolist() == [1, 2, 7]
    # A tie with the primary does not count against it.
    assert reranked_ranks([2], np.array([[5, 6]]), np.array([[1.0, 1.0]]), np.array([6])).tolist() == [1]


def test_official_hits_after_reranking_by_hand():
    from unifygeo_ros.evaluation.metrics import official_hits

    positives = np.array([[10, 11, 12, 13]] * 3 + [[30, 31, 32, 33]])
    cand = np.array([[11, 10, 90, 91, 92],      # only a semi-positive above the primary -> hit
                     [90, 10, 11, 12, 13],      # an unrelated tile strictly above -> no hit
                     [90, 10, 11, 12, 13],      # an unrelated tie -> hit
                     [90, 91, 92, 93, 94]])     # primary not a candidate -> the hit before
    fused = np.array([[2.0, 1.0, 0.5, 0.4, 0.3],
                      [1.01, 1.0, 0.9, 0.8, 0.7],
                      [1.0, 1.0, 0.9, 0.8, 0.7],
                      [1.0, 0.9, 0.8, 0.7, 0.6]])
    hits = official_hits(cand, fused, positives, fallback=[False, True, False, True])
    assert hits.tolist() == [True, False, True, True]


def test_gated_lf_cvgl_counts_only_a_first_ranked_primary_within_the_threshold():
    from unifygeo_ros.evaluation.metrics import gated_recall

    # q0: primary first, 0.5 m; q1: primary first, 4 m; q2: a semi-positive first (its
    # position 0.2 m from the truth: never counts); q3: primary first, exactly 10 m (not under 10).
    errors = [0.5, 4.0, 0.2, 10.0]
    first = [True, True, False, True]
    r = gated_recall(errors, first)
    assert r == {"R@1m": 0.25, "R@3m": 0.25, "R@5m": 0.5, "R@10m": 0.5, "R@20m": 0.75}
    # Over every query: the ungated reading (0.75 at 5 m) is not what the paper reports.
    assert gated_recall(errors, [True] * 4)["R@5m"] == 0.75


def test_paper_localization_recalls_are_strictly_under_the_thresholds():
    from unifygeo_ros.evaluation.metrics import paper_localization_metrics

    m = paper_localization_metrics([0.5, 1.0, 3.0, 7.5, 12.0, 25.0])
    assert m["mean_m"] == pytest.approx(49.0 / 6) and m["median_m"] == pytest.approx(5.25)
    assert (m["R@1m"], m["R@3m"], m["R@5m"], m["R@10m"], m["R@20m"]) == \
        pytest.approx((1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6))


def test_paper_truth_index_and_pixel_error_by_hand():
    from unifygeo_ros.evaluation.metrics import paper_pixel_error_m, paper_truth_index

    # VIGOR 640 px labels on a 384 px D. dr = dc = 0: the Gaussian peaks at index 192 (rows
    # and columns). dr = 100 -> 60 px -> round(252 * 383 / 384) = 251; dc = 100 -> column
    # offset 60 -> round(132 * 383 / 384) = 132; dr = -50 -> -30 -> index 162.
    assert paper_truth_index(0.0, 0.0, 640, 384) == (192, 192)
    assert paper_truth_index(100.0, 100.0, 640, 384) == (251, 132)
    assert paper_truth_index(-50.0, 0.0, 640, 384) == (162, 192)
    d = np.zeros((384, 384))
    d[195, 188] = 1.0                                          # 3 rows and 4 columns off: 5 px
    assert paper_pixel_error_m(d, (192, 192), 0.2) == pytest.approx(1.0)


def test_paper_block_gates_on_the_rerankings_first_tile():
    """Three queries, six references, top 3. q0: the primary first before and after. q1: a
    semi-positive first before re-ranking, the primary lifted to first after (but 4 m off).
    q2: an unrelated tile first; re-ranking picks a semi-positive, so q2 never counts, though
    its error on the primary is 0.3 m."""
    from unifygeo_ros.evaluation.evaluate import paper_block

    scores = np.array([[0.9, 0.5, 0.4, 0.3, 0.2, 0.1],
                       [0.2, 0.7, 0.8, 0.1, 0.1, 0.1],
                       [0.1, 0.1, 0.1, 0.5, 0.6, 0.7]])
    positives = np.array([[0, 1, 2, 3], [1, 2, 3, 4], [3, 4, 1, 2]])
    candidates = np.array([[0, 1, 2], [2, 1, 0], [5, 4, 3]])
    fused = np.array([[1.8, 1.2, 1.0], [1.5, 1.6, 0.3], [1.0, 1.3, 1.2]])
    errors = [0.5, 4.0, 0.3]
    block = paper_block(scores, positives, candidates, fused, np.array([True, True, True]), errors, "m0")
    before, after = block["retrieval_before_rerank"], block["retrieval_after_rerank"]
    assert (before["R@1"], after["R@1"]) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    # Official hit: q2 before re-ranking has the unrelated tile 5 above its primary; after, tile 5's
    # fused score (1.0) is below the primary's (1.2) and only the semi-positive 4 is above it.
    assert (before["hit_rate"], after["hit_rate"]) == (pytest.approx(2 / 3), pytest.approx(1.0))
    assert before["R@5"] == after["R@5"] == 1.0
    assert block["lf_cvgl_before_rerank"] == pytest.approx(
        {"R@1m": 1 / 3, "R@3m": 1 / 3, "R@5m": 1 / 3, "R@10m": 1 / 3, "R@20m": 1 / 3})
    assert block["lf_cvgl_after_rerank"] == pytest.approx(
        {"R@1m": 1 / 3, "R@3m": 1 / 3, "R@5m": 2 / 3, "R@10m": 2 / 3, "R@20m": 2 / 3})
    assert block["localization_on_primary"]["R@1m"] == pytest.approx(2 / 3)     # ungated: q0 and q2
