"""``unifygeo build-db``: tile orthophotos, encode the tiles, index them.

Steps: validate the rasters and choose the map frame and grid (:mod:`.raster`); lay a
lattice of ``L x L`` tiles with the requested overlap over the grid and drop tiles with no
valid data (planned on a coverage mask at 1/8 resolution); write the tile table and the
manifest; encode the tiles with the aerial branch in batches (tqdm on stderr), writing the
global descriptors (of the rotation ensemble: each tile in ``turns`` quarter turns, see
:mod:`unifygeo_ros.inference.retrieval`) and either the decoder's aerial features (``stored``: fp16,
memory-mapped) or the tile pixels (``recompute``: re-encoded per query); then build the
FAISS index and mark the manifest complete.

**Checks**: the options are checked before anything is read (batch size >= 1, overlap in
[0, 1), ...), the rasters before anything is written (:mod:`.raster`: readable to their
last block, a non-zero pixel size, a usable CRS, at least one tile across, one area), the
weights when loaded (finite values, matching their configuration), and every batch's
outputs before they are written (finite unit descriptors, features finite in fp16).

**Resume**: progress is saved after every batch (``build_state.json``), with the SHA-256 of
the batch's rows of every array (``build_state.hashes``, one JSON line per batch); running
the same command again on an unfinished database checks the arrays' sizes and every
finished batch's hashes, then continues where it stopped without re-encoding anything. A
database started or built with another model is refused.

**Integrity**: a finished build hashes every file into the manifest and seals the manifest
(:mod:`.store`); the database is marked complete only then.

**Overwrite**: ``--overwrite`` builds the new database beside the old one
(``OUT.tmp-XXXX`` in the same parent folder) and exchanges the two folders when it is
complete (one atomic ``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere renames, between
which the old one sits at ``OUT.old-XXXX``), then deletes the old one; until then the old
database stays as it was. A build that fails or is interrupted removes its ``OUT.tmp-XXXX``;
a killed one leaves it behind, to be deleted.

**Feature mode** ``auto`` (the default) stores the features when they take at most
:data:`STORED_BUDGET_BYTES` on disk, else keeps the pixels: for the small model a 10 km^2
area needs 1.2 GB of features (memory-mapped, so resident memory stays small), which a
Jetson holds, and stored features save the aerial branch per query; the paper model's
features would need 3.3 MB per tile (33 GB for 10 km^2), so it recomputes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import zipfile
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
from .index import INDEX_KINDS
from .store import (
    DB_FORMAT,
    FEATURE_FILES,
    FEATURE_MODES,
    MANIFEST,
    STATE,
    TILE_FIELDS,
    integrity_record,
    read_manifest,
)

log = logging.getLogger("unifygeo_ros.database")

STORED_BUDGET_BYTES = 4 * 2 ** 30
DEFAULT_AERIAL_MPP = 0.5
HASH_LOG = "build_state.hashes"
OUR_FILES = (MANIFEST, STATE, HASH_LOG, "model.pt", "tiles.npz", "descriptors.npy", "index.faiss", "pixels.npy",
             *FEATURE_FILES)
UNIT_TOLERANCE = 1e-2          # |norm - 1| allowed of a tile descriptor (fp16 backends included)


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


def check_config(cfg: BuildConfig) -> int:
    """Refuse options outside their ranges before anything is read or written; returns the turns."""
    if not cfg.orthos:
        raise DatabaseError("expected at least one --ortho GeoTIFF")
    if not cfg.out:
        raise DatabaseError("--out: expected a database folder")
    b = cfg.batch_size
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
        raise DatabaseError(f"--batch-size: expected a whole number >= 1 (tiles encoded per batch), got {b!r}")
    try:
        overlap = float(cfg.overlap)
    except (TypeError, ValueError):
        overlap = float("nan")
    if not 0.0 <= overlap < 1.0:
        raise DatabaseError(f"--overlap: expected 0 <= overlap < 1 (share of a tile shared with its neighbour), "
                            f"got {cfg.overlap!r}")
    if cfg.features not in ("auto", *FEATURE_MODES):
        raise DatabaseError(f"--features: expected auto, stored or recompute, got {cfg.features!r}")
    if cfg.index not in INDEX_KINDS:
        raise DatabaseError(f"--index: expected one of {', '.join(INDEX_KINDS)}, got {cfg.index!r}")
    try:
        up = float(cfg.max_upsample)
    except (TypeError, ValueError):
        up = float("nan")
    if not (math.isfinite(up) and up >= 1.0):
        raise DatabaseError(f"--max-upsample: expected a finite number >= 1 (how many times coarser than the "
                            f"model's metres per pixel a raster may be), got {cfg.max_upsample!r}")
    if cfg.threads is not None and (isinstance(cfg.threads, bool) or not isinstance(cfg.threads, int)
                                    or cfg.threads < 1):
        raise DatabaseError(f"threads: expected a whole number >= 1 or None, got {cfg.threads!r}")
    try:
        turns = check_turns(cfg.turns)
    except (TypeError, ValueError) as exc:
        raise DatabaseError(f"--turns: {exc}") from None
    from ..backends.registry import resolve_backend_name

    try:
        resolve_backend_name(cfg.backend)
    except (RuntimeError, ValueError) as exc:
        raise DatabaseError(f"--backend: {exc}") from None
    return turns


def _out_state(out: Path) -> str:
    """What ``--out`` holds: ``new`` (nothing, an empty folder, or the leftovers of a build that
    stopped before writing its manifest) or ``database``; refuses a file or a folder of other files."""
    if out.exists() and not out.is_dir():
        raise DatabaseError(f"--out {out}: is a file; expected a folder (a new one, or a database to resume "
                            f"or --overwrite)")
    if not out.exists():
        return "new"
    if (out / MANIFEST).is_file():
        try:
            fmt = json.loads((out / MANIFEST).read_text()).get("format", "")
        except (OSError, ValueError, UnicodeDecodeError, AttributeError):
            fmt = None
        if not (isinstance(fmt, str) and fmt.startswith(DB_FORMAT.rsplit("/", 1)[0] + "/")):
            raise DatabaseError(f"--out {out}: its {MANIFEST} is not a database's; expected a new or empty "
                                f"folder, or a database (delete the folder to reuse its name)")
        return "database"
    try:
        entries = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise DatabaseError(f"--out {out}: cannot list the folder ({exc.strerror or exc})") from None
    ours = {*OUR_FILES, *(f"{f}.tmp" for f in OUR_FILES), "engines"}
    other = [e for e in entries if e not in ours]
    if other:
        raise DatabaseError(f"--out {out}: holds files that are not a database ({', '.join(other[:3])}"
                            f"{', ...' if len(other) > 3 else ''}); expected a new or empty folder, or a database")
    return "new"


def _check_array(path: Path, dtype, shape: tuple) -> None:
    """An unfinished build's ``.npy`` file must hold ``shape`` of ``dtype``, every row on disk."""
    fmt = np.lib.format
    again = "the unfinished build cannot be resumed: pass --overwrite to start again"
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            got_shape, _, got_dtype = read(f)
            offset = f.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise DatabaseError(f"{path}: unreadable ({exc}); {again}") from None
    if tuple(got_shape) != tuple(shape) or np.dtype(got_dtype) != np.dtype(dtype):
        raise DatabaseError(f"{path}: holds {tuple(got_shape)} {np.dtype(got_dtype)}, expected {tuple(shape)} "
                            f"{np.dtype(dtype)}; {again}")
    want = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size != want:
        raise DatabaseError(f"{path}: {size} bytes, expected {want} (truncated?); {again}")


def _batch_hashes(arrays: dict, start: int, stop: int) -> dict:
    return {name: hashlib.sha256(np.ascontiguousarray(a[start:stop]).data).hexdigest() for name, a in arrays.items()}


def _verify_finished(work: Path, arrays: dict, done: int) -> None:
    """Check the rows [0, done) of an unfinished build against the hashes recorded per batch
    (``build_state.hashes``); keeps only the verified records."""
    again = "the unfinished build cannot be resumed: pass --overwrite to start again"
    records = []
    try:
        lines = (work / HASH_LOG).read_text().splitlines() if (work / HASH_LOG).is_file() else []
    except OSError as exc:
        raise DatabaseError(f"{work / HASH_LOG}: unreadable ({exc.strerror or exc}); {again}") from None
    covered = 0
    for line in lines:
        try:
            rec = json.loads(line)
            start, stop, hashes = int(rec["start"]), int(rec["stop"]), dict(rec["sha256"])
        except (ValueError, KeyError, TypeError):
            break                   # a line cut by a kill: the records end here
        if start != covered or stop > done:
            break
        got = _batch_hashes(arrays, start, stop)
        for name in arrays:
            if got[name] != hashes.get(name):
                raise DatabaseError(f"{work / name}: tiles {start}-{stop - 1} differ from what the build wrote "
                                    f"(their SHA-256 does not match {HASH_LOG}); {again}")
        records.append(line)
        covered = stop
    if covered != done:
        raise DatabaseError(f"{work / HASH_LOG}: records the hashes of {covered} of the {done} tiles encoded so "
                            f"far; {again}")
    (work / HASH_LOG).write_text("".join(r + "\n" for r in records))


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders: atomically with ``renameat2(RENAME_EXCHANGE)`` where the system has
    it (Linux), else by two renames."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(libc, "renameat2", None)
        if fn is not None:
            at_fdcwd, rename_exchange = -100, 2
            if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
                return
            log.debug("renameat2 failed (errno %d); swapping by two renames", ctypes.get_errno())
    aside = b.with_name(b.name + ".old-" + a.name.rsplit("-", 1)[-1])
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)


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
    integral = np.pad(cov.astype(np.int32), ((1, 0), (1, 0))).cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
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
    is called after each saved batch. Raises :class:`DatabaseError` naming what was expected."""
    turns = check_config(cfg)
    out = Path(cfg.out)
    existing = _out_state(out)          # before loading anything: a file or a foreign folder is refused
    import torch

    from ..backends.registry import open_backend
    from ..geo import MapFrame
    from ..model.released import RELEASED_LAYOUT
    from ..model.unifygeo import load_checkpoint
    from .index import build_index, index_kind

    t_start = time.perf_counter()
    try:
        model, payload = load_checkpoint(cfg.weights)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        text = str(exc)
        raise DatabaseError(f"--weights {text}" if text.startswith(str(cfg.weights))
                            else f"--weights {cfg.weights}: {text}") from None
    mcfg = model.cfg
    model_hash = model.state_hash()
    aerial_mpp, mpp_source = model_aerial_mpp(payload)
    L = mcfg.aerial_size

    # ---- an existing database: refuse, replace (beside it) or resume ------------------------------
    resume = None
    if existing == "database" and not cfg.overwrite:
        old = read_manifest(out)
        old_model: dict = old["model"] if isinstance(old.get("model"), dict) else {}
        if old_model.get("hash") != model_hash:
            raise DatabaseError(
                f"{out} was {'built' if old.get('complete') else 'started'} with model "
                f"{str(old_model.get('hash', '?'))[:12]}, but --weights {cfg.weights} is model "
                f"{model_hash[:12]}: refusing to mix models; use another --out or --overwrite")
        if old.get("complete"):
            raise DatabaseError(f"{out} already holds a complete database ({old.get('tiles')} tiles); "
                                f"pass --overwrite to rebuild it")
        resume = old
    sources = [raster.inspect(p) for p in cfg.orthos]
    grid, notes = raster.plan_grid(sources, aerial_mpp, cfg.max_upsample, tile_px=L)
    reader = raster.TileReader(sources, grid)
    work = out
    replace = existing == "database" and cfg.overwrite
    backend = None
    swapping = False
    created = not out.exists()         # a fresh build that fails before its first batch leaves nothing
    saved = 0
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
                      "heading_scale": float(model.heading_logit_scale().detach().exp()),
                      "retrieval_scale": float(model.logit_scale.detach().exp()),
                      "training": {k: v for k, v in (payload.get("training") or {}).items()
                                   if k in ("data", "steps", "epochs_done", "aerial_mpp")},
                      **({"released_as": payload.get("released_as"), "sha256": payload.get("sha256")}
                         if payload.get("format") == RELEASED_LAYOUT else {})},
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
        try:
            if replace:
                out.parent.mkdir(parents=True, exist_ok=True)
                work = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
                log.info("building beside %s in %s; the old database stays until the new one is complete",
                         out, work)
            else:
                out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"--out {out}: cannot create the database folder ({exc.strerror or exc})") from None
        shapes: dict[str, tuple] = {"descriptors.npy": (np.float32, (n, turns * mcfg.descriptor_dim))}
        if features == "stored":
            shapes.update({name: (np.float16, (n, c, h, h)) for name, c, h
                           in zip(FEATURE_FILES, mcfg.level_channels, mcfg.level_cells)})
        else:
            shapes["pixels.npy"] = (np.uint8, (n, L, L, 3))
        mode = "w+"
        done = 0
        try:
            if resume is not None:
                state = json.loads((work / STATE).read_text()) if (work / STATE).is_file() else {"encoded": 0}
                done = int(state["encoded"])
                mode = "r+"
                manifest = {**resume, "versions": manifest["versions"]}
                with np.load(work / "tiles.npz") as z:
                    same = (len(z["row0"]) == n and np.array_equal(z["row0"], table["row0"])
                            and np.array_equal(z["col0"], table["col0"]))
                if not same:
                    raise DatabaseError(f"{out}: the unfinished build's tile table differs from this plan (did the "
                                        f"rasters change?); pass --overwrite to start again")
                for name, (dtype, shape) in shapes.items():
                    _check_array(work / name, dtype, shape)
                shutil.copyfile(cfg.weights, work / "model.pt")       # the model the hash check accepted
                log.info("resuming %s: %d of %d tiles already encoded", out, done, n)
            else:
                for name in OUR_FILES:              # leftovers of a build that stopped before its manifest
                    (work / name).unlink(missing_ok=True)
                shutil.copyfile(cfg.weights, work / "model.pt")
                np.savez(work / "tiles.npz", **{k: table[k] for k in TILE_FIELDS})
                (work / HASH_LOG).write_text("")
                _atomic_json(work / STATE, {"encoded": 0})
                _atomic_json(work / MANIFEST, manifest)

            open_mm = np.lib.format.open_memmap
            arrays = {name: open_mm(work / name, mode=mode, dtype=dtype, shape=shape)
                      for name, (dtype, shape) in shapes.items()}
            if resume is not None:
                _verify_finished(work, arrays, done)
        except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.errno is not None:
                raise DatabaseError(f"--out {out}: cannot write the database ({exc.strerror or exc}: "
                                    f"{exc.filename or work})") from None
            raise DatabaseError(f"{out}: the unfinished build is unreadable ({type(exc).__name__}: {exc}); pass "
                                f"--overwrite to start again") from None
        desc = arrays["descriptors.npy"]

        try:
            backend = open_backend(cfg.backend, model_hash, work / "engines", load_model=lambda: model,
                                   onnx_dir_owned=True, threads=cfg.threads)
        except (RuntimeError, ValueError) as exc:
            raise DatabaseError(f"--backend {cfg.backend}: {' '.join(str(exc).split())[:300]}") from None
        from unifygeo_ros.progress import tqdm

        from ..inference.preprocess import normalize_images

        t_enc = time.perf_counter()
        bar = tqdm(total=n, initial=done, desc="encoding tiles", unit="tile", disable=not progress, file=sys.stderr)
        with open(work / HASH_LOG, "a") as hash_log:
            for start in range(done, n, cfg.batch_size):
                stop = min(n, start + cfg.batch_size)
                imgs = np.stack([reader.read(int(r), int(c), L)[0] for r, c in positions[start:stop]])
                b = stop - start
                turned = turned_tiles(normalize_images(imgs), turns)           # (b, turns, 3, L, L)
                outs = backend.encode_aerial(np.ascontiguousarray(turned.reshape(b * turns, *turned.shape[2:])))
                d = ensemble_references(outs["global_descriptor"].reshape(b, turns, -1))
                norms = np.linalg.norm(d, axis=1)
                if not (np.all(np.isfinite(d)) and np.all(np.abs(norms - 1.0) <= UNIT_TOLERANCE)):
                    raise DatabaseError(f"tiles {start}-{stop - 1}: the model's descriptors are not finite unit "
                                        f"vectors (NaN, infinity or zero); expected a working checkpoint, got "
                                        f"--weights {cfg.weights}; nothing of these tiles was written")
                desc[start:stop] = d
                if features == "stored":
                    for lv, name in enumerate(FEATURE_FILES):      # the decoder reads the tile as it is (turn 0)
                        f = outs[f"aerial_feat{lv}"]
                        f16 = f.reshape(b, turns, *f.shape[1:])[:, 0].astype(np.float16)
                        if not np.all(np.isfinite(f16)):
                            raise DatabaseError(f"tiles {start}-{stop - 1}: the model's level-{lv} aerial features "
                                                f"are not finite in float16 (NaN, infinity or beyond 65504); expected "
                                                f"a working checkpoint, or pass --features recompute")
                        arrays[name][start:stop] = f16
                else:
                    arrays["pixels.npy"][start:stop] = imgs
                for mm in arrays.values():
                    mm.flush()
                hash_log.write(json.dumps({"start": start, "stop": stop,
                                           "sha256": _batch_hashes(arrays, start, stop)}) + "\n")
                hash_log.flush()
                _atomic_json(work / STATE, {"encoded": stop})
                saved = stop
                bar.update(stop - start)
                if on_batch is not None:
                    on_batch(stop, n)
        bar.close()
        encode_s = time.perf_counter() - t_enc
        encoded_now = n - done
        reader.close()

        t_idx = time.perf_counter()
        index = build_index(first_turn(np.asarray(desc), turns), cfg.index)   # turn 0; see inference.retrieval
        import faiss

        faiss.write_index(index, str(work / "index.faiss"))
        index_s = time.perf_counter() - t_idx
        del desc, arrays
        t_hash = time.perf_counter()
        manifest.update({
            "complete": True, "encoded": n,
            "index": {"kind": index_kind(index), "file": "index.faiss"},
        })
        manifest = integrity_record(work, manifest)             # hashes every file (read once)
        hash_s = time.perf_counter() - t_hash
        disk = sum(p.stat().st_size for p in work.iterdir() if p.is_file())
        manifest.update({
            "build": {"seconds": round(time.perf_counter() - t_start, 2), "encode_seconds": round(encode_s, 2),
                      "index_seconds": round(index_s, 3), "hash_seconds": round(hash_s, 3),
                      "tiles_encoded_this_run": encoded_now,
                      "resumed_from": done, "backend": backend.name, "batch_size": cfg.batch_size,
                      "disk_bytes": disk, "torch_threads": torch.get_num_threads()},
        })
        from .store import seal_manifest

        _atomic_json(work / MANIFEST, seal_manifest(manifest))
        (work / STATE).unlink(missing_ok=True)
        (work / HASH_LOG).unlink(missing_ok=True)
        backend.close()
        backend = None
        if replace:
            swapping = True
            _exchange(work, out)            # ``work`` now holds the old database
            shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        if replace and work != out and not swapping:
            shutil.rmtree(work, ignore_errors=True)
        raise DatabaseError(f"--out {out}: cannot write the database ({exc.strerror or exc}"
                            f"{': ' + str(exc.filename) if exc.filename else ''})") from None
    except BaseException as exc:
        if replace and work != out and not swapping:
            shutil.rmtree(work, ignore_errors=True)
        elif isinstance(exc, DatabaseError) and resume is None and not replace and saved == 0 and out.is_dir():
            for name in OUR_FILES:
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "engines", ignore_errors=True)
            if created and not any(out.iterdir()):
                out.rmdir()
        raise
    finally:
        reader.close()
        if backend is not None:
            backend.close()
    return {"out": str(out), "tiles": n, "skipped_nodata": manifest["skipped_nodata"], "features": features,
            "crs": manifest["crs_choice"], "mpp_grid": manifest["mpp_grid"], "index": manifest["index"]["kind"],
            "model_hash": model_hash, "backend": manifest["build"]["backend"], **manifest["build"],
            "config": {k: v for k, v in asdict(cfg).items() if k != "extra"}}
