"""A built database on disk, opened for queries, and its integrity record.

Layout of ``DB/``::

    manifest.json          what was built and how (see :mod:`.build`), with the integrity record
    model.pt               the checkpoint the tiles were encoded with (its hash is in the manifest)
    tiles.npz              the tile table: grid pixel (row0, col0), centre in the map CRS (e, n),
                           in the map frame (x, y), latitude / longitude, convergence, coverage
    descriptors.npy        (N, turns * D) float32 global descriptors of the rotation ensemble
                           (``manifest["retrieval"]["turns"]``)
    index.faiss            FAISS index over turn 0 (the tile as it is); its shortlist is re-scored
                           with the ensemble (:func:`unifygeo_ros.inference.retrieval.search_tiles`)
    features_l{0..3}.npy   (N, C_l, h_l, h_l) float16 aerial features  ("stored" mode, memory-mapped)
    pixels.npy             (N, L, L, 3) uint8 tile pixels              ("recompute" mode, memory-mapped)
    engines/               ONNX export (and TensorRT engines) of model.pt, made on first use

**Integrity** (``manifest["integrity"]``): the SHA-256 and size of every file above except
``engines/`` (which is derived from ``model.pt`` and checked against its model hash by its
own manifest), and the SHA-256 of the manifest's own content (every field but that hash),
so that a manifest edited by hand (origin, metres per pixel, ...) is refused too. Opening
checks (``verify``):

* ``quick`` (the default): the manifest's hash, every file's size, and the hashes of the
  files read whole at open (``tiles.npz``, the FAISS index, the model); the memory-mapped
  arrays (descriptors, features or pixels) are checked by size only.
* ``full``: every file's hash as well (``unifygeo verify-db``).

Files named in the manifest resolve inside the database folder only.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zipfile
from pathlib import Path

import numpy as np

from ..geo import MapFrame
from ..types import DatabaseError

DB_FORMAT = "unifygeo_ros/database/2"
OLDER_FORMATS = ("unifygeo_ros/database/1",)     # built before the integrity record: refused, rebuild
MANIFEST = "manifest.json"
STATE = "build_state.json"
TILE_FIELDS = ("row0", "col0", "e", "n", "x", "y", "lat", "lon", "convergence_deg", "coverage")
FEATURE_MODES = ("stored", "recompute")
FEATURE_FILES = tuple(f"features_l{lv}.npy" for lv in range(4))
MAPPED_FILES = ("descriptors.npy", "pixels.npy", *FEATURE_FILES)   # memory-mapped: hashed by ``full`` only
HASH_ALGORITHM = "sha256"
VERIFY_LEVELS = ("quick", "full")
_CHUNK = 8 << 20


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 8 MiB chunks."""
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def inside(root: Path, name, what: str) -> Path:
    """``root / name`` when ``name`` (from the manifest) is a relative path that stays inside
    the database folder ``root``; else :class:`DatabaseError`."""
    rel = Path(name) if isinstance(name, str) and name else None
    if rel is None or rel.is_absolute() or ".." in rel.parts:
        raise DatabaseError(f"{root / MANIFEST}: {what} {name!r} is not a file inside the database folder; "
                            f"expected a plain file name such as 'model.pt'")
    path = root / rel
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        raise DatabaseError(f"{root / MANIFEST}: {what} {name!r} resolves outside the database folder "
                            f"({path.resolve()}); expected a file inside {root}") from None
    return path


def database_files(manifest: dict) -> list[str]:
    """Names of the files a complete database holds, per its manifest (what the integrity
    record covers)."""
    names = [manifest["model"]["file"], "tiles.npz", "descriptors.npy", manifest["index"]["file"]]
    names += list(FEATURE_FILES) if manifest["features"] == "stored" else ["pixels.npy"]
    return names


def manifest_sha256(manifest: dict) -> str:
    """SHA-256 of the manifest's content without the hash itself (canonical JSON: sorted
    keys, no spaces)."""
    body = dict(manifest)
    integrity = body.get("integrity")
    if isinstance(integrity, dict):
        body["integrity"] = {k: v for k, v in integrity.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal_manifest(manifest: dict) -> dict:
    """The manifest with its own hash (``integrity.manifest_sha256``) recomputed."""
    out = {**manifest, "integrity": dict(manifest["integrity"])}
    out["integrity"]["manifest_sha256"] = manifest_sha256(out)
    return out


def integrity_record(folder: Path, manifest: dict) -> dict:
    """The manifest with a fresh integrity record over the files of ``folder`` (hashes every file)."""
    files = {}
    for name in database_files(manifest):
        path = inside(folder, name, "file")
        files[name] = {"bytes": path.stat().st_size, HASH_ALGORITHM: file_sha256(path)}
    return seal_manifest({**manifest, "integrity": {"algorithm": HASH_ALGORITHM, "files": files}})


def verify_integrity(folder: Path, manifest: dict, level: str = "quick") -> dict:
    """Check the manifest's hash and the files against the integrity record (``quick`` or
    ``full``, see the module's docstring); :class:`DatabaseError` naming the first file that
    differs. Returns what was checked: level, files, bytes hashed, seconds."""
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify: expected one of {VERIFY_LEVELS}, got {level!r}")
    t0 = time.perf_counter()
    mf = folder / MANIFEST
    rebuild = "rebuild the database with `unifygeo build-db --overwrite`"
    record = manifest.get("integrity")
    if (not isinstance(record, dict) or record.get("algorithm") != HASH_ALGORITHM
            or not isinstance(record.get("files"), dict) or not isinstance(record.get("manifest_sha256"), str)):
        raise DatabaseError(f"{mf}: no valid integrity record (expected {HASH_ALGORITHM} hashes of the manifest "
                            f"and of every file); {rebuild}")
    if manifest_sha256(manifest) != record["manifest_sha256"]:
        raise DatabaseError(f"{mf}: the manifest's content does not match its hash (edited after the build?); "
                            f"restore the manifest or {rebuild}")
    names = database_files(manifest)
    if sorted(record["files"]) != sorted(names):
        raise DatabaseError(f"{mf}: the integrity record lists {sorted(record['files'])}, expected "
                            f"{sorted(names)}; {rebuild}")
    paths = {}
    for name in names:
        path = inside(folder, name, "file")
        entry = record["files"][name]
        if not path.is_file():
            raise DatabaseError(f"{path}: missing; expected the database's {name} ({entry.get('bytes')} bytes); "
                                f"restore it or {rebuild}")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise DatabaseError(f"{path}: {size} bytes, expected {entry.get('bytes')} (truncated or replaced); "
                                f"restore it or {rebuild}")
        paths[name] = path
    hashed = 0
    for name, path in paths.items():
        if level == "full" or name not in MAPPED_FILES:
            if file_sha256(path) != record["files"][name].get(HASH_ALGORITHM):
                raise DatabaseError(f"{path}: its content does not match the {HASH_ALGORITHM} in the manifest "
                                    f"(damaged or replaced); restore it or {rebuild}")
            hashed += record["files"][name]["bytes"]
    return {"level": level, "files": len(names), "bytes": sum(r["bytes"] for r in record["files"].values()),
            "bytes_hashed": hashed, "seconds": round(time.perf_counter() - t0, 3)}


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    mf = path / MANIFEST
    if not path.is_dir() or not mf.is_file():
        raise DatabaseError(f"{path}: not a database (expected a folder with {MANIFEST}; build one with "
                            f"`unifygeo build-db`)")
    try:
        manifest = json.loads(mf.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatabaseError(f"{mf}: unreadable manifest ({exc}); expected the JSON object `unifygeo build-db` "
                            f"writes") from None
    except OSError as exc:
        raise DatabaseError(f"{mf}: cannot read the manifest ({exc.strerror or exc})") from None
    if not isinstance(manifest, dict):
        raise DatabaseError(f"{mf}: expected a JSON object (the manifest `unifygeo build-db` writes), got a "
                            f"JSON {type(manifest).__name__}")
    if manifest.get("format") in OLDER_FORMATS:
        raise DatabaseError(f"{path}: format {manifest.get('format')} (built by an older version, without the "
                            f"integrity record); rebuild it with `unifygeo build-db --overwrite`")
    if manifest.get("format") != DB_FORMAT:
        raise DatabaseError(f"{mf}: expected format {DB_FORMAT}, got {manifest.get('format')!r}")
    return manifest


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_manifest(path: Path, m: dict) -> None:
    """The fields the database and the localizer read, with their types; :class:`DatabaseError`
    naming the first one missing or malformed."""
    def get(dotted: str):
        node = m
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                raise DatabaseError(f"{path / MANIFEST}: lacks '{dotted}'; expected the manifest `unifygeo build-db` "
                                    f"writes (rebuild the database)")
            node = node[key]
        return node

    def bad(dotted: str, expected: str):
        return DatabaseError(f"{path / MANIFEST}: '{dotted}' is {get(dotted)!r}; expected {expected} (rebuild the "
                             f"database)")

    for key in ("map_frame.origin_e", "map_frame.origin_n"):
        if not _number(get(key)):
            raise bad(key, "a finite number")
    for key in ("mpp_grid", "stride_px"):
        if not _number(get(key)) or get(key) <= 0:
            raise bad(key, "a positive number")
    for key in ("tile_size", "tiles"):
        if not isinstance(get(key), int) or isinstance(get(key), bool) or get(key) <= 0:
            raise bad(key, "a positive whole number")
    for key in ("map_frame.crs_wkt", "model.hash", "model.file", "index.file"):
        if not isinstance(get(key), str) or not get(key):
            raise bad(key, "a non-empty string")
    if not isinstance(get("model.config"), dict):
        raise bad("model.config", "the model's configuration (an object)")
    if get("features") not in FEATURE_MODES:
        raise bad("features", f"one of {FEATURE_MODES}")
    if "retrieval" in m and get("retrieval.turns") not in (1, 4):      # absent: one turn
        raise bad("retrieval.turns", "1 or 4")
    inside(path, m["model"]["file"], "model file")
    inside(path, m["index"]["file"], "index file")


def _encoded_so_far(path: Path, manifest: dict):
    try:
        return int(json.loads((path / STATE).read_text())["encoded"])
    except (OSError, ValueError, KeyError, TypeError):
        return manifest.get("encoded", 0)


class Database:
    """Read-only access to a complete database (memory-mapped arrays)."""

    def __init__(self, path: str | Path, verify: str = "quick"):
        """Open database ``path``. ``verify``: ``quick`` (the manifest's hash, every file's
        size, the hashes of the files read whole) or ``full`` (every file's hash too); see
        the module's docstring. Raises :class:`DatabaseError` naming what is wrong."""
        import faiss

        from .index import to_search_device

        if verify not in VERIFY_LEVELS:
            raise ValueError(f"verify: expected one of {VERIFY_LEVELS}, got {verify!r}")
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        if not self.manifest.get("complete"):
            raise DatabaseError(f"{self.path}: the build did not finish ({_encoded_so_far(self.path, self.manifest)} "
                                f"of {self.manifest.get('tiles', '?')} tiles encoded); run the same "
                                f"`unifygeo build-db` command again to resume it")
        m = self.manifest
        check_manifest(self.path, m)
        self.verified = verify_integrity(self.path, m, verify)
        mf = m["map_frame"]
        self.frame = MapFrame(mf["crs_wkt"], float(mf["origin_e"]), float(mf["origin_n"]))
        self.tile_size = int(m["tile_size"])
        self.mpp = float(m["mpp_grid"])
        self.model_hash = m["model"]["hash"]
        self.model_path = inside(self.path, m["model"]["file"], "model file")
        self.feature_mode = m["features"]
        self.turns = int((m.get("retrieval") or {}).get("turns", 1))
        try:
            descriptor_dim = int(m["model"]["config"]["dims"][-1]) * self.turns
        except (KeyError, IndexError, TypeError, ValueError):
            raise DatabaseError(f"{self.path / MANIFEST}: 'model.config' lacks the model's 'dims'; expected the "
                                f"configuration `unifygeo build-db` writes (rebuild the database)") from None
        current = "tiles.npz"
        try:
            with np.load(self.path / current) as z:
                self.tiles = {k: np.asarray(z[k]) for k in TILE_FIELDS}
            current = "descriptors.npy"
            self.descriptors = np.load(self.path / current, mmap_mode="r")
            current = m["index"]["file"]
            index = faiss.read_index(str(inside(self.path, current, "index file")))
            self.features: list[np.ndarray] | None = None
            self.pixels: np.ndarray | None = None
            if self.feature_mode == "stored":
                self.features = []
                for name in FEATURE_FILES:
                    current = name
                    self.features.append(np.load(self.path / name, mmap_mode="r"))
            else:
                current = "pixels.npy"
                self.pixels = np.load(self.path / current, mmap_mode="r")
        except (OSError, KeyError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
            raise DatabaseError(f"{self.path / current}: unreadable ({type(exc).__name__}: {exc}); rebuild the "
                                f"database with `unifygeo build-db --overwrite`") from None
        self.n = int(len(self.tiles["x"]))
        if self.n == 0:
            raise DatabaseError(f"{self.path}: the database holds no tiles (every tile was nodata?)")
        if any(len(v) != self.n for v in self.tiles.values()) or self.n != m["tiles"]:
            raise DatabaseError(f"{self.path / 'tiles.npz'}: expected {m['tiles']} rows in every field of the tile "
                                f"table, found {sorted({len(v) for v in self.tiles.values()})}; rebuild it")
        if index.ntotal != self.n or len(self.descriptors) != self.n:
            raise DatabaseError(f"{self.path}: index ({index.ntotal}), descriptors ({len(self.descriptors)}) and "
                                f"tile table ({self.n}) disagree; rebuild it")
        if self.descriptors.shape[1] != descriptor_dim or index.d != descriptor_dim // self.turns:
            raise DatabaseError(f"{self.path}: expected {descriptor_dim}-d descriptors ({self.turns} turn(s) of "
                                f"{descriptor_dim // self.turns}) and an index of turn 0, found "
                                f"{self.descriptors.shape[1]} (index {index.d}); rebuild it")
        mapped: dict = dict(zip(FEATURE_FILES, self.features)) if self.features is not None else {
            "pixels.npy": self.pixels}
        for name, arr in mapped.items():
            if len(arr) != self.n:
                raise DatabaseError(f"{self.path / name}: {len(arr)} rows, expected one per tile ({self.n}); "
                                    f"rebuild it")
        self.index = to_search_device(index)
        self.centres = np.stack([self.tiles["x"], self.tiles["y"]], axis=1)

    # ---- geometry ---------------------------------------------------------------------------
    def pixel_to_xy(self, tile: int, row, col):
        """Continuous (row, col) in tile ``tile`` -> map-frame (x, y) metres (tiles are grid-north-up)."""
        half = self.tile_size / 2.0
        x = self.tiles["x"][tile] + (np.asarray(col, dtype=np.float64) - half) * self.mpp
        y = self.tiles["y"][tile] + (half - np.asarray(row, dtype=np.float64)) * self.mpp
        return x, y

    def xy_to_pixel(self, tile: int, x, y):
        half = self.tile_size / 2.0
        col = half + (np.asarray(x, dtype=np.float64) - self.tiles["x"][tile]) / self.mpp
        row = half - (np.asarray(y, dtype=np.float64) - self.tiles["y"][tile]) / self.mpp
        return row, col

    def tiles_near(self, x: float, y: float, radius_m: float) -> np.ndarray:
        """Tiles whose central cell (the area it is the nearest tile for) may hold a point within
        ``radius_m`` of (x, y): centre distance <= radius + half a tile stride * sqrt(2)."""
        stride_m = float(self.manifest["stride_px"]) * self.mpp
        d = np.hypot(self.centres[:, 0] - x, self.centres[:, 1] - y)
        return np.nonzero(d <= radius_m + stride_m / np.sqrt(2.0))[0]

    # ---- queries ----------------------------------------------------------------------------
    def index_search(self, queries: np.ndarray, k: int, subset: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS top-``k`` over turn 0 (the tile as it is) for each row of ``queries`` (A, D):
        (scores, ids), each (A, k); with ``subset`` only those tile ids are searched."""
        if subset is None:
            return self.index.search(queries, k)
        import faiss

        params = faiss.SearchParameters(sel=faiss.IDSelectorArray(np.asarray(subset, dtype=np.int64)))
        return self.index.search(queries, k, params=params)

    def stored_features(self, ids) -> list[np.ndarray]:
        assert self.features is not None
        ids = np.asarray(ids, dtype=np.int64)
        return [np.asarray(f[ids], dtype=np.float32) for f in self.features]

    def tile_pixels(self, ids) -> np.ndarray:
        assert self.pixels is not None
        return np.asarray(self.pixels[np.asarray(ids, dtype=np.int64)])

    def tile_image(self, tile: int) -> tuple[np.ndarray | None, str]:
        """(RGB pixels of ``tile``, "") as the model saw them: the stored pixels in
        ``recompute`` mode, else read again from the source orthophotos on the same grid
        (:mod:`.raster`); (None, why not) when those are gone or no longer match the build."""
        if self.pixels is not None:
            return np.asarray(self.pixels[int(tile)]), ""
        from . import raster

        plan = self.manifest["plan"]
        try:
            sources = [raster.inspect(p) for p in plan["orthos"]]
            grid, _ = raster.plan_grid(sources, float(plan["aerial_mpp"]), float(plan["max_upsample"]))
        except DatabaseError as exc:
            return None, str(exc)
        built = self.manifest["grid"]
        if (grid.width, grid.height) != (built["width"], built["height"]) or not np.allclose(
                [grid.x0, grid.y0, grid.mpp], [built["x0"], built["y0"], built["mpp"]], rtol=0, atol=1e-6):
            return None, "the orthophotos changed since the database was built"
        with raster.TileReader(sources, grid) as reader:
            img, _ = reader.read(int(self.tiles["row0"][tile]), int(self.tiles["col0"][tile]), self.tile_size)
        return img, ""

    def candidate_info(self, tile: int) -> tuple[tuple[float, float], tuple[float, float]]:
        t = self.tiles
        return (float(t["x"][tile]), float(t["y"][tile])), (float(t["lat"][tile]), float(t["lon"][tile]))

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file() and "engines" not in p.parts)
