"""Camera rigs: several limited-field-of-view images composed into one masked panorama.

A :class:`~unifygeo_ros.types.Rig` holds N pinhole or fisheye cameras, each with its yaw
relative to the rig's forward direction (base_link's x axis, REP-103: counter-clockwise
positive, so a left camera has yaw +90). Each image is placed in the panorama frame as a
single camera is (:func:`unifygeo_ros.inference.fov.place_camera`: its intrinsics,
distortion, pitch and roll), its optical axis at the bearing ``forward_offset_deg - yaw``
(panorama bearings grow clockwise, to the right, from the centre column; see
``docs/conventions.md``): a left camera (yaw +90) fills the columns around a quarter of the
width, a right camera (yaw -90) those around three quarters, a rear camera (yaw 180) the
two edges.

Where views overlap, each panorama pixel takes the colour of the camera that sees it and
whose optical axis is closest to the pixel's bearing (the first such camera on a tie). The
column mask is the union of the cameras' masks. With ``forward_offset_deg = 0`` the
panorama's forward direction (centre column) is the rig's, so a heading found for the
panorama is the ENU yaw of the rig's forward direction.

This module is numpy and OpenCV only (no torch, no ROS).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..types import Camera, Intrinsics
from .fov import place_camera


def camera_intrinsics(image: np.ndarray, camera: Camera) -> Intrinsics:
    """The intrinsics of ``camera`` for ``image``: its calibrated ones (the image must have
    their size), or the idealised pinhole of its ``hfov_deg`` at the image's size."""
    h, w = image.shape[:2]
    if camera.intrinsics is None:
        return Intrinsics.ideal(w, h, float(camera.hfov_deg))
    if (w, h) != (camera.intrinsics.width, camera.intrinsics.height):
        raise ValueError(f"camera image: {w} x {h} pixels, but the intrinsics are for "
                         f"{camera.intrinsics.width} x {camera.intrinsics.height}")
    return camera.intrinsics


def axis_bearing_deg(yaw_deg: float, forward_offset_deg: float = 0.0) -> float:
    """The panorama bearing (degrees clockwise from the centre column, in [-180, 180)) of a
    camera's optical axis at ``yaw_deg`` (counter-clockwise) from the rig's forward direction,
    which lies at bearing ``forward_offset_deg``."""
    return float((forward_offset_deg - yaw_deg + 180.0) % 360.0 - 180.0)


def compose_rig(images: Sequence[np.ndarray], cameras: Sequence[Camera], yaws_deg: Sequence[float],
                pano_size: tuple[int, int], forward_offset_deg: float = 0.0,
                intrinsics: Sequence[Intrinsics] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(panorama, column_mask)``: the ``H x W x 3`` panorama (``pano_size = (H, W)``,
    zeros where no camera sees) of the N ``images`` taken by ``cameras`` at ``yaws_deg`` from
    the rig's forward direction, which lies at bearing ``forward_offset_deg`` of the
    panorama (0: the centre column), and the float32 ``(W,)`` union of the column masks.
    ``intrinsics``: each camera's intrinsics for its image (default
    :func:`camera_intrinsics`)."""
    n = len(images)
    if n == 0 or len(cameras) != n or len(yaws_deg) != n:
        raise ValueError(f"camera rig: expected as many images as cameras and yaws (at least one), got "
                         f"{n} images, {len(cameras)} cameras and {len(yaws_deg)} yaws")
    ph, pw = pano_size
    bearings = (((np.arange(pw) + 0.5) / pw) - 0.5) * 360.0
    best = np.full((ph, pw), np.inf)
    pano = None
    for i, (img, cam, yaw) in enumerate(zip(images, cameras, yaws_deg)):
        intr = intrinsics[i] if intrinsics is not None else camera_intrinsics(img, cam)
        axis = axis_bearing_deg(float(yaw), forward_offset_deg)
        placed, inside = place_camera(img, intr, (ph, pw), axis_offset_deg=axis,
                                      pitch_deg=float(cam.pitch_deg), roll_deg=float(cam.roll_deg))
        if pano is None:
            pano = np.zeros_like(placed)
        # angular distance of each column's bearing from this camera's optical axis
        dist = np.abs((bearings - axis + 180.0) % 360.0 - 180.0)
        take = inside & (dist[None, :] < best)
        pano[take] = placed[take]
        best[take] = np.broadcast_to(dist[None, :], best.shape)[take]
    mask = np.isfinite(best).any(axis=0).astype(np.float32)
    return pano, mask
