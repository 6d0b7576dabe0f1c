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

Rotation ensemble (``turns = 4``, the default of new databases)
---------------------------------------------------------------
The network was trained with synchronised quarter turns (the tile turned
counter-clockwise by 90 degrees, the panorama rolled to match), so a pair can be scored
four ways: the tile turned by ``j`` quarters against the panorama turned with it. The
panorama's side is free, because a quarter turn of the panorama is an alignment shift of
``K / 4`` (the circular padding makes it exact); the tile's side is four aerial
encodings at database build time. The ensemble score is the mean of the four cosines,
which is an inner product of concatenations scaled by ``1 / sqrt(turns)``
(:func:`ensemble_references`, :func:`ensemble_queries`). On the shipped model it raised
TestNordic retrieval R@1 from 25.2 to 29.3 % (known heading) and R@5 from 53.8 to 59.5 %.

Search (:func:`ensemble_search`): the FAISS index holds turn 0 only (the tile as it is,
the paper's descriptor), so its memory, speed and the index benchmarks stay those of one
descriptor per tile; its top ``shortlist(k)`` tiles (by the best alignment, merged as
above) are re-scored exactly with the ensemble descriptors. On TestNordic (386 tiles) a
shortlist of 20 already gives the full ensemble's R@1 and R@5, 50 also its R@10.
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


TURNS = (1, 4)    # rotation ensembles: none, or the four quarter turns


def check_turns(turns: int, what: str = "rotation ensemble") -> int:
    """``turns`` as an int, if it is one of :data:`TURNS` (``what`` names the option in the
    error). The decoder's ensemble has its own: :data:`.decoder_ensemble.DECODER_TURNS`."""
    if int(turns) not in TURNS:
        raise ValueError(f"{what}: expected one of {TURNS} turns (1: no ensemble), got {turns!r}")
    return int(turns)


def turned_tiles(images, turns: int):
    """(N, C, L, L) tiles -> (N, turns, C, L, L), tile ``j`` turned counter-clockwise by ``j``
    quarters (as the training's synchronised rotation). numpy or torch."""
    check_turns(turns)
    if isinstance(images, np.ndarray):
        return np.stack([np.rot90(images, j, axes=(-2, -1)) for j in range(turns)], axis=1)
    import torch

    return torch.stack([torch.rot90(images, j, dims=(-2, -1)) for j in range(turns)], dim=1)


def ensemble_references(descriptors):
    """(N, turns, D) descriptors of the turned tiles -> (N, turns * D) unit vectors."""
    n, turns, d = descriptors.shape
    return descriptors.reshape(n, turns * d) / np.sqrt(check_turns(turns))


def ensemble_queries(alignments, turns: int):
    """(K, D) descriptors of every heading alignment -> (K, turns * D): row ``a`` holds the
    descriptors of alignments ``a + j K / turns`` (the panorama turned by ``j`` quarters), so
    that its inner product with :func:`ensemble_references` is the mean of the ``turns``
    cosines."""
    turns = check_turns(turns)
    k = alignments.shape[0]
    if k % turns:
        raise ValueError(f"rotation ensemble: {k} alignments are not divisible into {turns} turns")
    rows = (np.arange(k)[:, None] + np.arange(turns)[None] * (k // turns)) % k
    return alignments[rows].reshape(k, turns * alignments.shape[1]) / np.sqrt(turns)


def query_descriptors(global_rolls: np.ndarray, logprior: np.ndarray, turns: int = 1) -> np.ndarray:
    """The retrieval queries (A, turns * D): the descriptors of the alignments ``logprior``
    (K,) allows, combined over the rotation ensemble. With one copy (a known heading) only
    whole-column alignments exist."""
    lp = np.asarray(logprior, dtype=np.float64).reshape(-1)
    g = ensemble_queries(alignment_descriptors(np.asarray(global_rolls)), turns)
    step = len(lp) // g.shape[0]
    if step * g.shape[0] != len(lp):
        raise ValueError(f"global_rolls give {g.shape[0]} alignments, which do not divide the {len(lp)} of the prior")
    allowed = np.flatnonzero(lp[::step] > EXCLUDED / 2)
    if allowed.size == 0:
        raise ValueError("retrieval: the heading log-prior excludes every alignment")
    return np.ascontiguousarray(g[allowed], dtype=np.float32)


def merge_alignment_hits(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-alignment top lists (A, k') -> the overall top-``k`` (scores, ids), best first,
    each tile once with its best score (ties: the smaller id first). Ids < 0 (FAISS
    padding) are dropped."""
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    i = np.asarray(ids, dtype=np.int64).reshape(-1)
    keep = i >= 0
    s, i = s[keep], i[keep]
    order = np.lexsort((-s, i))                    # by id, then the best score first
    s, i = s[order], i[order]
    first = np.ones(len(i), dtype=bool)
    first[1:] = i[1:] != i[:-1]
    s, i = s[first], i[first]
    top = np.lexsort((i, -s))[:k]
    return s[top], i[top]


SHORTLIST_MIN = 50
SHORTLIST_FACTOR = 10


def shortlist_size(k: int, n: int) -> int:
    """Tiles the index proposes for the ensemble re-scoring of a top-``k`` over ``n`` tiles."""
    return int(min(n, max(SHORTLIST_MIN, SHORTLIST_FACTOR * k)))


def first_turn(vectors: np.ndarray, turns: int) -> np.ndarray:
    """(..., turns * D) ensemble vectors (queries or references) -> (..., D) unit descriptors
    of turn 0 (what the index holds)."""
    d = vectors.shape[-1] // turns
    return np.ascontiguousarray(vectors[..., :d] * np.sqrt(turns), dtype=np.float32)


def ensemble_search(search, descriptors, queries: np.ndarray, k: int, turns: int, n: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``n`` tiles (scores, ids), best first, by the best ensemble score over the
    queries (A, turns * D). ``search(q (A, D), k')`` is the index's per-query top-k' over
    turn 0 (FAISS ``index.search``); ``descriptors`` (n, turns * D) the ensemble's (may be
    memory-mapped). With one turn this is the exact merged search of the index."""
    q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, queries.shape[-1])
    if check_turns(turns) == 1:
        k = min(k, n)
        return merge_alignment_hits(*search(q, k), k)
    short = shortlist_size(k, n)
    _, cand = merge_alignment_hits(*search(first_turn(q, turns), short), short)
    if cand.size == 0:
        return np.zeros(0, np.float32), cand
    order = np.argsort(cand)                       # sorted reads from a memory map
    full = np.empty(len(cand), dtype=np.float32)
    full[order] = best_alignment_scores(q, np.asarray(descriptors[cand[order]]))
    top = np.argsort(-full, kind="stable")[:k]
    return full[top], cand[top]


SUBSET_EXACT_MAX = 200_000     # position-restricted searches up to this many tiles are exact (numpy)


def search_tiles(db, query: np.ndarray, k: int, near: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` tiles of the database ``db`` by their best ensemble score over ``query``:
    (scores, tile ids), best first.

    ``query`` is one descriptor or one per allowed heading alignment (A, turns * D). ``db``
    provides ``index_search(queries, k, subset)`` (the FAISS index over turn 0),
    ``descriptors`` (n, turns * D), ``turns`` and ``n``. With ``near`` (tile ids, e.g. those
    near a position prior) only those tiles are candidates: an exact numpy search up to
    :data:`SUBSET_EXACT_MAX` of them, else the index restricted to them."""
    q = np.ascontiguousarray(query, dtype=np.float32)
    q = q.reshape(-1, q.shape[-1])
    if q.shape[1] != db.descriptors.shape[1]:
        raise ValueError(f"database search: expected {db.descriptors.shape[1]}-d queries "
                         f"({db.turns} turn(s)), got {q.shape[1]}")
    if near is None:
        return ensemble_search(db.index_search, db.descriptors, q, k, db.turns, db.n)
    near = np.asarray(near, dtype=np.int64)
    if near.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    k = min(k, near.size)
    if near.size <= SUBSET_EXACT_MAX:
        s = best_alignment_scores(q, db.descriptors[near])
        top = np.argsort(-s, kind="stable")[:k]
        return s[top], near[top]
    return ensemble_search(lambda x, kk: db.index_search(x, kk, near), db.descriptors, q, k, db.turns, near.size)


def best_alignment_scores(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """(N,) best cosine over the queries (A, D) of every reference (N, D)."""
    return (np.asarray(references, dtype=np.float32) @ np.asarray(queries, dtype=np.float32).T).max(axis=1)
