"""Training augmentations of a ground/aerial pair (paper Sec. IV-C, plus heading and FoV).

Every sample carries the camera pixel in the tile (``pixel``: continuous row, col) and the
ENU yaw of the panorama's forward direction in the *tile's* frame (``yaw_deg``; the tile's
up is that frame's north, so a panorama that faces the tile's up has yaw 90). Geometric
augmentations keep the pair consistent and update both:

* **flip** (synchronised): the tile is mirrored left-right and the panorama too; bearings
  change sign, so yaw -> 180 - yaw, col -> L - col.
* **rotation by k * 90 deg** (synchronised): the tile turns counter-clockwise, so its up
  now shows what lay at bearing k * 90; the panorama is rolled (turned clockwise by
  k * 90) to match, so the yaw in the tile's frame is unchanged; (row, col) -> (L - col, row)
  per quarter turn.
* **heading** (unknown-heading training): the panorama is rolled by a random whole number
  of pixels; yaw changes by the matching angle.
* **field of view** (limited-FoV training): only a random 70-180 deg wedge around the
  camera's forward direction is kept; ``column_mask`` says which columns.
* **pinhole view** and **camera rig** (the limited-FoV stage): the panorama becomes what the
  localizer makes of a pinhole image (:func:`unifygeo_ros.inference.fov.place_camera`), or of a
  rig of them (:func:`unifygeo_ros.inference.rig.compose_rig`): only the pixels inside the
  cameras' frusta keep their colour, the others are black, and ``column_mask`` marks the columns
  that hold any of them. The camera has a random horizontal field of view (60-120 deg), aspect
  ratio (4:3, 16:10, 16:9) and a small pitch; a rig is front + back, front + sides, or four
  cameras a quarter turn apart, all with the same field of view.

Photometric augmentations act on each image alone: colour jitter, grid dropout and
coarse dropout. Images are float CHW tensors in [0, 1]; normalisation comes after.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..conventions import wrap_deg_180


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5                 # probability of a synchronised horizontal flip
    rotate: bool = True               # synchronised rotation by a random multiple of 90 deg
    unknown_heading: float = 0.0      # probability of a random panorama heading
    fov: float = 0.0                  # probability of a limited field of view
    fov_range_deg: tuple[float, float] = (70.0, 180.0)
    pinhole: float = 0.0              # probability of a single pinhole view
    rig: float = 0.0                  # probability of a rig of pinhole views (after pinhole's draw)
    pinhole_fov_range_deg: tuple[float, float] = (60.0, 120.0)
    pinhole_aspects: tuple[float, ...] = (4 / 3, 16 / 10, 16 / 9)   # width / height
    pinhole_pitch_deg: float = 5.0    # the camera's pitch is uniform in +- this
    rigs: tuple[tuple[float, ...], ...] = ((0.0, 180.0), (0.0, 90.0, -90.0), (0.0, 90.0, -90.0, 180.0))
    color_jitter: float = 0.2         # brightness/contrast/saturation amplitude (hue: a quarter)
    grid_dropout: float = 0.2         # probability, per image
    coarse_dropout: float = 0.3       # probability, per image

    def as_dict(self) -> dict:
        return asdict(self)


def roll_panorama(img: torch.Tensor, pixels: int) -> torch.Tensor:
    """Turn the camera clockwise by ``pixels`` columns (content moves left)."""
    return torch.roll(img, shifts=-int(pixels), dims=-1)


def fov_column_mask(width: int, fov_deg: float) -> torch.Tensor:
    """(width,) panorama column mask of a ``fov_deg`` wedge centred on the forward direction."""
    rel = (torch.arange(width) + 0.5) / width * 360.0 - 180.0   # bearing from forward
    return (rel.abs() <= fov_deg / 2).float()


@functools.lru_cache(maxsize=4096)
def camera_view_mask(pano_hw: tuple[int, int], hfov_deg: float, aspect: float, pitch_deg: float = 0.0,
                     yaws_deg: tuple[float, ...] = (0.0,)) -> np.ndarray:
    """``(H, W)`` bool: the panorama pixels seen by idealised pinhole cameras of horizontal field
    of view ``hfov_deg`` and ``aspect`` (width / height), pitched up by ``pitch_deg``, at
    ``yaws_deg`` (counter-clockwise) from the panorama's forward direction (its centre column):
    the coverage :func:`unifygeo_ros.inference.fov.place_camera` gives a pinhole image."""
    from ..inference.camera import level_to_camera, panorama_directions, project
    from ..inference.rig import axis_bearing_deg
    from ..types import Intrinsics

    width = 640
    height = max(2, int(round(width / aspect)))
    intr = Intrinsics.ideal(width, height, hfov_deg)
    rot = level_to_camera(pitch_deg, 0.0)
    seen_any = np.zeros(pano_hw, dtype=bool)
    for yaw in yaws_deg:
        dirs, _ = panorama_directions(pano_hw, axis_bearing_deg(float(yaw)))
        u, v, seen = project(np.einsum("ij,jhw->ihw", rot, dirs), intr)
        seen_any |= seen & (u >= -0.5) & (u <= width - 0.5) & (v >= -0.5) & (v <= height - 0.5)
    seen_any.setflags(write=False)
    return seen_any


def draw_camera_view(cfg: AugmentConfig, rng: np.random.Generator) -> dict | None:
    """The cameras of a pinhole view or rig drawn for one sample (``None``: the whole
    panorama, or the column wedge of ``fov``): ``hfov_deg``, ``aspect``, ``pitch_deg``,
    ``yaws_deg``."""
    if cfg.pinhole + cfg.rig <= 0:      # no draw: the random stream of other recipes is unchanged
        return None
    u = rng.random()
    if u >= cfg.pinhole + cfg.rig:
        return None
    yaws = (0.0,) if u < cfg.pinhole else cfg.rigs[int(rng.integers(0, len(cfg.rigs)))]
    return {"hfov_deg": float(round(rng.uniform(*cfg.pinhole_fov_range_deg))),
            "aspect": float(cfg.pinhole_aspects[int(rng.integers(0, len(cfg.pinhole_aspects)))]),
            "pitch_deg": float(round(rng.uniform(-cfg.pinhole_pitch_deg, cfg.pinhole_pitch_deg))),
            "yaws_deg": tuple(yaws)}


def _rgb_to_gray(img: torch.Tensor) -> torch.Tensor:
    return (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]


def color_jitter(img: torch.Tensor, amount: float, rng: np.random.Generator) -> torch.Tensor:
    if amount <= 0:
        return img
    b, c, s = (1.0 + rng.uniform(-amount, amount) for _ in range(3))
    img = img * b
    mean = _rgb_to_gray(img).mean()
    img = (img - mean) * c + mean
    gray = _rgb_to_gray(img)
    img = (img - gray) * s + gray
    hue = rng.uniform(-amount / 4, amount / 4) * 2 * math.pi       # rotate chroma in YIQ
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    rot = torch.tensor([[1, 0, 0], [0, math.cos(hue), -math.sin(hue)], [0, math.sin(hue), math.cos(hue)]])
    m = torch.linalg.inv(yiq) @ rot @ yiq
    img = torch.einsum("ij,jhw->ihw", m.to(img.dtype), img)
    return img.clamp(0.0, 1.0)


def grid_dropout(img: torch.Tensor, rng: np.random.Generator, ratio: float = 0.4) -> torch.Tensor:
    """Blank one square per cell of a regular grid (random cell size and phase)."""
    _, h, w = img.shape
    cell = int(rng.integers(max(4, min(h, w) // 12), max(5, min(h, w) // 4)))
    hole = max(1, int(cell * ratio))
    oy, ox = int(rng.integers(0, cell)), int(rng.integers(0, cell))
    out = img.clone()
    for y in range(oy - cell, h, cell):
        for x in range(ox - cell, w, cell):
            out[:, max(y, 0):max(y + hole, 0), max(x, 0):max(x + hole, 0)] = 0.5
    return out


def coarse_dropout(img: torch.Tensor, rng: np.random.Generator, max_holes: int = 12,
                   max_frac: float = 0.1) -> torch.Tensor:
    """Blank a few random rectangles, each at most ``max_frac`` of the side."""
    _, h, w = img.shape
    out = img.clone()
    for _ in range(int(rng.integers(1, max_holes + 1))):
        hh = int(rng.integers(1, max(2, int(h * max_frac)) + 1))
        ww = int(rng.integers(1, max(2, int(w * max_frac)) + 1))
        y, x = int(rng.integers(0, h - hh + 1)), int(rng.integers(0, w - ww + 1))
        out[:, y:y + hh, x:x + ww] = 0.5
    return out


class PairAugment:
    """Callable on a sample dict (images in [0, 1]); returns the augmented sample with
    ``pixel``, ``yaw_deg`` and ``column_mask`` consistent with the images."""

    def __init__(self, cfg: AugmentConfig = AugmentConfig()):
        self.cfg = cfg

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        """``rng`` decides everything random: seed it per (epoch, sample) for reproducibility."""
        cfg = self.cfg
        ground, aerial = sample["ground"], sample["aerial"]
        side = aerial.shape[-1]
        width = ground.shape[-1]
        row, col = (float(v) for v in sample["pixel"])
        yaw = float(sample["yaw_deg"])
        if rng.random() < cfg.flip:
            aerial = torch.flip(aerial, dims=[-1])
            ground = torch.flip(ground, dims=[-1])
            col = side - col
            yaw = 180.0 - yaw
        if cfg.rotate:
            k = int(rng.integers(0, 4))
            if k:
                aerial = torch.rot90(aerial, k, dims=(-2, -1))       # counter-clockwise
                ground = roll_panorama(ground, k * width // 4)
                for _ in range(k):
                    row, col = side - col, row
        if rng.random() < cfg.unknown_heading:
            pixels = int(rng.integers(0, width))
            ground = roll_panorama(ground, pixels)
            yaw = yaw - pixels * 360.0 / width                          # clockwise turn lowers ENU yaw
        mask = torch.ones(width)
        view = draw_camera_view(cfg, rng)
        if view is None and rng.random() < cfg.fov:
            mask = fov_column_mask(width, rng.uniform(*cfg.fov_range_deg))
        ground = color_jitter(ground, cfg.color_jitter, rng)
        aerial = color_jitter(aerial, cfg.color_jitter, rng)
        if rng.random() < cfg.grid_dropout:
            ground = grid_dropout(ground, rng)
        if rng.random() < cfg.grid_dropout:
            aerial = grid_dropout(aerial, rng)
        if rng.random() < cfg.coarse_dropout:
            ground = coarse_dropout(ground, rng)
        if rng.random() < cfg.coarse_dropout:
            aerial = coarse_dropout(aerial, rng)
        if view is not None:     # after the photometric changes: unseen pixels are exactly black
            seen = torch.from_numpy(camera_view_mask(tuple(ground.shape[-2:]), **view).copy())
            ground = ground * seen.to(ground.dtype)
            mask = seen.any(dim=0).float()
        out = dict(sample)
        out.update(ground=ground.contiguous(), aerial=aerial.contiguous(),
                   pixel=torch.tensor([row, col], dtype=torch.float32),
                   yaw_deg=torch.tensor(wrap_deg_180(yaw), dtype=torch.float32), column_mask=mask)
        return out
