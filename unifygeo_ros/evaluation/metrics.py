"""The paper's metrics (Sec. IV-B), computed exactly as defined there and in VIGOR.

Retrieval (queries against every reference tile, scores = cosine similarity):

* **R@k**: the positive tile is among the k highest-scoring references.
* **R@1%**: the positive is among the top 1 % of the references (at least one).
* **Hit rate** (VIGOR's official definition, as UnifyGeo's evaluation code applies it): the
  three semi-positives are masked out and the positive must score strictly higher than
  every other reference. ``top1_positive_or_semi`` reports the looser reading ("top-1 is
  the positive or a semi-positive") alongside.

Metric localization: distances in metres between the MAP pixel of D on the positive tile
and the truth: mean and median.

LF-CVGL (the full pipeline): the share of queries localized within 1, 5 and 10 m.

Yaw: absolute angular differences in degrees (wrapped), mean and median.
"""

from __future__ import annotations

import numpy as np

from ..conventions import angle_diff_deg


def positive_ranks(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """0-based rank of each query's positive: how many references score strictly higher."""
    scores = np.asarray(scores, dtype=np.float64)
    pos_scores = scores[np.arange(len(scores)), positives]
    return (scores > pos_scores[:, None]).sum(axis=1)


def vigor_hits(scores: np.ndarray, positives: np.ndarray, semi_positives: np.ndarray) -> np.ndarray:
    """Official hit: with the semi-positives masked, the positive beats every other reference."""
    s = np.array(scores, dtype=np.float64, copy=True)
    rows = np.arange(len(s))
    pos_scores = s[rows, positives]
    for j in range(semi_positives.shape[1]):
        s[rows, semi_positives[:, j]] = -np.inf
    s[rows, positives] = -np.inf
    return s.max(axis=1) < pos_scores


def retrieval_metrics(scores: np.ndarray, positives: np.ndarray, semi_positives: np.ndarray) -> dict:
    """``scores`` (Q, N); ``positives`` (Q,); ``semi_positives`` (Q, 3) tile indices."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives)
    semi = np.asarray(semi_positives).reshape(len(positives), -1)
    n_refs = scores.shape[1]
    ranks = positive_ranks(scores, positives)
    top1 = scores.argmax(axis=1)
    one_percent = max(1, int(round(n_refs * 0.01)))
    return {
        "R@1": float(np.mean(ranks < 1)),
        "R@5": float(np.mean(ranks < 5)),
        "R@10": float(np.mean(ranks < 10)),
        "R@1%": float(np.mean(ranks < one_percent)),
        "hit_rate": float(np.mean(vigor_hits(scores, positives, semi))),
        "top1_positive_or_semi": float(np.mean((top1 == positives) | (semi == top1[:, None]).any(axis=1))),
        "queries": int(len(positives)),
        "references": int(n_refs),
    }


def distance_stats(errors_m) -> dict:
    e = np.asarray(errors_m, dtype=np.float64)
    return {"mean_m": float(e.mean()), "median_m": float(np.median(e)), "count": int(e.size)}


def recall_at_distances(errors_m, thresholds=(1.0, 5.0, 10.0)) -> dict:
    e = np.asarray(errors_m, dtype=np.float64)
    return {f"R@{t:g}m": float(np.mean(e <= t)) for t in thresholds}


def yaw_stats(estimated_deg, true_deg) -> dict:
    err = np.abs(angle_diff_deg(np.asarray(estimated_deg), np.asarray(true_deg)))
    return {"mean_deg": float(np.mean(err)), "median_deg": float(np.median(err)), "count": int(np.size(err))}


def map_pixel(d: np.ndarray) -> tuple[float, float]:
    """Continuous (row, col) of the centre of D's most probable pixel."""
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return r + 0.5, c + 0.5
