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
#: distortion models of sensor_msgs/CameraInfo understood by :class:`Intrinsics`, with the number
#: of coefficients each takes: plumb_bob (k1 k2 t1 t2 k3), rational_polynomial (k1 k2 t1 t2 k3
#: k4 k5 k6) and equidistant (the fisheye model of cv2.fisheye: k1 k2 k3 k4)
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


@dataclass(frozen=True)
class Intrinsics:
    """A calibrated pinhole or fisheye camera, as ``sensor_msgs/CameraInfo`` describes it.

    ``width`` x ``height`` pixels; ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in ROS / OpenCV
    pixel coordinates (the centre of pixel (row r, column c) is at u = c, v = r); ``distortion``
    one of :data:`DISTORTION_MODELS` with its coefficients ``d`` in the CameraInfo order (fewer
    coefficients are padded with zeros: an empty ``d`` is no distortion). The projection is
    OpenCV's (``cv2.projectPoints``, ``cv2.fisheye.projectPoints``), see
    :mod:`unifygeo_ros.inference.camera`.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: str = "plumb_bob"
    d: tuple = ()

    def __post_init__(self):
        size = (self.width, self.height)
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size) or min(size) < 2:
            raise ValueError(f"camera intrinsics: expected an image size of at least 2 x 2 pixels, got "
                             f"{self.width} x {self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if not all(np.isfinite(v) for v in (self.fx, self.fy, self.cx, self.cy)) or min(self.fx, self.fy) <= 0:
            raise ValueError(f"camera intrinsics: expected finite fx, fy > 0 and finite cx, cy, got fx {self.fx}, "
                             f"fy {self.fy}, cx {self.cx}, cy {self.cy}")
        if self.distortion not in DISTORTION_MODELS:
            raise ValueError(f"camera intrinsics: distortion model {self.distortion!r} is not supported; expected "
                             f"one of {', '.join(DISTORTION_MODELS)}")
        n = DISTORTION_MODELS[self.distortion]
        d = tuple(float(v) for v in self.d)
        if len(d) > n and any(d[n:]):
            raise ValueError(f"camera intrinsics: {self.distortion} takes at most {n} distortion coefficients, "
                             f"got {len(d)} with non-zero ones beyond the {n}th")
        if not all(np.isfinite(d)):
            raise ValueError(f"camera intrinsics: expected finite distortion coefficients, got {list(d)}")
        object.__setattr__(self, "d", (d + (0.0,) * n)[:n])

    @classmethod
    def ideal(cls, width: int, height: int, hfov_deg: float) -> "Intrinsics":
        """Square pixels, principal point at the image centre, no distortion: the camera
        ``Camera("pinhole", hfov_deg=...)`` describes."""
        f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
        return cls(int(width), int(height), float(f), float(f), (width - 1) / 2.0, (height - 1) / 2.0)

    @property
    def k(self) -> np.ndarray:
        """The 3 x 3 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def distorted(self) -> bool:
        return any(self.d)

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera for the image resized to ``width`` x ``height`` (pixel centres map as
        cv2.resize maps them: u' = (u + 0.5) * sx - 0.5)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(int(width), int(height), self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                          (self.cy + 0.5) * sy - 0.5, self.distortion, self.d)

    def hfov_deg(self) -> float:
        """The horizontal angle the image spans along the principal point's row, distortion
        ignored (equidistant: the angle ``width / fx`` of an ideal fisheye, up to 360 degrees)."""
        left, right = (self.cx + 0.5) / self.fx, (self.width - 0.5 - self.cx) / self.fx
        if self.distortion == "equidistant":
            return float(min(360.0, np.degrees(left + right)))
        return float(np.degrees(np.arctan(left) + np.arctan(right)))

    def describe(self) -> str:
        """One line, e.g. ``640 x 480, fx 320.0, fy 320.0, cx 319.5, cy 239.5, plumb_bob [0 0 0 0 0]``."""
        return (f"{self.width} x {self.height}, fx {self.fx:.1f}, fy {self.fy:.1f}, cx {self.cx:.1f}, "
                f"cy {self.cy:.1f}, {self.distortion} [{' '.join(f'{v:g}' for v in self.d)}]")


@dataclass(frozen=True)
class Camera:
    """How the input image relates to the panorama frame.

    ``panorama``: an equirectangular 360 x 180 image (width = 2 x height), forward direction
    at the centre column. ``pinhole``: a limited field of view, either the idealised camera of
    horizontal field of view ``hfov_deg`` (square pixels, principal point at the centre, no
    distortion) or a calibrated one, ``intrinsics`` (K, image size and distortion of a
    ``sensor_msgs/CameraInfo``). Its optical axis is pitched up by ``pitch_deg`` and the
    camera rolled by ``roll_deg`` about it (right-handed about the forward axis: positive
    lowers the camera's right side); its forward direction (the heading's yaw) is the
    optical axis' bearing.
    """

    model: str = "panorama"
    hfov_deg: float | None = None
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    intrinsics: Intrinsics | None = None

    def __post_init__(self):
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"camera model: expected one of {CAMERA_MODELS}, got {self.model!r}")
        if self.model == "pinhole":
            if self.intrinsics is not None:
                if self.hfov_deg is not None:
                    raise ValueError("pinhole camera: expected either hfov_deg or intrinsics, got both")
                if not isinstance(self.intrinsics, Intrinsics):
                    raise ValueError(f"pinhole camera: intrinsics must be an Intrinsics, got "
                                     f"{type(self.intrinsics).__name__}")
            elif self.hfov_deg is None or not 1.0 <= float(self.hfov_deg) < 180.0:
                raise ValueError(f"pinhole camera: expected a horizontal field of view 1 <= hfov_deg < 180 "
                                 f"(or intrinsics), got {self.hfov_deg}")
        elif self.intrinsics is not None:
            raise ValueError("camera intrinsics: expected a pinhole camera, got a panorama")
        if not -89.0 <= float(self.pitch_deg) <= 89.0:
            raise ValueError(f"camera pitch: expected -89..89 degrees, got {self.pitch_deg}")
        if not -180.0 <= float(self.roll_deg) <= 180.0:
            raise ValueError(f"camera roll: expected -180..180 degrees, got {self.roll_deg}")


@dataclass(frozen=True)
class Rig:
    """Several limited-field-of-view cameras on one vehicle, localized together as one frame.

    ``cameras[i]`` (a ``pinhole`` :class:`Camera`: idealised or calibrated, with its pitch and
    roll) looks along ``yaws_deg[i]``, its optical axis' yaw relative to the rig's forward
    direction (base_link's x axis; REP-103: counter-clockwise positive, a left camera at
    +90, a rear one at 180). The images are composed into one panorama in the base frame
    whose forward direction is the rig's (:mod:`unifygeo_ros.inference.rig`); a heading is
    the ENU yaw of that forward direction.
    """

    cameras: tuple
    yaws_deg: tuple

    def __post_init__(self):
        cams, yaws = tuple(self.cameras), tuple(self.yaws_deg)
        if not cams:
            raise ValueError("camera rig: expected at least one camera, got none")
        if len(cams) != len(yaws):
            raise ValueError(f"camera rig: expected one yaw per camera, got {len(cams)} cameras and "
                             f"{len(yaws)} yaws")
        for i, cam in enumerate(cams):
            if not isinstance(cam, Camera) or cam.model != "pinhole":
                raise ValueError(f"camera rig: camera {i}: expected a pinhole Camera (hfov_deg or intrinsics), "
                                 f"got {cam!r}")
        try:
            yaws = tuple(float(y) for y in yaws)
        except (TypeError, ValueError):
            raise ValueError(f"camera rig: expected yaws in degrees, got {self.yaws_deg!r}") from None
        if not all(np.isfinite(yaws)):
            raise ValueError(f"camera rig: expected finite yaws in degrees, got {list(yaws)}")
        object.__setattr__(self, "cameras", cams)
        object.__setattr__(self, "yaws_deg", yaws)

    @property
    def model(self) -> str:
        """The camera kind whose calibration (covariance scales, confidence map, abstention
        thresholds) the rig's frames use: ``pinhole``."""
        return "pinhole"


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
