"""Re-ranking (paper Sec. III-D, Eq. 4).

Among the top-k retrieval candidates, the best aerial tile maximises
``s_t + max_ij M_t^0(i, j)``: the retrieval score (cosine similarity of the global
descriptors) plus the best detailed matching score of level 0, which the decoder
computes once per candidate and reuses for localization (its ``m0_max`` output).
"""

from __future__ import annotations

import numpy as np


def rerank(retrieval_scores, m0_max):
    """Return ``(order, combined)``: candidate indices sorted by the combined score
    (best first; ties keep the retrieval order) and the combined scores themselves."""
    s = np.asarray(retrieval_scores, dtype=np.float64).reshape(-1)
    m = np.asarray(m0_max, dtype=np.float64).reshape(-1)
    if s.shape != m.shape:
        raise ValueError(f"re-ranking: expected one M^0 maximum per candidate ({s.size}), got {m.size}")
    if s.size == 0:
        raise ValueError("re-ranking: expected at least one retrieval candidate, got none")
    if not (np.isfinite(s).all() and np.isfinite(m).all()):
        raise ValueError("re-ranking: expected finite scores, found NaN or infinity")
    combined = s + m
    order = np.argsort(-combined, kind="stable")
    return order, combined
