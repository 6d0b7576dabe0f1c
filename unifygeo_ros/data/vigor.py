"""The VIGOR data set layout: names, label lines, and torch datasets over it.

One code path reads a real VIGOR download and a synthetic export (``unifygeo sim vigor``)::

    ROOT/<City>/panorama/<panoid>,<lat>,<lon>,.jpg        ground panoramas, north-aligned
    ROOT/<City>/satellite/satellite_<lat>_<lon>.png        aerial tiles, true-north-up
    ROOT/<City>/meta.json                                  synthetic exports only (see below)
    ROOT/splits/<City>/satellite_list.txt                  every tile of the city
    ROOT/splits/<City>/same_area_balanced_train.txt        label lines, same-area train
    ROOT/splits/<City>/same_area_balanced_test.txt         label lines, same-area test
    ROOT/splits/<City>/pano_label_balanced.txt             label lines, all (cross-area)

The corrected labels (SliceMatch) live in ``ROOT/splits__corrected/<City>/`` with a
``__corrected`` suffix on the label files (``same_area_balanced_test__corrected.txt``,
...); ``satellite_list.txt`` keeps its name there.

**Label lines** have 13 whitespace-separated fields: the panorama file name, then four
times ``satellite file name, dr, dc``; the first tile is the positive (the camera lies in
its central quarter), the other three the semi-positives (the other tiles containing the
camera; their offsets can fall outside the tile). In a ``T x T`` tile (T = 640 in VIGOR)
the camera is at **row = T/2 + dr, col = T/2 - dc** (continuous pixel coordinates: pixel
``(r, c)`` covers ``[r, r+1) x [c, c+1)``, the tile centre is ``(T/2, T/2)``). Equivalently
``dr = -north / mpp`` and ``dc = -east / mpp`` for the camera's east/north offset from the
tile centre (:func:`unifygeo_ros.geo.enu_offset_m` of the names' lat/lon). This was
checked against the real corrected labels: with that sign the offsets agree with the GPS in
the file names to a median of 2-3 px (max under 6 px); every other sign combination is
off by hundreds of pixels (see ``test/test_vigor.py``).

**Metres per pixel.** VIGOR has no file for it: the real cities use
:data:`VIGOR_MPP_640` (at 640 px). A synthetic export writes ``ROOT/<City>/meta.json``
(``"mpp"``: ground metres per pixel at ``"tile_px"``, plus how the city was made); when
that file exists it wins over the table.

**Orientation.** VIGOR panoramas are north-aligned (true north at the centre column), so
the ENU yaw of a panorama's forward direction is 90 degrees (east = 0, counter-clockwise).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

# ---------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------

VIGOR_CITIES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")

#: Ground metres per pixel of the 640 px VIGOR tiles (the original VIGOR code used 0.114).
VIGOR_MPP_640 = {
    "NewYork": 0.113248,
    "Seattle": 0.100817,
    "SanFrancisco": 0.118141,
    "Chicago": 0.111262,
}
VIGOR_TILE_PX = 640

#: Cross-area protocol of the real data set: train cities, test cities.
CROSS_AREA_CITIES = {"train": ("NewYork", "Seattle"), "test": ("SanFrancisco", "Chicago")}

#: Label file stems (without the ``__corrected`` suffix and ``.txt``).
LABEL_STEMS = {
    ("same_area", "train"): "same_area_balanced_train",
    ("same_area", "test"): "same_area_balanced_test",
    ("cross_area", "train"): "pano_label_balanced",
    ("cross_area", "test"): "pano_label_balanced",
}
ALL_LABEL_STEMS = ("same_area_balanced_train", "same_area_balanced_test", "pano_label_balanced")
SATELLITE_LIST = "satellite_list.txt"
META_FILE = "meta.json"
CORRECTED_SUFFIX = "__corrected"

#: Yaw (ENU, degrees) of the forward direction of a north-aligned panorama.
NORTH_ALIGNED_YAW_DEG = 90.0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VigorFormatError(ValueError):
    """A VIGOR root, split, city or file is missing or malformed (the message says what was expected)."""


# ---------------------------------------------------------------------------------------
# File names
# ---------------------------------------------------------------------------------------

def panorama_file_name(pano_id: str, lat: float, lon: float) -> str:
    """``<panoid>,<lat>,<lon>,.jpg`` with VIGOR's six decimals."""
    if "," in pano_id or "/" in pano_id or not pano_id:
        raise ValueError(f"panorama id {pano_id!r} must be non-empty without ',' or '/'")
    return f"{pano_id},{lat:.6f},{lon:.6f},.jpg"


def parse_panorama_name(name: str) -> tuple[str, float, float]:
    """``(panoid, lat, lon)`` of a panorama file name."""
    parts = Path(name).name.split(",")
    if len(parts) != 4 or parts[3] != ".jpg":
        raise VigorFormatError(f"panorama file name {name!r} is not '<panoid>,<lat>,<lon>,.jpg'")
    try:
        return parts[0], float(parts[1]), float(parts[2])
    except ValueError:
        raise VigorFormatError(f"panorama file name {name!r}: lat/lon are not numbers") from None


def satellite_file_name(lat: float, lon: float) -> str:
    """``satellite_<lat>_<lon>.png`` (shortest round-tripping float text, as VIGOR's names)."""
    return f"satellite_{float(lat)!r}_{float(lon)!r}.png"


def parse_satellite_name(name: str) -> tuple[float, float]:
    """``(lat, lon)`` of a tile's centre from its file name."""
    base = Path(name).name
    if not (base.startswith("satellite_") and base.endswith(".png")):
        raise VigorFormatError(f"satellite file name {name!r} is not 'satellite_<lat>_<lon>.png'")
    parts = base[len("satellite_"):-len(".png")].split("_")
    if len(parts) != 2:
        raise VigorFormatError(f"satellite file name {name!r} is not 'satellite_<lat>_<lon>.png'")
    try:
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise VigorFormatError(f"satellite file name {name!r}: lat/lon are not numbers") from None


# ---------------------------------------------------------------------------------------
# Label offsets <-> pixels <-> metres
# ---------------------------------------------------------------------------------------

def label_to_pixel(dr, dc, tile_px: int = VIGOR_TILE_PX):
    """Camera ``(row, col)`` in a ``tile_px`` tile from a label's ``(dr, dc)``."""
    return tile_px / 2.0 + np.asarray(dr, dtype=np.float64), tile_px / 2.0 - np.asarray(dc, dtype=np.float64)


def pixel_to_label(row, col, tile_px: int = VIGOR_TILE_PX):
    """Inverse of :func:`label_to_pixel`."""
    return np.asarray(row, dtype=np.float64) - tile_px / 2.0, tile_px / 2.0 - np.asarray(col, dtype=np.float64)


def enu_to_label(east, north, mpp: float):
    """Label ``(dr, dc)`` of a camera ``east``/``north`` metres from the tile centre."""
    return -np.asarray(north, dtype=np.float64) / mpp, -np.asarray(east, dtype=np.float64) / mpp


def label_to_enu(dr, dc, mpp: float):
    """Camera ``(east, north)`` metres from the tile centre, from a label's ``(dr, dc)``."""
    return -np.asarray(dc, dtype=np.float64) * mpp, -np.asarray(dr, dtype=np.float64) * mpp


def gps_label_offsets(pano_name: str, sat_names: Sequence[str], mpp: float) -> np.ndarray:
    """``(n, 2)`` label offsets ``(dr, dc)`` implied by the file names' GPS alone."""
    from unifygeo_ros.geo import enu_offset_m

    _, lat, lon = parse_panorama_name(pano_name)
    out = np.empty((len(sat_names), 2))
    for k, s in enumerate(sat_names):
        slat, slon = parse_satellite_name(s)
        east, north = enu_offset_m(slat, slon, lat, lon)
        out[k] = enu_to_label(east, north, mpp)
    return out


# ---------------------------------------------------------------------------------------
# Label files
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelLine:
    panorama: str
    satellites: tuple[str, str, str, str]   # positive first
    offsets: np.ndarray = field(compare=False)  # (4, 2): dr, dc per tile

    def format(self) -> str:
        parts = [self.panorama]
        for s, (dr, dc) in zip(self.satellites, self.offsets):
            parts += [s, f"{float(dr):.1f}", f"{float(dc):.1f}"]
        return " ".join(parts)


def parse_label_line(line: str, where: str = "label line") -> LabelLine:
    fields = line.split()
    if len(fields) != 13:
        raise VigorFormatError(f"{where}: expected 13 fields (panorama, then 4 x satellite dr dc), "
                               f"got {len(fields)}")
    parse_panorama_name(fields[0])
    sats = tuple(fields[1::3])
    for s in sats:
        parse_satellite_name(s)
    try:
        offsets = np.array([[float(fields[2 + 3 * k]), float(fields[3 + 3 * k])] for k in range(4)])
    except ValueError:
        raise VigorFormatError(f"{where}: dr/dc fields are not numbers") from None
    return LabelLine(fields[0], sats, offsets)  # type: ignore[arg-type]


def read_label_file(path: Path) -> list[LabelLine]:
    path = Path(path)
    if not path.is_file():
        raise VigorFormatError(f"label file not found: expected {path}")
    out = []
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                out.append(parse_label_line(line, f"{path}:{i}"))
    return out


def read_satellite_list(path: Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise VigorFormatError(f"satellite list not found: expected {path}")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    for n in names:
        parse_satellite_name(n)
    return names


# ---------------------------------------------------------------------------------------
# A root on disk
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CityMeta:
    name: str
    mpp: float          # ground metres per pixel at tile_px
    tile_px: int        # side of the tile the label offsets refer to
    source: str         # where mpp came from
    extra: dict = field(default_factory=dict, compare=False)


class VigorRoot:
    """A VIGOR directory: which label set it uses and where each file lives.

    ``labels``: ``"auto"`` (``splits__corrected`` when present, else ``splits``),
    ``"corrected"`` or ``"original"``.
    """

    def __init__(self, root: str | Path, labels: str = "auto"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise VigorFormatError(f"VIGOR root not found: expected a directory {self.root} holding "
                                   f"splits/ or splits__corrected/ and one folder per city")
        corrected, original = self.root / "splits__corrected", self.root / "splits"
        if labels == "auto":
            labels = "corrected" if corrected.is_dir() else "original"
        if labels == "corrected":
            self.split_dir, self.suffix = corrected, CORRECTED_SUFFIX
        elif labels == "original":
            self.split_dir, self.suffix = original, ""
        else:
            raise VigorFormatError(f"labels must be 'auto', 'corrected' or 'original', not {labels!r}")
        if not self.split_dir.is_dir():
            raise VigorFormatError(f"VIGOR label folder not found: expected {self.split_dir} "
                                   f"(with one sub-folder of label files per city)")
        self.labels = labels

    def __repr__(self) -> str:
        return f"VigorRoot({str(self.root)!r}, labels={self.labels!r})"

    def split_cities(self) -> list[str]:
        """Cities that have a folder under the label folder, sorted."""
        return sorted(p.name for p in self.split_dir.iterdir() if p.is_dir())

    def require_city(self, city: str) -> None:
        if not (self.split_dir / city).is_dir():
            raise VigorFormatError(f"city {city!r} not found: expected {self.split_dir / city}/ "
                                   f"(cities here: {', '.join(self.split_cities()) or 'none'})")

    def label_path(self, city: str, stem: str) -> Path:
        return self.split_dir / city / f"{stem}{self.suffix}.txt"

    def satellite_list_path(self, city: str) -> Path:
        plain = self.split_dir / city / SATELLITE_LIST
        if plain.is_file() or not self.suffix:
            return plain
        alt = self.split_dir / city / f"satellite_list{self.suffix}.txt"
        return alt if alt.is_file() else plain

    def panorama_path(self, city: str, name: str) -> Path:
        return self.root / city / "panorama" / name

    def satellite_path(self, city: str, name: str) -> Path:
        return self.root / city / "satellite" / name

    def meta_path(self, city: str) -> Path:
        return self.root / city / META_FILE

    def city_meta(self, city: str) -> CityMeta:
        """Metres per pixel and tile size of ``city``: its ``meta.json``, else VIGOR's table."""
        path = self.meta_path(city)
        if path.is_file():
            try:
                meta = json.loads(path.read_text())
                mpp, tile_px = float(meta["mpp"]), int(meta["tile_px"])
            except (ValueError, KeyError, TypeError) as exc:
                raise VigorFormatError(f"{path}: expected JSON with numeric 'mpp' and 'tile_px' ({exc})") from None
            if not (mpp > 0 and tile_px > 0):
                raise VigorFormatError(f"{path}: 'mpp' and 'tile_px' must be positive")
            return CityMeta(city, mpp, tile_px, str(path), meta)
        if city in VIGOR_MPP_640:
            return CityMeta(city, VIGOR_MPP_640[city], VIGOR_TILE_PX, "VIGOR table (640 px)")
        raise VigorFormatError(f"no metres-per-pixel for city {city!r}: expected {path} (a synthetic "
                               f"export's meta.json) or one of the VIGOR cities {', '.join(VIGOR_CITIES)}")


# ---------------------------------------------------------------------------------------
# Index: panoramas and tiles of a protocol split
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SatelliteRecord:
    city: str
    name: str
    path: Path
    lat: float
    lon: float
    listed: bool        # in satellite_list.txt (False: only referenced by a label line)


@dataclass(frozen=True)
class PanoramaRecord:
    city: str
    name: str
    path: Path
    lat: float
    lon: float
    satellites: np.ndarray = field(compare=False)  # (4,) global tile indices, positive first
    offsets: np.ndarray = field(compare=False)     # (4, 2) label (dr, dc) at the city's tile_px


def resolve_cities(vroot: VigorRoot, protocol: str, split: str,
                   cities: Iterable[str] | str | None) -> list[str]:
    """The cities a protocol split uses (defaults: see :class:`VigorIndex`)."""
    if (protocol, split) not in LABEL_STEMS:
        raise VigorFormatError(f"protocol/split must be same_area|cross_area and train|test, "
                               f"not {protocol!r}/{split!r}")
    if isinstance(cities, str):
        cities = [c for c in cities.split(",") if c]
    if cities is not None:
        cities = list(cities)
        if not cities:
            raise VigorFormatError("cities: expected at least one city name")
        for c in cities:
            vroot.require_city(c)
        return cities
    if protocol == "same_area":
        found = vroot.split_cities()
        if not found:
            raise VigorFormatError(f"no cities under {vroot.split_dir}: expected one folder per city")
        return found
    default = list(CROSS_AREA_CITIES[split])
    missing = [c for c in default if not (vroot.split_dir / c).is_dir()]
    if missing:
        raise VigorFormatError(
            f"cross-area {split} uses {', '.join(default)} by default, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not under {vroot.split_dir}; pass cities=[...] "
            f"(found: {', '.join(vroot.split_cities()) or 'none'})")
    return default


class VigorIndex:
    """All panoramas and tiles of one protocol split, with global tile indices.

    * ``protocol="same_area"``: label files ``same_area_balanced_{split}``; cities default
      to every city folder under the label folder (the four VIGOR cities in a download).
    * ``protocol="cross_area"``: label files ``pano_label_balanced``; cities default to
      NewYork + Seattle (train) and SanFrancisco + Chicago (test). Pass ``cities`` for
      a synthetic root.

    Tiles are those of each city's ``satellite_list.txt`` (in file order, cities in order),
    followed by any tile a label line names that the list lacks (``listed=False``; real
    excerpts have such tiles).
    """

    def __init__(self, root: str | Path | VigorRoot, protocol: str = "same_area", split: str = "train",
                 cities: Iterable[str] | str | None = None, labels: str = "auto"):
        self.vroot = root if isinstance(root, VigorRoot) else VigorRoot(root, labels)
        self.protocol, self.split = protocol, split
        self.cities = resolve_cities(self.vroot, protocol, split, cities)
        self.meta = {c: self.vroot.city_meta(c) for c in self.cities}
        stem = LABEL_STEMS[(protocol, split)]
        self.satellites: list[SatelliteRecord] = []
        self.panoramas: list[PanoramaRecord] = []
        sat_index: dict[tuple[str, str], int] = {}
        for city in self.cities:
            for name in read_satellite_list(self.vroot.satellite_list_path(city)):
                if (city, name) not in sat_index:
                    sat_index[(city, name)] = len(self.satellites)
                    lat, lon = parse_satellite_name(name)
                    self.satellites.append(SatelliteRecord(city, name, self.vroot.satellite_path(city, name),
                                                           lat, lon, True))
        for city in self.cities:
            lines = read_label_file(self.vroot.label_path(city, stem))
            extra = sorted({s for ln in lines for s in ln.satellites if (city, s) not in sat_index})
            for name in extra:
                sat_index[(city, name)] = len(self.satellites)
                lat, lon = parse_satellite_name(name)
                self.satellites.append(SatelliteRecord(city, name, self.vroot.satellite_path(city, name),
                                                       lat, lon, False))
            for ln in lines:
                _, lat, lon = parse_panorama_name(ln.panorama)
                idx = np.array([sat_index[(city, s)] for s in ln.satellites], dtype=np.int64)
                self.panoramas.append(PanoramaRecord(city, ln.panorama, self.vroot.panorama_path(city, ln.panorama),
                                                     lat, lon, idx, ln.offsets.copy()))
        if not self.panoramas:
            raise VigorFormatError(f"no label lines in {stem}{self.vroot.suffix}.txt of "
                                   f"{', '.join(self.cities)} under {self.vroot.split_dir}")

    def __repr__(self) -> str:
        return (f"VigorIndex({self.vroot!r}, {self.protocol}/{self.split}, cities={self.cities}, "
                f"{len(self.panoramas)} panoramas, {len(self.satellites)} tiles)")

    def pixel(self, pano: int, k: int = 0) -> tuple[float, float]:
        """Camera ``(row, col)`` of panorama ``pano`` in its ``k``-th tile, at the city's tile_px."""
        rec = self.panoramas[pano]
        row, col = label_to_pixel(rec.offsets[k, 0], rec.offsets[k, 1], self.meta[rec.city].tile_px)
        return float(row), float(col)


# ---------------------------------------------------------------------------------------
# Torch datasets
# ---------------------------------------------------------------------------------------

def read_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 ``H x W x 3`` RGB; FileNotFoundError naming it when absent."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"VIGOR image missing or unreadable: expected {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    if img.shape[0] == height and img.shape[1] == width:
        return img
    shrink = img.shape[0] > height or img.shape[1] > width
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _to_tensor(img: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def _normalise(t):
    import torch

    mean = torch.tensor(IMAGENET_MEAN, dtype=t.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=t.dtype).view(3, 1, 1)
    return (t - mean) / std


try:  # torch is a hard dependency of the package; the guard keeps `--help` import-light
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    _TorchDataset = object  # type: ignore[assignment,misc]


class _VigorDataset(_TorchDataset):  # type: ignore[misc,valid-type]
    """Shared plumbing: the index, output sizes, normalisation and the transform hook.

    ``root`` is a directory, a :class:`VigorRoot` or a ready :class:`VigorIndex` (then
    ``protocol``, ``split``, ``cities`` and ``labels`` are taken from it). ``ground_size``
    is the ground input ``(H, W)``, ``aerial_size`` the aerial input side ``L``.
    Images come out as float32 CHW tensors: in [0, 1] when ``normalize`` is False, else
    normalised with the ImageNet mean/std. ``transform(sample) -> sample`` (optional) runs
    on the sample dict after resizing and BEFORE normalisation (images still in [0, 1]);
    an augmentation that moves the tile or turns the panorama must update ``"pixel"`` and
    ``"yaw_deg"`` itself.
    """

    def __init__(self, root, protocol: str = "same_area", split: str = "train",
                 cities: Iterable[str] | str | None = None, labels: str = "auto",
                 ground_size: tuple[int, int] = (384, 768), aerial_size: int = 384,
                 normalize: bool = True, transform: Callable[[dict], dict] | None = None):
        self.index = root if isinstance(root, VigorIndex) else VigorIndex(root, protocol, split, cities, labels)
        h, w = (int(v) for v in ground_size)
        if h <= 0 or w <= 0 or int(aerial_size) <= 0:
            raise ValueError(f"ground_size (H, W) and aerial_size must be positive, got {ground_size}, {aerial_size}")
        self.ground_size = (h, w)
        self.aerial_size = int(aerial_size)
        self.normalize = bool(normalize)
        self.transform = transform

    # helpers -------------------------------------------------------------------------
    def _ground(self, pano: int):
        rec = self.index.panoramas[pano]
        return _to_tensor(_resize(read_rgb(rec.path), *self.ground_size))

    def _aerial(self, sat: int):
        rec = self.index.satellites[sat]
        return _to_tensor(_resize(read_rgb(rec.path), self.aerial_size, self.aerial_size))

    def tile_mpp(self, sat: int) -> float:
        """Ground metres per pixel of tile ``sat`` resized to ``aerial_size``."""
        meta = self.index.meta[self.index.satellites[sat].city]
        return meta.mpp * meta.tile_px / self.aerial_size

    def resized_pixel(self, pano: int, k: int = 0) -> tuple[float, float]:
        """Camera ``(row, col)`` of ``pano`` in its ``k``-th tile resized to ``aerial_size``."""
        meta = self.index.meta[self.index.panoramas[pano].city]
        row, col = self.index.pixel(pano, k)
        s = self.aerial_size / meta.tile_px
        return row * s, col * s

    def _finish(self, sample: dict) -> dict:
        if self.transform is not None:
            sample = self.transform(sample)
        if self.normalize:
            for key in ("ground", "aerial"):
                if key in sample:
                    sample[key] = _normalise(sample[key])
        return sample


class VigorPairDataset(_VigorDataset):
    """Training pairs: a panorama and its positive tile (optionally also its semi-positives).

    Item ``i`` is a dict: ``ground`` (3, H, W), ``aerial`` (3, L, L), ``pixel`` (2,)
    float32 camera ``(row, col)`` in the resized tile (continuous coordinates),
    ``yaw_deg`` the true-north ENU yaw of the panorama's forward direction (90: VIGOR
    panoramas are north-aligned), ``mpp`` ground metres per pixel of the resized tile,
    ``pano_index``, ``sat_index``, ``tile_rank`` (0 = positive, 1-3 = semi-positive).

    With ``semi_positives=True`` each semi-positive tile whose area holds the camera is an
    extra item.
    """

    def __init__(self, root, protocol: str = "same_area", split: str = "train",
                 cities: Iterable[str] | str | None = None, labels: str = "auto",
                 ground_size: tuple[int, int] = (384, 768), aerial_size: int = 384,
                 normalize: bool = True, transform: Callable[[dict], dict] | None = None,
                 semi_positives: bool = False):
        super().__init__(root, protocol, split, cities, labels, ground_size, aerial_size, normalize, transform)
        items = []
        for p, rec in enumerate(self.index.panoramas):
            items.append((p, 0))
            if semi_positives:
                tile_px = self.index.meta[rec.city].tile_px
                for k in (1, 2, 3):
                    row, col = self.index.pixel(p, k)
                    if 0.0 <= row < tile_px and 0.0 <= col < tile_px:
                        items.append((p, k))
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        import torch

        p, k = self.items[i]
        sat = int(self.index.panoramas[p].satellites[k])
        row, col = self.resized_pixel(p, k)
        sample = {
            "ground": self._ground(p),
            "aerial": self._aerial(sat),
            "pixel": torch.tensor([row, col], dtype=torch.float32),
            "yaw_deg": torch.tensor(NORTH_ALIGNED_YAW_DEG, dtype=torch.float32),
            "mpp": torch.tensor(self.tile_mpp(sat), dtype=torch.float32),
            "pano_index": p,
            "sat_index": sat,
            "tile_rank": k,
        }
        return self._finish(sample)


class VigorQueryDataset(_VigorDataset):
    """Retrieval queries: every panorama of the split with its positive and semi-positive tiles.

    Item ``i`` (panorama ``i`` of the index): ``ground``, ``pano_index``, ``positive``
    (tile index), ``semi_positives`` (3,) tile indices, ``pixel`` (2,) in the resized
    positive tile, ``mpp`` of the resized positive tile, ``yaw_deg`` (90), ``latlon``
    (2,) float64 from the file name.
    """

    def __len__(self) -> int:
        return len(self.index.panoramas)

    def __getitem__(self, i: int) -> dict:
        import torch

        rec = self.index.panoramas[i]
        row, col = self.resized_pixel(i, 0)
        sample = {
            "ground": self._ground(i),
            "pano_index": i,
            "positive": int(rec.satellites[0]),
            "semi_positives": torch.from_numpy(rec.satellites[1:].copy()),
            "pixel": torch.tensor([row, col], dtype=torch.float32),
            "mpp": torch.tensor(self.tile_mpp(int(rec.satellites[0])), dtype=torch.float32),
            "yaw_deg": torch.tensor(NORTH_ALIGNED_YAW_DEG, dtype=torch.float32),
            "latlon": torch.tensor([rec.lat, rec.lon], dtype=torch.float64),
        }
        return self._finish(sample)

    def positives(self) -> np.ndarray:
        """``(N, 4)`` tile indices of every query, positive first (no image reading)."""
        return np.stack([r.satellites for r in self.index.panoramas])


class VigorReferenceDataset(_VigorDataset):
    """Retrieval references: every tile of the split's cities.

    Item ``i`` (tile ``i`` of the index): ``aerial``, ``sat_index``, ``mpp`` of the resized
    tile, ``latlon`` (2,) float64 of its centre.
    """

    def __len__(self) -> int:
        return len(self.index.satellites)

    def __getitem__(self, i: int) -> dict:
        import torch

        rec = self.index.satellites[i]
        sample = {
            "aerial": self._aerial(i),
            "sat_index": i,
            "mpp": torch.tensor(self.tile_mpp(i), dtype=torch.float32),
            "latlon": torch.tensor([rec.lat, rec.lon], dtype=torch.float64),
        }
        return self._finish(sample)


def city_mpp(root: str | Path, city: str, labels: str = "auto") -> float:
    """Convenience: ground metres per pixel of ``city``'s tiles at their stored size."""
    return VigorRoot(root, labels).city_meta(city).mpp


def tile_lat_lon_steps(lat: float, step_m: float) -> tuple[float, float]:
    """Degrees of latitude and longitude that ``step_m`` metres span at ``lat`` (WGS 84)."""
    from unifygeo_ros.geo import latlon_from_enu_offset

    lat2, lon2 = latlon_from_enu_offset(lat, 0.0, step_m, step_m)
    return float(lat2 - lat), float(lon2)

