"""``unifygeo replay``: run the node's localization path on a rosbag2 and score it.

The frames go through :class:`unifygeo_ros.ros_core.pipeline.FrameProcessor`, the code
the ROS node runs (not a copy), with the same priors (:class:`~unifygeo_ros.ros_core.priors.PriorTracker`)
fed in bag order. Per frame the truth (``geometry_msgs/PoseStamped`` of base_link in the
map frame, e.g. ``/ground_truth/pose`` of ``unifygeo sim drive``) is interpolated to the
image stamp (linear in x, y and unwrapped yaw; frames outside the truth's time span are not
scored).

Frames:
* the output map frame is the bag's: ``<bag>.meta/drive.json``'s ``map_frame`` (CRS and
  origin) when present, else ``--map-origin LAT,LON`` (a UTM frame), else the database's;
* the camera extrinsic comes from ``/tf_static`` (``base_frame -> <image frame_id>``),
  else from ``drive.json``, else from the parameters.

A camera rig (``rig.image_topics``, or ``rig.compressed_image_topics``, in ``--params``): the
rig's topics (sensor_msgs/Image, or CompressedImage, as the node subscribes to them) are read
instead of one image topic and paired by stamp through the node's synchronizer
(:class:`~unifygeo_ros.ros_core.rig_sync.RigSynchronizer`); each set goes through the same
per-frame path as a single camera's frame (decoding included), stamped with its frames' mean
stamp. The rig's centre is the mean of its cameras' origins in ``/tf_static`` (else
``camera_extrinsic.xyz``); ``/tf_static`` and each camera's first CameraInfo are given to
the processor before the first frame (the latest ones as they come).

Tracking (``--track``): ``tracking.odom_topic`` moves the filter and
``tracking.initialpose_topic`` (``geometry_msgs/PoseWithCovarianceStamped``, when the bag has
it) seeds it through :meth:`~unifygeo_ros.ros_core.tracking.TrackingProcessor.seed`, the
node's code, with the images in stamp order (an image waits until the odometry past its stamp
was read; an initial pose goes before the images stamped at or after it); each initial pose
is recorded in :attr:`ReplayRun.seeds`, applied or with the reason it was ignored.

With ``--gnss-topic`` and ``tracking.gnss_evidence`` the fixes also weigh the filter
(:meth:`~unifygeo_ros.ros_core.tracking.TrackingProcessor.add_fix`, as in the node); how many
did, were dropped as older than the filter or were ignored (and why) is in
:attr:`ReplayRun.gnss`.

Outputs: an optional bag (``--out-bag``) with ``/unifygeo_localizer/{pose,fix,result}``
(our result message registered from msg/*.msg), a copy of the truth and ``/tf_static``, each
written at ``image stamp + processing latency``; an optional report folder
(``--report``, see :mod:`.report`).
"""

from __future__ import annotations

import bisect
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..ros_core import messages as build
from ..ros_core.config import NodeConfig
from ..ros_core.geometry import Extrinsic, quaternion_to_yaw
from ..ros_core.pipeline import FrameOutcome, FrameProcessor
from ..ros_core.priors import PriorTracker, stamp_ns
from ..ros_core.rig_cameras import RigCameras
from ..ros_core.rig_sync import RigSynchronizer
from .bagio import drive_metadata, rosbags_types, typestore

DEFAULT_IMAGE_TOPICS = ("/camera/panorama/image_raw", "/camera/panorama/image_raw/compressed")
DEFAULT_TRUTH_TOPIC = "/ground_truth/pose"
OUT_PREFIX = "/unifygeo_localizer"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
RIG_RAW_TYPE, RIG_COMPRESSED_TYPE = IMAGE_TYPES


class ReplayError(ValueError):
    """Bad input (bag, topics, database); the message says what was expected."""


@dataclass
class ReplayOptions:
    bag: Path
    image_topic: str | None = None
    truth_topic: str = DEFAULT_TRUTH_TOPIC
    gnss_topic: str | None = None
    odom_topic: str | None = None
    out_bag: Path | None = None
    out_storage: str = "mcap"
    map_origin: tuple[float, float] | None = None
    max_frames: int | None = None
    progress: bool = True
    track: bool = False                 # run the tracking filter (tracking.odom_topic as its odometry)
    clouds: int = 6                     # particle clouds kept for the picture (tracking)


@dataclass
class FrameRecord:
    stamp_ns: int
    outcome: FrameOutcome
    truth: tuple[float, float, float] | None       # x, y, yaw (rad) of base_link, map frame
    published_pose: bool = False                    # a pose went out on ~/pose (filtered when tracking)
    frame_published: bool = False                   # the frame's own estimate passed the gate
    track: object | None = None                     # TrackOutcome when tracking
    cloud: np.ndarray | None = None                 # particles (n, 2), map frame, at a few frames
    released: bool = False                          # its filtered pose went out late, when the next
                                                    # GNSS fix vouched for the track


@dataclass
class ReplayRun:
    frames: list[FrameRecord]
    image_topic: str
    truth_topic: str | None
    map_frame_source: str
    extrinsic_source: str
    extrinsic: Extrinsic
    map_frame: object
    truth_track: np.ndarray | None        # (n, 4): t_ns, x, y, yaw
    meta: dict | None
    startup: dict
    seconds: dict = field(default_factory=dict)
    out_bag: str | None = None
    tracking: bool = False
    odom_topic: str | None = None
    rig: dict | None = None               # a camera rig: its pairing counts and cameras
    initialpose_topic: str | None = None  # tracking: the bag's initial-pose topic, when it has one
    seeds: list = field(default_factory=list)   # tracking: each initial pose read (SeedRecord)
    gnss: dict | None = None              # tracking with --gnss-topic: the fixes used as the filter's evidence


@dataclass
class SeedRecord:
    """An initial pose read from the bag (tracking)."""

    stamp_ns: int
    frame: int                            # frames replayed before it (it acts before frame index ``frame``)
    x: float                              # base_link in the pose's frame
    y: float
    yaw: float
    sigma_m: float                        # sqrt of the larger eigenvalue of its x, y covariance
    applied: bool
    reason: str | None = None             # why it was ignored


def _interp_truth(track: np.ndarray, t_ns: int):
    t = track[:, 0]
    if len(t) == 0 or t_ns < t[0] or t_ns > t[-1]:
        return None
    x = float(np.interp(t_ns, t, track[:, 1]))
    y = float(np.interp(t_ns, t, track[:, 2]))
    yaw = float(np.interp(t_ns, t, np.unwrap(track[:, 3])))
    return x, y, math.atan2(math.sin(yaw), math.cos(yaw))


def _pick_image_topic(topics: dict, wanted: str | None) -> str:
    if wanted:
        if wanted not in topics:
            raise ReplayError(f"--image-topic {wanted}: not in the bag; its topics: {_topic_list(topics)}")
        if topics[wanted] not in IMAGE_TYPES:
            raise ReplayError(f"--image-topic {wanted} is {topics[wanted]}; expected sensor_msgs/msg/Image or "
                              f"CompressedImage")
        return wanted
    for t in DEFAULT_IMAGE_TOPICS:
        if t in topics:
            return t
    raise ReplayError(f"the bag has none of the default image topics {', '.join(DEFAULT_IMAGE_TOPICS)}: "
                      f"give --image-topic (its topics: {_topic_list(topics)})")


def _topic_list(topics: dict) -> str:
    return ", ".join(f"{t} ({m})" for t, m in sorted(topics.items())) or "none"


def _check_topic(topics: dict, name: str | None, types: tuple[str, ...], flag: str) -> None:
    if name is None:
        return
    if name not in topics:
        raise ReplayError(f"{flag} {name}: not in the bag; its topics: {_topic_list(topics)}")
    if topics[name] not in types:
        raise ReplayError(f"{flag} {name} is {topics[name]}; expected {' or '.join(types)}")


def _check_rig_topics(topics: dict, cfg: NodeConfig) -> None:
    """Each rig camera's topic is in the bag, of the type the node subscribes to it with:
    sensor_msgs/Image for ``rig.image_topics``, CompressedImage for ``rig.compressed_image_topics``."""
    wanted, other, other_option = ((RIG_COMPRESSED_TYPE, RIG_RAW_TYPE, "rig.image_topics") if cfg.rig_compressed
                                   else (RIG_RAW_TYPE, RIG_COMPRESSED_TYPE, "rig.compressed_image_topics"))
    for t in cfg.rig_topics:
        if t in topics and topics[t] == other:
            raise ReplayError(f"{cfg.rig_topics_option} {t} is {other}; expected {wanted} (the rig's {other} "
                              f"topics go in {other_option})")
        _check_topic(topics, t, (wanted,), cfg.rig_topics_option)


def _first_message(reader, topic: str):
    """The first message of ``topic`` in the bag, deserialized (``None`` when it has none)."""
    for con, _, raw in reader.messages(connections=[c for c in reader.connections if c.topic == topic]):
        return reader.deserialize(raw, con.msgtype)
    return None


def open_bag(path: Path, ts):
    from rosbags.highlevel import AnyReader

    path = Path(path)
    if not path.exists():
        raise ReplayError(f"--bag {path}: no such bag (expected a rosbag2 folder with metadata.yaml, MCAP or sqlite3)")
    try:
        reader = AnyReader([path], default_typestore=ts)
        reader.open()
    except Exception as exc:  # rosbags raises its own error types for unreadable bags
        raise ReplayError(f"--bag {path}: not a readable rosbag2 ({type(exc).__name__}: {exc}); expected a "
                          f"rosbag2 folder (MCAP or sqlite3)") from None
    return reader


def run_replay(cfg: NodeConfig, opts: ReplayOptions, processor: FrameProcessor | None = None) -> ReplayRun:
    """Replay ``opts.bag`` through the node's path; ``processor`` may be given (tests)."""
    from unifygeo_ros.progress import tqdm

    t_start = time.perf_counter()
    ts = typestore()
    reader = open_bag(opts.bag, ts)
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        rig_topics = cfg.rig_topics
        if rig_topics:
            if opts.image_topic:
                raise ReplayError(f"--image-topic {opts.image_topic}: not used with a camera rig "
                                  f"({cfg.rig_topics_option} {', '.join(rig_topics)}); expected one or the other")
            _check_rig_topics(topics, cfg)
            for t in cfg.rig_camera_info_topics:
                _check_topic(topics, t, ("sensor_msgs/msg/CameraInfo",), "rig.camera_info_topics")
            image_topic = ", ".join(rig_topics)
        else:
            image_topic = _pick_image_topic(topics, opts.image_topic)
        truth_topic = opts.truth_topic if opts.truth_topic in topics else None
        if opts.truth_topic and truth_topic is None and opts.truth_topic != DEFAULT_TRUTH_TOPIC:
            raise ReplayError(f"--truth-topic {opts.truth_topic}: not in the bag; its topics: {_topic_list(topics)}")
        _check_topic(topics, truth_topic, ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped",
                                           "nav_msgs/msg/Odometry"), "--truth-topic")
        _check_topic(topics, opts.gnss_topic, ("sensor_msgs/msg/NavSatFix",), "--gnss-topic")
        _check_topic(topics, opts.odom_topic, ("nav_msgs/msg/Odometry",), "--odom-topic")
        _check_topic(topics, cfg.camera_info_topic or None, ("sensor_msgs/msg/CameraInfo",),
                     "camera_info_topic")
        track_odom = None
        odom_tf = opts.track and cfg.tracking_odom_source == "tf"
        if odom_tf:
            # the odom_frame -> base_frame transforms on /tf, as the node reads them
            track_odom = "/tf"
            if track_odom not in topics:
                raise ReplayError(f"tracking.odom_source tf: /tf is not in the bag; its topics: {_topic_list(topics)} "
                                  f"(expected {cfg.odom_frame} -> {cfg.base_frame} transforms there; or set "
                                  f"tracking.odom_source topic)")
            _check_topic(topics, track_odom, ("tf2_msgs/msg/TFMessage",), "tracking.odom_source tf")
        elif opts.track:
            track_odom = cfg.tracking_odom_topic or None
            if track_odom is not None and track_odom not in topics:
                raise ReplayError(f"tracking.odom_topic {track_odom}: not in the bag; its topics: "
                                  f"{_topic_list(topics)} (the filter needs the vehicle's odometry; set "
                                  f"tracking.odom_topic, or '' to track without odometry)")
            _check_topic(topics, track_odom, ("nav_msgs/msg/Odometry",), "tracking.odom_topic")
        seed_topic = None
        if opts.track and cfg.tracking_initialpose_topic and cfg.tracking_initialpose_topic in topics:
            seed_topic = cfg.tracking_initialpose_topic
            _check_topic(topics, seed_topic, ("geometry_msgs/msg/PoseWithCovarianceStamped",),
                         "tracking.initialpose_topic")
        meta = drive_metadata(opts.bag)

        # ---- pass 1: truth, /tf_static, the first image's frame
        track = []
        statics = {}
        static_raw = []
        static_msgs = []
        truth_raw = []
        first_frame = None
        wanted = [c for c in reader.connections if c.topic in (truth_topic, "/tf_static")]
        # (rosbags reads every connection when given none)
        for con, t, raw in (reader.messages(connections=wanted) if wanted else ()):
            msg = reader.deserialize(raw, con.msgtype)
            if con.topic == "/tf_static":
                static_raw.append((t, raw, con))
                static_msgs.append(msg)
                for tr in msg.transforms:
                    statics[(tr.header.frame_id.lstrip("/"), tr.child_frame_id.lstrip("/"))] = tr.transform
            else:
                truth_raw.append((t, raw, con))
                pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
                q = pose.orientation
                track.append((stamp_ns(msg.header), pose.position.x, pose.position.y,
                              quaternion_to_yaw(q.x, q.y, q.z, q.w)))
        image_topics = rig_topics or (image_topic,)
        image_cons = [c for c in reader.connections if c.topic in image_topics]
        first_frames = {}
        for t in image_topics:
            first = _first_message(reader, t)
            if first is None:
                raise ReplayError(f"{t}: no messages in the bag")
            first_frames[t] = first.header.frame_id.lstrip("/")
        first_frame = first_frames[image_topics[0]]
        track = np.array(sorted(track), dtype=np.float64).reshape(-1, 4)

        # ---- frames and extrinsic
        extrinsic, ex_source = None, "parameters (camera_extrinsic.*)"
        key = (cfg.base_frame.lstrip("/"), first_frame)
        if rig_topics:
            # the rig's panorama faces base_frame's x axis, from the cameras' mean origin
            probe = RigCameras(cfg)
            for msg in static_msgs:
                probe.update_tf(msg)
            extrinsic = probe.centre([first_frames[t] for t in rig_topics])
            if extrinsic is not None:
                ex_source = f"/tf_static {cfg.base_frame} -> the rig's cameras (mean origin)"
            else:
                extrinsic = Extrinsic(*(float(v) for v in cfg.camera_xyz), 0.0)
                ex_source = "parameters (camera_extrinsic.xyz: the rig's centre)"
        elif key in statics:
            tr = statics[key]
            extrinsic = Extrinsic.from_transform((tr.translation.x, tr.translation.y, tr.translation.z),
                                                 (tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w))
            ex_source = f"/tf_static {key[0]} -> {key[1]}"
        elif meta and meta.get("camera", {}).get("frame_id") == first_frame:
            cam = meta["camera"]
            extrinsic = Extrinsic.from_transform(cam["translation_xyz_m"], cam["rotation_xyzw"])
            ex_source = "drive.json camera"
        from ..geo import MapFrame

        if meta and "map_frame" in meta:
            mf = meta["map_frame"]
            map_frame = MapFrame(mf["crs_wkt"], float(mf["origin_e"]), float(mf["origin_n"]))
            mf_source = "drive.json map_frame"
        elif opts.map_origin is not None:
            map_frame = MapFrame.utm_at(*opts.map_origin)
            mf_source = f"UTM frame at --map-origin {opts.map_origin[0]},{opts.map_origin[1]}"
        else:
            map_frame = None
            mf_source = "the database's frame"

        # ---- the processor (what the node runs)
        t_open = time.perf_counter()
        if processor is None:
            processor = FrameProcessor.open(cfg, extrinsic=extrinsic, map_frame=map_frame)
        else:
            processor = FrameProcessor(processor.localizer, cfg, extrinsic=extrinsic, map_frame=map_frame)
        startup_s = time.perf_counter() - t_open
        # camera_info_topic: the images use the latest CameraInfo of their frame, the first one from the start
        info_cons = [c for c in reader.connections if c.topic == cfg.camera_info_topic] if cfg.camera_info_topic \
            else []
        first_info = _first_message(reader, cfg.camera_info_topic) if info_cons else None
        if first_info is not None:
            processor.update_camera_info(first_info)
        # a camera rig: /tf_static and each camera's first CameraInfo from the start, as a running node has them
        rig_infos = {t: i for i, t in enumerate(cfg.rig_camera_info_topics)}
        rig_index = {t: i for i, t in enumerate(rig_topics)}
        sync = RigSynchronizer.from_config(cfg) if rig_topics else None
        if rig_topics:
            for msg in static_msgs:
                processor.rig.update_tf(msg)
            info_cons = [c for c in reader.connections if c.topic in rig_infos]
            for t, i in rig_infos.items():
                first_info = _first_message(reader, t)
                if first_info is not None:
                    processor.rig.update_camera_info(i, first_info)
        tracker = PriorTracker(cfg, processor.adapter, processor.extrinsic)
        tracking = None
        if opts.track:
            from ..ros_core.tracking import TrackingProcessor

            tracking = TrackingProcessor(processor, cfg)
        T = rosbags_types(ts)

        writer = None
        out_cons = {}
        if opts.out_bag is not None:
            from rosbags.rosbag2 import StoragePlugin, Writer

            out = Path(opts.out_bag)
            if out.exists():
                raise ReplayError(f"--out-bag {out} exists already: expected a new path")
            out.parent.mkdir(parents=True, exist_ok=True)
            writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP if opts.out_storage == "mcap"
                            else StoragePlugin.SQLITE3)
            writer.open()
            for name, mtype in (("pose", "geometry_msgs/msg/PoseWithCovarianceStamped"),
                                ("fix", "sensor_msgs/msg/NavSatFix"), ("result", build.RESULT_TYPE)):
                out_cons[name] = writer.add_connection(f"{OUT_PREFIX}/{name}", mtype, typestore=ts)
            copies = []
            if truth_raw:
                copies.append(truth_raw)
            if static_raw:
                copies.append(static_raw)
            for group in copies:
                con = group[0][2]
                kw = {"offered_qos_profiles": con.ext.offered_qos_profiles} if getattr(con, "ext", None) else {}
                c2 = writer.add_connection(con.topic, con.msgtype, typestore=ts, **kw)
                for t, raw, _ in group:
                    writer.write(c2, t, raw)

        # ---- pass 2: images (and prior topics) in bag order
        n_images = (min(sum(c.msgcount for c in image_cons if c.topic == t) for t in rig_topics) if rig_topics
                    else sum(c.msgcount for c in image_cons))
        if opts.max_frames:
            n_images = min(n_images, opts.max_frames)
        prior_cons = [c for c in reader.connections if c.topic in (opts.gnss_topic, opts.odom_topic, track_odom,
                                                                    seed_topic)]
        cloud_at = set(np.linspace(0, max(n_images - 1, 0), max(opts.clouds, 0)).round().astype(int).tolist()
                       ) if tracking is not None and opts.clouds else set()
        frames: list[FrameRecord] = []
        bar = tqdm(total=n_images, desc="replay", unit="frame", file=sys.stderr, disable=not opts.progress,
                   dynamic_ncols=True)
        t_loop = time.perf_counter()
        pending: list = []          # (tracking) images and initial poses wait until the odometry past their
                                    # stamp was read: (stamp, kind, message), kind 0 an initial pose, 1 an image
        seeds: list[SeedRecord] = []
        gnss_ignored: dict[str, int] = {}   # (tracking) fixes the filter could not use: reason -> count

        def handle_seed(msg, st):
            p = msg.pose.pose
            q = p.orientation
            cov = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)[:2, :2]
            sig = math.sqrt(max(float(np.linalg.eigvalsh(0.5 * (cov + cov.T)).max()), 0.0)) if np.all(
                np.isfinite(cov)) else float("nan")
            reason = tracking.seed(msg)
            seeds.append(SeedRecord(st, len(frames), float(p.position.x), float(p.position.y),
                                    quaternion_to_yaw(q.x, q.y, q.z, q.w), sig, reason is None, reason))
            if reason and opts.progress:
                print(f"replay: {reason}", file=sys.stderr)

        def handle_image(msg, st):
            priors = tracker.priors_for(st)
            if tracking is not None:
                tout = tracking.process(msg, st, priors)
                outcome = tout.frame
            else:
                tout, outcome = None, processor.process(msg, st, priors)
            rec = FrameRecord(st, outcome, _interp_truth(track, st) if len(track) else None, track=tout)
            if tout is not None and tout.released is not None:
                # an earlier frame's pose the receiver vouched for after it: it goes out now, as
                # that frame's filtered pose (scored there)
                held_stamp, held = tout.released
                earlier = next((f for f in reversed(frames) if f.stamp_ns == held_stamp and f.track is not None),
                               None)
                if earlier is not None:
                    earlier.track.filtered = held
                    earlier.published_pose = processor.publishes_pose(held)
                    earlier.released = True
                    if writer is not None and earlier.published_pose:
                        writer.write(out_cons["pose"], st + int(outcome.timings_ms.get("total", 0.0) * 1e6),
                                     ts.serialize_cdr(build.pose_msg(T, held), out_cons["pose"].msgtype))
            if tout is not None and len(frames) in cloud_at and tracking.tracker.poses is not None:
                rec.cloud = _cloud(tracking, processor)
            # what goes on ~/pose: the filtered pose when tracking, else the frame's own
            pose_est = tout.filtered if tout is not None else (outcome.estimate if outcome.ok else None)
            if outcome.ok:
                outcome.estimate.age_ms = outcome.estimate.latency_ms    # offline: processed as it is read
                rec.frame_published = processor.publishes_pose(outcome.estimate)
            if pose_est is not None:
                rec.published_pose = processor.publishes_pose(pose_est)
            if writer is not None:
                t_out = st + int(outcome.timings_ms.get("total", 0.0) * 1e6)
                if rec.published_pose:
                    writer.write(out_cons["pose"], t_out, ts.serialize_cdr(build.pose_msg(T, pose_est),
                                                                           out_cons["pose"].msgtype))
                if outcome.ok:
                    est = outcome.estimate
                    writer.write(out_cons["fix"], t_out, ts.serialize_cdr(build.navsat_msg(T, est),
                                                                          out_cons["fix"].msgtype))
                    writer.write(out_cons["result"], t_out, ts.serialize_cdr(build.result_msg(T, est),
                                                                             build.RESULT_TYPE))
            frames.append(rec)
            bar.set_postfix_str(f"published {sum(f.published_pose for f in frames)}/{len(frames)}")
            bar.update(1)

        def flush(until_ns=None):
            while pending and (until_ns is None or pending[0][0] < until_ns) and not (
                    opts.max_frames and len(frames) >= opts.max_frames):
                st, kind, item = pending.pop(0)
                if kind == 0:
                    handle_seed(item, st)
                else:
                    handle_image(item, st)

        try:
            for con, t, raw in reader.messages(connections=image_cons + prior_cons + info_cons):
                msg = reader.deserialize(raw, con.msgtype)
                if con.topic in rig_infos:
                    processor.rig.update_camera_info(rig_infos[con.topic], msg)
                    continue
                if con.topic == cfg.camera_info_topic:
                    processor.update_camera_info(msg)
                    continue
                if con.topic == opts.gnss_topic:
                    tracker.update_fix(msg)
                    if tracking is not None and cfg.tracking_gnss_evidence:
                        note = tracking.add_fix(msg)        # the filter's GNSS evidence, as in the node
                        if note:
                            gnss_ignored[note] = gnss_ignored.get(note, 0) + 1
                    continue
                if con.topic == seed_topic:
                    if track_odom is not None:
                        # in stamp order: before the waiting images stamped at or after it
                        bisect.insort(pending, (stamp_ns(msg.header), 0, msg), key=lambda e: e[:2])
                    else:
                        handle_seed(msg, stamp_ns(msg.header))
                    continue
                if tracking is not None and con.topic == track_odom and odom_tf:
                    latest = tracking.add_odometry_transforms(msg)
                    if latest is not None:
                        flush(latest)
                    continue
                if tracking is not None and con.topic == track_odom:
                    tracking.add_odometry(msg)
                    flush(stamp_ns(msg.header))
                    if con.topic != opts.odom_topic:
                        continue
                if con.topic == opts.odom_topic:
                    tracker.update_odom(msg)
                    continue
                # one camera's frame, or a rig camera's frame completing sets of the rig
                items = ([(rs, rs.stamp_ns) for rs in sync.add(rig_index[con.topic], msg, stamp_ns(msg.header))]
                         if sync is not None else [(msg, stamp_ns(msg.header))])
                for item, st in items:
                    if tracking is not None and track_odom is not None:
                        bisect.insort(pending, (st, 1, item), key=lambda e: e[:2])
                    elif not (opts.max_frames and len(frames) >= opts.max_frames):
                        handle_image(item, st)
                if opts.max_frames and len(frames) >= opts.max_frames:
                    break
            flush()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        loop_s = time.perf_counter() - t_loop
    finally:
        reader.close()
    if not frames:
        raise ReplayError(f"{image_topic}: no frames were replayed")
    return ReplayRun(frames=frames, image_topic=image_topic, truth_topic=truth_topic, map_frame_source=mf_source,
                     extrinsic_source=ex_source, extrinsic=processor.extrinsic, map_frame=processor.map_frame,
                     truth_track=track if len(track) else None, meta=meta, startup=dict(processor.startup),
                     seconds={"open": round(startup_s, 3), "frames": round(loop_s, 3),
                              "total": round(time.perf_counter() - t_start, 3)},
                     out_bag=str(opts.out_bag) if opts.out_bag else None, tracking=tracking is not None,
                     odom_topic=track_odom, initialpose_topic=seed_topic, seeds=seeds,
                     gnss=({"topic": opts.gnss_topic, "evidence": bool(cfg.tracking_gnss_evidence),
                            "used": sum(int(getattr(f.track, "gnss_fixes", 0) or 0) for f in frames),
                            "dropped": tracking.gnss_dropped, "skipped": tracking.gnss_skipped,
                            "released_late": sum(f.released for f in frames),
                            "ignored": gnss_ignored}
                           if tracking is not None and opts.gnss_topic else None),
                     rig=({**sync.stats.as_dict(), "topics": list(rig_topics), "waiting": sync.pending(),
                           "cameras": processor.rig.status()} if sync is not None else None))


def _cloud(tracking, processor, n: int = 400) -> np.ndarray:
    """A subsample of the filter's particles (base_link positions) in the output map frame."""
    poses = tracking.tracker.poses
    idx = np.linspace(0, len(poses) - 1, min(n, len(poses))).astype(int)
    return np.array([processor.adapter.to_out(float(x), float(y))[:2] for x, y in poses[idx, :2]])
