"""Aerial and street-level renderers of a :class:`~unifygeo_ros.sim.scene.City`.

All images are ``uint8`` RGB arrays, ``H x W x 3``.

Orthophoto tiles (:func:`render_ortho`)
    Pixel ``(r, c)`` covers the continuous image square ``[c, c + 1) x [r, r + 1)`` and its
    centre is ``(c + 0.5, r + 0.5)``; the image centre ``(W / 2, H / 2)`` is the tile's
    ``center_xy``. The image's *up* points to grid bearing ``up_bearing_deg`` and its right
    to ``up_bearing_deg + 90``. :func:`ortho_pixel_to_local` and
    :func:`local_to_ortho_pixel` convert exactly between continuous image coordinates
    ``(row, col)`` and local metres.

Panoramas (:func:`render_panorama`)
    Equirectangular, full sphere, as :mod:`unifygeo_ros.conventions`: column ``u`` looks
    at compass bearing ``forward + ((u + 0.5) / W - 0.5) * 360`` and row ``v`` at
    elevation ``90 - 180 (v + 0.5) / H``; ``forward = enu_yaw_to_compass(yaw_deg)`` (grid).

Pinhole views (:func:`render_pinhole`)
    Square pixels, principal point at the image centre ``(W / 2, H / 2)``, focal length
    ``f = (W / 2) / tan(hfov / 2)`` pixels; no roll. Pixel ``(r, c)`` looks along
    ``f * forward + (c + 0.5 - W / 2) * right - (r + 0.5 - H / 2) * up``.

Street-level images are ray cast analytically against the same primitives the
orthophoto shows: every image column is a vertical plane through the camera, so prisms
(buildings, cars) and cylinders (trunks, poles) reduce to 2-D ray intersections per
column, sorted front to back; a running maximum of the top elevation decides which
vertical interval of the column each visible surface occupies (exact occlusion, horizon
and elevation angles). Crowns are ellipsoids intersected per pixel and depth-tested.
Ground pixels are exact ground-plane hits sampled from the same shaded ground raster
(with the same cast shadows) as the orthophoto.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from unifygeo_ros.conventions import enu_yaw_to_compass
from unifygeo_ros.sim import _raster, _street
from unifygeo_ros.sim.scene import City



# --------------------------------------------------------------------------- orthophoto


def _size_hw(size_px) -> tuple[int, int]:
    if np.isscalar(size_px):
        return int(size_px), int(size_px)
    h, w = size_px
    return int(h), int(w)


def _ortho_axes(up_bearing_deg: float):
    b = math.radians(up_bearing_deg)
    up = np.array([math.sin(b), math.cos(b)])
    right = np.array([math.cos(b), -math.sin(b)])
    return up, right


def ortho_pixel_to_local(row, col, center_xy, size_px, mpp: float, up_bearing_deg: float = 0.0):
    """Local ``(x, y)`` metres of continuous image coordinates ``(row, col)`` of an ortho tile.

    Pixel ``(r, c)``'s centre is ``(row, col) = (r + 0.5, c + 0.5)``.
    """
    h, w = _size_hw(size_px)
    up, right = _ortho_axes(up_bearing_deg)
    dc = (np.asarray(col, dtype=np.float64) - 0.5 * w) * mpp
    dr = (0.5 * h - np.asarray(row, dtype=np.float64)) * mpp
    x = center_xy[0] + dc * right[0] + dr * up[0]
    y = center_xy[1] + dc * right[1] + dr * up[1]
    return x, y


def local_to_ortho_pixel(x, y, center_xy, size_px, mpp: float, up_bearing_deg: float = 0.0):
    """Continuous image coordinates ``(row, col)`` of local points (inverse of :func:`ortho_pixel_to_local`).

    The integer pixel holding a point is ``(floor(row), floor(col))``.
    """
    h, w = _size_hw(size_px)
    up, right = _ortho_axes(up_bearing_deg)
    dx = np.asarray(x, dtype=np.float64) - center_xy[0]
    dy = np.asarray(y, dtype=np.float64) - center_xy[1]
    col = 0.5 * w + (dx * right[0] + dy * right[1]) / mpp
    row = 0.5 * h - (dx * up[0] + dy * up[1]) / mpp
    return row, col


def render_ortho(city: City, center_xy, size_px, mpp: float, up_bearing_deg: float = 0.0) -> np.ndarray:
    """Orthophoto tile ``H x W x 3`` centred on local ``center_xy`` (see the module docstring).

    Resampled (bilinear) from the city's top raster level whose resolution is the finest
    not finer than ``mpp``; outside the city square shows countryside.
    """
    h, w = _size_hw(size_px)
    if h <= 0 or w <= 0 or not mpp > 0:
        raise ValueError(f"size_px must be positive and mpp > 0, got {size_px}, {mpp}")
    ras = _raster.rasters(city)
    cx, cy = ortho_pixel_to_local(np.array([0, 0, h, h]), np.array([0, w, 0, w]), center_xy, (h, w), mpp,
                                  up_bearing_deg)
    ras.ensure_box(cx.min(), cy.min(), cx.max(), cy.max())
    level = int(np.clip(math.floor(math.log2(mpp / ras.m0 + 1e-9)), 0, ras.levels - 1))
    m = ras.m0 * (1 << level)
    src = ras.top[level]
    # destination pixel index (c, r) -> local -> source (X, Y) in cv2 pixel-centre coordinates
    up, right = _ortho_axes(up_bearing_deg)
    # local = C + (c + 0.5 - w/2) mpp right + (h/2 - r - 0.5) mpp up
    ax_c = mpp * right
    ax_r = -mpp * up
    origin = np.asarray(center_xy, dtype=np.float64) + (0.5 - 0.5 * w) * mpp * right + (0.5 * h - 0.5) * mpp * up
    # X = x / m - 0.5, Y = (top_y - y) / m - 0.5
    mat = np.array([[ax_c[0] / m, ax_r[0] / m, origin[0] / m - 0.5],
                    [-ax_c[1] / m, -ax_r[1] / m, (ras.top_y - origin[1]) / m - 0.5]])
    # crop the source to the footprint (warpAffine needs sources under 32k pixels)
    xs = np.array([cx.min(), cx.max()]) / m - 0.5
    ys = (ras.top_y - np.array([cy.max(), cy.min()])) / m - 0.5
    c0 = int(np.clip(math.floor(xs[0]) - 2, 0, src.shape[1]))
    c1 = int(np.clip(math.ceil(xs[1]) + 3, 0, src.shape[1]))
    r0 = int(np.clip(math.floor(ys[0]) - 2, 0, src.shape[0]))
    r1 = int(np.clip(math.ceil(ys[1]) + 3, 0, src.shape[0]))
    border = tuple(int(v) for v in ras.countryside)
    if c1 <= c0 or r1 <= r0:
        return np.broadcast_to(ras.countryside, (h, w, 3)).copy()
    mat[0, 2] -= c0
    mat[1, 2] -= r0
    crop = np.ascontiguousarray(src[r0:r1, c0:c1])
    return cv2.warpAffine(crop, mat, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def write_orthophoto_geotiff(city: City, path, mpp: float, progress: bool = False) -> dict:
    """Write the whole city, grid-north up, as a 3-band uint8 GeoTIFF in the city's UTM CRS.

    The raster's lower-left corner is the city origin (the SW corner); it is
    ``ceil(size / mpp)`` pixels square. Returns a summary (path, size, CRS, transform).
    """
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import Affine
    from rasterio.windows import Window
    from unifygeo_ros.progress import tqdm

    if not mpp > 0:
        raise ValueError(f"mpp must be > 0, got {mpp}")
    n = int(math.ceil(city.size_m / mpp - 1e-9))
    ras = _raster.rasters(city)
    bar = tqdm(total=ras.nc * ras.nc, desc="rasterising city", unit="chunk", disable=not progress, leave=False)
    ras.ensure_all(bar.update)
    bar.close()
    epsg = city.epsg
    crs = CRS.from_epsg(epsg) if epsg else CRS.from_wkt(city.frame.crs_wkt)
    transform = Affine(mpp, 0.0, city.frame.origin_e, 0.0, -mpp, city.frame.origin_n + n * mpp)
    profile = dict(driver="GTiff", width=n, height=n, count=3, dtype="uint8", crs=crs, transform=transform,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate", photometric="RGB",
                   interleave="pixel")
    strip = 256
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in tqdm(range(0, n, strip), desc="writing orthophoto", unit="strip", disable=not progress,
                       leave=False):
            rows = min(strip, n - r0)
            centre = (0.5 * n * mpp, n * mpp - (r0 + 0.5 * rows) * mpp)
            img = render_ortho(city, centre, (rows, n), mpp)
            dst.write(img.transpose(2, 0, 1), window=Window(0, r0, n, rows))
    return {"path": str(path), "width": n, "height": n, "mpp": mpp, "epsg": epsg,
            "transform": list(transform)[:6]}


# --------------------------------------------------------------------------- public street-level renderers


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_panorama(city: City, xy, yaw_deg: float, width: int, height: int,
                    camera_height_m: float = 2.2) -> np.ndarray:
    """Equirectangular panorama (``height x width x 3``) from local ``xy`` at ``camera_height_m``.

    ``yaw_deg`` is the ENU yaw (grid) of the camera's forward direction, shown at the
    centre column: the forward compass bearing is ``90 - yaw_deg``; ``yaw_deg = 90`` gives
    a north-aligned panorama.
    """
    width, height = int(width), int(height)
    if width < 4 or height < 2:
        raise ValueError(f"panorama must be at least 4 x 2 pixels, got {width} x {height}")
    forward = float(enu_yaw_to_compass(yaw_deg))
    grid = _street.pano_grid(width, height)
    u = np.arange(width, dtype=np.float64)
    # computed so that a forward bearing of k * 360 / W gives bit-identical rays to column u + k
    col_bearing = (u + 0.5 + forward * width / 360.0) * (360.0 / width) - 180.0
    rays = grid.turned(forward, col_bearing)
    colours = _street.cast(city, xy, camera_height_m, rays)
    return _to_u8(colours.reshape(width, height, 3).transpose(1, 0, 2))


def render_pinhole(city: City, xy, yaw_deg: float, hfov_deg: float, width: int, height: int,
                   camera_height_m: float = 2.2, pitch_deg: float = 0.0) -> np.ndarray:
    """Pinhole view (``height x width x 3``), horizontal field of view ``hfov_deg``.

    ``yaw_deg``: ENU yaw (grid) of the optical axis; ``pitch_deg``: up positive. With
    zero pitch every image column is exactly one vertical ray plane; with non-zero pitch
    pixel azimuths are quantised to 1/8 of a pixel.
    """
    width, height = int(width), int(height)
    if not 1.0 <= hfov_deg < 179.0:
        raise ValueError(f"hfov_deg must be in [1, 179), got {hfov_deg}")
    if width < 2 or height < 2:
        raise ValueError("pinhole image must be at least 2 x 2 pixels")
    forward = float(enu_yaw_to_compass(yaw_deg))
    f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
    xc = np.arange(width, dtype=np.float64) + 0.5 - 0.5 * width
    yc = np.arange(height, dtype=np.float64) + 0.5 - 0.5 * height
    pix_angle = math.radians(hfov_deg) / width
    if abs(pitch_deg) < 1e-12:
        col_rel = np.degrees(np.arctan2(xc, f))
        el = np.arctan2(-yc[None, :], np.hypot(f, xc)[:, None])  # (W, H)
        rays = _street.Rays(forward=forward, col_rel=col_rel, col_bearing=forward + col_rel,
                     pix_col=np.repeat(np.arange(width), height), pix_el=el.ravel(), pix_angle=pix_angle)
        colours = _street.cast(city, xy, camera_height_m, rays)
        return _to_u8(colours.reshape(width, height, 3).transpose(1, 0, 2))
    pt = math.radians(pitch_deg)
    # camera axes in a frame whose y axis is the forward bearing: (right, forward, up)
    fwd = np.array([0.0, math.cos(pt), math.sin(pt)])
    up = np.array([0.0, -math.sin(pt), math.cos(pt)])
    right = np.array([1.0, 0.0, 0.0])
    gx, gy = np.meshgrid(xc, yc)  # (H, W)
    d = f * fwd[None, None] + gx[..., None] * right - gy[..., None] * up
    rel = np.degrees(np.arctan2(d[..., 0], d[..., 1]))
    el = np.arctan2(d[..., 2], np.hypot(d[..., 0], d[..., 1]))
    step = math.degrees(pix_angle) / 8.0
    qcol = np.rint(rel / step).astype(np.int64)
    uniq, inv = np.unique(qcol.ravel(), return_inverse=True)
    order = np.lexsort((-el.ravel(), inv))
    col_rel = uniq * step
    rays = _street.Rays(forward=forward, col_rel=col_rel, col_bearing=forward + col_rel, pix_col=inv[order],
                 pix_el=el.ravel()[order], pix_angle=pix_angle)
    colours = np.empty((height * width, 3), np.float32)
    colours[order] = _street.cast(city, xy, camera_height_m, rays)
    return _to_u8(colours.reshape(height, width, 3))
