"""Angle and image conventions shared by every part of unifygeo_ros.

Frames follow REP-103 and REP-105:

* **ENU yaw** (what we publish and compute with): 0 = east, counter-clockwise
  positive, degrees in (-180, 180].
* **Compass bearing** (what maps, GNSS receivers and people say): 0 = north,
  clockwise positive, degrees in [0, 360).

The two are never mixed: convert explicitly with :func:`compass_to_enu_yaw` and
:func:`enu_yaw_to_compass`.

A yaw as a quaternion (``x, y, z, w``; ROS message order) is the rotation about ``z`` by
the ENU yaw in radians: :func:`yaw_to_quaternion` and :func:`quaternion_to_yaw`.

Equirectangular panoramas (``H x W``, full sphere, as VIGOR's):

* Continuous column coordinate ``x`` in ``[0, W)``; pixel ``u`` covers ``[u, u + 1)``.
  The bearing seen at ``x`` is ``forward + (x / W - 0.5) * 360``: the camera's forward
  direction is at ``x = W / 2`` and bearing grows to the right.
* Continuous row coordinate ``y`` in ``[0, H)``: elevation ``90 - 180 * y / H``
  (``y = 0`` zenith, ``y = H`` nadir, horizon at ``y = H / 2``).
* A panorama is *north-aligned* when its forward bearing is 0 (north at the centre
  column), which is how VIGOR stores its panoramas. A panorama whose forward bearing
  is ``b`` is the north-aligned one rotated by ``b``: see :func:`rotate_panorama`.
"""

from __future__ import annotations

import math

import numpy as np


def wrap_deg_180(angle):
    """Wrap degrees to (-180, 180]."""
    a = np.mod(np.asarray(angle, dtype=np.float64), 360.0)
    a = np.where(a > 180.0, a - 360.0, a)
    return float(a) if np.ndim(a) == 0 else a


def wrap_deg_360(angle):
    """Wrap degrees to [0, 360)."""
    a = np.mod(np.asarray(angle, dtype=np.float64), 360.0)
    a = np.where(a >= 360.0, a - 360.0, a)
    return float(a) if np.ndim(a) == 0 else a


def angle_diff_deg(a, b):
    """Signed smallest difference ``a - b`` in degrees, in (-180, 180]."""
    return wrap_deg_180(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


def compass_to_enu_yaw(bearing_deg):
    """Compass bearing (0 = north, clockwise) -> ENU yaw (0 = east, counter-clockwise)."""
    return wrap_deg_180(90.0 - np.asarray(bearing_deg, dtype=np.float64))


def enu_yaw_to_compass(yaw_deg):
    """ENU yaw (0 = east, counter-clockwise) -> compass bearing (0 = north, clockwise)."""
    return wrap_deg_360(90.0 - np.asarray(yaw_deg, dtype=np.float64))


def yaw_to_quaternion(yaw_rad: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by ``yaw_rad`` about z."""
    return 0.0, 0.0, math.sin(yaw_rad / 2.0), math.cos(yaw_rad / 2.0)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rad, about z, ENU) of a quaternion: the heading of its rotated x axis."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def panorama_column_to_bearing(x, width: int, forward_bearing_deg: float = 0.0):
    """Compass bearing seen at continuous column ``x`` of a panorama ``width`` wide."""
    return wrap_deg_360(forward_bearing_deg + (np.asarray(x, dtype=np.float64) / width - 0.5) * 360.0)


def bearing_to_panorama_column(bearing_deg, width: int, forward_bearing_deg: float = 0.0):
    """Continuous column in ``[0, width)`` at which ``bearing_deg`` appears."""
    rel = wrap_deg_360(np.asarray(bearing_deg, dtype=np.float64) - forward_bearing_deg + 180.0)
    return rel / 360.0 * width


def panorama_row_to_elevation(y, height: int):
    """Elevation angle (degrees, up positive) at continuous row ``y``."""
    return 90.0 - np.asarray(y, dtype=np.float64) / height * 180.0


def elevation_to_panorama_row(elevation_deg, height: int):
    """Continuous row of elevation ``elevation_deg`` (degrees)."""
    return (90.0 - np.asarray(elevation_deg, dtype=np.float64)) / 180.0 * height


def rotate_panorama(pano: np.ndarray, delta_bearing_deg: float) -> np.ndarray:
    """Return the panorama seen by the same camera turned clockwise by ``delta_bearing_deg``.

    Its forward bearing becomes ``forward + delta``: column ``u`` of the result shows what
    column ``u + delta / 360 * W`` showed before (circularly). Shifts that are a whole
    number of columns are exact rolls; others interpolate linearly between columns.
    Works on ``H x W`` and ``H x W x C`` arrays.
    """
    width = pano.shape[1]
    shift = float(delta_bearing_deg) / 360.0 * width
    whole = int(np.floor(shift))
    frac = shift - whole
    rolled = np.roll(pano, -whole, axis=1)
    if frac < 1e-9:
        return rolled
    nxt = np.roll(rolled, -1, axis=1)
    out = (1.0 - frac) * rolled.astype(np.float64) + frac * nxt.astype(np.float64)
    if np.issubdtype(pano.dtype, np.integer):
        out = np.clip(np.rint(out), np.iinfo(pano.dtype).min, np.iinfo(pano.dtype).max)
    return out.astype(pano.dtype)
