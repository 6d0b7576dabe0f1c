"""Colour palettes of the synthetic city (all colours RGB uint8 triples).

A palette fixes the *ranges* the generator draws from; every building, tree and car
still gets its own jittered colour, so two places of one city rarely look alike.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    facades: tuple[RGB, ...]
    roofs: dict[str, tuple[RGB, ...]]  # roof kind -> colours
    roof_kind_weights: dict[str, float]
    glass: tuple[RGB, ...]
    trees: tuple[RGB, ...]
    conifer_fraction: float
    grass: tuple[RGB, ...]
    paving: tuple[RGB, ...]
    asphalt: RGB
    sidewalk: RGB
    countryside: RGB
    water: RGB
    gravel: RGB
    trunk: RGB
    centre_line: RGB
    lane_line: RGB
    cars: tuple[RGB, ...]


_CARS = ((235, 235, 235), (30, 30, 32), (120, 122, 128), (175, 178, 182), (150, 25, 28), (25, 50, 110),
         (60, 85, 60), (200, 170, 40), (90, 60, 40), (210, 210, 200), (45, 45, 55), (140, 150, 160))

PALETTES: dict[str, Palette] = {
    "temperate": Palette(
        facades=((222, 210, 185), (200, 185, 160), (178, 92, 70), (150, 78, 60), (232, 228, 215), (205, 200, 190),
                 (190, 170, 120), (160, 150, 140), (225, 200, 150), (140, 120, 100), (200, 160, 130)),
        roofs={"gravel": ((150, 146, 138), (128, 124, 118), (166, 160, 150)),
               "membrane": ((205, 207, 205), (188, 190, 192)),
               "tar": ((70, 70, 74), (88, 86, 84)),
               "tiles": ((150, 70, 50), (120, 60, 48), (90, 84, 82), (110, 92, 78)),
               "metal": ((110, 118, 126), (84, 96, 90)),
               "green": ((96, 122, 70),)},
        roof_kind_weights={"gravel": 0.3, "membrane": 0.15, "tar": 0.2, "tiles": 0.25, "metal": 0.07, "green": 0.03},
        glass=((50, 62, 78), (40, 48, 58), (70, 88, 102), (58, 70, 72)),
        trees=((58, 92, 44), (70, 104, 50), (48, 80, 40), (84, 110, 56), (62, 86, 38)),
        conifer_fraction=0.15,
        grass=((96, 132, 64), (108, 140, 70), (88, 120, 60)),
        paving=((170, 166, 158), (150, 146, 140), (184, 176, 164)),
        asphalt=(74, 74, 76), sidewalk=(168, 164, 156), countryside=(120, 138, 80), water=(60, 92, 110),
        gravel=(176, 164, 140), trunk=(74, 60, 48), centre_line=(232, 232, 226), lane_line=(232, 232, 226),
        cars=_CARS),
    "mediterranean": Palette(
        facades=((240, 235, 222), (232, 206, 160), (214, 170, 110), (226, 190, 150), (200, 120, 80),
                 (245, 240, 230), (210, 196, 170), (190, 150, 100)),
        roofs={"tiles": ((178, 86, 54), (160, 76, 50), (190, 110, 70), (140, 70, 52)),
               "membrane": ((226, 224, 216),), "gravel": ((190, 180, 160),), "tar": ((96, 92, 88),)},
        roof_kind_weights={"tiles": 0.6, "membrane": 0.2, "gravel": 0.15, "tar": 0.05},
        glass=((44, 56, 66), (62, 76, 84)),
        trees=((78, 96, 50), (92, 108, 60), (66, 86, 46), (104, 112, 64)),
        conifer_fraction=0.25,
        grass=((140, 146, 84), (150, 150, 92), (126, 136, 76)),
        paving=((200, 188, 166), (186, 176, 160)),
        asphalt=(84, 82, 80), sidewalk=(196, 186, 168), countryside=(168, 156, 104), water=(58, 104, 124),
        gravel=(200, 184, 150), trunk=(96, 80, 62), centre_line=(236, 236, 230), lane_line=(236, 236, 230),
        cars=_CARS),
    "metropolis": Palette(
        facades=((180, 182, 186), (150, 154, 160), (200, 196, 188), (120, 126, 134), (210, 205, 195),
                 (168, 110, 86), (96, 104, 114), (188, 176, 156)),
        roofs={"gravel": ((140, 138, 134), (160, 158, 152)), "membrane": ((214, 216, 216), (196, 198, 200)),
               "tar": ((62, 62, 66), (80, 80, 82)), "metal": ((120, 128, 136),), "green": ((90, 118, 66),)},
        roof_kind_weights={"gravel": 0.35, "membrane": 0.3, "tar": 0.2, "metal": 0.1, "green": 0.05},
        glass=((44, 70, 96), (60, 84, 104), (36, 48, 60), (84, 108, 120), (52, 90, 94)),
        trees=((56, 90, 44), (66, 100, 50), (50, 82, 42)),
        conifer_fraction=0.05,
        grass=((92, 128, 62), (100, 134, 66)),
        paving=((176, 172, 166), (160, 158, 154), (190, 186, 178)),
        asphalt=(66, 66, 70), sidewalk=(176, 172, 166), countryside=(116, 134, 80), water=(54, 84, 104),
        gravel=(170, 160, 140), trunk=(70, 58, 46), centre_line=(226, 186, 60), lane_line=(236, 236, 232),
        cars=_CARS),
    "nordic": Palette(
        facades=((176, 64, 52), (214, 180, 90), (232, 230, 222), (92, 110, 124), (190, 120, 70),
                 (140, 150, 120), (226, 210, 180), (120, 60, 50)),
        roofs={"tiles": ((60, 60, 64), (96, 54, 46), (70, 76, 80)), "metal": ((54, 58, 62), (110, 40, 36)),
               "tar": ((58, 58, 60),), "gravel": ((130, 128, 124),)},
        roof_kind_weights={"tiles": 0.45, "metal": 0.3, "tar": 0.15, "gravel": 0.1},
        glass=((40, 48, 56), (56, 64, 72)),
        trees=((44, 76, 44), (58, 88, 46), (36, 64, 40), (70, 96, 50)),
        conifer_fraction=0.5,
        grass=((84, 122, 62), (92, 130, 66)),
        paving=((150, 148, 144), (130, 130, 128)),
        asphalt=(70, 72, 74), sidewalk=(150, 150, 148), countryside=(96, 124, 70), water=(48, 76, 96),
        gravel=(150, 144, 130), trunk=(66, 56, 46), centre_line=(232, 232, 228), lane_line=(232, 232, 228),
        cars=_CARS),
}


def jitter_colour(rng: np.random.Generator, colour: RGB, amount: float = 10.0) -> RGB:
    """The colour with a small per-object brightness and tint change."""
    c = np.asarray(colour, dtype=np.float64)
    c = c * rng.uniform(0.9, 1.1) + rng.normal(0.0, amount / 2.0, 3)
    return tuple(int(v) for v in np.clip(np.rint(c), 0, 255))


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


RANDOM_PREFIX = "random:"


def _hsv(rng: np.random.Generator, hue, sat, val) -> RGB:
    """One colour drawn uniformly in the given HSV ranges (hue in turns, wrapping)."""
    h = rng.uniform(*hue) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val))
    return (int(round(255 * r)), int(round(255 * g)), int(round(255 * b)))


@lru_cache(maxsize=64)
def random_palette(seed: int) -> Palette:
    """A palette drawn at random (domain randomisation), the same for the same ``seed``.

    The ranges are plausible for each material (greens for trees, greys for asphalt, any
    hue for facades and pitched roofs) but are drawn independently of the named palettes,
    so a city with a random palette shares no palette with the presets.
    """
    rng = np.random.default_rng([0x5A1E77E, int(seed)])

    def many(n, hue, sat, val):
        return tuple(_hsv(rng, hue, sat, val) for _ in range(n))

    def grey(lo, hi):                       # HSV ranges of a near-neutral grey of value lo..hi
        return (0.0, 1.0), (0.0, 0.08), (lo, hi)

    kinds = [k for k in ("gravel", "membrane", "tar", "tiles", "metal", "green")
             if k == "tiles" or rng.random() < 0.7]
    roofs = {"gravel": many(2, *grey(0.45, 0.7)), "membrane": many(2, *grey(0.72, 0.9)),
             "tar": many(2, *grey(0.22, 0.38)),
             "tiles": many(int(rng.integers(2, 5)), (0.0, 1.0), (0.15, 0.65), (0.22, 0.75)),
             "metal": many(2, (0.0, 1.0), (0.05, 0.4), (0.25, 0.6)),
             "green": many(1, (0.2, 0.35), (0.3, 0.5), (0.35, 0.55))}
    weights = rng.dirichlet(np.ones(len(kinds)))
    return Palette(
        facades=many(int(rng.integers(6, 11)), (0.0, 1.0), (0.04, 0.65), (0.3, 0.95)),
        roofs={k: roofs[k] for k in kinds},
        roof_kind_weights={k: float(w) for k, w in zip(kinds, weights)},
        glass=many(3, (0.5, 0.7), (0.1, 0.4), (0.15, 0.45)),
        trees=many(4, (0.2, 0.4), (0.3, 0.6), (0.22, 0.45)),
        conifer_fraction=float(rng.uniform(0.0, 0.6)),
        grass=many(2, (0.18, 0.33), (0.3, 0.55), (0.4, 0.6)),
        paving=many(2, (0.0, 1.0), (0.0, 0.15), (0.5, 0.8)),
        asphalt=_hsv(rng, *grey(0.24, 0.36)), sidewalk=_hsv(rng, (0.0, 1.0), (0.0, 0.12), (0.52, 0.8)),
        countryside=_hsv(rng, (0.12, 0.3), (0.3, 0.5), (0.38, 0.58)),
        water=_hsv(rng, (0.5, 0.6), (0.3, 0.6), (0.3, 0.48)),
        gravel=_hsv(rng, (0.06, 0.16), (0.1, 0.3), (0.5, 0.78)), trunk=_hsv(rng, (0.05, 0.1), (0.3, 0.5), (0.22, 0.38)),
        centre_line=(232, 232, 226) if rng.random() < 0.6 else (226, 186, 60), lane_line=(232, 232, 228),
        cars=_CARS)


def palette_for(name: str) -> Palette:
    """The palette called ``name``: one of :data:`PALETTES`, or ``random:SEED`` (:func:`random_palette`)."""
    if name in PALETTES:
        return PALETTES[name]
    if name.startswith(RANDOM_PREFIX):
        seed = name[len(RANDOM_PREFIX):]
        if seed.isdigit():
            return random_palette(int(seed))
    raise ValueError(f"unknown palette {name!r}; expected one of {', '.join(sorted(PALETTES))} "
                     f"or {RANDOM_PREFIX}SEED (a non-negative integer)")
