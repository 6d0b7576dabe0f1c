"""Contact sheet of one camera in a city: aerial tile, pinhole view and panorama."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from unifygeo_ros.conventions import enu_yaw_to_compass
from unifygeo_ros.sim import render
from unifygeo_ros.sim.scene import City

BG = (32, 34, 38)
FG = (235, 235, 235)
MARK = (230, 40, 40)


@dataclass
class PreviewSpec:
    """Camera and image sizes of a contact sheet (local metres, ENU yaw in degrees)."""

    xy: tuple[float, float]
    yaw_deg: float
    camera_height_m: float = 2.2
    tile_px: int = 512
    tile_mpp: float = 0.15
    pano_size: tuple[int, int] = (1024, 512)  # width, height
    pinhole_size: tuple[int, int] = (512, 384)
    hfov_deg: float = 90.0


def random_spec(city: City, rng: np.random.Generator) -> PreviewSpec:
    """A random street camera position and heading."""
    margin = min(40.0, 0.2 * city.size_m)
    xy = city.street_positions(1, rng, min_clearance_m=1.5, margin_m=margin)[0]
    return PreviewSpec(xy=(float(xy[0]), float(xy[1])), yaw_deg=float(rng.uniform(-180.0, 180.0)))


def _label(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5) -> None:
    # The outline is the same-weight text shifted around (OpenCV 5's bold glyphs are wider
    # than its regular ones, so a thick outline would stick out past the text).
    for dx, dy in ((-1, -1), (-1, 1), (1, -1), (1, 1), (0, 2), (2, 0)):
        cv2.putText(img, text, (org[0] + dx, org[1] + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, FG, 1, cv2.LINE_AA)


def _mark_camera(tile: np.ndarray, spec: PreviewSpec) -> np.ndarray:
    """Camera dot, heading arrow, pinhole field-of-view wedge and a north arrow on a north-up tile."""
    img = tile.copy()
    h, w = img.shape[:2]
    row, col = render.local_to_ortho_pixel(spec.xy[0], spec.xy[1], spec.xy, (h, w), spec.tile_mpp)
    centre = np.array([col, row])
    bearing = float(enu_yaw_to_compass(spec.yaw_deg))

    def towards(b_deg: float, length: float) -> tuple[int, int]:
        b = math.radians(b_deg)
        q = centre + length * np.array([math.sin(b), -math.cos(b)])
        return int(round(q[0])), int(round(q[1]))

    c = (int(round(centre[0])), int(round(centre[1])))
    for side in (-1, 1):
        cv2.line(img, c, towards(bearing + side * 0.5 * spec.hfov_deg, 0.3 * w), (255, 220, 60), 1, cv2.LINE_AA)
    cv2.arrowedLine(img, c, towards(bearing, 0.12 * w), MARK, 2, cv2.LINE_AA, tipLength=0.3)
    cv2.circle(img, c, 5, MARK, -1, cv2.LINE_AA)
    cv2.circle(img, c, 6, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.arrowedLine(img, (w - 24, 50), (w - 24, 18), FG, 2, cv2.LINE_AA, tipLength=0.35)
    _label(img, "N", (w - 30, 66))
    return img


def contact_sheet(city: City, spec: PreviewSpec) -> np.ndarray:
    """RGB contact sheet: north-up aerial tile (camera marked) and pinhole on top, panorama below."""
    tile = render.render_ortho(city, spec.xy, spec.tile_px, spec.tile_mpp)
    tile = _mark_camera(tile, spec)
    pw, ph = spec.pinhole_size
    pin = render.render_pinhole(city, spec.xy, spec.yaw_deg, spec.hfov_deg, pw, ph, spec.camera_height_m)
    aw, ah = spec.pano_size
    pano = render.render_panorama(city, spec.xy, spec.yaw_deg, aw, ah, spec.camera_height_m)
    gap, head = 8, 26
    width = max(spec.tile_px + gap + pw, aw) + 2 * gap
    height = head + max(spec.tile_px, ph) + gap + head + ah + gap
    sheet = np.empty((height, width, 3), np.uint8)
    sheet[:] = BG
    y0 = head
    sheet[y0:y0 + spec.tile_px, gap:gap + spec.tile_px] = tile
    x1 = gap + spec.tile_px + gap
    sheet[y0:y0 + ph, x1:x1 + pw] = pin
    y1 = y0 + max(spec.tile_px, ph) + gap + head
    sheet[y1:y1 + ah, gap:gap + aw] = pano
    bearing = float(enu_yaw_to_compass(spec.yaw_deg))
    _label(sheet, f"aerial {spec.tile_mpp:g} m/px, grid north up  |  camera x={spec.xy[0]:.1f} y={spec.xy[1]:.1f} m",
           (gap, 18))
    _label(sheet, f"pinhole hfov {spec.hfov_deg:g} deg, yaw {spec.yaw_deg:.1f} (bearing {bearing:.1f})", (x1, 18))
    _label(sheet, f"panorama {aw}x{ah}, centre column = forward bearing {bearing:.1f} deg, "
                  f"camera {spec.camera_height_m:g} m", (gap, y1 - 8))
    return sheet


def write_png(path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")
