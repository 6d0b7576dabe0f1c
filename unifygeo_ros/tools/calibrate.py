"""``unifygeo calibrate``: fit a model's calibration on held-out synthetic cities.

Three parts (``--part``; ``all`` runs the first two), each written into the model's entry of
the calibration table (JSON data, ``unifygeo_ros/weights/calibration.json``) with
``--write``; a part not run keeps what the entry holds.

* ``covariance``: for each seed (``--seeds``, default 101-104; never a training seed, never
  the demo's) build the city's database, render ``views`` street views per mode (the demo's,
  :data:`.synthetic.DEMO_MODES`) at random street positions and headings, localize them with
  an *unscaled* covariance and the raw confidence, and fit on the panorama records, and again
  on the pinhole records, single views and rigs (stored under ``"pinhole"``): ``c_pos`` and ``c_yaw`` on the estimates in the right mode (within
  ``MODE_RADIUS_M`` of the truth), and the confidence map (the chance of the right mode) on
  all of them (:mod:`unifygeo_ros.inference.calibration`); then the same within each camera
  kind per calibration case (heading known or not, a position prior or not; ``"cases"``).
  The views are written to ``OUT/records.json``; ``--records`` fits on such files of earlier
  runs (of the same model), with or without new cities.
* ``abstention``: on other cities (``--abstention-seeds``, default 3101-3104) genuine
  panoramas in the three panorama modes, the unknown-heading ones again with a mild blur
  (:func:`.abstention.mild_blur`, still genuine), and ``--garbage`` garbage frames per city
  (:mod:`.garbage`), and the thresholds of :func:`unifygeo_ros.inference.abstention.fit_thresholds`
  (at most ``--max-refused`` of the genuine panoramas refused), stored under ``"abstention"``.
* ``tracking``: on drives through the ``--seeds`` cities (``--drive-s`` seconds at 1 Hz, a
  kidnap half-way, odometry, no GNSS), the tracking filter of the replay (the node's code)
  with an unscaled covariance; ``c_pos`` and ``c_yaw`` fitted as above on the filtered poses
  it publishes within ``MODE_RADIUS_M`` of the truth, stored under ``"tracking"``; with
  ``--tracking-cameras pinhole,rig``, again on drives of a single 90-degree pinhole camera
  through the same cities with the drive's degraded GNSS as the filter's evidence (alone, a
  single pinhole view does not start the filter), and of a rig of four 90-degree cameras,
  stored under ``"tracking"["pinhole"]`` and ``["rig"]``. It uses the entry's other parts
  (abstention, confidence), so it runs after them.
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
    CONFIDENCE_FEATURES,
    MIN_RIGHT_MODE,
    TRACKING_CAMERAS,
    Z_95,
    Calibration,
    fit_confidence,
    fit_scales,
    read_calibrations,
)
from .synthetic import ORIGINS

DEMO_SEED = 2026
ABSTENTION_SEEDS = (3101, 3102, 3103, 3104)
PARTS = ("all", "covariance", "abstention", "tracking")
#: drive seeds of the tracking part: city seed + this
DRIVE_SEED_OFFSET = 500


def calibrate(weights: str, seeds, styles, size_m: float, views: int, out: str, write: bool = False,
              progress: bool = True, part: str = "covariance", abstention_seeds=ABSTENTION_SEEDS, garbage: int = 125,
              max_refused: float = 0.03, drive_s: float = 120.0, records_from=(),
              tracking_cameras=()) -> dict:
    """Fit ``part`` (``covariance``, ``abstention`` or ``all``; the command's default is ``all``)
    and return the report; with ``write`` store the model's entry (see the module docstring)."""
    from ..model.unifygeo import load_checkpoint
    from .synthetic import TRAINING_SEEDS

    if part not in PARTS:
        raise ValueError(f"--part: expected one of {', '.join(PARTS)}, got {part!r}")
    bad = [s for s in list(seeds) + list(abstention_seeds) if s in TRAINING_SEEDS or s == DEMO_SEED]
    if bad:
        raise ValueError(f"calibration seeds {bad} are training or demo seeds; expected held-out seeds")
    if part == "all" and set(seeds) & set(abstention_seeds):
        raise ValueError(f"the abstention seeds {sorted(set(seeds) & set(abstention_seeds))} are also covariance "
                         f"seeds; expected other cities")
    model, _ = load_checkpoint(weights)
    model_hash = model.state_hash()
    t0 = time.perf_counter()
    entry = dict(read_calibrations().get(model_hash) or {})
    report: dict = {"model_hash": model_hash, "weights": str(weights), "part": part}
    Path(out).mkdir(parents=True, exist_ok=True)
    if part in ("all", "covariance"):
        cov_entry, per_mode = _covariance_part(weights, model_hash, seeds, styles, size_m, views, out, progress,
                                               records_from)
        keep = {k: entry[k] for k in ("abstention",) if k in entry}
        pin_keep = (entry.get("pinhole") or {}).get("abstention")
        entry = {**cov_entry, **keep}
        if pin_keep and "pinhole" in entry:
            entry["pinhole"]["abstention"] = pin_keep
        report["per_mode_after_scaling"] = per_mode
    if part in ("all", "abstention"):
        if "c_pos" not in entry:
            raise ValueError(f"model {model_hash[:12]} has no covariance calibration yet; run --part covariance "
                             f"(or all) first")
        entry["abstention"] = _abstention_part(weights, abstention_seeds, styles, size_m, views, garbage, max_refused,
                                               out, progress)
    if part == "tracking":
        if not seeds:
            raise ValueError("--seeds: expected the cities of the tracking drives")
        if "c_pos" not in entry:
            raise ValueError(f"model {model_hash[:12]} has no covariance calibration yet; run --part covariance "
                             f"(or all) first")
        entry["tracking"] = _tracking_part(weights, model_hash, entry, seeds, styles, size_m, drive_s, out, progress,
                                           tracking_cameras)
    report.update({k: v for k, v in entry.items() if k != "per_mode_after_scaling"})
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if write:
        report["written"] = str(write_calibration(model_hash, entry))
    return report


def _covariance_part(weights, model_hash, seeds, styles, size_m, views, out, progress,
                     records_from=()) -> tuple[dict, dict]:
    """Covariance factors and confidence maps per camera kind and calibration case (see the
    module docstring); ``records_from``: record files of earlier runs, fitted on instead of
    localizing anew when ``seeds`` is empty, or together with the new records."""
    from ..localizer.localizer import Localizer
    from .synthetic import DEMO_MODES, camera_kind, make_area, mode_case, run_mode, sample_truths

    records = []
    for path in records_from:
        records += _read_records(path, model_hash)
    for i, seed in enumerate(seeds):
        style = styles[i % len(styles)]
        area = make_area(seed, size_m, ORIGINS[i % len(ORIGINS)], style, Path(out) / f"city{seed}", weights,
                         progress=progress)
        loc = Localizer.open(area.db, calibration=Calibration(1.0, 1.0, "explicit"))
        xy, yaw = sample_truths(area.city, views, seed + 1000)
        for mode in DEMO_MODES:
            for r in run_mode(loc, area.city, xy, yaw, mode, progress):
                r.update(seed=seed, style=style, model_hash=model_hash)
                records.append(r)
        loc.close()
    (Path(out) / "records.json").write_text(json.dumps(records, default=float))
    ok = [r for r in records if "error_m" in r]
    if not ok:
        raise ValueError("no view was localized; nothing to calibrate on")
    fits, maps, cases = {}, {}, {}
    for camera in ("panorama", "pinhole"):
        rs = [r for r in ok if camera_kind(r["mode"]) == camera]
        if not rs:
            continue
        right = [r for r in rs if r["in_mode"]]
        if len(right) < MIN_RIGHT_MODE and camera == "pinhole" and fits.get("panorama", {}).get(
                "fitted_on") == "right mode":
            # Too few pinhole views in the right mode to fit on: the panoramas' factors.
            fits[camera] = {**fits["panorama"], "right_mode_views": len(right), "fitted_on": "panorama factors"}
        else:
            # Too few panoramas in the right mode too (an untrained model): every estimate, which
            # makes the ellipses wide enough for the wrong modes as well.
            fits[camera] = _fit_factors(right if len(right) >= MIN_RIGHT_MODE else rs)
            fits[camera].update(right_mode_views=len(right),
                                fitted_on="right mode" if len(right) >= MIN_RIGHT_MODE else "all views")
        maps[camera] = _fit_map(rs)
        cases[camera] = {}
        for case in sorted({mode_case(r["mode"]) for r in rs}):
            crs = [r for r in rs if mode_case(r["mode"]) == case]
            cright = [r for r in crs if r["in_mode"]]
            entry = {"views": len(crs), "right_mode_views": len(cright),
                     "modes": sorted({r["mode"] for r in crs})}
            if len(cright) >= MIN_RIGHT_MODE:
                f = _fit_factors(cright)
                entry.update(c_pos=f["c_pos"], c_yaw=f["c_yaw"], coverage_unscaled=f["coverage_unscaled"],
                             yaw_coverage_unscaled=f.get("yaw_coverage_unscaled"), fitted_on="right mode")
            else:
                entry["fitted_on"] = f"the {camera} factors (fewer than {MIN_RIGHT_MODE} views in the right mode)"
            if len(crs) >= MIN_RIGHT_MODE:
                entry["confidence"] = _fit_map(crs)
            cases[camera][case] = entry
    if "panorama" not in fits:
        raise ValueError("no panorama view was localized; nothing to calibrate on")
    per_mode = {}
    for mode in sorted({r["mode"] for r in ok}, key=list(DEMO_MODES).index):
        rs = [r for r in ok if r["mode"] == mode]
        kind = camera_kind(mode)
        f = cases[kind][mode_case(mode)] if "c_pos" in cases[kind][mode_case(mode)] else fits[kind]
        right = [r for r in rs if r["in_mode"]]
        d2 = np.array([r["d2"] for r in rs]) / f["c_pos"] ** 2
        row = {"views": len(rs), "calibration_case": mode_case(mode), "right_mode_share": len(right) / len(rs),
               "in_95_ellipse_all": float(np.mean(d2 <= CHI2_2_95)),
               "median_error_m": float(np.median([r["error_m"] for r in rs]))}
        if right:
            d2r = np.array([r["d2"] for r in right]) / f["c_pos"] ** 2
            ye = _optional(right, "yaw_error_deg")
            sy = _optional(right, "sigma_yaw_deg") * f["c_yaw"]
            row.update({"in_95_ellipse_right_mode": float(np.mean(d2r <= CHI2_2_95)),
                        "yaw_in_95_right_mode": float(np.mean(ye <= Z_95 * sy)),
                        "median_error_m_right_mode": float(np.median([r["error_m"] for r in right])),
                        "median_sigma_m_right_mode": float(np.median([r["sigma_m"] for r in right])) * f["c_pos"]})
        per_mode[mode] = row
    fit = fits["panorama"]
    used = sorted({(r["seed"], r["style"]) for r in ok})
    entry = {"c_pos": fit["c_pos"], "c_yaw": fit["c_yaw"],
             "measured_on": {"seeds": [s for s, _ in used], "styles": [st for _, st in used],
                             "size_m": size_m,
                             "views_per_city_and_mode": int(np.median(np.unique(
                                 [f"{r['seed']}/{r['mode']}" for r in records], return_counts=True)[1])),
                             "modes": sorted({r["mode"] for r in ok}, key=list(DEMO_MODES).index),
                             "records": len(ok), "failed": len(records) - len(ok),
                             "right_mode_views": fit["right_mode_views"], "fitted_on": fit["fitted_on"]},
             "coverage_unscaled": fit["coverage_unscaled"], "yaw_coverage_unscaled": fit.get("yaw_coverage_unscaled"),
             "date": time.strftime("%Y-%m-%d"), "confidence": maps["panorama"], "cases": cases["panorama"]}
    if "pinhole" in fits:
        pin = fits["pinhole"]
        entry["pinhole"] = {"c_pos": pin["c_pos"], "c_yaw": pin["c_yaw"],
                            "coverage_unscaled": pin["coverage_unscaled"],
                            "yaw_coverage_unscaled": pin.get("yaw_coverage_unscaled"),
                            "right_mode_views": pin["right_mode_views"], "fitted_on": pin["fitted_on"],
                            "confidence": maps["pinhole"], "cases": cases["pinhole"]}
    return entry, per_mode


def _fit_factors(records: list[dict]) -> dict:
    """``c_pos`` and ``c_yaw`` (:func:`fit_scales`) on these records."""
    return fit_scales(np.array([r["err_xy"] for r in records]), np.array([r["cov_xy"] for r in records]),
                      _optional(records, "yaw_error_deg"), _optional(records, "sigma_yaw_deg"))


def _fit_map(records: list[dict]) -> dict:
    """The confidence map of these records: fitted when both the right and the wrong mode have
    :data:`MIN_RIGHT_MODE` views, otherwise the right-mode share for every view."""
    right = sum(bool(r["in_mode"]) for r in records)
    if MIN_RIGHT_MODE <= right <= len(records) - MIN_RIGHT_MODE:
        return fit_confidence([r["confidence_raw"] for r in records], [r["consensus_support"] for r in records],
                              [r["in_mode"] for r in records])
    share = min(max(right / len(records), 1e-3), 1 - 1e-3)
    return {"features": list(CONFIDENCE_FEATURES), "bias": float(np.log(share / (1 - share))),
            "weights": [0.0] * len(CONFIDENCE_FEATURES), "n": len(records), "right_mode_share": share,
            "fitted_on": "the right-mode share alone (too few views in one of the modes)"}


def _read_records(path, model_hash: str) -> list[dict]:
    """The records of an earlier covariance run (its ``records.json``) of the model ``model_hash``,
    with a clear error."""
    from .synthetic import DEMO_MODES

    try:
        records = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"--records {path}: expected the records.json of an earlier calibration run ({exc})") \
            from None
    need = ("mode", "seed", "style", "model_hash")
    if not isinstance(records, list) or not all(isinstance(r, dict) and all(k in r for k in need)
                                                 and r["mode"] in DEMO_MODES for r in records):
        raise ValueError(f"--records {path}: expected a JSON list of view records with {', '.join(need)} and a "
                         f"mode of the demo's, as `unifygeo calibrate` writes")
    from .synthetic import TRAINING_SEEDS

    other = sorted({r["model_hash"][:12] for r in records if r["model_hash"] != model_hash})
    if other:
        raise ValueError(f"--records {path}: views localized by model {', '.join(other)}; expected model "
                         f"{model_hash[:12]}'s")
    bad = sorted({r["seed"] for r in records if r["seed"] in TRAINING_SEEDS or r["seed"] == DEMO_SEED})
    if bad:
        raise ValueError(f"--records {path}: views of training or demo seeds {bad}; expected held-out cities")
    return records


def _abstention_part(weights, seeds, styles, size_m, views, garbage, max_refused, out, progress) -> dict:
    """Abstention thresholds for panoramas from genuine views and garbage frames."""
    from ..inference.abstention import fit_thresholds
    from .abstention import PANORAMA_MODES, abstention_cities

    if len(seeds) < 2:
        raise ValueError("--abstention-seeds: expected at least two cities (the other-city frames come from the next)")
    genuine, junk = [], []
    for _seed, _style, gen, blurred, gar in abstention_cities(weights, seeds, styles, size_m, views,
                                                              [garbage] * len(seeds), out, progress,
                                                              calibration=Calibration(1.0, 1.0, "explicit")):
        genuine += gen + blurred
        junk += gar
    (Path(out) / "abstention_records.json").write_text(json.dumps({"genuine": genuine, "garbage": junk},
                                                                  default=float))
    gen = [r["features"] for r in genuine if r.get("features")]
    bad = [r["features"] for r in junk if r.get("features")]
    fit = fit_thresholds(gen, bad, max_refused)
    return {**fit, "max_refused": max_refused, "refused_at_input": sum("error" in r for r in junk),
            "measured_on": {"seeds": list(seeds), "styles": [styles[i % len(styles)] for i in range(len(seeds))],
                            "size_m": size_m, "views_per_city_and_mode": views,
                            "modes": [*PANORAMA_MODES, "panorama, unknown heading, mild blur"],
                            "garbage_per_city": garbage},
            "date": time.strftime("%Y-%m-%d")}


def _tracking_part(weights, model_hash, entry, seeds, styles, size_m, drive_s, out, progress,
                   cameras=()) -> dict:
    """The tracking filter's covariance factors (see the module docstring): the panorama
    drives' at the top level and, for each of ``cameras`` (:data:`TRACKING_CAMERAS`), that
    camera's drives' under its name (a camera not fitted keeps the entry's earlier factors)."""
    unknown = [c for c in cameras if c not in TRACKING_CAMERAS]
    if unknown:
        raise ValueError(f"--tracking-cameras: unknown {', '.join(unknown)}; expected some of "
                         f"{', '.join(TRACKING_CAMERAS)}")
    if cameras and not entry.get("pinhole"):
        raise ValueError(f"--tracking-cameras: model {model_hash[:12]} has no pinhole calibration yet; run "
                         f"--part covariance on pinhole views first")
    table_path = Path(out) / "calibration_for_tracking.json"
    write_calibration(model_hash, {k: v for k, v in entry.items() if k != "tracking"}, table_path)
    part = _tracking_fit(weights, model_hash, table_path, seeds, styles, size_m, drive_s, out, progress, "panorama")
    for cam in TRACKING_CAMERAS:
        if cam in cameras:
            part[cam] = _tracking_fit(weights, model_hash, table_path, seeds, styles, size_m, drive_s, out, progress,
                                      cam)
        elif (entry.get("tracking") or {}).get(cam):
            part[cam] = entry["tracking"][cam]
    return part


#: the drives of the cameras (:data:`~unifygeo_ros.inference.calibration.TRACKING_CAMERAS`) whose
#: own tracking factors ``--tracking-cameras`` fits: a single 90-degree pinhole camera (with the
#: drive's GNSS as the filter's evidence: alone it does not start the filter) and a rig of four
#: 90-degree cameras (front, left, right, back; 320 x 240 each)
TRACKING_PINHOLE = {"camera.model": "pinhole", "camera.hfov_deg": 90.0}
TRACKING_PINHOLE_TOPICS = {"image": "/camera/front/image_raw", "gnss": "/gnss/fix"}
TRACKING_RIG = {"rig_yaws_deg": (0.0, 90.0, -90.0, 180.0), "hfov_deg": 90.0, "pinhole_size": (320, 240)}


def _tracking_fit(weights, model_hash, table_path, seeds, styles, size_m, drive_s, out, progress, kind) -> dict:
    """The factors of one camera kind's drives: panorama drives without GNSS, or 90-degree
    pinhole drives with the drive's degraded GNSS as the filter's evidence (a single pinhole
    view does not start the filter alone)."""
    import dataclasses

    from ..inference.calibration import MODE_RADIUS_M, lookup_calibration, scales_from_mahalanobis
    from ..localizer.localizer import Localizer
    from ..replay.core import ReplayOptions, run_replay
    from ..replay.report import frame_rows, tracking_summary
    from ..ros_core.config import NodeConfig
    from ..ros_core.pipeline import FrameProcessor
    from ..sim.drive import DriveConfig, write_drive_bag
    from .synthetic import make_area

    if drive_s < 30.0:
        raise ValueError(f"--drive-s: expected at least 30 s, got {drive_s:g}")
    pinhole = kind == "pinhole"
    rows, per_city = [], []
    for i, seed in enumerate(seeds):
        style = styles[i % len(styles)]
        area = make_area(seed, size_m, ORIGINS[i % len(ORIGINS)], style, Path(out) / f"city{seed}", weights,
                         progress=progress, reuse=True)
        bag = Path(out) / (f"drive{seed}" if kind == "panorama" else f"drive{seed}_{kind}")
        if not (bag / "metadata.yaml").is_file():
            write_drive_bag(area.city, bag, DriveConfig(duration_s=drive_s, rate_hz=1.0, seed=seed + DRIVE_SEED_OFFSET,
                                                        kidnap_at_s=(round(drive_s / 2),), camera=kind,
                                                        **(TRACKING_RIG if kind == "rig" else {})),
                            city_dir=area.tif.parent, progress=progress)
        params = {"database": str(area.db), "tracking.enabled": True, **(TRACKING_PINHOLE if pinhole else {})}
        if kind == "rig":           # the rig's topics, CameraInfo and yaws, as the drive states them
            meta = json.loads((bag.parent / f"{bag.name}.meta" / "drive.json").read_text())
            params.update(meta["camera"]["node_parameters"])
        cfg = NodeConfig.from_params(params)
        # the entry's single-frame parts as they are, the filter's covariance unscaled
        loc = Localizer.open(area.db, calibration=dataclasses.replace(lookup_calibration(model_hash, table_path),
                                                                       tracking={}))
        opts = ReplayOptions(bag=bag, progress=progress, track=True,
                             **({"image_topic": TRACKING_PINHOLE_TOPICS["image"],
                                 "gnss_topic": TRACKING_PINHOLE_TOPICS["gnss"]} if pinhole else {}))
        run = run_replay(cfg, opts, FrameProcessor(loc, cfg))
        city_rows = frame_rows(run, filtered=True)
        summary = tracking_summary(run, city_rows)
        per_city.append({"seed": seed, "style": style, "published": summary["published"],
                         "median_error_m": summary["median_error_m"], "recall_5m": summary["recall_5m"],
                         "coverage_unscaled": summary["ellipse95_coverage"]})
        rows += [r for r in city_rows if r["published"] and r["error_m"] is not None]
        loc.close()
    right = [r for r in rows if r["error_m"] < MODE_RADIUS_M and r["d2"] is not None and np.isfinite(r["d2"])]
    if len(right) < MIN_RIGHT_MODE:
        raise ValueError(f"the tracking filter published {len(right)} poses within {MODE_RADIUS_M:g} m of the truth "
                         f"on the {kind} drives; expected at least {MIN_RIGHT_MODE} to fit on")
    fit = scales_from_mahalanobis([r["d2"] for r in right], _optional(right, "yaw_error_deg"),
                                  _optional(right, "sigma_yaw_deg"))
    measured_on = {"seeds": list(seeds), "styles": [styles[i % len(styles)] for i in range(len(seeds))],
                   "size_m": size_m, "drive_s": drive_s, "rate_hz": 1.0, "kidnap_at_s": round(drive_s / 2),
                   "per_city": per_city}
    if pinhole:
        measured_on.update({"camera": "pinhole, 90 deg", "gnss": "the drive's /gnss/fix as the filter's evidence"})
    elif kind == "rig":
        measured_on.update({"camera": "rig of four 90-degree cameras (0, 90, -90, 180 deg), 320 x 240"})
    return {"c_pos": fit["c_pos"], "c_yaw": fit["c_yaw"], "coverage_unscaled": fit["coverage_unscaled"],
            "yaw_coverage_unscaled": fit.get("yaw_coverage_unscaled"), "poses": len(right),
            "measured_on": measured_on, "date": time.strftime("%Y-%m-%d")}


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
            "description": "Per model hash: covariance scale factors, confidence map and abstention thresholds, "
                           "written by `unifygeo calibrate --write`; see unifygeo_ros/inference/calibration.py",
            "models": dict(sorted(table.items()))}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    tmp.replace(path)
    return path
