"""Scores of a replay and its report folder.

Metrics (``summarize``):

* ``availability``: share of frames with a published pose;
* ``error_m``: horizontal error of base_link (published frames with a truth): mean, median, p95, max;
* ``recall``: R@1m / R@5m / R@10m over ALL scored frames (a frame without a pose is a
  miss), and the same over the published frames only;
* ``yaw_error_deg``: |estimated - true yaw| (published frames with a yaw);
* ``covariance``: share of truths inside the published 95 % ellipse (squared Mahalanobis
  distance of the error under the x-y covariance <= chi2_2(0.95) = 5.991; 0.95 when the
  covariance is honest), and of yaw errors within 1.96 sigma;
* ``latency_ms``: per stage (decode, preprocess, ground, search, aerial, decoder, posterior,
  convert, total): mean, median, p95;
* ``failures``: counts per kind (image, localization, no_fix, low_confidence).

``write_report`` writes ``report.json`` (the summary), ``frames.csv`` (one row per frame),
``trajectory.png`` (the orthophoto with the true track, the estimates coloured by error and
their 95 % ellipses) and ``error.png`` (position and yaw error over time with the 95 % radius
of the covariance, failed frames marked).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ..inference.calibration import CHI2_2_95, Z_95


def _stats(values) -> dict:
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "mean": None, "median": None, "p95": None, "max": None}
    return {"n": int(a.size), "mean": float(a.mean()), "median": float(np.median(a)),
            "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def frame_rows(run, filtered: bool = False) -> list[dict]:
    """One row per frame: the frame's own estimate, or with ``filtered`` the tracking
    filter's published pose."""
    t0 = run.frames[0].stamp_ns
    rows = []
    for f in run.frames:
        o = f.outcome
        e = (f.track.filtered if f.track is not None else None) if filtered else o.estimate
        published = f.published_pose if filtered else f.frame_published
        row = {"t_s": (f.stamp_ns - t0) / 1e9, "stamp_ns": f.stamp_ns, "published": bool(published),
               "failure": o.failure or "", "message": o.message, "truth_x": None, "truth_y": None,
               "truth_yaw_deg": None, "x": None, "y": None, "yaw_deg": None, "error_m": None,
               "yaw_error_deg": None, "sigma_x": None, "sigma_y": None, "sigma_yaw_deg": None, "d2": None,
               "confidence": None, "heading_mode": "", "tile_id": None, "total_ms": o.timings_ms.get("total"),
               "r95_m": None, "cov_xy": None}
        if f.truth is not None:
            row.update(truth_x=f.truth[0], truth_y=f.truth[1], truth_yaw_deg=math.degrees(f.truth[2]))
        if filtered and f.track is not None:
            row["track_state"] = f.track.state
            row["search"] = f.track.search
            row["total_ms"] = o.timings_ms.get("total", 0.0) + f.track.filter_ms
            row["filter_ms"] = f.track.filter_ms
        if e is not None:
            row.update(x=e.x, y=e.y, yaw_deg=None if e.yaw is None else math.degrees(e.yaw),
                       sigma_x=math.sqrt(e.cov3[0, 0]), sigma_y=math.sqrt(e.cov3[1, 1]),
                       sigma_yaw_deg=None if e.yaw is None else math.degrees(math.sqrt(max(e.cov3[2, 2], 0.0))),
                       confidence=e.confidence, heading_mode=e.heading_mode, tile_id=e.tile_id,
                       r95_m=math.sqrt(CHI2_2_95 * max(float(np.linalg.eigvalsh(e.cov3[:2, :2]).max()), 0.0)),
                       cov_xy=[[float(v) for v in row] for row in e.cov3[:2, :2]])
            if f.truth is not None:
                err = np.array([e.x - f.truth[0], e.y - f.truth[1]])
                row["error_m"] = float(np.hypot(*err))
                try:
                    row["d2"] = float(err @ np.linalg.solve(e.cov3[:2, :2], err))
                except np.linalg.LinAlgError:
                    row["d2"] = float("inf")
                if e.yaw is not None:
                    row["yaw_error_deg"] = float(math.degrees(math.atan2(math.sin(e.yaw - f.truth[2]),
                                                                         math.cos(e.yaw - f.truth[2]))))
        rows.append(row)
    return rows


def summarize(run, rows: list[dict] | None = None) -> dict:
    rows = rows if rows is not None else frame_rows(run)
    n = len(rows)
    published = [r for r in rows if r["published"]]
    scored = [r for r in rows if r["truth_x"] is not None]
    pub_scored = [r for r in published if r["error_m"] is not None]
    errs = [r["error_m"] for r in pub_scored]

    def recall(th, pool):
        return (sum(1 for r in pool if r["published"] and r["error_m"] is not None and r["error_m"] <= th)
                / len(pool)) if pool else None

    yaw_rows = [r for r in pub_scored if r["yaw_error_deg"] is not None]
    failures: dict[str, int] = {}
    for f in run.frames:
        if f.outcome.failure:
            failures[f.outcome.failure] = failures.get(f.outcome.failure, 0) + 1
    stage_names: list[str] = []
    for f in run.frames:
        for k in f.outcome.timings_ms:
            if k not in stage_names:
                stage_names.append(k)
    latency = {k: _stats([f.outcome.timings_ms.get(k) for f in run.frames if f.outcome.ok]) for k in stage_names}
    for v in latency.values():
        v.pop("max", None)
    d2 = [r["d2"] for r in pub_scored if r["d2"] is not None]
    yaw_in = [abs(r["yaw_error_deg"]) <= Z_95 * r["sigma_yaw_deg"] for r in yaw_rows
              if r["sigma_yaw_deg"] and r["sigma_yaw_deg"] > 0]
    duration = (run.frames[-1].stamp_ns - run.frames[0].stamp_ns) / 1e9
    return {
        "frames": n,
        "published": len(published),
        "availability": len(published) / n if n else None,
        "scored_frames": len(scored),
        "duration_s": duration,
        "error_m": _stats(errs),
        "recall": {f"R@{th}m": recall(th, scored) for th in (1, 5, 10)},
        "recall_published": {f"R@{th}m": recall(th, pub_scored) for th in (1, 5, 10)},
        "yaw_error_deg": _stats([abs(r["yaw_error_deg"]) for r in yaw_rows]),
        "covariance": {"inside_95_ellipse": (sum(1 for v in d2 if v <= CHI2_2_95) / len(d2)) if d2 else None,
                       "yaw_within_1.96_sigma": (sum(yaw_in) / len(yaw_in)) if yaw_in else None,
                       "median_sigma_m": _stats([math.sqrt(0.5 * (r["sigma_x"] ** 2 + r["sigma_y"] ** 2))
                                                 for r in pub_scored])["median"]},
        "failures": failures,
        "latency_ms": latency,
        "confidence": _stats([r["confidence"] for r in rows if r["confidence"] is not None]),
        "heading_modes": sorted({r["heading_mode"] for r in rows if r["heading_mode"]}),
    }


def kidnap_stamps(run) -> list[int]:
    """Stamps (ns) at which the drive moved the vehicle without its odometry seeing it
    (``drive.json`` ``kidnaps``: entries with ``stamp_ns``, or ``t_s`` from the first frame)."""
    out = []
    for k in (run.meta or {}).get("kidnaps", []) or []:
        if isinstance(k, dict) and k.get("stamp_ns") is not None:
            out.append(int(k["stamp_ns"]))
        elif isinstance(k, dict) and k.get("t_s") is not None:
            start = int((run.meta or {}).get("start_time_ns", run.frames[0].stamp_ns))
            out.append(start + int(float(k["t_s"]) * 1e9))
    return sorted(out)


def tracking_summary(run, rows: list[dict], recover_m: float = 5.0) -> dict:
    """Scores of the tracking filter's published poses (``rows`` from ``frame_rows(run, filtered=True)``).

    ``first_fix_frames``: frames up to and including the first published pose, counted from
    the first frame, seeded or not; ``initial_poses``: the initial poses read from the bag
    (``tracking.initialpose_topic``): how many were applied, before which frame each acted
    (``at_frames``, 0: before the first), the reasons of those ignored, and
    ``first_fix_frames_after`` (frames from the first applied one up to and including the first
    published pose after it; None without one);
    ``recovery_frames``: per kidnap, frames from it to the first published pose within
    ``recover_m`` of the truth (None without a kidnap, -1 when never); the other figures are
    over the frames after the first fix, without those recovery windows (``median_error_m``
    of the published poses, ``recall_5m`` over all scored frames: a frame without a pose is
    a miss), except ``published_over_20m`` (every published pose more than 20 m off) and
    ``ms_per_frame_median`` (every frame, filter included) and ``filter_ms_median`` (the
    filter's own work per frame: GNSS fixes, odometry, weighing, resampling, estimate; the
    localizer's search excluded); ``gnss_fixes``: with a GNSS topic,
    the fixes that weighed the filter (``used``), those dropped as older than it and those
    ignored with the reason (None without one)."""
    n = len(rows)
    first = next((i for i, r in enumerate(rows) if r["published"]), None)
    skip = set()
    recovery = []
    for stamp in kidnap_stamps(run):
        start = next((i for i, r in enumerate(rows) if r["stamp_ns"] >= stamp), None)
        if start is None:
            continue
        back = next((i for i in range(start, n) if rows[i]["published"] and rows[i]["error_m"] is not None
                     and rows[i]["error_m"] <= recover_m), None)
        recovery.append(-1 if back is None else back - start + 1)
        skip.update(range(start, n if back is None else back + 1))
    after = [r for i, r in enumerate(rows) if first is not None and i >= first and i not in skip]
    scored = [r for r in after if r["truth_x"] is not None]
    pub = [r for r in scored if r["published"] and r["error_m"] is not None]
    d2 = [r["d2"] for r in pub if r["d2"] is not None]
    states: dict[str, int] = {}
    for r in rows:
        states[r.get("track_state", "")] = states.get(r.get("track_state", ""), 0) + 1
    seeds = list(getattr(run, "seeds", None) or [])
    applied = [sd for sd in seeds if sd.applied]
    after_seed = None
    if applied:
        s0 = applied[0].frame
        hit = next((i for i in range(s0, n) if rows[i]["published"]), None)
        after_seed = None if hit is None else hit - s0 + 1
    return {
        "first_fix_frames": None if first is None else first + 1,
        "initial_poses": {"topic": getattr(run, "initialpose_topic", None), "applied": len(applied),
                          "ignored": len(seeds) - len(applied), "at_frames": [sd.frame for sd in applied],
                          "ignored_reasons": [sd.reason for sd in seeds if not sd.applied],
                          "first_fix_frames_after": after_seed},
        "median_error_m": float(np.median([r["error_m"] for r in pub])) if pub else None,
        "recall_1m": (sum(r["published"] and r["error_m"] <= 1.0 for r in scored) / len(scored)) if scored else None,
        "recall_5m": (sum(r["published"] and r["error_m"] <= 5.0 for r in scored) / len(scored)) if scored else None,
        "recall_10m": (sum(r["published"] and r["error_m"] <= 10.0 for r in scored) / len(scored)) if scored else None,
        "ellipse95_coverage": (sum(1 for v in d2 if v <= CHI2_2_95) / len(d2)) if d2 else None,
        "median_sigma_m": _stats([math.sqrt(0.5 * (r["sigma_x"] ** 2 + r["sigma_y"] ** 2)) for r in pub])["median"],
        "yaw_error_deg_median": _stats([abs(r["yaw_error_deg"]) for r in pub
                                        if r["yaw_error_deg"] is not None])["median"],
        "recovery_frames": recovery or None,
        "published": sum(r["published"] for r in rows),
        "published_over_20m": sum(1 for r in rows if r["published"] and r["error_m"] is not None
                                  and r["error_m"] > 20.0),
        "ms_per_frame_median": _stats([r["total_ms"] for r in rows])["median"],
        "ms_per_frame_median_tracking": _stats([r["total_ms"] for r in rows if r.get("search") == "tracking"])["median"],
        "filter_ms_median": _stats([r["filter_ms"] for r in rows if r.get("filter_ms") is not None])["median"],
        "frames_by_state": states,
        "frames_by_search": {k: sum(1 for r in rows if r.get("search") == k)
                             for k in ("tracking", "seed", "anchor", "global")},
        "kidnaps": len(kidnap_stamps(run)),
        "gnss_fixes": getattr(run, "gnss", None),
    }


def write_report(run, summary: dict, rows: list[dict], out_dir: Path, ortho_path: Path | None,
                 track_rows: list[dict] | None = None) -> dict:
    from . import plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "frames.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()})
    traj = out_dir / "trajectory.png"
    plots.trajectory_png(run, rows, traj, ortho_path)
    err = out_dir / "error.png"
    plots.error_png(rows, err, summary)
    files = {"report": str(out_dir / "report.json"), "frames_csv": str(out_dir / "frames.csv"),
             "trajectory_png": str(traj), "error_png": str(err)}
    if track_rows is not None:
        with open(out_dir / "tracking.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(track_rows[0]))
            w.writeheader()
            for r in track_rows:
                w.writerow({k: ("" if v is None else json.dumps(v) if isinstance(v, list) else v)
                            for k, v in r.items()})
        clouds = [(f.stamp_ns, f.cloud) for f in run.frames if f.cloud is not None]
        plots.trajectory_png(run, track_rows, out_dir / "tracking.png", ortho_path, clouds=clouds,
                             title="tracking", seeds=getattr(run, "seeds", None))
        plots.error_png(track_rows, out_dir / "tracking_error.png", None)
        files.update(tracking_csv=str(out_dir / "tracking.csv"), tracking_png=str(out_dir / "tracking.png"),
                     tracking_error_png=str(out_dir / "tracking_error.png"))
    (out_dir / "report.json").write_text(json.dumps({**summary, "files": files}, indent=2, default=str))
    return files
