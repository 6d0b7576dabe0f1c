"""Limited field of view: place a pinhole or fisheye image in the panorama frame.

The ground branch only understands equirectangular panoramas (``conventions.py``). An image
of a limited field of view is resampled into an empty panorama of the model's size: every
panorama pixel looks along its bearing and elevation, the direction is turned into the
camera's optical frame (its pitch and roll) and projected with the camera's intrinsics and
distortion (:mod:`unifygeo_ros.inference.camera`); the pixel takes the image's colour there
(bilinear, ``cv2.remap``) when the projection lands inside the image, and stays zero
otherwise. The camera's optical axis lands at bearing ``axis_offset_deg`` relative to the
panorama's forward direction (0: the centre column).

The column mask marks the panorama columns that hold at least one of the image's pixels
(for a level idealised pinhole: the columns whose bearing lies inside its horizontal field
of view); rows above and below the image's vertical field of view stay empty but are not
masked (the column-wise projectors summarise whole columns). See
:mod:`unifygeo_ros.model.branches` for what the mask does inside the network.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..types import Intrinsics
from .camera import level_to_camera, panorama_directions, project


def camera_to_panorama(image: np.ndarray, intrinsics: Intrinsics, pano_size: tuple[int, int],
                       axis_offset_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0):
    """Return ``(panorama, column_mask)`` for an image of the camera ``intrinsics`` (its size
    must be the image's): an ``H x W x C`` array of ``image``'s dtype with zeros where the
    camera sees nothing, and a float32 ``(W,)`` mask in {0, 1}."""
    pano, inside = place_camera(image, intrinsics, pano_size, axis_offset_deg, pitch_deg, roll_deg)
    return pano, inside.any(axis=0).astype(np.float32)


def place_camera(image: np.ndarray, intrinsics: Intrinsics, pano_size: tuple[int, int],
                 axis_offset_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0):
    """:func:`camera_to_panorama` with the pixel-wise coverage instead of the column mask:
    ``(panorama, inside)``, ``inside`` an ``H x W`` bool array of the panorama pixels the
    camera sees."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"camera image: expected an H x W x 3 array, got shape {image.shape}")
    h, w = image.shape[:2]
    if (w, h) != (intrinsics.width, intrinsics.height):
        raise ValueError(f"camera image: {w} x {h} pixels, but the intrinsics are for "
                         f"{intrinsics.width} x {intrinsics.height}")
    dirs, _ = panorama_directions(pano_size, axis_offset_deg)
    rot = level_to_camera(pitch_deg, roll_deg)
    cam = np.einsum("ij,jhw->ihw", rot, dirs)
    u, v, seen = project(cam, intrinsics)
    inside = seen & (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)
    u = np.where(inside, u, -10.0).astype(np.float32)      # cv2.remap: pixel centres at integers
    v = np.where(inside, v, -10.0).astype(np.float32)
    pano = cv2.remap(image, u, v, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    pano[~inside] = 0
    return pano, inside


def pinhole_to_panorama(image: np.ndarray, hfov_deg: float, pano_size: tuple[int, int],
                        axis_offset_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0):
    """:func:`camera_to_panorama` for the idealised pinhole of horizontal field of view
    ``hfov_deg`` (square pixels, principal point at the image centre, no distortion:
    :meth:`Intrinsics.ideal`)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"pinhole image: expected an H x W x 3 array, got shape {image.shape}")
    if not 1.0 <= hfov_deg < 180.0:
        raise ValueError(f"pinhole field of view: expected 1 <= hfov < 180 degrees, got {hfov_deg}")
    h, w = image.shape[:2]
    return camera_to_panorama(image, Intrinsics.ideal(w, h, hfov_deg), pano_size, axis_offset_deg, pitch_deg,
                              roll_deg)
