"""Rotation (and mirror) ensemble of the decoder on one tile (beyond the paper).

The network is trained with synchronised quarter turns: the tile turned counter-clockwise
by ``j`` quarters and the panorama rolled to match (:mod:`.retrieval` uses the same
symmetry for the global descriptors). For the decoder this means that the pair (panorama,
tile) can be decoded four ways: the tile turned by ``j`` quarters, the panorama at
alignment ``b + j K / 4`` where ``b`` is the alignment in the tile's own frame (a quarter
turn is ``K / 4`` alignments exactly). The training's synchronised flip (tile mirrored
left-right, panorama columns reversed: yaw -> 180 - yaw) gives four more: the mirrored
panorama against the mirrored tile turned ``j`` quarters, at alignment ``-b + j K / 4``.
Members ``0 .. 3`` are the turns, ``4 .. 7`` the mirrored turns (the eight symmetries of
the square tile; ``turns`` = 1, 4 or 8 members). :func:`decode_turn_ensemble`

1. decodes, for every member ``j`` and every alignment ``b`` the heading log-prior allows,
   the row (member tile ``j``, forced alignment :func:`member_alignments`);
2. averages the matching score over the members: ``ens(b) = mean_j m_j(a_j(b))``;
3. keeps the best ``b`` and refines it within the bin with the parabola of
   :func:`.alignment_search.parabolic_offset` through ``ens``;
4. brings each member's D at the chosen alignment back to the tile's frame
   (:func:`member_back`) and averages them (a mixture, so D stays a distribution and its
   spread stays honest); the yaw field likewise (a mirrored member's yaw offset changes
   sign: its cosine component is negated).

The yaw is then read as without the ensemble, ``yaw_from_alignment(b + offset, phi)`` with
``phi`` the averaged yaw field at D's MAP pixel: one formula for every heading mode.

Measured with the shipped model by ``unifygeo eval`` on TestNordic (600 panoramas, the
positive tile; without -> with the four turns): heading unknown, position median / mean
1.03 / 3.65 m -> 0.79 / 2.42 m and yaw median / mean 4.8 / 21.4 deg -> 3.7 / 11.2 deg;
heading known, position median 0.79 -> 0.75 m. In a probe on the same panoramas and
headings (yaw read from the alignment alone), all 32 alignments without the ensemble gave a
yaw median of 4.12 deg, the four turns 3.55, the four mirrored turns 3.21 and all eight 3.13
deg (mean 9.8 against 11.2 deg; position mean 2.27 against 2.42 m). The ensemble costs
``turns`` times the allowed alignments in decoder rows (128 / 256 for an unknown heading,
4 / 8 for a known one) and ``turns - 1`` more aerial-branch passes, for the one tile it is
run on; the mirrored members also need the mirrored panorama's ground descriptors.

Numpy only: the callers (localizer, evaluation) pass a ``decode_turn`` callable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ..options import (
    DECODER_TURNS,  # none, the four quarter turns, the four turns and their mirror images
)
from .alignment_search import allowed_alignments, parabolic_offset
from .retrieval import turned_tiles

QUARTERS = 4


def check_decoder_turns(turns: int) -> int:
    """``turns`` as an int if the decoder ensemble accepts it (:data:`DECODER_TURNS`)."""
    if int(turns) not in DECODER_TURNS:
        raise ValueError(f"decoder turns: expected one of {DECODER_TURNS} (1: no ensemble, 4: the quarter turns, "
                         f"8: the turns and their mirror images), got {turns!r}")
    return int(turns)


def is_mirrored(member: int) -> bool:
    """Member ``member`` pairs the mirrored panorama with the mirrored tile (members 4 .. 7)."""
    return member >= QUARTERS


def member_tiles(images, turns: int):
    """(N, C, L, L) tiles -> (N, turns, C, L, L): member ``j``'s tile, mirrored left-right when
    ``j >= 4``, then turned counter-clockwise by ``j % 4`` quarters (the turns are
    :func:`.retrieval.turned_tiles`'). numpy or torch."""
    check_decoder_turns(turns)
    members = turned_tiles(images, min(turns, QUARTERS))
    if turns > QUARTERS:
        mirrored = turned_tiles(mirror_panorama(images), QUARTERS)
        if isinstance(images, np.ndarray):
            return np.concatenate([members, mirrored], axis=1)
        import torch

        return torch.cat([members, mirrored], dim=1)
    return members


def mirror_panorama(images):
    """Panoramas (..., W) or their column masks mirrored as the training's flip does: the
    columns reversed (yaw -> 180 - yaw, alignment b -> -b); tiles (..., L) likewise mirrored
    left-right. numpy or torch."""
    if isinstance(images, np.ndarray):
        return np.ascontiguousarray(images[..., ::-1])
    import torch

    return torch.flip(images, dims=[-1])


def member_alignments(alignments: np.ndarray, member: int, k: int) -> np.ndarray:
    """Alignments ``b`` in the tile's frame -> the same alignments for member ``member``:
    ``b + j K / 4`` for the tile turned ``j`` quarters, ``-b + j K / 4`` for the mirrored pair
    (mod K)."""
    if k % QUARTERS:
        raise ValueError(f"decoder turns: {k} heading alignments are not divisible into {QUARTERS} quarter turns")
    b = np.asarray(alignments, dtype=np.int64)
    return ((-b if is_mirrored(member) else b) + (member % QUARTERS) * (k // QUARTERS)) % k


def member_back(maps: np.ndarray, member: int, vector: bool = False) -> np.ndarray:
    """Spatial maps (..., L, L) decoded for member ``member`` -> the same maps in the tile's own
    frame. ``vector``: the maps are the yaw field (..., 2, L, L) of (cos, sin) of the yaw
    offset, whose cosine changes sign under the mirror."""
    out = turn_back(maps, member % QUARTERS)
    if is_mirrored(member):
        out = np.array(out[..., ::-1], copy=True)
        if vector:
            out[..., 0, :, :] *= -1
    return out


def turn_back(maps: np.ndarray, turn: int) -> np.ndarray:
    """Spatial maps (..., L, L) of the tile turned ``turn`` quarters counter-clockwise ->
    the same maps in the tile's own frame."""
    return np.rot90(np.asarray(maps), -turn, axes=(-2, -1))


@dataclass
class TurnEnsemble:
    """The ensemble's result for one tile: ``alignment`` and ``offset`` (bins) in the tile's
    frame, ``scores`` (K,) the averaged matching score (-inf where the prior excludes the
    alignment), ``out`` the decoder outputs of the chosen alignment with D, the yaw field
    and the matching score replaced by their member averages (first axis: 1), ``decodes``
    the rows decoded."""

    alignment: int
    offset: float
    scores: np.ndarray
    out: dict
    decodes: int


def decode_turn_ensemble(decode_turn: Callable[[int, np.ndarray], Mapping[str, np.ndarray]], logprior: np.ndarray,
                         k: int, turns: int = 4) -> TurnEnsemble:
    """Run the ensemble described in the module docstring on one tile.

    ``decode_turn(j, alignments)`` decodes member ``j`` (:func:`member_tiles`: the tile turned
    ``j % 4`` quarters counter-clockwise, mirrored first and against the mirrored panorama when
    ``j >= 4``) once per alignment in ``alignments`` (forced, already in the member's frame)
    and returns the decoder outputs (numpy, first axis = len(alignments)) with
    ``match_score`` and ``D``. ``logprior`` (K,) is the heading log-prior in the tile's frame."""
    check_decoder_turns(turns)
    logprior = np.asarray(logprior, dtype=np.float64).reshape(-1)
    if logprior.shape[0] != k:
        raise ValueError(f"decoder turns: expected a log-prior over {k} alignments, got {logprior.shape[0]}")
    allowed = np.flatnonzero(allowed_alignments(logprior))
    if allowed.size == 0:
        raise ValueError("decoder turns: the heading log-prior excludes every alignment")
    outs = [dict(decode_turn(j, member_alignments(allowed, j, k))) for j in range(turns)]
    scores = np.full(k, -np.inf)
    match = np.stack([np.asarray(o["match_score"], dtype=np.float64).reshape(-1) for o in outs])
    if match.shape != (turns, allowed.size):
        raise ValueError(f"decoder turns: expected {allowed.size} match scores per member, got shape {match.shape}")
    scores[allowed] = match.mean(axis=0)
    best = int(np.argmax(scores))
    row = int(np.flatnonzero(allowed == best)[0])
    left, right = scores[(best - 1) % k], scores[(best + 1) % k]
    offset = parabolic_offset(left, scores[best], right) if np.isfinite(left) and np.isfinite(right) else 0.0
    out = {name: np.asarray(v)[row:row + 1] for name, v in outs[0].items()}
    for name in ("D", "yaw_field"):
        if name in out:
            mean = np.mean([member_back(np.asarray(o[name][row], dtype=np.float64), j, vector=name == "yaw_field")
                            for j, o in enumerate(outs)], axis=0)
            out[name] = mean[None].astype(np.asarray(outs[0][name]).dtype)
    out["match_score"] = np.asarray([scores[best]], dtype=np.asarray(outs[0]["match_score"]).dtype)
    if "alignment" in out:
        out["alignment"] = np.full_like(np.asarray(out["alignment"]), best)
    return TurnEnsemble(alignment=best, offset=float(offset), scores=scores, out=out,
                        decodes=int(turns * allowed.size))
