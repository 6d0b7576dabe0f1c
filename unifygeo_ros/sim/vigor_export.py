"""Export a synthetic city in the VIGOR layout (``unifygeo sim vigor``).

Layout written (see :mod:`unifygeo_ros.data.vigor` for the format itself)::

    ROOT/<City>/panorama/<panoid>,<lat>,<lon>,.jpg     north-aligned (TRUE north at the centre column)
    ROOT/<City>/satellite/satellite_<lat>_<lon>.png     TRUE-north-up, tile_px x tile_px, mpp ground m/px
    ROOT/<City>/meta.json                               mpp, tile_px, grid, CRS, city seed/style (see below)
    ROOT/splits/<City>/satellite_list.txt               every tile written
    ROOT/splits/<City>/same_area_balanced_train.txt     label lines of the train panoramas
    ROOT/splits/<City>/same_area_balanced_test.txt      label lines of the test panoramas
    ROOT/splits/<City>/pano_label_balanced.txt          label lines of all panoramas (cross-area)

Tiling as VIGOR's: tile centres lie on a lat/lon grid anchored at the city origin (its SW
corner) whose steps are half a tile (``tile_px / 2 * mpp`` metres) at the city's central
latitude, so neighbouring tiles overlap by half and every point lies in four tiles. The
positive tile of a panorama is the one whose centre is nearest (the camera is in its
central quarter); the three semi-positives are the other three tiles containing it, in
the order (other row, same column), (same row, other column), (other row, other column).
"Balanced": at most ``max_per_tile`` (2, as VIGOR) panoramas share a positive tile.

Label offsets are computed from the file names' lat/lon exactly as the checker does
(:func:`unifygeo_ros.geo.enu_offset_m` at the tile centre, ``dr = -north / mpp``,
``dc = -east / mpp``) and written as whole pixels like VIGOR's (``"23.0"``), so they agree
with the GPS within 0.71 px. The panorama is rendered at the position its (six-decimal)
file name says, and the tile around the name's centre, so names, labels and pixels agree.

Grid vs true north: the city lives in its UTM grid; a true-north-up tile is rendered with
``up_bearing_deg = -gamma`` and a north-aligned panorama with grid yaw ``90 + gamma``
(``gamma`` = meridian convergence at the tile centre / camera; bearing_true =
bearing_grid + gamma). Tiles are rendered at ``mpp * k`` grid metres per pixel (``k`` the
projection's scale factor) so that ``mpp`` is in ground metres.

``meta.json`` (read by the loader; VIGOR itself has no such file)::

    {"format": "unifygeo-vigor-meta/1", "city": NAME, "mpp": <ground m/px at tile_px>,
     "tile_px": 640, "pano_size": [W, H], "north": "true", "label_rounding": "whole pixels",
     "grid": {"lat0", "lon0", "lat_step_deg", "lon_step_deg", "step_m"},
     "max_positives_per_tile": 2, "panoramas": {"total", "train", "test"}, "tiles": N,
     "camera_height_m": 2.2, "seed": S,
     "source_city": {"seed", "style", "size_m", "dir"},
     "map_frame": {"crs_wkt", "origin_e", "origin_n", "origin_lat", "origin_lon"}}
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from unifygeo_ros.data.vigor import (
    LabelLine,
    META_FILE,
    SATELLITE_LIST,
    enu_to_label,
    panorama_file_name,
    satellite_file_name,
    tile_lat_lon_steps,
)
from unifygeo_ros.geo import enu_offset_m

DEFAULT_MPP = 0.1
_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


@dataclass(frozen=True)
class VigorExportConfig:
    n_panoramas: int
    city_name: str = "SynthCity"
    pano_size: tuple[int, int] = (768, 384)   # W, H
    tile_px: int = 640
    mpp: float = DEFAULT_MPP                  # ground metres per pixel of a tile_px tile
    seed: int = 0
    test_fraction: float = 0.5
    max_per_tile: int = 2
    min_clearance_m: float = 1.0
    camera_height_m: float = 2.2
    jpeg_quality: int = 95
    workers: int = 1

    def __post_init__(self):
        problems = []
        if self.n_panoramas < 1:
            problems.append("n_panoramas must be >= 1")
        if not self.city_name or any(c in self.city_name for c in "/\\ ,") or self.city_name.startswith("."):
            problems.append(f"city name {self.city_name!r} must be a plain folder name (no '/', ' ', ',')")
        w, h = self.pano_size
        if w < 8 or h < 4:
            problems.append("pano_size (W, H) must be at least 8 x 4")
        if self.tile_px < 8 or self.tile_px % 4:
            problems.append("tile_px must be a multiple of 4, at least 8")
        if not self.mpp > 0:
            problems.append("mpp must be > 0")
        if not 0.0 <= self.test_fraction <= 1.0:
            problems.append("test_fraction must be in [0, 1]")
        if self.max_per_tile < 1:
            problems.append("max_per_tile must be >= 1")
        if self.workers < 1:
            problems.append("workers must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class TileGrid:
    """VIGOR's tile-centre grid: ``lat = lat0 + i * dlat``, ``lon = lon0 + j * dlon``."""

    lat0: float
    lon0: float
    dlat: float
    dlon: float
    step_m: float

    @classmethod
    def for_city(cls, city, tile_px: int, mpp: float) -> "TileGrid":
        # anchor at the city's SW corner (its origin lat/lon as given, so names stay short)
        lat0 = float(getattr(city, "origin_lat", None) or city.frame.to_latlon(0.0, 0.0)[0])
        lon0 = float(getattr(city, "origin_lon", None) or city.frame.to_latlon(0.0, 0.0)[1])
        latc, _ = city.frame.to_latlon(city.size_m / 2.0, city.size_m / 2.0)
        step_m = tile_px / 2.0 * mpp
        dlat, dlon = tile_lat_lon_steps(float(latc), step_m)
        return cls(lat0, lon0, dlat, dlon, step_m)

    def centre(self, i: int, j: int) -> tuple[float, float]:
        return float(self.lat0 + i * self.dlat), float(self.lon0 + j * self.dlon)

    def name(self, i: int, j: int) -> str:
        return satellite_file_name(*self.centre(i, j))

    def tiles_of(self, lat: float, lon: float) -> list[tuple[int, int]]:
        """Positive then the three semi-positives (see the module docstring for the order)."""
        fi, fj = (lat - self.lat0) / self.dlat, (lon - self.lon0) / self.dlon
        i, j = int(round(fi)), int(round(fj))
        i2 = i + (1 if fi >= i else -1)
        j2 = j + (1 if fj >= j else -1)
        return [(i, j), (i2, j), (i, j2), (i2, j2)]


def label_line(pano_name: str, lat: float, lon: float, tiles: list[tuple[int, int]], grid: TileGrid,
               mpp: float) -> LabelLine:
    names, offs = [], []
    for i, j in tiles:
        clat, clon = grid.centre(i, j)
        east, north = enu_offset_m(clat, clon, lat, lon)
        dr, dc = enu_to_label(east, north, mpp)
        names.append(grid.name(i, j))
        offs.append([float(np.rint(dr)) + 0.0, float(np.rint(dc)) + 0.0])
    return LabelLine(pano_name, tuple(names), np.array(offs))  # type: ignore[arg-type]


def vigor_panorama_pose(city, lat: float, lon: float) -> tuple[np.ndarray, float]:
    """Local grid ``xy`` and grid ENU yaw of a TRUE-north-aligned panorama taken at ``(lat, lon)``.

    True north has grid bearing ``-gamma``, i.e. grid ENU yaw ``90 + gamma``.
    """
    x, y = (float(v) for v in city.frame.from_latlon(lat, lon))
    return np.array([x, y]), 90.0 + city.frame.convergence_deg(x, y)


def vigor_tile_pose(city, lat: float, lon: float, mpp: float) -> tuple[np.ndarray, float, float]:
    """Local grid centre, grid metres per pixel and ``up_bearing_deg`` of a TRUE-north-up tile
    centred at ``(lat, lon)`` with ``mpp`` ground metres per pixel."""
    x, y = (float(v) for v in city.frame.from_latlon(lat, lon))
    return np.array([x, y]), mpp * city.frame.scale_factor(x, y), -city.frame.convergence_deg(x, y)


def render_vigor_panorama(city, lat: float, lon: float, width: int, height: int,
                          camera_height_m: float = 2.2, render_panorama: Callable | None = None) -> np.ndarray:
    """The north-aligned (true north at the centre column) panorama at ``(lat, lon)``."""
    if render_panorama is None:
        from unifygeo_ros.sim.render import render_panorama
    xy, yaw = vigor_panorama_pose(city, lat, lon)
    return render_panorama(city, xy, yaw, width, height, camera_height_m=camera_height_m)


def render_vigor_tile(city, lat: float, lon: float, tile_px: int, mpp: float,
                      render_ortho: Callable | None = None) -> np.ndarray:
    """The true-north-up ``tile_px`` tile centred at ``(lat, lon)``, ``mpp`` ground m/px."""
    if render_ortho is None:
        from unifygeo_ros.sim.render import render_ortho
    xy, mpp_grid, up = vigor_tile_pose(city, lat, lon, mpp)
    return render_ortho(city, xy, tile_px, mpp_grid, up_bearing_deg=up)


def _pano_ids(rng: np.random.Generator, n: int) -> list[str]:
    out, seen = [], set()
    while len(out) < n:
        pid = "".join(rng.choice(_ID_ALPHABET, 22))
        if pid not in seen:
            seen.add(pid)
            out.append(pid)
    return out


def sample_panoramas(city, cfg: VigorExportConfig, grid: TileGrid, rng: np.random.Generator):
    """Street positions, at most ``max_per_tile`` per positive tile, on six-decimal lat/lon.

    Returns a list of ``(lat, lon, x, y)``; raises ValueError when the city cannot hold
    ``n_panoramas`` under the balance cap.
    """
    frame = city.frame
    counts: dict[tuple[int, int], int] = {}
    taken: list[tuple[float, float, float, float]] = []
    seen: set[tuple[float, float]] = set()
    n = cfg.n_panoramas
    drawn = 0
    budget = max(40 * n, 4000)
    while len(taken) < n and drawn < budget:
        batch = min(max(256, 2 * (n - len(taken))), budget - drawn)
        try:
            cand = np.asarray(city.street_positions(batch, rng, min_clearance_m=cfg.min_clearance_m),
                              dtype=np.float64)
        except RuntimeError as exc:   # the city cannot supply free street positions at all
            raise ValueError(f"no street positions for panoramas: {exc}") from None
        drawn += batch
        lat, lon = frame.to_latlon(cand[:, 0], cand[:, 1])
        lat, lon = np.round(np.asarray(lat), 6), np.round(np.asarray(lon), 6)
        x, y = frame.from_latlon(lat, lon)
        x, y = np.asarray(x), np.asarray(y)
        # rounding to six decimals moves a position by < 6 cm: keep it only if still clear
        free = np.asarray(city.is_free(np.stack([x, y], axis=1), max(0.0, cfg.min_clearance_m - 0.1)), dtype=bool)
        for k in range(len(cand)):
            if len(taken) >= n:
                break
            key = (float(lat[k]), float(lon[k]))
            if key in seen:
                continue
            pos = grid.tiles_of(key[0], key[1])[0]
            if counts.get(pos, 0) >= cfg.max_per_tile:
                continue
            if not free[k]:
                continue
            counts[pos] = counts.get(pos, 0) + 1
            seen.add(key)
            taken.append((key[0], key[1], float(x[k]), float(y[k])))
    if len(taken) < n:
        raise ValueError(
            f"the city holds only {len(taken)} panoramas with at most {cfg.max_per_tile} per positive tile "
            f"({len(counts)} tiles of {grid.step_m:.1f} m steps hold street positions; {drawn} positions drawn); "
            f"expected {n}: use a larger city, fewer panoramas or a smaller --mpp")
    return taken


# ---- rendering workers ---------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(city, render_pano, render_tile):
    _WORKER.update(city=city, pano=render_pano, tile=render_tile)


def _run_task(task):
    import cv2

    kind, path, args, quality = task
    city = _WORKER["city"]
    if kind == "pano":
        xy, yaw, w, h, cam_h = args
        img = _WORKER["pano"](city, np.asarray(xy), yaw, w, h, camera_height_m=cam_h)
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    else:
        xy, size, mpp_grid, up = args
        img = _WORKER["tile"](city, np.asarray(xy), size, mpp_grid, up_bearing_deg=up)
        params = []
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise RuntimeError(f"renderer returned {img.shape} {img.dtype} for {path}; expected HxWx3 uint8")
    tmp = path + ".part" + (".jpg" if kind == "pano" else ".png")
    if not cv2.imwrite(tmp, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params):
        raise RuntimeError(f"could not write {path}")
    os.replace(tmp, path)
    return path


def _warm_caches(city, xys, render_panorama, render_ortho) -> None:
    """Render a coarse orthophoto over every position (+ 250 m, what a panorama sees) and a tiny panorama."""
    pts = np.asarray(xys, dtype=np.float64).reshape(-1, 2)
    lo = np.maximum(pts.min(axis=0) - 250.0, 0.0)
    hi = np.minimum(pts.max(axis=0) + 250.0, city.size_m)
    span = float(max(hi - lo)) if np.all(hi > lo) else 0.0
    if span > 0:
        n = 256
        render_ortho(city, (lo + hi) / 2.0, n, span / n * 1.05)
    render_panorama(city, pts[0], 0.0, 16, 8)


def export_vigor(city, root: str | Path, cfg: VigorExportConfig, city_dir: str | Path | None = None,
                 progress: bool = True, render_panorama: Callable | None = None,
                 render_ortho: Callable | None = None) -> dict:
    """Write ``city`` as VIGOR city ``cfg.city_name`` under ``root``; returns a summary dict."""
    from unifygeo_ros.progress import tqdm

    if render_panorama is None:
        from unifygeo_ros.sim.render import render_panorama
    if render_ortho is None:
        from unifygeo_ros.sim.render import render_ortho

    t_start = time.perf_counter()
    root = Path(root)
    name = cfg.city_name
    city_out = root / name
    split_out = root / "splits" / name
    for d in (city_out, split_out):
        if d.exists() and any(d.iterdir()):
            raise FileExistsError(f"{d} exists and is not empty: expected a new city name or an empty folder")
    pano_dir, sat_dir = city_out / "panorama", city_out / "satellite"
    for d in (pano_dir, sat_dir, split_out):
        d.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 0x7669676F]))
    grid = TileGrid.for_city(city, cfg.tile_px, cfg.mpp)
    spots = sample_panoramas(city, cfg, grid, rng)
    ids = _pano_ids(rng, len(spots))
    frame = city.frame
    W, H = cfg.pano_size

    lines: list[LabelLine] = []
    tasks = []
    tiles: set[tuple[int, int]] = set()
    for pid, (lat, lon, _, _) in zip(ids, spots):
        pname = panorama_file_name(pid, lat, lon)
        tl = grid.tiles_of(lat, lon)
        lines.append(label_line(pname, lat, lon, tl, grid, cfg.mpp))
        tiles.update(tl)
        xy, yaw = vigor_panorama_pose(city, lat, lon)
        tasks.append(("pano", str(pano_dir / pname), (tuple(xy), yaw, W, H, cfg.camera_height_m), cfg.jpeg_quality))
    tile_list = sorted(tiles)
    for i, j in tile_list:
        xy, mpp_grid, up = vigor_tile_pose(city, *grid.centre(i, j), cfg.mpp)
        tasks.append(("tile", str(sat_dir / grid.name(i, j)), (tuple(xy), cfg.tile_px, mpp_grid, up), 0))

    bar = tqdm(total=len(tasks), desc=f"vigor {name}", unit="img", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    if cfg.workers > 1:
        import multiprocessing as mp

        # Fill the renderers' lazy per-city caches once, here, so that the forked workers
        # share them (copy-on-write) instead of each rebuilding them.
        _warm_caches(city, [t[2][0] for t in tasks], render_panorama, render_ortho)
        ctx = mp.get_context("fork")
        with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(city, render_panorama, render_ortho)) as pool:
            for _ in pool.imap_unordered(_run_task, tasks, chunksize=4):
                bar.update(1)
    else:
        _init_worker(city, render_panorama, render_ortho)
        for task in tasks:
            _run_task(task)
            bar.update(1)
    bar.close()

    # splits
    order = rng.permutation(len(lines))
    n_test = int(round(cfg.test_fraction * len(lines)))
    test_set = set(order[:n_test].tolist())
    train_lines = [ln for k, ln in enumerate(lines) if k not in test_set]
    test_lines = [ln for k, ln in enumerate(lines) if k in test_set]

    def write_lines(path: Path, rows: list[LabelLine]):
        path.write_text("".join(r.format() + "\n" for r in rows))

    (split_out / SATELLITE_LIST).write_text("".join(grid.name(i, j) + "\n" for i, j in tile_list))
    write_lines(split_out / "same_area_balanced_train.txt", train_lines)
    write_lines(split_out / "same_area_balanced_test.txt", test_lines)
    write_lines(split_out / "pano_label_balanced.txt", lines)

    lat0, lon0 = frame.to_latlon(0.0, 0.0)
    per_tile: dict[str, int] = {}
    for ln in lines:
        per_tile[ln.satellites[0]] = per_tile.get(ln.satellites[0], 0) + 1
    style = getattr(city, "style", None)
    meta = {
        "format": "unifygeo-vigor-meta/1",
        "city": name,
        "mpp": cfg.mpp,
        "tile_px": cfg.tile_px,
        "pano_size": [W, H],
        "north": "true",
        "label_rounding": "whole pixels (as VIGOR); the file names' GPS is exact to 1e-6 deg",
        "grid": {"lat0": grid.lat0, "lon0": grid.lon0, "lat_step_deg": grid.dlat, "lon_step_deg": grid.dlon,
                 "step_m": grid.step_m},
        "max_positives_per_tile": cfg.max_per_tile,
        "panoramas": {"total": len(lines), "train": len(train_lines), "test": len(test_lines)},
        "tiles": len(tile_list),
        "camera_height_m": cfg.camera_height_m,
        "seed": cfg.seed,
        "source_city": {"seed": getattr(city, "seed", None), "size_m": getattr(city, "size_m", None),
                        "style": getattr(style, "name", style) if style is not None else None,
                        "dir": str(city_dir) if city_dir is not None else None},
        "map_frame": {"crs_wkt": frame.crs_wkt, "origin_e": frame.origin_e, "origin_n": frame.origin_n,
                      "origin_lat": float(lat0), "origin_lon": float(lon0)},
    }
    (city_out / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    return {
        "root": str(root),
        "city": name,
        "panoramas": len(lines),
        "train": len(train_lines),
        "test": len(test_lines),
        "tiles": len(tile_list),
        "max_positives_per_tile": max(per_tile.values()),
        "mpp": cfg.mpp,
        "tile_px": cfg.tile_px,
        "pano_size": [W, H],
        "meta": str(city_out / META_FILE),
        "seconds": round(time.perf_counter() - t_start, 3),
    }
