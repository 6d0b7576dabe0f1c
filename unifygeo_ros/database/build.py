"""``unifygeo build-db``: tile orthophotos, encode the tiles, index them.

Steps: validate the rasters and choose the map frame and grid (:mod:`.raster`); lay a
lattice of ``L x L`` tiles with the requested overlap over the grid and drop tiles with no
valid data (planned on a coverage mask at 1/8 resolution); write the tile table and the
manifest; encode the tiles with the aerial branch in batches (tqdm on stderr), writing the
global descriptors (of the rotation ensemble: each tile in ``turns`` quarter turns, see
:mod:`unifygeo_ros.inference.retrieval`) and either the decoder's aerial features (``stored``: fp16,
memory-mapped) or the tile pixels (``recompute``: re-encoded per query); then build the
FAISS index and mark the manifest complete.

**Resume**: progress is saved after every batch (``build_state.json``); running the same
command again on an unfinished database continues where it stopped without re-encoding
anything. A database started or built with another model is refused.

**Feature mode** ``auto`` (the default) stores the features when they take at most
:data:`STORED_BUDGET_BYTES` on disk, else keeps the pixels: for the small model a 10 km^2
area needs 1.2 GB of features (memory-mapped, so resident memory stays small), which a
Jetson holds, and stored features save the aerial branch per query; the paper model's
features would need 3.3 MB per tile (33 GB for 10 km^2), so it recomputes.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..inference.retrieval import (
    check_turns,
    ensemble_references,
    first_turn,
    turned_tiles,
)
from ..types import DatabaseError
from . import raster
from .store import DB_FORMAT, FEATURE_MODES, MANIFEST, TILE_FIELDS, read_manifest

log = logging.getLogger("unifygeo_ros.database")

STORED_BUDGET_BYTES = 4 * 2 ** 30
DEFAULT_AERIAL_MPP = 0.5
STATE = "build_state.json"
OUR_FILES = (MANIFEST, STATE, "model.pt", "tiles.npz", "descriptors.npy", "index.faiss", "pixels.npy",
             *(f"features_l{lv}.npy" for lv in range(4)))


@dataclass
class BuildConfig:
    orthos: list[str]
    weights: str
    out: str
    overlap: float = 0.5
    features: str = "auto"          # auto | stored | recompute
    batch_size: int = 32
    backend: str = "auto"
    index: str = "auto"             # auto | flat | hnsw | ivf
    max_upsample: float = 2.0
    overwrite: bool = False
    threads: int | None = None
    turns: int = 4                  # rotation ensemble of the tile descriptors (1 or 4; inference.retrieval)
    extra: dict = field(default_factory=dict)


def model_aerial_mpp(payload: dict) -> tuple[float, str]:
    training = payload.get("training") or {}
    mpp = training.get("aerial_mpp")
    if mpp:
        return float(mpp), "checkpoint"
    log.warning("the checkpoint does not say which metres per pixel it was trained on (training.aerial_mpp); "
                "assuming %g m/px", DEFAULT_AERIAL_MPP)
    return DEFAULT_AERIAL_MPP, "default"


def feature_bytes_per_tile(cfg) -> int:
    return 2 * sum(c * n * n for c, n in zip(cfg.level_channels, cfg.level_cells))


def _versions() -> dict:
    import faiss
    import rasterio

    from .. import __name__ as pkg

    out = {"python": platform.python_version(), "numpy": np.__version__, "faiss": faiss.__version__,
           "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__}
    try:
        from importlib.metadata import version

        out["unifygeo_ros"] = version(pkg)
    except Exception:
        out["unifygeo_ros"] = "unknown"
    for mod in ("torch", "onnxruntime"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def _plan_key(cfg: BuildConfig, model_hash: str, aerial_mpp: float, features: str) -> dict:
    return {"orthos": [str(Path(p).resolve()) for p in cfg.orthos], "overlap": cfg.overlap, "features": features,
            "model_hash": model_hash, "aerial_mpp": aerial_mpp, "max_upsample": cfg.max_upsample,
            "turns": cfg.turns}


def _atomic_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def plan_tiles(reader: raster.TileReader, tile: int, overlap: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Lattice positions (row0, col0) of tiles that touch valid data; also the stride and
    how many lattice positions were skipped as nodata."""
    if not 0.0 <= overlap < 1.0:
        raise DatabaseError(f"--overlap: expected 0 <= overlap < 1 (share of a tile shared with its neighbour), "
                            f"got {overlap}")
    g = reader.grid
    stride = max(1, int(round(tile * (1.0 - overlap))))
    rows = np.arange(max(1, int(np.ceil(max(0, g.height - tile) / stride)) + 1)) * stride
    cols = np.arange(max(1, int(np.ceil(max(0, g.width - tile) / stride)) + 1)) * stride
    cov = reader.coverage()
    f = raster.COARSE
    integral = np.pad(cov.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    r0, c0 = np.meshgrid(rows, cols, indexing="ij")
    a0, b0 = np.clip(r0 // f, 0, cov.shape[0]), np.clip(c0 // f, 0, cov.shape[1])
    a1 = np.clip(-(-(r0 + tile) // f), 0, cov.shape[0])
    b1 = np.clip(-(-(c0 + tile) // f), 0, cov.shape[1])
    count = integral[a1, b1] - integral[a0, b1] - integral[a1, b0] + integral[a0, b0]
    keep = count > 0
    total = np.maximum((a1 - a0) * (b1 - b0), 1)
    coverage = (count / total)[keep]
    return np.stack([r0[keep], c0[keep]], axis=1), coverage.astype(np.float32), stride, int((~keep).sum())


def build_database(cfg: BuildConfig, progress: bool = True,
                   on_batch: Callable[[int, int], None] | None = None) -> dict:
    """Build (or resume) the database ``cfg.out``; returns a summary. ``on_batch(done, total)``
    is called after each saved batch."""
    import torch

    from ..backends.registry import open_backend
    from ..geo import MapFrame
    from ..model.unifygeo import load_checkpoint
    from .index import build_index, index_kind

    t_start = time.perf_counter()
    out = Path(cfg.out)
    if not cfg.orthos:
        raise DatabaseError("expected at least one --ortho GeoTIFF")
    if cfg.features not in ("auto", *FEATURE_MODES):
        raise DatabaseError(f"--features: expected auto, stored or recompute, got {cfg.features!r}")
    try:
        turns = check_turns(cfg.turns)
    except ValueError as exc:
        raise DatabaseError(f"--turns: {exc}") from None
    try:
        model, payload = load_checkpoint(cfg.weights)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise DatabaseError(f"--weights {cfg.weights}: {exc}") from None
    mcfg = model.cfg
    model_hash = model.state_hash()
    aerial_mpp, mpp_source = model_aerial_mpp(payload)
    L = mcfg.aerial_size

    # ---- an existing database: refuse, overwrite or resume ---------------------------------------
    resume = None
    if (out / MANIFEST).is_file():
        old = read_manifest(out)
        if cfg.overwrite:
            for name in OUR_FILES:
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "engines", ignore_errors=True)
        elif old.get("model", {}).get("hash") != model_hash:
            raise DatabaseError(
                f"{out} was {'built' if old.get('complete') else 'started'} with model "
                f"{old.get('model', {}).get('hash', '?')[:12]}, but --weights {cfg.weights} is model "
                f"{model_hash[:12]}: refusing to mix models; use another --out or --overwrite")
        elif old.get("complete"):
            raise DatabaseError(f"{out} already holds a complete database ({old.get('tiles')} tiles); "
                                f"pass --overwrite to rebuild it")
        else:
            resume = old
    sources = [raster.inspect(p) for p in cfg.orthos]
    grid, notes = raster.plan_grid(sources, aerial_mpp, cfg.max_upsample)
    reader = raster.TileReader(sources, grid)
    try:
        positions, coverage, stride, skipped = plan_tiles(reader, L, cfg.overlap)
        n = len(positions)
        if n == 0:
            raise DatabaseError(f"no tile of {', '.join(cfg.orthos)} holds valid (non-nodata) pixels")
        per_tile = feature_bytes_per_tile(mcfg)
        features = cfg.features
        if features == "auto":
            features = "stored" if n * per_tile <= STORED_BUDGET_BYTES else "recompute"
        key = _plan_key(cfg, model_hash, aerial_mpp, features)
        if resume is not None and resume.get("plan") != key:
            raise DatabaseError(f"{out} holds an unfinished build with other parameters ({resume.get('plan')}); "
                                f"repeat that command to resume it, or pass --overwrite")

        frame = MapFrame(grid.crs_wkt, notes["origin_e"], notes["origin_n"])
        e, nn = grid.pixel_to_crs(positions[:, 0] + L / 2.0, positions[:, 1] + L / 2.0)
        x, y = e - frame.origin_e, nn - frame.origin_n
        lat, lon = frame.to_latlon(x, y)
        from pyproj import Proj

        conv = np.asarray(Proj(frame.crs).get_factors(np.asarray(lon), np.asarray(lat)).meridian_convergence,
                          dtype=np.float64)
        table = {"row0": positions[:, 0].astype(np.int32), "col0": positions[:, 1].astype(np.int32), "e": e, "n": nn,
                 "x": x, "y": y, "lat": np.asarray(lat, np.float64), "lon": np.asarray(lon, np.float64),
                 "convergence_deg": conv, "coverage": coverage}
        olat, olon = frame.to_latlon(0.0, 0.0)
        manifest = {
            "format": DB_FORMAT,
            "complete": False,
            "plan": key,
            "model": {"hash": model_hash, "name": mcfg.name, "config": mcfg.as_dict(), "file": "model.pt",
                      "source": str(cfg.weights), "aerial_mpp": aerial_mpp, "aerial_mpp_source": mpp_source,
                      "heading_scale": float(model.logit_scale_heading.detach().exp()),
                      "retrieval_scale": float(model.logit_scale.detach().exp()),
                      "training": {k: v for k, v in (payload.get("training") or {}).items()
                                   if k in ("data", "steps", "epochs_done", "aerial_mpp")}},
            "map_frame": {"crs_wkt": frame.crs_wkt, "origin_e": frame.origin_e, "origin_n": frame.origin_n,
                          "origin_lat": float(olat), "origin_lon": float(olon),
                          "note": "origin = the first raster's lower-left corner; x east, y north (grid)"},
            "crs_choice": notes["crs_choice"],
            "grid": grid.as_dict(),
            "tile_size": L, "mpp_grid": grid.mpp, "mpp_ground": aerial_mpp, "scale_factor": notes["scale_factor"],
            "overlap": cfg.overlap, "stride_px": stride, "stride_m": stride * grid.mpp,
            "orientation": ("tiles are grid-north-up in the map frame; yaw is ENU in the map frame (grid); "
                            "meridian convergence (true - grid bearing) per tile is in tiles.npz"),
            "convergence_deg": {"min": float(conv.min()), "max": float(conv.max())},
            "retrieval": {"turns": turns, "descriptor_dim": turns * mcfg.descriptor_dim,
                          "note": "tile descriptors of the rotation ensemble (unifygeo_ros.inference.retrieval)"},
            "features": features, "feature_bytes_per_tile": per_tile if features == "stored" else 3 * L * L,
            "sources": [s.as_dict() for s in sources],
            "tiles": n, "skipped_nodata": skipped, "encoded": 0,
            "versions": _versions(),
        }
        out.mkdir(parents=True, exist_ok=True)
        mode = "w+"
        done = 0
        if resume is not None:
            state = json.loads((out / STATE).read_text()) if (out / STATE).is_file() else {"encoded": 0}
            done = int(state["encoded"])
            mode = "r+"
            manifest = {**resume, "versions": manifest["versions"]}
            with np.load(out / "tiles.npz") as z:
                same = (len(z["row0"]) == n and np.array_equal(z["row0"], table["row0"])
                        and np.array_equal(z["col0"], table["col0"]))
            if not same:
                raise DatabaseError(f"{out}: the unfinished build's tile table differs from this plan (did the "
                                    f"rasters change?); pass --overwrite to start again")
            log.info("resuming %s: %d of %d tiles already encoded", out, done, n)
        else:
            shutil.copyfile(cfg.weights, out / "model.pt")
            np.savez(out / "tiles.npz", **{k: table[k] for k in TILE_FIELDS})
            _atomic_json(out / STATE, {"encoded": 0})
            _atomic_json(out / MANIFEST, manifest)

        open_mm = np.lib.format.open_memmap
        desc = open_mm(out / "descriptors.npy", mode=mode, dtype=np.float32, shape=(n, turns * mcfg.descriptor_dim))
        if features == "stored":
            store = [open_mm(out / f"features_l{lv}.npy", mode=mode, dtype=np.float16, shape=(n, c, h, h))
                     for lv, (c, h) in enumerate(zip(mcfg.level_channels, mcfg.level_cells))]
        else:
            store = [open_mm(out / "pixels.npy", mode=mode, dtype=np.uint8, shape=(n, L, L, 3))]

        backend = open_backend(cfg.backend, model_hash, out / "engines", load_model=lambda: model,
                               onnx_dir_owned=True, threads=cfg.threads)
        from unifygeo_ros.progress import tqdm

        from ..inference.preprocess import normalize_images

        t_enc = time.perf_counter()
        bar = tqdm(total=n, initial=done, desc="encoding tiles", unit="tile", disable=not progress, file=sys.stderr)
        for start in range(done, n, cfg.batch_size):
            stop = min(n, start + cfg.batch_size)
            imgs = np.stack([reader.read(int(r), int(c), L)[0] for r, c in positions[start:stop]])
            b = stop - start
            turned = turned_tiles(normalize_images(imgs), turns)           # (b, turns, 3, L, L)
            outs = backend.encode_aerial(np.ascontiguousarray(turned.reshape(b * turns, *turned.shape[2:])))
            desc[start:stop] = ensemble_references(outs["global_descriptor"].reshape(b, turns, -1))
            if features == "stored":
                for lv in range(4):      # the decoder reads the tile as it is (turn 0)
                    f = outs[f"aerial_feat{lv}"]
                    store[lv][start:stop] = f.reshape(b, turns, *f.shape[1:])[:, 0].astype(np.float16)
            else:
                store[0][start:stop] = imgs
            for mm in (desc, *store):
                mm.flush()
            _atomic_json(out / STATE, {"encoded": stop})
            bar.update(stop - start)
            if on_batch is not None:
                on_batch(stop, n)
        bar.close()
        encode_s = time.perf_counter() - t_enc
        encoded_now = n - done
    finally:
        reader.close()

    t_idx = time.perf_counter()
    index = build_index(first_turn(np.asarray(desc), turns), cfg.index)      # turn 0; see inference.retrieval
    import faiss

    faiss.write_index(index, str(out / "index.faiss"))
    index_s = time.perf_counter() - t_idx
    del desc, store
    disk = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    manifest.update({
        "complete": True, "encoded": n,
        "index": {"kind": index_kind(index), "file": "index.faiss"},
        "build": {"seconds": round(time.perf_counter() - t_start, 2), "encode_seconds": round(encode_s, 2),
                  "index_seconds": round(index_s, 3), "tiles_encoded_this_run": encoded_now,
                  "resumed_from": done, "backend": backend.name, "batch_size": cfg.batch_size,
                  "disk_bytes": disk, "torch_threads": torch.get_num_threads()},
    })
    _atomic_json(out / MANIFEST, manifest)
    (out / STATE).unlink(missing_ok=True)
    backend.close()
    return {"out": str(out), "tiles": n, "skipped_nodata": manifest["skipped_nodata"], "features": features,
            "crs": manifest["crs_choice"], "mpp_grid": manifest["mpp_grid"], "index": manifest["index"]["kind"],
            "model_hash": model_hash, "backend": backend.name, **manifest["build"],
            "config": {k: v for k, v in asdict(cfg).items() if k != "extra"}}
