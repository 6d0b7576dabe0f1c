"""Heading: alignments, priors over them, and the yaw they imply (ENU, REP-103).

An *alignment* ``k`` in ``[0, K)`` turns the input panorama clockwise by ``k * 360 / K``
degrees (a roll left by ``k * W / K`` pixels, see :func:`conventions.rotate_panorama`).
A north-aligned panorama faces north, ENU yaw 90 deg; so if alignment ``k`` makes the
input north-aligned, the input's forward direction has ENU yaw ``90 + k * 360 / K``
(turning clockwise lowers an ENU yaw; undoing it raises it). The yaw head refines this:
the input's yaw is ``field_yaw + k * 360 / K`` where ``field_yaw`` is the ENU yaw that
the head reads for the aligned panorama (90 deg when the alignment is exact).

Log-priors over alignments are added to the decoder's alignment scores before the argmax:

* :func:`unknown_heading_prior`: zeros, search all ``K`` alignments;
* :func:`known_heading_prior`: only ``k = 0`` (the caller has rotated the panorama to
  north-aligned with the known heading);
* :func:`heading_window_prior`: alignments consistent with a yaw prior +/- a half-width.
"""

from __future__ import annotations

import numpy as np

from ..conventions import wrap_deg_180
from ..model_config import ModelConfig

EXCLUDED = -1e4   # log-prior of an excluded alignment (finite: exports and sums cleanly)
ALIGNED_YAW_DEG = 90.0


def unknown_heading_prior(batch: int, cfg: ModelConfig) -> np.ndarray:
    """(batch, K) float32 zeros: every alignment allowed."""
    return np.zeros((batch, cfg.heading_bins), np.float32)


def known_heading_prior(batch: int, cfg: ModelConfig) -> np.ndarray:
    """(batch, K) float32: only alignment 0 (the panorama was turned north-aligned first)."""
    prior = np.full((batch, cfg.heading_bins), EXCLUDED, np.float32)
    prior[:, 0] = 0.0
    return prior


def alignment_yaw_offsets_deg(cfg: ModelConfig) -> np.ndarray:
    """ENU yaw of the input when alignment k is exact, minus 90: ``k * 360 / K``."""
    return np.arange(cfg.heading_bins) * cfg.heading_bin_deg


def heading_window_prior(yaw_deg, half_width_deg: float, cfg: ModelConfig) -> np.ndarray:
    """(batch, K) float32: alignments whose implied yaw lies within ``half_width_deg`` (plus
    half a bin) of ``yaw_deg`` (ENU, one value per batch element)."""
    yaw = np.atleast_1d(np.asarray(yaw_deg, dtype=np.float64))
    implied = ALIGNED_YAW_DEG + alignment_yaw_offsets_deg(cfg)[None, :]
    dist = np.abs(wrap_deg_180(implied - yaw[:, None]))
    allowed = dist <= half_width_deg + cfg.heading_bin_deg / 2
    return np.where(allowed, 0.0, EXCLUDED).astype(np.float32)


def true_alignment(yaw_deg, cfg: ModelConfig, whole_columns: bool = False):
    """For inputs whose forward ENU yaw is ``yaw_deg``: the nearest alignment ``k`` and the
    yaw-head target ``field_yaw = yaw - k * 360 / K`` (within half a step of 90 deg).
    With ``whole_columns`` only alignments that are whole feature-column rolls (multiples
    of R) are candidates, as when the sub-stride copies are not encoded (training)."""
    yaw = np.asarray(yaw_deg, dtype=np.float64)
    step = cfg.heading_subdivisions if whole_columns else 1
    k = (np.rint(wrap_deg_180(yaw - ALIGNED_YAW_DEG) / (cfg.heading_bin_deg * step)).astype(np.int64) * step
         ) % cfg.heading_bins
    field = wrap_deg_180(yaw - k * cfg.heading_bin_deg)
    return k, field


def yaw_from_alignment(k, field_yaw_deg, cfg: ModelConfig):
    """ENU yaw of the input panorama's forward direction from the chosen alignment and
    the yaw head's reading (use ``ALIGNED_YAW_DEG`` when there is no yaw head)."""
    return wrap_deg_180(np.asarray(field_yaw_deg, dtype=np.float64)
                        + np.asarray(k, dtype=np.float64) * cfg.heading_bin_deg)
