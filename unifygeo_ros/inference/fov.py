"""Limited field of view: place a pinhole image in the panorama frame.

The ground branch only understands equirectangular panoramas (``conventions.py``). A
pinhole image with horizontal field of view ``hfov`` (square pixels, principal point at
the centre, optical axis level unless ``pitch_deg`` is given) is resampled into an empty
panorama of the model's size: every panorama pixel looks along its bearing and
elevation, and takes the pinhole pixel seen in that direction when there is one. The
camera's optical axis lands at bearing ``axis_offset_deg`` relative to the panorama's
forward direction (0: the centre column). The column mask marks the panorama columns
whose bearing lies inside the horizontal field of view; rows above and below the
pinhole's vertical field of view stay empty but are not masked (the column-wise
projectors summarise whole columns). See :mod:`unifygeo_ros.model.branches` for what
the mask does inside the network.
"""

from __future__ import annotations

import cv2
import numpy as np


def pinhole_to_panorama(image: np.ndarray, hfov_deg: float, pano_size: tuple[int, int],
                        axis_offset_deg: float = 0.0, pitch_deg: float = 0.0):
    """Return ``(panorama, column_mask)``: an ``H x W x C`` array of ``image``'s dtype with
    zeros where the pinhole sees nothing, and a float32 ``(W,)`` mask in {0, 1}."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"pinhole image: expected an H x W x 3 array, got shape {image.shape}")
    if not 1.0 <= hfov_deg < 180.0:
        raise ValueError(f"pinhole field of view: expected 1 <= hfov < 180 degrees, got {hfov_deg}")
    ph, pw = pano_size
    h, w = image.shape[:2]
    fx = (w / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    xs = (np.arange(pw) + 0.5) / pw
    ys = (np.arange(ph) + 0.5) / ph
    theta = np.radians((xs - 0.5) * 360.0 - axis_offset_deg)[None, :]      # bearing from the axis
    phi = np.radians(90.0 - ys * 180.0)[:, None]                          # elevation
    # Direction in camera coordinates (x right, y down, z forward), then pitch about x.
    dx = np.sin(theta) * np.cos(phi)
    dy = -np.sin(phi) * np.ones_like(theta)
    dz = np.cos(theta) * np.cos(phi)
    p = np.radians(pitch_deg)
    dy, dz = np.cos(p) * dy + np.sin(p) * dz, -np.sin(p) * dy + np.cos(p) * dz
    ahead = dz > 1e-6
    safe = np.where(ahead, dz, 1.0)
    u = fx * dx / safe + w / 2.0 - 0.5          # cv2.remap: pixel centres at integers
    v = fx * dy / safe + h / 2.0 - 0.5
    inside = ahead & (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)
    u = np.where(inside, u, -10.0).astype(np.float32)
    v = np.where(inside, v, -10.0).astype(np.float32)
    pano = cv2.remap(image, u, v, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    pano[~inside] = 0
    half = np.radians(hfov_deg) / 2.0
    rel = np.angle(np.exp(1j * theta[0]))        # wrap to (-pi, pi]
    column_mask = (np.abs(rel) <= half).astype(np.float32)
    return pano, column_mask
