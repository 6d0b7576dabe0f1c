"""``unifygeo demo``: the whole pipeline, end to end, on a held-out synthetic city.

1. Generate a city with a seed no training used (2026; training used 11-16, validation 21,
   the covariance calibration 101-104) and write its orthophoto as a GeoTIFF (0.25 m/px,
   UTM).
2. Build its database with the shipped model of each camera kind (``unifygeo build-db``:
   tiles, features, FAISS index): ``small`` for the panoramas, ``small-fov`` for the pinhole
   views and rigs (``--weights`` sets one model for all).
3. Render street views at random street positions and headings and localize each of them
   in eight modes (``tools.synthetic.DEMO_MODES``): panorama with known / unknown heading,
   90-degree pinhole with known / unknown heading, panorama with unknown heading and
   90-degree pinhole with known heading, each with a degraded-GNSS position prior, and rigs
   of 90-degree pinhole cameras (four a quarter turn apart; front and back) with known
   heading (the same positions in every mode).
4. Print a table per mode (the share of views reported as no fix, R@1 of the chosen tile,
   mean and median error, R@1m / R@5m / R@10m, yaw error over every view; the share of
   truths inside the 95 % covariance ellipse over every view and over those in the right
   mode (within 10 m), the yaw interval's over the right mode, the median position sigma
   over the median error in the right mode; milliseconds per stage) and write ``demo.png``:
   truths, estimates and 95 % ellipses over the orthophoto.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..cli import CommandError, add_json_flag, emit, weights_or_shipped

DEMO_SEED = 2026
DEMO_ORIGIN = (52.52, 13.40)


def register(sub, bench_sub) -> None:
    p = sub.add_parser("demo", help="build the database of a held-out synthetic city and localize hundreds of "
                                    "street views in it in eight camera modes; prints a table, writes a PNG")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"city seed (default {DEMO_SEED}; never a training seed)")
    p.add_argument("--size-m", type=float, default=500.0, help="city side in metres (default 500)")
    p.add_argument("--style", default="default", help="city style (default, downtown, oldtown, suburb, nordic)")
    p.add_argument("--views", type=int, default=100, help="views per mode (default 100; eight modes)")
    p.add_argument("--weights", help="model checkpoint, or a shipped model: small (panorama cameras, the default) or small-fov "
                        "(pinhole cameras and rigs)")
    p.add_argument("--backend", default="auto", help="auto (the fastest available) | torch | onnxruntime | an exact backend name")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    add_json_flag(p)
    p.set_defaults(handler=demo_command)


def format_table(res: dict) -> str:
    head = (f"{'mode':42s} {'no fix':>6} {'R@1 tile':>8} {'mean m':>7} {'median m':>8} {'R@1m':>5} {'R@5m':>5} "
            f"{'R@10m':>6} {'yaw mean/med deg':>16} {'95% ell. all/right':>18} {'yaw 95% right':>13} "
            f"{'sigma/err':>9}")
    lines = [head, "-" * len(head)]
    nan = float("nan")
    for mode, r in res["modes"].items():
        if "mean_m" not in r:
            lines.append(f"{mode:42s} all {r['queries']} views failed")
            continue
        yaw = f"{r['yaw_mean_deg']:.1f} / {r['yaw_median_deg']:.1f}" if "yaw_mean_deg" in r else "-"
        ell = f"{r['in_95_ellipse']:.2f} / {r.get('in_95_ellipse_right_mode', nan):.2f}"
        ratio = r.get("median_sigma_m_right_mode", nan) / max(r.get("median_m_right_mode", nan), 1e-9)
        lines.append(f"{mode:42s} {r.get('no_fix', nan):>6.2f} {r['R@1_tile']:>8.2f} {r['mean_m']:>7.1f} "
                     f"{r['median_m']:>8.2f} {r['R@1m']:>5.2f} {r['R@5m']:>5.2f} {r['R@10m']:>6.2f} {yaw:>16} "
                     f"{ell:>18} {r.get('yaw_in_95_right_mode', nan):>13.2f} {ratio:>9.1f}")
    lines.append("")
    stages = next((list(r["ms"]) for r in res["modes"].values() if "ms" in r), [])
    lines.append(f"{'ms per stage (median)':42s} " + " ".join(f"{s:>10}" for s in stages))
    for mode, r in res["modes"].items():
        if "ms" in r:
            lines.append(f"{mode:42s} " + " ".join(f"{r['ms'][s]:>10.1f}" for s in stages))
    return "\n".join(lines)


def demo_command(args) -> int:
    import numpy as np
    import rasterio

    from ..localizer.localizer import Localizer
    from ..localizer.plots import map_sheet
    from ..options import default
    from ..log import setup_logging
    from ..types import DatabaseError
    from .synthetic import (
        DEMO_MODES,
        TRAINING_SEEDS,
        camera_kind,
        make_area,
        run_mode,
        sample_truths,
        summarize,
    )

    setup_logging()
    t0 = time.perf_counter()
    if args.seed in TRAINING_SEEDS:
        raise CommandError(f"--seed {args.seed} was used in training; the demo needs a held-out city")
    if args.views < 1 or not args.size_m >= 100.0:
        raise CommandError(f"--views: expected at least 1 (got {args.views}); --size-m: expected >= 100 m "
                           f"(got {args.size_m:g})")
    # Each camera kind with its model: without --weights the shipped small model for the
    # panoramas and small-fov for the pinhole views and rigs, each with its own database.
    weights = {"panorama": weights_or_shipped(args.weights),
               "pinhole": weights_or_shipped(args.weights or "small-fov")}
    from ..inference.calibration import lookup_calibration
    from ..model.unifygeo import load_checkpoint

    for w in set(weights.values()):
        try:
            model_hash = load_checkpoint(w)[0].state_hash()
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise CommandError(f"--weights {w}: {exc}") from exc
        cal_seeds = (lookup_calibration(model_hash).details.get("measured_on") or {}).get("seeds") or []
        if args.seed in cal_seeds:
            raise CommandError(f"--seed {args.seed} was used to calibrate the covariance of model {model_hash[:12]} "
                               f"({cal_seeds}); the demo needs a city held out from training and calibration")
    out = Path(args.out)
    areas, locs = {}, {}
    try:
        for kind, w in weights.items():
            same = next((k for k in areas if weights[k] == w), None)
            if same is not None:
                areas[kind], locs[kind] = areas[same], locs[same]
                continue
            areas[kind] = make_area(args.seed, args.size_m, DEMO_ORIGIN, args.style,
                                    out if kind == "panorama" else out / "small-fov", w, backend=args.backend)
            locs[kind] = Localizer.open(areas[kind].db, backend=args.backend)
            locs[kind].warmup()
        t_build = time.perf_counter()
    except (DatabaseError, ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from exc
    area, loc = areas["panorama"], locs["panorama"]
    xy, yaw = sample_truths(area.city, args.views, args.seed)
    records = {mode: run_mode(locs[camera_kind(mode)], area.city, xy, yaw, mode) for mode in DEMO_MODES}
    rows = {mode: summarize(recs) for mode, recs in records.items()}
    with rasterio.open(area.tif) as src:
        ortho = src.read().transpose(1, 2, 0)
        mpp = src.transform.a
    png = map_sheet(ortho, mpp, records, out / "demo.png", min_confidence=default("min_confidence"),
                    title=f"city {args.seed} ({args.style}, {args.size_m:g} m): truth green, estimate cross, 95% ellipse; "
                          f"grey: not published (no fix, or confidence under the node's min_confidence)")

    def model_entry(kind: str) -> dict:
        cal = locs[kind].calibration
        db = locs[kind].db
        return {"weights": weights[kind], "hash": db.model_hash, "database": str(areas[kind].db),
                "calibration": {"c_pos": cal.c_pos, "c_yaw": cal.c_yaw, "c_pos_pinhole": cal.c_pos_pinhole,
                                "c_yaw_pinhole": cal.c_yaw_pinhole, "source": cal.source,
                                "measured_on": cal.details.get("measured_on")}}

    result = {
        "city": {"seed": args.seed, "style": args.style, "size_m": args.size_m, "origin": list(DEMO_ORIGIN),
                 "geotiff": str(area.tif)},
        "database": {"path": str(area.db), "tiles": loc.db.n, "features": loc.db.feature_mode,
                     "build_seconds": area.build.get("seconds"), "disk_mb": round(area.build.get("disk_bytes", 0) / 1e6, 1)},
        "model": {"weights": weights["panorama"], "hash": loc.db.model_hash},
        "models_by_camera_kind": {kind: model_entry(kind) for kind in weights},
        "backend": loc.backend_name,
        "calibration": model_entry("panorama")["calibration"],
        "views_per_mode": args.views,
        "modes": rows,
        "png": str(png),
        "seconds": {"build": round(t_build - t0, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    (out / "records.json").write_text(__import__("json").dumps(records, default=float))

    def human(r: dict) -> str:
        models = []
        for kind, m in r["models_by_camera_kind"].items():
            c = m["calibration"]
            note = ("covariance calibrated on held-out cities " + str(c["measured_on"]["seeds"]) if c["source"] == "table"
                    else "covariance NOT calibrated for this model (run `unifygeo calibrate --write`)")
            models.append(f"{kind} views: model {m['hash'][:12]} ({Path(m['weights']).name}), {note}")
        return "\n".join([
            f"unifygeo demo: city {r['city']['seed']} ({r['city']['style']}, {r['city']['size_m']:g} m, held out), "
            f"{r['database']['tiles']} tiles ({r['database']['features']} features, {r['database']['disk_mb']} MB), "
            f"backend {r['backend']}",
            *models, f"{r['views_per_mode']} views per mode", "",
            format_table(r), "",
            f"picture: {r['png']}   (build {r['seconds']['build']:.0f} s, total {r['seconds']['total']:.0f} s)"])

    emit(result, args.json, human)
    for each in {id(v): v for v in locs.values()}.values():
        each.close()
    return 0 if np.isfinite(rows[next(iter(rows))].get("mean_m", np.nan)) else 1
