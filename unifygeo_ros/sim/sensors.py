"""Sensor models of a simulated drive: degraded GNSS and wheel odometry with a gyro.

See :class:`~unifygeo_ros.sim.drive_config.DriveConfig` for the numbers.

* Degraded GNSS: a time-correlated (Gauss-Markov) horizontal error whose standard
  deviation drifts between 1 and 3 m (vertical 1.5x), outages (either no message at all
  or ``status = NO_FIX`` with NaN position), and multipath episodes that add a 10-30 m
  jump for a few seconds. ``position_covariance`` is honest: the variance of the error
  actually applied (per axis ``sigma^2``, plus ``jump^2 / 2`` per horizontal axis during
  multipath), type DIAGONAL_KNOWN; NO_FIX messages carry type UNKNOWN. The event log is in
  the metadata JSON.
* Odometry: wheel speed with a scale-factor error and white noise, yaw rate from a gyro
  with a constant bias plus a random walk and white noise, integrated at ``sim_rate_hz``;
  the pose covariance is propagated with the same error model (EKF-style over x, y, yaw,
  gyro bias, scale factor), so it grows with the drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unifygeo_ros.sim.drive_config import DriveConfig
from unifygeo_ros.sim.trajectory import KidnappedTrajectory, Trajectory

# ---------------------------------------------------------------------------------------
# Degraded GNSS
# ---------------------------------------------------------------------------------------


def _events(duration: float, mean_gap: float, dur_range: tuple[float, float],
            rng: np.random.Generator, avoid: list[tuple[float, float]] = ()) -> list[tuple[float, float]]:
    """Quasi-periodic intervals: gaps U(0.5, 1.5) x mean_gap (the first U(0.2, 1.0) x mean_gap)."""
    out: list[tuple[float, float]] = []
    t = rng.uniform(0.2, 1.0) * mean_gap
    while t < duration:
        length = rng.uniform(*dur_range)
        a, b = t, min(t + length, duration)
        clash = [(c, d) for c, d in avoid if a < d and c < b]
        if clash:
            t = max(d for _, d in clash) + 1.0
            continue
        out.append((a, b))
        t = b + rng.uniform(0.5, 1.5) * mean_gap
    return out


@dataclass
class GnssErrors:
    """Per GNSS epoch: what the degraded receiver reports, relative to the truth."""

    t: np.ndarray            # (n,) seconds from start
    published: np.ndarray    # (n,) bool: a message exists (False inside 'drop' outages)
    fix: np.ndarray          # (n,) bool: status FIX (False: NO_FIX)
    err_enu: np.ndarray      # (n, 3) metres, true-north ENU error added to the antenna
    sigma_enu: np.ndarray    # (n, 3) reported standard deviations (honest)
    multipath: np.ndarray    # (n,) bool
    outages: list[tuple[float, float, str]]
    multipath_events: list[tuple[float, float, float]]   # start, end, jump magnitude (m)


def simulate_gnss_errors(times: np.ndarray, cfg: DriveConfig, rng: np.random.Generator) -> GnssErrors:
    times = np.asarray(times, dtype=np.float64)
    n = len(times)
    duration = float(times[-1]) + 1e-9 if n else 0.0
    lo, hi = cfg.gnss_sigma_range
    # sigma drifts slowly (tau 20 s) inside [lo, hi]
    sig = np.empty(n)
    level = rng.uniform(0.0, 1.0)
    err = np.zeros((n, 3))
    state = None
    prev_t = None
    for i, t in enumerate(times):
        dt = 0.0 if prev_t is None else t - prev_t
        a20 = math.exp(-dt / 20.0)
        level = min(1.0, max(0.0, 0.5 + a20 * (level - 0.5) + math.sqrt(1 - a20 ** 2) * 0.35 * rng.standard_normal()))
        sig[i] = lo + (hi - lo) * level
        s3 = np.array([sig[i], sig[i], sig[i] * cfg.gnss_vertical_factor])
        if state is None:
            state = rng.standard_normal(3)
        else:
            a = math.exp(-dt / cfg.gnss_correlation_s)
            state = a * state + math.sqrt(1 - a * a) * rng.standard_normal(3)
        err[i] = state * s3
        prev_t = t
    sigma = np.stack([sig, sig, sig * cfg.gnss_vertical_factor], axis=1)
    outages_iv = _events(duration, cfg.outage_mean_gap_s, cfg.outage_duration_s, rng)
    outages = [(a, b, "drop" if rng.uniform() < 0.5 else "no_fix") for a, b in outages_iv]
    mp_iv = _events(duration, cfg.multipath_mean_gap_s, cfg.multipath_duration_s, rng, avoid=outages_iv)
    published = np.ones(n, dtype=bool)
    fix = np.ones(n, dtype=bool)
    multipath = np.zeros(n, dtype=bool)
    mp_events = []
    for a, b, kind in outages:
        inside = (times >= a) & (times < b)
        if kind == "drop":
            published[inside] = False
        fix[inside] = False
    for a, b in mp_iv:
        jump = rng.uniform(*cfg.multipath_jump_m)
        ang = rng.uniform(0.0, 2 * math.pi)
        inside = (times >= a) & (times < b)
        err[inside, 0] += jump * math.cos(ang)
        err[inside, 1] += jump * math.sin(ang)
        # honest: a jump of magnitude J in a random direction has per-axis variance J^2 / 2
        sigma[inside, 0] = np.sqrt(sigma[inside, 0] ** 2 + jump ** 2 / 2)
        sigma[inside, 1] = np.sqrt(sigma[inside, 1] ** 2 + jump ** 2 / 2)
        multipath[inside] = True
        mp_events.append((a, b, jump))
    return GnssErrors(times, published, fix, err, sigma, multipath, outages, mp_events)


# ---------------------------------------------------------------------------------------
# Wheel odometry + gyro
# ---------------------------------------------------------------------------------------


@dataclass
class Odometry:
    t: np.ndarray           # (n,) sim times
    x: np.ndarray           # odom frame
    y: np.ndarray
    yaw: np.ndarray         # rad, unwrapped
    speed: np.ndarray       # measured wheel speed
    yaw_rate: np.ndarray    # measured gyro rate (rad/s)
    cov: np.ndarray         # (n, 3, 3) over x, y, yaw
    bias_dps: np.ndarray    # true gyro bias (deg/s)
    scale: float            # true wheel scale error


def simulate_odometry(traj: Trajectory | KidnappedTrajectory, duration_s: float, cfg: DriveConfig,
                      rng: np.random.Generator) -> Odometry:
    dt = 1.0 / cfg.sim_rate_hz
    n = int(round(duration_s * cfg.sim_rate_hz)) + 1
    t = np.arange(n) * dt
    truth = traj.at(t)
    scale = rng.normal(0.0, cfg.wheel_scale_sigma)
    bias0 = math.radians(rng.normal(0.0, cfg.gyro_bias_sigma_dps))
    walk = math.radians(cfg.gyro_bias_walk_dps)
    bias = bias0 + np.concatenate([[0.0], np.cumsum(rng.standard_normal(n - 1) * walk * math.sqrt(dt))])
    v_meas = truth["speed"] * (1.0 + scale) + rng.standard_normal(n) * cfg.wheel_speed_noise
    w_noise = math.radians(cfg.gyro_noise_dps)
    w_meas = truth["yaw_rate"] + bias + rng.standard_normal(n) * w_noise
    x = np.zeros(n)
    y = np.zeros(n)
    yaw = np.zeros(n)
    cov = np.zeros((n, 3, 3))
    # error-state covariance over (x, y, yaw, gyro bias, wheel scale)
    P = np.diag([0.0, 0.0, 0.0, math.radians(cfg.gyro_bias_sigma_dps) ** 2, cfg.wheel_scale_sigma ** 2])
    q_v = cfg.wheel_speed_noise ** 2
    q_w = w_noise ** 2
    q_b = walk ** 2 * dt
    for i in range(1, n):
        v = 0.5 * (v_meas[i - 1] + v_meas[i])
        w = 0.5 * (w_meas[i - 1] + w_meas[i])
        th_mid = yaw[i - 1] + 0.5 * w * dt
        c, s_ = math.cos(th_mid), math.sin(th_mid)
        x[i] = x[i - 1] + v * c * dt
        y[i] = y[i - 1] + v * s_ * dt
        yaw[i] = yaw[i - 1] + w * dt
        F = np.eye(5)
        F[0, 2] = -v * s_ * dt
        F[1, 2] = v * c * dt
        F[0, 4] = -v * c * dt
        F[1, 4] = -v * s_ * dt
        F[2, 3] = -dt
        G = np.zeros((5, 3))
        G[0, 0], G[1, 0] = c * dt, s_ * dt
        G[2, 1] = dt
        G[3, 2] = 1.0
        # white noise averaged over the step's two samples: variance / 2
        Q = G @ np.diag([q_v / 2, q_w / 2, q_b]) @ G.T
        P = F @ P @ F.T + Q
        cov[i] = P[:3, :3]
    return Odometry(t, x, y, yaw, v_meas, w_meas, cov, np.degrees(bias), float(scale))
