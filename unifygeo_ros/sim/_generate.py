"""Procedural generation of a city (called by :func:`unifygeo_ros.sim.world.generate_city`).

Pipeline, all driven by child generators of one ``SeedSequence(seed)`` (so a seed fixes
the world bit for bit):

1. *Road layout* in a "design space": a square a little larger than the city is split by
   a few arterial lines (two main directions with angle jitter, sometimes a diagonal),
   then every block is split recursively by local streets roughly across its longest
   extent, at a random position and angle, until it is shorter than a size drawn from
   the style. Blocks stay convex; T-junctions and offset junctions arise naturally.
2. *Road graph*: every straight road piece is cut at the junctions on it.
3. *Warp*: a smooth, area-preserving shear field bends straight roads into gentle curves.
4. *Blocks* are inset by the road and sidewalk widths and filled (in design space, then
   warped): buildings along the street frontage (rectangles, L-shapes, podium + tower,
   rooftop plant rooms, driveways), parks (paths, ponds), parking lots (stalls, cars).
5. *Street furniture* in world space along the warped roads: street trees, lamp poles,
   parked and driving cars; yard and park trees, avoiding everything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from unifygeo_ros.sim import _geom
from unifygeo_ros.sim._palette import Palette, jitter_colour, palette_for, pick
from unifygeo_ros.sim.scene import Building, Car, CityStyle, GroundFeature, Pole, Road, Tree

MARGIN_M = 50.0  # the design space extends this far beyond the city square
_CURTAIN_WALL_FRAMES = ((190, 194, 198), (150, 156, 164), (110, 116, 124), (200, 200, 196))
_EPS = 1e-9


# --------------------------------------------------------------------------- road layout


@dataclass
class _Chord:
    """A straight road piece in design space."""

    p0: np.ndarray
    p1: np.ndarray
    kind: str
    lanes: int
    lane_width: float
    parking_width: float
    sidewalk_width: float

    @property
    def half_width(self) -> float:
        return self.lanes * self.lane_width + self.parking_width

    @property
    def reserve(self) -> float:
        """Centre line to the back of the sidewalk."""
        return self.half_width + self.sidewalk_width


@dataclass
class _Block:
    poly: np.ndarray  # convex, CCW, design space
    labels: list[int]  # chord index bordering edge i -> i+1, or -1 (design-space boundary)
    target: float  # split while longer than this (centre line to centre line)
    grid: float  # orientation (radians) of the local street grid


def _road_params(rng: np.random.Generator, kind: str, style: CityStyle) -> dict:
    local, arterial = style.road_width_m
    lanes = 2 if kind == "arterial" else 1
    width = (arterial if kind == "arterial" else local) * rng.uniform(0.92, 1.08)
    half = 0.5 * width
    lane_w = rng.uniform(3.0, 3.5)
    spare = half - lanes * lane_w
    parking = min(spare, rng.uniform(2.2, 2.6)) if spare >= 1.9 else 0.0
    lane_w = (half - parking) / lanes
    sidewalk = style.sidewalk_width_m * rng.uniform(0.85, 1.15) + (0.5 if kind == "arterial" else 0.0)
    return dict(kind=kind, lanes=lanes, lane_width=lane_w, parking_width=parking, sidewalk_width=sidewalk)


def _clean(poly: np.ndarray, labels: list[int]) -> tuple[np.ndarray, list[int]]:
    """Drop zero-length edges (keeping the label of the edge that follows)."""
    keep_p, keep_l = [], []
    k = len(poly)
    for i in range(k):
        if np.linalg.norm(poly[(i + 1) % k] - poly[i]) > 1e-7:
            keep_p.append(poly[i])
            keep_l.append(labels[i])
    return np.array(keep_p).reshape(-1, 2), keep_l


def _split_block(poly: np.ndarray, labels: list[int], point: np.ndarray, direction: np.ndarray, label: int):
    """Cut a convex polygon by the line through ``point`` along ``direction``.

    Returns ``((left, left_labels), (right, right_labels), chord)`` or None if the line
    misses; the new edges on both sides carry ``label``.
    """
    normal = np.array([-direction[1], direction[0]])
    side = (poly - point) @ normal
    if side.max() <= 1e-6 or side.min() >= -1e-6:
        return None
    left, left_l, right, right_l, chord = [], [], [], [], []
    k = len(poly)
    for i in range(k):
        j = (i + 1) % k
        if side[i] >= 0:
            left.append(poly[i])
            left_l.append(labels[i])
        else:
            right.append(poly[i])
            right_l.append(labels[i])
        if (side[i] >= 0) != (side[j] >= 0):
            t = side[i] / (side[i] - side[j])
            q = poly[i] + t * (poly[j] - poly[i])
            chord.append(q)
            if side[i] >= 0:
                left.append(q)
                left_l.append(label)
                right.append(q)
                right_l.append(labels[i])
            else:
                right.append(q)
                right_l.append(label)
                left.append(q)
                left_l.append(labels[i])
    if len(chord) != 2:
        return None
    a = _clean(np.array(left), left_l)
    b = _clean(np.array(right), right_l)
    if len(a[0]) < 3 or len(b[0]) < 3:
        return None
    return a, b, np.array(chord)


def _min_width(poly: np.ndarray) -> float:
    widths = []
    for n in _geom.outward_normals(poly):
        lo, hi = _geom.extent_along(poly, n)
        widths.append(hi - lo)
    return min(widths)


def _longest_axis(poly: np.ndarray) -> tuple[np.ndarray, float]:
    best, best_ext = None, -1.0
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        d = b - a
        d = d / max(np.linalg.norm(d), 1e-12)
        lo, hi = _geom.extent_along(poly, d)
        if hi - lo > best_ext:
            best, best_ext = d, hi - lo
    return best, best_ext


def _split_everywhere(blocks, chords, point, direction, params, rng, style):
    out = []
    for blk in blocks:
        res = _split_block(blk.poly, blk.labels, point, direction, len(chords))
        if res is None:
            out.append(blk)
            continue
        (lp, ll), (rp, rl), chord = res
        chords.append(_Chord(chord[0], chord[1], **params))
        out.append(_Block(lp, ll, rng.uniform(*style.block_size_m), blk.grid))
        out.append(_Block(rp, rl, rng.uniform(*style.block_size_m), blk.grid))
    return out


def _road_layout(rng: np.random.Generator, size: float, style: CityStyle):
    lo, hi = -MARGIN_M, size + MARGIN_M
    domain = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]], dtype=np.float64)
    theta = rng.uniform(0.0, math.pi)
    blocks = [_Block(domain, [-1, -1, -1, -1], rng.uniform(*style.block_size_m), theta)]
    chords: list[_Chord] = []
    centre = np.array([0.5 * (lo + hi), 0.5 * (lo + hi)])
    directions = [theta, theta + math.pi / 2 + math.radians(rng.normal(0.0, style.road_angle_jitter_deg))]
    span = hi - lo
    for ang in directions:
        normal = np.array([-math.sin(ang), math.cos(ang)])
        count = max(1, int(round(span / style.arterial_spacing_m)))
        for i in range(count):
            off = ((i + 0.5) / count - 0.5 + rng.uniform(-0.12, 0.12) / count) * span * 0.9
            a = ang + math.radians(rng.normal(0.0, 0.5 * style.road_angle_jitter_deg))
            params = _road_params(rng, "arterial", style)
            blocks = _split_everywhere(blocks, chords, centre + normal * off,
                                       np.array([math.cos(a), math.sin(a)]), params, rng, style)
    if size >= 400 and rng.random() < 0.4:
        a = theta + math.pi / 4 + rng.uniform(-0.2, 0.2)
        point = centre + rng.uniform(-0.25, 0.25, 2) * size
        blocks = _split_everywhere(blocks, chords, point, np.array([math.cos(a), math.sin(a)]),
                                   _road_params(rng, "arterial", style), rng, style)

    # some neighbourhoods get their own street-grid orientation
    district_area = (2.0 * style.block_size_m[1]) ** 2
    for blk in blocks:
        if _geom.signed_area(blk.poly) > district_area and rng.random() < style.road_angle_jitter_deg / 30.0:
            blk.grid = theta + rng.uniform(-0.5, 0.5) * math.pi / 2
    min_w = 0.9 * style.block_size_m[0]
    queue, final = blocks[::-1], []
    while queue:
        blk = queue.pop()
        children = _split_local(blk, chords, rng, style, min_w)
        if children is None:
            final.append(blk)
        else:
            queue.extend(children[::-1])
    return chords, final


def _split_local(blk: _Block, chords, rng, style, min_w):
    """Split a block across the longer of its two grid axes, or return None when small enough."""
    axes = [np.array([math.cos(blk.grid), math.sin(blk.grid)]), np.array([-math.sin(blk.grid), math.cos(blk.grid)])]
    extents = [_geom.extent_along(blk.poly, a) for a in axes]
    k = int(np.argmax([hi - lo for lo, hi in extents]))
    axis, (lo, hi) = axes[k], extents[k]
    if hi - lo <= blk.target:
        return None
    centroid = blk.poly.mean(axis=0)
    base_ang = blk.grid + (math.pi / 2 if k == 0 else 0.0)
    for _ in range(6):
        a = base_ang + math.radians(rng.normal(0.0, 0.4 * style.road_angle_jitter_deg))
        f = rng.uniform(0.38, 0.62)
        point = centroid + axis * (lo + f * (hi - lo) - centroid @ axis)
        res = _split_block(blk.poly, blk.labels, point, np.array([math.cos(a), math.sin(a)]), len(chords))
        if res is None:
            continue
        (lp, ll), (rp, rl), chord = res
        if min(_min_width(lp), _min_width(rp)) < min_w:
            continue
        chords.append(_Chord(chord[0], chord[1], **_road_params(rng, "local", style)))
        return [_Block(lp, ll, rng.uniform(*style.block_size_m), blk.grid),
                _Block(rp, rl, rng.uniform(*style.block_size_m), blk.grid)]
    return None


# --------------------------------------------------------------------------- road graph


def _road_graph(chords: list[_Chord]):
    """Nodes (design space) and edges ``(chord index, node a, node b)``."""
    nodes: list[np.ndarray] = []

    def node_id(p):
        if nodes:
            d = np.linalg.norm(np.asarray(nodes) - p, axis=1)
            k = int(np.argmin(d))
            if d[k] < 1e-4:
                return k
        nodes.append(p)
        return len(nodes) - 1

    ends = np.array([[c.p0, c.p1] for c in chords]).reshape(-1, 2)
    edges = []
    for i, c in enumerate(chords):
        d = c.p1 - c.p0
        length = np.linalg.norm(d)
        t = (ends - c.p0) @ d / length ** 2
        perp = np.abs((ends - c.p0) @ np.array([-d[1], d[0]])) / length
        on = (perp < 1e-5) & (t > -1e-9) & (t < 1 + 1e-9)
        ts = np.unique(np.concatenate([[0.0, 1.0], np.clip(t[on], 0.0, 1.0)]))
        ids = [node_id(c.p0 + tt * d) for tt in ts]
        for a, b in zip(ids[:-1], ids[1:]):
            if a != b:
                edges.append((i, a, b))
    return np.array(nodes), edges


# --------------------------------------------------------------------------- warp


class _Warp:
    """Sum of shear waves ``amp * dir * sin(k . p + phase)`` with ``k`` perpendicular to ``dir``."""

    def __init__(self, rng: np.random.Generator, curvature: float):
        self.terms = []
        for _ in range(3):
            wavelength = rng.uniform(260.0, 560.0)
            ang = rng.uniform(0.0, math.pi)
            direction = np.array([math.cos(ang), math.sin(ang)])
            k = 2 * math.pi / wavelength * np.array([-direction[1], direction[0]])
            amp = 0.08 * curvature * wavelength / (2 * math.pi)  # maximum slope 0.08 * curvature per wave
            self.terms.append((amp, direction, k, rng.uniform(0.0, 2 * math.pi)))

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64)
        out = pts.copy()
        for amp, direction, k, phase in self.terms:
            out = out + amp * np.sin(pts @ k + phase)[..., None] * direction
        return out

    def yaw(self, p: np.ndarray, yaw_rad: float) -> float:
        """ENU yaw (radians) after warping of a direction ``yaw_rad`` at design point ``p``."""
        u = np.array([math.cos(yaw_rad), math.sin(yaw_rad)])
        d = self(np.stack([p, p + 0.5 * u]))
        v = d[1] - d[0]
        return math.atan2(v[1], v[0])


# --------------------------------------------------------------------------- roads in world space


def _make_roads(nodes_d, edges, chords, warp, rng, pal: Palette):
    nodes_w = warp(nodes_d)
    polylines = [warp(_geom.densify(np.stack([nodes_d[a], nodes_d[b]]), 4.0)) for _, a, b in edges]
    incident: dict[int, list[tuple[int, np.ndarray]]] = {}
    for e, ((ci, a, b), pl) in enumerate(zip(edges, polylines)):
        da = pl[1] - pl[0]
        db = pl[-2] - pl[-1]
        incident.setdefault(a, []).append((e, da / np.linalg.norm(da)))
        incident.setdefault(b, []).append((e, db / np.linalg.norm(db)))

    def trim(e, node, direction):
        others = incident[node]
        if len(others) < 3:
            return 0.0
        r = 0.0
        for f, d in others:
            if f != e and float(d @ direction) > -0.9:
                r = max(r, chords[edges[f][0]].reserve)
        return r + 0.5

    roads = []
    for e, ((ci, a, b), pl) in enumerate(zip(edges, polylines)):
        c = chords[ci]
        da = dict(incident[a])[e]
        db = dict(incident[b])[e]
        ta, tb = trim(e, a, da), trim(e, b, db)
        p_cross = 0.8 if c.kind == "arterial" else 0.45
        roads.append(Road(points=pl, lanes=c.lanes, lane_width=c.lane_width, parking_width=c.parking_width,
                          sidewalk_width=c.sidewalk_width, kind=c.kind, start_node=a, end_node=b,
                          trim_start=ta, trim_end=tb,
                          crosswalk_start=ta > 0 and rng.random() < p_cross,
                          crosswalk_end=tb > 0 and rng.random() < p_cross,
                          asphalt_colour=jitter_colour(rng, pal.asphalt, 4.0),
                          sidewalk_colour=jitter_colour(rng, pal.sidewalk, 5.0),
                          centre_colour=pal.centre_line if c.lanes > 1 else pal.lane_line,
                          line_colour=pal.lane_line))
    return nodes_w, roads


# --------------------------------------------------------------------------- blocks


def _inset_block(blk: _Block, chords) -> np.ndarray:
    poly = blk.poly
    inward = -_geom.outward_normals(poly)
    out = poly
    for i, lab in enumerate(blk.labels):
        d = chords[lab].reserve if lab >= 0 else 0.0
        out = _geom.clip_halfplane(out, inward[i], float(inward[i] @ poly[i]) + d)
        if len(out) < 3:
            return out
    return out


def _inside_convex(poly: np.ndarray, pts: np.ndarray, margin: float = 0.0) -> bool:
    inward = -_geom.outward_normals(poly)
    vals = (pts[:, None, :] - poly[None, :, :]) * inward[None]
    return bool(np.all(vals.sum(axis=2) >= margin - 1e-9))


class _Lot:
    """Rectangles (convex pieces) already used in one block, for overlap tests."""

    def __init__(self):
        self.pieces: list[np.ndarray] = []
        self.boxes = np.zeros((0, 4))

    def free(self, piece: np.ndarray, gap: float) -> bool:
        if not self.pieces:
            return True
        lo, hi = piece.min(axis=0) - gap, piece.max(axis=0) + gap
        near = np.nonzero((self.boxes[:, 0] < hi[0]) & (self.boxes[:, 2] > lo[0]) &
                          (self.boxes[:, 1] < hi[1]) & (self.boxes[:, 3] > lo[1]))[0]
        return not any(_geom.convex_overlap(piece, self.pieces[k], 0.5 * gap - 1e-3) for k in near)

    def add(self, piece: np.ndarray) -> None:
        self.pieces.append(piece)
        self.boxes = np.vstack([self.boxes, np.concatenate([piece.min(axis=0), piece.max(axis=0)])])


def _frame_poly(origin, t, n, uv) -> np.ndarray:
    uv = np.asarray(uv, dtype=np.float64)
    return origin + uv[:, :1] * t + uv[:, 1:2] * n


def _height(rng, style: CityStyle, bias: float, floor_h: float) -> float:
    lo, hi = style.height_range_m
    u = min(1.0, (rng.random() ** 1.5) * bias)
    h = lo + (hi - lo) * u
    floors = max(1, int(round((h - 0.6) / floor_h)))
    h = floors * floor_h + rng.uniform(0.3, 1.0)
    return float(np.clip(h, max(3.0, lo), min(40.0, hi)))


def _detached(style: CityStyle) -> bool:
    """Houses with front yards (and driveways) rather than buildings lining the sidewalk."""
    return style.setback_m[0] >= 3.0


def _high_rise(style: CityStyle) -> bool:
    """A business district: glass towers and shop fronts are common."""
    return style.tower_fraction >= 0.2


def _roof_kind(rng, pal: Palette, style: CityStyle, tall: bool) -> str:
    kinds = list(pal.roof_kind_weights)
    w = np.array([pal.roof_kind_weights[k] for k in kinds])
    if _detached(style) and "tiles" in kinds:
        w[kinds.index("tiles")] *= 4.0
    if tall and "tiles" in kinds:
        w[kinds.index("tiles")] *= 0.1
    return kinds[int(rng.choice(len(kinds), p=w / w.sum()))]


def _building_look(rng, pal: Palette, style: CityStyle, theme, height: float, glass: bool) -> dict:
    detached = _detached(style)
    facade = jitter_colour(rng, pick(rng, theme) if rng.random() < 0.7 else pick(rng, pal.facades), 12.0)
    kind = _roof_kind(rng, pal, style, height > 15.0)
    floor_h = rng.uniform(2.7, 3.0) if detached else rng.uniform(3.0, 3.7)
    spacing = rng.uniform(3.0, 4.2) if detached else rng.uniform(2.4, 4.2)
    if glass:
        floor_h = rng.uniform(3.4, 4.0)
        win_w = spacing - rng.uniform(0.12, 0.35)
        win_h = floor_h - rng.uniform(0.3, 0.7)
        sill = 0.5 * (floor_h - win_h)
        facade = jitter_colour(rng, pick(rng, _CURTAIN_WALL_FRAMES), 8.0)
    else:
        win_w = spacing * rng.uniform(0.32, 0.6)
        win_h = floor_h * rng.uniform(0.35, 0.55)
        sill = rng.uniform(0.75, 1.0)
    return dict(roof_colour=jitter_colour(rng, pick(rng, pal.roofs[kind]), 10.0), facade_colour=facade,
                window_colour=jitter_colour(rng, pick(rng, pal.glass), 8.0), roof_kind=kind, floor_height=floor_h,
                window_width=win_w, window_height=win_h, window_spacing=spacing, sill_height=sill,
                shopfront=(not detached) and height >= 6.0 and rng.random() < (0.75 if _high_rise(style) else 0.4))


def _rooftop_units(rng, rect_uv, origin, t, n, roof_h: float) -> list[dict]:
    """Plant rooms on a flat roof given by its (u0, v0, u1, v1) rectangle in the lot frame."""
    u0, v0, u1, v1 = rect_uv
    out = []
    for _ in range(int(rng.integers(1, 4))):
        w, d = rng.uniform(1.5, 4.5), rng.uniform(1.5, 3.5)
        if u1 - u0 < w + 2.0 or v1 - v0 < d + 2.0:
            continue
        uu = rng.uniform(u0 + 1.0, u1 - 1.0 - w)
        vv = rng.uniform(v0 + 1.0, v1 - 1.0 - d)
        h = roof_h + rng.uniform(1.0, 2.6)
        if h > 40.0:
            continue
        grey = int(rng.integers(150, 215))
        out.append(dict(footprint=_frame_poly(origin, t, n, [[uu, vv], [uu + w, vv], [uu + w, vv + d], [uu, vv + d]]),
                        height=h, roof_colour=(grey + 8, grey + 8, grey + 6), facade_colour=(grey, grey, grey - 4),
                        window_colour=(60, 60, 64), roof_kind="metal", floor_height=3.0, window_width=0.0,
                        window_height=0.0, window_spacing=3.0, sill_height=0.0, shopfront=False, kind="unit"))
    return out


def _fill_frontage(blk_poly, labels, chords, rng, style: CityStyle, pal: Palette):
    """Buildings (design space, one list of prisms per lot) along the street edges of one inset block,
    plus driveways and their cars."""
    lot = _Lot()
    buildings, ground, cars = [], [], []
    theme = [pick(rng, pal.facades) for _ in range(3)]
    bias = rng.uniform(0.55, 1.25)
    detached = _detached(style)
    k = len(blk_poly)
    start = int(rng.integers(k))
    for step in range(k):
        i = (start + step) % k
        if labels[i] < 0:
            continue
        a, b = blk_poly[i], blk_poly[(i + 1) % k]
        length = float(np.linalg.norm(b - a))
        if length < 8.0:
            continue
        t = (b - a) / length
        n = np.array([-t[1], t[0]])
        s = rng.uniform(0.0, 3.0)
        while s < length - 6.0:
            w = rng.uniform(*style.building_width_m)
            gap = rng.uniform(*style.building_gap_m)
            if rng.random() > style.building_density:
                s += 0.6 * w + gap
                continue
            w = min(w, length - s)
            setback = 0.3 + rng.uniform(*style.setback_m)
            placed = False
            for shrink in (1.0, 0.8, 0.62, 0.48):
                d = rng.uniform(*style.building_depth_m) * shrink
                if w < 6.0 or d < 6.0:
                    break
                made = _lot_building(rng, style, pal, theme, bias, a, t, n, s, w, setback, d, blk_poly, lot, gap)
                if made is not None:
                    buildings.append(made)
                    placed = True
                    break
            if placed:
                if detached and setback >= 4.5:
                    dw = rng.uniform(2.8, 3.4)
                    u0 = s + w - dw - 0.5
                    ground.append(("driveway", _frame_poly(a, t, n, [[u0, 0.0], [u0 + dw, 0.0], [u0 + dw, setback],
                                                                  [u0, setback]]), "paving"))
                    if setback >= 5.8 and rng.random() < style.car_density + 0.2:
                        centre = a + t * (u0 + 0.5 * dw) + n * (0.5 * setback)
                        cars.append((centre, math.atan2(n[1], n[0]) + (math.pi if rng.random() < 0.5 else 0.0)))
                s += w + gap
            else:
                s += 2.0
    if not detached and style.building_density > 0.6:
        buildings.extend(_infill(blk_poly, rng, style, pal, theme, bias, lot))
    return buildings, ground, cars


def _infill(blk_poly, rng, style: CityStyle, pal: Palette, theme, bias, lot: _Lot):
    """Back-lot buildings in the block interior (dense styles), aligned with the longest block edge."""
    out = []
    edges = np.roll(blk_poly, -1, axis=0) - blk_poly
    t = edges[int(np.argmax(np.linalg.norm(edges, axis=1)))]
    t = t / np.linalg.norm(t)
    n = np.array([-t[1], t[0]])
    area = _geom.signed_area(blk_poly)
    attempts = int(area / 250.0 * (style.building_density - 0.6) / 0.4)
    for _ in range(attempts):
        c = _random_in_polygon(rng, blk_poly, 1)
        if len(c) == 0:
            continue
        w, d = rng.uniform(*style.building_width_m), rng.uniform(*style.building_depth_m)
        origin = c[0] - 0.5 * w * t - 0.5 * d * n
        made = _lot_building(rng, style, pal, theme, bias, origin, t, n, 0.0, w, 0.0, d, blk_poly, lot,
                             max(3.0, style.building_gap_m[1]))
        if made is not None:
            out.append(made)
    return out


def _lot_building(rng, style, pal, theme, bias, origin, t, n, s, w, setback, d, blk_poly, lot: _Lot, gap):
    """Try one building on the lot ``[s, s + w] x [setback, setback + d]`` of the lot frame."""
    shape = rng.random()
    pieces_uv = [[s, setback, s + w, setback + d]]
    tower_uv = None
    if style.tower_fraction > 0 and w >= 16 and d >= 16 and rng.random() < style.tower_fraction:
        mx0, mx1 = rng.uniform(1.5, 0.3 * w), rng.uniform(1.5, 0.3 * w)
        my0, my1 = rng.uniform(2.0, 0.3 * d), rng.uniform(1.5, 0.25 * d)
        if w - mx0 - mx1 >= 8 and d - my0 - my1 >= 8:
            tower_uv = [s + mx0, setback + my0, s + w - mx1, setback + d - my1]
    elif shape < 0.3 and w >= 10:
        w2 = w * rng.uniform(0.35, 0.6)
        d2 = d * rng.uniform(0.3, 0.8)
        left = rng.random() < 0.5
        u0 = s if left else s + w - w2
        pieces_uv.append([u0, setback + d, u0 + w2, setback + d + d2])
    pieces = [_frame_poly(origin, t, n, [[p[0], p[1]], [p[2], p[1]], [p[2], p[3]], [p[0], p[3]]]) for p in pieces_uv]
    for p in pieces:
        if not _inside_convex(blk_poly, p, 0.2) or not lot.free(p, max(gap, 0.0)):
            return None
    for p in pieces:
        lot.add(p)
    glass = _high_rise(style) and rng.random() < 0.3
    floor_guess = 3.3
    h = _height(rng, style, bias, floor_guess)
    if len(pieces_uv) == 2:
        p0, p1 = pieces_uv
        left = abs(p1[0] - s) < 1e-9
        front, back = setback + d, p1[3]
        if left:  # wing at the start of the lot
            uv = [[s, setback], [s + w, setback], [s + w, front], [p1[2], front], [p1[2], back], [s, back]]
        else:
            uv = [[s, setback], [s + w, setback], [s + w, back], [p1[0], back], [p1[0], front], [s, front]]
        footprint = _frame_poly(origin, t, n, uv)
    else:
        footprint = pieces[0]
    out = []
    if tower_uv is not None:
        lo, hi = style.height_range_m
        podium_h = float(np.clip(rng.uniform(5.0, 13.0), max(3.0, lo), hi))
        tower_h = float(np.clip(rng.uniform(max(podium_h + 8.0, 0.5 * (lo + hi)), hi), podium_h + 3.0, min(40.0, hi)))
        if tower_h <= podium_h + 2.0:
            tower_uv = None
        else:
            out.append(dict(footprint=footprint, height=podium_h, kind="building",
                            **_building_look(rng, pal, style, theme, podium_h, False)))
            tp = _frame_poly(origin, t, n, [[tower_uv[0], tower_uv[1]], [tower_uv[2], tower_uv[1]],
                                            [tower_uv[2], tower_uv[3]], [tower_uv[0], tower_uv[3]]])
            out.append(dict(footprint=tp, height=tower_h, kind="tower",
                            **_building_look(rng, pal, style, theme, tower_h, rng.random() < 0.6)))
            if rng.random() < style.roof_details:
                out.extend(_rooftop_units(rng, tower_uv, origin, t, n, tower_h))
    if tower_uv is None:
        look = _building_look(rng, pal, style, theme, h, glass)
        out.append(dict(footprint=footprint, height=h, kind="building", **look))
        if look["roof_kind"] != "tiles" and h >= 6.0 and rng.random() < style.roof_details:
            out.extend(_rooftop_units(rng, pieces_uv[0], origin, t, n, h))
    return out


def _parking_lot(poly, rng, style: CityStyle, pal: Palette):
    """Stall lines (design space) and parked cars of a parking-lot block."""
    axis, _ = _longest_axis(poly)
    v_axis = np.array([-axis[1], axis[0]])
    u0, u1 = _geom.extent_along(poly, axis)
    v0, v1 = _geom.extent_along(poly, v_axis)
    stall_w, stall_d, aisle = rng.uniform(2.5, 2.8), 5.0, rng.uniform(6.0, 7.0)
    lines, cars = [], []
    line_colour = (226, 226, 220)
    v = v0 + 1.0
    facing = 1.0
    while v + stall_d < v1 - 0.5:
        u = u0 + 1.0
        while u + stall_w < u1 - 1.0:
            corners = np.array([[u, v], [u + stall_w, v], [u + stall_w, v + stall_d], [u, v + stall_d]])
            world = corners[:, :1] * axis + corners[:, 1:] * v_axis
            if _inside_convex(poly, world, 0.8):
                for uu in (u, u + stall_w):
                    seg = np.array([[uu - 0.06, v], [uu + 0.06, v], [uu + 0.06, v + stall_d], [uu - 0.06, v + stall_d]])
                    lines.append(seg[:, :1] * axis + seg[:, 1:] * v_axis)
                if rng.random() < min(1.0, style.car_density + 0.15):
                    c = (u + 0.5 * stall_w + rng.normal(0, 0.08)) * axis \
                        + (v + 0.5 * stall_d + rng.normal(0, 0.12)) * v_axis
                    yaw = math.atan2(v_axis[1], v_axis[0]) + (0.0 if facing > 0 else math.pi) + rng.normal(0, 0.03)
                    cars.append((c, yaw))
            u += stall_w
        v += stall_d
        facing = -facing
        if facing < 0:
            v += aisle
    return [("stall_line", ln, "line", line_colour) for ln in lines], cars


def _park_features(poly, rng, pal: Palette):
    """Paths and maybe a pond (design space) inside a park block."""
    feats = []
    centroid = poly.mean(axis=0)
    k = len(poly)
    for _ in range(int(rng.integers(1, 4))):
        i, j = rng.choice(k, size=2, replace=False)
        p = poly[i] + rng.uniform(0.3, 0.7) * (poly[(i + 1) % k] - poly[i])
        q = poly[j] + rng.uniform(0.3, 0.7) * (poly[(j + 1) % k] - poly[j])
        mid = centroid + rng.normal(0.0, 6.0, 2)
        line = _geom.chaikin(_geom.densify(np.stack([p, mid, q]), 3.0), 3)
        width = rng.uniform(2.0, 3.2)
        feats.append(("path", _geom.strip_polygon(line, 0.5 * width, -0.5 * width), "gravel", pal.gravel))
    if _min_width(poly) > 45 and rng.random() < 0.45:
        rx, ry = rng.uniform(6.0, 14.0), rng.uniform(4.0, 10.0)
        pond = _geom.ellipse_polygon(centroid + rng.normal(0, 4.0, 2), rx, ry, rng.uniform(0, math.pi), 40)
        if _inside_convex(poly, pond, 4.0):
            feats.append(("water", pond, "water", pal.water))
    return feats


# --------------------------------------------------------------------------- world-space furniture


class _Spacing:
    """Spatial hash of placed round things (trees, poles) for minimum-distance checks."""

    def __init__(self, cell: float = 6.0):
        self.cell = cell
        self.grid: dict[tuple[int, int], list[tuple[float, float, float]]] = {}

    def ok(self, x: float, y: float, r: float) -> bool:
        cx, cy = int(math.floor(x / self.cell)), int(math.floor(y / self.cell))
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for (px, py, pr) in self.grid.get((cx + dx, cy + dy), ()):
                    if (px - x) ** 2 + (py - y) ** 2 < (r + pr) ** 2:
                        return False
        return True

    def add(self, x: float, y: float, r: float) -> None:
        key = (int(math.floor(x / self.cell)), int(math.floor(y / self.cell)))
        self.grid.setdefault(key, []).append((x, y, r))


class _RoadReserve:
    """Carriageways and sidewalks on a 0.5 m grid, to keep warped buildings off them."""

    RES = 0.5

    def __init__(self, size: float, roads: list[Road], nodes: np.ndarray):
        n = int(math.ceil(size / self.RES)) + 1
        self.mask = np.zeros((n, n), np.uint8)
        ends: dict[int, float] = {}
        for r in roads:
            w = r.half_width + r.sidewalk_width
            cv2.fillPoly(self.mask, [self._px(_geom.strip_polygon(r.points, w, -w))], 1)
            for node in (r.start_node, r.end_node):
                ends[node] = max(ends.get(node, 0.0), r.half_width)
        for node, w in ends.items():
            cv2.fillPoly(self.mask, [self._px(_geom.circle_polygon(nodes[node], w))], 1)
        self.mask = cv2.erode(self.mask, np.ones((3, 3), np.uint8))  # touching the sidewalk's back edge is fine

    def _px(self, pts) -> np.ndarray:
        return np.rint(np.asarray(pts) / self.RES).astype(np.int32).reshape(-1, 1, 2)

    def clear(self, footprint: np.ndarray) -> bool:
        pts = _geom.densify_ring(footprint, 0.5 * self.RES)
        n = self.mask.shape[0]
        i = np.clip(np.rint(pts[:, 1] / self.RES).astype(int), 0, n - 1)
        j = np.clip(np.rint(pts[:, 0] / self.RES).astype(int), 0, n - 1)
        return not self.mask[i, j].any()


class _Occupancy:
    """0.5 m rasters of the city used while placing furniture."""

    RES = 0.5

    def __init__(self, size: float, buildings, roads, ground):
        n = int(math.ceil(size / self.RES)) + 1
        self.size = size
        self.building = np.zeros((n, n), np.uint8)
        self.blocked = np.zeros((n, n), np.uint8)  # asphalt, water, paths, parking, driveways
        for b in buildings:
            cv2.fillPoly(self.building, [self._px(b["footprint"])], 1)
        for r in roads:
            cv2.fillPoly(self.blocked, [self._px(_geom.strip_polygon(r.points, r.half_width, -r.half_width))], 1)
        for kind, poly, material, _ in ground:
            if material in ("water", "gravel", "asphalt", "line") or kind == "driveway":
                cv2.fillPoly(self.blocked, [self._px(poly)], 1)
        self.dist = cv2.distanceTransform((1 - self.building).astype(np.uint8), cv2.DIST_L2, 5) * self.RES

    def _px(self, pts) -> np.ndarray:
        return np.rint(np.asarray(pts) / self.RES).astype(np.int32).reshape(-1, 1, 2)

    def _idx(self, x, y):
        n = self.building.shape[0]
        i = np.clip(np.rint(np.asarray(y) / self.RES).astype(int), 0, n - 1)
        j = np.clip(np.rint(np.asarray(x) / self.RES).astype(int), 0, n - 1)
        return i, j

    def building_distance(self, x, y) -> float:
        i, j = self._idx(x, y)
        return float(self.dist[i, j])

    def is_blocked(self, x, y) -> bool:
        i, j = self._idx(x, y)
        return bool(self.blocked[i, j] or self.building[i, j])


def _tree(rng, x, y, pal: Palette, scale: float = 1.0, conifer: bool | None = None) -> Tree:
    if conifer is None:
        conifer = rng.random() < pal.conifer_fraction
    if conifer:
        r = rng.uniform(1.5, 2.8) * scale
        c = r * rng.uniform(1.8, 2.6)
        colour = jitter_colour(rng, tuple(int(v * 0.8) for v in pick(rng, pal.trees)), 8.0)
    else:
        r = rng.uniform(2.0, 4.2) * scale
        c = r * rng.uniform(0.75, 1.15)
        colour = jitter_colour(rng, pick(rng, pal.trees), 10.0)
    bottom = rng.uniform(2.8, 4.2)
    return Tree(x=x, y=y, trunk_radius=float(np.clip(0.06 * r + rng.uniform(0.05, 0.12), 0.1, 0.4)),
                crown_z=bottom + c, crown_radius=r, crown_half_height=c, colour=colour,
                trunk_colour=jitter_colour(rng, pal.trunk, 8.0))


def _random_in_polygon(rng, poly: np.ndarray, count: int) -> np.ndarray:
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    pts = rng.uniform(lo, hi, size=(count, 2))
    return pts[_geom.points_in_polygon(pts, poly)]


def _place_trees(rng, candidates, occ: _Occupancy, spacing: _Spacing, pal, size, scale=1.0, min_build=0.6):
    trees = []
    for x, y in candidates:
        if not (1.0 <= x <= size - 1.0 and 1.0 <= y <= size - 1.0):
            continue
        tree = _tree(rng, float(x), float(y), pal, scale)
        if occ.is_blocked(x, y) or occ.building_distance(x, y) < min_build * tree.crown_radius + 0.6:
            continue
        if not spacing.ok(x, y, 0.55 * tree.crown_radius):
            continue
        spacing.add(x, y, 0.55 * tree.crown_radius)
        trees.append(tree)
    return trees


def _street_furniture(rng, roads: list[Road], occ: _Occupancy, spacing: _Spacing, style: CityStyle,
                      pal: Palette, size: float):
    trees, poles, cars = [], [], []
    for road in roads:
        cum = _geom.cumulative_length(road.points)
        length = cum[-1]
        lo, hi = road.trim_start + 3.0, length - road.trim_end - 3.0
        if hi - lo < 4.0:
            continue
        hw, sw = road.half_width, road.sidewalk_width
        # trees: in the sidewalk when it is wide, else just behind it
        for side in (1.0, -1.0):
            off = side * (hw + min(0.5 * sw, 1.2) if sw >= 2.2 else hw + sw + 1.6)
            s = lo + rng.uniform(0.0, 6.0)
            while s < hi:
                if rng.random() < style.tree_cover:
                    pos, tan = _geom.point_at(road.points, cum, s)
                    p = pos + off * np.array([-tan[1], tan[0]])
                    x, y = float(p[0]), float(p[1])
                    tree = _tree(rng, x, y, pal, 0.85, conifer=False)
                    if (1.0 <= x <= size - 1.0 and 1.0 <= y <= size - 1.0 and not occ.building[occ._idx(x, y)]
                            and occ.building_distance(x, y) >= 0.5 * tree.crown_radius + 0.8
                            and spacing.ok(x, y, 0.45 * tree.crown_radius)):
                        spacing.add(x, y, 0.45 * tree.crown_radius)
                        trees.append(tree)
                s += rng.uniform(7.0, 13.0)
        # lamp poles, alternating sides
        s, side = lo + rng.uniform(0.0, 10.0), 1.0
        while s < hi:
            pos, tan = _geom.point_at(road.points, cum, s)
            p = pos + side * (hw + 0.45) * np.array([-tan[1], tan[0]])
            x, y = float(p[0]), float(p[1])
            if (1.0 <= x <= size - 1.0 and 1.0 <= y <= size - 1.0 and occ.building_distance(x, y) > 1.0
                    and spacing.ok(x, y, 1.0)):
                spacing.add(x, y, 1.0)
                poles.append(Pole(x=x, y=y, radius=0.11, height=rng.uniform(6.5, 9.0), colour=(88, 92, 96)))
            s += rng.uniform(24.0, 36.0)
            side = -side
        cars.extend(_road_cars(rng, road, cum, lo + 3.0, hi - 3.0, style))
    return trees, poles, cars


def _road_cars(rng, road: Road, cum, lo, hi, style: CityStyle):
    out = []
    slots = []
    if road.parking_width > 0:
        off = road.lanes * road.lane_width + 0.5 * road.parking_width
        slots += [(off, -1.0, style.car_density), (-off, 1.0, style.car_density)]
    if road.lanes >= 2:
        off = 1.5 * road.lane_width
        slots += [(off, -1.0, 0.12 * style.car_density), (-off, 1.0, 0.12 * style.car_density)]
    for off, direction, density in slots:
        s = lo + rng.uniform(0.0, 3.0)
        while s < hi:
            length = rng.uniform(4.1, 5.0)
            van = rng.random() < 0.1
            if van:
                length = rng.uniform(5.0, 5.6)
            if rng.random() < density and s + length < hi:
                pos, tan = _geom.point_at(road.points, cum, s + 0.5 * length)
                p = pos + off * np.array([-tan[1], tan[0]])
                yaw = math.degrees(math.atan2(direction * tan[1], direction * tan[0]))
                out.append((p, yaw, length, van))
                s += length + rng.uniform(0.8, 3.5)
            else:
                s += length + rng.uniform(3.0, 12.0)
    return out


def _car(rng, pal: Palette, center, yaw_deg: float, length: float | None = None, van: bool = False) -> Car:
    if length is None:
        length = rng.uniform(5.0, 5.6) if van else rng.uniform(4.1, 5.0)
    width = rng.uniform(1.9, 2.1) if van else rng.uniform(1.75, 1.95)
    height = rng.uniform(2.0, 2.5) if van else rng.uniform(1.4, 1.65)
    return Car(x=float(center[0]), y=float(center[1]), yaw_deg=yaw_deg, length=length, width=width, height=height,
               colour=jitter_colour(rng, pick(rng, pal.cars), 8.0))


# --------------------------------------------------------------------------- main entry


def _inside_square(pts: np.ndarray, size: float, margin: float = 0.3) -> bool:
    return bool(np.all((pts >= margin) & (pts <= size - margin)))


def generate(seed: int, size: float, style: CityStyle) -> dict:
    """All primitives of the city ``seed`` (keyword arguments for :class:`~.world.City`)."""
    r_layout, r_warp, r_roads, r_blocks, r_street, r_trees = [np.random.default_rng(s)
                                                                for s in np.random.SeedSequence(seed).spawn(6)]
    pal = palette_for(style.palette)
    chords, blocks = _road_layout(r_layout, size, style)
    nodes_d, edges = _road_graph(chords)
    warp = _Warp(r_warp, style.road_curvature)
    nodes, roads = _make_roads(nodes_d, edges, chords, warp, r_roads, pal)

    ground_d: list[tuple] = []  # (kind, polygon, material, colour), design space
    building_d: list[dict] = []
    car_d: list[tuple] = []  # (centre, yaw rad) in design space
    block_roles = []
    for blk, poly, role in _assign_roles(blocks, chords, size, style, r_blocks):
        if role == "park":
            ground_d.append(("park", poly, "grass", jitter_colour(r_blocks, pick(r_blocks, pal.grass), 6.0)))
            ground_d.extend(_park_features(poly, r_blocks, pal))
        elif role == "parking":
            ground_d.append(("parking", poly, "asphalt", jitter_colour(r_blocks, pal.asphalt, 5.0)))
            lines, cars = _parking_lot(poly, r_blocks, style, pal)
            ground_d.extend(lines)
            car_d.extend(cars)
        elif role == "plaza":
            ground_d.append(("plaza", poly, "paving", jitter_colour(r_blocks, pick(r_blocks, pal.paving), 6.0)))
        else:
            paved = r_blocks.random() < style.paved_fraction
            ground_d.append(("block", poly, "paving" if paved else "grass",
                             jitter_colour(r_blocks, pick(r_blocks, pal.paving if paved else pal.grass), 6.0)))
            b, g, c = _fill_frontage(poly, _inset_labels(blk, poly), chords, r_blocks, style, pal)
            building_d.extend(b)
            ground_d.extend(g)
            car_d.extend(c)
        block_roles.append((role, poly))

    ground = []
    for kind, poly, material, *colour in ground_d:
        colour = colour[0] if colour else pick(r_blocks, pal.paving)
        ground.append(GroundFeature(kind=kind, polygon=warp(_geom.densify_ring(poly, 5.0)), colour=colour,
                                    material=material))
    buildings = []
    reserve = _RoadReserve(size, roads, nodes)
    for group in building_d:  # the prisms of one lot stay or go together
        fps = [warp(b["footprint"]) for b in group]
        if all(_inside_square(fp, size) and reserve.clear(fp) for fp in fps):
            buildings += [Building(**{**b, "footprint": fp}) for b, fp in zip(group, fps)]
    cars = []
    for centre, yaw in car_d:
        p = warp(centre)
        if _inside_square(p[None], size, 3.0):
            cars.append(_car(r_street, pal, p, math.degrees(warp.yaw(centre, yaw))))

    occ = _Occupancy(size, [{"footprint": b.footprint} for b in buildings], roads,
                     [(g.kind, g.polygon, g.material, g.colour) for g in ground])
    spacing = _Spacing()
    street_trees, poles, road_cars = _street_furniture(r_street, roads, occ, spacing, style, pal, size)
    for p, yaw, length, van in road_cars:
        if _inside_square(p[None], size, 3.0):
            cars.append(_car(r_street, pal, p, yaw, length, van))
    trees = street_trees
    for role, poly in block_roles:
        wpoly = warp(_geom.densify_ring(poly, 5.0))
        area = abs(_geom.signed_area(wpoly))
        if role == "park":
            count = int(area / 90.0 * style.tree_cover) + 1
            centres = _random_in_polygon(r_trees, wpoly, max(1, count // 5 + 1))
            cand = []
            for c in centres:
                cand.extend(c + r_trees.normal(0.0, 7.0, size=(int(r_trees.integers(3, 9)), 2)))
            cand.extend(_random_in_polygon(r_trees, wpoly, count // 3 + 1))
            cand = [p for p in cand if _geom.points_in_polygon(np.asarray(p)[None], wpoly)[0]]
            trees += _place_trees(r_trees, cand, occ, spacing, pal, size)
        elif role in ("buildings", "plaza"):
            count = int(area / 160.0 * style.tree_cover * (2.0 if role == "buildings" else 1.0)) + 1
            trees += _place_trees(r_trees, _random_in_polygon(r_trees, wpoly, count), occ, spacing, pal, size,
                                  min_build=0.5)
    return dict(nodes=nodes, roads=roads, ground=ground, buildings=buildings, trees=trees, cars=cars, poles=poles)


def _assign_roles(blocks, chords, size: float, style: CityStyle, rng):
    """(block, inset polygon, role) of the blocks touching the city: roughly ``park_fraction`` of the
    large blocks become parks and ``parking_fraction`` parking lots (at least one of each when the
    fraction is non-zero), small ones plazas, the rest are built up."""
    found = []
    for blk in blocks:
        poly = _inset_block(blk, chords)
        if len(poly) < 3 or _geom.signed_area(poly) < 60.0:
            continue
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        if hi[0] < 0 or hi[1] < 0 or lo[0] > size or lo[1] > size:
            continue
        found.append((blk, poly))
    small = [_min_width(p) < 14.0 or _geom.signed_area(p) < 400.0 for _, p in found]
    inside = [bool(np.all((p.mean(axis=0) > 0) & (p.mean(axis=0) < size))) for _, p in found]
    large = [i for i in range(len(found)) if not small[i] and inside[i]]
    order = list(rng.permutation(len(large)))
    roles = ["plaza" if sm else "buildings" for sm in small]
    for role, fraction in (("park", style.park_fraction), ("parking", style.parking_fraction)):
        count = int(round(fraction * len(large))) if fraction > 0 else 0
        if fraction > 0 and len(large) >= 6:
            count = max(1, count)
        for _ in range(count):
            if order:
                roles[large[order.pop()]] = role
    return [(blk, poly, role) for (blk, poly), role in zip(found, roles)]


def _inset_labels(blk: _Block, inset: np.ndarray) -> list[int]:
    """Road labels of the edges of an inset block (matched by direction and offset to the originals)."""
    labels = []
    normals = _geom.outward_normals(blk.poly)
    for a, b in zip(inset, np.roll(inset, -1, axis=0)):
        d = b - a
        d = d / max(np.linalg.norm(d), 1e-12)
        n = np.array([d[1], -d[0]])
        k = int(np.argmax(normals @ n))
        labels.append(blk.labels[k] if normals[k] @ n > 0.999 else -1)
    return labels
