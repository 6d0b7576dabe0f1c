"""Every option of the localizer and the node, declared once.

Each :class:`Option` has its name (the ROS parameter name; dots are nested YAML keys), the
field of :class:`~unifygeo_ros.ros_core.config.NodeConfig` it sets, its default, help text,
and its allowed values (choices, or an inclusive numeric range). From this table:

* the node declares its ROS parameters with descriptors (:mod:`unifygeo_ros.ros.node`);
* :class:`~unifygeo_ros.ros_core.config.NodeConfig` takes its defaults and checks values;
* ``unifygeo localize``, ``replay``, ``eval`` and ``bench localize`` add their options with
  :func:`add_cli_options` (flag ``--top-k`` for ``top_k``, same default, choices and help);
* the Localizer's and the evaluation's keyword defaults are :func:`default` of it;
* the launch file's argument defaults are read from it;
* ``docs/parameters.md`` is :func:`markdown_table` (``python -m unifygeo_ros.options
  --markdown > docs/parameters.md``); ``config/localize.yaml`` is checked against it by the tests.

This module is at the bottom of the package: it imports nothing of it but the shared types.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from .types import CAMERA_MODELS

MAP_ORIGIN_MODES = ("database", "latlon")
ODOM_HEADING_MODES = ("off", "map_frame", "offset")
RELIABILITIES = ("best_effort", "reliable")
ODOM_SOURCES = ("topic", "tf")             # the filter's odometry: tracking.odom_topic, or odom -> base on /tf
RIG_FRAME_SOURCES = ("tf", "parameters")   # tf: /tf_static, else rig.yaws_deg; parameters: rig.yaws_deg only
RERANK_SCORES = ("matching", "m0")          # matching: every matching level; m0: max M^0 (the paper's Eq. 4)
TILE_CHOICES = ("consensus", "rerank")      # consensus: the candidates' D agree; rerank: the paper's best score
DECODER_TURNS = (1, 4, 8)                   # decoder ensemble: none, the quarter turns, turns and mirrors


@dataclass(frozen=True)
class Option:
    name: str                   # ROS parameter name (dots = nested YAML keys)
    attr: str                   # NodeConfig field
    default: Any
    help: str
    choices: tuple = ()         # allowed strings, or allowed integers
    low: float | None = None    # numeric range (inclusive)
    high: float | None = None
    read_only: bool = True      # the node reads it at start-up only; False: settable at run time
    cli: bool = False           # also a command-line option of localize / replay / eval / bench localize
    item: type | None = None    # a list of any length of these (str or float; low / high bound each);
                                # given as a list or as one comma-separated string

    @property
    def type_name(self) -> str:
        """The type in words: ``float``, ``list``, ``list of str``."""
        return f"list of {self.item.__name__}" if self.item is not None else self.type.__name__

    @property
    def type(self) -> type:
        return type(self.default)

    @property
    def flag(self) -> str:
        """The command-line flag: ``top_k`` -> ``--top-k``, ``priors.odom_heading_mode`` ->
        ``--odom-heading-mode``."""
        return "--" + self.name.rsplit(".", 1)[-1].replace("_", "-")

    @property
    def read_only_reason(self) -> str:
        """Why a read-only option cannot change while the node runs."""
        return ("read-only: it decides what the node opens, subscribes to or publishes at start-up; restart the "
                "node (or load it again) with the new value") if self.read_only else ""

    def allowed(self) -> str:
        """The allowed values in words, e.g. ``one of 1, 4, 8`` or ``[1, 100]``."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if self.low is not None or self.high is not None:
            return f"[{_fmt(self.low)}, {_fmt(self.high)}]"
        return ""


OPTIONS: tuple[Option, ...] = (
    # database and inference
    Option("database", "database", "", "path of the aerial database folder (`unifygeo build-db`); required"),
    Option("engines", "engines", "", "folder of the ONNX export / TensorRT engines; empty: DATABASE/engines", cli=True),
    Option("backend", "backend", "auto", "inference backend: auto (fastest available), torch, onnxruntime, "
              "tensorrt, or an exact backend name", cli=True),
    Option("weights", "weights", "", "checkpoint to use instead of DATABASE/model.pt (must be the model the "
              "database was built with); empty: the database's"),
    Option("threads", "threads", 0, "CPU threads of the backend; 0: its default", low=0, high=256),
    Option("top_k", "top_k", 5, "retrieval candidates re-ranked per frame", low=1, high=100, cli=True, read_only=False),
    Option("rerank_score", "rerank_score", "matching", "re-ranking term added to the retrieval score: matching "
              "(max of every matching level, averaged) or m0 (max M^0, the paper's Eq. 4)", choices=RERANK_SCORES, cli=True, read_only=False),
    Option("tile_choice", "tile_choice", "consensus", "how the tile is chosen among the re-ranked candidates: "
              "consensus (the candidate whose D peak the overlapping candidates' D confirm) or rerank (the best "
              "re-ranked tile, as in the paper)", choices=TILE_CHOICES, cli=True, read_only=False),
    Option("alignment_candidates", "alignment_candidates", 4, "without a known heading: alignments re-decoded "
              "per candidate tile by the alignment search (0: the decoder's max-M^0 choice)", low=0, high=32, cli=True, read_only=False),
    Option("decoder_turns", "decoder_turns", 4, "ensemble of the decoder on the chosen tile: 4 (the tile in "
              "four quarter turns; better D and yaw, about 4 x 32 more decoder rows per frame without a known "
              "heading), 8 (the turns and their mirror images, with the mirrored panorama: twice the cost) or 1 "
              "(none)", choices=DECODER_TURNS, cli=True, read_only=False),
    Option("warmup", "warmup", True, "run one frame through every stage before reporting ready"),
    Option("autostart", "autostart", True, "lifecycle: configure and activate the node at start-up (false: wait "
           "for a lifecycle manager's transitions)"),
    # camera
    Option("camera.model", "camera_model", "panorama", "panorama (equirectangular 360 x 180, forward at the "
              "centre column) or pinhole (a limited field of view: the idealised camera of camera.hfov_deg, or "
              "the calibrated one of camera_info_topic)", choices=CAMERA_MODELS),
    Option("camera.hfov_deg", "camera_hfov_deg", 90.0, "pinhole only: horizontal field of view of the idealised "
              "camera (square pixels, principal point at the centre, no distortion; degrees); not used with "
              "camera_info_topic", low=1.0, high=179.0),
    Option("camera.pitch_deg", "camera_pitch_deg", 0.0, "pinhole only: optical axis pitch, up positive (degrees)",
              low=-89.0, high=89.0),
    Option("camera.roll_deg", "camera_roll_deg", 0.0, "pinhole only: roll about the optical axis, positive "
              "lowers the camera's right side (degrees)", low=-180.0, high=180.0),
    Option("camera_extrinsic.xyz", "camera_xyz", [0.0, 0.0, 0.0], "camera position in base_frame (x forward, "
              "y left, z up; metres)"),
    Option("camera_extrinsic.yaw_deg", "camera_yaw_deg", 0.0, "yaw of the camera's forward direction relative "
              "to base_frame's x axis (degrees, counter-clockwise)", low=-180.0, high=180.0),
    # camera rig
    Option("rig.image_topics", "rig_image_topics", [], "sensor_msgs/Image topics of a camera rig, one per "
           "camera (a list, or one comma-separated string); non-empty: the node subscribes to these instead of "
           "image_topic / compressed_image_topic, pairs their frames by stamp (rig.slop_s) and localizes each "
           "set as one frame, the cameras composed into one panorama facing base_frame's x axis (camera.model "
           "pinhole; camera_extrinsic.xyz: the rig's centre); empty: one camera, or a rig of "
           "rig.compressed_image_topics", item=str),
    Option("rig.compressed_image_topics", "rig_compressed_image_topics", [], "sensor_msgs/CompressedImage "
           "(JPEG or PNG) topics of a camera rig, one per camera (a list, or one comma-separated string), instead "
           "of rig.image_topics (set one of the two, not both); paired and localized as rig.image_topics are, "
           "rig.camera_info_topics and rig.yaws_deg in its order; a set with a frame that does not decode is "
           "refused (failure image, naming the camera). Whole topic names, e.g. image_transport's "
           "/cam_front/image_raw/compressed, as compressed_image_topic takes one: a list of its own rather than a "
           "transport switch on rig.image_topics, so that a CompressedImage topic of any name (a driver's, a "
           "bag's) is given as it is; empty: the rig's images are raw (rig.image_topics)", item=str),
    Option("rig.camera_info_topics", "rig_camera_info_topics", [], "sensor_msgs/CameraInfo of each rig camera, "
           "in the order of rig.image_topics (or rig.compressed_image_topics): a set waits (skipped, the reason "
           "in the diagnostics) until every camera's has arrived, and is refused when an image's size differs; "
           "empty: every camera is the idealised one of camera.hfov_deg", item=str),
    Option("rig.yaws_deg", "rig_yaws_deg", [], "each rig camera's yaw relative to base_frame's x axis, in the "
           "order of rig.image_topics (or rig.compressed_image_topics; degrees, counter-clockwise, REP-103: left "
           "+90, right -90, rear 180); with rig.frame_source tf used for a camera whose orientation /tf_static "
           "does not give; empty: /tf_static only", item=float, low=-180.0, high=180.0),
    Option("rig.frame_source", "rig_frame_source", "tf", "where the rig cameras' orientations come from: tf "
           "(/tf_static: base_frame -> the image's frame_id, an optical frame (name ending in _optical: z "
           "forward, x right) or a body frame (x forward, y left); yaw, pitch and roll), else rig.yaws_deg; "
           "parameters: rig.yaws_deg with camera.pitch_deg and camera.roll_deg", choices=RIG_FRAME_SOURCES),
    Option("rig.slop_s", "rig_slop_s", 0.05, "largest stamp difference within a set of rig frames (s), as "
           "message_filters' ApproximateTimeSynchronizer's slop; the set is stamped with its frames' mean stamp",
           low=0.001, high=10.0),
    Option("rig.queue_size", "rig_queue_size", 5, "frames kept per rig camera while waiting for a set; the "
           "oldest one is dropped beyond", low=1, high=1000),
    # frames
    Option("map_frame", "map_frame", "map", "frame_id of the published pose (REP-105 map)"),
    Option("base_frame", "base_frame", "base_link", "the frame whose pose is published"),
    Option("camera_frame", "camera_frame", "", "expected frame_id of the images (a mismatch is logged once); "
              "empty: accept any"),
    Option("odom_frame", "odom_frame", "odom", "odometry frame (REP-105 odom): the parent of map -> odom when "
              "publish_tf is true (empty: broadcast map -> base_frame instead), and of the odom -> base_frame "
              "transform the filter reads with tracking.odom_source tf"),
    Option("map_origin.mode", "map_origin_mode", "database", "database: map_frame is the database's frame; "
              "latlon: the UTM frame with its origin at map_origin.latitude/longitude", choices=MAP_ORIGIN_MODES),
    Option("map_origin.latitude", "map_origin_latitude", 0.0, "latlon mode: origin latitude (degrees)",
              low=-80.0, high=84.0),
    Option("map_origin.longitude", "map_origin_longitude", 0.0, "latlon mode: origin longitude (degrees)",
              low=-180.0, high=180.0),
    Option("ground_altitude_m", "ground_altitude_m", 0.0, "ellipsoidal altitude of the map frame's z = 0, "
              "reported as the NavSatFix altitude"),
    # topics
    Option("image_topic", "image_topic", "/camera/panorama/image_raw", "sensor_msgs/Image input; empty: none"),
    Option("compressed_image_topic", "compressed_image_topic", "", "sensor_msgs/CompressedImage input; "
              "empty: none"),
    Option("camera_info_topic", "camera_info_topic", "", "sensor_msgs/CameraInfo of a calibrated pinhole or "
              "fisheye camera (camera.model pinhole; distortion plumb_bob, rational_polynomial or equidistant): "
              "each image uses the latest CameraInfo of its frame_id, and is refused until one arrived or when "
              "its size differs; empty: none (the idealised camera of camera.hfov_deg)"),
    Option("image_qos_reliability", "image_qos_reliability", "reliable", "reliability of the image "
              "subscriptions (depth 1, keep last): reliable delivers large frames (a 2048 x 1024 rgb8 panorama is "
              "6.3 MB) from publishers of either kind of the default QoS; best_effort loses most frames above "
              "about 0.5 MB with Fast DDS",
              choices=RELIABILITIES),
    Option("gnss_prior_topic", "gnss_prior_topic", "", "sensor_msgs/NavSatFix giving a position prior; "
              "empty: none"),
    Option("odom_prior_topic", "odom_prior_topic", "", "nav_msgs/Odometry giving a heading prior (see "
              "priors.odom_heading_mode); empty: none"),
    # priors
    Option("priors.max_age_s", "prior_max_age_s", 1.0, "a GNSS / odometry message older (or newer) than this "
              "relative to the image stamp is not used", low=0.0, high=3600.0, read_only=False),
    Option("priors.gnss_sigma_scale", "gnss_sigma_scale", 3.0, "prior radius = scale x the fix's horizontal "
              "standard deviation + priors.gnss_margin_m", low=0.5, high=100.0, read_only=False),
    Option("priors.gnss_min_radius_m", "gnss_min_radius_m", 10.0, "smallest prior radius (metres)",
              low=0.5, high=1e6, read_only=False),
    Option("priors.gnss_radius_m", "gnss_radius_m", 50.0, "prior radius of a fix without a covariance "
              "(COVARIANCE_TYPE_UNKNOWN)", low=0.5, high=1e6, read_only=False),
    Option("priors.gnss_margin_m", "gnss_margin_m", 2.0, "added to the radius: antenna-to-camera offset and "
              "timing (metres)", low=0.0, high=1e4, read_only=False),
    Option("priors.odom_heading_mode", "odom_heading_mode", "off", "off; map_frame: use the odometry's yaw only "
              "when its header.frame_id is map_frame; offset: map yaw = odometry yaw + priors.odom_yaw_offset_deg",
              choices=ODOM_HEADING_MODES, cli=True),
    Option("priors.odom_yaw_offset_deg", "odom_yaw_offset_deg", 0.0, "offset mode: yaw of the odometry frame "
              "in map_frame (degrees, ENU)", low=-180.0, high=180.0, read_only=False),
    Option("priors.heading_sigma_scale", "heading_sigma_scale", 3.0, "heading window half-width = scale x the "
              "odometry's yaw standard deviation", low=0.5, high=100.0, read_only=False),
    Option("priors.heading_min_half_width_deg", "heading_min_half_width_deg", 15.0, "smallest heading window "
              "half-width (degrees)", low=0.0, high=180.0, read_only=False),
    # output
    # tracking along a drive
    Option("tracking.enabled", "tracking_enabled", False, "run the particle filter over the map pose (odometry + "
           "every frame's evidence): ~/pose then carries the filtered pose, published only while tracking; the "
           "single frame stays on ~/result"),
    Option("tracking.odom_source", "tracking_odom_source", "topic", "where the filter's motion model reads the "
           "vehicle's odometry: topic (tracking.odom_topic, nav_msgs/Odometry) or tf (the odom_frame -> base_frame "
           "transform on /tf, tf2_msgs/TFMessage, as a wheel-odometry or odometry EKF node broadcasts it; base_frame "
           "must be odom_frame's direct child)", choices=ODOM_SOURCES),
    Option("tracking.odom_topic", "tracking_odom_topic", "/odom", "nav_msgs/Odometry of the vehicle (odom -> "
           "base_link), the filter's motion model, with tracking.odom_source topic"),
    Option("tracking.initialpose_topic", "tracking_initialpose_topic", "/initialpose",
           "geometry_msgs/PoseWithCovarianceStamped in map_frame (RViz's 2D Pose Estimate) that seeds or resets the "
           "filter"),
    Option("tracking.particles", "tracking_particles", 1000, "particles of the filter", low=50, high=100000),
    Option("tracking.outlier", "tracking_outlier", 0.2, "weight of a frame's uniform outlier component: the "
           "share of frames assumed not to be evidence", low=0.01, high=1.0),
    Option("tracking.motion_noise", "tracking_motion_noise", 0.15, "standard deviation of the odometry's "
           "translation per metre travelled in the filter's motion model (it also absorbs the odometry's scale "
           "error)", low=0.001, high=2.0),
    Option("tracking.evidence_power", "tracking_evidence_power", 4.0, "the frame's D is raised to this power "
           "(and normalised) before it weighs the particles: > 1 narrows a D broader than the localizer's errors",
           low=0.1, high=20.0, read_only=False),
    Option("tracking.no_fix_weight", "tracking_no_fix_weight", 0.0, "a clear view that the localizer, searching "
           "near the track, refuses (no fix, or under min_confidence) still tests the track (its D supports or "
           "contradicts it); its likelihood is raised to this power before it weighs the particles: 0 moves none "
           "(the filter carries on by odometry, its spread growing), 1 weighs them as a fix does", low=0.0,
           high=1.0, read_only=False),
    Option("tracking.decoder_turns", "tracking_decoder_turns", 1, "the decoder ensemble while tracking "
           "(decoder_turns applies to the global searches): 1, none, keeps a tracked frame fast; the filter "
           "averages over frames instead", choices=DECODER_TURNS, read_only=False),
    Option("tracking.search_radius_m", "tracking_search_radius_m", 30.0, "while tracking, only tiles within this "
           "radius (or 3 standard deviations, if larger) of the predicted camera position are retrieved and decoded",
           low=5.0, high=5000.0, read_only=False),
    Option("tracking.heading_window_deg", "tracking_heading_window_deg", 20.0, "while tracking, the heading "
           "prior's half-width around the predicted yaw (or 3 standard deviations, if larger)", low=2.0,
           high=180.0, read_only=False),
    Option("tracking.anchor_frames", "tracking_anchor_frames", 30, "lost, the filter keeps its last publishable "
           "pose moved on by odometry alone (the anchor); for this many frames each frame is searched first near "
           "the anchor (tiles within tracking.search_radius_m, or 3 of its growing standard deviations), and the "
           "whole database only when that gives no fix, so that a track lost where the localizer found nothing "
           "is taken up again where the vehicle still is; 0: lost frames search the whole database only",
           low=0, high=1000),
    Option("tracking.gnss_evidence", "tracking_gnss_evidence", True, "with gnss_prior_topic set, each NavSatFix "
           "that has a fix (status >= 0) and a covariance (position_covariance_type not UNKNOWN) also weighs the "
           "particles, at its own stamp (a Gaussian of its horizontal covariance with 5 % outliers): the filtered "
           "pose then holds that receiver, so do not fuse it again in an EKF; false: the fixes only narrow the "
           "global searches (initialising, lost), as without tracking"),
    Option("tracking.gnss_interval_s", "tracking_gnss_interval_s", 1.0, "with tracking.gnss_evidence, the "
           "shortest time between two fixes that weigh the filter (the others are skipped): a receiver's errors "
           "are correlated over seconds, and fixes closer together would count the same error several times "
           "and make the filter overconfident; 0: every fix", low=0.0, high=60.0),
    Option("min_confidence", "min_confidence", 0.1, "frames localized with a lower confidence publish nothing; "
           "the confidence is the calibrated chance that the pose is in the right mode (the right place, not a "
           "wrong tile), so 1 - min_confidence is the largest wrong-mode chance published",
              low=0.0, high=1.0, cli=True, read_only=False),
    Option("covariance.scale", "covariance_scale", 1.0, "multiplies the localizer's x, y, yaw variances "
              "(tuning; 1 = as calibrated)", low=1e-3, high=1e3, read_only=False),
    Option("covariance.z_variance", "z_variance", 1.0, "variance of the unobserved z (m^2): the vehicle is "
              "assumed on the map's ground plane; switch z off in robot_localization", low=1e-6, high=1e3, read_only=False),
    Option("covariance.roll_pitch_variance", "roll_pitch_variance", 0.0076, "variance of the unobserved roll "
              "and pitch (rad^2, 0.0076 = (5 deg)^2); switch them off in robot_localization", low=1e-6, high=1e3, read_only=False),
    Option("publish_pose_without_yaw", "publish_pose_without_yaw", False, "publish a pose when the heading "
              "could not be estimated (orientation identity, yaw variance pi^2/3); default: fix and result only", read_only=False),
    Option("publish_tf", "publish_tf", False, "broadcast map -> odom_frame (needs tf2_ros); leave false when "
              "an EKF owns the TF tree"),
    Option("publish_heatmap", "publish_heatmap", False, "publish D over the chosen tile as an rgb8 image "
              "(~/heatmap, grid north up) for RViz"),
    Option("publish_result", "publish_result", True, "publish unifygeo_ros/LocalizationResult on ~/result "
              "(only when the generated message package imports)"),
    Option("diagnostics_period_s", "diagnostics_period_s", 1.0, "period of /diagnostics", low=0.05, high=60.0),
    Option("diagnostics.window_s", "diagnostics_window_s", 10.0, "rates, drop share and latency are taken over "
           "this many seconds", low=1.0, high=600.0, read_only=False),
    Option("diagnostics.max_drop_share", "max_drop_share", 0.9, "WARN when more than this share of the received "
           "frames is dropped unprocessed (the node always works on the newest frame: at 10 Hz and 0.4 s per frame "
           "about 0.75 is dropped)", low=0.0, high=1.0, read_only=False),
    Option("diagnostics.max_latency_ms", "max_latency_ms", 2000.0, "WARN when the mean latency from image "
           "reception to publication is above this (keep robot_localization's history_length above it)",
           low=1.0, high=1e6, read_only=False),
    Option("diagnostics.stale_after_s", "stale_after_s", 10.0, "ERROR when images arrive but no pose has been "
           "published for this long (or since activation)", low=0.5, high=3600.0, read_only=False),
)

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
_BY_ATTR: dict[str, Option] = {o.attr: o for o in OPTIONS}


def option(name: str) -> Option:
    """The declaration of ``name`` (a ROS parameter name or a NodeConfig field)."""
    try:
        return BY_NAME[name] if name in BY_NAME else _BY_ATTR[name]
    except KeyError:
        raise KeyError(f"no option {name!r}; expected one of {', '.join(BY_NAME)}") from None


def default(name: str) -> Any:
    """The declared default of ``name`` (lists as tuples, so that defaults stay immutable)."""
    value = option(name).default
    return tuple(value) if isinstance(value, list) else value


def _fmt(v) -> str:
    return "" if v is None else f"{v:g}"


def add_cli_options(parser: argparse.ArgumentParser, names: list[str] | tuple[str, ...] | None = None,
                    from_parameters: bool = False) -> None:
    """Add the command-line options of ``names`` (default: every option marked ``cli``) to
    ``parser``, with the declared type, default, choices and help.

    With ``from_parameters`` an option that is not given is None (the command then takes the
    value from a parameter file, else the declared default); the help says so."""
    for o in (option(n) for n in names) if names is not None else (o for o in OPTIONS if o.cli):
        kwargs: dict[str, Any] = {"type": _cli_type(o), "help": o.help, "metavar": o.attr.upper()}
        if o.choices:
            kwargs["choices"] = o.choices
            kwargs.pop("metavar")
        shown = o.default if o.default != "" else "none"
        if from_parameters:
            kwargs["default"] = None
            kwargs["help"] += f" (default: the parameter file's, else {shown})"
        else:
            kwargs["default"] = o.default
            kwargs["help"] += f" (default: {shown})"
        parser.add_argument(o.flag, dest=o.attr, **kwargs)


def _cli_type(o: Option):
    """argparse type of ``o``: parses and checks the declared range."""
    kind = o.type if o.type in (int, float, str) else str

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if (o.low is not None and value < o.low) or (o.high is not None and value > o.high):
            raise argparse.ArgumentTypeError(f"expected a value in {o.allowed()}, got {text}")
        return value

    parse.__name__ = kind.__name__      # argparse names the type in its messages
    return parse


def markdown_table() -> str:
    """``docs/parameters.md``: every option with its type, default, allowed values and help."""
    lines = ["# Parameters of the localizer and the node", "",
             "Generated from `unifygeo_ros/options.py` by `python -m unifygeo_ros.options --markdown`; "
             "do not edit by hand. The ROS parameter names are given; options marked CLI are also flags of "
             "`unifygeo localize`, `replay`, `eval` and `bench localize` (`top_k` is `--top-k`). "
             "`config/localize.yaml` holds every parameter with these defaults. Parameters marked settable can be "
             "changed while the node runs (`ros2 param set`); the node checks the new value first and refuses "
             "a bad one with the reason.", "",
             "| parameter | type | default | allowed | at run time | CLI | description |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for o in OPTIONS:
        d = o.default
        shown = "true" if d is True else "false" if d is False else '""' if d == "" else str(d)
        helptext = o.help.replace("|", "\\|")
        lines.append(f"| `{o.name}` | {o.type_name} | `{shown}` | {o.allowed()} | "
                     f"{'settable' if not o.read_only else 'read-only'} | {o.flag if o.cli else ''} | {helptext} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m unifygeo_ros.options --markdown")
    sys.stdout.write(markdown_table())
