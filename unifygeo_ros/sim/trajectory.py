"""The route and the motion of a simulated drive: a smoothed road polyline with a speed profile.

:func:`route_for` plans a drive of any length: the city's road route is a random walk over
its road graph that goes on as long as asked (through intersections, turning back at dead
ends), so a drive of ten minutes or more drives round the city's blocks again.
:func:`add_kidnaps` cuts the drive at the kidnap times and continues it, from each, on
another route starting at a far-away road position (:class:`KidnappedTrajectory`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from unifygeo_ros.sim.drive_config import DriveConfig


def _gauss_smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0, edges held by reflection of the end slope."""
    if sigma <= 0:
        return a.copy()
    r = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    # odd reflection keeps straight ends straight
    head = 2 * a[0] - a[r:0:-1]
    tail = 2 * a[-1] - a[-2:-r - 2:-1]
    ext = np.concatenate([head, a, tail])
    out = np.empty_like(a, dtype=np.float64)
    for j in range(a.shape[1]):
        out[:, j] = np.convolve(ext[:, j], k, mode="valid")
    return out


def _resample(poly: np.ndarray, ds: float) -> np.ndarray:
    seg = np.hypot(*np.diff(poly, axis=0).T)
    keep = np.concatenate([[True], seg > 1e-9])
    poly = poly[keep]
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(poly, axis=0).T))])
    n = max(2, int(s[-1] / ds) + 1)
    q = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(q, s, poly[:, 0]), np.interp(q, s, poly[:, 1])], axis=1)


@dataclass
class Trajectory:
    """A continuous-time drive: arc length, pose and speed as functions of time."""

    s: np.ndarray        # arc length of the samples (m)
    xy: np.ndarray       # (n, 2) path in the map frame
    yaw: np.ndarray      # (n,) unwrapped ENU yaw (rad) of the path tangent
    curvature: np.ndarray
    speed: np.ndarray    # (n,) m/s at each sample
    t: np.ndarray        # (n,) time (s) at which the car passes each sample

    @property
    def duration_s(self) -> float:
        return float(self.t[-1])

    def at(self, t) -> dict:
        """Pose and rates at times ``t`` (seconds from the start), by interpolation in time."""
        t = np.asarray(t, dtype=np.float64)
        x = np.interp(t, self.t, self.xy[:, 0])
        y = np.interp(t, self.t, self.xy[:, 1])
        yaw = np.interp(t, self.t, self.yaw)
        v = np.interp(t, self.t, self.speed)
        kappa = np.interp(t, self.t, self.curvature)
        return {"x": x, "y": y, "yaw": yaw, "speed": v, "yaw_rate": v * kappa}

    def distance_at(self, t: float) -> float:
        """Distance driven (m) from the start to time ``t``."""
        return float(np.interp(t, self.t, self.s))


def plan_trajectory(route: np.ndarray, cfg: DriveConfig, rng: np.random.Generator) -> Trajectory:
    """Smooth a road polyline and give it a speed profile (cruise 8-12 m/s, slower in turns).

    Cruise speeds change every 100-300 m (drawn in ``[max(speed_min, 8), speed_max]``); the
    speed in a turn is limited to ``sqrt(lateral_accel_max / curvature)`` but never below
    ``turn_speed_min`` (a 90 degree corner: ~4.5 m/s, a U-turn at a dead end: ~3 m/s);
    acceleration and braking are limited by forward/backward passes; yaw follows the
    smoothed tangent (Gaussian, ``path_smoothing_m``).
    """
    route = np.asarray(route, dtype=np.float64)
    if route.ndim != 2 or route.shape[1] != 2 or len(route) < 2:
        raise ValueError("route must be an (M, 2) polyline with M >= 2")
    ds = 0.25
    path = _resample(route, ds)
    path = _gauss_smooth(path, cfg.path_smoothing_m / ds)
    path = _resample(path, ds)
    d = np.gradient(path, axis=0)
    yaw = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(path, axis=0).T))])
    kappa = np.gradient(yaw, s)
    kappa = _gauss_smooth(kappa[:, None], 1.0 / ds)[:, 0]
    # cruise speed: piecewise constant in [lo, speed_max], changing every 100-300 m, eased
    lo = min(cfg.speed_max, max(cfg.speed_min, 8.0))
    cruise = np.empty_like(s)
    start = 0.0
    while start <= s[-1]:
        length = rng.uniform(100.0, 300.0)
        cruise[(s >= start) & (s < start + length)] = rng.uniform(lo, cfg.speed_max)
        start += length
    v = np.minimum(cruise, np.sqrt(cfg.lateral_accel_max / np.maximum(np.abs(kappa), 1e-6)))
    v = np.maximum(v, cfg.turn_speed_min)
    for i in range(1, len(v)):
        v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * cfg.accel_max * (s[i] - s[i - 1])))
    for i in range(len(v) - 2, -1, -1):
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * cfg.decel_max * (s[i + 1] - s[i])))
    t = np.concatenate([[0.0], np.cumsum(np.diff(s) / (0.5 * (v[1:] + v[:-1])))])
    return Trajectory(s, path, yaw, kappa, v, t)


def route_for(city, duration_s: float, cfg: DriveConfig, rng: np.random.Generator) -> Trajectory:
    """Ask the city for a road route long enough for ``duration_s`` and plan the drive on it."""
    length = cfg.speed_max * duration_s * 1.15 + 100.0
    for _ in range(4):
        route = np.asarray(city.road_route(length, rng), dtype=np.float64)
        traj = plan_trajectory(route, cfg, rng)
        if traj.duration_s >= duration_s:
            return traj
        length *= 2.0
    raise ValueError(f"the city's road network gave a route of only {traj.duration_s:.1f} s of driving; "
                     f"expected at least {duration_s} s (use a larger city or a shorter --duration-s)")


# ---------------------------------------------------------------------------------------
# Kidnapping
# ---------------------------------------------------------------------------------------

KIDNAP_SEARCH_S = 60.0      # a kidnap lands within this many seconds of driving from a new route's start
KIDNAP_TRIES = 50


@dataclass
class Kidnap:
    """The vehicle is moved at drive time ``t_s`` from pose ``before`` to pose ``after``
    (x, y in the map frame, m; yaw ENU from grid east, rad, in [-pi, pi])."""

    t_s: float
    before: tuple[float, float, float]
    after: tuple[float, float, float]

    @property
    def distance_m(self) -> float:
        return math.hypot(self.after[0] - self.before[0], self.after[1] - self.before[1])


@dataclass
class KidnappedTrajectory:
    """A drive whose vehicle is moved at the kidnap times: piece ``k`` (a :class:`Trajectory`)
    is driven from drive time ``starts[k]``, entered at its own time ``offsets[k]``; the
    first piece starts at time 0 from its beginning. Same interface as :class:`Trajectory`
    (``at``, ``distance_at``, ``duration_s``)."""

    pieces: list[Trajectory]
    starts: list[float]
    offsets: list[float]
    kidnaps: list[Kidnap] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.starts[-1] + self.pieces[-1].duration_s - self.offsets[-1]

    def _piece(self, t: np.ndarray) -> np.ndarray:
        # a kidnap time belongs to the piece after it
        return np.searchsorted(np.asarray(self.starts), t, side="right") - 1

    def at(self, t) -> dict:
        """Pose and rates at drive times ``t`` (see :meth:`Trajectory.at`); yaw is unwrapped
        within each piece."""
        t = np.asarray(t, dtype=np.float64)
        flat = np.atleast_1d(t).ravel()
        which = np.clip(self._piece(flat), 0, len(self.pieces) - 1)
        out = {k: np.empty_like(flat) for k in ("x", "y", "yaw", "speed", "yaw_rate")}
        for k, piece in enumerate(self.pieces):
            sel = which == k
            if sel.any():
                vals = piece.at(flat[sel] - self.starts[k] + self.offsets[k])
                for key in out:
                    out[key][sel] = vals[key]
        return {key: v.reshape(t.shape) for key, v in out.items()}

    def distance_at(self, t: float) -> float:
        """Distance driven (m) from the start to time ``t``, the kidnaps' jumps not counted."""
        total = 0.0
        for k, piece in enumerate(self.pieces):
            if t < self.starts[k]:
                break
            end = min(t, self.starts[k + 1]) if k + 1 < len(self.pieces) else t
            a, b = self.offsets[k], end - self.starts[k] + self.offsets[k]
            total += piece.distance_at(b) - piece.distance_at(a)
        return total


def _wrap(a: float) -> float:
    return math.atan2(math.sin(a), math.cos(a))


def add_kidnaps(city, first: Trajectory, cfg: DriveConfig, rng: np.random.Generator) -> KidnappedTrajectory:
    """The drive ``first`` with the vehicle moved at each of ``cfg.kidnap_at_s``.

    At a kidnap the vehicle leaves its route for a new one (:func:`route_for`, drawn with
    ``rng``), entered at a random point of its first :data:`KIDNAP_SEARCH_S` seconds that is
    at least ``cfg.kidnap_min_distance_m`` from where the vehicle was: another street, far
    away, with the heading of the new route there. Deterministic for ``rng``'s seed.
    """
    pieces: list[Trajectory] = [first]
    starts: list[float] = [0.0]
    offsets: list[float] = [0.0]
    kidnaps: list[Kidnap] = []
    drive = KidnappedTrajectory(pieces, starts, offsets, kidnaps)
    for t_k in cfg.kidnap_at_s:
        p = drive.at(t_k)
        before = (float(p["x"]), float(p["y"]), _wrap(float(p["yaw"])))
        remaining = cfg.duration_s - t_k
        for _ in range(KIDNAP_TRIES):
            route = route_for(city, remaining + KIDNAP_SEARCH_S, cfg, rng)
            cand = np.arange(0.0, KIDNAP_SEARCH_S, 0.5)
            q = route.at(cand)
            far = np.hypot(q["x"] - before[0], q["y"] - before[1]) >= cfg.kidnap_min_distance_m
            if far.any():
                offset = float(rng.choice(cand[far]))
                break
        else:
            raise ValueError(f"no road position at least {cfg.kidnap_min_distance_m:g} m from the vehicle's "
                             f"position at {t_k:g} s was found for the kidnap; expected a city large enough "
                             f"(use a larger city)")
        a = route.at(offset)
        pieces.append(route)
        starts.append(float(t_k))
        offsets.append(offset)
        kidnaps.append(Kidnap(float(t_k), before, (float(a["x"]), float(a["y"]), _wrap(float(a["yaw"])))))
    return drive
