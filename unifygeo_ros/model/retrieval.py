"""Retrieval when the heading is not known (numpy only; beyond the paper).

With a layout term (see :mod:`.aggregator`) the ground descriptor depends on how the
panorama is turned. The ground branch gives the descriptor of every heading alignment
``k`` (``global_rolls`` of the ``R`` sub-stride copies, arranged by
:func:`alignment_descriptors`); a tile's retrieval score is the best cosine over the
alignments the heading log-prior allows (all of them for an unknown heading, a window for
a heading prior, only ``k = 0`` for a known heading, where the panorama was turned first).

Top-k by that score is exact from per-alignment searches: a tile in the overall top-k
has its best score at some alignment ``a``, and is then in ``a``'s own top-k (k tiles
above it there would all beat it overall), so merging the per-alignment top-k lists by
their best score loses nothing (:func:`merge_alignment_hits`).
"""

from __future__ import annotations

import numpy as np

from .heading import EXCLUDED


def alignment_descriptors(global_rolls):
    """(..., R, W', D) descriptors of the R sub-stride copies, each rolled by s = 0..W'-1
    columns, -> (..., K = R * W', D) ordered by alignment ``k = s * R + r`` (the decoder's
    order). Works on numpy arrays (the localizer) and torch tensors (the model) alike."""
    if global_rolls.ndim < 3:
        raise ValueError(f"global_rolls: expected (..., copies, columns, D), got shape {tuple(global_rolls.shape)}")
    *lead, r, w, d = global_rolls.shape
    return global_rolls.swapaxes(-3, -2).reshape(*lead, w * r, d)


def query_descriptors(global_rolls: np.ndarray, logprior: np.ndarray) -> np.ndarray:
    """The retrieval queries (A, D): the descriptors of the alignments ``logprior`` (K,)
    allows. With one copy (a known heading) only whole-column alignments exist."""
    lp = np.asarray(logprior, dtype=np.float64).reshape(-1)
    g = alignment_descriptors(np.asarray(global_rolls))
    step = len(lp) // g.shape[0]
    if step * g.shape[0] != len(lp):
        raise ValueError(f"global_rolls give {g.shape[0]} alignments, which do not divide the {len(lp)} of the prior")
    allowed = np.flatnonzero(lp[::step] > EXCLUDED / 2)
    if allowed.size == 0:
        raise ValueError("retrieval: the heading log-prior excludes every alignment")
    return np.ascontiguousarray(g[allowed], dtype=np.float32)


def merge_alignment_hits(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-alignment top lists (A, k') -> the overall top-``k`` (scores, ids), best first,
    each tile once with its best score. Ids < 0 (FAISS padding) are dropped."""
    best: dict[int, float] = {}
    for s_row, i_row in zip(np.asarray(scores), np.asarray(ids)):
        for s, i in zip(s_row, i_row):
            i = int(i)
            if i >= 0 and (i not in best or s > best[i]):
                best[i] = float(s)
    order = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]
    return (np.array([s for _, s in order], dtype=np.float32), np.array([i for i, _ in order], dtype=np.int64))


def best_alignment_scores(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """(N,) best cosine over the queries (A, D) of every reference (N, D)."""
    return (np.asarray(references, dtype=np.float32) @ np.asarray(queries, dtype=np.float32).T).max(axis=1)
