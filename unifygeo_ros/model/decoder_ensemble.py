"""Rotation ensemble of the decoder on one tile (beyond the paper).

The network is trained with synchronised quarter turns: the tile turned counter-clockwise
by ``j`` quarters and the panorama rolled to match (:mod:`.retrieval` uses the same
symmetry for the global descriptors). For the decoder this means that the pair (panorama,
tile) can be decoded four ways: the tile turned by ``j`` quarters, the panorama at
alignment ``b + j K / 4`` where ``b`` is the alignment in the tile's own frame (a quarter
turn is ``K / 4`` alignments exactly). :func:`decode_turn_ensemble`

1. decodes, for every turn ``j`` and every alignment ``b`` the heading log-prior allows,
   the row (turned tile ``j``, forced alignment ``b + j K / 4``);
2. averages the matching score over the turns: ``ens(b) = mean_j m_j(b + j K / 4)``;
3. keeps the best ``b`` and refines it within the bin with the parabola of
   :func:`.alignment_search.parabolic_offset` through ``ens``;
4. turns each turn's D at the chosen alignment back to the tile's frame and averages them
   (a mixture of the four, so D stays a distribution and its spread stays honest);
   the yaw field likewise.

The yaw is then read as without the ensemble, ``yaw_from_alignment(b + offset, phi)`` with
``phi`` the averaged yaw field at D's MAP pixel: one formula for every heading mode.

Measured with the shipped model by ``unifygeo eval`` on TestNordic (600 panoramas, the
positive tile; without -> with the ensemble): heading unknown, position median / mean
1.03 / 3.65 m -> 0.79 / 2.42 m and yaw median / mean 4.8 / 21.4 deg -> 3.7 / 11.2 deg;
heading known, position median 0.79 -> 0.75 m. In a probe on the same panoramas and
headings, leaving the yaw head out (``phi = ALIGNED_YAW_DEG``) gave a yaw median of 3.55 deg
instead of 3.73, and all 32 alignments without the ensemble 4.12 deg. The ensemble costs
``turns`` times the allowed alignments in decoder rows (128 for an unknown heading, 4 for a
known one) and three more aerial-branch passes, for the one tile it is run on.

Numpy only: the callers (localizer, evaluation) pass a ``decode_turn`` callable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from .alignment_search import allowed_alignments, parabolic_offset
from .retrieval import check_turns


def check_decoder_turns(turns: int) -> int:
    """``turns`` as an int if the decoder ensemble accepts it (:data:`.retrieval.TURNS`)."""
    return check_turns(turns, "decoder turns")


def turned_alignments(alignments: np.ndarray, turn: int, turns: int, k: int) -> np.ndarray:
    """Alignments ``b`` in the tile's frame -> the same alignments for the tile turned
    ``turn`` quarters counter-clockwise: ``b + turn * K / turns`` (mod K)."""
    if k % turns:
        raise ValueError(f"decoder turns: {k} heading alignments are not divisible into {turns} quarter turns")
    return (np.asarray(alignments, dtype=np.int64) + turn * (k // turns)) % k


def turn_back(maps: np.ndarray, turn: int) -> np.ndarray:
    """Spatial maps (..., L, L) of the tile turned ``turn`` quarters counter-clockwise ->
    the same maps in the tile's own frame."""
    return np.rot90(np.asarray(maps), -turn, axes=(-2, -1))


@dataclass
class TurnEnsemble:
    """The ensemble's result for one tile: ``alignment`` and ``offset`` (bins) in the tile's
    frame, ``scores`` (K,) the averaged matching score (-inf where the prior excludes the
    alignment), ``out`` the decoder outputs of the chosen alignment with D, the yaw field
    and the matching score replaced by their turn averages (first axis: 1), ``decodes``
    the rows decoded."""

    alignment: int
    offset: float
    scores: np.ndarray
    out: dict
    decodes: int


def decode_turn_ensemble(decode_turn: Callable[[int, np.ndarray], Mapping[str, np.ndarray]], logprior: np.ndarray,
                         k: int, turns: int = 4) -> TurnEnsemble:
    """Run the ensemble described in the module docstring on one tile.

    ``decode_turn(j, alignments)`` decodes the tile turned ``j`` quarters counter-clockwise
    once per alignment in ``alignments`` (forced, already in the turned tile's frame) and
    returns the decoder outputs (numpy, first axis = len(alignments)) with ``match_score``
    and ``D``. ``logprior`` (K,) is the heading log-prior in the tile's frame."""
    check_decoder_turns(turns)
    logprior = np.asarray(logprior, dtype=np.float64).reshape(-1)
    if logprior.shape[0] != k:
        raise ValueError(f"decoder turns: expected a log-prior over {k} alignments, got {logprior.shape[0]}")
    allowed = np.flatnonzero(allowed_alignments(logprior))
    if allowed.size == 0:
        raise ValueError("decoder turns: the heading log-prior excludes every alignment")
    outs = [dict(decode_turn(j, turned_alignments(allowed, j, turns, k))) for j in range(turns)]
    scores = np.full(k, -np.inf)
    match = np.stack([np.asarray(o["match_score"], dtype=np.float64).reshape(-1) for o in outs])
    if match.shape != (turns, allowed.size):
        raise ValueError(f"decoder turns: expected {allowed.size} match scores per turn, got shape {match.shape}")
    scores[allowed] = match.mean(axis=0)
    best = int(np.argmax(scores))
    row = int(np.flatnonzero(allowed == best)[0])
    left, right = scores[(best - 1) % k], scores[(best + 1) % k]
    offset = parabolic_offset(left, scores[best], right) if np.isfinite(left) and np.isfinite(right) else 0.0
    out = {name: np.asarray(v)[row:row + 1] for name, v in outs[0].items()}
    for name in ("D", "yaw_field"):
        if name in out:
            mean = np.mean([turn_back(np.asarray(o[name][row], dtype=np.float64), j) for j, o in enumerate(outs)],
                           axis=0)
            out[name] = mean[None].astype(np.asarray(outs[0][name]).dtype)
    out["match_score"] = np.asarray([scores[best]], dtype=np.asarray(outs[0]["match_score"]).dtype)
    if "alignment" in out:
        out["alignment"] = np.full_like(np.asarray(out["alignment"]), best)
    return TurnEnsemble(alignment=best, offset=float(offset), scores=scores, out=out,
                        decodes=int(turns * allowed.size))
