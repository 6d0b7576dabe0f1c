"""``unifygeo bench localize``: per-stage latency of the localizer for each available backend.

Per backend: open the localizer, warm up, then localize the same frames ``repeats`` times
per heading mode and report the median of every stage (preprocess, ground, search, aerial,
decoder, ensemble, posterior, total). Without ``--db`` a 300 m synthetic city (seed 2027, held out)
is built with the shipped model twice, with stored features and with tile pixels
(``recompute``), and real rendered views are used; the report then also compares the two
feature modes: build time, disk, bytes per tile, resident memory, and the projection to a
10 km^2 area.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time

import numpy as np

from ..options import default
from ..types import Camera
from .bench_model import rss_mb

BENCH_SEED = 2027


def _frames(city, rng) -> dict:
    from .synthetic import render_view

    if city is None:
        pano = rng.integers(0, 255, size=(256, 512, 3), dtype=np.uint8)
        pin = rng.integers(0, 255, size=(240, 320, 3), dtype=np.uint8)
        xy, yaw = None, 30.0
    else:
        xy = city.street_positions(1, rng, margin_m=30.0)[0]
        yaw = float(rng.uniform(-180, 180))
        pano, _ = render_view(city, xy, yaw, "panorama")
        pin, _ = render_view(city, xy, yaw, "pinhole")
    return {"panorama, unknown heading": (pano, Camera(), None),
            "panorama, known heading": (pano, Camera(), yaw),
            "pinhole 90 deg, known heading": (pin, Camera("pinhole", hfov_deg=90.0), yaw)}


TEN_KM2_TILES = int(np.ceil(10e6 / 32.0 ** 2))     # 10 km^2 at the default 32 m tile stride


def _run_backends(db: str, names, frames, repeats: int, warmup: int, threads, decoder_turns: int = default("decoder_turns")) -> dict:
    from ..localizer.localizer import Localizer

    out = {}
    for name in names:
        rss0 = rss_mb()
        t = time.perf_counter()
        loc = Localizer.open(db, backend=name, threads=threads, decoder_turns=decoder_turns)
        open_s = time.perf_counter() - t
        loc.warmup()
        entry: dict = {"backend": loc.backend_name, "open_s": round(open_s, 2), "modes": {}}
        for mode, (img, cam, heading) in frames.items():
            for _ in range(warmup):
                loc.localize(img, camera=cam, heading=heading)
            runs = [loc.localize(img, camera=cam, heading=heading).timings_ms for _ in range(repeats)]
            entry["modes"][mode] = {s: round(float(np.median([r[s] for r in runs])), 2) for s in runs[0]}
        entry["rss_growth_mb"] = round(rss_mb() - rss0, 1)
        out[name] = entry
        loc.close()
    return out


def bench_localize(db: str | None, weights: str | None, backends: str = "available", repeats: int = 20,
                   warmup: int = 3, threads: int | None = None, progress: bool = True, decoder_turns: int = default("decoder_turns")) -> dict:
    from ..backends.registry import availability, available_backends
    from ..database.store import Database

    names = available_backends() if backends == "available" else [b.strip() for b in backends.split(",") if b.strip()]
    avail = availability()
    report: dict = {"repeats": repeats, "warmup": warmup, "threads": threads, "decoder_turns": decoder_turns,
                    "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                "processor": platform.processor()},
                    "unavailable": {k: v for k, v in avail.items() if v is not None}, "backends": {}}
    if db is not None:
        frames = _frames(None, np.random.default_rng(0))
        report["db"] = str(db)
        report["backends"] = _run_backends(db, names, frames, repeats, warmup, threads, decoder_turns)
        d = Database(db)
        report["database"] = {"features": d.feature_mode, "tiles": d.n, "model": d.model_hash}
        return report
    from .synthetic import make_area

    report["db"] = "synthetic city seed 2027 (300 m), built twice"
    report["feature_modes"] = {}
    with tempfile.TemporaryDirectory(prefix="unifygeo-bench-") as tmp:
        frames = None
        for features in ("stored", "recompute"):
            area = make_area(BENCH_SEED, 300.0, (48.14, 11.58), "default", f"{tmp}/{features}", weights,
                             features=features, progress=progress)
            frames = frames or _frames(area.city, np.random.default_rng(0))
            d = Database(area.db)
            per_tile = d.manifest["feature_bytes_per_tile"] + 4 * d.descriptors.shape[1]
            runs = _run_backends(str(area.db), names, frames, repeats, warmup, threads, decoder_turns)
            report["feature_modes"][features] = {
                "tiles": d.n, "build_s": area.build["seconds"], "encode_s": area.build["encode_seconds"],
                "disk_mb": round(area.build["disk_bytes"] / 1e6, 2), "bytes_per_tile": per_tile,
                "ten_km2": {"tiles": TEN_KM2_TILES, "disk_gb": round(TEN_KM2_TILES * per_tile / 1e9, 2),
                            "build_s_at_this_rate": round(TEN_KM2_TILES * area.build["encode_seconds"] / d.n)},
                "backends": runs}
            if features == "stored":
                report["backends"] = runs
            report["database"] = {"features": "stored and recompute", "tiles": d.n, "model": d.model_hash}
    return report


def format_bench(r: dict) -> str:
    lines = [f"localize benchmark on {r['db']} ({r.get('database', {}).get('tiles', '?')} tiles, features "
             f"{r.get('database', {}).get('features', '?')}): median of {r['repeats']} after {r['warmup']} warm-up runs"]
    groups = ({f: fm["backends"] for f, fm in r["feature_modes"].items()} if "feature_modes" in r
              else {r.get("database", {}).get("features", "?"): r["backends"]})
    for features, backends in groups.items():
        for name, e in backends.items():
            lines.append(f"{name}, {features} features (opened in {e['open_s']} s, resident memory "
                         f"+{e['rss_growth_mb']} MB)")
            for mode, st in e["modes"].items():
                lines.append(f"  {mode:32s} " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()) + " ms")
    for features, fm in r.get("feature_modes", {}).items():
        t = fm["ten_km2"]
        lines.append(f"{features}: {fm['tiles']} tiles built in {fm['build_s']} s, {fm['disk_mb']} MB "
                     f"({fm['bytes_per_tile']} B/tile); 10 km^2 = {t['tiles']} tiles: {t['disk_gb']} GB, "
                     f"~{t['build_s_at_this_rate']} s to encode here")
    for name, why in r["unavailable"].items():
        lines.append(f"not available: {name} ({why})")
    return "\n".join(lines)
