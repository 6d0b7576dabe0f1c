"""The node's parameters: one table of names, defaults, types and descriptions.

The ROS node declares every entry of :data:`PARAMETERS` with a ``ParameterDescriptor``
(description, constraints, read-only), reads the values and builds a :class:`NodeConfig`;
``unifygeo replay`` builds the same :class:`NodeConfig` from the defaults, an optional
parameter file (``config/localize.yaml``) and its command-line options. The defaults in
``config/localize.yaml`` equal the ones here (``test_node.py`` checks it).

Frames (REP-103/105): the output map frame is ``map_frame``; by default it is the
database's own frame (its CRS and origin, see ``unifygeo_ros.geo.MapFrame``); with
``map_origin.mode: latlon`` it is the UTM frame whose origin is
``(map_origin.latitude, map_origin.longitude)`` (how ``unifygeo sim`` defines a city's
``map`` frame). Yaw is ENU from grid east.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

CAMERA_MODELS = ("panorama", "pinhole")
MAP_ORIGIN_MODES = ("database", "latlon")
ODOM_HEADING_MODES = ("off", "map_frame", "offset")
RELIABILITIES = ("best_effort", "reliable")


class ConfigError(ValueError):
    """Bad parameter values; the message lists every problem and what was expected."""


@dataclass(frozen=True)
class ParamSpec:
    name: str                   # ROS parameter name (dots = nested YAML keys)
    attr: str                   # NodeConfig field
    default: Any
    description: str
    choices: tuple = ()         # allowed strings, or allowed integers
    low: float | None = None    # numeric range (inclusive)
    high: float | None = None
    read_only: bool = True      # the node reads it at start-up only


PARAMETERS: tuple[ParamSpec, ...] = (
    # database and inference
    ParamSpec("database", "database", "", "path of the aerial database folder (`unifygeo build-db`); required"),
    ParamSpec("engines", "engines", "", "folder of the ONNX export / TensorRT engines; empty: DATABASE/engines"),
    ParamSpec("backend", "backend", "auto", "inference backend: auto (fastest available), torch, onnxruntime, "
              "tensorrt, or an exact backend name"),
    ParamSpec("weights", "weights", "", "checkpoint to use instead of DATABASE/model.pt (must be the model the "
              "database was built with); empty: the database's"),
    ParamSpec("threads", "threads", 0, "CPU threads of the backend; 0: its default", low=0, high=256),
    ParamSpec("top_k", "top_k", 5, "retrieval candidates re-ranked per frame", low=1, high=100),
    ParamSpec("rerank_score", "rerank_score", "matching", "re-ranking term added to the retrieval score: matching "
              "(max of every matching level, averaged) or m0 (max M^0, the paper's Eq. 4)", choices=("matching", "m0")),
    ParamSpec("tile_choice", "tile_choice", "consensus", "how the tile is chosen among the re-ranked candidates: "
              "consensus (the candidate whose D peak the overlapping candidates' D confirm) or rerank (the best "
              "re-ranked tile, as in the paper)", choices=("consensus", "rerank")),
    ParamSpec("alignment_candidates", "alignment_candidates", 4, "without a known heading: alignments re-decoded "
              "per candidate tile by the alignment search (0: the decoder's max-M^0 choice)", low=0, high=32),
    ParamSpec("decoder_turns", "decoder_turns", 4, "ensemble of the decoder on the chosen tile: 4 (the tile in "
              "four quarter turns; better D and yaw, about 4 x 32 more decoder rows per frame without a known "
              "heading), 8 (the turns and their mirror images, with the mirrored panorama: twice the cost) or 1 "
              "(none)", choices=(1, 4, 8)),
    ParamSpec("warmup", "warmup", True, "run one frame through every stage before reporting ready"),
    # camera
    ParamSpec("camera.model", "camera_model", "panorama", "panorama (equirectangular 360 x 180, forward at the "
              "centre column) or pinhole", choices=CAMERA_MODELS),
    ParamSpec("camera.hfov_deg", "camera_hfov_deg", 90.0, "pinhole only: horizontal field of view (degrees)",
              low=1.0, high=179.0),
    ParamSpec("camera.pitch_deg", "camera_pitch_deg", 0.0, "pinhole only: optical axis pitch, up positive (degrees)",
              low=-89.0, high=89.0),
    ParamSpec("camera_extrinsic.xyz", "camera_xyz", [0.0, 0.0, 0.0], "camera position in base_frame (x forward, "
              "y left, z up; metres)"),
    ParamSpec("camera_extrinsic.yaw_deg", "camera_yaw_deg", 0.0, "yaw of the camera's forward direction relative "
              "to base_frame's x axis (degrees, counter-clockwise)", low=-180.0, high=180.0),
    # frames
    ParamSpec("map_frame", "map_frame", "map", "frame_id of the published pose (REP-105 map)"),
    ParamSpec("base_frame", "base_frame", "base_link", "the frame whose pose is published"),
    ParamSpec("camera_frame", "camera_frame", "", "expected frame_id of the images (a mismatch is logged once); "
              "empty: accept any"),
    ParamSpec("odom_frame", "odom_frame", "odom", "odometry frame, used only when publish_tf is true (map -> odom); "
              "empty: broadcast map -> base_frame instead"),
    ParamSpec("map_origin.mode", "map_origin_mode", "database", "database: map_frame is the database's frame; "
              "latlon: the UTM frame with its origin at map_origin.latitude/longitude", choices=MAP_ORIGIN_MODES),
    ParamSpec("map_origin.latitude", "map_origin_latitude", 0.0, "latlon mode: origin latitude (degrees)",
              low=-80.0, high=84.0),
    ParamSpec("map_origin.longitude", "map_origin_longitude", 0.0, "latlon mode: origin longitude (degrees)",
              low=-180.0, high=180.0),
    ParamSpec("ground_altitude_m", "ground_altitude_m", 0.0, "ellipsoidal altitude of the map frame's z = 0, "
              "reported as the NavSatFix altitude"),
    # topics
    ParamSpec("image_topic", "image_topic", "/camera/panorama/image_raw", "sensor_msgs/Image input; empty: none"),
    ParamSpec("compressed_image_topic", "compressed_image_topic", "", "sensor_msgs/CompressedImage input; "
              "empty: none"),
    ParamSpec("image_qos_reliability", "image_qos_reliability", "best_effort", "reliability of the image "
              "subscriptions (depth 1, keep last); best_effort also connects to reliable publishers",
              choices=RELIABILITIES),
    ParamSpec("gnss_prior_topic", "gnss_prior_topic", "", "sensor_msgs/NavSatFix giving a position prior; "
              "empty: none"),
    ParamSpec("odom_prior_topic", "odom_prior_topic", "", "nav_msgs/Odometry giving a heading prior (see "
              "priors.odom_heading_mode); empty: none"),
    # priors
    ParamSpec("priors.max_age_s", "prior_max_age_s", 1.0, "a GNSS / odometry message older (or newer) than this "
              "relative to the image stamp is not used", low=0.0, high=3600.0),
    ParamSpec("priors.gnss_sigma_scale", "gnss_sigma_scale", 3.0, "prior radius = scale x the fix's horizontal "
              "standard deviation + priors.gnss_margin_m", low=0.5, high=100.0),
    ParamSpec("priors.gnss_min_radius_m", "gnss_min_radius_m", 10.0, "smallest prior radius (metres)",
              low=0.5, high=1e6),
    ParamSpec("priors.gnss_radius_m", "gnss_radius_m", 50.0, "prior radius of a fix without a covariance "
              "(COVARIANCE_TYPE_UNKNOWN)", low=0.5, high=1e6),
    ParamSpec("priors.gnss_margin_m", "gnss_margin_m", 2.0, "added to the radius: antenna-to-camera offset and "
              "timing (metres)", low=0.0, high=1e4),
    ParamSpec("priors.odom_heading_mode", "odom_heading_mode", "off", "off; map_frame: use the odometry's yaw only "
              "when its header.frame_id is map_frame; offset: map yaw = odometry yaw + priors.odom_yaw_offset_deg",
              choices=ODOM_HEADING_MODES),
    ParamSpec("priors.odom_yaw_offset_deg", "odom_yaw_offset_deg", 0.0, "offset mode: yaw of the odometry frame "
              "in map_frame (degrees, ENU)", low=-180.0, high=180.0),
    ParamSpec("priors.heading_sigma_scale", "heading_sigma_scale", 3.0, "heading window half-width = scale x the "
              "odometry's yaw standard deviation", low=0.5, high=100.0),
    ParamSpec("priors.heading_min_half_width_deg", "heading_min_half_width_deg", 15.0, "smallest heading window "
              "half-width (degrees)", low=0.0, high=180.0),
    # output
    ParamSpec("min_confidence", "min_confidence", 0.1, "frames localized with a lower confidence publish nothing",
              low=0.0, high=1.0),
    ParamSpec("covariance.scale", "covariance_scale", 1.0, "multiplies the localizer's x, y, yaw variances "
              "(tuning; 1 = as calibrated)", low=1e-3, high=1e3),
    ParamSpec("covariance.z_variance", "z_variance", 1.0, "variance of the unobserved z (m^2): the vehicle is "
              "assumed on the map's ground plane; switch z off in robot_localization", low=1e-6, high=1e3),
    ParamSpec("covariance.roll_pitch_variance", "roll_pitch_variance", 0.0076, "variance of the unobserved roll "
              "and pitch (rad^2, 0.0076 = (5 deg)^2); switch them off in robot_localization", low=1e-6, high=1e3),
    ParamSpec("publish_pose_without_yaw", "publish_pose_without_yaw", False, "publish a pose when the heading "
              "could not be estimated (orientation identity, yaw variance pi^2/3); default: fix and result only"),
    ParamSpec("publish_tf", "publish_tf", False, "broadcast map -> odom_frame (needs tf2_ros); leave false when "
              "an EKF owns the TF tree"),
    ParamSpec("publish_heatmap", "publish_heatmap", False, "publish D over the chosen tile as an rgb8 image "
              "(~/heatmap, grid north up) for RViz"),
    ParamSpec("publish_result", "publish_result", True, "publish unifygeo_msgs/LocalizationResult on ~/result "
              "(only when the generated message package imports)"),
    ParamSpec("diagnostics_period_s", "diagnostics_period_s", 1.0, "period of /diagnostics", low=0.05, high=60.0),
)

_SPEC_BY_NAME = {p.name: p for p in PARAMETERS}


@dataclass(frozen=True)
class NodeConfig:
    database: str = ""
    engines: str = ""
    backend: str = "auto"
    weights: str = ""
    threads: int = 0
    top_k: int = 5
    rerank_score: str = "matching"
    tile_choice: str = "consensus"
    alignment_candidates: int = 4
    decoder_turns: int = 4
    warmup: bool = True
    camera_model: str = "panorama"
    camera_hfov_deg: float = 90.0
    camera_pitch_deg: float = 0.0
    camera_xyz: tuple = (0.0, 0.0, 0.0)
    camera_yaw_deg: float = 0.0
    map_frame: str = "map"
    base_frame: str = "base_link"
    camera_frame: str = ""
    odom_frame: str = "odom"
    map_origin_mode: str = "database"
    map_origin_latitude: float = 0.0
    map_origin_longitude: float = 0.0
    ground_altitude_m: float = 0.0
    image_topic: str = "/camera/panorama/image_raw"
    compressed_image_topic: str = ""
    image_qos_reliability: str = "best_effort"
    gnss_prior_topic: str = ""
    odom_prior_topic: str = ""
    prior_max_age_s: float = 1.0
    gnss_sigma_scale: float = 3.0
    gnss_min_radius_m: float = 10.0
    gnss_radius_m: float = 50.0
    gnss_margin_m: float = 2.0
    odom_heading_mode: str = "off"
    odom_yaw_offset_deg: float = 0.0
    heading_sigma_scale: float = 3.0
    heading_min_half_width_deg: float = 15.0
    min_confidence: float = 0.1
    covariance_scale: float = 1.0
    z_variance: float = 1.0
    roll_pitch_variance: float = 0.0076
    publish_pose_without_yaw: bool = False
    publish_tf: bool = False
    publish_heatmap: bool = False
    publish_result: bool = True
    diagnostics_period_s: float = 1.0

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_params(cls, values: Mapping[str, Any], require_database: bool = True) -> "NodeConfig":
        """Build from ROS parameter names (``camera.model``...); missing names keep their
        defaults. Raises :class:`ConfigError` naming every bad value and what was expected."""
        unknown = sorted(set(values) - set(_SPEC_BY_NAME))
        problems = [f"unknown parameter {n!r}" for n in unknown]
        kwargs: dict[str, Any] = {}
        for spec in PARAMETERS:
            if spec.name not in values:
                continue
            value, problem = _coerce(spec, values[spec.name])
            if problem:
                problems.append(problem)
            else:
                kwargs[spec.attr] = value
        if problems:
            raise ConfigError("; ".join(problems))
        cfg = cls(**kwargs)
        cfg.validate(require_database)
        return cfg

    def with_params(self, values: Mapping[str, Any]) -> "NodeConfig":
        """A copy with some parameters (ROS names) replaced, checked like :meth:`from_params`."""
        merged = {**self.as_params(), **dict(values)}
        return NodeConfig.from_params(merged, require_database=False)

    def as_params(self) -> dict[str, Any]:
        """ROS parameter name -> value (lists for arrays), e.g. for a parameter file."""
        out = {}
        for spec in PARAMETERS:
            v = getattr(self, spec.attr)
            out[spec.name] = list(v) if isinstance(v, tuple) else v
        return out

    def validate(self, require_database: bool = True) -> None:
        problems = []
        if require_database and not self.database:
            problems.append("database: expected the path of a database folder (`unifygeo build-db`), got ''")
        elif require_database and not Path(self.database).is_dir():
            problems.append(f"database: {self.database!r} is not a folder; expected a database built by "
                            f"`unifygeo build-db`")
        if not (self.image_topic or self.compressed_image_topic):
            problems.append("image_topic and compressed_image_topic are both empty: expected at least one input")
        if len(self.camera_xyz) != 3 or not all(math.isfinite(float(v)) for v in self.camera_xyz):
            problems.append(f"camera_extrinsic.xyz: expected 3 finite numbers, got {list(self.camera_xyz)}")
        for name in ("map_frame", "base_frame"):
            if not getattr(self, name):
                problems.append(f"{name}: expected a frame id, got ''")
        if self.map_frame == self.base_frame:
            problems.append(f"map_frame and base_frame are both {self.map_frame!r}: expected two frames")
        if problems:
            raise ConfigError("; ".join(problems))


def _coerce(spec: ParamSpec, value: Any) -> tuple[Any, str | None]:
    """Check one value against its spec; returns (value, None) or (None, problem)."""
    default = spec.default
    name = spec.name
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value, None
        return None, f"{name}: expected true or false, got {value!r}"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int,)) and not (
                isinstance(value, float) and value.is_integer()):
            return None, f"{name}: expected an integer, got {value!r}"
        value = int(value)
        if spec.choices and value not in spec.choices:
            return None, f"{name}: expected one of {', '.join(map(str, spec.choices))}, got {value!r}"
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"{name}: expected a number, got {value!r}"
        value = float(value)
        if not math.isfinite(value):
            return None, f"{name}: expected a finite number, got {value!r}"
    elif isinstance(default, str):
        if not isinstance(value, str):
            return None, f"{name}: expected a string, got {value!r}"
        if spec.choices and value not in spec.choices:
            return None, f"{name}: expected one of {', '.join(spec.choices)}, got {value!r}"
        return value, None
    elif isinstance(default, list):
        try:
            value = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            return None, f"{name}: expected a list of {len(default)} numbers, got {value!r}"
        if len(value) != len(default):
            return None, f"{name}: expected a list of {len(default)} numbers, got {list(value)}"
        return value, None
    if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
        return None, f"{name}: expected a value in [{spec.low:g}, {spec.high:g}], got {value!r}"
    return value, None


def params_from_yaml(path: str | Path, node_name: str | None = None) -> dict[str, Any]:
    """Flatten the ``ros__parameters`` of a ROS 2 parameter file into ``{name: value}``.

    The file's first node section is used unless ``node_name`` names one (``/**`` matches
    any node). Raises :class:`ConfigError` when the file has no such section.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable parameter file ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a ROS 2 parameter file (node name: ros__parameters: ...)")
    section = None
    for key, val in data.items():
        if isinstance(val, dict) and "ros__parameters" in val and (
                node_name is None or key in (node_name, f"/{node_name}", "/**")):
            section = val["ros__parameters"]
            break
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: no 'ros__parameters' section"
                          + (f" for node {node_name!r}" if node_name else ""))
    flat: dict[str, Any] = {}

    def walk(prefix, d):
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                walk(name, v)
            else:
                flat[name] = v

    walk("", section)
    return flat

