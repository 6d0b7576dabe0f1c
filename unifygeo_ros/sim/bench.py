"""``unifygeo bench sim``: how fast the synthetic world renders and exports.

Two measurements, each against a target:

* **panorama**: median wall time of one 512 x 128 panorama in a dense (``downtown``)
  city, over >= 20 renders at random street positions and headings after 3 warm-up
  renders. Target <= 50 ms.
* **city_export**: a 1 km x 1 km city (``default`` style) generated, then exported with
  2,000 panoramas in the VIGOR layout (768 x 384 panoramas, 640 px tiles, balanced to
  <= 2 positives per tile, as VIGOR). Target <= 10 min on the 2-core reference machine.
  The tiles are at 0.08 m/px rather than the export's default 0.1: with half-tile steps of
  32 m (0.1 m/px) a 1 km city has only ~870 tiles whose central quarter holds a street, room
  for ~1,700 balanced panoramas; at 0.08 m/px (25.6 m steps) ~1,200 tiles hold ~2,400.

``--quick`` shrinks both (a 150 m city, 5 renders; a 200 m city with 12 panoramas) so
that a test can check the JSON shape; its times say nothing about the targets
(``targets_apply`` is False then).
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time

import numpy as np

PANO_TARGET_MS = 50.0
EXPORT_TARGET_S = 600.0
ORIGIN = (47.6062, -122.3321)   # Seattle-ish; any latitude works


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
    }


def bench_panorama(size_m: float, renders: int, warmup: int = 3, seed: int = 11) -> dict:
    from unifygeo_ros.sim.render import render_panorama
    from unifygeo_ros.sim.world import generate_city

    t0 = time.perf_counter()
    city = generate_city(seed, size_m, *ORIGIN, style="downtown")
    city_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    xy = city.street_positions(renders + warmup, rng)
    yaws = rng.uniform(-180.0, 180.0, renders + warmup)
    times = []
    for k in range(renders + warmup):
        t = time.perf_counter()
        img = render_panorama(city, xy[k], float(yaws[k]), 512, 128)
        dt = time.perf_counter() - t
        if k >= warmup:
            times.append(dt)
    if np.asarray(img).shape != (128, 512, 3):
        raise RuntimeError(f"render_panorama returned {np.asarray(img).shape}, expected (128, 512, 3)")
    med = statistics.median(times) * 1000.0
    return {
        "city_size_m": size_m, "style": "downtown", "city_generation_s": round(city_s, 3),
        "width": 512, "height": 128, "warmup": warmup, "renders": renders,
        "median_ms": round(med, 2), "p90_ms": round(float(np.percentile(times, 90)) * 1000.0, 2),
        "target_ms": PANO_TARGET_MS, "met": med <= PANO_TARGET_MS,
    }


def bench_city_export(size_m: float, panoramas: int, workers: int, mpp: float, seed: int = 5) -> dict:
    from unifygeo_ros.sim.vigor_export import VigorExportConfig, export_vigor
    from unifygeo_ros.sim.world import generate_city

    t0 = time.perf_counter()
    city = generate_city(seed, size_m, *ORIGIN, style="default")
    city_s = time.perf_counter() - t0
    cfg = VigorExportConfig(n_panoramas=panoramas, city_name="BenchCity", seed=seed, workers=workers, mpp=mpp)
    with tempfile.TemporaryDirectory(prefix="unifygeo-bench-") as tmp:
        t1 = time.perf_counter()
        res = export_vigor(city, tmp, cfg, progress=True)
        export_s = time.perf_counter() - t1
    total = city_s + export_s
    return {
        "city_size_m": size_m, "style": "default", "panoramas": res["panoramas"], "tiles": res["tiles"],
        "pano_size": res["pano_size"], "tile_px": res["tile_px"], "mpp": res["mpp"], "workers": workers,
        "city_generation_s": round(city_s, 3), "export_s": round(export_s, 3), "total_s": round(total, 3),
        "target_s": EXPORT_TARGET_S, "met": total <= EXPORT_TARGET_S,
    }


def bench_sim(quick: bool = False, workers: int | None = None) -> dict:
    workers = workers or os.cpu_count() or 1
    if quick:
        pano = bench_panorama(150.0, renders=5)
        export = bench_city_export(200.0, 12, workers, mpp=0.1)
    else:
        pano = bench_panorama(500.0, renders=30)
        export = bench_city_export(1000.0, 2000, workers, mpp=0.08)
    return {
        "quick": quick,
        "targets_apply": not quick,
        "machine": machine(),
        "panorama": pano,
        "city_export": export,
        "all_met": bool(pano["met"] and export["met"]),
    }


def format_bench(r: dict) -> str:
    p, e, m = r["panorama"], r["city_export"], r["machine"]
    note = "" if r["targets_apply"] else "  (--quick: sizes shrunk, targets do not apply)"
    return "\n".join([
        f"bench sim on {m['cpu_count']} CPUs, {m['platform']}{note}",
        f"  panorama 512x128 ({p['style']} {p['city_size_m']:.0f} m city): median {p['median_ms']:.1f} ms over "
        f"{p['renders']} renders (target {p['target_ms']:.0f} ms): {'met' if p['met'] else 'NOT met'}",
        f"  city {e['city_size_m']:.0f} m + {e['panoramas']} panoramas + VIGOR export ({e['tiles']} tiles, "
        f"{e['workers']} workers): {e['total_s']:.1f} s (city {e['city_generation_s']:.1f} s, export "
        f"{e['export_s']:.1f} s; target {e['target_s']:.0f} s): {'met' if e['met'] else 'NOT met'}",
    ])
