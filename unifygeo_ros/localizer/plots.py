"""Pictures: D over the chosen tile, and truths / estimates / 95 % ellipses over an orthophoto."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..inference.calibration import CHI2_2_95

MODE_COLOURS = [(230, 60, 40), (40, 110, 240), (250, 170, 0), (200, 40, 200), (0, 200, 210), (140, 90, 30),
                (90, 160, 60), (70, 70, 170)]   # RGB per mode


def heatmap(d: np.ndarray) -> np.ndarray:
    import cv2

    v = d / max(float(d.max()), 1e-12)
    return cv2.applyColorMap((255 * v).astype(np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1]


def write_distribution_png(result, loc, path: str | Path, scale: int = 3) -> Path:
    """The chosen tile (left) and D over it (right), the MAP pixel marked."""
    import cv2

    d = result.distribution
    if d is None:
        raise ValueError("the result carries no distribution (localize with return_distribution=True)")
    db = loc.db
    tile, why = db.tile_image(result.tile_id)
    side = db.tile_size * scale
    if tile is None:                    # grey, saying why: the picture still shows D
        tile_big = np.full((side, side, 3), 128, np.uint8)
        cv2.putText(tile_big, "tile pixels unavailable:", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        cv2.putText(tile_big, why[:60], (8, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    else:
        tile_big = cv2.resize(tile, (side, side), interpolation=cv2.INTER_NEAREST)
    heat = cv2.resize(heatmap(d), (side, side), interpolation=cv2.INTER_NEAREST)
    over = (0.5 * tile_big + 0.5 * heat).astype(np.uint8)
    r, c = result.pixel
    cv2.drawMarker(over, (int(c * scale), int(r * scale)), (0, 255, 0), cv2.MARKER_CROSS, 16, 2)
    sheet = np.concatenate([tile_big, over], axis=1)
    return _write_png(path, sheet)


def ellipse_axes(cov: np.ndarray, chi2: float = CHI2_2_95) -> tuple[float, float, float]:
    """Semi-axes (major, minor, metres) and the major axis' angle (degrees, from +x, CCW) of the
    ``chi2`` ellipse of a 2 x 2 covariance."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    vals = np.clip(vals, 0.0, None)
    major, minor = np.sqrt(chi2 * vals[1]), np.sqrt(chi2 * vals[0])
    angle = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
    return float(major), float(minor), angle


MAX_ELLIPSE_M = 60.0


def map_sheet(ortho_rgb: np.ndarray, mpp: float, records_by_mode: dict, path: str | Path, title: str = "",
              px_per_m: float = 2.0, min_confidence: float = 0.0) -> Path:
    """Truths (green dots), estimates (crosses, a colour per mode), truth-to-estimate lines (red
    when the error exceeds 10 m) and 95 % ellipses over the orthophoto (``ortho_rgb`` north-up,
    its lower-left corner at map (0, 0), ``mpp`` metres per pixel). Ellipses wider than
    :data:`MAX_ELLIPSE_M` are not drawn (the panel's caption counts them). A view that would
    publish nothing, reported as no fix (``fix`` false) or with a ``confidence`` under
    ``min_confidence`` (the node's gate), shows its truth and a small grey cross for the
    estimate, without ellipse or line, and is left out of the caption's errors, which are those
    of the published estimates. One panel per mode."""
    import cv2

    h, w = ortho_rgb.shape[:2]
    out_w, out_h = int(round(w * mpp * px_per_m)), int(round(h * mpp * px_per_m))
    base = cv2.resize(ortho_rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)
    base = (0.65 * base + 0.35 * 255).astype(np.uint8)       # lighten so the marks stand out

    def px(x, y):
        return int(round(x * px_per_m)), int(round(out_h - y * px_per_m))

    panels = []
    for i, (mode, records) in enumerate(records_by_mode.items()):
        img = base.copy()
        colour = MODE_COLOURS[i % len(MODE_COLOURS)]
        wide = 0
        localized = [r for r in records if "error_m" in r]

        def published(r):
            return r.get("fix", True) and r.get("confidence", 1.0) >= min_confidence

        ok = [r for r in localized if published(r)]
        for r in localized:
            if published(r):
                continue
            cv2.circle(img, px(*r["truth_xy"]), 3, (0, 170, 0), -1, cv2.LINE_AA)
            cv2.drawMarker(img, px(*r["estimate_xy"]), (150, 150, 150), cv2.MARKER_CROSS, 6, 1)
        for r in ok:
            tx, ty = r["truth_xy"]
            ex, ey = r["estimate_xy"]
            major, minor, ang = ellipse_axes(np.asarray(r["cov_xy"]))
            centre = px(ex, ey)
            if major <= MAX_ELLIPSE_M:
                axes = (max(1, int(round(major * px_per_m))), max(1, int(round(minor * px_per_m))))
                cv2.ellipse(img, centre, axes, -ang, 0, 360, colour, 1, cv2.LINE_AA)
            else:
                wide += 1
            cv2.line(img, px(tx, ty), centre, (220, 0, 0) if r["error_m"] > 10.0 else (70, 70, 70), 1, cv2.LINE_AA)
            cv2.circle(img, px(tx, ty), 3, (0, 170, 0), -1, cv2.LINE_AA)
            cv2.drawMarker(img, centre, colour, cv2.MARKER_CROSS, 8, 2)
        bar = np.full((34, out_w, 3), 255, np.uint8)
        med = np.median([r["error_m"] for r in ok]) if ok else float("nan")
        within = np.mean([r["error_m"] <= 10.0 for r in ok]) if ok else float("nan")
        no_fix = sum(not r.get("fix", True) for r in localized)
        gated = len(localized) - len(ok) - no_fix
        below = f", {gated} under min_confidence {min_confidence:g}" if min_confidence > 0 else ""
        cv2.putText(bar, f"{mode}: published median {med:.1f} m, {100 * within:.0f}% within 10 m; {no_fix} no fix"
                         f"{below} (grey); {wide} of {len(ok)} ellipses > {MAX_ELLIPSE_M:g} m not drawn", (6, 23),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        panels.append(np.concatenate([bar, img], axis=0))
    cols = 2 if len(panels) > 1 else 1
    while len(panels) % cols:
        panels.append(np.full_like(panels[0], 255))
    rows = [np.concatenate(panels[j:j + cols], axis=1) for j in range(0, len(panels), cols)]
    sheet = np.concatenate(rows, axis=0)
    if title:
        head = np.full((40, sheet.shape[1], 3), 255, np.uint8)
        cv2.putText(head, title, (8, 27), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
        sheet = np.concatenate([head, sheet], axis=0)
    return _write_png(path, sheet)


def _write_png(path, rgb: np.ndarray) -> Path:
    """Write an RGB image; ValueError / OSError naming the file when it cannot be written."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = cv2.imwrite(str(path), rgb[:, :, ::-1])
    except cv2.error as exc:
        raise ValueError(f"{path}: OpenCV cannot write it ({' '.join(str(exc).split())[:160]})") from None
    if not written:
        raise OSError(f"{path}: could not be written")
    return path
