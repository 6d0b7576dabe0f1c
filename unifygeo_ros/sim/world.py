"""The synthetic city: a procedural 2.5-D world that the aerial and street renderers share.

The entry point for building a city: :func:`generate_city` (procedural, from a seed),
:func:`city_from_primitives` (explicitly given objects) and :func:`box_building`. The scene
itself (frames and units, the style, the primitives, :class:`City` and its ``city.json``)
is described and defined in :mod:`unifygeo_ros.sim.scene`; its names are importable from
here as well.
"""

from __future__ import annotations

import math
from typing import Iterable

from unifygeo_ros.geo import MapFrame
from unifygeo_ros.sim import _generate, _geom
from unifygeo_ros.sim.scene import (  # noqa: F401 (re-exported)
    CITY_FORMAT,
    CITY_VERSION,
    GROUND_MATERIALS,
    MAX_HEIGHT_M,
    MIN_HEIGHT_M,
    RANDOM_SUN_ELEVATION_DEG,
    RGB,
    STYLE_PRESETS,
    Building,
    Car,
    City,
    CityStyle,
    GroundFeature,
    Pole,
    Road,
    Tree,
    random_sun,
)

# --------------------------------------------------------------------------- constructors


def _resolve_style(style: CityStyle | str) -> CityStyle:
    if isinstance(style, CityStyle):
        return style
    if isinstance(style, str):
        return CityStyle.preset(style)
    raise TypeError(f"style must be a CityStyle or a preset name, got {type(style).__name__}")


def generate_city(seed: int, size_m: float, origin_lat: float, origin_lon: float,
                  style: CityStyle | str = "default", raster_mpp: float = 0.1) -> City:
    """Generate the city of ``seed``: same arguments, same world, bit for bit.

    ``(origin_lat, origin_lon)`` is the south-west corner; the city covers
    ``[0, size_m]^2`` local metres (at least 60 m, at most 5 km).
    """
    style = _resolve_style(style)
    if not 60.0 <= size_m <= 5000.0:
        raise ValueError(f"size_m must be in [60, 5000] m, got {size_m}")
    MapFrame.utm_at(origin_lat, origin_lon)  # validates the origin early
    prims = _generate.generate(int(seed), float(size_m), style)
    return City(seed, size_m, origin_lat, origin_lon, style, raster_mpp=raster_mpp, **prims)


def city_from_primitives(size_m: float, origin_lat: float = 48.0, origin_lon: float = 11.0, *,
                         buildings: Iterable[Building] = (), trees: Iterable[Tree] = (), cars: Iterable[Car] = (),
                         poles: Iterable[Pole] = (), roads: Iterable[Road] = (), nodes=(),
                         ground: Iterable[GroundFeature] = (), style: CityStyle | str = "default",
                         seed: int = 0, raster_mpp: float = 0.1) -> City:
    """A city made of explicitly given objects (e.g. one lone tower), for tests and demos.

    Ground not covered by ``ground`` features is plain paving (the palette's first paving colour).
    """
    style = _resolve_style(style)
    return City(seed, size_m, origin_lat, origin_lon, style, nodes=list(nodes), roads=list(roads),
                ground=list(ground), buildings=list(buildings), trees=list(trees), cars=list(cars),
                poles=list(poles), raster_mpp=raster_mpp)


def box_building(center, width: float, depth: float, height: float, yaw_deg: float = 0.0, **kwargs) -> Building:
    """A rectangular building: ``width`` along ENU ``yaw_deg``, ``depth`` across it."""
    poly = _geom.rect_polygon(center, math.radians(yaw_deg), width, depth)
    defaults = dict(roof_colour=(150, 146, 138), facade_colour=(210, 200, 180), window_colour=(50, 62, 78))
    defaults.update(kwargs)
    return Building(footprint=poly, height=height, **defaults)


__all__ = ["CityStyle", "STYLE_PRESETS", "City", "Road", "Building", "Tree", "Car", "Pole", "GroundFeature",
           "generate_city", "city_from_primitives", "box_building", "GROUND_MATERIALS"]
