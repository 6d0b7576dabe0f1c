"""The demo's map sheet: fixes with their ellipses, views without a fix marked apart."""

from __future__ import annotations

import cv2
import numpy as np

from unifygeo_ros.localizer.plots import MODE_COLOURS, map_sheet


def _record(truth, estimate, fix, confidence=0.9):
    err = float(np.hypot(estimate[0] - truth[0], estimate[1] - truth[1]))
    return {"truth_xy": list(truth), "estimate_xy": list(estimate), "error_m": err,
            "cov_xy": [[25.0, 0.0], [0.0, 25.0]], "fix": fix, "confidence": confidence}


def test_views_without_a_fix_get_no_ellipse_and_no_mode_colour(tmp_path):
    ortho = np.full((200, 200, 3), 128, np.uint8)          # 200 m at 1 m/px, 2 px per metre drawn
    records = {"mode": [_record((50, 50), (52, 50), True), _record((150, 150), (140, 140), False),
                        _record((50, 150), (60, 140), True, confidence=0.05)]}
    path = map_sheet(ortho, 1.0, records, tmp_path / "sheet.png", min_confidence=0.1)
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)[34:]      # below the caption bar
    colour = np.array(MODE_COLOURS[0])

    def mode_pixels(x, y, r=30):
        cx, cy = 2 * x, 400 - 2 * y
        patch = img[cy - r:cy + r, cx - r:cx + r].astype(int)
        return int((np.abs(patch - colour).sum(axis=2) < 60).sum())

    assert mode_pixels(52, 50) > 50          # the fix: its cross and its 95 % ellipse (12 px radius)
    assert mode_pixels(140, 140) == 0        # no fix: a grey cross only
    assert mode_pixels(60, 140) == 0         # a fix under min_confidence: not published, grey too
    ungated = map_sheet(ortho, 1.0, records, tmp_path / "all.png")          # no gate: the fix is drawn
    img = cv2.cvtColor(cv2.imread(str(ungated)), cv2.COLOR_BGR2RGB)[34:]
    assert mode_pixels(60, 140) > 50
