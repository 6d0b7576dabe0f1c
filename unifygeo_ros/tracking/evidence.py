"""What one camera frame says about the map pose, as a likelihood the filter evaluates.

The localizer's evidence for a frame is a mixture over the decoded candidate tiles: each
:class:`EvidenceComponent` is a tile's probability distribution **D** over its pixels
(geo-referenced by the tile's centre and metres per pixel, grid north up), a weight (the
candidate's share, from the re-ranking scores), and the yaw that the frame implies on that
tile (an ENU yaw with its standard deviation; ``None`` when the heading was not estimated).
The filter adds a uniform outlier component itself (:mod:`.particles`), so a frame that is
not evidence cannot drag the estimate.

:func:`evidence_from_result` builds it from a :class:`~unifygeo_ros.types.LocalizationResult`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class EvidenceComponent:
    """One candidate tile: ``distribution`` (L, L) sums to 1 over the tile's pixels."""

    weight: float
    distribution: np.ndarray
    center_xy: tuple[float, float]      # the tile's centre in the map frame (m)
    mpp: float                          # metres per pixel of the tile
    yaw: float | None = None            # ENU yaw (rad) the frame implies on this tile
    yaw_sigma: float | None = None      # its standard deviation (rad)

    def __post_init__(self):
        d = np.asarray(self.distribution, dtype=np.float64)
        if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 2:
            raise ValueError(f"evidence distribution: expected a square (L, L) array, got shape {d.shape}")
        if not np.all(np.isfinite(d)) or d.min() < 0:
            raise ValueError("evidence distribution: expected finite, non-negative values")
        total = d.sum()
        if not total > 0:
            raise ValueError("evidence distribution: expected a positive total")
        self.distribution = d / total
        if not (self.mpp > 0 and math.isfinite(self.mpp)):
            raise ValueError(f"evidence mpp: expected a positive number, got {self.mpp!r}")
        if not self.weight >= 0:
            raise ValueError(f"evidence weight: expected >= 0, got {self.weight!r}")

    @property
    def size(self) -> int:
        return int(self.distribution.shape[0])

    def density(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """D as a density per square metre at map points (x, y); 0 outside the tile."""
        half = self.size / 2.0
        col = np.floor(half + (np.asarray(x) - self.center_xy[0]) / self.mpp).astype(np.int64)
        row = np.floor(half - (np.asarray(y) - self.center_xy[1]) / self.mpp).astype(np.int64)
        inside = (row >= 0) & (row < self.size) & (col >= 0) & (col < self.size)
        out = np.zeros(np.shape(x), dtype=np.float64)
        out[inside] = self.distribution[row[inside], col[inside]]
        return out / (self.mpp * self.mpp)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` map points drawn from D (uniform within the drawn pixel)."""
        flat = self.distribution.ravel()
        idx = rng.choice(flat.size, size=n, p=flat)
        row, col = np.divmod(idx, self.size)
        half = self.size / 2.0
        x = self.center_xy[0] + (col + rng.random(n) - half) * self.mpp
        y = self.center_xy[1] + (half - row - rng.random(n)) * self.mpp
        return x, y


@dataclass
class GnssEvidence:
    """A GNSS fix in the map frame: position and its 2 x 2 covariance (m^2)."""

    x: float
    y: float
    covariance: np.ndarray

    def __post_init__(self):
        c = np.asarray(self.covariance, dtype=np.float64).reshape(2, 2)
        if not np.all(np.isfinite(c)) or np.linalg.eigvalsh(0.5 * (c + c.T)).min() <= 0:
            raise ValueError("GNSS evidence: expected a positive-definite 2 x 2 covariance")
        self.covariance = 0.5 * (c + c.T)


@dataclass
class Evidence:
    """A frame's evidence: the candidate components (weights are normalised) and its stamp."""

    components: list[EvidenceComponent]
    stamp_ns: int = 0
    note: str = ""
    extra: dict = field(default_factory=dict)
    strength: float = 1.0               # the components' total weight; the rest is uniform
    temper: float = 1.0                 # the likelihood is raised to this power (0: it weighs nothing)

    def __post_init__(self):
        total = sum(c.weight for c in self.components)
        if self.components and total > 0:
            for c in self.components:
                c.weight = c.weight / total

    @property
    def empty(self) -> bool:
        return not self.components

    def density(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The components' position density (per m^2) at map points (times ``strength``)."""
        out = np.zeros(np.shape(x), dtype=np.float64)
        for c in self.components:
            out += c.weight * c.density(x, y)
        return self.strength * out

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` poses drawn from the mixture: positions from D, yaws from each component's
        yaw (uniform where it has none)."""
        if self.empty:
            raise ValueError("cannot sample from empty evidence")
        w = np.array([c.weight for c in self.components])
        counts = rng.multinomial(n, w / w.sum())
        xs, ys, yaws = [], [], []
        for c, k in zip(self.components, counts):
            if k == 0:
                continue
            x, y = c.sample(int(k), rng)
            if c.yaw is None:
                yaw = rng.uniform(-math.pi, math.pi, size=int(k))
            else:
                yaw = c.yaw + rng.normal(0.0, max(c.yaw_sigma or 0.0, 1e-3), size=int(k))
            xs.append(x)
            ys.append(y)
            yaws.append(yaw)
        return np.concatenate(xs), np.concatenate(ys), wrap_pi(np.concatenate(yaws))


def wrap_pi(a):
    """Angles (rad) wrapped to [-pi, pi)."""
    return (np.asarray(a, dtype=np.float64) + math.pi) % (2.0 * math.pi) - math.pi


def evidence_from_result(result, mpp: float, stamp_ns: int = 0, min_weight: float = 0.0,
                         weight: float = 1.0, power: float = 1.0) -> Evidence:
    """The evidence of a :class:`~unifygeo_ros.types.LocalizationResult` returned with
    ``return_distribution``: the chosen tile's D and yaw. Every candidate that carries its own
    D (``result.diagnostics["candidate_distributions"]``: one (L, L) array per candidate, in
    the candidates' order) becomes a component too, weighted by the share the diagnostics
    give (``candidate_weights``). ``weight`` (e.g. the frame's confidence, the chance that
    its place is right) scales the components; the rest of the mass is a uniform component,
    so a doubtful frame is weak evidence. ``power``: D is raised to it (and normalised), which
    narrows it where D is broader than the localizer's actual errors (calibrated on drives)."""

    def shaped(d):
        d = np.asarray(d, dtype=np.float64)
        return d if power == 1.0 else np.power(d / max(float(d.max()), 1e-300), power)

    comps: list[EvidenceComponent] = []
    yaw = None if result.yaw_deg is None else math.radians(float(result.yaw_deg))
    cov = np.asarray(result.covariance, dtype=np.float64).reshape(3, 3)
    yaw_sigma = None if yaw is None else math.sqrt(max(float(cov[2, 2]), 1e-8))
    dists = result.diagnostics.get("candidate_distributions") if result.diagnostics else None
    weights = result.diagnostics.get("candidate_weights") if result.diagnostics else None
    if dists is not None and len(dists) == len(result.candidates):
        for i, (cand, d) in enumerate(zip(result.candidates, dists)):
            w = float(weights[i]) if weights is not None else (1.0 if i == 0 else 0.0)
            if w <= min_weight:
                continue
            comps.append(EvidenceComponent(w, shaped(d), tuple(cand.center_xy), mpp, yaw, yaw_sigma))
    elif result.distribution is not None:
        cand = result.candidates[0]
        comps.append(EvidenceComponent(1.0, shaped(result.distribution), tuple(cand.center_xy), mpp, yaw, yaw_sigma))
    return Evidence(comps, stamp_ns=stamp_ns, extra={"confidence": float(result.confidence)},
                    strength=float(np.clip(weight, 0.0, 1.0)))
