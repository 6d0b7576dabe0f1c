"""REP-103 yaw vs compass bearing, panorama columns, and the map frame's geodesy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Geod

from unifygeo_ros.conventions import (angle_diff_deg, bearing_to_panorama_column, compass_to_enu_yaw,
                                      elevation_to_panorama_row, enu_yaw_to_compass,
                                      panorama_column_to_bearing, panorama_row_to_elevation,
                                      rotate_panorama, wrap_deg_180)
from unifygeo_ros.geo import MapFrame, enu_offset_m, latlon_from_enu_offset, utm_epsg


@pytest.mark.parametrize("bearing,yaw", [(0, 90), (90, 0), (180, -90), (270, 180), (45, 45), (315, 135)])
def test_compass_bearing_and_enu_yaw(bearing, yaw):
    assert compass_to_enu_yaw(bearing) == pytest.approx(yaw)
    assert enu_yaw_to_compass(yaw) == pytest.approx(bearing % 360)


def test_wrapping_and_differences():
    assert wrap_deg_180(190.0) == pytest.approx(-170.0)
    assert wrap_deg_180(-180.0) == pytest.approx(180.0)
    assert angle_diff_deg(10.0, 350.0) == pytest.approx(20.0)
    np.testing.assert_allclose(wrap_deg_180(np.array([540.0, -541.0])), [180.0, 179.0])


def test_panorama_columns_and_rows():
    w, h = 512, 256
    assert panorama_column_to_bearing(w / 2, w) == pytest.approx(0.0)           # north at the centre
    assert panorama_column_to_bearing(w * 3 / 4, w) == pytest.approx(90.0)      # east to the right
    assert panorama_column_to_bearing(0.0, w, forward_bearing_deg=30.0) == pytest.approx(210.0)
    for b in (0.0, 13.0, 181.0, 359.0):
        assert panorama_column_to_bearing(bearing_to_panorama_column(b, w, 25.0), w, 25.0) == pytest.approx(b)
    assert panorama_row_to_elevation(h / 2, h) == pytest.approx(0.0)
    assert panorama_row_to_elevation(0, h) == pytest.approx(90.0)
    assert elevation_to_panorama_row(-45.0, h) == pytest.approx(h * 0.75)


def test_rotate_panorama_turns_the_camera_clockwise():
    w = 360
    pano = np.tile(np.arange(w, dtype=np.float64)[None, :, None], (4, 1, 3))   # column = its index
    turned = rotate_panorama(pano, 90.0)
    # The new centre column shows what the old one showed at bearing +90 (east).
    assert turned[0, w // 2, 0] == pano[0, w // 2 + 90, 0]
    half = rotate_panorama(pano, 0.5)
    assert half[0, 10, 0] == pytest.approx(10.5)
    ints = np.tile(np.arange(w, dtype=np.uint8)[None, :, None], (2, 1, 3))
    assert rotate_panorama(ints, 1.0).dtype == np.uint8


def test_utm_zone_and_map_frame_roundtrip():
    assert utm_epsg(33.75, -84.39) == 32616
    assert utm_epsg(-33.9, 151.2) == 32756
    with pytest.raises(ValueError, match="outside the UTM range"):
        utm_epsg(85.0, 0.0)
    frame = MapFrame.utm_at(41.88, -87.63)
    x, y = frame.from_latlon(41.881, -87.628)
    lat, lon = frame.to_latlon(x, y)
    assert (lat, lon) == (pytest.approx(41.881, abs=1e-9), pytest.approx(-87.628, abs=1e-9))
    assert frame.to_latlon(0.0, 0.0)[0] == pytest.approx(41.88, abs=1e-9)
    assert 0.999 < frame.scale_factor() < 1.001


def test_meridian_convergence_sign_matches_the_ellipsoid():
    """Walk 200 m due (true) north on the ellipsoid: in the grid that walk has bearing -gamma."""
    frame = MapFrame.utm_at(33.75, -84.39)          # east of zone 16's central meridian: gamma > 0
    gamma = frame.convergence_deg()
    lon2, lat2, _ = Geod(ellps="WGS84").fwd(-84.39, 33.75, 0.0, 200.0)
    x, y = frame.from_latlon(lat2, lon2)
    grid_bearing = math.degrees(math.atan2(x, y))
    assert gamma > 1.0
    assert grid_bearing == pytest.approx(-gamma, abs=1e-3)
    assert angle_diff_deg(frame.grid_to_true_bearing(grid_bearing), 0.0) == pytest.approx(0.0, abs=1e-3)
    assert float(frame.true_to_grid_bearing(0.0)) == pytest.approx(360.0 - gamma, abs=1e-6)


def test_local_enu_offsets_match_geodesics():
    lat0, lon0 = 41.877971796211014, -87.68943505304125
    east, north = enu_offset_m(lat0, lon0, 41.877949, -87.689396)
    az, _, dist = Geod(ellps="WGS84").inv(lon0, lat0, -87.689396, 41.877949)
    assert math.hypot(east, north) == pytest.approx(dist, abs=1e-3)
    assert math.degrees(math.atan2(east, north)) == pytest.approx(az, abs=0.01)
    lat, lon = latlon_from_enu_offset(lat0, lon0, east, north)
    assert (lat, lon) == (pytest.approx(41.877949, abs=1e-10), pytest.approx(-87.689396, abs=1e-10))
