"""From the decoder's outputs to a pose, a 3 x 3 covariance and a confidence.

Position
--------
* **Estimate**: the centre of D's MAP pixel on the chosen tile.
* **Support of D**: the pixels where D is at least :data:`SUPPORT_FRACTION` of its peak
  (the low plateau of a softmax over L*L pixels is excluded). The **mode** is the
  8-connected component of the support that holds the MAP pixel.
* **Covariance from D**: the second moment of D over the whole support *around the MAP*
  (not around the support's mean): ``sum_i D_i (p_i - p*)(p_i - p*)^T / sum_i D_i``, plus
  ``1/12 px^2`` per axis for the quantisation of the MAP to a pixel. *Multimodality*: a
  second mode of D that carries mass lies in the support, so it inflates the covariance
  along the line joining it to the MAP (in proportion to its mass), and it lowers the
  confidence (the mode's share of D falls).
* **Competing tiles**: the re-ranking candidates are a mixture too. Each candidate t gets
  the weight ``w_t = softmax(s * combined_t)`` (``s`` = the model's learned retrieval
  inverse temperature) and its own MAP position ``mu_t``; ``sum_t w_t (mu_t - x)(mu_t - x)^T``
  is added, so a competitor that localizes elsewhere with a similar score widens the
  ellipse, and one that agrees (an overlapping tile) does not.
* **Calibration**: the sum is multiplied by a scale factor ``c_pos^2`` (one for panoramas,
  one for pinhole views), fitted on held-out synthetic cities so that 95 % of the truths
  fall inside the 95 % ellipse (see :mod:`.calibration`).

Yaw
---
* **Estimate**: the chosen alignment plus the yaw head's reading at the MAP pixel.
* **Variance** (deg^2, reported in rad^2): the spread of the alignment posterior
  ``q_k = softmax(h * score_k + logprior_k)`` (``h`` = the learned heading inverse
  temperature) around the chosen alignment, plus the D-weighted circular spread of the yaw
  field over the mode around its value at the MAP, plus a floor of
  :data:`YAW_FLOOR_DEG`^2; times a fitted scale ``c_yaw^2``. x/y and yaw are taken as
  uncorrelated.

Confidence
----------
``mass of D in the mode * weight of the candidates that agree with the estimate`` (within
:data:`AGREE_M` or the position's 2-sigma radius), in [0, 1]: low when D is spread or
multimodal, or when a competing tile that localizes elsewhere scores about as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..conventions import angle_diff_deg

SUPPORT_FRACTION = 0.05
YAW_FLOOR_DEG = 1.0
AGREE_M = 3.0


@dataclass
class PositionStats:
    row: float                    # MAP pixel centre
    col: float
    cov_px: np.ndarray            # 2 x 2 over (row, col), pixels^2
    mode_mass: float              # D's mass in the mode
    support_mass: float           # D's mass in the support
    components: int               # connected components of the support
    mode_mask: np.ndarray         # (L, L) bool


def map_pixel(d: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(r), int(c)


def position_stats(d: np.ndarray) -> PositionStats:
    """D's MAP pixel and its second moment over the support (see the module docstring)."""
    import cv2

    d = np.asarray(d, dtype=np.float64)
    r, c = map_pixel(d)
    peak = d[r, c]
    support = d >= SUPPORT_FRACTION * peak
    n, labels = cv2.connectedComponents(support.astype(np.uint8), connectivity=8)
    mode = labels == labels[r, c]
    rows, cols = np.nonzero(support)
    w = d[rows, cols]
    dr = rows - r            # pixel centres relative to the MAP centre
    dc = cols - c
    mass = float(w.sum())
    crr = float((w * dr * dr).sum() / mass)
    ccc = float((w * dc * dc).sum() / mass)
    crc = float((w * dr * dc).sum() / mass)
    cov = np.array([[crr, crc], [crc, ccc]]) + np.eye(2) / 12.0
    return PositionStats(row=r + 0.5, col=c + 0.5, cov_px=cov, mode_mass=float(d[mode].sum()),
                         support_mass=mass, components=int(n - 1), mode_mask=mode)


def cov_px_to_xy(cov_px: np.ndarray, mpp: float) -> np.ndarray:
    """(row, col) pixel covariance -> (x, y) metres: x = col * mpp, y = -row * mpp."""
    j = np.array([[0.0, 1.0], [-1.0, 0.0]]) * mpp
    return j @ cov_px @ j.T


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def candidate_mixture(xy: np.ndarray, estimate: np.ndarray, combined: np.ndarray, scale: float,
                      agree_radius_m: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Second moment of the candidates' MAP positions around the estimate (weights
    softmax(scale * combined)), the weight of those within ``agree_radius_m``, and the weights."""
    w = softmax(scale * np.asarray(combined, dtype=np.float64))
    diff = np.asarray(xy, dtype=np.float64) - estimate[None, :]
    cov = (w[:, None, None] * diff[:, :, None] * diff[:, None, :]).sum(axis=0)
    agree = float(w[np.hypot(diff[:, 0], diff[:, 1]) <= agree_radius_m].sum())
    return cov, agree, w


def yaw_variance_deg2(alignment_scores: np.ndarray, logprior: np.ndarray, heading_scale: float, k: int,
                      bin_deg: float, field: np.ndarray, mode: np.ndarray, d: np.ndarray,
                      row: int, col: int) -> tuple[float, dict]:
    """Variance of the yaw estimate (deg^2) from the alignment posterior and the yaw field."""
    q = softmax(heading_scale * np.asarray(alignment_scores, dtype=np.float64) + np.asarray(logprior, np.float64))
    offsets = np.arange(len(q)) * bin_deg
    var_align = float((q * angle_diff_deg(offsets, k * bin_deg) ** 2).sum())
    theta = np.degrees(np.arctan2(field[1], field[0]))
    w = np.asarray(d, dtype=np.float64)[mode]
    spread = angle_diff_deg(theta[mode], theta[row, col])
    var_field = float((w * spread ** 2).sum() / max(w.sum(), 1e-300))
    var = var_align + var_field + YAW_FLOOR_DEG ** 2
    return var, {"var_alignment_deg2": var_align, "var_field_deg2": var_field, "alignment_posterior_max": float(q.max())}
