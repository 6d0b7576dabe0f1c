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

The paper's protocol, as the authors' public evaluator computes it (the ``paper`` block of
``unifygeo eval``; functions ``paper_*``, :func:`official_hits`, :func:`gated_recall`):

* ranks are 1-based, ``1 + #(references scoring strictly higher than the positive)``, so a
  tie never counts against the positive; R@1% uses ``max(1, floor(N / 100))`` references;
* after re-ranking the top-k candidates by ``s_t + max M_t^0`` the positive's rank is
  ``1 + #(candidates with a strictly larger fused score)`` when it is a candidate, else
  unchanged (R@5, R@10 and R@1% cannot change with k = 5); the hit rate after re-ranking
  applies the official rule to the candidates' fused scores;
* metric localization on the primary positive tile: the pixel distance between the
  index of D's most probable pixel and the index of the truth pixel (the most probable
  pixel of their Gaussian label, :func:`paper_truth_index`), times metres per pixel; recalls
  count errors strictly under 1 / 3 / 5 / 10 / 20 m;
* LF-CVGL R@Xm (gated): a query counts only when its primary positive is ranked first
  (before or after re-ranking) AND the localization error on it is under X m; the
  denominator is every query. A semi-positive ranked first never counts.

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


# ---- the paper's protocol, as the authors' evaluator computes it ----------------------------

#: Distance thresholds (metres) of the paper protocol's recalls.
PAPER_THRESHOLDS_M = (1.0, 3.0, 5.0, 10.0, 20.0)


def paper_retrieval_metrics(ranks, hits, top1_positive_or_semi, n_refs: int) -> dict:
    """Retrieval metrics from 1-based ranks of the primary positive: R@1/5/10, R@1% (cut-off
    ``max(1, floor(n_refs / 100))``), the official hit rate, and the looser top-1 reading."""
    ranks = np.asarray(ranks)
    one_percent = max(1, int(n_refs) // 100)
    return {
        "R@1": float(np.mean(ranks <= 1)),
        "R@5": float(np.mean(ranks <= min(5, n_refs))),
        "R@10": float(np.mean(ranks <= min(10, n_refs))),
        "R@1%": float(np.mean(ranks <= one_percent)),
        "hit_rate": float(np.mean(np.asarray(hits, dtype=bool))),
        "top1_positive_or_semi": float(np.mean(np.asarray(top1_positive_or_semi, dtype=bool))),
        "R@1%_cutoff": int(one_percent),
        "queries": int(ranks.size),
        "references": int(n_refs),
    }


def reranked_ranks(ranks, candidates, fused, primary) -> np.ndarray:
    """1-based ranks of the primary positive after re-ranking the candidates by ``fused``:
    ``1 + #(candidates with a strictly larger fused score)`` where the primary is a
    candidate, the rank before re-ranking elsewhere. ``candidates``, ``fused``: (Q, k)."""
    ranks = np.asarray(ranks).copy()
    cand = np.asarray(candidates)
    fused = np.asarray(fused, dtype=np.float64)
    primary = np.asarray(primary)
    member = cand == primary[:, None]
    for q in np.flatnonzero(member.any(axis=1)):
        own = fused[q, int(np.argmax(member[q]))]
        ranks[q] = 1 + int(np.sum(fused[q] > own))
    return ranks


def official_hits(candidates, fused, positives, fallback) -> np.ndarray:
    """The official VIGOR hit on ranked candidates: with the primary and its three
    semi-positives set aside, no other candidate scores strictly higher than the primary.
    Where the primary is not a candidate, ``fallback`` (the hit before re-ranking).
    ``positives``: (Q, 4), primary first."""
    cand = np.asarray(candidates)
    fused = np.asarray(fused, dtype=np.float64)
    pos = np.asarray(positives)
    out = np.asarray(fallback, dtype=bool).copy()
    member = cand == pos[:, :1]
    for q in np.flatnonzero(member.any(axis=1)):
        own = fused[q, int(np.argmax(member[q]))]
        unrelated = ~(cand[q][:, None] == pos[q][None, :]).any(axis=1)
        out[q] = not bool(np.any(unrelated & (fused[q] > own)))
    return out


def paper_localization_metrics(errors_m, thresholds=PAPER_THRESHOLDS_M) -> dict:
    """Mean, median and the share of errors strictly under each threshold."""
    e = np.asarray(errors_m, dtype=np.float64)
    return {"mean_m": float(e.mean()), "median_m": float(np.median(e)),
            **{f"R@{t:g}m": float(np.mean(e < t)) for t in thresholds}, "count": int(e.size)}


def gated_recall(errors_m, primary_first, thresholds=PAPER_THRESHOLDS_M) -> dict:
    """LF-CVGL R@Xm: the share of ALL queries whose primary positive is ranked first and
    whose localization error on it is strictly under X metres."""
    e = np.asarray(errors_m, dtype=np.float64)
    first = np.asarray(primary_first, dtype=bool)
    return {f"R@{t:g}m": float(np.mean(first & (e < t))) for t in thresholds}


def paper_truth_index(dr: float, dc: float, tile_px: int, side: int) -> tuple[int, int]:
    """(row, col) index of the truth pixel as the authors' evaluator places it: the label
    offsets (at ``tile_px``) scaled to ``side`` and rounded (half to even), then the most
    probable pixel of a Gaussian sampled on ``side`` points spanning -side/2..side/2 around
    them (so an offset ``o`` lands on index ``round((side/2 + o) * (side - 1) / side)``)."""
    ro = float(np.round(dr / tile_px * side))
    co = float(np.round(dc / tile_px * side))
    rows = np.linspace(-side / 2 - ro, side / 2 - ro, side)
    cols = np.linspace(-side / 2 + co, side / 2 + co, side)
    return int(np.argmin(np.abs(rows))), int(np.argmin(np.abs(cols)))


def paper_pixel_error_m(d: np.ndarray, truth_index: tuple[int, int], mpp: float) -> float:
    """Metres between the index of D's most probable pixel and ``truth_index``."""
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(np.hypot(r - truth_index[0], c - truth_index[1]) * mpp)
