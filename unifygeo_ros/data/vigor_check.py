"""Validate a VIGOR copy (a real download, a label excerpt, or a synthetic export).

For each city under the label folder (``splits__corrected/`` or ``splits/``) it counts
what is listed, what is missing on disk, and measures how far each label offset is from
the offset implied by the file names' GPS (panorama lat/lon vs tile-centre lat/lon, in
pixels of the city's metres per pixel; see :mod:`unifygeo_ros.data.vigor` for the
sign convention). All four tiles of a line count (positive and semi-positives).

With only the label files present (as in a label excerpt) every image is "missing": that
is reported, not treated as a failure; ``require_images=True`` makes it one.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from unifygeo_ros.data.vigor import (
    ALL_LABEL_STEMS,
    VigorFormatError,
    VigorRoot,
    gps_label_offsets,
    read_label_file,
    read_satellite_list,
)


def _stats(errs: list[float]) -> dict:
    if not errs:
        return {"median_err_px": None, "max_err_px": None}
    a = np.asarray(errs)
    return {"median_err_px": round(float(np.median(a)), 4), "max_err_px": round(float(a.max()), 4)}


def check_city(vroot: VigorRoot, city: str) -> tuple[dict, list[float]]:
    meta = vroot.city_meta(city)
    sat_list_path = vroot.satellite_list_path(city)
    listed = read_satellite_list(sat_list_path) if sat_list_path.is_file() else []
    files: dict[str, int] = {}
    errs: list[float] = []
    pos_errs: list[float] = []
    panos: set[str] = set()
    referenced: set[str] = set()
    positive_of: dict[str, str] = {}
    outside_quarter = 0
    for stem in ALL_LABEL_STEMS:
        path = vroot.label_path(city, stem)
        if not path.is_file():
            continue
        lines = read_label_file(path)
        files[path.name] = len(lines)
        for ln in lines:
            gps = gps_label_offsets(ln.panorama, ln.satellites, meta.mpp)
            e = np.hypot(*(ln.offsets - gps).T)
            errs.extend(e.tolist())
            pos_errs.append(float(e[0]))
            panos.add(ln.panorama)
            referenced.update(ln.satellites)
            positive_of[ln.panorama] = ln.satellites[0]
            if np.abs(ln.offsets[0]).max() > meta.tile_px / 4.0:
                outside_quarter += 1
    if not files and not listed:
        raise VigorFormatError(f"city {city!r}: neither label files ({', '.join(s + vroot.suffix + '.txt' for s in ALL_LABEL_STEMS)}) "
                               f"nor {sat_list_path.name} under {vroot.split_dir / city}")
    listed_set = set(listed)
    all_tiles = listed_set | referenced
    missing_panos = sum(not vroot.panorama_path(city, p).is_file() for p in panos)
    missing_sats = sum(not vroot.satellite_path(city, s).is_file() for s in all_tiles)
    per_tile = Counter(positive_of.values())
    lines = sum(files.values())
    result = {
        "mpp": meta.mpp,
        "mpp_source": meta.source,
        "tile_px": meta.tile_px,
        "label_files": files,
        "lines": lines,
        **_stats(errs),
        "positive": _stats(pos_errs),
        "panoramas_listed": len(panos),
        "tiles_listed": len(listed),
        "tiles_referenced": len(referenced),
        "tiles_referenced_not_listed": len(referenced - listed_set),
        "missing_panoramas": missing_panos,
        "missing_satellites": missing_sats,
        "max_positives_per_tile": max(per_tile.values()) if per_tile else 0,
        "positives_outside_central_quarter": outside_quarter,
    }
    return result, errs


def check_vigor(root: str | Path, cities: Iterable[str] | str | None = None, labels: str = "auto",
                max_median_px: float = 5.0, max_max_px: float | None = None,
                require_images: bool = False) -> dict:
    """Check a VIGOR copy; the result's ``passed`` says whether every threshold held."""
    vroot = VigorRoot(root, labels)
    if isinstance(cities, str):
        cities = [c for c in cities.split(",") if c]
    if cities is None:
        cities = vroot.split_cities()
        if not cities:
            raise VigorFormatError(f"no cities under {vroot.split_dir}: expected one folder per city")
    else:
        cities = list(cities)
        for c in cities:
            vroot.require_city(c)
    per_city: dict[str, dict] = {}
    all_errs: list[float] = []
    for city in cities:
        per_city[city], errs = check_city(vroot, city)
        all_errs.extend(errs)
    lines = sum(c["lines"] for c in per_city.values())
    if lines == 0:
        raise VigorFormatError(f"no label lines in {', '.join(cities)} under {vroot.split_dir}: expected "
                               f"{', '.join(s + vroot.suffix + '.txt' for s in ALL_LABEL_STEMS)}")
    panos = sum(c["panoramas_listed"] for c in per_city.values())
    tiles_total = sum(c["tiles_listed"] + c["tiles_referenced_not_listed"] for c in per_city.values())
    missing_p = sum(c["missing_panoramas"] for c in per_city.values())
    missing_s = sum(c["missing_satellites"] for c in per_city.values())
    if missing_p + missing_s == 0:
        images = "all present"
    elif missing_p == panos and missing_s == tiles_total:
        images = "none present (labels only)"
    else:
        images = "some missing"
    failures = []
    for city, c in per_city.items():
        if c["median_err_px"] is not None and c["median_err_px"] > max_median_px:
            failures.append(f"{city}: median offset error {c['median_err_px']} px > {max_median_px}")
        if max_max_px is not None and c["max_err_px"] is not None and c["max_err_px"] > max_max_px:
            failures.append(f"{city}: max offset error {c['max_err_px']} px > {max_max_px}")
    if require_images and missing_p + missing_s:
        failures.append(f"{missing_p} panoramas and {missing_s} tiles missing on disk")
    return {
        "root": str(vroot.root),
        "label_dir": str(vroot.split_dir),
        "labels": vroot.labels,
        "cities": per_city,
        "lines": lines,
        **_stats(all_errs),
        "panoramas_listed": panos,
        "tiles_listed": sum(c["tiles_listed"] for c in per_city.values()),
        "missing_panoramas": missing_p,
        "missing_satellites": missing_s,
        "images": images,
        "max_median_px": max_median_px,
        "max_max_px": max_max_px,
        "passed": not failures,
        "failures": failures,
    }


def format_report(r: dict) -> str:
    out = [f"VIGOR check of {r['root']} ({r['labels']} labels, {r['label_dir']})"]
    for city, c in r["cities"].items():
        med = "-" if c["median_err_px"] is None else f"{c['median_err_px']:.2f}"
        mx = "-" if c["max_err_px"] is None else f"{c['max_err_px']:.2f}"
        out.append(f"  {city:14s} mpp {c['mpp']:.6f}  lines {c['lines']:6d}  median {med} px  max {mx} px  "
                   f"panoramas {c['panoramas_listed']}  tiles {c['tiles_listed']}  "
                   f"missing {c['missing_panoramas']} panoramas / {c['missing_satellites']} tiles  "
                   f"max positives/tile {c['max_positives_per_tile']}")
    out.append(f"  overall: lines {r['lines']}, median {r['median_err_px']:.2f} px, max {r['max_err_px']:.2f} px; "
               f"images: {r['images']}")
    out.append("  PASSED" if r["passed"] else "  FAILED: " + "; ".join(r["failures"]))
    return "\n".join(out)
