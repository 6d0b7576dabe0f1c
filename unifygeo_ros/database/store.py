"""A built database on disk, opened for queries.

Layout of ``DB/``::

    manifest.json          what was built and how (see :mod:`.build`)
    model.pt               the checkpoint the tiles were encoded with (its hash is in the manifest)
    tiles.npz              the tile table: grid pixel (row0, col0), centre in the map CRS (e, n),
                           in the map frame (x, y), latitude / longitude, convergence, coverage
    descriptors.npy        (N, turns * D) float32 global descriptors of the rotation ensemble
                           (``manifest["retrieval"]["turns"]``; 1 in databases built before it)
    index.faiss            FAISS index over turn 0 (the tile as it is); its shortlist is re-scored
                           with the ensemble (:func:`unifygeo_ros.inference.retrieval.search_tiles`)
    features_l{0..3}.npy   (N, C_l, h_l, h_l) float16 aerial features  ("stored" mode, memory-mapped)
    pixels.npy             (N, L, L, 3) uint8 tile pixels              ("recompute" mode, memory-mapped)
    engines/               ONNX export (and TensorRT engines) of model.pt, made on first use
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..geo import MapFrame
from ..types import DatabaseError

DB_FORMAT = "unifygeo_ros/database/1"
MANIFEST = "manifest.json"
TILE_FIELDS = ("row0", "col0", "e", "n", "x", "y", "lat", "lon", "convergence_deg", "coverage")
FEATURE_MODES = ("stored", "recompute")


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    mf = path / MANIFEST
    if not path.is_dir() or not mf.is_file():
        raise DatabaseError(f"{path}: not a database (expected a folder with {MANIFEST}; build one with "
                            f"`unifygeo build-db`)")
    try:
        manifest = json.loads(mf.read_text())
    except ValueError as exc:
        raise DatabaseError(f"{mf}: unreadable manifest ({exc})") from None
    if manifest.get("format") != DB_FORMAT:
        raise DatabaseError(f"{mf}: expected format {DB_FORMAT}, got {manifest.get('format')!r}")
    return manifest


class Database:
    """Read-only access to a complete database (memory-mapped arrays)."""

    def __init__(self, path: str | Path):
        import faiss

        from .index import to_search_device

        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        if not self.manifest.get("complete"):
            raise DatabaseError(f"{self.path}: the build did not finish ({self.manifest.get('encoded', 0)} of "
                                f"{self.manifest.get('tiles', '?')} tiles encoded); run the same "
                                f"`unifygeo build-db` command again to resume it")
        m = self.manifest
        mf = m["map_frame"]
        self.frame = MapFrame(mf["crs_wkt"], float(mf["origin_e"]), float(mf["origin_n"]))
        self.tile_size = int(m["tile_size"])
        self.mpp = float(m["mpp_grid"])
        self.model_hash = m["model"]["hash"]
        self.feature_mode = m["features"]
        self.turns = int((m.get("retrieval") or {}).get("turns", 1))
        descriptor_dim = int(m["model"]["config"]["dims"][-1]) * self.turns
        try:
            with np.load(self.path / "tiles.npz") as z:
                self.tiles = {k: z[k] for k in TILE_FIELDS}
            self.descriptors = np.load(self.path / "descriptors.npy", mmap_mode="r")
            index = faiss.read_index(str(self.path / "index.faiss"))
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise DatabaseError(f"{self.path}: damaged database ({exc}); rebuild it with `unifygeo build-db`") from None
        self.n = int(len(self.tiles["x"]))
        if self.n == 0:
            raise DatabaseError(f"{self.path}: the database holds no tiles (every tile was nodata?)")
        if index.ntotal != self.n or len(self.descriptors) != self.n:
            raise DatabaseError(f"{self.path}: index ({index.ntotal}), descriptors ({len(self.descriptors)}) and "
                                f"tile table ({self.n}) disagree; rebuild it")
        if self.descriptors.shape[1] != descriptor_dim or index.d != descriptor_dim // self.turns:
            raise DatabaseError(f"{self.path}: expected {descriptor_dim}-d descriptors ({self.turns} turn(s) of "
                                f"{descriptor_dim // self.turns}) and an index of turn 0, found "
                                f"{self.descriptors.shape[1]} (index {index.d}); rebuild it")
        self.index = to_search_device(index)
        self.centres = np.stack([self.tiles["x"], self.tiles["y"]], axis=1)
        if self.feature_mode == "stored":
            self.features = [np.load(self.path / f"features_l{lv}.npy", mmap_mode="r") for lv in range(4)]
            self.pixels = None
        else:
            self.features = None
            self.pixels = np.load(self.path / "pixels.npy", mmap_mode="r")

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
