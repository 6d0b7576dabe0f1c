"""The node's configuration, built from the option declaration (:mod:`unifygeo_ros.options`).

The ROS node declares every option with a ``ParameterDescriptor`` (description, constraints,
read-only), reads the values and builds a :class:`NodeConfig`; ``unifygeo replay`` builds
the same :class:`NodeConfig` from the defaults, an optional parameter file
(``config/localize.yaml``) and its command-line options. :class:`NodeConfig`'s defaults
are the declared ones; ``config/localize.yaml`` holds the same (the tests check it).

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

from ..options import BY_NAME, OPTIONS, Option, default


class ConfigError(ValueError):
    """Bad parameter values; the message lists every problem and what was expected."""


@dataclass(frozen=True)
class NodeConfig:
    database: str = default("database")
    engines: str = default("engines")
    backend: str = default("backend")
    weights: str = default("weights")
    threads: int = default("threads")
    top_k: int = default("top_k")
    rerank_score: str = default("rerank_score")
    tile_choice: str = default("tile_choice")
    alignment_candidates: int = default("alignment_candidates")
    decoder_turns: int = default("decoder_turns")
    warmup: bool = default("warmup")
    autostart: bool = default("autostart")
    camera_model: str = default("camera_model")
    camera_hfov_deg: float = default("camera_hfov_deg")
    camera_pitch_deg: float = default("camera_pitch_deg")
    camera_roll_deg: float = default("camera_roll_deg")
    camera_xyz: tuple = default("camera_xyz")
    camera_yaw_deg: float = default("camera_yaw_deg")
    rig_image_topics: tuple = default("rig_image_topics")
    rig_compressed_image_topics: tuple = default("rig_compressed_image_topics")
    rig_camera_info_topics: tuple = default("rig_camera_info_topics")
    rig_yaws_deg: tuple = default("rig_yaws_deg")
    rig_frame_source: str = default("rig_frame_source")
    rig_slop_s: float = default("rig_slop_s")
    rig_queue_size: int = default("rig_queue_size")
    map_frame: str = default("map_frame")
    base_frame: str = default("base_frame")
    camera_frame: str = default("camera_frame")
    odom_frame: str = default("odom_frame")
    map_origin_mode: str = default("map_origin_mode")
    map_origin_latitude: float = default("map_origin_latitude")
    map_origin_longitude: float = default("map_origin_longitude")
    ground_altitude_m: float = default("ground_altitude_m")
    image_topic: str = default("image_topic")
    compressed_image_topic: str = default("compressed_image_topic")
    camera_info_topic: str = default("camera_info_topic")
    image_qos_reliability: str = default("image_qos_reliability")
    gnss_prior_topic: str = default("gnss_prior_topic")
    odom_prior_topic: str = default("odom_prior_topic")
    prior_max_age_s: float = default("prior_max_age_s")
    gnss_sigma_scale: float = default("gnss_sigma_scale")
    gnss_min_radius_m: float = default("gnss_min_radius_m")
    gnss_radius_m: float = default("gnss_radius_m")
    gnss_margin_m: float = default("gnss_margin_m")
    odom_heading_mode: str = default("odom_heading_mode")
    odom_yaw_offset_deg: float = default("odom_yaw_offset_deg")
    heading_sigma_scale: float = default("heading_sigma_scale")
    heading_min_half_width_deg: float = default("heading_min_half_width_deg")
    tracking_enabled: bool = default("tracking_enabled")
    tracking_odom_source: str = default("tracking_odom_source")
    tracking_odom_topic: str = default("tracking_odom_topic")
    tracking_initialpose_topic: str = default("tracking_initialpose_topic")
    tracking_particles: int = default("tracking_particles")
    tracking_outlier: float = default("tracking_outlier")
    tracking_motion_noise: float = default("tracking_motion_noise")
    tracking_evidence_power: float = default("tracking_evidence_power")
    tracking_no_fix_weight: float = default("tracking_no_fix_weight")
    tracking_decoder_turns: int = default("tracking_decoder_turns")
    tracking_search_radius_m: float = default("tracking_search_radius_m")
    tracking_heading_window_deg: float = default("tracking_heading_window_deg")
    tracking_anchor_frames: int = default("tracking_anchor_frames")
    tracking_gnss_evidence: bool = default("tracking_gnss_evidence")
    tracking_gnss_interval_s: float = default("tracking_gnss_interval_s")
    min_confidence: float = default("min_confidence")
    covariance_scale: float = default("covariance_scale")
    z_variance: float = default("z_variance")
    roll_pitch_variance: float = default("roll_pitch_variance")
    publish_pose_without_yaw: bool = default("publish_pose_without_yaw")
    publish_tf: bool = default("publish_tf")
    publish_heatmap: bool = default("publish_heatmap")
    publish_result: bool = default("publish_result")
    diagnostics_period_s: float = default("diagnostics_period_s")
    diagnostics_window_s: float = default("diagnostics_window_s")
    max_drop_share: float = default("max_drop_share")
    max_latency_ms: float = default("max_latency_ms")
    stale_after_s: float = default("stale_after_s")

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_params(cls, values: Mapping[str, Any], require_database: bool = True) -> "NodeConfig":
        """Build from ROS parameter names (``camera.model``...); missing names keep their
        defaults. Raises :class:`ConfigError` naming every bad value and what was expected."""
        unknown = sorted(set(values) - set(BY_NAME))
        problems = [f"unknown parameter {n!r}" for n in unknown]
        kwargs: dict[str, Any] = {}
        for spec in OPTIONS:
            if spec.name not in values:
                continue
            value, problem = coerce_value(spec, values[spec.name])
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
        for spec in OPTIONS:
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
        if self.rig:
            problems += self._rig_problems()
        else:
            if not (self.image_topic or self.compressed_image_topic):
                problems.append("image_topic and compressed_image_topic are both empty: expected at least one input "
                                "(or a camera rig, rig.image_topics or rig.compressed_image_topics)")
            for name in ("rig_camera_info_topics", "rig_yaws_deg"):
                if getattr(self, name):
                    problems.append(f"{BY_ATTR_NAME[name]} {list(getattr(self, name))}: expected rig.image_topics "
                                    f"or rig.compressed_image_topics (one image topic per camera) with it, got none")
        if self.camera_info_topic and self.camera_model != "pinhole":
            problems.append(f"camera_info_topic {self.camera_info_topic!r}: expected camera.model pinhole with a "
                            f"CameraInfo, got {self.camera_model!r}")
        if len(self.camera_xyz) != 3 or not all(math.isfinite(float(v)) for v in self.camera_xyz):
            problems.append(f"camera_extrinsic.xyz: expected 3 finite numbers, got {list(self.camera_xyz)}")
        for name in ("map_frame", "base_frame"):
            if not getattr(self, name):
                problems.append(f"{name}: expected a frame id, got ''")
        if self.map_frame == self.base_frame:
            problems.append(f"map_frame and base_frame are both {self.map_frame!r}: expected two frames")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def rig(self) -> bool:
        """A camera rig (``rig.image_topics`` or ``rig.compressed_image_topics`` non-empty) instead
        of one camera."""
        return bool(self.rig_image_topics or self.rig_compressed_image_topics)

    @property
    def rig_compressed(self) -> bool:
        """The rig's images are ``sensor_msgs/CompressedImage`` (``rig.compressed_image_topics``)."""
        return bool(self.rig_compressed_image_topics) and not self.rig_image_topics

    @property
    def rig_topics(self) -> tuple:
        """The rig's image topics, one per camera: ``rig.image_topics``, else
        ``rig.compressed_image_topics`` (none without a rig)."""
        return tuple(self.rig_image_topics or self.rig_compressed_image_topics)

    @property
    def rig_topics_option(self) -> str:
        """The name of the option that lists the rig's image topics."""
        return "rig.compressed_image_topics" if self.rig_compressed else "rig.image_topics"

    def _rig_problems(self) -> list[str]:
        """What is wrong with the camera rig's options, each naming what was expected."""
        topics, name = self.rig_topics, self.rig_topics_option
        n = len(topics)
        out = []
        if self.rig_image_topics and self.rig_compressed_image_topics:
            out.append(f"rig.image_topics {list(self.rig_image_topics)} and rig.compressed_image_topics "
                       f"{list(self.rig_compressed_image_topics)}: expected one of the two (the rig's sensor_msgs/"
                       f"Image or its sensor_msgs/CompressedImage topics, one per camera), got both")
        if len(set(topics)) != n:
            out.append(f"{name} {list(topics)}: expected distinct topics, one per camera")
        infos = self.rig_camera_info_topics
        if infos and len(infos) != n:
            out.append(f"rig.camera_info_topics: expected one CameraInfo topic per {name} entry ({n}), or "
                       f"none, got {len(infos)}: {list(infos)}")
        elif len(set(infos)) != len(infos):
            out.append(f"rig.camera_info_topics {list(infos)}: expected distinct topics, one per camera")
        yaws = self.rig_yaws_deg
        if self.rig_frame_source == "parameters" and len(yaws) != n:
            out.append(f"rig.yaws_deg: expected one yaw per {name} entry ({n}) with rig.frame_source "
                       f"parameters, got {len(yaws)}: {list(yaws)}")
        elif yaws and len(yaws) != n:
            out.append(f"rig.yaws_deg: expected one yaw per {name} entry ({n}), or none (rig.frame_source "
                       f"tf: /tf_static only), got {len(yaws)}: {list(yaws)}")
        if self.camera_model != "pinhole":
            out.append(f"{name}: expected camera.model pinhole (a rig's cameras are pinhole or fisheye "
                       f"cameras), got {self.camera_model!r}")
        if self.camera_info_topic:
            out.append(f"camera_info_topic {self.camera_info_topic!r}: expected '' with a camera rig (each camera's "
                       f"CameraInfo topic is in rig.camera_info_topics)")
        if self.camera_yaw_deg != 0.0:
            out.append(f"camera_extrinsic.yaw_deg: expected 0 with a camera rig (its panorama faces base_frame's x "
                       f"axis; the cameras' yaws are rig.yaws_deg or /tf_static), got {self.camera_yaw_deg:g}")
        return out


BY_ATTR_NAME = {o.attr: o.name for o in OPTIONS}


def _split_list(value: Any) -> list | None:
    """A list option's value as a list: a list or tuple as it is, a string split at its commas
    (``""``: none), None (an empty list in a ROS parameter file) as none; None for anything else."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",")] if value.strip() else []
    if isinstance(value, (list, tuple)):
        return list(value)
    try:                                        # array.array of an rclpy parameter
        return list(value)
    except TypeError:
        return None


def _coerce_items(spec: Option, value: Any) -> tuple[Any, str | None]:
    """A list of any length of ``spec.item`` (str or float), each in ``spec``'s range."""
    name = spec.name
    items = _split_list(value)
    if spec.item is str:
        if items is None or not all(isinstance(v, str) and v.strip() for v in items):
            return None, (f"{name}: expected a list of non-empty strings (or one comma-separated string), got "
                          f"{value!r}")
        return tuple(v.strip() for v in items), None
    out = []
    for v in items if items is not None else [None]:
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None, f"{name}: expected a list of numbers (or one comma-separated string), got {value!r}"
        out.append(float(v))
    if any(spec.low is not None and v < spec.low or spec.high is not None and v > spec.high for v in out):
        return None, f"{name}: expected numbers in [{spec.low:g}, {spec.high:g}], got {out}"
    return tuple(out), None


def coerce_value(spec: Option, value: Any) -> tuple[Any, str | None]:
    """Check one value against its declaration; returns (value, None) or (None, problem).
    Integers are accepted for a number and for a list of numbers."""
    default = spec.default
    name = spec.name
    if spec.item is not None:
        return _coerce_items(spec, value)
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

