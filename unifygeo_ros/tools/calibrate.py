"""``unifygeo calibrate``: fit the covariance scale factors on held-out synthetic cities.

For each seed (never a training seed, never the demo's): build the city's database, render
``views`` street views per mode at random street positions and headings, localize them
with an *unscaled* covariance, and fit ``c_pos`` and ``c_yaw`` (:mod:`unifygeo_ros.inference.calibration`) on the
panorama records, and a second pair on the pinhole records (stored under ``"pinhole"``).
``--write`` stores the result for the model's hash in the calibration table (JSON data,
``unifygeo_ros/weights/calibration.json``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..inference.calibration import (
    CALIBRATION_FILE,
    CALIBRATION_FORMAT,
    CHI2_2_95,
    Z_95,
    Calibration,
    fit_scales,
    read_calibrations,
)

DEMO_SEED = 2026
ORIGINS = [(45.50, -73.57), (35.68, 139.76), (-33.87, 151.21), (51.51, -0.13), (40.42, -3.70), (19.43, -99.13)]


def calibrate(weights: str, seeds, styles, size_m: float, views: int, out: str, write: bool = False,
              progress: bool = True) -> dict:
    from ..localizer.localizer import Localizer
    from ..model.unifygeo import load_checkpoint
    from .synthetic import MODES, TRAINING_SEEDS, make_area, run_mode, sample_truths

    bad = [s for s in seeds if s in TRAINING_SEEDS or s == DEMO_SEED]
    if bad:
        raise ValueError(f"calibration seeds {bad} are training or demo seeds; expected held-out seeds")
    model, _ = load_checkpoint(weights)
    model_hash = model.state_hash()
    t0 = time.perf_counter()
    records = []
    for i, seed in enumerate(seeds):
        style = styles[i % len(styles)]
        area = make_area(seed, size_m, ORIGINS[i % len(ORIGINS)], style, Path(out) / f"city{seed}", weights,
                         progress=progress)
        loc = Localizer.open(area.db, calibration=Calibration(1.0, 1.0, "explicit"))
        xy, yaw = sample_truths(area.city, views, seed + 1000)
        for mode in MODES:
            for r in run_mode(loc, area.city, xy, yaw, mode, progress):
                r.update(seed=seed, style=style)
                records.append(r)
        loc.close()
    ok = [r for r in records if "error_m" in r]
    if not ok:
        raise ValueError("no view was localized; nothing to calibrate on")
    fits = {}
    for camera in ("panorama", "pinhole"):
        rs = [r for r in ok if MODES[r["mode"]][0] == camera]
        if rs:
            fits[camera] = fit_scales(np.array([r["err_xy"] for r in rs]), np.array([r["cov_xy"] for r in rs]),
                                      _optional(rs, "yaw_error_deg"), _optional(rs, "sigma_yaw_deg"))
    if "panorama" not in fits:
        raise ValueError("no panorama view was localized; nothing to calibrate on")
    fit = fits["panorama"]
    per_mode = {}
    for mode in MODES:
        rs = [r for r in ok if r["mode"] == mode]
        if not rs:
            continue
        f = fits[MODES[mode][0]]
        d2 = np.array([r["d2"] for r in rs]) / f["c_pos"] ** 2
        ye = _optional(rs, "yaw_error_deg")
        sy = _optional(rs, "sigma_yaw_deg") * f["c_yaw"]
        per_mode[mode] = {"views": len(rs), "in_95_ellipse": float(np.mean(d2 <= CHI2_2_95)),
                          "yaw_in_95": float(np.mean(ye <= Z_95 * sy)),
                          "median_error_m": float(np.median([r["error_m"] for r in rs]))}
    entry = {"c_pos": fit["c_pos"], "c_yaw": fit["c_yaw"],
             "measured_on": {"seeds": list(seeds), "styles": [styles[i % len(styles)] for i in range(len(seeds))],
                             "size_m": size_m, "views_per_city_and_mode": views, "modes": list(MODES),
                             "records": len(ok), "failed": len(records) - len(ok)},
             "coverage_unscaled": fit["coverage_unscaled"], "yaw_coverage_unscaled": fit.get("yaw_coverage_unscaled"),
             "date": time.strftime("%Y-%m-%d")}
    if "pinhole" in fits:
        entry["pinhole"] = {"c_pos": fits["pinhole"]["c_pos"], "c_yaw": fits["pinhole"]["c_yaw"],
                            "coverage_unscaled": fits["pinhole"]["coverage_unscaled"],
                            "yaw_coverage_unscaled": fits["pinhole"].get("yaw_coverage_unscaled")}
    report = {"model_hash": model_hash, "weights": str(weights), **entry, "per_mode_after_scaling": per_mode,
              "seconds": round(time.perf_counter() - t0, 1)}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "records.json").write_text(json.dumps(records, default=float))
    if write:
        report["written"] = str(write_calibration(model_hash, entry))
    return report


def _optional(records: list[dict], key: str) -> np.ndarray:
    """``records[i][key]`` as floats, NaN where it is None (no yaw estimate)."""
    return np.array([np.nan if r[key] is None else r[key] for r in records], dtype=float)


def write_calibration(model_hash: str, entry: dict, path: str | Path | None = None) -> Path:
    """Add or replace ``model_hash``'s entry in the calibration table (a JSON file; default the
    package's :data:`~unifygeo_ros.inference.calibration.CALIBRATION_FILE`). The file is
    replaced atomically, so a reader never sees half of it."""
    path = Path(path or CALIBRATION_FILE)
    table = read_calibrations(path)
    table[model_hash] = entry
    data = {"format": CALIBRATION_FORMAT,
            "description": "Covariance scale factors per model hash, written by `unifygeo calibrate --write`; "
                           "see unifygeo_ros/inference/calibration.py",
            "models": dict(sorted(table.items()))}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    tmp.replace(path)
    return path
