"""The localizer's public types: what the ROS node and the replay tool exchange with it.

Frames and units (REP-103):

* ``x``, ``y``: metres in the *database's map frame* (a projected CRS plus a local origin,
  see ``Localizer.frame``); x = grid east, y = grid north.
* Yaw: ENU in the map frame, degrees, 0 = grid east, counter-clockwise positive. A compass
  bearing is converted explicitly with :mod:`unifygeo_ros.conventions`.
* ``covariance``: 3 x 3 over ``(x [m], y [m], yaw [rad])``; the yaw row and column mean
  something only when ``yaw_deg`` is not ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CAMERA_MODELS = ("panorama", "pinhole")


@dataclass(frozen=True)
class Camera:
    """How the input image relates to the panorama frame.

    ``panorama``: an equirectangular 360 x 180 image (width = 2 x height), forward direction
    at the centre column. ``pinhole``: square pixels, principal point at the centre, no roll,
    horizontal field of view ``hfov_deg``, optical axis pitched up by ``pitch_deg``; its
    forward direction is the optical axis.
    """

    model: str = "panorama"
    hfov_deg: float | None = None
    pitch_deg: float = 0.0

    def __post_init__(self):
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"camera model: expected one of {CAMERA_MODELS}, got {self.model!r}")
        if self.model == "pinhole":
            if self.hfov_deg is None or not 1.0 <= float(self.hfov_deg) < 180.0:
                raise ValueError(f"pinhole camera: expected a horizontal field of view 1 <= hfov_deg < 180, "
                                 f"got {self.hfov_deg}")
        if not -89.0 <= float(self.pitch_deg) <= 89.0:
            raise ValueError(f"camera pitch: expected -89..89 degrees, got {self.pitch_deg}")


@dataclass(frozen=True)
class PositionPrior:
    """The camera lies within ``radius_m`` of ``(x, y)`` (map frame, metres)."""

    x: float
    y: float
    radius_m: float

    def __post_init__(self):
        if not (np.isfinite(self.x) and np.isfinite(self.y) and np.isfinite(self.radius_m) and self.radius_m > 0):
            raise ValueError(f"position prior: expected finite x, y and radius_m > 0, got "
                             f"({self.x}, {self.y}, {self.radius_m})")


@dataclass(frozen=True)
class HeadingPrior:
    """The camera's forward ENU yaw (map frame) lies within ``yaw_deg +/- half_width_deg``."""

    yaw_deg: float
    half_width_deg: float

    def __post_init__(self):
        if not (np.isfinite(self.yaw_deg) and np.isfinite(self.half_width_deg) and 0 <= self.half_width_deg <= 180):
            raise ValueError(f"heading prior: expected a finite yaw and 0 <= half_width_deg <= 180, got "
                             f"({self.yaw_deg}, {self.half_width_deg})")


@dataclass
class Candidate:
    """One retrieval candidate (a database tile) with its scores."""

    tile_id: int
    retrieval_score: float          # cosine of the global descriptors
    m0_max: float                   # max of the level-0 matching map M^0 (the paper's Eq. 4 term)
    matching_score: float           # mean over levels of max M^l (the default re-ranking term)
    combined: float                 # retrieval_score + the re-ranking term: the re-ranking score
    center_xy: tuple                # tile centre, map frame (m)
    center_latlon: tuple            # tile centre, WGS 84 degrees


@dataclass
class LocalizationResult:
    latitude: float
    longitude: float
    x: float
    y: float
    yaw_deg: float | None
    covariance: np.ndarray          # 3 x 3 over (x, y, yaw) of the chosen mode (how precisely, if the place is right)
    confidence: float               # the calibrated chance that the chosen mode is the right place
    candidates: list[Candidate]     # the top-k in the order of the tile choice, the chosen tile first
    tile_id: int
    pixel: tuple[float, float]      # (row, col) of D's MAP pixel centre in the chosen tile
    heading_mode: str               # "known" | "prior" | "unknown"
    backend: str
    timings_ms: dict[str, float]
    distribution: np.ndarray | None = field(default=None, repr=False)
    diagnostics: dict = field(default_factory=dict, repr=False)     # posterior internals (for tuning, not an API)
    fix: bool = True                # False: the frame is no evidence of where the camera is (see no_fix_reason)
    no_fix_reason: str = ""         # why not, naming the feature and its threshold; "" for a fix
    no_fix_features: tuple[str, ...] = ()   # the abstention features below their thresholds

    def as_dict(self, with_distribution: bool = False) -> dict:
        """JSON-ready dictionary (numpy arrays as lists)."""
        d = {
            "latitude": self.latitude, "longitude": self.longitude, "x": self.x, "y": self.y,
            "yaw_deg": self.yaw_deg, "covariance": np.asarray(self.covariance).tolist(),
            "confidence": self.confidence, "fix": self.fix, "no_fix_reason": self.no_fix_reason,
            "no_fix_features": list(self.no_fix_features),
            "candidates": [{"tile_id": c.tile_id, "retrieval_score": c.retrieval_score, "m0_max": c.m0_max,
                            "matching_score": c.matching_score,
                            "combined": c.combined, "center_xy": list(c.center_xy),
                            "center_latlon": list(c.center_latlon)} for c in self.candidates],
            "tile_id": self.tile_id, "pixel": list(self.pixel), "heading_mode": self.heading_mode,
            "backend": self.backend, "timings_ms": dict(self.timings_ms),
        }
        if with_distribution and self.distribution is not None:
            d["distribution"] = self.distribution.tolist()
        return d


class LocalizationError(Exception):
    """A frame that could not be localized (bad image, empty database, nothing near the
    prior...). The message names what was expected; the Localizer stays usable."""


class DatabaseError(Exception):
    """A database that cannot be built, resumed or opened (bad raster, other model...)."""
