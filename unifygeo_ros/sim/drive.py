"""A simulated drive through a synthetic city, written as a rosbag2 (``unifygeo sim drive``).

Frames (REP-103/105)
--------------------
* ``map``: the city's local UTM-grid frame (:class:`unifygeo_ros.geo.MapFrame`): x = grid
  east, y = grid north, metres from the city origin (its SW corner), z up, with z = 0 the
  flat ground at ellipsoidal altitude ``ground_altitude_m``. Yaw in ``map`` is ENU yaw from
  GRID east (true bearing = grid bearing + meridian convergence).
* ``odom``: where the wheel-odometry integration starts: it coincides with ``base_link``
  at the first stamp (pose 0, yaw 0); the true ``map -> odom`` transform is in the
  metadata JSON (``odom_origin_in_map``).
* ``base_link``: the vehicle, on the ground, x forward, y left, z up.
* ``camera_panorama``: the panorama camera, x forward, y left, z up (NOT an optical
  frame); its panoramas follow :mod:`unifygeo_ros.conventions` with the forward
  direction (x axis) at the centre column, i.e. the camera is fixed on the car and the
  panoramas are NOT north-aligned.
* ``gnss_link``: the GNSS antenna.

Topics (defaults; all configurable through :class:`DriveTopics`)
----------------------------------------------------------------
============================================  ==================================  ===========
``/camera/panorama/image_raw``                sensor_msgs/msg/Image (rgb8)        ``rate_hz``
``/camera/panorama/image_raw/compressed``     sensor_msgs/msg/CompressedImage     (jpeg)
``/gnss/fix_true``                            sensor_msgs/msg/NavSatFix           ``gnss_rate_hz``
``/gnss/fix``                                 sensor_msgs/msg/NavSatFix (degraded) ``gnss_rate_hz``
``/odom``                                     nav_msgs/msg/Odometry odom->base_link ``odom_rate_hz``
``/tf``                                       tf2_msgs/msg/TFMessage odom->base_link ``odom_rate_hz``
``/ground_truth/pose``                        geometry_msgs/msg/PoseStamped (map) ``odom_rate_hz``
``/tf_static``                                tf2_msgs/msg/TFMessage              once, at t0
============================================  ==================================  ===========

Every message is stamped from one simulated clock starting at ``start_time_s`` and
written with bag time == ``header.stamp``. ``/tf_static`` is recorded with the static-TF
QoS (reliable, transient-local, keep-last 1) so that ``ros2 bag play`` latches it; a
reader of the bag itself does not need that.

Sensor models (see :class:`DriveConfig` for the numbers)
--------------------------------------------------------
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

import json
import math
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriveTopics:
    image_raw: str = "/camera/panorama/image_raw"
    image_compressed: str = "/camera/panorama/image_raw/compressed"
    fix_true: str = "/gnss/fix_true"
    fix: str = "/gnss/fix"
    odom: str = "/odom"
    tf: str = "/tf"
    pose_true: str = "/ground_truth/pose"
    tf_static: str = "/tf_static"


@dataclass(frozen=True)
class DriveFrames:
    map: str = "map"
    odom: str = "odom"
    base_link: str = "base_link"
    camera: str = "camera_panorama"
    gnss: str = "gnss_link"


@dataclass(frozen=True)
class DriveConfig:
    duration_s: float = 60.0
    rate_hz: float = 2.0                      # panoramas
    pano_size: tuple[int, int] = (512, 256)   # W, H
    image: str = "raw"                        # raw | jpeg
    storage: str = "mcap"                     # mcap | sqlite3
    jpeg_quality: int = 90
    gnss_rate_hz: float = 5.0
    odom_rate_hz: float = 20.0                # also /ground_truth/pose and /tf
    sim_rate_hz: float = 100.0
    start_time_s: float = 1_700_000_000.0
    ground_altitude_m: float = 0.0            # ellipsoidal height of the map frame's z = 0
    seed: int = 0
    # extrinsics in base_link (x forward, y left, z up), metres
    camera_xyz: tuple[float, float, float] = (0.4, 0.0, 2.2)
    gnss_xyz: tuple[float, float, float] = (-0.5, 0.0, 1.9)
    # speed profile
    speed_min: float = 5.0                    # lowest cruise speed
    speed_max: float = 12.0
    turn_speed_min: float = 3.0               # turns slow the car to sqrt(a_lat R), not below this
    accel_max: float = 1.5                    # m/s^2
    decel_max: float = 2.5                    # m/s^2
    lateral_accel_max: float = 3.0            # m/s^2, slows the car in turns
    path_smoothing_m: float = 7.0             # Gaussian sigma along the road polyline (turn radius ~6.5 m)
    # degraded GNSS
    gnss_sigma_range: tuple[float, float] = (1.0, 3.0)
    gnss_vertical_factor: float = 1.5
    gnss_correlation_s: float = 2.0
    outage_mean_gap_s: float = 50.0
    outage_duration_s: tuple[float, float] = (3.0, 10.0)
    multipath_mean_gap_s: float = 35.0
    multipath_duration_s: tuple[float, float] = (2.0, 5.0)
    multipath_jump_m: tuple[float, float] = (10.0, 30.0)
    # wheel odometry + gyro
    wheel_speed_noise: float = 0.1            # m/s, white, per sim step
    wheel_scale_sigma: float = 0.01           # 1 % scale-factor error
    gyro_noise_dps: float = 0.2               # deg/s, white, per sim step
    gyro_bias_sigma_dps: float = 0.05         # initial bias
    gyro_bias_walk_dps: float = 0.005         # deg/s per sqrt(s)
    topics: DriveTopics = field(default_factory=DriveTopics)
    frames: DriveFrames = field(default_factory=DriveFrames)

    def __post_init__(self):
        problems = []
        if not self.duration_s > 0:
            problems.append("duration_s must be > 0")
        for name in ("rate_hz", "gnss_rate_hz", "odom_rate_hz", "sim_rate_hz"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        if self.sim_rate_hz < max(self.rate_hz, self.gnss_rate_hz, self.odom_rate_hz):
            problems.append("sim_rate_hz must be at least every output rate")
        if self.image not in ("raw", "jpeg"):
            problems.append("image must be 'raw' or 'jpeg'")
        if self.storage not in ("mcap", "sqlite3"):
            problems.append("storage must be 'mcap' or 'sqlite3'")
        w, h = self.pano_size
        if w < 8 or h < 4:
            problems.append("pano_size (W, H) must be at least 8 x 4")
        if not (0 < self.turn_speed_min <= self.speed_min < self.speed_max):
            problems.append("need 0 < turn_speed_min <= speed_min < speed_max")
        if problems:
            raise ValueError("; ".join(problems))

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# Trajectory
# ---------------------------------------------------------------------------------------


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


def simulate_odometry(traj: Trajectory, duration_s: float, cfg: DriveConfig,
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


# ---------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------


def yaw_quaternion(yaw_rad: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by ``yaw_rad`` about z."""
    return 0.0, 0.0, math.sin(yaw_rad / 2.0), math.cos(yaw_rad / 2.0)


def quaternion_yaw(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


class _Msgs:
    """Builds rosbags message objects from a typestore."""

    def __init__(self, ts):
        self.ts = ts
        T = ts.types
        self.Header = T["std_msgs/msg/Header"]
        self.Time = T["builtin_interfaces/msg/Time"]
        self.Image = T["sensor_msgs/msg/Image"]
        self.CompressedImage = T["sensor_msgs/msg/CompressedImage"]
        self.NavSatFix = T["sensor_msgs/msg/NavSatFix"]
        self.NavSatStatus = T["sensor_msgs/msg/NavSatStatus"]
        self.Odometry = T["nav_msgs/msg/Odometry"]
        self.PoseStamped = T["geometry_msgs/msg/PoseStamped"]
        self.PoseWithCovariance = T["geometry_msgs/msg/PoseWithCovariance"]
        self.TwistWithCovariance = T["geometry_msgs/msg/TwistWithCovariance"]
        self.Pose = T["geometry_msgs/msg/Pose"]
        self.Twist = T["geometry_msgs/msg/Twist"]
        self.Point = T["geometry_msgs/msg/Point"]
        self.Vector3 = T["geometry_msgs/msg/Vector3"]
        self.Quaternion = T["geometry_msgs/msg/Quaternion"]
        self.Transform = T["geometry_msgs/msg/Transform"]
        self.TransformStamped = T["geometry_msgs/msg/TransformStamped"]
        self.TFMessage = T["tf2_msgs/msg/TFMessage"]

    def header(self, t_ns: int, frame: str):
        return self.Header(stamp=self.Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000)),
                           frame_id=frame)

    def quat(self, yaw: float):
        qx, qy, qz, qw = yaw_quaternion(yaw)
        return self.Quaternion(x=qx, y=qy, z=qz, w=qw)

    def transform(self, t_ns, parent, child, xyz, yaw=0.0):
        return self.TransformStamped(
            header=self.header(t_ns, parent), child_frame_id=child,
            transform=self.Transform(translation=self.Vector3(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
                                     rotation=self.quat(yaw)))

    def pose(self, x, y, z, yaw):
        return self.Pose(position=self.Point(x=float(x), y=float(y), z=float(z)), orientation=self.quat(yaw))

    def navsatfix(self, t_ns, frame, lat, lon, alt, status, cov_diag, cov_type):
        cov = np.zeros(9)
        if cov_diag is not None:
            cov[[0, 4, 8]] = cov_diag
        return self.NavSatFix(header=self.header(t_ns, frame),
                              status=self.NavSatStatus(status=int(status), service=1),
                              latitude=float(lat), longitude=float(lon), altitude=float(alt),
                              position_covariance=cov, position_covariance_type=int(cov_type))


# ---------------------------------------------------------------------------------------
# The bag
# ---------------------------------------------------------------------------------------


def _stamps(start_ns: int, rate_hz: float, duration_s: float) -> np.ndarray:
    """Integer-nanosecond stamps k / rate for k = 0 .. while k / rate <= duration."""
    n = int(math.floor(duration_s * rate_hz + 1e-9)) + 1
    return start_ns + np.round(np.arange(n) * (1e9 / rate_hz)).astype(np.int64)


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


def drive_metadata_dir(bag: Path) -> Path:
    """Where the metadata of a bag goes: ``<bag>.meta/`` beside the bag directory."""
    bag = Path(bag)
    return bag.with_name(bag.name + ".meta")


def write_drive_bag(city, out: str | Path, cfg: DriveConfig, city_dir: str | Path | None = None,
                    progress: bool = True,
                    render: Callable | None = None) -> dict:
    """Simulate a drive through ``city`` and write it to the rosbag2 directory ``out``.

    Beside it, in ``<out>.meta/``: ``orthophoto.tif`` (a copy of ``city_dir/orthophoto.tif``
    when present, else rendered) and ``drive.json`` (map frame, extrinsics, topics, rates,
    noise models, GNSS event log, odometry drift). Returns a summary dict.
    ``render(city, xy, yaw_deg, width, height, camera_height_m)`` defaults to
    :func:`unifygeo_ros.sim.render.render_panorama`.
    """
    import cv2
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from tqdm import tqdm

    if render is None:
        from unifygeo_ros.sim.render import render_panorama as render

    out = Path(out)
    meta_dir = drive_metadata_dir(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already: expected a new path for the bag directory")
    if meta_dir.exists():
        raise FileExistsError(f"{meta_dir} exists already: expected a new path beside the bag")
    out.parent.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 0x64726976]))
    traj = route_for(city, cfg.duration_s, cfg, rng)
    odo = simulate_odometry(traj, cfg.duration_s, cfg, rng)
    start_ns = int(round(cfg.start_time_s * 1e9))
    t_img = _stamps(start_ns, cfg.rate_hz, cfg.duration_s)
    t_gnss = _stamps(start_ns, cfg.gnss_rate_hz, cfg.duration_s)
    t_odom = _stamps(start_ns, cfg.odom_rate_hz, cfg.duration_s)
    sec = lambda ns: (np.asarray(ns) - start_ns) / 1e9  # noqa: E731
    gerr = simulate_gnss_errors(sec(t_gnss), cfg, rng)
    frame = city.frame
    fr, tp = cfg.frames, cfg.topics
    W, H = cfg.pano_size

    ts = get_typestore(Stores.ROS2_JAZZY)
    M = _Msgs(ts)
    static_qos = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                     QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
    image_topic = tp.image_raw if cfg.image == "raw" else tp.image_compressed
    image_type = "sensor_msgs/msg/Image" if cfg.image == "raw" else "sensor_msgs/msg/CompressedImage"
    topic_types = {
        tp.tf_static: "tf2_msgs/msg/TFMessage",
        image_topic: image_type,
        tp.fix_true: "sensor_msgs/msg/NavSatFix",
        tp.fix: "sensor_msgs/msg/NavSatFix",
        tp.odom: "nav_msgs/msg/Odometry",
        tp.tf: "tf2_msgs/msg/TFMessage",
        tp.pose_true: "geometry_msgs/msg/PoseStamped",
    }
    if len(topic_types) != 7:
        raise ValueError("topic names must be distinct")
    counts = {k: 0 for k in topic_types}

    gx, gy, gz = cfg.gnss_xyz
    cx, cy, cz = cfg.camera_xyz

    def truth(t_ns):
        return {k: float(v) for k, v in traj.at(sec(t_ns)).items()}

    def antenna_xy(p):
        c, s = math.cos(p["yaw"]), math.sin(p["yaw"])
        return p["x"] + c * gx - s * gy, p["y"] + s * gx + c * gy

    # All events, time-ordered (ties: tf_static first, then by topic order below).
    order = {tp.tf_static: 0, tp.pose_true: 1, tp.odom: 2, tp.tf: 3, tp.fix_true: 4, tp.fix: 5, image_topic: 6}
    events: list[tuple[int, int, str, int]] = [(start_ns, order[tp.tf_static], tp.tf_static, 0)]
    for i, t in enumerate(t_odom):
        for topic in (tp.pose_true, tp.odom, tp.tf):
            events.append((int(t), order[topic], topic, i))
    for i, t in enumerate(t_gnss):
        events.append((int(t), order[tp.fix_true], tp.fix_true, i))
        if gerr.published[i]:
            events.append((int(t), order[tp.fix], tp.fix, i))
    for i, t in enumerate(t_img):
        events.append((int(t), order[image_topic], image_topic, i))
    events.sort()

    odo_t_ns = start_ns + np.round(odo.t * 1e9).astype(np.int64)

    def odom_at(t_ns):
        tt = sec(t_ns)
        vals = {k: float(np.interp(tt, odo.t, getattr(odo, k))) for k in ("x", "y", "yaw", "speed", "yaw_rate")}
        j = int(np.clip(np.searchsorted(odo_t_ns, t_ns), 0, len(odo.t) - 1))
        vals["cov"] = odo.cov[j]
        return vals

    plugin = StoragePlugin.MCAP if cfg.storage == "mcap" else StoragePlugin.SQLITE3
    img_bar = tqdm(total=len(t_img), desc="drive: panoramas", unit="img", file=sys.stderr,
                   disable=not progress, dynamic_ncols=True)
    first_pose = truth(start_ns)
    fix_err = []
    with Writer(out, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, mtype in topic_types.items():
            kwargs = {"offered_qos_profiles": [static_qos]} if topic == tp.tf_static else {}
            conns[topic] = writer.add_connection(topic, mtype, typestore=ts, **kwargs)
        for t_ns, _, topic, i in events:
            if topic == tp.tf_static:
                msg = M.TFMessage(transforms=[
                    M.transform(t_ns, fr.base_link, fr.camera, cfg.camera_xyz),
                    M.transform(t_ns, fr.base_link, fr.gnss, cfg.gnss_xyz),
                ])
            elif topic == tp.pose_true:
                p = truth(t_ns)
                msg = M.PoseStamped(header=M.header(t_ns, fr.map), pose=M.pose(p["x"], p["y"], 0.0, p["yaw"]))
            elif topic in (tp.odom, tp.tf):
                o = odom_at(t_ns)
                if topic == tp.tf:
                    msg = M.TFMessage(transforms=[M.transform(t_ns, fr.odom, fr.base_link, (o["x"], o["y"], 0.0),
                                                              o["yaw"])])
                else:
                    pc = np.zeros((6, 6))
                    c3 = o["cov"]
                    idx = [0, 1, 5]
                    for a in range(3):
                        for b in range(3):
                            pc[idx[a], idx[b]] = c3[a, b]
                    pc[2, 2] = pc[3, 3] = pc[4, 4] = 1e-6   # planar vehicle: z, roll, pitch known
                    pc[0, 0] = max(pc[0, 0], 1e-6)
                    pc[1, 1] = max(pc[1, 1], 1e-6)
                    pc[5, 5] = max(pc[5, 5], 1e-8)
                    tc = np.diag([cfg.wheel_speed_noise ** 2 + (cfg.wheel_scale_sigma * o["speed"]) ** 2,
                                  1e-4, 1e-4, 1e-4, 1e-4,
                                  math.radians(cfg.gyro_noise_dps) ** 2 + math.radians(cfg.gyro_bias_sigma_dps) ** 2])
                    twist = M.Twist(linear=M.Vector3(x=o["speed"], y=0.0, z=0.0),
                                    angular=M.Vector3(x=0.0, y=0.0, z=o["yaw_rate"]))
                    msg = M.Odometry(header=M.header(t_ns, fr.odom), child_frame_id=fr.base_link,
                                     pose=M.PoseWithCovariance(pose=M.pose(o["x"], o["y"], 0.0, o["yaw"]),
                                                               covariance=pc.reshape(-1)),
                                     twist=M.TwistWithCovariance(twist=twist, covariance=tc.reshape(-1)))
            elif topic in (tp.fix_true, tp.fix):
                p = truth(t_ns)
                ax, ay = antenna_xy(p)
                alt = cfg.ground_altitude_m + gz
                if topic == tp.fix_true:
                    lat, lon = frame.to_latlon(ax, ay)
                    msg = M.navsatfix(t_ns, fr.gnss, lat, lon, alt, 0, [1e-4, 1e-4, 1e-4], 2)
                elif not gerr.fix[i]:
                    msg = M.navsatfix(t_ns, fr.gnss, math.nan, math.nan, math.nan, -1, None, 0)
                else:
                    # the error is true-north ENU: turn it into the grid by -gamma
                    gamma = math.radians(frame.convergence_deg(ax, ay))
                    ee, en, eu = gerr.err_enu[i]
                    dx = ee * math.cos(gamma) - en * math.sin(gamma)
                    dy = ee * math.sin(gamma) + en * math.cos(gamma)
                    lat, lon = frame.to_latlon(ax + dx, ay + dy)
                    msg = M.navsatfix(t_ns, fr.gnss, lat, lon, alt + eu, 0, gerr.sigma_enu[i] ** 2, 2)
                    fix_err.append(math.hypot(ee, en))
            else:
                p = truth(t_ns)
                c, s = math.cos(p["yaw"]), math.sin(p["yaw"])
                cam_xy = np.array([p["x"] + c * cx - s * cy, p["y"] + s * cx + c * cy])
                rgb = np.ascontiguousarray(render(city, cam_xy, math.degrees(p["yaw"]), W, H, camera_height_m=cz))
                if rgb.shape != (H, W, 3) or rgb.dtype != np.uint8:
                    raise RuntimeError(f"render_panorama returned {rgb.shape} {rgb.dtype}; expected ({H}, {W}, 3) uint8")
                if cfg.image == "raw":
                    msg = M.Image(header=M.header(t_ns, fr.camera), height=H, width=W, encoding="rgb8",
                                  is_bigendian=0, step=W * 3, data=rgb.reshape(-1))
                else:
                    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                           [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
                    if not ok:
                        raise RuntimeError("JPEG encoding failed")
                    msg = M.CompressedImage(header=M.header(t_ns, fr.camera), format="rgb8; jpeg compressed bgr8",
                                            data=np.frombuffer(buf.tobytes(), dtype=np.uint8))
                img_bar.update(1)
            writer.write(conns[topic], t_ns, ts.serialize_cdr(msg, topic_types[topic]))
            counts[topic] += 1
    img_bar.close()

    # ---- metadata beside the bag ------------------------------------------------------
    meta_dir.mkdir(parents=True)
    ortho_src = Path(city_dir) / "orthophoto.tif" if city_dir is not None else None
    ortho = meta_dir / "orthophoto.tif"
    if ortho_src is not None and ortho_src.is_file():
        shutil.copyfile(ortho_src, ortho)
        ortho_how = f"copied from {ortho_src}"
    else:
        from unifygeo_ros.sim.render import write_orthophoto_geotiff

        write_orthophoto_geotiff(city, ortho, 0.25)
        ortho_how = "rendered at 0.25 m/px"
    lat0, lon0 = frame.to_latlon(0.0, 0.0)
    end = odom_at(int(t_odom[-1]))
    p_end = truth(int(t_odom[-1]))
    # odom pose mapped into map with the true map->odom transform, vs the truth
    c0, s0 = math.cos(first_pose["yaw"]), math.sin(first_pose["yaw"])
    ox = first_pose["x"] + c0 * end["x"] - s0 * end["y"]
    oy = first_pose["y"] + s0 * end["x"] + c0 * end["y"]
    drift_m = math.hypot(ox - p_end["x"], oy - p_end["y"])
    distance = float(np.interp(cfg.duration_s, traj.t, traj.s))
    speeds = traj.at(np.arange(0.0, cfg.duration_s + 1e-9, 1.0 / cfg.sim_rate_hz))["speed"]
    rates = {image_topic: cfg.rate_hz, tp.fix_true: cfg.gnss_rate_hz, tp.fix: cfg.gnss_rate_hz,
             tp.odom: cfg.odom_rate_hz, tp.tf: cfg.odom_rate_hz, tp.pose_true: cfg.odom_rate_hz, tp.tf_static: None}
    try:
        epsg = frame.crs.to_epsg()
    except Exception:  # pragma: no cover
        epsg = None
    meta = {
        "format": "unifygeo-drive/1",
        "bag": str(out),
        "storage": cfg.storage,
        "image": cfg.image,
        "start_time_ns": start_ns,
        "duration_s": cfg.duration_s,
        "seed": cfg.seed,
        "map_frame": {
            "frame_id": fr.map,
            "description": "the city's local UTM-grid frame: x grid east, y grid north (m) from the origin "
                           "(E0, N0) in the CRS; z up, z = 0 at ellipsoidal altitude ground_altitude_m; yaw "
                           "is ENU yaw from GRID east (true bearing = grid bearing + convergence)",
            "crs_wkt": frame.crs_wkt,
            "epsg": epsg,
            "origin_e": frame.origin_e,
            "origin_n": frame.origin_n,
            "origin_lat": float(lat0),
            "origin_lon": float(lon0),
            "ground_altitude_m": cfg.ground_altitude_m,
            "convergence_deg_at_origin": frame.convergence_deg(0.0, 0.0),
        },
        "odom_origin_in_map": {"x": first_pose["x"], "y": first_pose["y"], "yaw_rad": first_pose["yaw"],
                               "note": "true map->odom transform (odom = base_link at the first stamp)"},
        "frames": asdict(fr),
        "camera": {
            "frame_id": fr.camera, "parent": fr.base_link, "translation_xyz_m": list(cfg.camera_xyz),
            "rotation_xyzw": [0.0, 0.0, 0.0, 1.0],
            "model": "equirectangular panorama, full sphere",
            "width": W, "height": H,
            "convention": "forward (camera x axis = vehicle heading) at the centre column, bearing grows to the "
                          "right, row 0 = zenith, horizon at H/2 (unifygeo_ros.conventions); not north-aligned",
        },
        "gnss_antenna": {"frame_id": fr.gnss, "parent": fr.base_link, "translation_xyz_m": list(cfg.gnss_xyz)},
        "topics": {t: {"type": topic_types[t], "rate_hz": rates[t], "count": counts[t]} for t in topic_types},
        "tf_static_qos": "reliable, transient_local, keep_last 1 (recorded as the connection's offered QoS)",
        "orthophoto": {"path": str(ortho), "source": ortho_how},
        "city": {"seed": getattr(city, "seed", None), "size_m": getattr(city, "size_m", None),
                 "style": _style_name(city), "dir": str(city_dir) if city_dir is not None else None},
        "gnss_model": {
            "sigma_range_m": list(cfg.gnss_sigma_range), "vertical_factor": cfg.gnss_vertical_factor,
            "correlation_s": cfg.gnss_correlation_s,
            "outages": [{"start_s": a, "end_s": b, "kind": k} for a, b, k in gerr.outages],
            "multipath": [{"start_s": a, "end_s": b, "jump_m": j} for a, b, j in gerr.multipath_events],
            "covariance": "diagonal, honest: per-axis variance of the applied error model (incl. jump^2/2 "
                          "during multipath); NO_FIX messages have NaN position and covariance type UNKNOWN; "
                          "'drop' outages publish nothing",
            "horizontal_error_m": {"median": float(np.median(fix_err)) if fix_err else None,
                                   "max": float(np.max(fix_err)) if fix_err else None},
        },
        "odometry_model": {
            "wheel_speed_noise_mps": cfg.wheel_speed_noise, "wheel_scale_error": odo.scale,
            "gyro_noise_dps": cfg.gyro_noise_dps, "gyro_bias_initial_dps": float(odo.bias_dps[0]),
            "gyro_bias_walk_dps_per_sqrt_s": cfg.gyro_bias_walk_dps, "integration_hz": cfg.sim_rate_hz,
            "final_drift_m": drift_m, "distance_m": distance,
        },
        "speed_mps": {"min": float(speeds.min()), "max": float(speeds.max()), "mean": distance / cfg.duration_s},
        "config": cfg.to_json(),
    }
    (meta_dir / "drive.json").write_text(json.dumps(meta, indent=2, default=_json_default))
    return {
        "bag": str(out),
        "metadata": str(meta_dir / "drive.json"),
        "orthophoto": str(ortho),
        "storage": cfg.storage,
        "duration_s": cfg.duration_s,
        "distance_m": round(distance, 2),
        "messages": counts,
        "gnss_outages": len(gerr.outages),
        "gnss_multipath_events": len(gerr.multipath_events),
        "odometry_final_drift_m": round(drift_m, 3),
    }


def _style_name(city):
    style = getattr(city, "style", None)
    return getattr(style, "name", None) if style is not None and not isinstance(style, str) else style


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
