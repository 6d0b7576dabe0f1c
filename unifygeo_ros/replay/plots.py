"""The replay report's pictures, drawn with OpenCV (no plotting library needed).

* ``trajectory.png``: the orthophoto around the drive (map frame, grid north up), the true
  base_link track (white), each estimate as a dot coloured by its error (green <= 5 m,
  yellow <= 10 m, orange <= 25 m, red beyond) joined to its truth by a thin line, its 95 %
  ellipse, and frames without a pose as red crosses on the track; a scale bar and a legend.
* ``error.png``: position error over time with the 95 % radius of the published
  covariance (largest axis of the ellipse), yaw error over time, failed frames as red ticks.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from ..inference.calibration import CHI2_2_95
from ..localizer.plots import ellipse_axes

BG = (250, 250, 250)          # RGB
INK = (30, 30, 30)
GRID = (215, 215, 215)
WHITE = (255, 255, 255)
RED = (220, 30, 30)
BLUE = (40, 90, 200)
GREY = (150, 150, 150)
MAGENTA = (200, 30, 180)


def error_colour(err: float) -> tuple[int, int, int]:
    if err <= 5.0:
        return (40, 190, 60)
    if err <= 10.0:
        return (240, 210, 40)
    if err <= 25.0:
        return (245, 140, 30)
    return (225, 35, 35)


def _text(img, text, org, scale=0.5, colour=INK, outline=None, thickness=1):
    if outline is not None:
        for dx, dy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            cv2.putText(img, text, (org[0] + dx, org[1] + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, outline, thickness,
                        cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _write(path: Path, rgb: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"could not write {path}")


def _read_ortho(ortho_path: Path, map_frame, bounds, px_per_m: float, size_wh) -> tuple[np.ndarray | None, str]:
    """The orthophoto resampled onto the picture's grid (or None and why)."""
    if ortho_path is None:
        return None, "no orthophoto"
    try:
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.windows import from_bounds
    except ImportError as exc:  # pragma: no cover
        return None, f"rasterio missing ({exc})"
    xmin, ymin, xmax, ymax = bounds
    try:
        with rasterio.open(ortho_path) as src:
            from ..geo import MapFrame

            if map_frame is None or src.crs is None or not (
                    src.crs.to_wkt() == map_frame.crs_wkt or MapFrame(src.crs.to_wkt(), 0, 0).crs == map_frame.crs):
                return None, "orthophoto CRS differs from the map frame's"
            e0, n0 = map_frame.origin_e, map_frame.origin_n
            win = from_bounds(xmin + e0, ymin + n0, xmax + e0, ymax + n0, src.transform)
            w, h = size_wh
            bands = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
            data = src.read(bands, window=win, out_shape=(3, h, w), boundless=True, fill_value=235,
                            resampling=Resampling.bilinear)
    except Exception as exc:
        return None, f"orthophoto unreadable ({type(exc).__name__}: {exc})"
    img = np.moveaxis(data, 0, -1)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return img, "ok"


def trajectory_png(run, rows: list[dict], path: Path, ortho_path: Path | None, max_side: int = 1100,
                   clouds: list | None = None, title: str = "replay", seeds: list | None = None) -> str:
    """The picture described in the module docstring; ``clouds``: (stamp, (n, 2) particle
    positions) drawn as small blue dots with the time, under the estimates; ``seeds``: the
    initial poses (``core.SeedRecord``) applied, drawn as magenta arrows in the circle holding 95 %
    of their position."""
    truth = run.truth_track[:, 1:3] if run.truth_track is not None else np.zeros((0, 2))
    est = np.array([(r["x"], r["y"]) for r in rows if r["x"] is not None], dtype=np.float64).reshape(-1, 2)
    pts = np.concatenate([truth, est]) if len(truth) else est
    if len(pts) == 0:
        pts = np.zeros((1, 2))
    if len(truth):
        # keep far-off estimates from shrinking the drive: at most 60 m beyond the track
        lo, hi = truth.min(0) - 60.0, truth.max(0) + 60.0
        pts = np.clip(pts, lo, hi)
    margin = 15.0
    xmin, ymin = pts.min(0) - margin
    xmax, ymax = pts.max(0) + margin
    span = max(xmax - xmin, ymax - ymin, 20.0)
    s = (max_side - 100) / span
    W, H = int(math.ceil((xmax - xmin) * s)), int(math.ceil((ymax - ymin) * s))
    ortho, how = _read_ortho(ortho_path, run.map_frame, (xmin, ymin, xmax, ymax), s, (W, H))
    img = ortho.copy() if ortho is not None else np.full((H, W, 3), 235, np.uint8)
    if ortho is not None:
        img = (0.75 * img + 0.25 * 255).astype(np.uint8)        # lighten so the marks read

    def px(x, y):
        return int(round((x - xmin) * s)), int(round((ymax - y) * s))

    if len(truth) > 1:
        poly = np.array([px(x, y) for x, y in truth], np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [poly], False, (0, 0, 0), 5, cv2.LINE_AA)
        cv2.polylines(img, [poly], False, WHITE, 3, cv2.LINE_AA)
        x0, y0 = px(*truth[0])
        cv2.circle(img, (x0, y0), 7, (0, 0, 0), 2, cv2.LINE_AA)
        _text(img, "start", (x0 + 9, y0 - 6), 0.45, WHITE, outline=(0, 0, 0))
    clip_lo = np.array([xmin, ymin])
    clip_hi = np.array([xmax, ymax])
    t_first = rows[0]["stamp_ns"] if rows else 0
    for stamp, cloud in clouds or ():
        pts = np.clip(np.asarray(cloud, dtype=np.float64).reshape(-1, 2), clip_lo, clip_hi)
        for x, y in pts:
            cv2.circle(img, px(x, y), 1, (20, 70, 230), -1)
        cx, cy = px(*pts.mean(0))
        _text(img, f"{(stamp - t_first) / 1e9:.0f} s", (cx + 8, cy - 8), 0.45, (20, 70, 230), outline=WHITE)
    applied_seeds = [sd for sd in seeds or () if sd.applied]
    for sd in applied_seeds:
        c = px(*np.clip([sd.x, sd.y], clip_lo, clip_hi))
        if math.isfinite(sd.sigma_m):
            cv2.circle(img, c, max(int(round(math.sqrt(CHI2_2_95) * sd.sigma_m * s)), 3), MAGENTA, 2, cv2.LINE_AA)
        tip = (int(round(c[0] + 22 * math.cos(sd.yaw))), int(round(c[1] - 22 * math.sin(sd.yaw))))
        cv2.arrowedLine(img, c, tip, MAGENTA, 2, cv2.LINE_AA, tipLength=0.35)
        _text(img, "initial pose", (c[0] + 9, c[1] + 18), 0.45, MAGENTA, outline=WHITE)
    for r in rows:
        if r["x"] is None or r["truth_x"] is None:
            continue
        e = np.clip([r["x"], r["y"]], clip_lo, clip_hi)
        cv2.line(img, px(*e), px(r["truth_x"], r["truth_y"]), (60, 60, 60), 1, cv2.LINE_AA)
    for r in rows:
        if r["x"] is None:
            continue
        colour = error_colour(r["error_m"]) if r["error_m"] is not None else BLUE
        if r.get("cov_xy") is not None:
            major, minor, angle = ellipse_axes(r["cov_xy"])              # metres; angle CCW from +x
            centre = px(r["x"], r["y"])
            if major * s < 4 * max_side:                                   # image y down: angle flips
                cv2.ellipse(img, centre, (int(round(major * s)), int(round(minor * s))), -angle, 0, 360, colour, 1,
                            cv2.LINE_AA)
        e = np.clip([r["x"], r["y"]], clip_lo, clip_hi)
        cv2.circle(img, px(*e), 5, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(img, px(*e), 4, colour, -1, cv2.LINE_AA)
    for r in rows:
        if not r["published"] and r["truth_x"] is not None:
            cv2.drawMarker(img, px(r["truth_x"], r["truth_y"]), RED, cv2.MARKER_TILTED_CROSS, 12, 2, cv2.LINE_AA)

    # frame: title band on top, legend band below
    top, bottom = 44, 74
    canvas = np.full((H + top + bottom, max(W, 640), 3), BG, np.uint8)
    canvas[top:top + H, :W] = img
    scored = [r for r in rows if r["error_m"] is not None]
    med = np.median([r["error_m"] for r in scored]) if scored else float("nan")
    n_pub = sum(r["published"] for r in rows)
    score = f"median error {med:.1f} m" if scored else "no truth: errors not scored"
    _text(canvas, f"{title}: {len(rows)} frames, pose published {n_pub} ({100 * n_pub / len(rows):.0f} %), {score}",
          (10, 28), 0.6)
    # scale bar
    bar_m = 10 ** math.floor(math.log10(max(span / 5, 1e-3)))
    for mult in (5, 2, 1):
        if mult * bar_m * s <= W / 4:
            bar_m *= mult
            break
    y = top + H - 14
    cv2.rectangle(canvas, (12, y - 4), (12 + int(bar_m * s), y + 2), (0, 0, 0), -1)
    _text(canvas, f"{bar_m:g} m", (12, y - 9), 0.45, WHITE, outline=(0, 0, 0))
    _text(canvas, "N (grid) ^", (W - 95, top + 20), 0.45, WHITE, outline=(0, 0, 0))
    ly = top + H + 26
    x = 10
    for label, colour in (("<= 5 m", error_colour(1)), ("<= 10 m", error_colour(7)), ("<= 25 m", error_colour(20)),
                          ("> 25 m", error_colour(99))):
        cv2.circle(canvas, (x + 6, ly - 5), 5, colour, -1, cv2.LINE_AA)
        _text(canvas, label, (x + 16, ly), 0.45)
        x += 95
    cv2.line(canvas, (x, ly - 5), (x + 24, ly - 5), (0, 0, 0), 3)
    _text(canvas, "truth", (x + 30, ly), 0.45)
    x += 85
    cv2.drawMarker(canvas, (x + 6, ly - 5), RED, cv2.MARKER_TILTED_CROSS, 12, 2)
    _text(canvas, "no pose", (x + 16, ly), 0.45)
    _text(canvas, f"rings: 95 % covariance ellipses; background: {how if ortho is None else 'orthophoto'}"
                  + ("; blue dots: the filter's particles at the time shown" if clouds else "")
                  + ("; magenta: initial pose (95 % circle)" if applied_seeds else ""),
          (10, ly + 28), 0.45, (90, 90, 90))
    _write(path, canvas)
    return how


class _Axes:
    def __init__(self, img, box, x_range, y_range, title, ylabel):
        self.img, self.box = img, box
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        l, t, r, b = box
        cv2.rectangle(img, (l, t), (r, b), INK, 1)
        for v in _ticks(self.y0, self.y1):
            yy = self.py(v)
            cv2.line(img, (l, yy), (r, yy), GRID, 1)
            _text(img, f"{v:g}", (l - 48, yy + 4), 0.4)
        for v in _ticks(self.x0, self.x1):
            xx = self.px(v)
            cv2.line(img, (xx, t), (xx, b), GRID, 1)
            _text(img, f"{v:g}", (xx - 10, b + 16), 0.4)
        cv2.rectangle(img, (l, t), (r, b), INK, 1)
        _text(img, title, (l, t - 8), 0.5)
        _text(img, ylabel, (l - 50, t - 8), 0.4, (90, 90, 90))

    def px(self, x):
        l, _, r, _ = self.box
        return int(round(l + (x - self.x0) / max(self.x1 - self.x0, 1e-9) * (r - l)))

    def py(self, y):
        _, t, _, b = self.box
        y = min(max(y, self.y0), self.y1)
        return int(round(b - (y - self.y0) / max(self.y1 - self.y0, 1e-9) * (b - t)))


def _ticks(lo, hi, n=6):
    span = hi - lo
    if span <= 0:
        return [lo]
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def error_png(rows: list[dict], path: Path, summary: dict | None = None) -> None:
    W, H = 1100, 720
    img = np.full((H, W, 3), BG, np.uint8)
    t = [r["t_s"] for r in rows]
    tmax = max(t[-1], 1.0)
    errs = [r["error_m"] for r in rows if r["error_m"] is not None]
    r95 = [r["r95_m"] for r in rows if r.get("r95_m") is not None]
    ymax = max([10.0] + [float(np.percentile(errs, 95)) * 1.3 if errs else 0.0]
               + [float(np.percentile(r95, 90)) * 1.1 if r95 else 0.0])
    ymax = min(ymax, 200.0)
    ax = _Axes(img, (80, 60, W - 30, 380), (0.0, tmax), (0.0, ymax), "position error of base_link (m) vs time (s)",
               "m")
    prev = None
    for r in rows:
        if r.get("r95_m") is None:
            prev = None
            continue
        p = (ax.px(r["t_s"]), ax.py(r["r95_m"]))
        if prev is not None:
            cv2.line(img, prev, p, (120, 150, 230), 2, cv2.LINE_AA)
        prev = p
    for r in rows:
        if r["error_m"] is None:
            continue
        p = (ax.px(r["t_s"]), ax.py(r["error_m"]))
        if r["error_m"] > ymax:
            cv2.drawMarker(img, (p[0], p[1] + 6), error_colour(r["error_m"]), cv2.MARKER_TRIANGLE_UP, 10, 2)
        else:
            cv2.circle(img, p, 4, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(img, p, 3, error_colour(r["error_m"]), -1, cv2.LINE_AA)
    for r in rows:
        if not r["published"]:
            x = ax.px(r["t_s"])
            cv2.line(img, (x, 380 - 12), (x, 380), RED, 2)
    _text(img, "blue line: 95 % radius of the published covariance; red ticks: no pose; triangles: off the scale",
          (80, 402), 0.42, (90, 90, 90))
    yerrs = [abs(r["yaw_error_deg"]) for r in rows if r["yaw_error_deg"] is not None]
    ymax2 = min(180.0, max([10.0] + ([float(np.percentile(yerrs, 95)) * 1.3] if yerrs else [])))
    ax2 = _Axes(img, (80, 450, W - 30, 650), (0.0, tmax), (0.0, ymax2), "|yaw error| (deg) vs time (s)", "deg")
    for r in rows:
        if r["yaw_error_deg"] is None:
            continue
        v = abs(r["yaw_error_deg"])
        p = (ax2.px(r["t_s"]), ax2.py(v))
        cv2.circle(img, p, 3, BLUE if v <= ymax2 else RED, -1, cv2.LINE_AA)
    if summary:
        e = summary["error_m"]
        rec = summary["recall"]
        txt = (f"availability {summary['availability']:.0%}   median {e['median'] or float('nan'):.1f} m   "
               f"p95 {e['p95'] or float('nan'):.1f} m   R@1m {rec['R@1m'] or 0:.0%}  R@5m {rec['R@5m'] or 0:.0%}  "
               f"R@10m {rec['R@10m'] or 0:.0%}   inside 95 % ellipse "
               f"{(summary['covariance']['inside_95_ellipse'] or 0):.0%}")
        _text(img, txt, (80, 30), 0.5)
    _text(img, "time since the first frame (s)", (W // 2 - 110, 690), 0.45, (90, 90, 90))
    _write(path, img)
