"""Frames and poses of the node: database frame -> map frame, camera -> base_link.

* :class:`FrameAdapter` maps planar poses from the database's map frame (where the
  localizer works) to the output ``map_frame`` and back. Two frames with the same CRS differ
  by a translation; otherwise positions go through latitude / longitude and yaw turns by
  the difference of the two grids' meridian convergences (both are ENU yaws from their own
  grid east: ``yaw_map = yaw_db + gamma_map - gamma_db``).
* :class:`Extrinsic`: the camera in base_link (x forward, y left, z up): position and the
  yaw of the camera's forward direction. The localizer estimates the camera's position
  and forward yaw; base_link's follow as ``yaw_b = yaw_c - psi`` and
  ``p_b = p_c - R(yaw_b) t_xy``, with the covariance propagated through that map's Jacobian.
  Without a yaw estimate the lever arm's direction is unknown: base_link is put at the
  camera's position with ``|t_xy|^2 / 2`` added to each position variance (a point uniformly
  on the circle of that radius).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# the quaternion helpers belong to the yaw conventions; callers import them from here as well
from ..conventions import quaternion_to_yaw, yaw_to_quaternion  # noqa: F401
from ..geo import MapFrame


def rotate_cov2(cov: np.ndarray, angle_rad: float) -> np.ndarray:
    """``R cov R^T`` for a 2 x 2 covariance and a counter-clockwise rotation ``angle_rad``."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    r = np.array([[c, -s], [s, c]])
    return r @ np.asarray(cov, dtype=np.float64) @ r.T


def same_crs(a: MapFrame, b: MapFrame) -> bool:
    if a.crs_wkt == b.crs_wkt:
        return True
    try:
        return a.crs == b.crs
    except Exception:  # pragma: no cover - pyproj comparison failure
        return False


class FrameAdapter:
    """Planar poses between the database frame ``db`` and the output map frame ``out``."""

    def __init__(self, db: MapFrame, out: MapFrame):
        self.db = db
        self.out = out
        self.same_crs = same_crs(db, out)
        self.dx = db.origin_e - out.origin_e
        self.dy = db.origin_n - out.origin_n

    @property
    def identity(self) -> bool:
        return self.same_crs and self.dx == 0.0 and self.dy == 0.0

    def to_out(self, x: float, y: float) -> tuple[float, float, float]:
        """Database-frame (x, y) -> output (x, y) and the yaw rotation (rad) to add there."""
        if self.same_crs:
            return x + self.dx, y + self.dy, 0.0
        lat, lon = self.db.to_latlon(x, y)
        xo, yo = self.out.from_latlon(lat, lon)
        dgamma = math.radians(self.out.convergence_deg(float(xo), float(yo)) - self.db.convergence_deg(x, y))
        return float(xo), float(yo), dgamma

    def to_db(self, x: float, y: float) -> tuple[float, float, float]:
        """Output (x, y) -> database (x, y) and the yaw rotation (rad) to add there."""
        if self.same_crs:
            return x - self.dx, y - self.dy, 0.0
        lat, lon = self.out.to_latlon(x, y)
        xd, yd = self.db.from_latlon(lat, lon)
        dgamma = math.radians(self.db.convergence_deg(float(xd), float(yd)) - self.out.convergence_deg(x, y))
        return float(xd), float(yd), dgamma

    def pose_to_out(self, x: float, y: float, yaw_rad: float | None, cov3: np.ndarray):
        """A database-frame pose with a 3 x 3 covariance (x, y, yaw) in the output frame."""
        xo, yo, dyaw = self.to_out(x, y)
        cov = np.array(cov3, dtype=np.float64, copy=True)
        if dyaw != 0.0:
            j = np.eye(3)
            c, s = math.cos(dyaw), math.sin(dyaw)
            j[:2, :2] = [[c, -s], [s, c]]
            cov = j @ cov @ j.T
        return xo, yo, (None if yaw_rad is None else wrap_pi(yaw_rad + dyaw)), cov


def wrap_pi(a: float) -> float:
    """Wrap radians to (-pi, pi]."""
    a = math.fmod(a + math.pi, 2.0 * math.pi)
    if a <= 0.0:
        a += 2.0 * math.pi
    return a - math.pi


@dataclass(frozen=True)
class Extrinsic:
    """The camera in base_link: position (m) and the yaw (rad) of its forward direction."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    yaw: float = 0.0

    @classmethod
    def from_transform(cls, translation_xyz, rotation_xyzw) -> "Extrinsic":
        """From a base_link -> camera transform (e.g. /tf_static); forward = the camera's x axis."""
        tx, ty, tz = (float(v) for v in translation_xyz)
        return cls(tx, ty, tz, quaternion_to_yaw(*(float(v) for v in rotation_xyzw)))

    @property
    def lever_xy(self) -> float:
        return math.hypot(self.x, self.y)

    def camera_to_base(self, xc: float, yc: float, yaw_c: float | None, cov3: np.ndarray):
        """Camera pose (map) with 3 x 3 covariance -> base_link pose with covariance.

        Returns ``(x, y, yaw or None, cov3)``; see the module docstring.
        """
        cov = np.array(cov3, dtype=np.float64, copy=True)
        if yaw_c is None:
            extra = self.lever_xy ** 2 / 2.0
            cov[0, 0] += extra
            cov[1, 1] += extra
            return xc, yc, None, cov
        yaw_b = wrap_pi(yaw_c - self.yaw)
        c, s = math.cos(yaw_b), math.sin(yaw_b)
        xb = xc - (c * self.x - s * self.y)
        yb = yc - (s * self.x + c * self.y)
        j = np.eye(3)
        j[0, 2] = s * self.x + c * self.y
        j[1, 2] = -c * self.x + s * self.y
        return xb, yb, yaw_b, j @ cov @ j.T

    def base_yaw_to_camera(self, yaw_b: float) -> float:
        return wrap_pi(yaw_b + self.yaw)


def map_frame_from_config(cfg, db_frame: MapFrame) -> MapFrame:
    """The output map frame a :class:`~.config.NodeConfig` asks for."""
    if cfg.map_origin_mode == "database":
        return db_frame
    return MapFrame.utm_at(cfg.map_origin_latitude, cfg.map_origin_longitude)


def covariance6(cov3: np.ndarray, yaw_observed: bool, z_var: float, rp_var: float) -> np.ndarray:
    """The 6 x 6 pose covariance (x, y, z, roll, pitch, yaw) from a 3 x 3 over (x, y, yaw).

    z, roll and pitch are not observed: they get the configured variances (no correlation).
    Without a yaw estimate the yaw variance is pi^2 / 3 (a uniform yaw) and uncorrelated.
    """
    c = np.zeros((6, 6))
    idx = [0, 1, 5]
    for a in range(3):
        for b in range(3):
            c[idx[a], idx[b]] = cov3[a, b]
    if not yaw_observed:
        c[5, :] = 0.0
        c[:, 5] = 0.0
        c[5, 5] = math.pi ** 2 / 3.0
    c[2, 2] = z_var
    c[3, 3] = rp_var
    c[4, 4] = rp_var
    return 0.5 * (c + c.T)


def enu_true_covariance(cov_xy_grid: np.ndarray, convergence_deg: float) -> np.ndarray:
    """A grid-frame 2 x 2 position covariance in true east / north (NavSatFix's ENU).

    Grid north is true north turned by ``-gamma`` (``bearing_true = bearing_grid + gamma``),
    so a grid vector is turned by ``-gamma`` (counter-clockwise) into true ENU.
    """
    return rotate_cov2(cov_xy_grid, -math.radians(convergence_deg))
