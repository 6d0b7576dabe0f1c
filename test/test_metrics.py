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
