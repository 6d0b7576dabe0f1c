"""The rosbag2 of a simulated drive: its clock, its messages and the writer.

Every message is stamped from one simulated clock starting at ``start_time_s`` and
written with bag time == ``header.stamp``. ``/tf_static`` is recorded with the static-TF
QoS (reliable, transient-local, keep-last 1) so that ``ros2 bag play`` latches it; a
reader of the bag itself does not need that. A pinhole camera's ``CameraInfo`` has the
stamp and frame_id of its image and is written right after it. An initial pose
(``initial_pose_sigma``) is stamped at the first image and written just before it. A rig camera's frames are
stamped with the image stamp plus the camera's jitter (:func:`rig_stamps`) and rendered
from the true pose at that stamp. The frames and topics are listed in
:mod:`unifygeo_ros.sim.drive_config`.

Images are rendered and written one at a time, so a drive of any length needs the memory
of one image (and of its per-step signals: about 0.3 KB per second of driving).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from unifygeo_ros.conventions import yaw_to_quaternion
from unifygeo_ros.sim.drive_config import DriveConfig
from unifygeo_ros.sim.sensors import GnssErrors, Odometry
from unifygeo_ros.sim.trajectory import KidnappedTrajectory, Trajectory

# base_link-like camera frame (x forward, y left, z up) -> REP-103 optical frame (z forward,
# x right, y down): the rotation whose columns are the optical axes in the parent, (x, y, z, w)
OPTICAL_ROTATION_XYZW = (-0.5, 0.5, -0.5, 0.5)

_RIG_JITTER_SEED = 0x72696a74    # the stream of the rig cameras' stamp jitter (the others do not depend on it)
_INITIAL_POSE_SEED = 0x696e6974  # the stream of the initial pose's noise (the others do not depend on it)

# ---------------------------------------------------------------------------------------
# Clock
# ---------------------------------------------------------------------------------------


def stamps(start_ns: int, rate_hz: float, duration_s: float) -> np.ndarray:
    """Integer-nanosecond stamps k / rate for k = 0 .. while k / rate <= duration."""
    n = int(math.floor(duration_s * rate_hz + 1e-9)) + 1
    return start_ns + np.round(np.arange(n) * (1e9 / rate_hz)).astype(np.int64)


def rig_stamps(cfg: DriveConfig, t_img: np.ndarray) -> np.ndarray:
    """``(n_images, n_cameras)`` stamps (ns) of a rig's frames: each image stamp plus every
    camera's own jitter, uniform in ``[-rig_jitter_s, rig_jitter_s]``, kept inside the drive."""
    n_cams = len(cfg.rig_yaws_deg)
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), _RIG_JITTER_SEED]))
    jitter = np.round(rng.uniform(-cfg.rig_jitter_s, cfg.rig_jitter_s, (len(t_img), n_cams)) * 1e9).astype(np.int64)
    start = int(t_img[0]) if len(t_img) else 0
    end = start + int(round(cfg.duration_s * 1e9))
    return np.clip(np.asarray(t_img, dtype=np.int64)[:, None] + jitter, start, end)


def initial_pose(cfg: DriveConfig, truth: dict) -> tuple[float, float, float, np.ndarray] | None:
    """The operator's initial pose of a drive with ``cfg.initial_pose_sigma``: ``truth`` (the
    true pose at the first image) plus Gaussian noise of (sigma_m, sigma_deg) drawn from its own
    stream, and its 6 x 6 covariance (x, y, yaw; z, roll and pitch nominal); None without one."""
    if cfg.initial_pose_sigma is None:
        return None
    sigma_m, sigma_deg = cfg.initial_pose_sigma
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), _INITIAL_POSE_SEED]))
    dx, dy, dyaw = rng.normal(0.0, 1.0, 3) * np.array([sigma_m, sigma_m, math.radians(sigma_deg)])
    yaw = math.atan2(math.sin(truth["yaw"] + dyaw), math.cos(truth["yaw"] + dyaw))
    cov = np.zeros((6, 6))
    cov[0, 0] = cov[1, 1] = sigma_m ** 2
    cov[2, 2] = cov[3, 3] = cov[4, 4] = 1e-6     # planar: z, roll and pitch known
    cov[5, 5] = math.radians(sigma_deg) ** 2
    return truth["x"] + float(dx), truth["y"] + float(dy), yaw, cov


class DriveSignals:
    """The true pose and the simulated odometry of a drive at integer-nanosecond stamps."""

    def __init__(self, traj: Trajectory | KidnappedTrajectory, odo: Odometry, start_ns: int):
        self.traj = traj
        self.odo = odo
        self.start_ns = start_ns
        self._odo_t_ns = start_ns + np.round(odo.t * 1e9).astype(np.int64)

    def sec(self, t_ns):
        """Seconds from the first stamp."""
        return (np.asarray(t_ns) - self.start_ns) / 1e9

    def truth(self, t_ns) -> dict[str, float]:
        """The true pose and rates (:meth:`Trajectory.at`) at ``t_ns``."""
        return {k: float(v) for k, v in self.traj.at(self.sec(t_ns)).items()}

    def odom(self, t_ns) -> dict:
        """The odometry pose and rates at ``t_ns`` (interpolated); ``cov`` is that of the first
        integration step at or after ``t_ns``."""
        odo = self.odo
        tt = self.sec(t_ns)
        vals = {k: float(np.interp(tt, odo.t, getattr(odo, k))) for k in ("x", "y", "yaw", "speed", "yaw_rate")}
        j = int(np.clip(np.searchsorted(self._odo_t_ns, t_ns), 0, len(odo.t) - 1))
        vals["cov"] = odo.cov[j]
        return vals


# ---------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------


class _Msgs:
    """Builds rosbags message objects from a typestore."""

    def __init__(self, ts):
        self.ts = ts
        T = ts.types
        self.Header = T["std_msgs/msg/Header"]
        self.Time = T["builtin_interfaces/msg/Time"]
        self.Image = T["sensor_msgs/msg/Image"]
        self.CompressedImage = T["sensor_msgs/msg/CompressedImage"]
        self.CameraInfo = T["sensor_msgs/msg/CameraInfo"]
        self.RegionOfInterest = T["sensor_msgs/msg/RegionOfInterest"]
        self.NavSatFix = T["sensor_msgs/msg/NavSatFix"]
        self.NavSatStatus = T["sensor_msgs/msg/NavSatStatus"]
        self.Odometry = T["nav_msgs/msg/Odometry"]
        self.PoseStamped = T["geometry_msgs/msg/PoseStamped"]
        self.PoseWithCovarianceStamped = T["geometry_msgs/msg/PoseWithCovarianceStamped"]
        self.PoseWithCovariance = T["geometry_msgs/msg/PoseWithCovariance"]
        self.TwistWithCovariance = T["geometry_msgs/msg/TwistWithCovariance"]
        self.Pose = T["geometry_msgs/msg/Pose"]
        self.Twist = T["geometry_msgs/msg/Twist"]
        self.Point = T["geometry_msgs/msg/Point"]
        self.Vector3 = T["geometry_msgs/msg/Vector3"]
        self.Quaternion = T["geometry_msgs/msg/Quaternion"]
        self.Transform = T["geometry_msgs/msg/Transform"]
        self.TransformStamped = T["geometry_msgs/msg/TransformStamped"]
        self.TFMessage = T["tf2_msgs/msg/TFMessage"]

    def header(self, t_ns: int, frame: str):
        return self.Header(stamp=self.Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000)),
                           frame_id=frame)

    def quat(self, yaw: float):
        qx, qy, qz, qw = yaw_to_quaternion(yaw)
        return self.Quaternion(x=qx, y=qy, z=qz, w=qw)

    def transform(self, t_ns, parent, child, xyz, yaw=0.0, rotation_xyzw=None):
        if rotation_xyzw is None:
            rotation = self.quat(yaw)
        else:
            rotation = self.Quaternion(**{k: float(v) for k, v in zip("xyzw", rotation_xyzw)})
        return self.TransformStamped(
            header=self.header(t_ns, parent), child_frame_id=child,
            transform=self.Transform(translation=self.Vector3(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
                                     rotation=rotation))

    def camera_info(self, t_ns, frame, width, height, k):
        """An ideal pinhole (plumb_bob, zero distortion): K, R = I, P = [K | 0]."""
        k = np.asarray(k, dtype=np.float64)
        proj = np.zeros(12)
        proj[[0, 1, 2, 4, 5, 6, 8, 9, 10]] = k
        return self.CameraInfo(header=self.header(t_ns, frame), height=int(height), width=int(width),
                               distortion_model="plumb_bob", d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=proj,
                               binning_x=0, binning_y=0,
                               roi=self.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                                         do_rectify=False))

    def pose(self, x, y, z, yaw):
        return self.Pose(position=self.Point(x=float(x), y=float(y), z=float(z)), orientation=self.quat(yaw))

    def navsatfix(self, t_ns, frame, lat, lon, alt, status, cov_diag, cov_type):
        cov = np.zeros(9)
        if cov_diag is not None:
            cov[[0, 4, 8]] = cov_diag
        return self.NavSatFix(header=self.header(t_ns, frame),
                              status=self.NavSatStatus(status=int(status), service=1),
                              latitude=float(lat), longitude=float(lon), altitude=float(alt),
                              position_covariance=cov, position_covariance_type=int(cov_type))


# ---------------------------------------------------------------------------------------
# The bag
# ---------------------------------------------------------------------------------------


@dataclass
class BagContents:
    """What :func:`write_messages` recorded."""

    topic_types: dict[str, str]   # topic -> message type, in the order of the connections
    image_topic: str              # a rig: its first camera's
    counts: dict[str, int]        # messages written per topic
    fix_err: list[float]          # horizontal error (m) of every degraded message with a fix


def write_messages(out: Path, city, cfg: DriveConfig, signals: DriveSignals, gerr: GnssErrors,
                   t_img: np.ndarray, t_gnss: np.ndarray, t_odom: np.ndarray, render: Callable,
                   progress: bool = True) -> BagContents:
    """Write every message of the drive, in time order, to the new rosbag2 directory ``out``.

    ``t_img``, ``t_gnss`` and ``t_odom`` are the stamps (ns) of the images, the GNSS
    fixes and the odometry / true pose / tf; ``gerr`` the degraded receiver's errors at
    ``t_gnss``; ``render(city, xy, yaw_deg, width, height, camera_height_m)`` draws the
    camera's image (a panorama or a pinhole view, ``cfg.camera``) looking along ``yaw_deg``
    (a rig camera: the vehicle's yaw plus the camera's).
    """
    import cv2
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from unifygeo_ros.progress import tqdm

    start_ns = signals.start_ns
    frame = city.frame
    fr, tp = cfg.frames, cfg.topics
    W, H = cfg.image_size
    pinhole = cfg.camera == "pinhole"
    cam_frame = cfg.camera_frame
    rig = cfg.rig_cameras()                       # [] unless camera == "rig"
    rig_of = {}                                   # rig topic -> (camera index, is its CameraInfo)
    for k, rc in enumerate(rig):
        rig_of[rc.image_topic] = (k, False)
        rig_of[rc.camera_info_topic] = (k, True)

    ts = get_typestore(Stores.ROS2_JAZZY)
    M = _Msgs(ts)
    static_qos = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                     QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
    image_topic = cfg.image_topic
    image_type = "sensor_msgs/msg/Image" if cfg.image == "raw" else "sensor_msgs/msg/CompressedImage"
    topic_types = {tp.tf_static: "tf2_msgs/msg/TFMessage"}
    if rig:
        for rc in rig:
            topic_types[rc.image_topic] = image_type
            topic_types[rc.camera_info_topic] = "sensor_msgs/msg/CameraInfo"
    else:
        topic_types[image_topic] = image_type
    if pinhole:
        topic_types[tp.camera_info] = "sensor_msgs/msg/CameraInfo"
    if cfg.initial_pose_sigma is not None:
        topic_types[tp.initialpose] = "geometry_msgs/msg/PoseWithCovarianceStamped"
    topic_types.update({
        tp.fix_true: "sensor_msgs/msg/NavSatFix",
        tp.fix: "sensor_msgs/msg/NavSatFix",
        tp.odom: "nav_msgs/msg/Odometry",
        tp.tf: "tf2_msgs/msg/TFMessage",
        tp.pose_true: "geometry_msgs/msg/PoseStamped",
    })
    if len(topic_types) != 6 + (2 * len(rig) if rig else 1 + int(pinhole)) + int(cfg.initial_pose_sigma is not None):
        raise ValueError("topic names must be distinct")
    k_matrix = cfg.pinhole_k() if pinhole or rig else None
    t_rig = rig_stamps(cfg, t_img) if rig else None
    counts = {k: 0 for k in topic_types}

    gx, gy, gz = cfg.gnss_xyz
    cx, cy, cz = cfg.camera_xyz

    def antenna_xy(p):
        c, s = math.cos(p["yaw"]), math.sin(p["yaw"])
        return p["x"] + c * gx - s * gy, p["y"] + s * gx + c * gy

    # All events, time-ordered (ties: tf_static first, then by topic order below).
    order = {tp.tf_static: 0, tp.pose_true: 1, tp.odom: 2, tp.tf: 3, tp.fix_true: 4, tp.fix: 5, image_topic: 6}
    if pinhole:
        order[tp.camera_info] = 7
    for k, rc in enumerate(rig):
        order[rc.image_topic], order[rc.camera_info_topic] = 6 + 2 * k, 7 + 2 * k
    events: list[tuple[int, int, str, int]] = [(start_ns, order[tp.tf_static], tp.tf_static, 0)]
    for i, t in enumerate(t_odom):
        for topic in (tp.pose_true, tp.odom, tp.tf):
            events.append((int(t), order[topic], topic, i))
    for i, t in enumerate(t_gnss):
        events.append((int(t), order[tp.fix_true], tp.fix_true, i))
        if gerr.published[i]:
            events.append((int(t), order[tp.fix], tp.fix, i))
    for i, t in enumerate(t_img):
        if rig:
            for k, rc in enumerate(rig):
                for topic in (rc.image_topic, rc.camera_info_topic):
                    events.append((int(t_rig[i, k]), order[topic], topic, i))
            continue
        events.append((int(t), order[image_topic], image_topic, i))
        if pinhole:
            events.append((int(t), order[tp.camera_info], tp.camera_info, i))
    seed_pose = None
    if cfg.initial_pose_sigma is not None and len(t_img):
        # the operator's pose of base_link at the first image, recorded just before that image
        order[tp.initialpose] = 0.5      # after /tf_static, before the rest at that stamp
        events.append((int(t_img[0]), order[tp.initialpose], tp.initialpose, 0))
        seed_pose = initial_pose(cfg, signals.truth(int(t_img[0])))
    events.sort()

    plugin = StoragePlugin.MCAP if cfg.storage == "mcap" else StoragePlugin.SQLITE3
    img_bar = tqdm(total=len(t_img) * max(len(rig), 1), unit="img",
                   desc="drive: rig images" if rig else "drive: pinhole images" if pinhole else "drive: panoramas",
                   file=sys.stderr,
                   disable=not progress, dynamic_ncols=True)
    fix_err = []
    with Writer(out, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, mtype in topic_types.items():
            kwargs = {"offered_qos_profiles": [static_qos]} if topic == tp.tf_static else {}
            conns[topic] = writer.add_connection(topic, mtype, typestore=ts, **kwargs)
        for t_ns, _, topic, i in events:
            if topic == tp.tf_static:
                transforms = [] if rig else [M.transform(t_ns, fr.base_link, cam_frame, cfg.camera_xyz)]
                if pinhole:
                    transforms.append(M.transform(t_ns, cam_frame, fr.pinhole_optical, (0.0, 0.0, 0.0),
                                                  rotation_xyzw=OPTICAL_ROTATION_XYZW))
                for rc in rig:
                    transforms.append(M.transform(t_ns, fr.base_link, rc.frame, cfg.camera_xyz,
                                                  math.radians(rc.yaw_deg)))
                    transforms.append(M.transform(t_ns, rc.frame, rc.optical_frame, (0.0, 0.0, 0.0),
                                                  rotation_xyzw=OPTICAL_ROTATION_XYZW))
                transforms.append(M.transform(t_ns, fr.base_link, fr.gnss, cfg.gnss_xyz))
                msg = M.TFMessage(transforms=transforms)
            elif topic == tp.camera_info and pinhole:
                msg = M.camera_info(t_ns, cam_frame, W, H, k_matrix)
            elif topic in rig_of and rig_of[topic][1]:
                msg = M.camera_info(t_ns, rig[rig_of[topic][0]].optical_frame, W, H, k_matrix)
            elif topic == tp.initialpose and seed_pose is not None:
                x0, y0, yaw0, cov0 = seed_pose
                msg = M.PoseWithCovarianceStamped(header=M.header(t_ns, fr.map), pose=M.PoseWithCovariance(
                    pose=M.pose(x0, y0, 0.0, yaw0), covariance=cov0.reshape(-1)))
            elif topic == tp.pose_true:
                p = signals.truth(t_ns)
                msg = M.PoseStamped(header=M.header(t_ns, fr.map), pose=M.pose(p["x"], p["y"], 0.0, p["yaw"]))
            elif topic in (tp.odom, tp.tf):
                o = signals.odom(t_ns)
                if topic == tp.tf:
                    msg = M.TFMessage(transforms=[M.transform(t_ns, fr.odom, fr.base_link, (o["x"], o["y"], 0.0),
                                                              o["yaw"])])
                else:
                    pc = np.zeros((6, 6))
                    c3 = o["cov"]
                    idx = [0, 1, 5]
                    for a in range(3):
                        for b in range(3):
                            pc[idx[a], idx[b]] = c3[a, b]
                    pc[2, 2] = pc[3, 3] = pc[4, 4] = 1e-6   # planar vehicle: z, roll, pitch known
                    pc[0, 0] = max(pc[0, 0], 1e-6)
                    pc[1, 1] = max(pc[1, 1], 1e-6)
                    pc[5, 5] = max(pc[5, 5], 1e-8)
                    tc = np.diag([cfg.wheel_speed_noise ** 2 + (cfg.wheel_scale_sigma * o["speed"]) ** 2,
                                  1e-4, 1e-4, 1e-4, 1e-4,
                                  math.radians(cfg.gyro_noise_dps) ** 2 + math.radians(cfg.gyro_bias_sigma_dps) ** 2])
                    twist = M.Twist(linear=M.Vector3(x=o["speed"], y=0.0, z=0.0),
                                    angular=M.Vector3(x=0.0, y=0.0, z=o["yaw_rate"]))
                    msg = M.Odometry(header=M.header(t_ns, fr.odom), child_frame_id=fr.base_link,
                                     pose=M.PoseWithCovariance(pose=M.pose(o["x"], o["y"], 0.0, o["yaw"]),
                                                               covariance=pc.reshape(-1)),
                                     twist=M.TwistWithCovariance(twist=twist, covariance=tc.reshape(-1)))
            elif topic in (tp.fix_true, tp.fix):
                p = signals.truth(t_ns)
                ax, ay = antenna_xy(p)
                alt = cfg.ground_altitude_m + gz
                if topic == tp.fix_true:
                    lat, lon = frame.to_latlon(ax, ay)
                    msg = M.navsatfix(t_ns, fr.gnss, lat, lon, alt, 0, [1e-4, 1e-4, 1e-4], 2)
                elif not gerr.fix[i]:
                    msg = M.navsatfix(t_ns, fr.gnss, math.nan, math.nan, math.nan, -1, None, 0)
                else:
                    # the error is true-north ENU: turn it into the grid by -gamma
                    gamma = math.radians(frame.convergence_deg(ax, ay))
                    ee, en, eu = gerr.err_enu[i]
                    dx = ee * math.cos(gamma) - en * math.sin(gamma)
                    dy = ee * math.sin(gamma) + en * math.cos(gamma)
                    lat, lon = frame.to_latlon(ax + dx, ay + dy)
                    msg = M.navsatfix(t_ns, fr.gnss, lat, lon, alt + eu, 0, gerr.sigma_enu[i] ** 2, 2)
                    fix_err.append(math.hypot(ee, en))
            else:
                p = signals.truth(t_ns)
                c, s = math.cos(p["yaw"]), math.sin(p["yaw"])
                cam_xy = np.array([p["x"] + c * cx - s * cy, p["y"] + s * cx + c * cy])
                look = math.degrees(p["yaw"]) + (rig[rig_of[topic][0]].yaw_deg if rig else 0.0)
                rgb = np.ascontiguousarray(render(city, cam_xy, look, W, H, camera_height_m=cz))
                if rgb.shape != (H, W, 3) or rgb.dtype != np.uint8:
                    raise RuntimeError(f"the renderer returned {rgb.shape} {rgb.dtype}; expected ({H}, {W}, 3) uint8")
                frame_id = rig[rig_of[topic][0]].optical_frame if rig else cam_frame
                if cfg.image == "raw":
                    msg = M.Image(header=M.header(t_ns, frame_id), height=H, width=W, encoding="rgb8",
                                  is_bigendian=0, step=W * 3, data=rgb.reshape(-1))
                else:
                    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                           [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
                    if not ok:
                        raise RuntimeError("JPEG encoding failed")
                    msg = M.CompressedImage(header=M.header(t_ns, frame_id), format="rgb8; jpeg compressed bgr8",
                                            data=np.frombuffer(buf.tobytes(), dtype=np.uint8))
                img_bar.update(1)
            writer.write(conns[topic], t_ns, ts.serialize_cdr(msg, topic_types[topic]))
            counts[topic] += 1
    img_bar.close()
    return BagContents(topic_types, image_topic, counts, fix_err)
