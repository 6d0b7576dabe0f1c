"""Calibrated cameras: the forward projection of :class:`~unifygeo_ros.types.Intrinsics`, and
the intrinsics read from a ``sensor_msgs/CameraInfo`` (a message or its YAML file).

Frames: the camera's optical frame has x right, y down, z forward (ROS ``*_optical``). A
direction is first expressed in the *level* camera frame (the same axes with the optical axis
turned horizontal: the camera's yaw, no pitch or roll), then turned into the optical frame by
:func:`level_to_camera` (pitch up about x, then roll about the optical axis, the Tait-Bryan
order of REP-103's yaw, pitch, roll with pitch up positive).

Projection (:func:`project`), with ``(x, y, z)`` in the optical frame:

* ``plumb_bob`` and ``rational_polynomial`` (OpenCV's pinhole model, ``cv2.projectPoints``):
  ``a = x / z``, ``b = y / z``, ``r^2 = a^2 + b^2``,
  ``radial = (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6)``,
  ``a' = a radial + 2 t1 a b + t2 (r^2 + 2 a^2)``, ``b' = b radial + t1 (r^2 + 2 b^2) + 2 t2 a b``,
  ``u = fx a' + cx``, ``v = fy b' + cy``; only directions ahead of the camera (z > 0).
* ``equidistant`` (the fisheye model of ``cv2.fisheye``): ``theta`` = the angle from the
  optical axis, ``theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)``,
  ``a' = theta_d x / sqrt(x^2 + y^2)`` (``b'`` likewise), ``u = fx a' + cx``, ``v = fy b' + cy``;
  directions up to 180 degrees off the axis.

A distortion polynomial calibrated over the image folds back beyond it: past the radius where
the distorted radius stops growing, directions far outside the field of view would land
inside the image again. :func:`project` marks the directions beyond that radius (found
numerically from the radial term) as not seen.

This module is numpy and OpenCV only (no torch, no ROS).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..types import DISTORTION_MODELS, Intrinsics


class CameraInfoError(ValueError):
    """A CameraInfo (message, mapping or file) that does not describe a supported camera; the
    message names what was expected."""


# ---- geometry ----------------------------------------------------------------------------------

def level_to_camera(pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """The 3 x 3 rotation taking a direction in the level camera frame (x right, y down, z
    forward along the horizontal optical axis) to the optical frame of a camera pitched up by
    ``pitch_deg`` and then rolled by ``roll_deg`` about its optical axis (right-handed about
    the forward axis: positive lowers the camera's right side)."""
    p, r = np.radians(pitch_deg), np.radians(roll_deg)
    # camera axes in the level frame: R_cam = R_pitch @ R_roll; level -> camera is its transpose
    r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(p), -np.sin(p)], [0.0, np.sin(p), np.cos(p)]])
    r_roll = np.array([[np.cos(r), -np.sin(r), 0.0], [np.sin(r), np.cos(r), 0.0], [0.0, 0.0, 1.0]])
    return (r_pitch @ r_roll).T


def panorama_directions(pano_size: tuple[int, int], axis_offset_deg: float = 0.0):
    """Unit directions (level camera frame, ``(3, H, W)``) of the panorama's pixel centres: column
    ``c`` looks at bearing ``((c + 0.5) / W - 0.5) * 360 - axis_offset_deg`` from the optical
    axis (clockwise, i.e. to the right, positive), row ``r`` at elevation ``90 - 180 (r + 0.5) / H``.
    Also returns the bearings ``(W,)`` in radians."""
    ph, pw = pano_size
    theta = np.radians((((np.arange(pw) + 0.5) / pw) - 0.5) * 360.0 - axis_offset_deg)[None, :]
    phi = np.radians(90.0 - ((np.arange(ph) + 0.5) / ph) * 180.0)[:, None]
    d = np.stack([np.sin(theta) * np.cos(phi), -np.sin(phi) * np.ones_like(theta), np.cos(theta) * np.cos(phi)])
    return d, theta[0]


def _radial(intr: Intrinsics, r2: np.ndarray) -> np.ndarray:
    k1, k2, _, _, k3, *rest = intr.d
    num = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    if intr.distortion == "rational_polynomial":
        k4, k5, k6 = rest
        den = 1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))
        with np.errstate(divide="ignore", invalid="ignore"):
            return num / den
    return num


def _theta_d(intr: Intrinsics, theta: np.ndarray) -> np.ndarray:
    k1, k2, k3, k4 = intr.d
    t2 = theta * theta
    return theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))


@functools.lru_cache(maxsize=64)
def max_radius(intr: Intrinsics) -> float:
    """The largest undistorted radius the distortion maps one to one: ``r = tan`` of the angle
    off the optical axis for the pinhole models, the angle itself (radians) for
    ``equidistant``; ``inf`` (pinhole models) or pi (equidistant) when it never folds."""
    if intr.distortion == "equidistant":
        angle = np.linspace(0.0, np.pi, 20001)
        rd = _theta_d(intr, angle)
        limit = np.pi
    else:
        if not intr.distorted:
            return float("inf")
        angle = np.radians(np.linspace(0.0, 89.99, 20001))
        r = np.tan(angle)
        rd = r * _radial(intr, r * r)
        angle, limit = r, float("inf")
    bad = ~(np.isfinite(rd[1:]) & (np.diff(rd) > 0))
    if not bad.any():
        return limit
    return float(angle[int(np.argmax(bad))])


def project(points: np.ndarray, intr: Intrinsics, r_max: float | None = None):
    """Project directions ``points`` (``(3, ...)``, optical frame) into the distorted image.
    Returns ``(u, v, seen)``: pixel coordinates (pixel centres at integers) and where the
    camera model defines them (ahead of the camera, within the one-to-one range of the
    distortion, see :func:`max_radius`); ``u`` and ``v`` are meaningless where not seen."""
    x, y, z = (np.asarray(c, dtype=np.float64) for c in points)
    r_max = max_radius(intr) if r_max is None else r_max
    if intr.distortion == "equidistant":
        rho = np.hypot(x, y)
        theta = np.arctan2(rho, z)
        seen = theta <= r_max
        if np.isfinite(r_max) and r_max >= np.pi:
            seen = theta < np.pi - 1e-9
        scale = np.where(rho > 1e-12, _theta_d(intr, theta) / np.where(rho > 1e-12, rho, 1.0), 1.0)
        xd, yd = x * scale, y * scale
    else:
        ahead = z > 1e-6
        zs = np.where(ahead, z, 1.0)
        a, b = x / zs, y / zs
        r2 = a * a + b * b
        seen = ahead & (r2 <= r_max * r_max)
        if intr.distorted:
            _, _, t1, t2, *_ = intr.d
            rad = _radial(intr, r2)
            xd = a * rad + 2.0 * t1 * a * b + t2 * (r2 + 2.0 * a * a)
            yd = b * rad + t1 * (r2 + 2.0 * b * b) + 2.0 * t2 * a * b
            seen &= np.isfinite(xd) & np.isfinite(yd)
        else:
            xd, yd = a, b
    u = intr.fx * xd + intr.cx
    v = intr.fy * yd + intr.cy
    return u, v, seen


# ---- CameraInfo ---------------------------------------------------------------------------------

#: what a CameraInfo file or mapping must hold, for the error messages
EXPECTED = ("a CameraInfo: image_width, image_height, camera_matrix.data (9 numbers), distortion_model and "
            "distortion_coefficients.data (the YAML of ROS camera_calibration), or the sensor_msgs/CameraInfo "
            "fields width, height, k, distortion_model, d")


def _get(source, *names):
    """The first of ``names`` that ``source`` (a mapping or a message) has, else None."""
    for name in names:
        if isinstance(source, Mapping):
            if name in source:
                return source[name]
        elif hasattr(source, name):
            return getattr(source, name)
    return None


def _numbers(value, what: str, count: int | None = None) -> list[float]:
    if isinstance(value, Mapping):          # camera_calibration: {rows, cols, data}
        value = value.get("data")
    try:
        vals = [float(v) for v in (value if value is not None else [])]
    except (TypeError, ValueError):
        vals = None
    if vals is None or (count is not None and len(vals) != count) or not all(np.isfinite(vals)):
        raise CameraInfoError(f"{what}: expected {count if count is not None else 'a list of'} finite numbers, "
                              f"got {value!r}")
    return vals


def _size(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or int(value) != value \
            or int(value) < 2:
        raise CameraInfoError(f"{what}: expected an image size in pixels (an integer >= 2), got {value!r}")
    return int(value)


def intrinsics_from_camera_info(source: Any) -> Intrinsics:
    """The :class:`Intrinsics` of a ``sensor_msgs/CameraInfo`` message (any object with its
    fields), or of a mapping holding either the YAML of ROS ``camera_calibration``
    (``image_width``, ``image_height``, ``camera_matrix: {data: [...]}``,
    ``distortion_model``, ``distortion_coefficients: {data: [...]}``) or the message's field
    names (``width``, ``height``, ``k``, ``distortion_model``, ``d``; upper-case ``K`` and ``D``
    too). Raises :class:`CameraInfoError` naming what was expected.

    A skewed K, binning or a region of interest are not supported (the error says so); an
    empty distortion model is accepted with no or all-zero coefficients (no distortion)."""
    if source is None or (isinstance(source, Mapping) and not source):
        raise CameraInfoError(f"expected {EXPECTED}, got nothing")
    width = _get(source, "image_width", "width")
    height = _get(source, "image_height", "height")
    k = _get(source, "camera_matrix", "k", "K")
    model = _get(source, "distortion_model")
    d = _get(source, "distortion_coefficients", "d", "D")
    missing = [name for name, v in (("image_width (width)", width), ("image_height (height)", height),
                                    ("camera_matrix (k)", k), ("distortion_model", model)) if v is None]
    if missing:
        raise CameraInfoError(f"missing {', '.join(missing)}; expected {EXPECTED}")
    width, height = _size(width, "image width"), _size(height, "image height")
    kk = _numbers(k, "camera matrix (k)", 9)
    if kk[1] != 0.0 or kk[3] != 0.0 or kk[6:] != [0.0, 0.0, 1.0]:
        raise CameraInfoError(f"camera matrix (k): expected [fx, 0, cx, 0, fy, cy, 0, 0, 1] (no skew), got {kk}")
    dd = _numbers(d, "distortion coefficients (d)") if d is not None else []
    if not isinstance(model, str):
        raise CameraInfoError(f"distortion_model: expected a string, got {model!r}")
    if model == "":
        if any(dd):
            raise CameraInfoError(f"distortion_model is empty but the coefficients {dd} are not all zero; "
                                  f"expected one of {', '.join(DISTORTION_MODELS)}")
        model, dd = "plumb_bob", []
    if model not in DISTORTION_MODELS:
        raise CameraInfoError(f"distortion_model {model!r} is not supported; expected one of "
                              f"{', '.join(DISTORTION_MODELS)}")
    n = DISTORTION_MODELS[model]
    if len(dd) > n and any(dd[n:]):
        raise CameraInfoError(f"{model}: expected at most {n} distortion coefficients, got {len(dd)}: {dd}")
    bx, by = _get(source, "binning_x") or 0, _get(source, "binning_y") or 0
    if max(int(bx), int(by)) > 1:
        raise CameraInfoError(f"binning {bx} x {by} is not supported; expected binning 0 or 1 (the full image)")
    roi = _get(source, "roi")
    if roi is not None:
        rw, rh = int(_get(roi, "width") or 0), int(_get(roi, "height") or 0)
        rx, ry = int(_get(roi, "x_offset") or 0), int(_get(roi, "y_offset") or 0)
        if (rw or rh or rx or ry) and (rw, rh, rx, ry) != (width, height, 0, 0):
            raise CameraInfoError(f"a region of interest ({rw} x {rh} at {rx}, {ry}) is not supported; expected "
                                  f"the full image (roi all zero)")
    try:
        return Intrinsics(width, height, kk[0], kk[4], kk[2], kk[5], model, tuple(dd[:n]))
    except ValueError as exc:
        raise CameraInfoError(str(exc)) from None


def read_camera_info(path: str | Path) -> Intrinsics:
    """The intrinsics of a CameraInfo YAML file (see :func:`intrinsics_from_camera_info`).
    Raises :class:`CameraInfoError` naming the file and what was expected."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise CameraInfoError(f"{p}: file not found; expected {EXPECTED}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CameraInfoError(f"{p}: unreadable ({exc}); expected {EXPECTED}") from None
    except yaml.YAMLError as exc:
        raise CameraInfoError(f"{p}: not YAML ({' '.join(str(exc).split())}); expected {EXPECTED}") from None
    if not isinstance(data, Mapping):
        raise CameraInfoError(f"{p}: expected {EXPECTED}, got {type(data).__name__}")
    try:
        return intrinsics_from_camera_info(data)
    except CameraInfoError as exc:
        raise CameraInfoError(f"{p}: {exc}") from None
