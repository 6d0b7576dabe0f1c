"""D (the location distribution over the chosen tile) as an RGB image for RViz.

The tile is grid-north-up (row 0 = north edge), as the database stores it. D is scaled by
its maximum and coloured with OpenCV's inferno map (dark: improbable, yellow: probable);
the MAP pixel is marked with a cyan cross. The image is upsampled by a whole factor to at
least ``min_size`` pixels so that RViz shows it crisp.
"""

from __future__ import annotations

import numpy as np


def heatmap_rgb(d: np.ndarray, pixel: tuple[float, float] | None = None, min_size: int = 256) -> np.ndarray:
    import cv2

    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 2 or d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"heatmap: expected a finite 2-D distribution, got shape {d.shape}")
    peak = float(d.max())
    norm = d / peak if peak > 0 else np.zeros_like(d)
    u8 = np.clip(np.rint(norm * 255.0), 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, cv2.COLORMAP_INFERNO)
    k = max(1, int(np.ceil(min_size / max(d.shape))))
    if k > 1:
        bgr = cv2.resize(bgr, (d.shape[1] * k, d.shape[0] * k), interpolation=cv2.INTER_NEAREST)
    if pixel is not None:
        r, c = float(pixel[0]) * k, float(pixel[1]) * k
        arm = max(4, 3 * k)
        cv2.drawMarker(bgr, (int(round(c)), int(round(r))), (255, 255, 0), cv2.MARKER_CROSS, 2 * arm, 1)
    return np.ascontiguousarray(bgr[:, :, ::-1])
