"""Geometry of the synthetic-city renderers: panoramas, pinholes and orthophotos agree with
analytic predictions and with each other."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from unifygeo_ros.conventions import (bearing_to_panorama_column, compass_to_enu_yaw, elevation_to_panorama_row,
                                      rotate_panorama)
from unifygeo_ros.sim import _raster, render
from unifygeo_ros.sim.world import Tree, box_building, city_from_primitives, generate_city

CAM = np.array([100.0, 100.0])
CAM_H = 2.2
TOWER_H = 30.0
RED = dict(facade_colour=(220, 40, 40), roof_colour=(250, 0, 250), window_width=0.0)


@pytest.fixture(scope="module")
def tower_city():
    """One 10 x 10 x 30 m tower whose west wall is 25 m east of the camera."""
    return city_from_primitives(200.0, 48.1, 11.5, buildings=[box_building((130.0, 100.0), 10.0, 10.0, TOWER_H, **RED)])


@pytest.fixture(scope="module")
def turned_tower_city():
    """A tower turned by 30 degrees, north-east of the camera (not on a cardinal direction)."""
    centre = CAM + 45.0 * np.array([math.sin(math.radians(37.0)), math.cos(math.radians(37.0))])
    return city_from_primitives(200.0, 48.1, 11.5,
                                buildings=[box_building(centre, 12.0, 8.0, 22.0, yaw_deg=30.0, **RED)])


@pytest.fixture(scope="module")
def town():
    return generate_city(5, 260.0, 47.37, 8.54, "default")


def _red(img):
    return (img[..., 0].astype(int) - img[..., 1].astype(int)) > 40


def _silhouette(poly, cam, bearing_deg, height):
    """Independent reference: nearest wall hit of a ray (2-D, brute force) and its elevations."""
    d = np.array([math.sin(math.radians(bearing_deg)), math.cos(math.radians(bearing_deg))])
    best = math.inf
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        w = b - a
        den = d[0] * w[1] - d[1] * w[0]
        if abs(den) < 1e-12:
            continue
        ap = a - cam
        t = (ap[0] * w[1] - ap[1] * w[0]) / den
        s = (ap[0] * d[1] - ap[1] * d[0]) / den
        if t > 0 and 0 <= s <= 1:
            best = min(best, t)
    if not math.isfinite(best):
        return None
    return math.degrees(math.atan2(height - CAM_H, best)), math.degrees(math.atan2(-CAM_H, best))


def _check_silhouette(pano, poly, height, forward_bearing):
    h, w = pano.shape[:2]
    red = _red(pano)
    checked = 0
    for u in range(w):
        bearing = forward_bearing + ((u + 0.5) / w - 0.5) * 360.0
        ref = _silhouette(poly, CAM, bearing, height)
        # columns whose ray passes within half a column of a corner are ambiguous
        nearby = [_silhouette(poly, CAM, bearing + k * 180.0 / w, height) is None for k in (-1, 1)]
        if ref is None:
            if not any(n is False for n in nearby):
                assert not red[: h // 2, u].any(), f"column {u} shows the tower but should not"
            continue
        if any(nearby):
            continue
        rows = np.nonzero(red[:, u])[0]
        assert len(rows), f"column {u} misses the tower"
        top_row = math.ceil(elevation_to_panorama_row(ref[0], h) - 0.5)
        bottom_row = math.ceil(elevation_to_panorama_row(ref[1], h) - 0.5) - 1
        assert abs(rows.min() - top_row) <= 1, (u, rows.min(), top_row)
        assert abs(rows.max() - bottom_row) <= 1, (u, rows.max(), bottom_row)
        checked += 1
    return checked


def test_lone_tower_column_and_top_elevation(tower_city):
    w, h = 720, 360
    pano = render.render_panorama(tower_city, CAM, 90.0, w, h, CAM_H)  # yaw 90: north-aligned
    red = _red(pano)
    cols = np.nonzero(red.any(axis=0))[0]
    half = math.degrees(math.atan2(5.0, 25.0))
    lo, hi = bearing_to_panorama_column(90.0 - half, w), bearing_to_panorama_column(90.0 + half, w)
    assert abs(cols.min() - math.ceil(lo - 0.5)) <= 1 and abs(cols.max() - math.floor(hi - 0.5)) <= 1
    # the column looking due east: the wall 25 m away, top at atan(27.8 / 25)
    u = int(bearing_to_panorama_column(90.0, w))
    top = math.degrees(math.atan2(TOWER_H - CAM_H, 25.0))
    assert abs(np.nonzero(red[:, u])[0].min() - (elevation_to_panorama_row(top, h) - 0.5)) <= 1.0
    assert _check_silhouette(pano, tower_tower_poly(tower_city), TOWER_H, 0.0) > 30


def tower_tower_poly(city):
    return city.buildings[0].footprint


def test_turned_tower_any_heading(turned_tower_city):
    w, h = 1024, 512
    forward = 200.0
    pano = render.render_panorama(turned_tower_city, CAM, compass_to_enu_yaw(forward), w, h, CAM_H)
    b = turned_tower_city.buildings[0]
    assert _check_silhouette(pano, b.footprint, b.height, forward) > 20


def test_tower_in_orthophoto(tower_city):
    size, mpp, up = (300, 360), 0.2, 30.0
    centre = (118.0, 106.0)
    img = render.render_ortho(tower_city, centre, size, mpp, up)
    roof = (img[..., 0].astype(int) - img[..., 1] > 60) & (img[..., 2].astype(int) - img[..., 1] > 60)
    fp = tower_city.buildings[0].footprint
    rows, cols = render.local_to_ortho_pixel(fp[:, 0], fp[:, 1], centre, size, mpp, up)
    poly = np.stack([cols, rows], axis=1)  # continuous image coordinates (x = col, y = row)
    rr, cc = np.mgrid[0:size[0], 0:size[1]]
    centres = np.stack([cc.ravel() + 0.5, rr.ravel() + 0.5], axis=1).astype(np.float32)
    signed = np.array([cv2.pointPolygonTest(poly.astype(np.float32).reshape(-1, 1, 2), tuple(map(float, c)), True)
                       for c in centres]).reshape(size)
    assert roof[signed > 1.0].all()
    assert not roof[signed < -1.0].any()
    r, c = render.local_to_ortho_pixel(130.0, 100.0, centre, size, mpp, up)
    ys, xs = np.nonzero(roof)
    assert abs(ys.mean() + 0.5 - r) < 0.5 and abs(xs.mean() + 0.5 - c) < 0.5


def test_ortho_pixel_helpers_are_exact_inverses():
    centre, size, mpp = (37.5, -12.25), (120, 200), 0.114
    for up in (0.0, -1.7, 90.0, 233.0):
        r = np.array([0.5, 10.25, 119.5])
        c = np.array([0.5, 77.0, 199.5])
        x, y = render.ortho_pixel_to_local(r, c, centre, size, mpp, up)
        r2, c2 = render.local_to_ortho_pixel(x, y, centre, size, mpp, up)
        assert np.allclose(r, r2, atol=1e-9) and np.allclose(c, c2, atol=1e-9)
    # north up: the image centre is the tile centre, column grows east, row grows south
    x, y = render.ortho_pixel_to_local(60.0, 100.0, centre, size, mpp)
    assert (x, y) == pytest.approx(centre)
    x, y = render.ortho_pixel_to_local(60.0, 101.0, centre, size, mpp)
    assert (x, y) == pytest.approx((centre[0] + mpp, centre[1]))
    x, y = render.ortho_pixel_to_local(61.0, 100.0, centre, size, mpp, 90.0)  # east up: down is west
    assert (x, y) == pytest.approx((centre[0] - mpp, centre[1]))


def test_ortho_rotation_matches_rotated_image(town):
    centre = (130.0, 125.0)
    north = render.render_ortho(town, centre, 256, 0.15, 0.0)
    east_up = render.render_ortho(town, centre, 256, 0.15, 90.0)
    diff = np.abs(east_up.astype(int) - np.rot90(north).astype(int))
    assert diff.max() <= 3
    assert np.abs(north.astype(int) - east_up.astype(int)).mean() > 5  # the scene is not rotation invariant


def test_heading_rolls_the_panorama(town):
    w, h = 256, 128
    xy = town.street_positions(1, np.random.default_rng(3))[0]
    north = render.render_panorama(town, xy, 90.0, w, h)
    exact = 45.0  # 32 columns
    turned = render.render_panorama(town, xy, compass_to_enu_yaw(exact), w, h)
    assert np.array_equal(rotate_panorama(north, exact), turned)
    odd = 37.3
    turned = render.render_panorama(town, xy, compass_to_enu_yaw(odd), w, h)
    diff = np.abs(rotate_panorama(north, odd).astype(int) - turned.astype(int)).max(axis=2)
    assert np.median(diff) <= 3
    assert np.mean(diff <= 40) > 0.95
    wrong = np.abs(rotate_panorama(north, odd + 10.0).astype(int) - turned.astype(int)).max(axis=2)
    assert np.mean(wrong <= 40) < np.mean(diff <= 40) - 0.05


def _pinhole_from_pano(pano, pano_forward, yaw_deg, hfov_deg, width, height, pitch_deg=0.0):
    """Reproject an equirectangular panorama (forward bearing ``pano_forward``) into a pinhole view
    (bilinear), written independently of the renderer from the documented camera model."""
    ph, pw = pano.shape[:2]
    f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
    xc = np.arange(width) + 0.5 - 0.5 * width
    yc = np.arange(height) + 0.5 - 0.5 * height
    gx, gy = np.meshgrid(xc, yc)
    p = math.radians(pitch_deg)
    # (right, forward, up) components of f * forward + x * right - y * up
    dx = gx
    dy = f * math.cos(p) + gy * math.sin(p)
    dz = f * math.sin(p) - gy * math.cos(p)
    rel = np.degrees(np.arctan2(dx, dy))
    el = np.degrees(np.arctan2(dz, np.hypot(dx, dy)))
    forward = 90.0 - yaw_deg
    col = bearing_to_panorama_column(forward + rel, pw, pano_forward) - 0.5
    row = elevation_to_panorama_row(el, ph) - 0.5
    wrapped = np.concatenate([pano, pano[:, :2]], axis=1)
    return cv2.remap(wrapped, col.astype(np.float32), row.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def test_pinhole_agrees_with_reprojected_panorama(town):
    xy = town.street_positions(1, np.random.default_rng(11))[0]
    yaw, hfov, w, h = 23.0, 80.0, 320, 240
    pano = render.render_panorama(town, xy, 0.0, 2048, 1024)  # yaw 0: east at the centre column
    pin = render.render_pinhole(town, xy, yaw, hfov, w, h)
    diff = np.abs(pin.astype(int) - _pinhole_from_pano(pano, 90.0, yaw, hfov, w, h).astype(int)).max(axis=2)
    assert np.median(diff) <= 6
    assert np.mean(diff <= 30) > 0.9
    off = np.abs(pin.astype(int) - _pinhole_from_pano(pano, 90.0, yaw + 8.0, hfov, w, h).astype(int)).max(axis=2)
    assert np.mean(off <= 30) < np.mean(diff <= 30) - 0.1


def test_pitched_pinhole_agrees_with_reprojected_panorama(town):
    xy = town.street_positions(1, np.random.default_rng(12))[0]
    yaw, hfov, w, h, pitch = -70.0, 70.0, 240, 180, 25.0
    pano = render.render_panorama(town, xy, 90.0, 2048, 1024)
    pin = render.render_pinhole(town, xy, yaw, hfov, w, h, pitch_deg=pitch)
    diff = np.abs(pin.astype(int) - _pinhole_from_pano(pano, 0.0, yaw, hfov, w, h, pitch).astype(int)).max(axis=2)
    assert np.median(diff) <= 6
    assert np.mean(diff <= 30) > 0.9
    level = np.abs(pin.astype(int) - _pinhole_from_pano(pano, 0.0, yaw, hfov, w, h, 0.0).astype(int)).max(axis=2)
    assert np.mean(level <= 30) < np.mean(diff <= 30) - 0.1


def test_shadows_agree_from_above_and_from_the_street(tower_city):
    style = tower_city.style
    az, el = math.radians(style.sun_azimuth_deg), math.radians(style.sun_elevation_deg)
    away = -np.array([math.sin(az), math.cos(az)]) * TOWER_H / math.tan(el)  # shadow tip offset
    centre = np.array([130.0, 100.0])
    shaded, lit = centre + 0.6 * away, centre - 0.6 * away
    assert _raster.sun_shadow(tower_city).lit(*shaded, 0.0) == 0.0
    assert _raster.sun_shadow(tower_city).lit(*lit, 0.0) == 1.0
    tile = render.render_ortho(tower_city, centre, 400, 0.2)

    def ortho_at(p):
        r, c = render.local_to_ortho_pixel(p[0], p[1], centre, 400, 0.2)
        return tile[int(r) - 1:int(r) + 2, int(c) - 1:int(c) + 2].mean()

    assert ortho_at(shaded) < 0.7 * ortho_at(lit)
    w, h = 2048, 1024
    pano = render.render_panorama(tower_city, CAM, 90.0, w, h, CAM_H)

    def pano_at(p):
        d = p - CAM
        bearing = math.degrees(math.atan2(d[0], d[1]))
        elev = math.degrees(math.atan2(-CAM_H, np.hypot(*d)))
        u, v = int(bearing_to_panorama_column(bearing, w)), int(elevation_to_panorama_row(elev, h))
        return pano[v - 1:v + 2, u - 1:u + 2].mean()

    assert pano_at(shaded) < 0.7 * pano_at(lit)
    ratio_aerial = ortho_at(shaded) / ortho_at(lit)
    ratio_street = pano_at(shaded) / pano_at(lit)
    assert abs(ratio_aerial - ratio_street) < 0.15


def test_crown_occludes_and_is_occluded():
    """A tree in front of a tower hides part of it; the tower hides a tree behind it."""
    tower = box_building((140.0, 100.0), 10.0, 30.0, 25.0, **RED)
    front = Tree(x=115.0, y=100.0, trunk_radius=0.3, crown_z=7.0, crown_radius=3.0, crown_half_height=3.0,
                 colour=(20, 200, 20), trunk_colour=(80, 60, 40))
    behind = Tree(x=160.0, y=100.0, trunk_radius=0.3, crown_z=8.0, crown_radius=3.0, crown_half_height=3.0,
                  colour=(230, 230, 20), trunk_colour=(80, 60, 40))
    city = city_from_primitives(200.0, buildings=[tower], trees=[front, behind])
    w, h = 1440, 720
    pano = render.render_panorama(city, CAM, 90.0, w, h, CAM_H).astype(int)
    green = (pano[..., 1] - pano[..., 0] > 60) & (pano[..., 1] - pano[..., 2] > 60)
    yellow = (pano[..., 0] - pano[..., 2] > 80) & (pano[..., 1] - pano[..., 2] > 80)
    assert not yellow.any()
    u = int(bearing_to_panorama_column(90.0, w))
    # crown of the front tree: ellipsoid centred 15 m away at 7 m height, 3 m radii; the top of
    # its silhouette is where a ray from the camera grazes it (solved here by bisection)
    def hits(el):
        k = math.tan(el)  # (t - 15)^2 / 9 + (2.2 + k t - 7)^2 / 9 = 1 has a root
        a, b, c = 1 + k * k, -30 + 2 * k * (CAM_H - 7.0), 225 + (CAM_H - 7.0) ** 2 - 9
        return b * b - 4 * a * c >= 0

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if hits(mid) else (lo, mid)
    rows = np.nonzero(green[:, u])[0]
    assert len(rows) and abs(elevation_to_panorama_row(math.degrees(lo), h) - 0.5 - rows.min()) <= 1.0
    beside = int(bearing_to_panorama_column(92.5, w))  # next to the trunk, still under the crown
    rows = np.nonzero(green[:, beside])[0]
    assert _red(pano.astype(np.uint8))[rows.max() + 2:, beside].any()  # tower visible below the crown
    assert not _red(pano.astype(np.uint8))[rows.min() + 2:rows.max() - 1, beside].any()  # and hidden by it
