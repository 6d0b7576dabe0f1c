"""Geodesy: UTM map frames, latitude/longitude and the grid-north / true-north offset.

A *map frame* here is a projected CRS (normally the UTM zone of an origin) plus an
origin ``(E0, N0)`` in that CRS; local coordinates are ``x = E - E0`` (east) and
``y = N - N0`` (north) in metres. Yaw measured in the map frame is relative to *grid*
east. Grid north differs from true north by the meridian convergence ``gamma``:
``bearing_true = bearing_grid + gamma`` (``gamma`` > 0 east of the central meridian in
the northern hemisphere). Use :meth:`MapFrame.grid_to_true_bearing` and friends rather
than adding angles by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from pyproj import CRS, Proj, Transformer


def utm_epsg(lat: float, lon: float) -> int:
    """EPSG code of the WGS 84 / UTM zone holding ``(lat, lon)``."""
    if not (-80.0 <= lat <= 84.0):
        raise ValueError(f"latitude {lat} is outside the UTM range [-80, 84] degrees")
    if not (-180.0 <= lon <= 180.0):
        raise ValueError(f"longitude {lon} is outside [-180, 180] degrees")
    zone = int((lon + 180.0) // 6.0) + 1
    zone = min(zone, 60)
    return (32600 if lat >= 0 else 32700) + zone


@dataclass(frozen=True)
class MapFrame:
    """A projected CRS with a local origin; see the module docstring."""

    crs_wkt: str
    origin_e: float
    origin_n: float

    @classmethod
    def utm_at(cls, lat: float, lon: float) -> "MapFrame":
        """The UTM frame whose local origin is ``(lat, lon)``."""
        crs = CRS.from_epsg(utm_epsg(lat, lon))
        e, n = Transformer.from_crs(4326, crs, always_xy=True).transform(lon, lat)
        return cls(crs.to_wkt(), float(e), float(n))

    @cached_property
    def crs(self) -> CRS:
        return CRS.from_wkt(self.crs_wkt)

    @cached_property
    def _to_lonlat(self) -> Transformer:
        return Transformer.from_crs(self.crs, 4326, always_xy=True)

    @cached_property
    def _from_lonlat(self) -> Transformer:
        return Transformer.from_crs(4326, self.crs, always_xy=True)

    def to_latlon(self, x, y):
        """Local metres -> (lat, lon) degrees (arrays or scalars)."""
        lon, lat = self._to_lonlat.transform(np.asarray(x, dtype=np.float64) + self.origin_e,
                                             np.asarray(y, dtype=np.float64) + self.origin_n)
        return lat, lon

    def from_latlon(self, lat, lon):
        """(lat, lon) degrees -> local metres (x east, y north in the grid)."""
        e, n = self._from_lonlat.transform(np.asarray(lon, dtype=np.float64),
                                           np.asarray(lat, dtype=np.float64))
        return e - self.origin_e, n - self.origin_n

    def convergence_deg(self, x=0.0, y=0.0) -> float:
        """Meridian convergence ``gamma`` at local ``(x, y)``: bearing_true - bearing_grid."""
        lat, lon = self.to_latlon(x, y)
        return float(Proj(self.crs).get_factors(float(lon), float(lat)).meridian_convergence)

    def scale_factor(self, x=0.0, y=0.0) -> float:
        """Point scale factor ``k`` of the (conformal) projection: grid metres per ground metre."""
        lat, lon = self.to_latlon(x, y)
        return float(Proj(self.crs).get_factors(float(lon), float(lat)).meridional_scale)

    def grid_to_true_bearing(self, bearing_grid_deg, x=0.0, y=0.0):
        return (np.asarray(bearing_grid_deg, dtype=np.float64) + self.convergence_deg(x, y)) % 360.0

    def true_to_grid_bearing(self, bearing_true_deg, x=0.0, y=0.0):
        return (np.asarray(bearing_true_deg, dtype=np.float64) - self.convergence_deg(x, y)) % 360.0


def _local_radii(lat0: float) -> tuple[float, float]:
    """WGS 84 meridian radius and the radius of the parallel (metres) at latitude ``lat0``."""
    a = 6378137.0
    f = 1.0 / 298.257223563
    e2 = f * (2.0 - f)
    phi = math.radians(lat0)
    w = math.sqrt(1.0 - e2 * math.sin(phi) ** 2)
    return a * (1.0 - e2) / w ** 3, a / w * math.cos(phi)


def enu_offset_m(lat0: float, lon0: float, lat, lon):
    """East/north metres of ``(lat, lon)`` from ``(lat0, lon0)`` on the WGS 84 ellipsoid.

    Uses the local radii of curvature at ``lat0`` (exact to well under a centimetre over
    the ~100 m spans of an aerial tile).
    """
    r_meridian, r_parallel = _local_radii(lat0)
    north = np.radians(np.asarray(lat, dtype=np.float64) - lat0) * r_meridian
    east = np.radians(np.asarray(lon, dtype=np.float64) - lon0) * r_parallel
    return east, north


def latlon_from_enu_offset(lat0: float, lon0: float, east, north):
    """Inverse of :func:`enu_offset_m`."""
    r_meridian, r_parallel = _local_radii(lat0)
    lat = lat0 + np.degrees(np.asarray(north, dtype=np.float64) / r_meridian)
    lon = lon0 + np.degrees(np.asarray(east, dtype=np.float64) / r_parallel)
    return lat, lon
