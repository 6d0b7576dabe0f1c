"""The particle filter's mathematics over the map pose (x, y, yaw); numpy only.

Particles are rows of ``poses`` (N, 3): x, y (m, map frame) and an ENU yaw (rad), with
normalised ``weights`` (N,).

* **Motion model** (:func:`predict`): an odometry increment (dx, dy, dyaw) in the vehicle's
  frame at the previous pose moves every particle, with noise that grows with the distance
  and the turn (the odometry motion model of Thrun et al., as nav2_amcl's ``alpha1-4``):
  the translation's standard deviation is ``a_tt * |d| + a_tr * |dyaw|``, the rotation's
  ``a_rr * |dyaw| + a_rt * |d|``, each particle drawing its own increment.
* **Measurement model** (:func:`likelihood`): p(z | pose) = (1 - eps) * (s * sum_i w_i D_i(x, y)
  p_i(yaw) + (1 - s) / area) + eps / area, with the frame's strength s (its confidence, the
  chance that its place is right), a mixture over the frame's candidate tiles (each tile's D as a
  density per square metre, its yaw as a Gaussian on the wrapped difference, itself mixed
  with a uniform yaw by ``yaw_outlier``) and a uniform outlier component over ``area``
  square metres, so one frame that is not evidence cannot drag the estimate. The whole is
  raised to the evidence's ``temper`` (in [0, 1]): a frame that only tests the particles (0)
  weighs none of them, a frame of partial weight moves them less.
* **Resampling** (:func:`systematic_resample`) when the effective sample size falls below
  a share of N; **estimate** (:func:`main_mode`, :func:`weighted_estimate`): around the
  place that holds most weight, the weighted mean position, the circular mean yaw and the
  3 x 3 covariance with yaw residuals wrapped, and the share of the weight there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .evidence import Evidence, GnssEvidence, wrap_pi


@dataclass(frozen=True)
class MotionNoise:
    a_tt: float = 0.05      # translation std per metre travelled
    a_tr: float = 0.02      # translation std (m) per radian turned
    a_rr: float = 0.05      # rotation std per radian turned
    a_rt: float = 0.005     # rotation std (rad) per metre travelled
    min_trans: float = 0.01   # m, floor of the translation std per step (jitter keeps particles apart)
    min_rot: float = 0.002    # rad, floor of the rotation std per step


def relative_motion(prev: tuple[float, float, float], cur: tuple[float, float, float]) -> tuple[float, float, float]:
    """The increment (dx, dy, dyaw) from odometry pose ``prev`` to ``cur`` (x, y, yaw in the
    odometry frame), expressed in the vehicle's frame at ``prev``."""
    c, s = math.cos(prev[2]), math.sin(prev[2])
    ex, ey = cur[0] - prev[0], cur[1] - prev[1]
    return c * ex + s * ey, -s * ex + c * ey, float(wrap_pi(cur[2] - prev[2]))


def predict(poses: np.ndarray, delta: tuple[float, float, float], noise: MotionNoise,
            rng: np.random.Generator | None) -> np.ndarray:
    """Move every particle by the vehicle-frame increment ``delta`` (with noise unless
    ``rng`` is None). Returns new poses (N, 3)."""
    dx, dy, dyaw = (float(v) for v in delta)
    n = len(poses)
    dist = math.hypot(dx, dy)
    if rng is not None:
        s_t = noise.a_tt * dist + noise.a_tr * abs(dyaw) + noise.min_trans
        s_r = noise.a_rr * abs(dyaw) + noise.a_rt * dist + noise.min_rot
        ddx = dx + rng.normal(0.0, s_t, n)
        ddy = dy + rng.normal(0.0, s_t, n)
        ddyaw = dyaw + rng.normal(0.0, s_r, n)
    else:
        ddx, ddy, ddyaw = np.full(n, dx), np.full(n, dy), np.full(n, dyaw)
    c, s = np.cos(poses[:, 2]), np.sin(poses[:, 2])
    out = np.empty_like(poses)
    out[:, 0] = poses[:, 0] + c * ddx - s * ddy
    out[:, 1] = poses[:, 1] + s * ddx + c * ddy
    out[:, 2] = wrap_pi(poses[:, 2] + ddyaw)
    return out


def offset_poses(poses: np.ndarray, offset: tuple[float, float, float]) -> np.ndarray:
    """The poses of a frame mounted at ``offset`` (x, y, yaw in the vehicle's frame) on
    vehicles at ``poses``: e.g. the camera's poses from base_link's."""
    ox, oy, oyaw = offset
    if ox == 0.0 and oy == 0.0 and oyaw == 0.0:
        return poses
    c, s = np.cos(poses[:, 2]), np.sin(poses[:, 2])
    return np.stack([poses[:, 0] + c * ox - s * oy, poses[:, 1] + s * ox + c * oy, wrap_pi(poses[:, 2] + oyaw)],
                    axis=1)


def vehicle_poses(frame_poses: np.ndarray, offset: tuple[float, float, float]) -> np.ndarray:
    """The inverse of :func:`offset_poses`: vehicle poses from the mounted frame's poses."""
    ox, oy, oyaw = offset
    yaw = wrap_pi(frame_poses[:, 2] - oyaw)
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([frame_poses[:, 0] - (c * ox - s * oy), frame_poses[:, 1] - (s * ox + c * oy), yaw], axis=1)


def likelihood(poses: np.ndarray, evidence: Evidence, outlier: float, area_m2: float,
               yaw_outlier: float = 0.2) -> np.ndarray:
    """p(evidence | pose) of every particle (N,), per square metre and radian."""
    if not 0.0 < outlier <= 1.0 or not area_m2 > 0:
        raise ValueError(f"likelihood: expected 0 < outlier <= 1 and a positive area, got {outlier}, {area_m2}")
    uniform = 1.0 / (area_m2 * 2.0 * math.pi)
    if evidence.empty:
        return np.full(len(poses), uniform)
    strength = float(np.clip(evidence.strength, 0.0, 1.0))
    p = np.zeros(len(poses))
    for c in evidence.components:
        if c.weight <= 0:
            continue
        dens = c.density(poses[:, 0], poses[:, 1])
        if c.yaw is None:
            p_yaw = np.full(len(poses), 1.0 / (2.0 * math.pi))
        else:
            sigma = max(float(c.yaw_sigma or 0.0), math.radians(1.0))
            e = wrap_pi(poses[:, 2] - c.yaw)
            gauss = np.exp(-0.5 * (e / sigma) ** 2) / (math.sqrt(2.0 * math.pi) * sigma)
            p_yaw = (1.0 - yaw_outlier) * gauss + yaw_outlier / (2.0 * math.pi)
        p += c.weight * dens * p_yaw
    out = (1.0 - outlier) * (strength * p + (1.0 - strength) * uniform) + outlier * uniform
    temper = float(np.clip(evidence.temper, 0.0, 1.0))
    return out if temper == 1.0 else np.power(out, temper)


def relative_support(poses: np.ndarray, evidence: Evidence) -> np.ndarray:
    """Per particle, how much more D there is at its position than on average over the tile
    (the components' D times the tile's pixel count, weighted; 0 outside every tile), blended
    toward 1 (neutral) by the evidence's strength: > 1 where the frame supports the particle,
    < 1 where it points elsewhere. A local search finds tiles near the prediction only, so a
    uniform density over the whole area would be too easy a reference."""
    if evidence.empty:
        return np.ones(len(poses))
    r = np.zeros(len(poses))
    for c in evidence.components:
        if c.weight > 0:
            r += c.weight * c.density(poses[:, 0], poses[:, 1]) * (c.mpp * c.mpp) * c.distribution.size
    s = float(np.clip(evidence.strength, 0.0, 1.0))
    return s * r + (1.0 - s)


def gnss_likelihood(poses: np.ndarray, fix: GnssEvidence, outlier: float, area_m2: float) -> np.ndarray:
    """p(fix | pose): a 2-D Gaussian of the fix's covariance, mixed with a uniform outlier."""
    inv = np.linalg.inv(fix.covariance)
    e = poses[:, :2] - np.array([fix.x, fix.y])
    m2 = np.einsum("ni,ij,nj->n", e, inv, e)
    g = np.exp(-0.5 * m2) / (2.0 * math.pi * math.sqrt(np.linalg.det(fix.covariance)))
    return (1.0 - outlier) * g + outlier / area_m2


def effective_sample_size(weights: np.ndarray) -> float:
    return float(1.0 / np.sum(np.square(weights)))


def systematic_resample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of N particles drawn in proportion to ``weights`` with one random offset."""
    n = len(weights)
    positions = (rng.random() + np.arange(n)) / n
    cum = np.cumsum(weights)
    cum[-1] = 1.0
    return np.searchsorted(cum, positions, side="left")


def weighted_estimate(poses: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean pose (3,), covariance (3, 3)): weighted mean position, circular mean yaw, the
    covariance of (x, y, wrapped yaw residual)."""
    w = weights / weights.sum()
    mx, my = float(w @ poses[:, 0]), float(w @ poses[:, 1])
    yaw = math.atan2(float(w @ np.sin(poses[:, 2])), float(w @ np.cos(poses[:, 2])))
    r = np.stack([poses[:, 0] - mx, poses[:, 1] - my, wrap_pi(poses[:, 2] - yaw)], axis=1)
    cov = (r * w[:, None]).T @ r
    return np.array([mx, my, yaw]), 0.5 * (cov + cov.T)


def main_mode(poses: np.ndarray, weights: np.ndarray, cell_m: float = 4.0, radius_m: float = 12.0
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean pose, covariance, weight share) of the particles around the heaviest place: the
    ``cell_m`` grid cell of most weight, then every particle within ``radius_m`` of that
    cell's weighted centroid. Particles injected elsewhere (a possible new place) then do not
    drag the estimate halfway between two places."""
    keys = np.floor(poses[:, :2] / cell_m).astype(np.int64)
    keys -= keys.min(axis=0)
    # one integer per cell, ordered as the (x, y) pairs are: a 1-D unique (a plain sort) is
    # several times faster than a unique over rows
    cell = keys[:, 0] * (int(keys[:, 1].max()) + 1) + keys[:, 1]
    uniq, inverse = np.unique(cell, return_inverse=True)
    mass = np.bincount(inverse.ravel(), weights=weights, minlength=len(uniq))
    best = int(np.argmax(mass))
    in_cell = inverse.ravel() == best
    w_cell = weights[in_cell]
    centre = (w_cell @ poses[in_cell, :2]) / w_cell.sum()
    near = np.hypot(poses[:, 0] - centre[0], poses[:, 1] - centre[1]) <= radius_m
    mean, cov = weighted_estimate(poses[near], weights[near])
    return mean, cov, float(weights[near].sum())
