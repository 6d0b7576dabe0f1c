"""Orthophoto GeoTIFFs -> RGB tiles on the database's map grid.

* **Inputs**: any raster rasterio (GDAL) reads with a CRS: 1 band (grey, or a palette),
  3 bands (RGB), or either plus an alpha band; 8-bit as is; 16-bit (and other integer or
  float types) through a robust percentile stretch (the 1st-99th percentile of the valid
  pixels of all bands together mapped to 0-255, so colours keep their ratios). Grey
  becomes RGB by repetition.
* **Map frame**: the database lives in ONE projected CRS with metre units: the first
  raster's when it is such a CRS, otherwise the UTM zone of its centre. Other rasters
  (and a first raster in degrees or feet) are warped into it by GDAL
  (:class:`rasterio.vrt.WarpedVRT`): average resampling when shrinking, bilinear otherwise.
* **Grid**: square pixels of ``mpp_grid = aerial_mpp * k`` grid metres, where
  ``aerial_mpp`` is the ground metres per pixel the model learned on and ``k`` the
  projection's point scale factor at the first raster's centre (grid metres per ground
  metre). When the first raster is already north-up in that CRS at that resolution
  (within 2 %), its own pixel grid is used, without resampling.
* **Orientation**: tiles are *grid*-north-up, axis-aligned in the map frame. See
  :mod:`unifygeo_ros.database` for why that is right for the model and for yaw. A first
  raster stored south-up (positive row step) on the grid's lattice is read natively with
  its rows flipped; other south-up, mirrored or rotated rasters are warped into the grid.
* **Refused** (:class:`DatabaseError` naming the raster and what was expected): a file GDAL
  cannot open or whose last block cannot be read (truncated), no CRS or geotransform, a
  zero pixel size, a CRS that is neither geographic nor projected or does not map to
  latitude / longitude, other than 1 or 3 colour bands, all nodata, coarser than
  ``max_upsample`` times the model's metres per pixel, smaller than one tile on a side,
  and rasters too far apart for one map frame: one database's grid holds at most
  :data:`MAX_GRID_PIXELS` pixels (65 km x 65 km at 0.5 m/px; every raster's centre within
  that side of the first one's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..types import DatabaseError

NATIVE_TOLERANCE = 0.02        # relative resolution difference under which a raster's own grid is used
STRETCH_PERCENTILES = (1.0, 99.0)
COARSE = 8                     # pixels per cell of the coverage mask used to plan tiles
MAX_GRID_PIXELS = 2 ** 34      # one database's grid (its coverage mask takes 1/64 byte per pixel)


@dataclass
class GridSpec:
    """The database's pixel grid: CRS, top-left corner, grid metres per pixel, size."""

    crs_wkt: str
    x0: float
    y0: float
    mpp: float
    width: int
    height: int

    def transform(self, factor: int = 1):
        from rasterio.transform import Affine

        return Affine(self.mpp * factor, 0.0, self.x0, 0.0, -self.mpp * factor, self.y0)

    def pixel_to_crs(self, row, col):
        """Continuous grid (row, col) -> CRS (E, N)."""
        return self.x0 + np.asarray(col, dtype=np.float64) * self.mpp, self.y0 - np.asarray(row, dtype=np.float64) * self.mpp

    def as_dict(self) -> dict:
        return {"x0": self.x0, "y0": self.y0, "mpp": self.mpp, "width": self.width, "height": self.height}


@dataclass
class Source:
    """One input raster, validated, with how to turn its pixels into RGB."""

    path: Path
    crs_wkt: str
    bands: list[int]                  # 1-based indices read as R, G, B (grey: [1, 1, 1])
    alpha: int | None                 # 1-based alpha band, if any
    dtype: str
    stretch: tuple[float, float] | None
    colormap: np.ndarray | None       # (256, 3) uint8 palette for 1-band palette rasters
    ground_mpp: float                 # ground metres per pixel at the centre
    centre_lonlat: tuple[float, float]
    native_offset: tuple[int, int] | None = None   # (row, col) of its north-up pixel (0, 0) in the grid, when native
    south_up: bool = False            # native and stored south-up: its rows are read bottom first

    def as_dict(self) -> dict:
        return {"path": str(self.path), "bands": self.bands, "alpha": self.alpha, "dtype": self.dtype,
                "stretch": list(self.stretch) if self.stretch else None, "palette": self.colormap is not None,
                "ground_mpp": self.ground_mpp, "native": self.native_offset is not None, "south_up": self.south_up}


def _open(path: Path):
    import rasterio
    from rasterio.errors import RasterioIOError

    if not path.is_file():
        raise DatabaseError(f"orthophoto not found: {path}")
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise DatabaseError(f"{path}: not a readable GeoTIFF or raster (rasterio: {exc}); expected a "
                            f"geo-referenced GeoTIFF") from None


def _ground_mpp_and_centre(src) -> tuple[float, tuple[float, float]]:
    """Ground metres per pixel (geodesic, mean of both axes) and lon/lat at the raster centre."""
    from pyproj import Geod, Transformer

    t = Transformer.from_crs(src.crs.to_wkt(), "EPSG:4326", always_xy=True)
    r, c = src.height / 2.0, src.width / 2.0
    a = src.transform
    pts = [(a.c + a.a * cc + a.b * rr, a.f + a.d * cc + a.e * rr) for cc, rr in ((c, r), (c + 1, r), (c, r + 1))]
    lon, lat = t.transform([p[0] for p in pts], [p[1] for p in pts])
    if not np.all(np.isfinite(lon)) or not np.all(np.isfinite(lat)):
        raise DatabaseError(f"{src.name}: its centre does not map to latitude/longitude (CRS {src.crs})")
    geod = Geod(ellps="WGS84")
    _, _, dx = geod.inv(lon[0], lat[0], lon[1], lat[1])
    _, _, dy = geod.inv(lon[0], lat[0], lon[2], lat[2])
    return float(0.5 * (dx + dy)), (float(lon[0]), float(lat[0]))


def _check_crs(path: Path, src) -> None:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        crs = CRS.from_wkt(src.crs.to_wkt())
    except (CRSError, ValueError) as exc:
        raise DatabaseError(f"{path}: its CRS cannot be read ({exc}); expected a geographic or projected CRS "
                            f"(e.g. EPSG:32616)") from None
    if not (crs.is_projected or crs.is_geographic):
        kind = "geocentric" if crs.is_geocentric else (crs.type_name or "unknown").lower().replace(" crs", "")
        raise DatabaseError(f"{path}: its CRS ({crs.name}) is {kind}, not geographic or projected, so it does not "
                            f"place the image on the Earth's surface; expected a CRS such as EPSG:32616")


def _check_readable(path: Path, src) -> None:
    """Read the raster's last block (bottom-right, every band): a truncated file fails here,
    before anything is built."""
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    bh, bw = src.block_shapes[0] if src.block_shapes else (1, src.width)
    r0, c0 = ((src.height - 1) // bh) * bh, ((src.width - 1) // bw) * bw
    try:
        src.read(window=Window(c0, r0, src.width - c0, src.height - r0))
    except RasterioError as exc:
        raise DatabaseError(f"{path}: its pixels cannot be read ({_why(exc)}): the file is truncated or damaged; "
                            f"expected a complete GeoTIFF") from None


def _why(exc: Exception) -> str:
    """The most specific message of a rasterio error (GDAL's, when it is the cause)."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause) if cause is not None and str(cause) else str(exc)
    return " ".join(text.split())[:200]


def _stretch(src, bands: list[int]) -> tuple[float, float]:
    """Robust range of the valid pixels, from a decimated read (at most ~1000 px across)."""
    f = max(1, int(math.ceil(max(src.width, src.height) / 1000)))
    shape = (len(set(bands)), max(1, src.height // f), max(1, src.width // f))
    from rasterio.errors import RasterioError

    try:
        data = src.read(sorted(set(bands)), out_shape=shape, masked=True)
        mask = src.dataset_mask(out_shape=shape[1:]) > 0
    except RasterioError as exc:
        raise DatabaseError(f"{src.name}: its pixels cannot be read ({_why(exc)}): the file is truncated or "
                            f"damaged; expected a complete GeoTIFF") from None
    values = np.ma.filled(data.astype(np.float64), np.nan)[:, mask]
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise DatabaseError(f"{src.name}: every pixel is nodata; expected some valid imagery")
    lo, hi = np.percentile(values, STRETCH_PERCENTILES)
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def inspect(path: str | Path) -> Source:
    """Open and validate one raster; raises :class:`DatabaseError` naming what was expected."""
    path = Path(path)
    from rasterio.enums import ColorInterp

    with _open(path) as src:
        t = src.transform
        if src.crs is None:
            raise DatabaseError(f"{path}: the raster has no coordinate reference system; expected a "
                                f"geo-referenced GeoTIFF (e.g. set one with `gdal_edit.py -a_srs EPSG:32616`)")
        if t.is_identity:
            raise DatabaseError(f"{path}: the raster has no geotransform; expected a geo-referenced GeoTIFF")
        det = t.a * t.e - t.b * t.d
        if not (all(math.isfinite(v) for v in (t.a, t.b, t.c, t.d, t.e, t.f)) and det != 0.0):
            raise DatabaseError(f"{path}: the pixel size is zero or not finite (geotransform {tuple(t)[:6]}); "
                                f"expected a pixel width and height other than 0")
        if src.width < 1 or src.height < 1:
            raise DatabaseError(f"{path}: {src.width} x {src.height} pixels; expected an image")
        _check_crs(path, src)
        _check_readable(path, src)
        interp = list(src.colorinterp)
        alpha = [i + 1 for i, ci in enumerate(interp) if ci == ColorInterp.alpha]
        colour = [i + 1 for i in range(src.count) if i + 1 not in alpha]
        if len(colour) == 1:
            bands = [colour[0]] * 3
        elif len(colour) == 3:
            bands = colour
        else:
            raise DatabaseError(f"{path}: {src.count} bands ({', '.join(c.name for c in interp)}); expected 1 "
                                f"(grey) or 3 (RGB) bands, optionally with an alpha band")
        dtype = src.dtypes[bands[0] - 1]
        colormap = None
        if len(colour) == 1 and interp[colour[0] - 1] == ColorInterp.palette:
            cmap = src.colormap(colour[0])
            colormap = np.zeros((256, 3), np.uint8)
            for k, v in cmap.items():
                if 0 <= k < 256:
                    colormap[k] = v[:3]
        stretch = None if dtype == "uint8" else _stretch(src, bands)
        try:
            ground_mpp, centre = _ground_mpp_and_centre(src)
        except (RuntimeError, ValueError) as exc:    # pyproj's ProjError / CRSError
            raise DatabaseError(f"{path}: its CRS cannot be mapped to latitude / longitude ({exc}); expected a "
                                f"geographic or projected CRS") from None
        if not (math.isfinite(ground_mpp) and ground_mpp > 0):
            raise DatabaseError(f"{path}: its pixels measure {ground_mpp} m on the ground; expected a positive "
                                f"pixel size")
        return Source(path=path, crs_wkt=src.crs.to_wkt(), bands=bands, alpha=alpha[0] if alpha else None,
                      dtype=dtype, stretch=stretch, colormap=colormap, ground_mpp=ground_mpp, centre_lonlat=centre)


def database_crs(first: Source) -> tuple[str, str]:
    """The database's CRS (WKT) and why: the first raster's if projected in metres, else UTM."""
    from pyproj import CRS

    from ..geo import utm_epsg

    crs = CRS.from_wkt(first.crs_wkt)
    if crs.is_projected and crs.axis_info and all(a.unit_name in ("metre", "meter") for a in crs.axis_info[:2]):
        return first.crs_wkt, "the first raster's projected CRS"
    lon, lat = first.centre_lonlat
    utm = CRS.from_epsg(utm_epsg(lat, lon))
    units = crs.axis_info[0].unit_name if crs.axis_info else "?"
    return utm.to_wkt(), f"UTM zone of the first raster's centre (its CRS is {'geographic' if crs.is_geographic else units})"


def scale_factor(crs_wkt: str, lon: float, lat: float) -> float:
    """Grid metres per ground metre at (lon, lat): sqrt of the areal scale (= k when conformal)."""
    from pyproj import CRS, Proj

    f = Proj(CRS.from_wkt(crs_wkt)).get_factors(lon, lat)
    return float(math.sqrt(f.meridional_scale * f.parallel_scale))


def _zone(lon: float, lat: float) -> str:
    from ..geo import utm_epsg

    try:
        code = utm_epsg(lat, lon)
    except ValueError:
        return "polar, outside UTM"
    return f"UTM {code % 100}{'N' if code < 32700 else 'S'}"


def _too_far(sources: list[Source], mpp: float) -> None:
    """Refuse rasters whose centres lie farther from the first one's than one grid may span."""
    from pyproj import Geod

    limit_m = math.sqrt(MAX_GRID_PIXELS) * mpp
    geod = Geod(ellps="WGS84")
    first = sources[0]
    for s in sources[1:]:
        _, _, dist = geod.inv(*first.centre_lonlat, *s.centre_lonlat)
        if dist > limit_m:
            raise DatabaseError(
                f"{s.path} lies {dist / 1000:,.0f} km from {first.path} ({_zone(*s.centre_lonlat)} and "
                f"{_zone(*first.centre_lonlat)}); one database covers one area, its rasters' centres within "
                f"{limit_m / 1000:.0f} km of the first one's at {mpp:.3g} m/px: build one database per area")


def _extent(src, db_crs, same: bool) -> tuple[float, float, float, float]:
    """(min x, min y, max x, max y) of a raster in the database CRS, whatever its orientation
    (south-up rasters have their 'bottom' above their 'top')."""
    from rasterio.warp import transform_bounds

    left, bottom, right, top = src.bounds
    b = (min(left, right), min(bottom, top), max(left, right), max(bottom, top))
    return tuple(b) if same else tuple(transform_bounds(src.crs, db_crs, *b, densify_pts=21))


def plan_grid(sources: list[Source], aerial_mpp: float, max_upsample: float = 2.0,
              tile_px: int = 0) -> tuple[GridSpec, dict]:
    """The database grid covering every source; marks native sources. Returns (grid, notes).
    With ``tile_px``, a raster less than that many grid pixels across is refused."""
    import rasterio
    from pyproj import CRS

    for s in sources:
        if s.ground_mpp > aerial_mpp * max_upsample:
            raise DatabaseError(
                f"{s.path}: {s.ground_mpp:.3g} m/px is {s.ground_mpp / aerial_mpp:.0f}x coarser than the "
                f"{aerial_mpp:g} m/px the model was trained on; expected imagery of at most "
                f"{aerial_mpp * max_upsample:g} m/px (--max-upsample {max_upsample:g})")
    crs_wkt, why = database_crs(sources[0])
    first = sources[0]
    k = scale_factor(crs_wkt, *first.centre_lonlat)
    mpp = aerial_mpp * k
    _too_far(sources, mpp)
    db_crs = CRS.from_wkt(crs_wkt)
    bounds = []
    anchor = None
    for i, s in enumerate(sources):
        with rasterio.open(s.path) as src:
            same = CRS.from_wkt(s.crs_wkt) == db_crs
            t = src.transform
            if i == 0:      # north-up, or south-up (its rows flipped on reading), square pixels
                aligned = t.b == 0 and t.d == 0 and t.a > 0 and abs(abs(t.e) / t.a - 1) < 1e-6
                if same and aligned and abs(t.a / mpp - 1) <= NATIVE_TOLERANCE:
                    mpp = float(t.a)
                    s.native_offset = (0, 0)
                    s.south_up = t.e > 0
            b = _extent(src, db_crs, same)
            if i == 0:
                anchor = (b[0], b[3])     # top-left of the first raster
            if not all(np.isfinite(b)):
                raise DatabaseError(f"{s.path}: its extent does not project into the database CRS")
            if tile_px and min(b[2] - b[0], b[3] - b[1]) / mpp < tile_px - 0.5:
                raise DatabaseError(
                    f"{s.path}: covers {(b[2] - b[0]) / mpp:.0f} x {(b[3] - b[1]) / mpp:.0f} px of the "
                    f"{mpp:.3g} m/px grid ({b[2] - b[0]:.0f} m x {b[3] - b[1]:.0f} m); expected at least one tile, "
                    f"{tile_px} x {tile_px} px ({tile_px * mpp:.0f} m x {tile_px * mpp:.0f} m) (mosaic small rasters "
                    f"into one, e.g. with gdalbuildvrt)")
            bounds.append(b)
    assert anchor is not None
    minx = min(b[0] for b in bounds)
    miny = min(b[1] for b in bounds)
    maxx = max(b[2] for b in bounds)
    maxy = max(b[3] for b in bounds)
    x0 = anchor[0] - math.ceil((anchor[0] - minx) / mpp - 1e-9) * mpp
    y0 = anchor[1] + math.ceil((maxy - anchor[1]) / mpp - 1e-9) * mpp
    width = int(math.ceil((maxx - x0) / mpp - 1e-6))
    height = int(math.ceil((y0 - miny) / mpp - 1e-6))
    if width * height > MAX_GRID_PIXELS:
        side = math.sqrt(MAX_GRID_PIXELS) * mpp / 1000
        raise DatabaseError(
            f"{', '.join(str(s.path) for s in sources)}: the grid over them would be {width} x {height} px "
            f"({width * mpp / 1000:,.1f} km x {height * mpp / 1000:,.1f} km at {mpp:.3g} m/px); one database covers "
            f"at most {MAX_GRID_PIXELS:,} px (e.g. {side:.0f} km x {side:.0f} km): build one database per area")
    grid = GridSpec(crs_wkt, float(x0), float(y0), float(mpp), width, height)
    if first.native_offset is not None:
        first.native_offset = (int(round((y0 - anchor[1]) / mpp)), int(round((anchor[0] - x0) / mpp)))
    # Other sources that share the first raster's pixel lattice are read natively too.
    for s in sources[1:]:
        with rasterio.open(s.path) as src:
            t = src.transform
            if (first.native_offset is not None and CRS.from_wkt(s.crs_wkt) == db_crs and t.b == 0 and t.d == 0
                    and abs(t.a - mpp) < 1e-9 * mpp and abs(-t.e - mpp) < 1e-9 * mpp):
                c = (t.c - x0) / mpp
                r = (y0 - t.f) / mpp
                if abs(c - round(c)) < 1e-6 and abs(r - round(r)) < 1e-6:
                    s.native_offset = (int(round(r)), int(round(c)))
    notes = {"crs_choice": why, "scale_factor": k, "origin_e": float(bounds[0][0]), "origin_n": float(bounds[0][1])}
    return grid, notes


class TileReader:
    """Reads RGB tiles (and their validity) of the database grid from the sources."""

    def __init__(self, sources: list[Source], grid: GridSpec):
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        self.sources = sources
        self.grid = grid
        self._handles = []
        for s in sources:
            src = rasterio.open(s.path)
            if s.native_offset is not None:
                self._handles.append((src, src, s.native_offset))
                continue
            shrink = s.ground_mpp < grid.mpp
            vrt = WarpedVRT(src, crs=grid.crs_wkt, transform=grid.transform(), width=grid.width, height=grid.height,
                            resampling=Resampling.average if shrink else Resampling.bilinear,
                            add_alpha=src.nodata is None and s.alpha is None)
            self._handles.append((src, vrt, (0, 0)))

    def close(self) -> None:
        for src, ds, _ in self._handles:
            if ds is not src:
                ds.close()
            src.close()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def coverage(self, factor: int = COARSE) -> np.ndarray:
        """Boolean mask of the grid at 1/``factor`` resolution: where some source has valid data."""
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        g = self.grid
        h, w = int(math.ceil(g.height / factor)), int(math.ceil(g.width / factor))
        out = np.zeros((h, w), bool)
        from rasterio.errors import RasterioError

        for s in self.sources:
            try:
                with rasterio.open(s.path) as src:
                    with WarpedVRT(src, crs=g.crs_wkt, transform=g.transform(factor), width=w, height=h,
                                   resampling=Resampling.nearest,
                                   add_alpha=src.nodata is None and s.alpha is None) as vrt:
                        out |= vrt.dataset_mask() > 0
            except RasterioError as exc:
                raise DatabaseError(f"{s.path}: its pixels cannot be read ({_why(exc)}): the file is truncated or "
                                    f"damaged; expected a complete GeoTIFF") from None
        return out

    def _to_rgb(self, s: Source, raw: np.ndarray) -> np.ndarray:
        """(3, h, w) raw band values -> (h, w, 3) uint8 RGB."""
        if s.stretch is not None:
            lo, hi = s.stretch
            v = (raw.astype(np.float32) - lo) * (255.0 / (hi - lo))
            raw = np.clip(np.nan_to_num(v, nan=0.0) + 0.5, 0, 255).astype(np.uint8)
        else:
            raw = raw.astype(np.uint8, copy=False)
        if s.colormap is not None:
            return s.colormap[raw[0]]
        return np.ascontiguousarray(raw.transpose(1, 2, 0))

    def read(self, row0: int, col0: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The tile whose top-left grid pixel is (row0, col0): (size, size, 3) uint8 RGB and
        a (size, size) bool validity mask. Pixels no source covers are 0 (black)."""
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        img = np.zeros((size, size, 3), np.uint8)
        filled = np.zeros((size, size), bool)
        for s, (src, ds, (orow, ocol)) in zip(self.sources, self._handles):
            r0, c0 = row0 - orow, col0 - ocol
            rr0, cc0 = max(r0, 0), max(c0, 0)
            rr1, cc1 = min(r0 + size, ds.height), min(c0 + size, ds.width)
            if rr1 <= rr0 or cc1 <= cc0:
                continue
            flip = s.south_up and ds is src          # north-up rows [rr0, rr1) are stored rows [H - rr1, H - rr0)
            win = Window(cc0, ds.height - rr1 if flip else rr0, cc1 - cc0, rr1 - rr0)
            try:
                raw = ds.read(s.bands, window=win)
                mask = ds.dataset_mask(window=win) > 0
                if s.alpha is not None:
                    mask &= ds.read(s.alpha, window=win) > 0
                if flip:
                    raw, mask = raw[:, ::-1], mask[::-1]
            except RasterioError as exc:
                raise DatabaseError(f"{s.path}: its pixels cannot be read near grid row {row0}, column {col0} "
                                    f"({_why(exc)}): the file is truncated or damaged; expected a complete "
                                    f"GeoTIFF") from None
            if s.stretch is not None and raw.dtype.kind == "f":
                mask &= np.all(np.isfinite(raw), axis=0)
            rgb = self._to_rgb(s, raw)
            dst = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
            take = mask & ~filled[dst]
            img[dst][take] = rgb[take]
            filled[dst] |= take
        return img, filled
