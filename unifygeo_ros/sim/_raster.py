"""Per-city rasters shared by the aerial and the street-level renderers.

Raster grid
-----------
Level 0 has ``m0 = city.raster_mpp`` metres per pixel and covers the square
``[0, N0 * m0]^2`` (``N0`` a multiple of :data:`CHUNK_PX`, so slightly more than the city;
the part outside the city square is countryside). Row 0 is the *north* edge. Pixel
``(R, C)`` of level ``l`` (``m_l = m0 * 2**l``) covers ``x in [C m_l, (C + 1) m_l)``,
``y in [Y - (R + 1) m_l, Y - R m_l)`` with ``Y = N0 * m0``; its centre is at
``x = (C + 0.5) m_l``, ``y = Y - (R + 0.5) m_l``.

Two RGB layers, both with sun shading and cast shadows:

* ``ground``: the ground surface only (roads, markings, grass, paving, shadows of
  buildings, cars, trunks, poles and tree crowns). The street-level renderer samples it
  wherever a ray hits the ground plane.
* ``top``: what an orthophoto sees: ``ground`` plus car tops, roofs and tree crowns.

Both are filled lazily in chunks of ``CHUNK_PX`` x ``CHUNK_PX`` pixels (with mip levels
built from each chunk), so a renderer only pays for the area it looks at.

Sun shadows on raised surfaces (roofs, facades, car tops, crowns) come from a
*sun heightfield*: buildings rasterised in a frame aligned with the sun, where a suffix
maximum along the sun direction tells for any ``(x, y, z)`` whether a building blocks
the sun (:class:`SunShadow`). Shadows on the ground are exact polygons (the sweep of each
footprint along the sun direction), so the same shadows appear from above and from the street.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from unifygeo_ros.sim import _geom
from unifygeo_ros.sim._palette import palette_for
from unifygeo_ros.sim.scene import GROUND_MATERIALS, SHIFT, City, roads_at_nodes

CHUNK_PX = 512
PAD = 8  # extra pixels rendered around a chunk so blurs and edges match across chunks
LEVELS = 6
AMBIENT = 0.42  # share of sky light; lit horizontal ground is rendered at its albedo
SHADOW_TINT = np.array([0.93, 0.98, 1.1], dtype=np.float32)  # skylight is bluish
TREE_SHADOW = 0.82  # opacity of a crown's shadow

MATERIAL_ID = {m: i for i, m in enumerate(GROUND_MATERIALS)}
# per material: (fine, medium, coarse) noise amplitudes
_TEXTURE = {
    "grass": (0.06, 0.10, 0.10), "asphalt": (0.06, 0.03, 0.05), "concrete": (0.04, 0.03, 0.04),
    "paving": (0.05, 0.03, 0.05), "gravel": (0.12, 0.04, 0.04), "water": (0.01, 0.03, 0.02),
    "soil": (0.08, 0.08, 0.08), "field": (0.05, 0.10, 0.14), "line": (0.05, 0.04, 0.0),
}
_TEX_TABLE = np.array([_TEXTURE[m] for m in GROUND_MATERIALS], dtype=np.float32)


def light_factor(sun_elevation_deg: float) -> float:
    """Ratio of shadowed to lit brightness on a horizontal surface."""
    s = math.sin(math.radians(sun_elevation_deg))
    return AMBIENT / (AMBIENT + (1.0 - AMBIENT) * s)


def lambert(normals_dot_sun, lit, sun_elevation_deg: float):
    """Brightness relative to lit horizontal ground: ``(a + (1 - a) max(0, n.L) lit) / (a + (1 - a) sin el)``."""
    s = math.sin(math.radians(sun_elevation_deg))
    return (AMBIENT + (1.0 - AMBIENT) * np.maximum(normals_dot_sun, 0.0) * lit) / (AMBIENT + (1.0 - AMBIENT) * s)


# --------------------------------------------------------------------------- noise


class Noise:
    """Three tileable noise fields (unit std) with co-prime periods, seeded per city."""

    PERIODS = (509, 523, 1021)
    SIGMAS = (0.7, 4.0, 22.0)

    def __init__(self, seed: int):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
        self.fields = []
        for period, sigma in zip(self.PERIODS, self.SIGMAS):
            f = rng.standard_normal((period, period)).astype(np.float32)
            if sigma > 0.5:
                f = cv2.GaussianBlur(np.tile(f, (3, 3)), (0, 0), sigma)[period:2 * period, period:2 * period]
            f -= f.mean()
            f /= max(float(f.std()), 1e-6)
            self.fields.append(np.ascontiguousarray(f))

    def grid(self, k: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Field ``k`` on the outer product of global pixel ``rows`` and ``cols`` (level 0)."""
        f = self.fields[k]
        p = f.shape[0]
        return f[np.ix_(rows % p, cols % p)]

    def at(self, k: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Field ``k`` at individual integer positions."""
        f = self.fields[k]
        p = f.shape[0]
        return f[rows % p, cols % p]


# --------------------------------------------------------------------------- sun heightfield


class SunShadow:
    """Buildings rasterised in a sun-aligned frame; answers "is (x, y, z) in a building's shadow?".

    ``a`` is the coordinate towards the sun's horizontal direction, ``b`` across it.
    ``G[row, col] = max over cells further towards the sun of (h - a tan(el))``; a point is
    shadowed when ``z - a tan(el) < G`` at its cell.
    """

    def __init__(self, city: City):
        style = city.style
        az = math.radians(style.sun_azimuth_deg)
        self.s = np.array([math.sin(az), math.cos(az)])
        self.p = np.array([math.cos(az), -math.sin(az)])
        self.tan_el = math.tan(math.radians(style.sun_elevation_deg))
        size = city.size_m
        corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float64)
        a, b = corners @ self.s, corners @ self.p
        diag = float(max(a.max() - a.min(), b.max() - b.min()))
        self.cell = max(0.25, diag / 6000.0)
        self.a0, self.b0 = float(a.min()) - 2.0, float(b.min()) - 2.0
        n_a = int(math.ceil((a.max() - self.a0 + 2.0) / self.cell))
        n_b = int(math.ceil((b.max() - self.b0 + 2.0) / self.cell))
        heights = np.zeros((n_b, n_a), np.float32)
        for k in np.argsort([bd.height for bd in city.buildings], kind="stable"):
            bd = city.buildings[k]
            cv2.fillPoly(heights, [self._px(bd.footprint)], float(bd.height), cv2.LINE_8, SHIFT)
        a_centre = (self.a0 + (np.arange(n_a, dtype=np.float32) + 0.5) * self.cell) * self.tan_el
        v = np.where(heights > 0, heights - a_centre[None, :], -np.inf).astype(np.float32)
        suffix = np.maximum.accumulate(v[:, ::-1], axis=1)[:, ::-1]
        self.g = np.full_like(v, -np.inf)
        self.g[:, :-1] = suffix[:, 1:]

    def _px(self, pts: np.ndarray) -> np.ndarray:
        col = (pts @ self.s - self.a0) / self.cell - 0.5
        row = (pts @ self.p - self.b0) / self.cell - 0.5
        return np.rint(np.stack([col, row], axis=1) * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)

    def lit(self, x, y, z, softness: float = 0.3) -> np.ndarray:
        """Fraction (0..1) of direct sun at points ``(x, y, z)``; soft over ``softness`` metres of height."""
        x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
        a = x * self.s[0] + y * self.s[1]
        b = x * self.p[0] + y * self.p[1]
        col = np.floor((a - self.a0) / self.cell).astype(np.int64)
        row = np.floor((b - self.b0) / self.cell).astype(np.int64)
        inside = (col >= 0) & (col < self.g.shape[1]) & (row >= 0) & (row < self.g.shape[0])
        g = np.full(a.shape, -np.inf)
        g[inside] = self.g[row[inside], col[inside]]
        margin = z - a * self.tan_el - g
        return np.clip(margin / softness + 0.5, 0.0, 1.0)


def sun_shadow(city: City) -> SunShadow:
    return city.cached("sun_shadow", lambda: SunShadow(city))


def noise(city: City) -> Noise:
    return city.cached("noise", lambda: Noise(city.seed))


# --------------------------------------------------------------------------- drawables


@dataclass
class _Drawables:
    """World-space polygons to rasterise, with bounding boxes for chunk queries."""

    polys: list[np.ndarray]
    colours: np.ndarray  # (N, 3) uint8
    materials: np.ndarray  # (N,) uint8
    boxes: np.ndarray  # (N, 4): xmin, ymin, xmax, ymax

    @classmethod
    def build(cls, items):
        polys = [np.asarray(p, dtype=np.float64) for p, _, _ in items]
        boxes = np.array([np.concatenate([p.min(axis=0), p.max(axis=0)]) for p in polys]).reshape(-1, 4)
        colours = np.array([c for _, c, _ in items], dtype=np.uint8).reshape(-1, 3)
        mats = np.array([MATERIAL_ID[m] for _, _, m in items], dtype=np.uint8)
        return cls(polys, colours, mats, boxes)

    def query(self, box) -> np.ndarray:
        b = self.boxes
        return np.nonzero((b[:, 0] <= box[2]) & (b[:, 2] >= box[0]) & (b[:, 1] <= box[3]) & (b[:, 3] >= box[1]))[0]


def _dashes(pts, cum, s0, s1, offset, width, dash, gap):
    out = []
    period = dash + gap
    s = s0 + 0.5 * gap
    while s < s1:
        e = min(s + dash, s1)
        if e - s > 0.2:
            seg = _geom.sub_polyline(pts, cum, s, e)
            out.append(_geom.strip_polygon(seg, offset + 0.5 * width, offset - 0.5 * width))
        s += period
    return out


def _solid(pts, cum, s0, s1, offset, width):
    if s1 - s0 < 0.2:
        return []
    seg = _geom.sub_polyline(pts, cum, s0, s1)
    return [_geom.strip_polygon(seg, offset + 0.5 * width, offset - 0.5 * width)]


def road_markings(road) -> list[tuple[np.ndarray, tuple]]:
    """Lane markings, stop lines and zebra crossings of one road, as (polygon, colour)."""
    pts = road.points
    cum = _geom.cumulative_length(pts)
    length = cum[-1]
    s0, s1 = road.trim_start + 0.8, length - road.trim_end - 0.8
    out: list[tuple[np.ndarray, tuple]] = []
    lanes_w = road.lanes * road.lane_width
    if s1 - s0 > 2.0:
        if road.lanes >= 2:
            for off in (-0.12, 0.12):
                out += [(p, road.centre_colour) for p in _solid(pts, cum, s0, s1, off, 0.12)]
            for off in (-road.lane_width, road.lane_width):
                out += [(p, road.line_colour) for p in _dashes(pts, cum, s0, s1, off, 0.12, 3.0, 6.0)]
        else:
            out += [(p, road.centre_colour) for p in _dashes(pts, cum, s0, s1, 0.0, 0.13, 3.0, 5.0)]
        if road.parking_width > 0:
            for off in (-lanes_w, lanes_w):
                out += [(p, road.line_colour) for p in _dashes(pts, cum, s0, s1, off, 0.1, 1.0, 1.0)]
        if road.trim_start > 0:
            out += [(p, road.line_colour) for p in _solid(pts, cum, s0, s0 + 0.4, 0.5 * lanes_w, lanes_w)]
        if road.trim_end > 0:
            out += [(p, road.line_colour) for p in _solid(pts, cum, s1 - 0.4, s1, -0.5 * lanes_w, lanes_w)]
    hw = road.half_width
    for flag, trim, at_start in ((road.crosswalk_start, road.trim_start, True),
                                 (road.crosswalk_end, road.trim_end, False)):
        if not flag or trim < 4.0 or length < 2 * trim + 2.0:
            continue
        a, b = max(0.3, trim - 3.5), trim - 0.4
        if not at_start:
            a, b = length - b, length - a
        lat = -hw + 0.45
        while lat + 0.5 < hw - 0.2:
            out += [(p, road.line_colour) for p in _solid(pts, cum, a, b, lat + 0.25, 0.5)]
            lat += 1.0
    return out


def _ground_drawables(city: City) -> _Drawables:
    items = [(g.polygon, g.colour, g.material) for g in city.ground]
    degree = roads_at_nodes(city)
    for r in city.roads:
        w = r.half_width + r.sidewalk_width
        items.append((_geom.strip_polygon(r.points, w, -w), r.sidewalk_colour, "concrete"))
    for node, roads in degree.items():
        if len(roads) >= 2:
            w = max(r.half_width + r.sidewalk_width for r in roads)
            items.append((_geom.circle_polygon(city.nodes[node], w, 32), roads[0].sidewalk_colour, "concrete"))
    for r in city.roads:
        items.append((_geom.strip_polygon(r.points, r.half_width, -r.half_width), r.asphalt_colour, "asphalt"))
    for node, roads in degree.items():
        if len(roads) >= 2:
            w = max(r.half_width for r in roads)
            items.append((_geom.circle_polygon(city.nodes[node], w, 32), roads[0].asphalt_colour, "asphalt"))
    for r in city.roads:
        items += [(p, c, "line") for p, c in road_markings(r)]
    return _Drawables.build(items)


def _sun_offset(city: City) -> np.ndarray:
    """Horizontal shadow displacement per metre of height (points away from the sun)."""
    st = city.style
    az, el = math.radians(st.sun_azimuth_deg), math.radians(st.sun_elevation_deg)
    return -np.array([math.sin(az), math.cos(az)]) / math.tan(el)


def _sweep(poly: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    """Convex pieces whose union is the polygon swept along ``v`` (a prism's ground shadow)."""
    if _is_convex(poly):
        return [cv2.convexHull(np.concatenate([poly, poly + v]).astype(np.float32))[:, 0, :].astype(np.float64)]
    pieces = [poly, poly + v]
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        pieces.append(np.array([a, b, b + v, a + v]))
    return pieces


def _is_convex(poly: np.ndarray) -> bool:
    d = np.roll(poly, -1, axis=0) - poly
    cross = d[:, 0] * np.roll(d[:, 1], -1) - d[:, 1] * np.roll(d[:, 0], -1)
    return bool(np.all(cross >= -1e-9) or np.all(cross <= 1e-9))


def _shadow_drawables(city: City) -> _Drawables:
    """Opaque ground shadows: buildings, cars, trunks, poles."""
    v = _sun_offset(city)
    items = []
    for b in city.buildings:
        items += [(p, (255, 255, 255), "line") for p in _sweep(b.footprint, v * b.height)]
    for c in city.cars:
        items += [(p, (255, 255, 255), "line") for p in _sweep(c.footprint(), v * c.height)]
    for t in city.trees:
        base = _geom.circle_polygon((t.x, t.y), t.trunk_radius, 8)
        items += [(p, (255, 255, 255), "line") for p in _sweep(base, v * t.crown_z)]
    for p in city.poles:
        base = _geom.circle_polygon((p.x, p.y), p.radius, 8)
        items += [(q, (255, 255, 255), "line") for q in _sweep(base, v * p.height)]
    return _Drawables.build(items)


def _crown_shadow_ellipses(city: City) -> np.ndarray:
    """(N, 5) ground-shadow ellipses of crowns: centre x, y, semi-axis along the shadow, across it, angle."""
    st = city.style
    el = math.radians(st.sun_elevation_deg)
    v = _sun_offset(city)
    out = np.zeros((len(city.trees), 5))
    ang = math.atan2(v[1], v[0])
    for i, t in enumerate(city.trees):
        # support of the crown's vertical section across the sun rays, projected onto the ground
        support = math.hypot(t.crown_radius * math.sin(el), t.crown_half_height * math.cos(el))
        along = support / math.sin(el)
        cx, cy = np.array([t.x, t.y]) + v * t.crown_z
        out[i] = (cx, cy, along, t.crown_radius, ang)
    return out


@dataclass
class _TopObjects:
    """Roofs and crowns in ascending top height (painter's order for the orthophoto)."""

    kind: np.ndarray  # 0 building, 1 crown
    index: np.ndarray
    boxes: np.ndarray


def _top_objects(city: City) -> _TopObjects:
    tops, kinds, idx, boxes = [], [], [], []
    for i, b in enumerate(city.buildings):
        tops.append(b.height)
        kinds.append(0)
        idx.append(i)
        boxes.append(np.concatenate([b.footprint.min(axis=0), b.footprint.max(axis=0)]))
    for i, t in enumerate(city.trees):
        tops.append(t.top)
        kinds.append(1)
        idx.append(i)
        boxes.append([t.x - t.crown_radius, t.y - t.crown_radius, t.x + t.crown_radius, t.y + t.crown_radius])
    order = np.argsort(np.asarray(tops), kind="stable")
    return _TopObjects(np.asarray(kinds, dtype=np.int8)[order], np.asarray(idx, dtype=np.int64)[order],
                       np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[order])


def _car_pieces(car) -> list[tuple[np.ndarray, float]]:
    """Top view of a car: body, windscreen, rear window as (polygon, brightness factor)."""
    yaw = math.radians(car.yaw_deg)
    u = np.array([math.cos(yaw), math.sin(yaw)])
    c = np.array([car.x, car.y])
    L, W = car.length, car.width

    def band(f0, f1, inset):
        return _geom.rect_polygon(c + u * L * (0.5 * (f0 + f1) - 0.5), yaw, L * (f1 - f0), W - 2 * inset)

    return [(car.footprint(), 1.0), (band(0.62, 0.78, 0.15), 0.25), (band(0.2, 0.3, 0.18), 0.3)]


# --------------------------------------------------------------------------- city rasters


@dataclass
class _Chunk:
    """Pixel frame of one chunk being rendered (level 0, with ``PAD`` extra pixels around it)."""

    row0: int  # global row of the first (padded) row
    col0: int
    n: int
    m0: float
    top_y: float

    @property
    def rows(self) -> np.ndarray:
        return np.arange(self.row0, self.row0 + self.n)

    @property
    def cols(self) -> np.ndarray:
        return np.arange(self.col0, self.col0 + self.n)

    @property
    def xs(self) -> np.ndarray:
        """Local x of the pixel centres of each column."""
        return (self.cols + 0.5) * self.m0

    @property
    def ys(self) -> np.ndarray:
        """Local y of the pixel centres of each row."""
        return self.top_y - (self.rows + 0.5) * self.m0

    @property
    def box(self) -> tuple[float, float, float, float]:
        m, n = self.m0, self.n
        return (self.col0 * m, self.top_y - (self.row0 + n) * m, (self.col0 + n) * m, self.top_y - self.row0 * m)

    def px(self, pts) -> np.ndarray:
        """cv2 fixed-point drawing coordinates (pixel centres on integers) of local points."""
        p = np.asarray(pts, dtype=np.float64)
        c = p[:, 0] / self.m0 - 0.5 - self.col0
        r = (self.top_y - p[:, 1]) / self.m0 - 0.5 - self.row0
        return np.rint(np.stack([c, r], axis=1) * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)

    def select(self, boxes: np.ndarray) -> np.ndarray:
        """Indices of (xmin, ymin, xmax, ymax) boxes that overlap the chunk."""
        b, (x0, y0, x1, y1) = boxes, self.box
        return np.nonzero((b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0))[0]


@dataclass
class _Tables:
    """Per-object attributes as arrays, for vectorised shading."""

    roof_colour: np.ndarray
    roof_kind: np.ndarray
    height: np.ndarray
    roof_axis: np.ndarray  # ridge centre x, y and unit direction
    car_colour: np.ndarray
    car_height: np.ndarray
    car_boxes: np.ndarray
    trees: np.ndarray  # x, y, crown radius, crown half height, crown z, r, g, b

    @classmethod
    def build(cls, city: City) -> "_Tables":
        bs, cars = city.buildings, city.cars
        return cls(roof_colour=np.array([b.roof_colour for b in bs], np.float32).reshape(-1, 3),
                   roof_kind=np.array([_ROOF_KIND.get(b.roof_kind, 0) for b in bs], np.int8),
                   height=np.array([b.height for b in bs], np.float64),
                   roof_axis=np.array([_roof_axis(b.footprint) for b in bs]).reshape(-1, 4),
                   car_colour=np.array([c.colour for c in cars], np.float32).reshape(-1, 3),
                   car_height=np.array([c.height for c in cars], np.float64),
                   car_boxes=np.array([np.concatenate([c.footprint().min(axis=0), c.footprint().max(axis=0)])
                                       for c in cars]).reshape(-1, 4),
                   trees=np.array([[t.x, t.y, t.crown_radius, t.crown_half_height, t.crown_z, *t.colour]
                                   for t in city.trees], np.float64).reshape(-1, 8))


class CityRasters:
    """Lazily filled ``ground`` / ``top`` mip pyramids of one city (see module docstring)."""

    def __init__(self, city: City):
        self.city = city
        self.m0 = city.raster_mpp
        self.chunk_m = CHUNK_PX * self.m0
        self.nc = max(1, int(math.ceil(city.size_m / self.chunk_m - 1e-9)))
        self.n0 = self.nc * CHUNK_PX
        self.top_y = self.n0 * self.m0
        self.levels = LEVELS
        self.ground = [np.zeros((self.n0 >> lv, self.n0 >> lv, 3), np.uint8) for lv in range(LEVELS)]
        self.top = [np.zeros((self.n0 >> lv, self.n0 >> lv, 3), np.uint8) for lv in range(LEVELS)]
        self.ready = np.zeros((self.nc, self.nc), bool)
        pal = palette_for(city.style.palette)
        self.countryside = np.array(pal.countryside, dtype=np.uint8)
        self.base_colour = pal.paving[0]
        self._ground = _ground_drawables(city)
        self._shadows = _shadow_drawables(city)
        self._ellipses = _crown_shadow_ellipses(city)
        e = self._ellipses
        self._ell_boxes = np.stack([e[:, 0] - e[:, 2], e[:, 1] - e[:, 2], e[:, 0] + e[:, 2], e[:, 1] + e[:, 2]], axis=1)
        self._top = _top_objects(city)
        self._tables = _Tables.build(city)

    # ---- coordinates

    def local_to_pixel(self, x, y, level: int = 0):
        """Continuous (row, col) of local points at ``level``: pixel ``(R, C)`` spans ``[R, R + 1) x [C, C + 1)``."""
        m = self.m0 * (1 << level)
        return (self.top_y - np.asarray(y)) / m, np.asarray(x) / m

    # ---- chunk management

    def ensure_box(self, xmin: float, ymin: float, xmax: float, ymax: float) -> None:
        """Render every chunk that intersects the local box (clipped to the raster)."""
        if xmax < 0 or ymax < 0 or xmin > self.top_y or ymin > self.top_y:
            return
        c0 = int(np.clip(math.floor(xmin / self.chunk_m), 0, self.nc - 1))
        c1 = int(np.clip(math.floor(xmax / self.chunk_m), 0, self.nc - 1))
        r0 = int(np.clip(math.floor((self.top_y - ymax) / self.chunk_m), 0, self.nc - 1))
        r1 = int(np.clip(math.floor((self.top_y - ymin) / self.chunk_m), 0, self.nc - 1))
        for ci in range(r0, r1 + 1):
            for cj in range(c0, c1 + 1):
                if not self.ready[ci, cj]:
                    self._render_chunk(ci, cj)

    def ensure_all(self, progress=None) -> None:
        """Render every chunk; ``progress(1)`` is called once per chunk."""
        for ci in range(self.nc):
            for cj in range(self.nc):
                if not self.ready[ci, cj]:
                    self._render_chunk(ci, cj)
                if progress is not None:
                    progress(1)

    # ---- chunk rendering

    def _render_chunk(self, ci: int, cj: int) -> None:
        ch = _Chunk(ci * CHUNK_PX - PAD, cj * CHUNK_PX - PAD, CHUNK_PX + 2 * PAD, self.m0, self.top_y)
        nz = noise(self.city)
        rows, cols = ch.rows, ch.cols
        albedo, material = self._albedo(ch)
        tex = _TEX_TABLE[material]
        shade = 1.0 + tex[..., 0] * nz.grid(0, rows, cols) + tex[..., 1] * nz.grid(1, rows, cols) \
            + tex[..., 2] * nz.grid(2, rows, cols)
        lit = self._ground_light(ch, nz)
        k = light_factor(self.city.style.sun_elevation_deg)
        factor = (k + (1.0 - k) * lit)[..., None] * (SHADOW_TINT + (1.0 - SHADOW_TINT) * lit[..., None])
        ground = albedo.astype(np.float32) * (shade[..., None] * factor)
        size = self.city.size_m
        xs, ys = ch.xs, ch.ys
        outside = ~(((xs >= 0) & (xs <= size))[None, :] & ((ys >= 0) & (ys <= size))[:, None])
        if outside.any():
            field = 1.0 + 0.05 * nz.grid(1, rows, cols) + 0.12 * nz.grid(2, rows, cols)
            ground[outside] = self.countryside.astype(np.float32) * field[outside][:, None]
        top = self._top_layer(ground.copy(), ch, nz)
        top[outside] = ground[outside]
        inner = (slice(PAD, -PAD), slice(PAD, -PAD))
        self._store(self.ground, np.clip(ground[inner] + 0.5, 0, 255).astype(np.uint8), ci, cj)
        self._store(self.top, np.clip(top[inner] + 0.5, 0, 255).astype(np.uint8), ci, cj)
        self.ready[ci, cj] = True

    def _store(self, pyramid, img: np.ndarray, ci: int, cj: int) -> None:
        for level in range(LEVELS):
            s = CHUNK_PX >> level
            pyramid[level][ci * s:(ci + 1) * s, cj * s:(cj + 1) * s] = img
            if level + 1 < LEVELS:
                img = cv2.resize(img, (s // 2, s // 2), interpolation=cv2.INTER_AREA)

    def _albedo(self, ch: _Chunk):
        """Ground colours and materials: base paving, ground features, sidewalks, asphalt, markings."""
        albedo = np.empty((ch.n, ch.n, 3), np.uint8)
        albedo[:] = self.base_colour
        material = np.full((ch.n, ch.n), MATERIAL_ID["paving"], np.uint8)
        d = self._ground
        for i in ch.select(d.boxes):
            pts = ch.px(d.polys[i])
            cv2.fillPoly(albedo, [pts], tuple(int(v) for v in d.colours[i]), cv2.LINE_8, SHIFT)
            cv2.fillPoly(material, [pts], int(d.materials[i]), cv2.LINE_8, SHIFT)
        return albedo, material

    def _ground_light(self, ch: _Chunk, nz: Noise) -> np.ndarray:
        """Fraction of direct sun on the ground (soft-edged opaque shadows, dappled crown shadows)."""
        mask = np.zeros((ch.n, ch.n), np.uint8)
        d = self._shadows
        for i in ch.select(d.boxes):
            cv2.fillPoly(mask, [ch.px(d.polys[i])], 255, cv2.LINE_8, SHIFT)
        lit = 1.0 - cv2.GaussianBlur(mask, (5, 5), 0.8).astype(np.float32) / 255.0
        tmask = np.zeros((ch.n, ch.n), np.uint8)
        for i in ch.select(self._ell_boxes):
            cx, cy, ax_along, ax_across, ang = self._ellipses[i]
            cv2.fillPoly(tmask, [ch.px(_geom.ellipse_polygon((cx, cy), ax_along, ax_across, ang, 40))], 255,
                         cv2.LINE_8, SHIFT)
        if tmask.any():
            tmask = cv2.GaussianBlur(tmask, (9, 9), 2.0)
            dapple = np.clip(0.85 + 0.25 * nz.grid(1, ch.rows, ch.cols) + 0.1 * nz.grid(0, ch.rows, ch.cols), 0, 1)
            lit = np.minimum(lit, 1.0 - TREE_SHADOW * dapple * (tmask.astype(np.float32) / 255.0))
        return lit

    def _top_layer(self, img: np.ndarray, ch: _Chunk, nz: Noise) -> np.ndarray:
        """Car tops, then roofs and crowns in ascending height, over the shaded ground."""
        self._draw_cars(img, ch)
        t = self._top
        sel = ch.select(t.boxes)
        if len(sel) == 0:
            return img
        city = self.city
        ids = np.zeros((ch.n, ch.n), np.int32)  # 0: none, >0: building index + 1, <0: -(tree index + 1)
        for k in sel:
            i = int(t.index[k])
            if t.kind[k] == 0:
                cv2.fillPoly(ids, [ch.px(city.buildings[i].footprint)], i + 1, cv2.LINE_8, SHIFT)
            else:
                tr = city.trees[i]
                cv2.fillPoly(ids, [ch.px(_geom.circle_polygon((tr.x, tr.y), tr.crown_radius, 28))], -(i + 1),
                             cv2.LINE_8, SHIFT)
        rr, cc = np.nonzero(ids > 0)
        if len(rr):
            img[rr, cc] = self._roofs(ids, rr, cc, ch, nz)
        rr, cc = np.nonzero(ids < 0)
        if len(rr):
            img[rr, cc] = self._crowns(ids, rr, cc, ch, nz)
        return img

    def _draw_cars(self, img: np.ndarray, ch: _Chunk) -> None:
        tb = self._tables
        sel = ch.select(tb.car_boxes)
        if len(sel) == 0:
            return
        car_id = np.zeros((ch.n, ch.n), np.int32)
        part = np.zeros((ch.n, ch.n), np.uint8)
        for i in sel:
            for k, (poly, _) in enumerate(_car_pieces(self.city.cars[i])):
                if k == 0:
                    cv2.fillPoly(car_id, [ch.px(poly)], int(i) + 1, cv2.LINE_8, SHIFT)
                cv2.fillPoly(part, [ch.px(poly)], k + 1, cv2.LINE_8, SHIFT)
        rr, cc = np.nonzero(car_id)
        if len(rr) == 0:
            return
        ids = car_id[rr, cc] - 1
        style = self.city.style
        lit = sun_shadow(self.city).lit(ch.xs[cc], ch.ys[rr], tb.car_height[ids])
        bright = lambert(style.sun_vector[2], lit, style.sun_elevation_deg).astype(np.float32)
        glass = np.array([1.0, 1.0, 0.25, 0.3], np.float32)[part[rr, cc]][:, None]
        edge = _edge_mask(car_id)[rr, cc]
        col = tb.car_colour[ids] * glass + (1 - glass) * np.array([30, 36, 44], np.float32)
        img[rr, cc] = col * (bright * np.where(edge, 0.7, 1.0))[:, None]

    def _roofs(self, ids, rr, cc, ch: _Chunk, nz: Noise) -> np.ndarray:
        """Roof colours: per-kind texture, pitched-looking tiled roofs, parapet rims, cast shadows."""
        tb = self._tables
        style = self.city.style
        sun = style.sun_vector
        bi = ids[rr, cc] - 1
        x, y = ch.xs[cc], ch.ys[rr]
        kinds = tb.roof_kind[bi]
        ax = tb.roof_axis[bi]  # ridge centre x, y and unit direction
        dx, dy = x - ax[:, 0], y - ax[:, 1]
        along = dx * ax[:, 2] + dy * ax[:, 3]
        across = -dx * ax[:, 3] + dy * ax[:, 2]
        gr, gc = ch.rows[rr], ch.cols[cc]
        fine, med = nz.at(0, gr, gc), nz.at(1, gr, gc)
        tex = 1.0 + _ROOF_FINE[kinds] * fine + _ROOF_MEDIUM[kinds] * med
        seams = kinds == 1  # membrane sheets
        tex[seams] += 0.05 * (np.mod(along[seams], 1.2) < 0.06)
        for kind, period, amp in ((3, 0.33, 0.08), (4, 0.6, 0.08)):  # tile rows, metal ribs
            m = kinds == kind
            tex[m] += amp * np.sin(across[m] * (2 * np.pi / period)).astype(np.float32)
        # tiled roofs are shaded as if pitched 30 degrees either side of the ridge (the prism stays flat;
        # from the street a roof above the camera is never seen)
        tilt = math.radians(30.0)
        nx = np.where(kinds == 3, np.sign(across) * math.sin(tilt), 0.0)
        nzz = np.where(kinds == 3, math.cos(tilt), 1.0)
        n_dot_l = nx * (-ax[:, 3] * sun[0] + ax[:, 2] * sun[1]) + nzz * sun[2]
        lit = sun_shadow(self.city).lit(x, y, tb.height[bi])
        bright = lambert(n_dot_l, lit, style.sun_elevation_deg).astype(np.float32)
        edge = _edge_mask(ids)[rr, cc]
        rim = _edge_mask(ids, 5)[rr, cc] & ~edge & (kinds != 3)
        bright = bright * np.where(edge, 0.72, np.where(rim, 1.12, 1.0))
        return tb.roof_colour[bi] * (tex * bright)[:, None]

    def _crowns(self, ids, rr, cc, ch: _Chunk, nz: Noise) -> np.ndarray:
        """Crowns seen from above: ellipsoid normals lit by the sun, building shadows, leaf clumps."""
        style = self.city.style
        tr = self._tables.trees[-ids[rr, cc] - 1]
        x, y = ch.xs[cc], ch.ys[rr]
        dx, dy = (x - tr[:, 0]) / tr[:, 2], (y - tr[:, 1]) / tr[:, 2]
        h = np.sqrt(1.0 - np.clip(dx * dx + dy * dy, 0.0, 1.0))
        # ellipsoid normal at the top surface: (dx / a, dy / a, h / c), normalised
        n = np.stack([dx / tr[:, 2], dy / tr[:, 2], h / tr[:, 3]], axis=1)
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        lit = sun_shadow(self.city).lit(x, y, tr[:, 4] + tr[:, 3] * h)
        bright = lambert(n @ style.sun_vector, lit, style.sun_elevation_deg).astype(np.float32)
        gr, gc = ch.rows[rr], ch.cols[cc]
        leaves = 1.0 + 0.22 * nz.at(1, gr, gc) + 0.12 * nz.at(0, gr, gc)
        return tr[:, 5:8].astype(np.float32) * (bright * leaves * (0.8 + 0.2 * h))[:, None]


_ROOF_KIND = {"gravel": 0, "membrane": 1, "tar": 2, "tiles": 3, "metal": 4, "green": 5}
_ROOF_FINE = np.array([0.09, 0.02, 0.05, 0.05, 0.02, 0.1], np.float32)  # noise amplitudes per roof kind
_ROOF_MEDIUM = np.array([0.04, 0.0, 0.05, 0.0, 0.0, 0.18], np.float32)


def _roof_axis(poly: np.ndarray) -> np.ndarray:
    """Centre and unit direction of the longest edge (the ridge direction of pitched-looking roofs)."""
    d = np.roll(poly, -1, axis=0) - poly
    k = int(np.argmax(np.linalg.norm(d, axis=1)))
    u = d[k] / np.linalg.norm(d[k])
    centre = poly.mean(axis=0)
    # ridge through the middle of the footprint's extent across the axis
    v = np.array([-u[1], u[0]])
    lo, hi = _geom.extent_along(poly, v)
    centre = centre + v * (0.5 * (lo + hi) - centre @ v)
    return np.array([centre[0], centre[1], u[0], u[1]])


def _edge_mask(ids: np.ndarray, k: int = 3) -> np.ndarray:
    """Pixels within ``k // 2`` pixels of a change of id."""
    f = ids.astype(np.float32)
    kernel = np.ones((k, k), np.uint8)
    return (cv2.dilate(f, kernel) != f) | (cv2.erode(f, kernel) != f)


def rasters(city: City) -> CityRasters:
    return city.cached("rasters", lambda: CityRasters(city))

