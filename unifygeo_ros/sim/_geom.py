"""Small 2-D geometry helpers for the synthetic city (local metres, x east, y north).

Polygons are ``(K, 2)`` float arrays without a repeated closing vertex; *CCW* means
counter-clockwise in the x-east / y-north frame (positive signed area), so an edge
``A -> B`` of a CCW polygon has its outward normal on its right: ``(dy, -dx) / |AB|``.
Polylines are ``(K, 2)`` arrays; "left" is to the left of the direction of travel.
"""

from __future__ import annotations

import numpy as np


def signed_area(poly: np.ndarray) -> float:
    """Signed area (positive for CCW)."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def ensure_ccw(poly: np.ndarray) -> np.ndarray:
    poly = np.asarray(poly, dtype=np.float64)
    return poly[::-1].copy() if signed_area(poly) < 0 else poly


def outward_normals(poly: np.ndarray) -> np.ndarray:
    """Unit outward normals of the edges ``poly[i] -> poly[i+1]`` of a CCW polygon."""
    d = np.roll(poly, -1, axis=0) - poly
    n = np.stack([d[:, 1], -d[:, 0]], axis=1)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def clip_halfplane(poly: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Part of a convex polygon where ``normal . p >= offset`` (Sutherland-Hodgman step)."""
    if len(poly) == 0:
        return poly
    side = poly @ normal - offset
    out = []
    k = len(poly)
    for i in range(k):
        j = (i + 1) % k
        if side[i] >= 0:
            out.append(poly[i])
        if (side[i] >= 0) != (side[j] >= 0):
            t = side[i] / (side[i] - side[j])
            out.append(poly[i] + t * (poly[j] - poly[i]))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def extent_along(poly: np.ndarray, direction: np.ndarray) -> tuple[float, float]:
    proj = poly @ direction
    return float(proj.min()), float(proj.max())


def points_in_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd test of ``(N, 2)`` points against one simple polygon (vectorised)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    px, py = points[:, 0:1], points[:, 1:2]
    ax, ay = poly[:, 0][None, :], poly[:, 1][None, :]
    bx, by = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    crosses = (ay > py) != (by > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = ax + (py - ay) * (bx - ax) / (by - ay)
    return np.count_nonzero(crosses & (px < xint), axis=1) % 2 == 1


def cumulative_length(pts: np.ndarray) -> np.ndarray:
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def densify(pts: np.ndarray, max_step: float) -> np.ndarray:
    """Insert points so that consecutive points are at most ``max_step`` apart."""
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:]):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / max_step)))
        t = np.arange(1, n + 1)[:, None] / n
        out.append(a + t * (b - a))
    return np.concatenate(out, axis=0)


def densify_ring(poly: np.ndarray, max_step: float) -> np.ndarray:
    closed = np.concatenate([poly, poly[:1]], axis=0)
    return densify(closed, max_step)[:-1]


def resample(pts: np.ndarray, step: float) -> np.ndarray:
    """Points at arc length ``0, step, 2 step, ...`` and the end point."""
    cum = cumulative_length(pts)
    total = cum[-1]
    n = max(1, int(np.ceil(total / step - 1e-9)))
    s = np.linspace(0.0, total, n + 1)
    return np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], axis=1)


def point_at(pts: np.ndarray, cum: np.ndarray, s) -> tuple[np.ndarray, np.ndarray]:
    """Positions and unit tangents at arc lengths ``s`` along a polyline."""
    s = np.clip(np.asarray(s, dtype=np.float64), 0.0, cum[-1])
    idx = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(pts) - 2)
    seg = pts[idx + 1] - pts[idx]
    seg_len = np.maximum(cum[idx + 1] - cum[idx], 1e-12)
    t = (s - cum[idx]) / seg_len
    pos = pts[idx] + t[..., None] * seg
    return pos, seg / seg_len[..., None]


def vertex_normals(pts: np.ndarray) -> np.ndarray:
    """Left unit normals at the vertices (miter directions scaled to keep the offset width)."""
    d = np.diff(pts, axis=0)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    seg_n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    n = np.empty_like(pts)
    n[0], n[-1] = seg_n[0], seg_n[-1]
    if len(pts) > 2:
        mid = seg_n[:-1] + seg_n[1:]
        mid /= np.maximum(np.linalg.norm(mid, axis=1, keepdims=True), 1e-12)
        cos_half = np.clip(np.sum(mid * seg_n[1:], axis=1, keepdims=True), 0.3, 1.0)
        n[1:-1] = mid / cos_half
    return n


def offset_polyline(pts: np.ndarray, offset: float) -> np.ndarray:
    """The polyline shifted ``offset`` metres to its left (negative: right)."""
    return pts + offset * vertex_normals(pts)


def sub_polyline(pts: np.ndarray, cum: np.ndarray, s0: float, s1: float) -> np.ndarray:
    """The part of a polyline between arc lengths ``s0 < s1``."""
    inner = (cum > s0) & (cum < s1)
    p0, _ = point_at(pts, cum, s0)
    p1, _ = point_at(pts, cum, s1)
    return np.concatenate([p0[None], pts[inner], p1[None]], axis=0)


def strip_polygon(pts: np.ndarray, left: float, right: float) -> np.ndarray:
    """Polygon covering lateral offsets ``[right, left]`` (left-positive) along a polyline."""
    n = vertex_normals(pts)
    return np.concatenate([pts + left * n, (pts + right * n)[::-1]], axis=0)


def circle_polygon(center, radius: float, n: int = 24) -> np.ndarray:
    ang = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.asarray(center, dtype=np.float64) + radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)


def ellipse_polygon(center, rx: float, ry: float, angle_rad: float, n: int = 32) -> np.ndarray:
    ang = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    local = np.stack([rx * np.cos(ang), ry * np.sin(ang)], axis=1)
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.asarray(center, dtype=np.float64) + local @ np.array([[c, s], [-s, c]])


def rect_polygon(center, heading_rad: float, length: float, width: float) -> np.ndarray:
    """CCW rectangle with its ``length`` axis along ENU angle ``heading_rad``."""
    u = np.array([np.cos(heading_rad), np.sin(heading_rad)])
    v = np.array([-u[1], u[0]])
    hl, hw = 0.5 * length, 0.5 * width
    c = np.asarray(center, dtype=np.float64)
    return np.array([c - hl * u - hw * v, c + hl * u - hw * v, c + hl * u + hw * v, c - hl * u + hw * v])


def chaikin(pts: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Corner-cutting smoothing of an open polyline (end points kept)."""
    for _ in range(iterations):
        if len(pts) < 3:
            return pts
        q = 0.75 * pts[:-1] + 0.25 * pts[1:]
        r = 0.25 * pts[:-1] + 0.75 * pts[1:]
        mid = np.empty((2 * len(q), 2))
        mid[0::2], mid[1::2] = q, r
        pts = np.concatenate([pts[:1], mid[1:-1], pts[-1:]], axis=0)
    return pts


def convex_overlap(p: np.ndarray, q: np.ndarray, margin: float = 0.0) -> bool:
    """Separating-axis test of two convex polygons, each grown by ``margin``."""
    for poly in (p, q):
        for n in outward_normals(ensure_ccw(poly)):
            a0, a1 = (p @ n).min(), (p @ n).max()
            b0, b1 = (q @ n).min(), (q @ n).max()
            if a1 + margin <= b0 - margin or b1 + margin <= a0 - margin:
                return False
    return True


def segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances from ``(N, 2)`` points to each of ``(M, 2) -> (M, 2)`` segments: ``(N, M)``."""
    ab = b - a
    ap = points[:, None, :] - a[None, :, :]
    t = np.clip(np.sum(ap * ab[None], axis=2) / np.maximum(np.sum(ab * ab, axis=1), 1e-12)[None], 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None, :] - closest, axis=2)
