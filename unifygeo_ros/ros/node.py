"""``localize_node``: the camera panorama -> a geo-referenced pose with covariance (rclpy).

Run: ``ros2 run unifygeo_ros localize_node --ros-args --params-file config/localize.yaml
-p database:=/path/to/db`` (or ``python -m unifygeo_ros.ros.node ...``); the parameters are
declared in :mod:`unifygeo_ros.options` (see ``docs/parameters.md`` and ``config/README.md``).

A lifecycle node (``rclpy.lifecycle``): the parameters are declared and checked at start-up
(a wrong type, an out-of-range value or an unknown name ends the process with one FATAL line
and exit status 2); **configure** opens the database and the backend and warms up (a failure,
such as a folder that is not a database, leaves the node unconfigured with the reason logged);
**activate** subscribes and starts publishing; **deactivate** stops; **cleanup** frees the
backend and the database. With ``autostart`` (the default) the node configures and
activates itself, so ``ros2 run`` and the launch file just work; with ``autostart: false``
a lifecycle manager (or the launch file's ``lifecycle:=true``) drives the transitions.

Subscribes (depth 1, keep last, reliability ``image_qos_reliability``, reliable by default):
``image_topic`` (sensor_msgs/Image) and/or ``compressed_image_topic``
(sensor_msgs/CompressedImage); optionally ``gnss_prior_topic`` (sensor_msgs/NavSatFix) and
``odom_prior_topic`` (nav_msgs/Odometry) for priors (:mod:`unifygeo_ros.ros_core.priors`);
``camera_info_topic`` (sensor_msgs/CameraInfo, sensor-data QoS) for a calibrated pinhole or
fisheye camera: each image uses the latest CameraInfo of its frame_id, and is refused until
one arrived (the reason in the diagnostics' ``last_error``, the state under ``camera_info``) or
when its size is not the calibrated one.

A camera rig (``rig.image_topics``, or ``rig.compressed_image_topics``, non-empty) replaces
``image_topic`` / ``compressed_image_topic``: one Image (or CompressedImage) subscription per
camera (same QoS), one CameraInfo subscription per ``rig.camera_info_topics`` entry, and
``/tf_static`` (tf2_msgs/TFMessage, transient local) with ``rig.frame_source: tf`` where
tf2_msgs imports. The frames are paired by stamp
(:class:`unifygeo_ros.ros_core.rig_sync.RigSynchronizer`, ``rig.slop_s``) and each complete
set is localized as one frame, stamped with its frames' mean stamp; until every camera's
CameraInfo arrived a set is skipped (failure ``camera_info``, the reason in the diagnostics,
nothing published), and a set with a frame that does not decode (a corrupt JPEG, say) is
refused (failure ``image``, naming the camera). The diagnostics add the pairing counts
(``rig_sets``, ``rig_frames_received``, ``rig_frames_dropped``) and each camera's calibration
and orientation (``rig_cameras``).

Publishes while active, all stamped with the IMAGE's stamp:

* ``~/pose`` geometry_msgs/PoseWithCovarianceStamped: base_frame in map_frame (ENU);
* ``~/fix`` sensor_msgs/NavSatFix: base_frame's latitude / longitude, ENU covariance;
* ``~/result`` unifygeo_ros/LocalizationResult (only when the generated messages import);
* ``~/heatmap`` sensor_msgs/Image rgb8 of D over the chosen tile (``publish_heatmap``);
* TF ``map_frame -> odom_frame`` when ``publish_tf`` (needs tf2_ros);

and in every state ``/diagnostics`` (diagnostic_msgs/DiagnosticArray: the lifecycle state,
rates, drop share, latency, backend, last error; OK / WARN / ERROR by
:func:`unifygeo_ros.ros_core.health.assess`).

Parameters marked settable in ``docs/parameters.md`` (confidence gate, covariance scale,
prior radii, top-k, tile choice, diagnostics thresholds, ...) can be changed while the node
runs; each new value is checked like a start-up value and a bad one is refused with the
reason. The others are read-only (their descriptor says why).

Threads: the subscription callbacks only store the newest frame (older unprocessed frames
are dropped and counted); one worker thread runs the localizer on the latest frame, so
inference never blocks the subscriptions. A frame that fails (bad encoding, empty image,
LocalizationError, no fix, low confidence) publishes nothing and logs a warning throttled per
failure kind; the node keeps running.
"""

from __future__ import annotations

import difflib
import logging
import math
import statistics
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, NavSatFix

from ..options import BY_NAME, OPTIONS
from ..ros_core import messages as build
from ..ros_core.config import ConfigError, NodeConfig, coerce_value
from ..ros_core.health import ERROR, OK, WARN, assess
from ..ros_core.heatmap import heatmap_rgb
from ..ros_core.pipeline import FrameProcessor
from ..ros_core.priors import PriorTracker, stamp_ns
from ..ros_core.rig_cameras import rig_status_values
from ..ros_core.rig_sync import RigSynchronizer
from ..ros_core.stats import RollingStats
from ..types import DatabaseError
from .messages import rclpy_types

NODE_NAME = "unifygeo_localizer"
WARN_PERIOD_S = 5.0
# Parameters every node has, or that rclpy reads itself: not ours to check.
FOREIGN_PARAMETERS = ("use_sim_time", "start_type_description_service")
DIAGNOSTIC_LEVELS = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR}


class _RosLogHandler(logging.Handler):
    """Forwards the ROS-free core's Python logging (``unifygeo_ros.*``) to the node's logger."""

    def __init__(self, ros_logger):
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def _descriptor(spec) -> ParameterDescriptor:
    description = spec.help + (f" ({spec.read_only_reason})" if spec.read_only else "")
    # a list of any length (rig.*) is given as a list or as one comma-separated string: either type
    d = ParameterDescriptor(description=description, read_only=spec.read_only, dynamic_typing=spec.item is not None)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(map(str, spec.choices))
    if spec.low is not None and isinstance(spec.default, float):
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
    elif spec.low is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        d.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    return d


def _ros_value(value):
    return list(value) if isinstance(value, tuple) else value


class LocalizeNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        log = self.get_logger()
        pylog = logging.getLogger("unifygeo_ros")
        pylog.addHandler(_RosLogHandler(log))
        pylog.setLevel(logging.INFO)
        pylog.propagate = False
        self.cfg = self._declare_parameters()               # ConfigError -> main() exits 2
        self.lifecycle_state = "unconfigured"
        self.configure_error = ""
        self.processor = None
        self.tracker = None
        self.tracking = None                # TrackingProcessor when tracking.enabled
        self._tracking_lock = threading.Lock()
        self.tf = None
        self.stats = RollingStats(window_s=self.cfg.diagnostics_window_s)
        self._overhead_ms: list[float] = []
        self._cv = threading.Condition()
        self._pending = None
        self._stop = threading.Event()
        self._worker = None
        self._subscriptions_in = []
        self._publishers_out = []
        self.rig_sync = RigSynchronizer.from_config(self.cfg) if self.cfg.rig else None
        self._last_warn: dict[str, tuple[float, int]] = {}
        self._warn_lock = threading.Lock()
        self._warned_once: set[str] = set()
        self._last_priors = None
        self._track_state = "off"
        self.types, self.result_disabled_reason = None, None
        self.pub_pose = self.pub_fix = self.pub_result = self.pub_heatmap = None
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._reliable = reliable
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)   # in every state
        self.create_timer(self.cfg.diagnostics_period_s, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ---- parameters --------------------------------------------------------------------------
    def _declare_parameters(self) -> NodeConfig:
        """Declare every option; an override of the wrong type, out of range or of an unknown
        name is a :class:`ConfigError` naming each problem and what was expected."""
        problems = []
        overrides = self._parameter_overrides
        for name in sorted(overrides):
            if name in BY_NAME or name in FOREIGN_PARAMETERS or name.startswith("qos_overrides."):
                continue
            close = difflib.get_close_matches(name, list(BY_NAME), n=1)
            problems.append(f"unknown parameter {name!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                                              "; see docs/parameters.md"))
        for spec in OPTIONS:
            if spec.name in overrides:
                value, problem = coerce_value(spec, overrides[spec.name].value)
                if problem:
                    problems.append(problem)
                    del overrides[spec.name]
                else:       # e.g. integers given for a float or a list of floats
                    overrides[spec.name] = Parameter(spec.name, value=_ros_value(value))
            try:
                self.declare_parameter(spec.name, _ros_value(spec.default), _descriptor(spec))
            except Exception as exc:   # rclpy's own checks of a descriptor
                problems.append(f"{spec.name}: {exc}")
        if problems:
            raise ConfigError("; ".join(problems))
        return NodeConfig.from_params({spec.name: self.get_parameter(spec.name).value for spec in OPTIONS})

    def _on_set_parameters(self, params) -> SetParametersResult:
        """A run-time change: checked like a start-up value, applied at once, or refused."""
        changes = {}
        for p in params:
            spec = BY_NAME.get(p.name)
            if spec is None:
                continue
            if spec.read_only:
                return SetParametersResult(successful=False, reason=f"{p.name}: {spec.read_only_reason}")
            changes[p.name] = p.value
        if not changes:
            return SetParametersResult(successful=True)
        try:
            cfg = self.cfg.with_params(changes)
            if self.processor is not None:
                self.processor.apply_config(cfg)
        except (ConfigError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.cfg = cfg
        if self.tracker is not None:
            self.tracker.apply_config(cfg)
        if self.tracking is not None:
            self.tracking.apply_config(cfg)
        self.stats.window_s = cfg.diagnostics_window_s
        self.get_logger().info("parameters changed: " + ", ".join(f"{k}={v}" for k, v in sorted(changes.items())))
        return SetParametersResult(successful=True)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> bool:
        """configure + activate (``autostart``); False when either failed."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def on_configure(self, state) -> TransitionCallbackReturn:
        cfg = self.cfg
        log = self.get_logger()
        log.info(f"configuring: database {cfg.database} (backend {cfg.backend})")
        try:
            processor = FrameProcessor.open(cfg, log=log.info)
        except (DatabaseError, ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
            self.configure_error = str(exc)
            log.error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.processor = processor
        self.configure_error = ""
        self.tracker = PriorTracker(cfg, processor.adapter, processor.extrinsic)
        if cfg.tracking_enabled:
            from ..ros_core.tracking import TrackingProcessor

            self.tracking = TrackingProcessor(processor, cfg)
        self.types, why_no_result = rclpy_types(with_result=cfg.publish_result)
        self.result_disabled_reason = why_no_result if self.types.LocalizationResult is None else None
        make = self.create_lifecycle_publisher
        self.pub_pose = make(PoseWithCovarianceStamped, "~/pose", self._reliable)
        self.pub_fix = make(NavSatFix, "~/fix", self._reliable)
        self.pub_result = (make(self.types.LocalizationResult, "~/result", self._reliable)
                           if self.types.LocalizationResult is not None else None)
        self.pub_heatmap = make(Image, "~/heatmap", self._reliable) if cfg.publish_heatmap else None
        self._publishers_out = [p for p in (self.pub_pose, self.pub_fix, self.pub_result, self.pub_heatmap) if p]
        self.tf = self._make_tf() if cfg.publish_tf else None
        if self.result_disabled_reason:
            log.warning(f"~/result (unifygeo_ros/LocalizationResult) disabled: {self.result_disabled_reason}")
        s = processor.startup
        log.info(f"configured: backend {processor.backend_name}, {s.get('tiles')} tiles, opened in "
                 f"{s.get('open_s')} s, warm-up {s.get('warmup_s')} s")
        self.lifecycle_state = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        cfg = self.cfg
        log = self.get_logger()
        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                               reliability=(ReliabilityPolicy.RELIABLE if cfg.image_qos_reliability == "reliable"
                                            else ReliabilityPolicy.BEST_EFFORT))
        inputs = []
        subs = []
        if cfg.rig:
            subs += self._rig_subscriptions(image_qos, inputs)
        if cfg.image_topic and not cfg.rig:
            subs.append(self.create_subscription(Image, cfg.image_topic, self._on_image, image_qos))
            inputs.append(f"{cfg.image_topic} (Image)")
        if cfg.compressed_image_topic and not cfg.rig:
            subs.append(self.create_subscription(CompressedImage, cfg.compressed_image_topic, self._on_image,
                                                 image_qos))
            inputs.append(f"{cfg.compressed_image_topic} (CompressedImage)")
        if cfg.camera_info_topic:
            subs.append(self.create_subscription(CameraInfo, cfg.camera_info_topic, self._on_camera_info,
                                                 qos_profile_sensor_data))
            inputs.append(f"{cfg.camera_info_topic} (CameraInfo)")
        if cfg.gnss_prior_topic:
            subs.append(self.create_subscription(NavSatFix, cfg.gnss_prior_topic, self._on_fix,
                                                 qos_profile_sensor_data))
        if cfg.odom_prior_topic and cfg.odom_heading_mode != "off":
            subs.append(self.create_subscription(Odometry, cfg.odom_prior_topic, self._on_odom,
                                                 qos_profile_sensor_data))
        elif cfg.odom_prior_topic:
            log.warning(f"odom_prior_topic {cfg.odom_prior_topic} ignored: priors.odom_heading_mode is off (an "
                        f"odometry yaw is not a map yaw; see config/README.md)")
        if self.tracking is not None:
            odom_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
            if cfg.tracking_odom_source == "tf":
                try:
                    from tf2_msgs.msg import TFMessage
                except ImportError as exc:
                    log.error(f"tracking.odom_source tf: tf2_msgs does not import ({exc}); the filter has no "
                              f"odometry (install ros-$ROS_DISTRO-tf2-msgs, or use tracking.odom_source topic)")
                else:
                    subs.append(self.create_subscription(TFMessage, "/tf", self._on_track_tf, odom_qos))
                    inputs.append(f"/tf {cfg.odom_frame} -> {cfg.base_frame} (odometry, tracking)")
            elif cfg.tracking_odom_topic:
                subs.append(self.create_subscription(Odometry, cfg.tracking_odom_topic, self._on_track_odom, odom_qos))
                inputs.append(f"{cfg.tracking_odom_topic} (Odometry, tracking)")
            if cfg.tracking_initialpose_topic:
                subs.append(self.create_subscription(PoseWithCovarianceStamped, cfg.tracking_initialpose_topic,
                                                     self._on_initial_pose, 10))
        self._subscriptions_in = subs
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="unifygeo-inference", daemon=True)
        self._worker.start()
        self.stats.reset_activity()
        self.lifecycle_state = "active"
        log.info(f"ready: backend {self.processor.backend_name}, database {cfg.database} "
                 f"({self.processor.startup.get('tiles')} tiles), inputs {', '.join(inputs)} "
                 f"({cfg.image_qos_reliability}), publishing {cfg.base_frame} in {cfg.map_frame} on "
                 f"{self.pub_pose.topic_name}")
        return super().on_activate(state)

    def _rig_subscriptions(self, image_qos, inputs: list) -> list:
        """The camera rig's inputs: each camera's images and CameraInfo, and /tf_static."""
        cfg = self.cfg
        self.rig_sync.reset()
        subs = []
        msg_type = CompressedImage if cfg.rig_compressed else Image
        for i, topic in enumerate(cfg.rig_topics):
            subs.append(self.create_subscription(msg_type, topic, lambda msg, i=i: self._on_rig_image(i, msg),
                                                 image_qos))
        for i, topic in enumerate(cfg.rig_camera_info_topics):
            subs.append(self.create_subscription(CameraInfo, topic, lambda msg, i=i: self._on_rig_camera_info(i, msg),
                                                 qos_profile_sensor_data))
        inputs.append(f"rig of {len(cfg.rig_topics)} cameras {', '.join(cfg.rig_topics)} ({msg_type.__name__}"
                      f"{', with CameraInfo' if cfg.rig_camera_info_topics else ''}, slop {cfg.rig_slop_s:g} s)")
        if cfg.rig_frame_source == "tf":
            try:
                from tf2_msgs.msg import TFMessage
            except ImportError as exc:
                self.get_logger().warning(f"rig.frame_source tf: tf2_msgs does not import ({exc}); the cameras' "
                                          f"orientations come from rig.yaws_deg")
            else:
                static_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                                        reliability=ReliabilityPolicy.RELIABLE,
                                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
                subs.append(self.create_subscription(TFMessage, "/tf_static", self._on_tf_static, static_qos))
                inputs.append("/tf_static (rig orientations)")
        return subs

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        self.lifecycle_state = "inactive"
        self.get_logger().info("deactivated: not subscribed, not publishing")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release()
        self.lifecycle_state = "unconfigured"
        self.get_logger().info("cleaned up: backend and database closed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        self.lifecycle_state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        self.lifecycle_state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _stop_inputs(self) -> None:
        for sub in self._subscriptions_in:
            self.destroy_subscription(sub)
        self._subscriptions_in = []
        self._stop.set()
        with self._cv:
            self._pending = None
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None

    def _release(self) -> None:
        self.tracking = None
        for pub in self._publishers_out:
            self.destroy_lifecycle_publisher(pub)
        self._publishers_out = []
        self.tf = None
        if self.processor is not None:
            self.processor.close()
            self.processor = None
        self.tracker = None

    # ---- callbacks (executor threads): never block --------------------------------------------
    def _on_image(self, msg) -> None:
        with self._cv:
            dropped = self._pending is not None
            self._pending = (msg, time.monotonic())
            self._cv.notify()
        self.stats.received(dropped_previous=dropped)

    def _on_rig_image(self, index: int, msg) -> None:
        """A rig camera's frame: into the synchronizer; a completed set becomes the newest frame."""
        for rig_set in self.rig_sync.add(index, msg, stamp_ns(msg.header)):
            self._on_image(rig_set)

    def _on_rig_camera_info(self, index: int, msg) -> None:
        processor = self.processor
        if processor is None or processor.rig is None:
            return
        before = processor.rig.intrinsics(index)
        problem = processor.rig.update_camera_info(index, msg)
        if problem:
            self._warn(f"camera_info:rig{index}", problem)
        elif before != processor.rig.intrinsics(index):
            self.get_logger().info(f"camera_info: rig camera {index} ({self.cfg.rig_topics[index]}) uses "
                                   f"{processor.rig.intrinsics(index).describe()}")

    def _on_tf_static(self, msg) -> None:
        processor = self.processor
        if processor is not None and processor.rig is not None:
            processor.rig.update_tf(msg)

    def _on_camera_info(self, msg) -> None:
        processor = self.processor
        if processor is None:
            return
        frame = msg.header.frame_id.lstrip("/")
        before = processor.cameras.get(frame)
        problem = processor.update_camera_info(msg)
        if problem:
            self._warn(f"camera_info:{frame}", problem)
            return
        camera = processor.cameras[frame]
        if before is None or before.intrinsics != camera.intrinsics:
            self.get_logger().info(f"camera_info: frame_id {frame!r} uses {camera.intrinsics.describe()}")

    def _on_fix(self, msg) -> None:
        tracker = self.tracker
        note = tracker.update_fix(msg) if tracker is not None else None
        if note:
            self._warn("gnss_prior", f"GNSS prior not used: {note}")
        tracking = self.tracking
        if tracking is not None and self.cfg.tracking_gnss_evidence:
            note = tracking.add_fix(msg)        # the filter's GNSS evidence (ros_core, as the replay)
            if note:
                self._warn("gnss_evidence", f"GNSS fix not used by the tracking filter: {note}")

    def _on_track_odom(self, msg) -> None:
        tracking = self.tracking
        if tracking is not None:
            note = tracking.add_odometry(msg)
            if note:
                self._warn("odometry", f"odometry not used by the tracking filter: {note}")

    def _on_track_tf(self, msg) -> None:
        tracking = self.tracking
        if tracking is not None:
            dropped = tracking.odometry_dropped
            tracking.add_odometry_transforms(msg)
            if tracking.odometry_dropped > dropped:
                self._warn("odometry", f"odometry not used by the tracking filter: {self.cfg.odom_frame} -> "
                                       f"{self.cfg.base_frame} transform not finite: dropped")

    def _on_initial_pose(self, msg) -> None:
        tracking = self.tracking
        if tracking is None:
            return
        with self._tracking_lock:
            problem = tracking.seed(msg)        # the frame check and the seeding (ros_core, as the replay)
        if problem:
            self._warn("initialpose", problem)
            return
        self.get_logger().info(f"tracking seeded at ({msg.pose.pose.position.x:.1f}, "
                               f"{msg.pose.pose.position.y:.1f}) from {self.cfg.tracking_initialpose_topic}")

    def _on_odom(self, msg) -> None:
        tracker = self.tracker
        note = tracker.update_odom(msg) if tracker is not None else None
        if note:
            self._warn("odom_prior", f"odometry heading prior not used: {note}")

    # ---- the inference worker ----------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                if self._pending is None:
                    self._cv.wait(timeout=0.2)
                item, self._pending = self._pending, None
            if item is None or self._stop.is_set():
                continue
            try:
                self._handle(*item)
            except Exception as exc:  # keep the node alive; report like any failed frame
                self.stats.failed("internal", f"{type(exc).__name__}: {exc}")
                self.get_logger().error(f"frame failed unexpectedly: {type(exc).__name__}: {exc}")

    def _handle(self, msg, received_monotonic: float) -> None:
        started = time.monotonic()
        cfg = self.cfg
        if cfg.camera_frame and not cfg.rig and msg.header.frame_id != cfg.camera_frame:
            self._once("frame", f"images arrive in frame {msg.header.frame_id!r}, expected camera_frame "
                                f"{cfg.camera_frame!r}; using camera_extrinsic as configured")
        st = stamp_ns(msg.header)
        priors = self.tracker.priors_for(st)
        self._last_priors = priors
        T = self.types
        if self.tracking is not None:
            with self._tracking_lock:
                tout = self.tracking.process(msg, st, priors)
            self._track_state = tout.state
            outcome = tout.frame
            if outcome.ok:
                outcome.estimate.tracking_state = tout.state
                if self.pub_result is not None:
                    self.pub_result.publish(build.result_msg(T, outcome.estimate))
            else:
                self.stats.failed(outcome.failure, outcome.message)
            if tout.released is not None:
                # an earlier frame's pose that the receiver vouched for after it: published now,
                # with its own stamp (robot_localization takes it as a delayed measurement)
                held_stamp, held = tout.released
                held.tracking_state = tout.state
                self.pub_pose.publish(build.pose_msg(T, held))
                self.pub_fix.publish(build.navsat_msg(T, held))
                held.latency_ms = (time.monotonic() - received_monotonic) * 1e3 + (st - held_stamp) / 1e6
                self.stats.published(held.latency_ms)
            est = tout.filtered
            if est is None:             # initialising, lost, or this frame contradicted the track
                return
            est.tracking_state = tout.state
            est.stage_ms = dict(outcome.timings_ms)
            self.pub_pose.publish(build.pose_msg(T, est))
            self.pub_fix.publish(build.navsat_msg(T, est))
        else:
            outcome = self.processor.process(msg, st, priors, want_distribution=self.pub_heatmap is not None)
            if not outcome.ok:
                self.stats.failed(outcome.failure, outcome.message)
                self._warn(outcome.failure, f"frame at {st / 1e9:.3f} s not localized ({outcome.failure}): "
                                            f"{outcome.message}")
                return
            est = outcome.estimate
            if self.processor.publishes_pose(est):
                self.pub_pose.publish(build.pose_msg(T, est))
            else:
                self._warn("no_yaw", "heading not estimated: ~/pose not published for this frame "
                                     "(publish_pose_without_yaw is false); ~/fix and ~/result are")
            self.pub_fix.publish(build.navsat_msg(T, est))
            if self.pub_result is not None:
                self.pub_result.publish(build.result_msg(T, est))
        if self.pub_heatmap is not None and outcome.ok and outcome.estimate.distribution is not None:
            rgb = heatmap_rgb(outcome.estimate.distribution, outcome.estimate.pixel)
            self.pub_heatmap.publish(build.image_msg(T, rgb, st, cfg.map_frame))
        if self.tf is not None and est.yaw is not None:
            self._broadcast_tf(est)
        done = time.monotonic()
        # The node's own work on the frame (decoding, copies, conversions, messages): all but the
        # localizer, and not the wait for the worker.
        self._overhead_ms = (self._overhead_ms + [(done - started) * 1e3 - outcome.timings_ms.get("localize", 0.0)]
                             )[-200:]
        est.latency_ms = (done - received_monotonic) * 1e3
        est.age_ms = (self.get_clock().now().nanoseconds - st) / 1e6
        self.stats.published(est.latency_ms, {**est.stage_ms, "age": est.age_ms})

    # ---- logging helpers ---------------------------------------------------------------------
    def _warn(self, kind: str, text: str) -> None:
        """A warning throttled per kind: at most one per WARN_PERIOD_S, with the count skipped."""
        now = time.monotonic()
        with self._warn_lock:
            last, skipped = self._last_warn.get(kind, (-1e18, 0))
            emit = now - last >= WARN_PERIOD_S
            self._last_warn[kind] = (now, 0) if emit else (last, skipped + 1)
        if emit:
            extra = f" ({skipped} more like it in the last {WARN_PERIOD_S:g} s)" if skipped else ""
            self.get_logger().warning(text + extra)

    def _once(self, key: str, text: str) -> None:
        with self._warn_lock:
            first = key not in self._warned_once
            self._warned_once.add(key)
        if first:
            self.get_logger().warning(text)

    # ---- diagnostics -------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        s = self.stats.snapshot()
        level, message = assess(s, self.cfg, self.lifecycle_state)
        if self.lifecycle_state == "unconfigured" and self.configure_error:
            level, message = ERROR, f"configure failed: {self.configure_error}"

        def fmt(v):
            return "nan" if isinstance(v, float) and math.isnan(v) else (f"{v:.3f}" if isinstance(v, float) else str(v))

        backend = self.processor.backend_name if self.processor is not None else "none"
        overhead = statistics.median(self._overhead_ms) if self._overhead_ms else float("nan")
        values = [
            ("lifecycle_state", self.lifecycle_state), ("backend", backend), ("database", self.cfg.database),
            ("tracking_state", self._track_state if self.cfg.tracking_enabled else "off"),
            ("input_rate_hz", s["input_rate_hz"]), ("output_rate_hz", s["output_rate_hz"]),
            ("drop_share", s["drop_share"]),
            ("latency_ms_mean", s["latency_ms_mean"]), ("latency_ms_max", s["latency_ms_max"]),
            ("node_overhead_ms_median", overhead),
            ("seconds_since_pose", s["seconds_since_pose"]),
            *((f"frames_{k}", v) for k, v in s["totals"].items()),
            *((f"failed_{k}", v) for k, v in s["failures_by_kind"].items()),
            ("last_error", s["last_error"] or "none"),
            ("camera_info", self.processor.camera_info_status() if self.processor is not None else
             ("off" if not self.cfg.camera_info_topic else "not configured")),
            *rig_status_values(self.rig_sync, self.processor.rig if self.processor is not None else None),
            *self._prior_values(),
            ("result_message", "enabled" if self.pub_result is not None
             else f"disabled: {self.result_disabled_reason or 'not configured'}"),
            *((f"stage_ms_{k}", v) for k, v in s["last_stage_ms"].items()),
        ]
        status = DiagnosticStatus(level=DIAGNOSTIC_LEVELS[level], name=f"{self.get_name()}: localization",
                                  message=message, hardware_id=backend,
                                  values=[KeyValue(key=k, value=fmt(v)) for k, v in values])
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    def _prior_values(self):
        """How the last frame's priors were used (or why not)."""
        cfg, p = self.cfg, self._last_priors
        out = []
        for key, topic, used, note in (
                ("position_prior", cfg.gnss_prior_topic, p and p.position, p and p.position_note),
                ("heading_prior", cfg.odom_prior_topic, p and p.heading, p and p.heading_note)):
            if not topic:
                out.append((key, "off"))
            elif p is None:
                out.append((key, "no frame yet"))
            else:
                out.append((key, f"used: {used}" if used else f"not used: {note}"))
        return out

    # ---- TF (optional; needs tf2_ros from a ROS install) --------------------------------------
    def _make_tf(self):
        try:
            import tf2_ros
        except ImportError as exc:
            self.get_logger().error(f"publish_tf is true but tf2_ros does not import ({exc}): TF disabled")
            return None
        buffer = tf2_ros.Buffer()
        listener = tf2_ros.TransformListener(buffer, self)
        return {"buffer": buffer, "listener": listener, "broadcaster": tf2_ros.TransformBroadcaster(self),
                "tf2_ros": tf2_ros}

    def _broadcast_tf(self, est) -> None:
        """map -> odom = (map -> base) * (odom -> base)^-1 at the image stamp (planar), or
        map -> base when odom_frame is empty."""
        from geometry_msgs.msg import TransformStamped
        from rclpy.duration import Duration
        from rclpy.time import Time

        from ..ros_core.geometry import quaternion_to_yaw, yaw_to_quaternion

        cfg = self.cfg
        x, y, yaw = est.x, est.y, est.yaw
        child = cfg.base_frame
        if cfg.odom_frame:
            try:
                t = self.tf["buffer"].lookup_transform(cfg.odom_frame, cfg.base_frame, Time(nanoseconds=est.stamp_ns),
                                                       timeout=Duration(seconds=0.05))
            except Exception as exc:
                self._warn("tf", f"no {cfg.odom_frame} -> {cfg.base_frame} transform at the image stamp ({exc}); "
                                 f"map -> odom not broadcast")
                return
            tr, q = t.transform.translation, t.transform.rotation
            yaw_o = quaternion_to_yaw(q.x, q.y, q.z, q.w)
            yaw_mo = yaw - yaw_o
            c, s = math.cos(yaw_mo), math.sin(yaw_mo)
            x, y, yaw = x - (c * tr.x - s * tr.y), y - (s * tr.x + c * tr.y), yaw_mo
            child = cfg.odom_frame
        msg = TransformStamped()
        msg.header.stamp = Time(nanoseconds=est.stamp_ns).to_msg()
        msg.header.frame_id = cfg.map_frame
        msg.child_frame_id = child
        msg.transform.translation.x, msg.transform.translation.y = float(x), float(y)
        qx, qy, qz, qw = yaw_to_quaternion(yaw)
        msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z, msg.transform.rotation.w = \
            qx, qy, qz, qw
        self.tf["broadcaster"].sendTransform(msg)



def main(args=None) -> int:
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    logger = rclpy.logging.get_logger(NODE_NAME)
    try:
        rclpy.init(args=sys.argv if args is None else args)
    except Exception as exc:        # e.g. a parameter file rcl cannot parse
        logger.fatal(f"cannot start: {' '.join(str(exc).split())}")
        return 2
    node = None
    code = 0
    try:
        node = LocalizeNode()
        if node.cfg.autostart and not node.start():
            logger.fatal(f"cannot start: {node.configure_error or 'activation failed'}")
            code = 2
        else:
            executor = MultiThreadedExecutor(num_threads=2)
            executor.add_node(node)
            executor.spin()
    except ConfigError as exc:
        logger.fatal(f"bad parameters: {exc}")
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node._stop_inputs()
            node._release()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
