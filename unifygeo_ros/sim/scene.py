"""The synthetic city's scene: its style, its primitives and the :class:`City` that holds them.

Frames and units
----------------
A :class:`City` lives in a :class:`~unifygeo_ros.geo.MapFrame`: the UTM zone of its
south-west corner ``(origin_lat, origin_lon)``, with that corner as the local origin.
Local coordinates are metres, ``x`` east and ``y`` north *in the grid* (not true north:
see ``MapFrame.convergence_deg``); the city occupies ``[0, size_m] x [0, size_m]`` and
everything outside is open countryside. Heights ``z`` are metres above the (flat) ground.
Orientations of objects are ENU yaws (0 = grid east, counter-clockwise), the sun's
direction is a compass bearing; see :mod:`unifygeo_ros.conventions`.

Primitives
----------
* :class:`Road`: centre-line polyline between two graph nodes, lanes, parking lanes,
  sidewalks and the lane-marking colours; lane offsets are left-positive.
* :class:`Building`: a vertical prism (CCW footprint, height) with roof and facade
  colours and a window grid. Stepped buildings are several prisms (a podium and a
  tower, rooftop plant rooms), all standing on the ground.
* :class:`Tree`: a vertical cylinder trunk and an ellipsoid crown.
* :class:`Car`: an oriented box. :class:`Pole`: a thin cylinder (street lamp).
* :class:`GroundFeature`: a flat coloured polygon (blocks, parks, paths, water,
  parking lots, driveways, stall lines), drawn in list order.

Everything the renderers use is stored in ``city.json`` (:meth:`City.save`), so a loaded
city renders bit-identically without re-running the generator. Coordinates are rounded to
millimetres when a city is built, which makes ``save`` / ``load`` exact.

The occupancy and road-surface queries of a city (:meth:`City.is_free`,
:meth:`City.road_surface`) read coarse rasters (``QUERY_RES`` metres per cell) drawn here
and cached on the city.

This module is the bottom of the simulator's city modules: the generator
(``_generate``), the rasters (``_raster``) and :mod:`unifygeo_ros.sim.world` (the
constructors) import it, and it imports none of them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from unifygeo_ros.geo import MapFrame
from unifygeo_ros.sim import _geom
from unifygeo_ros.sim._palette import palette_for

RGB = tuple[int, int, int]
CITY_FORMAT = "unifygeo-city"
CITY_VERSION = 1
MIN_HEIGHT_M, MAX_HEIGHT_M = 3.0, 40.0
SHIFT = 4  # fixed-point bits for cv2 drawing


# --------------------------------------------------------------------------- style


@dataclass(frozen=True)
class CityStyle:
    """Knobs that make one city differ from the next (see :meth:`preset`).

    ``sun_azimuth_deg`` is the sun's compass bearing (0 = grid north, clockwise);
    shadows fall towards ``sun_azimuth_deg + 180``.
    """

    name: str = "default"
    palette: str = "temperate"
    building_density: float = 0.8  # probability that a frontage slot gets a building
    height_range_m: tuple[float, float] = (4.0, 24.0)
    tower_fraction: float = 0.05  # share of large lots built as podium + tower
    tree_cover: float = 0.5
    park_fraction: float = 0.08
    parking_fraction: float = 0.05
    car_density: float = 0.5  # probability that a parking slot is taken
    block_size_m: tuple[float, float] = (70.0, 150.0)  # blocks are split until shorter than a draw from this
    road_width_m: tuple[float, float] = (9.0, 16.0)  # kerb to kerb: local streets, arterials
    sidewalk_width_m: float = 2.5
    setback_m: tuple[float, float] = (0.0, 4.0)
    building_width_m: tuple[float, float] = (8.0, 26.0)  # along the street
    building_depth_m: tuple[float, float] = (9.0, 20.0)
    building_gap_m: tuple[float, float] = (0.0, 6.0)
    paved_fraction: float = 0.4  # share of building blocks with paved (not grass) open ground
    road_curvature: float = 0.5  # 0: straight roads; ~1: gently winding
    road_angle_jitter_deg: float = 8.0
    arterial_spacing_m: float = 350.0
    roof_details: float = 0.4  # probability of rooftop plant rooms on flat roofs
    sun_azimuth_deg: float = 150.0
    sun_elevation_deg: float = 45.0

    def __post_init__(self):
        lo, hi = self.height_range_m
        if not (MIN_HEIGHT_M <= lo <= hi <= MAX_HEIGHT_M):
            raise ValueError(f"height_range_m must lie within [{MIN_HEIGHT_M}, {MAX_HEIGHT_M}] m, "
                             f"got {self.height_range_m}")
        palette_for(self.palette)  # raises, naming the palettes, for an unknown one
        for name in ("building_density", "tower_fraction", "tree_cover", "park_fraction", "parking_fraction",
                     "car_density", "paved_fraction", "roof_details"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 10.0 <= self.sun_elevation_deg <= 85.0:
            raise ValueError(f"sun_elevation_deg must be in [10, 85], got {self.sun_elevation_deg}")
        if not 30.0 <= self.block_size_m[0] <= self.block_size_m[1]:
            raise ValueError(f"block_size_m must be (min, max) with 30 <= min <= max, got {self.block_size_m}")

    @classmethod
    def preset(cls, name: str) -> "CityStyle":
        """A named style: one of :data:`STYLE_PRESETS`."""
        if name not in STYLE_PRESETS:
            raise ValueError(f"unknown city style {name!r}; expected one of {', '.join(sorted(STYLE_PRESETS))}")
        return cls(name=name, **STYLE_PRESETS[name])

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CityStyle":
        kwargs = {}
        for f in fields(cls):
            if f.name in data:
                v = data[f.name]
                kwargs[f.name] = tuple(float(x) for x in v) if isinstance(v, list) else v
        return cls(**kwargs)

    @property
    def sun_vector(self) -> np.ndarray:
        """Unit vector towards the sun in the local ENU frame (x east, y north, z up)."""
        az, el = math.radians(self.sun_azimuth_deg), math.radians(self.sun_elevation_deg)
        return np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])


RANDOM_SUN_ELEVATION_DEG = (20.0, 70.0)


def random_sun(seed: int) -> tuple[float, float]:
    """A sun drawn at random (domain randomisation of lighting), the same for the same ``seed``.

    Returns ``(azimuth, elevation)`` in degrees: the azimuth a compass bearing (clockwise
    from grid north, as :attr:`CityStyle.sun_azimuth_deg`), uniform over the full circle;
    the elevation uniform over :data:`RANDOM_SUN_ELEVATION_DEG`, from a long winter-morning
    shadow to a short summer-noon one. The generator is independent of the palette's.
    """
    if int(seed) < 0:
        raise ValueError(f"random sun seed must be a non-negative integer, got {seed}")
    rng = np.random.default_rng([0x5E1A5, int(seed)])
    azimuth = float(rng.uniform(0.0, 360.0))
    elevation = float(rng.uniform(*RANDOM_SUN_ELEVATION_DEG))
    return round(azimuth, 3), round(elevation, 3)


STYLE_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "suburb": dict(
        building_density=0.75, height_range_m=(3.0, 9.0), tower_fraction=0.0, tree_cover=0.8, park_fraction=0.1,
        parking_fraction=0.02, car_density=0.35, block_size_m=(60.0, 130.0), road_width_m=(8.0, 13.0),
        sidewalk_width_m=1.8, setback_m=(4.5, 9.0), building_width_m=(8.0, 14.0), building_depth_m=(8.0, 13.0),
        building_gap_m=(3.0, 8.0), paved_fraction=0.05, road_curvature=1.0, road_angle_jitter_deg=14.0,
        arterial_spacing_m=450.0, roof_details=0.05, sun_azimuth_deg=205.0, sun_elevation_deg=40.0),
    "downtown": dict(
        palette="metropolis", building_density=0.95, height_range_m=(12.0, 40.0), tower_fraction=0.35,
        tree_cover=0.3, park_fraction=0.06, parking_fraction=0.08, car_density=0.7, block_size_m=(60.0, 120.0),
        road_width_m=(12.0, 19.0), sidewalk_width_m=3.5, setback_m=(0.0, 1.0), building_width_m=(14.0, 38.0),
        building_depth_m=(14.0, 30.0), building_gap_m=(0.0, 2.0), paved_fraction=0.9, road_curvature=0.2,
        road_angle_jitter_deg=5.0, arterial_spacing_m=300.0, roof_details=0.7, sun_azimuth_deg=135.0,
        sun_elevation_deg=55.0),
    "oldtown": dict(
        palette="mediterranean", building_density=0.95, height_range_m=(6.0, 18.0), tower_fraction=0.0,
        tree_cover=0.35, park_fraction=0.07, parking_fraction=0.03, car_density=0.5, block_size_m=(45.0, 100.0),
        road_width_m=(7.0, 12.0), sidewalk_width_m=1.8, setback_m=(0.0, 0.5), building_width_m=(7.0, 16.0),
        building_depth_m=(9.0, 16.0), building_gap_m=(0.0, 1.0), paved_fraction=0.8, road_curvature=1.4,
        road_angle_jitter_deg=20.0, arterial_spacing_m=300.0, roof_details=0.2, sun_azimuth_deg=170.0,
        sun_elevation_deg=60.0),
    "nordic": dict(
        palette="nordic", building_density=0.85, height_range_m=(4.0, 16.0), tower_fraction=0.02, tree_cover=0.6,
        park_fraction=0.1, parking_fraction=0.04, car_density=0.45, block_size_m=(60.0, 140.0),
        road_width_m=(8.0, 14.0), sidewalk_width_m=2.5, setback_m=(0.0, 5.0), building_width_m=(9.0, 22.0),
        building_depth_m=(9.0, 16.0), building_gap_m=(0.5, 5.0), paved_fraction=0.3, road_curvature=0.8,
        road_angle_jitter_deg=10.0, arterial_spacing_m=380.0, roof_details=0.2, sun_azimuth_deg=190.0,
        sun_elevation_deg=30.0),
}


# --------------------------------------------------------------------------- primitives


def _rgb(c) -> RGB:
    return tuple(int(v) for v in c)


def _pts(a) -> np.ndarray:
    return np.round(np.asarray(a, dtype=np.float64).reshape(-1, 2), 3)


def _mm(v: float) -> float:
    return round(float(v), 3)


@dataclass(eq=False)
class Road:
    """A road-graph edge. Lateral offsets are left-positive relative to ``points[0] -> points[-1]``.

    Cross-section from the centre line outwards: ``lanes`` driving lanes per direction,
    then a parking lane (``parking_width``, 0 = none), then the sidewalk. ``trim_*`` is
    the distance from each end over which the junction area replaces the markings;
    ``crosswalk_*`` puts a zebra crossing there.
    """

    points: np.ndarray
    lanes: int
    lane_width: float
    parking_width: float
    sidewalk_width: float
    kind: str
    start_node: int
    end_node: int
    trim_start: float
    trim_end: float
    crosswalk_start: bool
    crosswalk_end: bool
    asphalt_colour: RGB
    sidewalk_colour: RGB
    centre_colour: RGB
    line_colour: RGB

    def __post_init__(self):
        self.points = _pts(self.points)
        self.lanes = int(self.lanes)
        for name in ("lane_width", "parking_width", "sidewalk_width", "trim_start", "trim_end"):
            setattr(self, name, _mm(getattr(self, name)))
        for name in ("asphalt_colour", "sidewalk_colour", "centre_colour", "line_colour"):
            setattr(self, name, _rgb(getattr(self, name)))
        self.crosswalk_start, self.crosswalk_end = bool(self.crosswalk_start), bool(self.crosswalk_end)

    @property
    def half_width(self) -> float:
        """Centre line to kerb (m)."""
        return self.lanes * self.lane_width + self.parking_width

    @property
    def length(self) -> float:
        return float(_geom.cumulative_length(self.points)[-1])


@dataclass(eq=False)
class Building:
    """A prism from the ground to ``height``; ``footprint`` is CCW. Windows repeat every
    ``floor_height`` vertically (lower edge ``sill_height`` above the floor) and every
    ``window_spacing`` along each wall, centred on the wall."""

    footprint: np.ndarray
    height: float
    roof_colour: RGB
    facade_colour: RGB
    window_colour: RGB
    roof_kind: str = "gravel"  # gravel | membrane | tar | tiles | metal | green
    floor_height: float = 3.2
    window_width: float = 1.2
    window_height: float = 1.5
    window_spacing: float = 3.0
    sill_height: float = 0.9
    shopfront: bool = False
    kind: str = "building"  # building | tower | unit (rooftop plant room)

    def __post_init__(self):
        self.footprint = _pts(_geom.ensure_ccw(np.asarray(self.footprint, dtype=np.float64)))
        for name in ("height", "floor_height", "window_width", "window_height", "window_spacing", "sill_height"):
            setattr(self, name, _mm(getattr(self, name)))
        for name in ("roof_colour", "facade_colour", "window_colour"):
            setattr(self, name, _rgb(getattr(self, name)))
        self.shopfront = bool(self.shopfront)


@dataclass
class Tree:
    """Trunk: cylinder of ``trunk_radius`` from the ground to ``crown_z``. Crown: ellipsoid
    centred at height ``crown_z``, horizontal radius ``crown_radius``, vertical semi-axis
    ``crown_half_height``."""

    x: float
    y: float
    trunk_radius: float
    crown_z: float
    crown_radius: float
    crown_half_height: float
    colour: RGB
    trunk_colour: RGB

    def __post_init__(self):
        for name in ("x", "y", "trunk_radius", "crown_z", "crown_radius", "crown_half_height"):
            setattr(self, name, _mm(getattr(self, name)))
        self.colour, self.trunk_colour = _rgb(self.colour), _rgb(self.trunk_colour)

    @property
    def crown_bottom(self) -> float:
        return self.crown_z - self.crown_half_height

    @property
    def top(self) -> float:
        return self.crown_z + self.crown_half_height


@dataclass
class Car:
    """Box ``length`` x ``width`` x ``height`` on the ground, long axis along ENU ``yaw_deg``."""

    x: float
    y: float
    yaw_deg: float
    length: float
    width: float
    height: float
    colour: RGB

    def __post_init__(self):
        for name in ("x", "y", "length", "width", "height"):
            setattr(self, name, _mm(getattr(self, name)))
        self.yaw_deg = round(float(self.yaw_deg), 3)
        self.colour = _rgb(self.colour)

    def footprint(self) -> np.ndarray:
        return _geom.rect_polygon((self.x, self.y), math.radians(self.yaw_deg), self.length, self.width)


@dataclass
class Pole:
    """A thin vertical cylinder (street lamp)."""

    x: float
    y: float
    radius: float
    height: float
    colour: RGB

    def __post_init__(self):
        for name in ("x", "y", "radius", "height"):
            setattr(self, name, _mm(getattr(self, name)))
        self.colour = _rgb(self.colour)


GROUND_MATERIALS = ("grass", "asphalt", "concrete", "paving", "gravel", "water", "soil", "field", "line")


@dataclass(eq=False)
class GroundFeature:
    """A flat polygon on the ground; ``material`` selects the texture (GROUND_MATERIALS)."""

    kind: str  # block | park | path | water | parking | stall_line | driveway | plaza
    polygon: np.ndarray
    colour: RGB
    material: str

    def __post_init__(self):
        self.polygon = _pts(self.polygon)
        self.colour = _rgb(self.colour)
        if self.material not in GROUND_MATERIALS:
            raise ValueError(f"unknown ground material {self.material!r}")


_PRIMITIVES = {"roads": Road, "buildings": Building, "trees": Tree, "cars": Car, "poles": Pole, "ground": GroundFeature}


def _to_json(obj) -> Any:
    out = {}
    for key, value in asdict(obj).items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


# --------------------------------------------------------------------------- the city


class City:
    """A generated (or hand-built) world; see the module docstring for frames and units.

    ``raster_mpp`` is the resolution (m/px) of the ground and top rasters that the
    renderers share (orthophotos finer than this are interpolated). Heavy derived data
    (rasters, ray-casting arrays) is computed lazily by the renderers and cached on the
    instance (``_cache``); it is not pickled, and a forked process inherits it.
    """

    def __init__(self, seed: int, size_m: float, origin_lat: float, origin_lon: float, style: CityStyle, *,
                 nodes=(), roads: Sequence[Road] = (), ground: Sequence[GroundFeature] = (),
                 buildings: Sequence[Building] = (), trees: Sequence[Tree] = (), cars: Sequence[Car] = (),
                 poles: Sequence[Pole] = (), raster_mpp: float = 0.1):
        if not size_m > 0:
            raise ValueError(f"size_m must be > 0, got {size_m}")
        if not 0.02 <= raster_mpp <= 1.0:
            raise ValueError(f"raster_mpp must be in [0.02, 1] m, got {raster_mpp}")
        self.seed = int(seed)
        self.size_m = float(size_m)
        self.origin_lat = float(origin_lat)
        self.origin_lon = float(origin_lon)
        self.style = style
        self.raster_mpp = float(raster_mpp)
        self.frame = MapFrame.utm_at(self.origin_lat, self.origin_lon)
        self.nodes = _pts(nodes) if len(nodes) else np.zeros((0, 2))
        self.roads = list(roads)
        self.ground = list(ground)
        self.buildings = list(buildings)
        self.trees = list(trees)
        self.cars = list(cars)
        self.poles = list(poles)
        self._cache: dict[str, Any] = {}

    # ---- bookkeeping

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def counts(self) -> dict[str, int]:
        return {"roads": len(self.roads), "buildings": len(self.buildings), "trees": len(self.trees),
                "cars": len(self.cars), "poles": len(self.poles), "ground_features": len(self.ground)}

    @property
    def epsg(self) -> int | None:
        return self.frame.crs.to_epsg()

    def cached(self, key: str, build):
        """Memoise ``build()`` under ``key`` for this city's lifetime."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CITY_FORMAT,
            "version": CITY_VERSION,
            "seed": self.seed,
            "size_m": self.size_m,
            "origin": {"lat": self.origin_lat, "lon": self.origin_lon},
            "crs": {"epsg": self.epsg, "origin_easting": self.frame.origin_e, "origin_northing": self.frame.origin_n},
            "raster_mpp": self.raster_mpp,
            "style": self.style.to_dict(),
            "nodes": self.nodes.tolist(),
            **{key: [_to_json(p) for p in getattr(self, key)] for key in _PRIMITIVES},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "City":
        if data.get("format") != CITY_FORMAT:
            raise ValueError(f"not a {CITY_FORMAT} file (format={data.get('format')!r})")
        if data.get("version") != CITY_VERSION:
            raise ValueError(f"unsupported {CITY_FORMAT} version {data.get('version')!r}; expected {CITY_VERSION}")
        prims = {}
        for key, kind in _PRIMITIVES.items():
            prims[key] = [kind(**{k: (tuple(v) if isinstance(v, list) and k.endswith("colour") else v)
                                  for k, v in item.items()}) for item in data[key]]
        return cls(data["seed"], data["size_m"], data["origin"]["lat"], data["origin"]["lon"],
                   CityStyle.from_dict(data["style"]), nodes=data["nodes"], raster_mpp=data["raster_mpp"], **prims)

    def save(self, directory) -> Path:
        """Write ``directory/city.json`` (parameters and every primitive); returns its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "city.json"
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n")
        return path

    @classmethod
    def load(cls, directory) -> "City":
        """Read a city saved with :meth:`save` (``directory`` or the ``city.json`` itself)."""
        path = Path(directory)
        if path.is_dir():
            path = path / "city.json"
        if not path.is_file():
            raise FileNotFoundError(f"no city.json at {path}")
        return cls.from_dict(json.loads(path.read_text()))

    # ---- queries

    def is_free(self, xy, clearance_m: float = 0.0) -> np.ndarray:
        """True where a point is at least ``clearance_m`` from every building, trunk, pole and car.

        ``xy``: ``(2,)`` or ``(N, 2)`` local metres. Evaluated on a 0.25 m distance raster
        and conservative by half a cell diagonal (0.18 m): a point that is free but closer
        than that to an obstacle may be reported as not free, never the reverse. Points
        outside the city square are free (nothing stands there).
        """
        return clearance_query(self, np.asarray(xy, dtype=np.float64), float(clearance_m))

    def road_surface(self, xy, include_sidewalk: bool = True) -> np.ndarray:
        """True where points lie on a carriageway (or sidewalk) of some road."""
        return road_query(self, np.asarray(xy, dtype=np.float64), include_sidewalk)

    def street_positions(self, n: int, rng: np.random.Generator, min_clearance_m: float = 1.0,
                         margin_m: float = 5.0) -> np.ndarray:
        """``(n, 2)`` camera positions on roads or sidewalks, at least ``min_clearance_m`` from
        every building, trunk, pole and car and ``margin_m`` inside the city square."""
        if n < 0:
            raise ValueError("n must be >= 0")
        roads = [r for r in self.roads if len(r.points) >= 2]
        if not roads:
            raise ValueError("the city has no roads to place cameras on")
        lengths = np.array([r.length for r in roads])
        cums = [_geom.cumulative_length(r.points) for r in roads]
        out = np.zeros((0, 2))
        for _ in range(200):
            if len(out) >= n:
                break
            m = max(64, 2 * (n - len(out)))
            ridx = rng.choice(len(roads), size=m, p=lengths / lengths.sum())
            s = rng.random(m)
            lat = rng.uniform(-1.0, 1.0, m)
            pts = np.empty((m, 2))
            for k in np.unique(ridx):
                sel = ridx == k
                road = roads[k]
                pos, tan = _geom.point_at(road.points, cums[k], s[sel] * lengths[k])
                normal = np.stack([-tan[:, 1], tan[:, 0]], axis=1)
                pts[sel] = pos + normal * (lat[sel] * (road.half_width + road.sidewalk_width))[:, None]
            lo, hi = margin_m, self.size_m - margin_m
            ok = np.all((pts >= lo) & (pts <= hi), axis=1)
            ok[ok] = self.road_surface(pts[ok]) & self.is_free(pts[ok], min_clearance_m)
            out = np.concatenate([out, pts[ok]], axis=0)
        if len(out) < n:
            raise RuntimeError(f"could only find {len(out)} of {n} free street positions")
        return out[:n]

    def road_route(self, length_m: float, rng: np.random.Generator, step_m: float = 1.0) -> np.ndarray:
        """``(M, 2)`` points of a drive along the road network, ``step_m`` (<= 2 m) apart.

        A random walk over the road graph (no U-turns except at dead ends or the city's
        edge), following the right-hand inner lane (0.5 lane widths right of the centre
        line) with corners rounded; about ``length_m`` long, inside the city square.
        """
        if not 0 < step_m <= 2.0:
            raise ValueError("step_m must be in (0, 2]")
        if length_m <= 0:
            raise ValueError("length_m must be > 0")
        graph = self._inner_graph()
        if not graph["edges"]:
            raise ValueError("the city has no roads inside its square")
        edges = graph["edges"]
        weights = np.array([self.roads[e].length for e in edges])
        e = edges[int(rng.choice(len(edges), p=weights / weights.sum()))]
        forward = bool(rng.random() < 0.5)
        centre, offsets, total = [], [], 0.0
        while total < length_m + 20.0:
            road = self.roads[e]
            pts = road.points if forward else road.points[::-1]
            centre.append(pts if not centre else pts[1:])
            offsets.append(np.full(len(pts) - (1 if len(centre) > 1 else 0), -0.5 * road.lane_width))
            total += road.length
            node = road.end_node if forward else road.start_node
            options = [x for x in graph["adjacent"].get(node, []) if x != e]
            nxt = options[int(rng.integers(len(options)))] if options else e
            forward = self.roads[nxt].start_node == node if nxt != e else not forward
            e = nxt
        path = np.concatenate(centre, axis=0)
        off = np.concatenate(offsets)
        keep = np.concatenate([[True], np.linalg.norm(np.diff(path, axis=0), axis=1) > 1e-6])
        path, off = path[keep], off[keep]
        dense = _geom.densify(path, 1.0)
        off_dense = np.interp(_geom.cumulative_length(dense), _geom.cumulative_length(path), off)
        lane = dense + off_dense[:, None] * _geom.vertex_normals(dense)
        lane = _geom.chaikin(_geom.resample(lane, 1.0), 3)
        route = _geom.resample(lane, step_m)
        cum = _geom.cumulative_length(route)
        return route[cum <= length_m + 1e-9]

    def _inner_graph(self) -> dict[str, Any]:
        """Road-graph edges with both ends inside the city square, and node adjacency."""

        def build():
            inside = lambda p: bool(np.all((p >= 2.0) & (p <= self.size_m - 2.0)))  # noqa: E731
            edges = [i for i, r in enumerate(self.roads) if inside(r.points[0]) and inside(r.points[-1])]
            adjacent: dict[int, list[int]] = {}
            for i in edges:
                adjacent.setdefault(self.roads[i].start_node, []).append(i)
                adjacent.setdefault(self.roads[i].end_node, []).append(i)
            return {"edges": edges, "adjacent": adjacent}

        return self.cached("inner_graph", build)


# --------------------------------------------------------------------------- coarse query rasters


def roads_at_nodes(city: City) -> dict[int, list]:
    """The roads that meet at each node of the road network."""
    degree: dict[int, list] = {}
    for r in city.roads:
        degree.setdefault(r.start_node, []).append(r)
        degree.setdefault(r.end_node, []).append(r)
    return degree


QUERY_RES = 0.25


def _query_px(pts: np.ndarray) -> np.ndarray:
    """Query-raster drawing coordinates: cell (i, j) is centred on x = j * res, y = i * res."""
    return np.rint(np.asarray(pts) / QUERY_RES * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _query_grid(city: City) -> int:
    return int(math.ceil(city.size_m / QUERY_RES)) + 1


def _clearance(city: City) -> np.ndarray:
    """Distance (m) from each 0.25 m cell centre to the nearest obstacle cell (row = y index)."""
    n = _query_grid(city)
    occ = np.zeros((n, n), np.uint8)
    polys = [b.footprint for b in city.buildings] + [c.footprint() for c in city.cars]
    polys += [_geom.circle_polygon((t.x, t.y), t.trunk_radius, 12) for t in city.trees]
    polys += [_geom.circle_polygon((p.x, p.y), p.radius, 8) for p in city.poles]
    for p in polys:
        pts = _query_px(p)
        cv2.fillPoly(occ, [pts], 1, cv2.LINE_8, SHIFT)
        cv2.polylines(occ, [pts], True, 1, 1, cv2.LINE_8, SHIFT)
    return cv2.distanceTransform((1 - occ).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) * QUERY_RES


def _road_mask(city: City) -> np.ndarray:
    """1 on sidewalks, 2 on carriageways (0.25 m cells, row = y index)."""
    n = _query_grid(city)
    mask = np.zeros((n, n), np.uint8)
    degree = roads_at_nodes(city)
    for r in city.roads:
        w = r.half_width + r.sidewalk_width
        cv2.fillPoly(mask, [_query_px(_geom.strip_polygon(r.points, w, -w))], 1, cv2.LINE_8, SHIFT)
    for r in city.roads:
        cv2.fillPoly(mask, [_query_px(_geom.strip_polygon(r.points, r.half_width, -r.half_width))], 2,
                     cv2.LINE_8, SHIFT)
    for node, roads in degree.items():
        if len(roads) >= 2:
            cv2.fillPoly(mask, [_query_px(_geom.circle_polygon(city.nodes[node], max(r.half_width for r in roads)))],
                         2, cv2.LINE_8, SHIFT)
    return mask


def _lookup(grid: np.ndarray, xy: np.ndarray, outside):
    xy = np.atleast_2d(xy)
    i = np.floor(xy[:, 1] / QUERY_RES + 0.5).astype(np.int64)
    j = np.floor(xy[:, 0] / QUERY_RES + 0.5).astype(np.int64)
    n = grid.shape[0]
    ok = (i >= 0) & (i < n) & (j >= 0) & (j < n)
    out = np.full(len(xy), outside, dtype=grid.dtype)
    out[ok] = grid[i[ok], j[ok]]
    return out


def clearance_query(city: City, xy: np.ndarray, clearance: float) -> np.ndarray:
    grid = city.cached("clearance", lambda: _clearance(city))
    d = _lookup(grid, xy, np.float32(1e9))
    out = d - 0.36 > clearance
    return out if np.ndim(xy) > 1 else bool(out[0])


def road_query(city: City, xy: np.ndarray, include_sidewalk: bool) -> np.ndarray:
    grid = city.cached("road_mask", lambda: _road_mask(city))
    v = _lookup(grid, xy, np.uint8(0))
    out = v >= (1 if include_sidewalk else 2)
    return out if np.ndim(xy) > 1 else bool(out[0])
