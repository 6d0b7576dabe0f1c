"""Re-ranking (paper Sec. III-D, Eq. 4, with the matching score of every level).

Among the top-k retrieval candidates, the best aerial tile maximises ``s_t + m_t``: the
retrieval score (cosine similarity of the global descriptors) plus a detailed matching
score that the decoder computes anyway while localizing on the candidate.

* Paper (Eq. 4): ``m_t = max_ij M_t^0(i, j)``, the level-0 maximum (decoder output ``m0_max``).
* Default here: ``m_t = mean_l max_ij M_t^l(i, j)`` over the four levels (``match_score``).
  The finer levels resolve the tile 2-8 times better than M^0. Shipped model, held-out
  city TestNordic, 300 panoramas, known heading, top-5: R@1 after re-ranking 17.0 % with
  Eq. 4, 24.7 % with every level (the positive was among the five for 27.7 %).

``RERANK_SCORES`` maps the choice (``matching`` | ``m0``) to the decoder output it uses.

**Consensus of the candidates** (ours, :func:`consensus`; the localizer's default tile
choice, ``tile_choice``). Tiles overlap (by half in VIGOR and in ``unifygeo build-db``'s
default lattice), so the camera lies in up to four candidates, and when the right place was
retrieved its D should peak at the same map position on each of them; a wrong tile's peak is
rarely confirmed by another candidate. Each candidate's MAP position ``p_t`` is scored by the
mixture of every candidate's D there, ``support_t = sum_u w_u D_u(p_t)`` (``D_u`` summed
over a ``window`` x ``window`` pixel square around ``p_t``, zero off tile ``u``), with
``w = softmax(beta * (s + m))`` the re-ranking's own scores; the tile with the largest
support is chosen. With a single candidate, or tiles that do not overlap, it falls back to
each tile's own score weighted by its D's local mass. ``beta`` and ``window`` were chosen on
a validation city (ValRand: seed 31, suburb geometry, random palette); on the held-out city
TestNordic (600 queries, top 5, no decoder ensemble) it raises the pipeline's R@10m from
76.7 to 79.0 % with a known heading and from 65.2 to 69.0 % with an unknown one (see the
model card).
"""

from __future__ import annotations

import numpy as np

from ..options import RERANK_SCORES as _RERANK_CHOICES
from ..options import TILE_CHOICES

#: The decoder output each re-ranking score (option ``rerank_score``) uses.
RERANK_SCORES = dict(zip(_RERANK_CHOICES, ("match_score", "m0_max")))

# How the localizer picks the tile among the decoded candidates (option ``tile_choice``,
# :data:`TILE_CHOICES`): ``consensus`` (:func:`consensus`) or ``rerank`` (the paper's argmax
# of ``s_t + m_t``).

#: Temperature of the consensus weights over the re-ranking scores, and its window (pixels).
CONSENSUS_BETA = 10.0
CONSENSUS_WINDOW = 3


def rerank_output(score: str) -> str:
    """The decoder output a re-ranking score uses (``matching`` or ``m0``)."""
    if score not in RERANK_SCORES:
        raise ValueError(f"re-ranking score: expected one of {sorted(RERANK_SCORES)}, got {score!r}")
    return RERANK_SCORES[score]


def rerank(retrieval_scores, matching_scores):
    """Return ``(order, combined)``: candidate indices sorted by retrieval + matching score
    (best first; ties keep the retrieval order) and the combined scores themselves."""
    s = np.asarray(retrieval_scores, dtype=np.float64).reshape(-1)
    m = np.asarray(matching_scores, dtype=np.float64).reshape(-1)
    if s.shape != m.shape:
        raise ValueError(f"re-ranking: expected one matching score per candidate ({s.size}), got {m.size}")
    if s.size == 0:
        raise ValueError("re-ranking: expected at least one retrieval candidate, got none")
    if not (np.isfinite(s).all() and np.isfinite(m).all()):
        raise ValueError("re-ranking: expected finite scores, found NaN or infinity")
    combined = s + m
    order = np.argsort(-combined, kind="stable")
    return order, combined


def check_tile_choice(choice: str) -> str:
    if choice not in TILE_CHOICES:
        raise ValueError(f"tile choice: expected one of {', '.join(TILE_CHOICES)}, got {choice!r}")
    return choice


def consensus(distributions, centers_xy, mpp, combined, beta: float = CONSENSUS_BETA,
              window: int = CONSENSUS_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(order, support)``: candidate indices sorted by their support (best first;
    ties keep the order of ``combined``) and the supports (see the module docstring).

    ``distributions``: (K, L, L) D of each candidate, on north-up tiles (row 0 the northern
    edge, column 0 the western one); ``centers_xy``: (K, 2) the tiles' centres in one metric
    east / north frame; ``mpp``: metres per pixel of D, one value or one per candidate;
    ``combined``: (K,) the re-ranking scores ``s_t + m_t`` (:func:`rerank`)."""
    d = np.asarray(distributions, dtype=np.float64)
    if d.ndim != 3 or d.shape[1] != d.shape[2] or d.shape[0] == 0:
        raise ValueError(f"consensus: expected distributions of shape (K, L, L) with K >= 1, got {d.shape}")
    k, side = d.shape[0], d.shape[1]
    centers = np.asarray(centers_xy, dtype=np.float64)
    comb = np.asarray(combined, dtype=np.float64).reshape(-1)
    m = np.broadcast_to(np.asarray(mpp, dtype=np.float64), (k,))
    if centers.shape != (k, 2) or comb.shape != (k,):
        raise ValueError(f"consensus: expected ({k}, 2) centres and {k} scores, got {centers.shape} and {comb.shape}")
    if not (np.isfinite(d).all() and np.isfinite(centers).all() and np.isfinite(comb).all()
            and np.all(m > 0)):
        raise ValueError("consensus: expected finite distributions, centres and scores and mpp > 0")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"consensus: expected an odd window >= 1, got {window}")
    w = np.exp(beta * (comb - comb.max()))
    w /= w.sum()
    flat = d.reshape(k, -1).argmax(axis=1)
    half = side / 2.0
    # Each candidate's MAP position (the centre of its most probable pixel) in the map frame.
    east = centers[:, 0] + (flat % side + 0.5 - half) * m
    north = centers[:, 1] + (half - (flat // side + 0.5)) * m
    # That position in every candidate's pixels: rows[u, t], cols[u, t].
    cols = np.floor(half + (east[None, :] - centers[:, 0:1]) / m[:, None]).astype(np.int64)
    rows = np.floor(half - (north[None, :] - centers[:, 1:2]) / m[:, None]).astype(np.int64)
    # Window sums of every D by a summed-area table (zero outside the tile).
    h = window // 2
    sat = np.zeros((k, side + 1, side + 1))
    sat[:, 1:, 1:] = d.cumsum(axis=1).cumsum(axis=2)
    r0, r1 = np.clip(rows - h, 0, side), np.clip(rows + h + 1, 0, side)
    c0, c1 = np.clip(cols - h, 0, side), np.clip(cols + h + 1, 0, side)
    u = np.arange(k)[:, None]
    mass = sat[u, r1, c1] - sat[u, r0, c1] - sat[u, r1, c0] + sat[u, r0, c0]      # (u, t)
    support = (w[:, None] * mass).sum(axis=0)
    order = np.lexsort((-comb, -support))
    return order, support
