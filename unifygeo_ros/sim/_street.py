"""Street-level ray casting against a city's primitives (see :mod:`unifygeo_ros.sim.render`).

Every image column is a vertical plane through the camera, given by its compass bearing.
Per column, 2-D rays are intersected with building walls (front-facing edges of the
footprints), car boxes (slab test) and cylinders (trunks, poles); the hits are sorted
front to back and a running maximum of their top elevations gives each visible solid a
vertical interval of the column (exact occlusion: all solids stand on the ground, so a
nearer solid covers everything of a farther one between the ground and its own top).
Elevations are compared as integers (1e-9 rad quanta) so results do not depend on where
a column sits in the image. Pixels without a solid see the ground plane (sampled from the
city's shaded ground raster) or the sky; ellipsoid crowns are then intersected per pixel
and depth-tested against what is already there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from unifygeo_ros.sim import _raster
from unifygeo_ros.sim._palette import palette_for
from unifygeo_ros.sim.scene import City

BUILDING_RANGE_M = 250.0  # buildings farther than this are not drawn in street views
SMALL_RANGE_M = 150.0  # cars, trees and poles farther than this are not drawn
GROUND_RANGE_M = 180.0  # ground beyond this fades into the distant-ground colour
HAZE_DISTANCE_M = 1500.0
SKY_ZENITH = np.array([88, 138, 206], np.float32)
SKY_HORIZON = np.array([200, 216, 232], np.float32)
HAZE = np.array([190, 200, 210], np.float32)
_Q = 1.0e9  # elevation quantum (1 / radians) for exact integer interval arithmetic
_QOFF = math.pi / 2
_QMAX = int(math.pi * _Q) + 10


@dataclass
class _Scene:
    """Ray-casting arrays of a city (built once, cached on the city)."""

    # building walls
    ea: np.ndarray
    eb: np.ndarray
    en: np.ndarray  # outward unit normal
    emid: np.ndarray
    ehalf: np.ndarray
    etop: np.ndarray
    eobj: np.ndarray  # building index
    # cars: oriented boxes
    kxy: np.ndarray
    kaxis: np.ndarray  # unit long axis
    khalf: np.ndarray  # (N, 2) half length, half width
    kheight: np.ndarray
    kcolour: np.ndarray
    # cylinders (trunks and poles)
    cxy: np.ndarray
    cr: np.ndarray
    ctop: np.ndarray
    ccol: np.ndarray
    cpole: np.ndarray
    # crowns
    txy: np.ndarray
    tz: np.ndarray
    ta: np.ndarray
    tc: np.ndarray
    tcol: np.ndarray
    # per-building facade table
    bfacade: np.ndarray
    bwindow: np.ndarray
    bparams: np.ndarray  # floor_h, win_w, win_h, spacing, sill, shopfront, height
    min_building_height: float


def _scene(city: City) -> _Scene:
    def build():
        fps = [b.footprint for b in city.buildings]
        ea = np.concatenate(fps) if fps else np.zeros((0, 2))
        eb = np.concatenate([np.roll(f, -1, axis=0) for f in fps]) if fps else np.zeros((0, 2))
        top = np.concatenate([np.full(len(f), b.height) for f, b in zip(fps, city.buildings)]) if fps else np.zeros(0)
        obj = np.concatenate([np.full(len(f), i) for i, f in enumerate(fps)]).astype(np.int64) if fps \
            else np.zeros(0, np.int64)
        d = eb - ea
        length = np.linalg.norm(d, axis=1)
        keep = length > 1e-6
        ea, eb, d, length, top, obj = ea[keep], eb[keep], d[keep], length[keep], top[keep], obj[keep]
        en = np.stack([d[:, 1], -d[:, 0]], axis=1) / length[:, None]
        yaw = np.radians([c.yaw_deg for c in city.cars])
        cyl = [(t.x, t.y, t.trunk_radius, t.crown_z, *t.trunk_colour, 0) for t in city.trees]
        cyl += [(p.x, p.y, p.radius, p.height, *p.colour, 1) for p in city.poles]
        cyl = np.array(cyl, dtype=np.float64).reshape(-1, 8)
        tr = np.array([(t.x, t.y, t.crown_z, t.crown_radius, t.crown_half_height, *t.colour) for t in city.trees],
                      dtype=np.float64).reshape(-1, 8)
        bp = np.array([(b.floor_height, b.window_width, b.window_height, b.window_spacing, b.sill_height,
                        float(b.shopfront), b.height) for b in city.buildings], dtype=np.float64).reshape(-1, 7)
        return _Scene(ea=ea, eb=eb, en=en, emid=0.5 * (ea + eb), ehalf=0.5 * length, etop=top, eobj=obj,
                      kxy=np.array([(c.x, c.y) for c in city.cars], np.float64).reshape(-1, 2),
                      kaxis=np.stack([np.cos(yaw), np.sin(yaw)], axis=1).reshape(-1, 2),
                      khalf=np.array([(0.5 * c.length, 0.5 * c.width) for c in city.cars], np.float64).reshape(-1, 2),
                      kheight=np.array([c.height for c in city.cars], np.float64),
                      kcolour=np.array([c.colour for c in city.cars], np.float32).reshape(-1, 3),
                      cxy=cyl[:, :2], cr=cyl[:, 2], ctop=cyl[:, 3], ccol=cyl[:, 4:7].astype(np.float32),
                      cpole=cyl[:, 7] > 0.5,
                      txy=tr[:, :2], tz=tr[:, 2], ta=tr[:, 3], tc=tr[:, 4], tcol=tr[:, 5:8].astype(np.float32),
                      bfacade=np.array([b.facade_colour for b in city.buildings], np.float32).reshape(-1, 3),
                      bwindow=np.array([b.window_colour for b in city.buildings], np.float32).reshape(-1, 3),
                      bparams=bp,
                      min_building_height=min((b.height for b in city.buildings), default=np.inf))

    return city.cached("scene", build)


# --------------------------------------------------------------------------- ray casting core


@dataclass
class Rays:
    """Pixels grouped in columns (vertical planes through the camera).

    ``col_rel``: sorted bearings of the columns relative to ``forward`` (degrees, in
    (-180, 180)); ``col_bearing``: their absolute compass bearings; ``pix_col`` and
    ``pix_el`` (radians): each pixel's column and elevation, sorted by column and then by
    decreasing elevation. ``pix_angle``: angular size of a pixel (radians), for level of
    detail. Derived per-pixel keys are computed once per ray set (:meth:`prepare`).
    """

    forward: float
    col_rel: np.ndarray
    col_bearing: np.ndarray
    pix_col: np.ndarray
    pix_el: np.ndarray
    pix_angle: float
    qpix: np.ndarray | None = None
    pkey: np.ndarray | None = None  # (col << 32) | q(el): ascending by column, descending el
    pkey_desc: np.ndarray | None = None  # (col << 32) | (QMAX - q(el)): ascending
    tan_el: np.ndarray | None = None
    sin_el: np.ndarray | None = None
    cos_el: np.ndarray | None = None

    def prepare(self) -> "Rays":
        if self.qpix is None:
            col64 = self.pix_col.astype(np.int64) << 32
            self.qpix = _qel(self.pix_el)
            self.pkey = col64 | self.qpix
            self.pkey_desc = col64 | (_QMAX - self.qpix)
            self.tan_el = np.tan(self.pix_el)
            self.sin_el = np.sin(self.pix_el).astype(np.float32)
            self.cos_el = np.cos(self.pix_el).astype(np.float32)
        return self

    def turned(self, forward: float, col_bearing: np.ndarray) -> "Rays":
        """The same pixel layout looking towards another forward bearing."""
        return Rays(forward, self.col_rel, col_bearing, self.pix_col, self.pix_el, self.pix_angle, self.qpix,
                     self.pkey, self.pkey_desc, self.tan_el, self.sin_el, self.cos_el)


_PANO_GRIDS: dict[tuple[int, int], Rays] = {}


def _qel(el: np.ndarray) -> np.ndarray:
    return np.rint((np.asarray(el) + _QOFF) * _Q).astype(np.int64)


def _column_pairs(rel_lo: np.ndarray, rel_hi: np.ndarray, col_rel: np.ndarray):
    """Pairs (span index, column index) of columns whose relative bearing lies in ``[lo, hi]`` (wrapping)."""
    owners, cols = [], []
    for shift in (-360.0, 0.0, 360.0):
        start = np.searchsorted(col_rel, rel_lo + shift, side="left")
        end = np.searchsorted(col_rel, rel_hi + shift, side="right")
        count = np.maximum(end - start, 0)
        total = int(count.sum())
        if total == 0:
            continue
        owner = np.repeat(np.arange(len(count)), count)
        first = np.cumsum(count) - count
        cols.append(start[owner] + (np.arange(total) - first[owner]))
        owners.append(owner)
    if not owners:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(owners), np.concatenate(cols)


def _wrap180(a):
    return (np.asarray(a) + 180.0) % 360.0 - 180.0


def _bearing_to(p: np.ndarray, pts: np.ndarray) -> np.ndarray:
    d = pts - p
    return np.degrees(np.arctan2(d[:, 0], d[:, 1]))


@dataclass
class _Hits:
    """Ray / solid intersections, one per (column, surface entered)."""

    col: np.ndarray
    t: np.ndarray  # horizontal distance where the ray enters the solid
    t_top: np.ndarray  # distance of the solid's highest silhouette point (exit for solids below the camera)
    top: np.ndarray
    kind: np.ndarray  # 0 building wall, 1 car, 2 cylinder
    obj: np.ndarray  # building / car / cylinder index
    along: np.ndarray  # metres along the wall from its start (cylinders: arc length)
    wall_len: np.ndarray
    normal: np.ndarray  # (N, 2)


def _wall_hits(sc: _Scene, p: np.ndarray, rays: Rays, dirs: np.ndarray) -> _Hits:
    """Front-facing building walls (buildings are taller than the camera, so walls bound them)."""
    d2 = np.sum((sc.emid - p) ** 2, axis=1)
    reach = BUILDING_RANGE_M + sc.ehalf
    front = np.einsum("ij,ij->i", p - sc.ea, sc.en) > 1e-9
    sel = np.nonzero((d2 < reach * reach) & front)[0]
    a, b = sc.ea[sel], sc.eb[sel]
    ba, bb = _bearing_to(p, a), _bearing_to(p, b)
    rel_a = _wrap180(ba - rays.forward)
    delta = _wrap180(bb - ba)
    lo = np.minimum(rel_a, rel_a + delta)
    hi = np.maximum(rel_a, rel_a + delta)
    owner, col = _column_pairs(lo, hi, rays.col_rel)
    e = sel[owner]
    ea = sc.ea[e]
    w = sc.eb[e] - ea
    d = dirs[col]
    ap = ea - p
    denom = d[:, 0] * w[:, 1] - d[:, 1] * w[:, 0]
    denom = np.where(np.abs(denom) < 1e-12, 1e-12, denom)
    t = (ap[:, 0] * w[:, 1] - ap[:, 1] * w[:, 0]) / denom
    s = np.clip((ap[:, 0] * d[:, 1] - ap[:, 1] * d[:, 0]) / denom, 0.0, 1.0)
    ok = t > 1e-3
    length = 2.0 * sc.ehalf[e]
    return _Hits(col=col[ok], t=t[ok], t_top=t[ok], top=sc.etop[e][ok], kind=np.zeros(int(ok.sum()), np.int8),
                 obj=sc.eobj[e][ok], along=(s * length)[ok], wall_len=length[ok], normal=sc.en[e][ok])


def _car_hits(sc: _Scene, p: np.ndarray, rays: Rays, dirs: np.ndarray, cam_h: float) -> _Hits:
    """Ray / box (slab) intersections with cars; a car lower than the camera shows its roof."""
    v = sc.kxy - p
    dc = np.hypot(v[:, 0], v[:, 1])
    radius = np.hypot(sc.khalf[:, 0], sc.khalf[:, 1])
    ou = -(v[:, 0] * sc.kaxis[:, 0] + v[:, 1] * sc.kaxis[:, 1])
    ov = -(-v[:, 0] * sc.kaxis[:, 1] + v[:, 1] * sc.kaxis[:, 0])
    outside = (np.abs(ou) > sc.khalf[:, 0] + 0.05) | (np.abs(ov) > sc.khalf[:, 1] + 0.05)
    sel = np.nonzero((dc < SMALL_RANGE_M + radius) & outside)[0]
    if len(sel) == 0:
        return _empty_hits()
    ax = sc.kaxis[sel]
    perp = np.stack([-ax[:, 1], ax[:, 0]], axis=1)
    hl, hw = sc.khalf[sel, 0:1], sc.khalf[sel, 1:2]
    corners = sc.kxy[sel][:, None, :] + np.stack([ax * hl + perp * hw, ax * hl - perp * hw,
                                                  -ax * hl - perp * hw, -ax * hl + perp * hw], axis=1)
    rel_c = _wrap180(_bearing_to(p, sc.kxy[sel]) - rays.forward)
    delta = _wrap180(np.degrees(np.arctan2(corners[..., 0] - p[0], corners[..., 1] - p[1]))
                     - (rel_c + rays.forward)[:, None])
    owner, col = _column_pairs(rel_c + delta.min(axis=1), rel_c + delta.max(axis=1), rays.col_rel)
    k = sel[owner]
    d = dirs[col]
    a = sc.kaxis[k]
    du = d[:, 0] * a[:, 0] + d[:, 1] * a[:, 1]
    dv = -d[:, 0] * a[:, 1] + d[:, 1] * a[:, 0]
    pu, pv = ou[k], ov[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        tu0, tu1 = (-sc.khalf[k, 0] - pu) / du, (sc.khalf[k, 0] - pu) / du
        tv0, tv1 = (-sc.khalf[k, 1] - pv) / dv, (sc.khalf[k, 1] - pv) / dv
    tu_in, tu_out = np.fmin(tu0, tu1), np.fmax(tu0, tu1)
    tv_in, tv_out = np.fmin(tv0, tv1), np.fmax(tv0, tv1)
    t_in = np.maximum(tu_in, tv_in)
    t_out = np.minimum(tu_out, tv_out)
    ok = (t_in < t_out) & (t_in > 1e-3) & np.isfinite(t_in)
    k, col, t_in, t_out, du, dv, a = k[ok], col[ok], t_in[ok], t_out[ok], du[ok], dv[ok], a[ok]
    u_face = tu_in[ok] >= tv_in[ok]
    perp_k = np.stack([-a[:, 1], a[:, 0]], axis=1)
    normal = np.where(u_face[:, None], -np.sign(du)[:, None] * a, -np.sign(dv)[:, None] * perp_k)
    height = sc.kheight[k]
    hit = p + t_in[:, None] * dirs[col]
    rel = hit - sc.kxy[k]
    along = np.where(u_face, np.sum(rel * perp_k, axis=1) + sc.khalf[k, 1], np.sum(rel * a, axis=1) + sc.khalf[k, 0])
    return _Hits(col=col, t=t_in, t_top=np.where(height < cam_h, t_out, t_in), top=height,
                 kind=np.ones(len(k), np.int8), obj=k, along=along, wall_len=np.where(u_face, 2 * sc.khalf[k, 1],
                                                                                       2 * sc.khalf[k, 0]),
                 normal=normal)


def _empty_hits() -> _Hits:
    z = np.zeros(0)
    return _Hits(col=np.zeros(0, np.int64), t=z, t_top=z, top=z, kind=np.zeros(0, np.int8), obj=np.zeros(0, np.int64),
                 along=z, wall_len=z, normal=np.zeros((0, 2)))


def _cylinder_hits(sc: _Scene, p: np.ndarray, rays: Rays, dirs: np.ndarray) -> _Hits:
    v = sc.cxy - p
    dc = np.hypot(v[:, 0], v[:, 1])
    sel = np.nonzero((dc < SMALL_RANGE_M) & (dc > sc.cr + 0.05))[0]
    half = np.degrees(np.arcsin(sc.cr[sel] / dc[sel]))
    rel = _wrap180(_bearing_to(p, sc.cxy[sel]) - rays.forward)
    owner, col = _column_pairs(rel - half, rel + half, rays.col_rel)
    k = sel[owner]
    d = dirs[col]
    vk = v[k]
    q = vk[:, 0] * d[:, 0] + vk[:, 1] * d[:, 1]
    perp = d[:, 0] * vk[:, 1] - d[:, 1] * vk[:, 0]
    r = sc.cr[k]
    t = q - np.sqrt(np.maximum(r * r - perp * perp, 0.0))
    hit = p + t[:, None] * d
    normal = (hit - sc.cxy[k]) / r[:, None]
    along = (np.arctan2(normal[:, 1], normal[:, 0]) + np.pi) * r
    ok = t > 1e-3
    return _Hits(col=col[ok], t=t[ok], t_top=t[ok], top=sc.ctop[k][ok], kind=np.full(int(ok.sum()), 2, np.int8),
                 obj=k[ok],
                 along=along[ok], wall_len=(2 * np.pi * r)[ok], normal=normal[ok])


def _concat_hits(*parts: _Hits) -> _Hits:
    return _Hits(**{f: np.concatenate([getattr(h, f) for h in parts]) for f in _Hits.__dataclass_fields__})


def _visible_intervals(h: _Hits, cam_h: float):
    """Front-to-back per column: (column, lower q, upper q, hit index) of visible surfaces.

    Solid ``k`` spans elevations ``[bottom_k, top_k]`` (bottom where the ray enters it, top
    at its highest silhouette point: the near wall's top, or the far roof edge of a solid
    lower than the camera); it is visible over
    ``(max(bottom_k, M_k), top_k]`` where ``M_k`` is the highest top of nearer surfaces
    in the same column (all surfaces stand on the ground, so nearer bottoms are lower).
    """
    order = np.lexsort((h.t, h.col))
    col, t = h.col[order], h.t[order]
    qtop = _qel(np.arctan2(h.top[order] - cam_h, h.t_top[order]))
    qbot = _qel(np.arctan2(-cam_h, t))
    key = (col.astype(np.int64) << 32) | qtop
    cm = np.maximum.accumulate(key)
    prev = np.empty_like(cm)
    prev[0] = -1
    prev[1:] = cm[:-1]
    same = (prev >> 32) == col
    m_excl = np.where(same, prev & 0xFFFFFFFF, -1)
    rec = qtop > m_excl
    lo = np.maximum(qbot, m_excl)[rec]
    return col[rec], lo, qtop[rec], order[rec]


def _sky(sin_el: np.ndarray, cos_el: np.ndarray, bearing_rad: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """Sky colour: horizon-to-zenith gradient, a glow around the sun and the sun's disc."""
    t = np.sqrt(np.clip(sin_el, 0.0, 1.0))[:, None]
    col = SKY_HORIZON + (SKY_ZENITH - SKY_HORIZON) * t
    sx, sy, sz = (np.float32(v) for v in sun)
    cos_sun = cos_el * (np.sin(bearing_rad).astype(np.float32) * sx + np.cos(bearing_rad).astype(np.float32) * sy) \
        + sin_el * sz
    glow = (np.exp((cos_sun - 1.0) * np.float32(14.0)) * np.float32(0.35)
            + (cos_sun > np.float32(math.cos(math.radians(1.2)))) * np.float32(0.6))[:, None]
    return col + (np.array([255, 246, 224], np.float32) - col) * glow


def _hash01(*ints: np.ndarray) -> np.ndarray:
    h = np.zeros_like(ints[0], dtype=np.uint64)
    for k, v in zip((0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F), ints):
        h = (h ^ (v.astype(np.int64).astype(np.uint64) * np.uint64(k))) & np.uint64(0xFFFFFFFF)
        h = (h * np.uint64(0x2C1B3C6D) + np.uint64(0x297A2D39)) & np.uint64(0xFFFFFFFF)
        h ^= h >> np.uint64(15)
    return (h & np.uint64(0xFFFFFF)).astype(np.float32) / np.float32(0xFFFFFF)


def _facade_colours(sc: _Scene, hits: _Hits, idx: np.ndarray, z: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Albedo of building walls: facade with a window grid (anti-aliased by pixel footprint)."""
    b = hits.obj[idx]
    prm = sc.bparams[b]
    floor_h, win_w, win_h, spacing, sill, shop, height = (prm[:, i] for i in range(7))
    facade = sc.bfacade[b]
    window = sc.bwindow[b]
    along = hits.along[idx]
    wall_len = hits.wall_len[idx]
    start = 0.5 * np.mod(wall_len, spacing)
    u = along - start
    col_i = np.floor(u / spacing)
    fu = u - col_i * spacing
    floor_i = np.floor(z / floor_h)
    fz = z - floor_i * floor_h
    has_win = win_w > 0
    in_u = np.abs(fu - 0.5 * spacing) < 0.5 * win_w
    in_z = (fz >= sill) & (fz < sill + win_h)
    shopfront = (shop > 0.5) & (floor_i == 0)
    in_z = np.where(shopfront, (fz > 0.3) & (fz < floor_h - 0.5), in_z)
    in_u = np.where(shopfront, np.abs(fu - 0.5 * spacing) < 0.5 * spacing - 0.15, in_u)
    inside_wall = (u > 0.3) & (u < wall_len - 2 * start - 0.3) & (z < height - 0.6)
    win = has_win & in_u & in_z & inside_wall
    var = _hash01(b, col_i.astype(np.int64), floor_i.astype(np.int64))
    glass = window * (0.75 + 0.5 * var)[:, None]
    coverage = np.where(has_win, np.clip(win_w * win_h / (spacing * floor_h), 0, 1), 0.0)
    mean = facade * (1 - coverage)[:, None] + window * coverage[:, None]
    sharp = np.where(win[:, None], glass, facade)
    # slab lines between floors, a darker plinth and a cornice under the roof line
    sharp = np.where(((fz < 0.12) & (z > 0.5) & has_win)[:, None], sharp * 0.88, sharp)
    trim = np.where(z < 0.45, np.float32(0.72), np.where(z > height - 0.35, np.float32(1.12), np.float32(1.0)))
    trim = np.where(has_win, trim, np.float32(1.0))
    sharp = sharp * trim[:, None]
    mean = mean * trim[:, None]
    blur = np.clip((footprint - 0.25 * np.maximum(win_w, 0.5)) / np.maximum(win_w, 0.5), 0.0, 1.0)[:, None]
    return sharp * (1 - blur) + mean * blur


def _car_colours(sc: _Scene, car: np.ndarray, z: np.ndarray, roof: np.ndarray, wx: np.ndarray,
                 wy: np.ndarray) -> np.ndarray:
    """Car albedo: tyres, body and a window band on the sides; on the roof the same windscreen
    and rear-window bands as the orthophoto's car tops."""
    body = sc.kcolour[car]
    zf = z / sc.kheight[car]
    tyre = np.array([28, 28, 30], np.float32)
    glass = np.array([44, 52, 62], np.float32)
    out = np.where((zf < 0.22)[:, None], tyre, body)
    out = np.where(((zf > 0.58) & (zf < 0.9) & ~roof)[:, None], glass, out)
    # position along the car, 0 at the rear, 1 at the front
    along = ((wx - sc.kxy[car, 0]) * sc.kaxis[car, 0] + (wy - sc.kxy[car, 1]) * sc.kaxis[car, 1]) \
        / (2 * sc.khalf[car, 0]) + 0.5
    top_glass = roof & (((along > 0.62) & (along < 0.78)) | ((along > 0.2) & (along < 0.3)))
    return np.where(top_glass[:, None], glass, out)


def _sample_ground(ras: _raster.CityRasters, x: np.ndarray, y: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Bilinear samples of the ground raster at the mip level matching the pixel footprint."""
    out = np.empty((len(x), 3), np.float32)
    level = np.clip(np.floor(np.log2(np.maximum(footprint, ras.m0) / ras.m0)), 0, ras.levels - 1).astype(np.int64)
    border = tuple(int(v) for v in ras.countryside)
    for lv in np.unique(level):
        sel = np.nonzero(level == lv)[0]
        img = ras.ground[lv]
        n = img.shape[0]
        m = ras.m0 * (1 << int(lv))
        fr = (ras.top_y - y[sel]) / m - 0.5
        fc = x[sel] / m - 0.5
        r0 = int(np.clip(np.floor(fr.min()) - 2, 0, n))
        r1 = int(np.clip(np.ceil(fr.max()) + 3, 0, n))
        c0 = int(np.clip(np.floor(fc.min()) - 2, 0, n))
        c1 = int(np.clip(np.ceil(fc.max()) + 3, 0, n))
        if r1 <= r0 or c1 <= c0:
            out[sel] = ras.countryside
            continue
        k = len(sel)
        rows = -(-k // 1024)
        mx = np.full(rows * 1024, -10.0, np.float32)
        my = np.full(rows * 1024, -10.0, np.float32)
        mx[:k] = fc - c0
        my[:k] = fr - r0
        crop = img[r0:r1, c0:c1]
        v = cv2.remap(crop, mx.reshape(rows, 1024), my.reshape(rows, 1024), cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        out[sel] = v.reshape(-1, 3)[:k]
    return out


def _crown_hits(sc: _Scene, p: np.ndarray, cam_h: float, rays: Rays, dirs: np.ndarray, depth: np.ndarray):
    """Per-pixel ray / ellipsoid tests; returns (pixel, crown, t, hit xyz) of crowns nearer than ``depth``."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)))
    if len(sc.txy) == 0:
        return empty
    v = sc.txy - p
    dc = np.hypot(v[:, 0], v[:, 1])
    sel = np.nonzero(dc < SMALL_RANGE_M)[0]
    if len(sel) == 0:
        return empty
    a = sc.ta[sel]
    inside = dc[sel] <= a
    half = np.where(inside, 180.0, np.degrees(np.arcsin(np.minimum(a / np.maximum(dc[sel], 1e-9), 1.0))))
    rel = _wrap180(_bearing_to(p, sc.txy[sel]) - rays.forward)
    lo = np.where(inside, -180.0, rel - half)
    hi = np.where(inside, 180.0, rel + half)
    owner, col = _column_pairs(lo, hi, rays.col_rel)  # spans < 360 degrees: no column twice
    k = sel[owner]
    d = dirs[col]
    vk = v[k]
    q = vk[:, 0] * d[:, 0] + vk[:, 1] * d[:, 1]
    perp = d[:, 0] * vk[:, 1] - d[:, 1] * vk[:, 0]
    ak, ck, zk = sc.ta[k], sc.tc[k], sc.tz[k]
    w2 = ak * ak - perp * perp
    ok = (w2 > 0) & (q + np.sqrt(np.maximum(w2, 0)) > 0.05)
    k, col, q, perp, ak, ck, zk, w2 = (arr[ok] for arr in (k, col, q, perp, ak, ck, zk, w2))
    w = np.sqrt(w2)
    near = np.maximum(q - w, 0.05)
    far = q + w
    top, bot = zk + ck - cam_h, zk - ck - cam_h
    el_hi = np.arctan2(top, np.where(top > 0, near, far))
    el_lo = np.arctan2(bot, np.where(bot > 0, far, near))
    c64 = col.astype(np.int64) << 32
    start = np.searchsorted(rays.pkey_desc, c64 | (_QMAX - _qel(el_hi)), side="left")
    end = np.searchsorted(rays.pkey_desc, c64 | (_QMAX - _qel(el_lo)), side="right")
    count = np.maximum(end - start, 0)
    total = int(count.sum())
    if total == 0:
        return empty
    owner = np.repeat(np.arange(len(count)), count)
    first = np.cumsum(count) - count
    pix = start[owner] + (np.arange(total) - first[owner])
    kk = k[owner]
    qq, pp, aa, cc, zz = q[owner], perp[owner], ak[owner], ck[owner], zk[owner]
    slope = rays.tan_el[pix]
    s2 = (aa / cc) ** 2
    g = cam_h - zz
    A = 1.0 + s2 * slope * slope
    B = -2.0 * qq + 2.0 * s2 * g * slope
    C = qq * qq + pp * pp + s2 * g * g - aa * aa
    disc = B * B - 4.0 * A * C
    hit = disc >= 0
    root = np.sqrt(np.maximum(disc, 0.0))
    t = (-B - root) / (2.0 * A)
    t = np.where(t > 0.02, t, (-B + root) / (2.0 * A))
    hit &= (t > 0.02) & (t < depth[pix])
    pix, kk, t, slope = pix[hit], kk[hit], t[hit], slope[hit]
    dd = dirs[rays.pix_col[pix]]
    xyz = np.stack([p[0] + t * dd[:, 0], p[1] + t * dd[:, 1], cam_h + t * slope], axis=1)
    return pix, kk, t, xyz


@dataclass
class _View:
    """Everything one render needs: camera, rays, and the city's cached scene and rasters."""

    city: City
    p: np.ndarray
    cam_h: float
    rays: Rays
    dirs: np.ndarray  # (C, 2) unit ray direction of each column
    sc: _Scene
    ras: _raster.CityRasters
    shadow: _raster.SunShadow

    @property
    def sun(self) -> np.ndarray:
        return self.city.style.sun_vector

    @property
    def el_sun(self) -> float:
        return self.city.style.sun_elevation_deg


def cast(city: City, xy, cam_h: float, rays: Rays) -> np.ndarray:
    """Colours (P, 3) float32 of the pixels of ``rays`` seen from ``(xy, cam_h)``."""
    p = np.asarray(xy, dtype=np.float64).reshape(2)
    if not cam_h > 0:
        raise ValueError(f"camera height must be > 0, got {cam_h}")
    sc = _scene(city)
    if cam_h >= sc.min_building_height:
        raise ValueError(f"camera height {cam_h} m must be below the lowest building ({sc.min_building_height} m)")
    rays.prepare()
    ras = _raster.rasters(city)
    ras.ensure_box(p[0] - GROUND_RANGE_M, p[1] - GROUND_RANGE_M, p[0] + GROUND_RANGE_M, p[1] + GROUND_RANGE_M)
    bearing = np.radians(rays.col_bearing)
    view = _View(city, p, cam_h, rays, np.stack([np.sin(bearing), np.cos(bearing)], axis=1), sc, ras,
                 _raster.sun_shadow(city))
    npix = len(rays.pix_col)
    out = np.empty((npix, 3), np.float32)
    depth = np.full(npix, np.inf)
    hits, hit_of = _solid_pixels(view)
    solid = np.nonzero(hit_of >= 0)[0]
    if len(solid):
        out[solid], depth[solid] = _shade_solids(view, hits, solid, hit_of[solid])
    rest = hit_of < 0
    down = np.nonzero(rest & (rays.pix_el < -1e-6))[0]
    up = np.nonzero(rest & (rays.pix_el >= -1e-6))[0]
    if len(down):
        out[down], depth[down] = _shade_ground(view, down)
    if len(up):
        out[up] = _sky(rays.sin_el[up], rays.cos_el[up], bearing[rays.pix_col[up]], view.sun)
    cpix, ctree, ct, cxyz = _nearest_crowns(view, depth)
    if len(cpix):
        crowns = _crown_colours(view.sc, ctree, cxyz, ct * rays.pix_angle, view.shadow, view.sun, view.el_sun,
                                _raster.noise(city))
        out[cpix] = _haze(crowns, ct, rays.cos_el[cpix])
    return out


def _solid_pixels(view: _View) -> tuple[_Hits, np.ndarray]:
    """All ray / solid hits and, per pixel, the index of the visible hit (-1: none)."""
    sc, p, rays, dirs = view.sc, view.p, view.rays, view.dirs
    hits = _concat_hits(_wall_hits(sc, p, rays, dirs), _car_hits(sc, p, rays, dirs, view.cam_h),
                        _cylinder_hits(sc, p, rays, dirs))
    hit_of = np.full(len(rays.pix_col), -1, np.int64)
    if len(hits.t):
        vcol, vlo, vhi, vidx = _visible_intervals(hits, view.cam_h)
        rkey = (vcol.astype(np.int64) << 32) | vhi
        j = np.searchsorted(rkey, rays.pkey, side="left")
        jc = np.minimum(j, len(rkey) - 1)
        ok = (j < len(rkey)) & (vcol[jc] == rays.pix_col) & (rays.qpix > vlo[jc])
        hit_of[ok] = vidx[jc[ok]]
    return hits, hit_of


def _shade_solids(view: _View, hits: _Hits, pix: np.ndarray, hidx: np.ndarray):
    """Colours and horizontal depths of pixels that see walls, cars (sides or roofs) or cylinders."""
    sc, rays, cam_h = view.sc, view.rays, view.cam_h
    t = hits.t[hidx].copy()
    slope = rays.tan_el[pix]
    z = cam_h + t * slope
    kind = hits.kind[hidx]
    # rays over the near wall of a solid lower than the camera land on its roof
    roof = z > hits.top[hidx]
    if roof.any():
        t[roof] = (hits.top[hidx][roof] - cam_h) / slope[roof]
        z[roof] = hits.top[hidx][roof]
    d = view.dirs[rays.pix_col[pix]]
    wx, wy = view.p[0] + t * d[:, 0], view.p[1] + t * d[:, 1]
    n = hits.normal[hidx]
    albedo = np.empty((len(pix), 3), np.float32)
    m = kind == 0
    if m.any():
        albedo[m] = _facade_colours(sc, hits, hidx[m], z[m], t[m] * rays.pix_angle)
    m = kind == 1
    if m.any():
        albedo[m] = _car_colours(sc, hits.obj[hidx[m]], z[m], roof[m], wx[m], wy[m])
    m = kind == 2
    if m.any():
        ci = hits.obj[hidx[m]]
        bark = 1.0 + 0.12 * _hash01(ci, np.floor(hits.along[hidx[m]] / 0.05).astype(np.int64),
                                    np.floor(z[m] / 0.15).astype(np.int64))
        albedo[m] = sc.ccol[ci] * np.where(sc.cpole[ci], 1.0, bark)[:, None]
    sun = view.sun
    lit = view.shadow.lit(wx + 0.3 * n[:, 0], wy + 0.3 * n[:, 1], z)
    n_dot_l = np.where(roof, sun[2], n[:, 0] * sun[0] + n[:, 1] * sun[1])
    shaded = albedo * _raster.lambert(n_dot_l, lit, view.el_sun).astype(np.float32)[:, None]
    return _haze(shaded, t, rays.cos_el[pix]), t


def _shade_ground(view: _View, pix: np.ndarray):
    """Colours and distances of ground-plane hits, sampled from the shaded ground raster."""
    rays, cam_h, ras = view.rays, view.cam_h, view.ras
    tg = cam_h / -rays.tan_el[pix]
    d = view.dirs[rays.pix_col[pix]]
    near = np.nonzero(tg < GROUND_RANGE_M)[0]
    far_colour = _distant_ground(view.city)
    col = np.empty((len(pix), 3), np.float32)
    col[:] = far_colour
    if len(near):
        tn = tg[near]
        gx, gy = view.p[0] + tn * d[near, 0], view.p[1] + tn * d[near, 1]
        radial = (cam_h * cam_h + tn * tn) / cam_h * rays.pix_angle
        foot = np.sqrt(radial * tn * rays.pix_angle)  # geometric mean of the pixel's radial and lateral extent
        sample = _sample_ground(ras, gx, gy, foot)
        fine = foot < ras.m0
        if fine.any():  # grain below the raster resolution, fading in as pixels get smaller
            grain = _raster.noise(view.city).at(0, np.floor(gy[fine] / 0.02).astype(np.int64),
                                                np.floor(gx[fine] / 0.02).astype(np.int64))
            amp = (0.07 * (1.0 - foot[fine] / ras.m0)).astype(np.float32)
            sample[fine] *= (1.0 + amp * grain)[:, None]
        fade = np.clip((tn - 0.8 * GROUND_RANGE_M) / (0.2 * GROUND_RANGE_M), 0.0, 1.0).astype(np.float32)[:, None]
        col[near] = sample * (1 - fade) + far_colour * fade
    return _haze(col, tg, rays.cos_el[pix]), tg


def _nearest_crowns(view: _View, depth: np.ndarray):
    """Per pixel the nearest crown hit in front of ``depth``: (pixel, tree, distance, hit xyz)."""
    cpix, ctree, ct, cxyz = _crown_hits(view.sc, view.p, view.cam_h, view.rays, view.dirs, depth)
    if len(cpix):
        best = np.full(len(depth), np.inf)
        np.minimum.at(best, cpix, ct)
        win = ct == best[cpix]
        cpix, ctree, ct, cxyz = cpix[win], ctree[win], ct[win], cxyz[win]
        cpix, first = np.unique(cpix, return_index=True)
        ctree, ct, cxyz = ctree[first], ct[first], cxyz[first]
    return cpix, ctree, ct, cxyz


def _haze(colour: np.ndarray, horizontal_dist: np.ndarray, cos_el: np.ndarray) -> np.ndarray:
    """Aerial perspective: blend towards the haze colour with the 3-D distance."""
    dist = (horizontal_dist / np.maximum(cos_el, 1e-3)).astype(np.float32)
    f = (1.0 - np.exp(-dist / np.float32(HAZE_DISTANCE_M)))[:, None]
    return colour * (1 - f) + HAZE * f


def _crown_colours(sc: _Scene, tree, xyz, footprint, shadow, sun, el_sun, nz) -> np.ndarray:
    """Crown shading: ellipsoid normal (Lambert), building shadows, leaf clumps, darker underside."""
    a, c = sc.ta[tree], sc.tc[tree]
    rel = xyz - np.concatenate([sc.txy[tree], sc.tz[tree][:, None]], axis=1)
    n = np.stack([rel[:, 0] / (a * a), rel[:, 1] / (a * a), rel[:, 2] / (c * c)], axis=1)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    lit = shadow.lit(xyz[:, 0], xyz[:, 1], xyz[:, 2])
    bright = _raster.lambert(n @ sun, lit, el_sun).astype(np.float32)
    # leaf clumps: the city's noise fields on the crown's (arc length, height) surface coordinates
    u = (np.arctan2(rel[:, 1], rel[:, 0]) + np.pi) * a / 0.05 + tree * 97
    v = xyz[:, 2] / 0.05
    iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    amp = np.clip(1.2 - footprint / 0.5, 0.3, 1.0).astype(np.float32)
    leaves = 1.0 + amp * (0.22 * nz.at(1, iv, iu) + 0.12 * nz.at(2, iv, iu))
    height_f = np.clip((rel[:, 2] + c) / (2 * c), 0, 1).astype(np.float32)
    return sc.tcol[tree] * (bright * leaves * (0.7 + 0.3 * height_f))[:, None]


def _distant_ground(city: City) -> np.ndarray:
    def build():
        pal = palette_for(city.style.palette)
        mix = 0.4 * np.array(pal.asphalt) + 0.3 * np.array(pal.paving[0]) + 0.3 * np.array(pal.grass[0])
        return (0.85 * mix).astype(np.float32)

    return city.cached("distant_ground", build)


def pano_grid(width: int, height: int) -> Rays:
    key = (width, height)
    if key not in _PANO_GRIDS:
        if len(_PANO_GRIDS) > 8:
            _PANO_GRIDS.clear()
        u = np.arange(width, dtype=np.float64)
        el = np.radians(90.0 - 180.0 * (np.arange(height, dtype=np.float64) + 0.5) / height)
        _PANO_GRIDS[key] = Rays(forward=0.0, col_rel=(u + 0.5) * (360.0 / width) - 180.0, col_bearing=u,
                                 pix_col=np.repeat(np.arange(width), height), pix_el=np.tile(el, width),
                                 pix_angle=2 * math.pi / width).prepare()
    return _PANO_GRIDS[key]
