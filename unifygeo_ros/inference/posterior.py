"""From the decoder's outputs to a pose, a 3 x 3 covariance and a confidence.

The posterior separates *which place* from *how precisely there*: the covariance describes
the chosen mode only (how far the truth lies from the estimate when the estimate is on the
right place), and the chance that the chosen mode is the wrong place (another mode of D, a
competing tile) is the confidence. One Gaussian cannot describe a wrong tile hundreds of
metres away: folding that chance into the covariance made every ellipse tens of metres
wide while most estimates are within a metre.

Position
--------
* **Estimate**: the centre of D's MAP pixel on the chosen tile.
* **Support of D**: the pixels where D is at least :data:`SUPPORT_FRACTION` of its peak
  (the low plateau of a softmax over L*L pixels is excluded). The **mode** is the
  8-connected component of the support that holds the MAP pixel.
* **Covariance of the mode**: D's second moment over the mode *around the MAP*,
  ``sum_i D_i (p_i - p*)(p_i - p*)^T / sum_i D_i`` over the mode's pixels, plus ``1/12 px^2``
  per axis for the quantisation of the MAP to a pixel. Other modes of D (other components
  of the support) and the other candidate tiles do not widen it; they lower the confidence.
* **Calibration**: the covariance is multiplied by a scale factor ``c_pos^2`` (one for
  panoramas, one for pinhole views), fitted on held-out synthetic cities so that 95 % of the
  truths of the estimates in the right mode fall inside the 95 % ellipse (see
  :mod:`.calibration`).

Yaw
---
* **Estimate**: the chosen alignment plus the yaw head's reading at the MAP pixel.
* **Variance** (deg^2, reported in rad^2): the spread of the alignment posterior
  ``q_k = softmax(h * score_k + logprior_k)`` (``h`` = the learned heading inverse
  temperature) over the *hill* of the chosen alignment (the alignments reached from it
  while q does not rise, at least :data:`SUPPORT_FRACTION` of q there; a second hill, e.g.
  the opposite heading, is another mode), plus the D-weighted circular spread of the yaw
  field over the position mode around its value at the MAP, plus a floor of
  :data:`YAW_FLOOR_DEG`^2; times a fitted scale ``c_yaw^2``. x/y and yaw are taken as
  uncorrelated.

Confidence
----------
The raw confidence ``mass of D in the mode * weight of the candidates that agree with the
estimate`` (within :data:`AGREE_M` or the position's 2-sigma radius) is low when D is spread
or multimodal, or when a competing tile that localizes elsewhere scores about as well. The
localizer publishes it mapped by the calibration (:mod:`.calibration`) to the measured
chance that the estimate lies in the right mode (within
:data:`~.calibration.MODE_RADIUS_M` of the truth).
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
    cov_px: np.ndarray            # 2 x 2 over (row, col), pixels^2: D's moment over the mode around the MAP
    mode_mass: float              # D's mass in the mode
    support_mass: float           # D's mass in the support
    components: int               # connected components of the support
    mode_mask: np.ndarray         # (L, L) bool
    cov_support_px: np.ndarray | None = None   # the same moment over the whole support (every mode)


def map_pixel(d: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(r), int(c)


def position_stats(d: np.ndarray) -> PositionStats:
    """D's MAP pixel, its mode and the mode's second moment (see the module docstring)."""
    import cv2

    d = np.asarray(d, dtype=np.float64)
    r, c = map_pixel(d)
    peak = d[r, c]
    support = d >= SUPPORT_FRACTION * peak
    n, labels = cv2.connectedComponents(support.astype(np.uint8), connectivity=8)
    mode = labels == labels[r, c]

    def moment(mask: np.ndarray) -> tuple[np.ndarray, float]:
        rows, cols = np.nonzero(mask)
        w = d[rows, cols]
        dr = rows - r            # pixel centres relative to the MAP centre
        dc = cols - c
        mass = float(w.sum())
        crr = float((w * dr * dr).sum() / mass)
        ccc = float((w * dc * dc).sum() / mass)
        crc = float((w * dr * dc).sum() / mass)
        return np.array([[crr, crc], [crc, ccc]]) + np.eye(2) / 12.0, mass

    cov_mode, mode_mass = moment(mode)
    cov_support, support_mass = moment(support)
    return PositionStats(row=r + 0.5, col=c + 0.5, cov_px=cov_mode, mode_mass=mode_mass,
                         support_mass=support_mass, components=int(n - 1), mode_mask=mode,
                         cov_support_px=cov_support)


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


def alignment_hill(q: np.ndarray, k: int, fraction: float = SUPPORT_FRACTION) -> np.ndarray:
    """The alignments (indices, circular) of ``k``'s hill in the posterior ``q``: from ``k``
    outwards on both sides while q does not rise and stays at least ``fraction`` of ``q[k]``."""
    q = np.asarray(q, dtype=np.float64)
    n = len(q)
    floor = fraction * q[k]
    members = [k]
    for step in (1, -1):
        prev, i = q[k], k
        for _ in range(n // 2):
            j = (i + step) % n
            if j in members or q[j] > prev or q[j] < floor:
                break
            members.append(j)
            prev, i = q[j], j
    return np.array(sorted(members))


def _alignment_variance_deg2(alignment_scores: np.ndarray, logprior: np.ndarray, heading_scale: float, k: int,
                             bin_deg: float) -> tuple[float, dict]:
    """The alignment posterior's variance (deg^2) over the chosen alignment ``k``'s hill, and
    what it was taken from."""
    q = softmax(heading_scale * np.asarray(alignment_scores, dtype=np.float64) + np.asarray(logprior, np.float64))
    hill = alignment_hill(q, int(k))
    offsets = angle_diff_deg(hill * bin_deg, k * bin_deg)
    qh = q[hill]
    var_align = float((qh * offsets ** 2).sum() / max(qh.sum(), 1e-300))
    return var_align, {"var_alignment_deg2": var_align, "alignment_posterior_max": float(q.max()),
                       "alignment_hill_mass": float(qh.sum())}


def alignment_yaw_variance_deg2(alignment_scores: np.ndarray, logprior: np.ndarray, heading_scale: float, k: int,
                                bin_deg: float) -> tuple[float, dict]:
    """Variance of a yaw read from the chosen alignment alone (a model without a yaw head):
    the alignment posterior over the chosen alignment's hill, the bin's own width (uniform
    within it) and the floor."""
    var_align, info = _alignment_variance_deg2(alignment_scores, logprior, heading_scale, k, bin_deg)
    return var_align + bin_deg ** 2 / 12.0 + YAW_FLOOR_DEG ** 2, info


def yaw_variance_deg2(alignment_scores: np.ndarray, logprior: np.ndarray, heading_scale: float, k: int,
                      bin_deg: float, field: np.ndarray, mode: np.ndarray, d: np.ndarray,
                      row: int, col: int) -> tuple[float, dict]:
    """Variance of the yaw estimate (deg^2) from the alignment posterior over the chosen
    alignment's hill and the yaw field over the position mode (see the module docstring)."""
    var_align, info = _alignment_variance_deg2(alignment_scores, logprior, heading_scale, k, bin_deg)
    theta = np.degrees(np.arctan2(field[1], field[0]))
    w = np.asarray(d, dtype=np.float64)[mode]
    spread = angle_diff_deg(theta[mode], theta[row, col])
    var_field = float((w * spread ** 2).sum() / max(w.sum(), 1e-300))
    var = var_align + var_field + YAW_FLOOR_DEG ** 2
    return var, {**info, "var_field_deg2": var_field}
