"""Frames that are not evidence of where the camera is, for the abstention calibration and
``unifygeo bench abstention``.

Each kind is a panorama-shaped (2:1) uint8 RGB frame that passes the input checks (it is
not uniform) but shows no place of the database's area:

* noise of several spectra: ``white_noise`` (independent pixels), ``pink_noise`` (1/f
  amplitude), ``lowfreq_noise`` (a few cycles per image: soft blobs);
* ``gradient`` (linear, random direction and colours), ``stripes`` (square or sine
  stripes, random orientation and period), ``black_stripe`` (a black frame with one bright
  horizontal or vertical band: a lens cap not quite closed, a half-read frame);
* street panoramas made unusable: ``blur`` (a Gaussian blur of 4-8 % of the width: a
  defocused or fogged lens), ``upside_down`` (turned by 180 degrees: a camera mounted the
  wrong way up), ``flipped`` (rows reversed), ``mirrored`` (columns reversed: a mirror-image
  world that exists nowhere);
* ``other_city``: a genuine panorama of another city than the database's.

:func:`garbage_frame` makes one frame of a kind; the street panoramas come from a callable
so that this module does not render anything itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: every kind, in the order :func:`garbage_kinds` cycles through them
KINDS = ("white_noise", "pink_noise", "lowfreq_noise", "gradient", "stripes", "black_stripe", "blur",
         "upside_down", "flipped", "mirrored", "other_city")
#: the kinds made from a street panorama of the database's own city
FROM_PANORAMA = ("blur", "upside_down", "flipped", "mirrored")


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(img, dtype=np.float64) + 0.5, 0, 255).astype(np.uint8)


def _stretch(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale a field to a random grey-level mean and contrast (0-255)."""
    x = (x - x.mean()) / max(float(x.std()), 1e-9)
    return rng.uniform(60, 190) + rng.uniform(25, 70) * x


def _spectral_noise(rng: np.random.Generator, h: int, w: int, exponent: float, cutoff: float | None) -> np.ndarray:
    """(h, w, 3) noise with amplitude ~ 1 / f^exponent, frequencies above ``cutoff`` cycles per
    image removed (None: none), channels partly correlated."""
    fy = np.fft.fftfreq(h)[:, None] * h
    fx = np.fft.rfftfreq(w)[None, :] * w
    f = np.hypot(fx, fy * 2.0)
    amp = 1.0 / np.maximum(f, 1.0) ** exponent
    if cutoff is not None:
        amp = amp * (f <= cutoff)
    amp[0, 0] = 0.0
    base = np.fft.irfft2(amp * np.exp(2j * np.pi * rng.random(amp.shape)), s=(h, w))
    out = np.empty((h, w, 3))
    for c in range(3):
        own = np.fft.irfft2(amp * np.exp(2j * np.pi * rng.random(amp.shape)), s=(h, w))
        mix = rng.uniform(0.3, 1.0)
        out[..., c] = _stretch(mix * base / base.std() + (1 - mix) * own / own.std(), rng)
    return out


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-9)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    while np.abs(a - b).mean() < 40:
        b = rng.uniform(0, 255, 3)
    return a[None, None] + (b - a)[None, None] * t[..., None]


def _stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    angle = rng.choice([0.0, np.pi / 2, rng.uniform(0, np.pi)])
    period = rng.uniform(4, 64)
    phase = (np.cos(angle) * xx + np.sin(angle) * yy) / period
    wave = np.sin(2 * np.pi * phase)
    if rng.random() < 0.5:
        wave = np.sign(wave)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return (a + b)[None, None] / 2 + (b - a)[None, None] / 2 * wave[..., None]


def _black_stripe(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = np.full((h, w, 3), rng.uniform(0, 12))
    level = rng.uniform(120, 255, 3)
    if rng.random() < 0.5:
        width = int(rng.integers(max(2, h // 40), max(3, h // 4)))
        r0 = int(rng.integers(0, h - width))
        img[r0:r0 + width] = level
    else:
        width = int(rng.integers(max(2, w // 80), max(3, w // 6)))
        c0 = int(rng.integers(0, w - width))
        img[:, c0:c0 + width] = level
    return img


def garbage_frame(kind: str, rng: np.random.Generator, size: tuple[int, int],
                  panorama: Callable[[], np.ndarray] | None = None,
                  other_panorama: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """One frame of ``kind`` (:data:`KINDS`), ``size`` = (width, height). ``panorama``: returns
    a street panorama of the database's city at a random place (the kinds of
    :data:`FROM_PANORAMA`); ``other_panorama``: one of another city (``other_city``)."""
    import cv2

    w, h = int(size[0]), int(size[1])
    if kind == "white_noise":
        grey = rng.random() < 0.3
        x = rng.integers(0, 256, size=(h, w, 1 if grey else 3)).astype(np.float64)
        return _u8(np.broadcast_to(x, (h, w, 3)))
    if kind == "pink_noise":
        return _u8(_spectral_noise(rng, h, w, 1.0, None))
    if kind == "lowfreq_noise":
        return _u8(_spectral_noise(rng, h, w, 0.5, rng.uniform(2.0, 8.0)))
    if kind == "gradient":
        return _u8(_gradient(rng, h, w))
    if kind == "stripes":
        return _u8(_stripes(rng, h, w))
    if kind == "black_stripe":
        return _u8(_black_stripe(rng, h, w))
    if kind in FROM_PANORAMA:
        if panorama is None:
            raise ValueError(f"garbage kind {kind}: expected a source of street panoramas")
        pano = cv2.resize(np.asarray(panorama()), (w, h), interpolation=cv2.INTER_AREA)
        if kind == "blur":
            sigma = rng.uniform(0.04, 0.08) * w
            return cv2.GaussianBlur(pano, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
        if kind == "upside_down":
            return np.ascontiguousarray(pano[::-1, ::-1])
        if kind == "flipped":
            return np.ascontiguousarray(pano[::-1])
        return np.ascontiguousarray(pano[:, ::-1])
    if kind == "other_city":
        if other_panorama is None:
            raise ValueError("garbage kind other_city: expected a source of another city's panoramas")
        return cv2.resize(np.asarray(other_panorama()), (w, h), interpolation=cv2.INTER_AREA)
    raise ValueError(f"garbage kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def garbage_kinds(n: int, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """``n`` kinds, cycling through ``kinds`` (every kind about equally often)."""
    return [kinds[i % len(kinds)] for i in range(n)]
