"""Configuration of a simulated drive (``unifygeo sim drive``): rates, sizes, noise models, names.

Frames (REP-103/105; names in :class:`DriveFrames`)
---------------------------------------------------
* ``map``: the city's local UTM-grid frame (:class:`unifygeo_ros.geo.MapFrame`): x = grid
  east, y = grid north, metres from the city origin (its SW corner), z up, with z = 0 the
  flat ground at ellipsoidal altitude ``ground_altitude_m``. Yaw in ``map`` is ENU yaw from
  GRID east (true bearing = grid bearing + meridian convergence).
* ``odom``: where the wheel-odometry integration starts: it coincides with ``base_link``
  at the first stamp (pose 0, yaw 0); the true ``map -> odom`` transform is in the
  metadata JSON (``odom_origin_in_map``). A kidnap (``kidnap_at_s``) moves the vehicle
  without the odometry seeing it, so it changes the true ``map -> odom``: the metadata
  JSON's ``kidnaps`` give the transform after each.
* ``base_link``: the vehicle, on the ground, x forward, y left, z up.
* ``camera_panorama``: the panorama camera (``camera = "panorama"``), x forward, y left,
  z up (NOT an optical frame); its panoramas follow :mod:`unifygeo_ros.conventions` with
  the forward direction (x axis) at the centre column, i.e. the camera is fixed on the car
  and the panoramas are NOT north-aligned.
* ``camera_front``: the forward-looking pinhole camera (``camera = "pinhole"``), at the
  same place as the panorama camera and with the same axes (x forward = the optical axis,
  y left, z up); its images and ``CameraInfo`` carry this frame_id, as the node expects
  (it takes the camera's forward direction from the x axis of the image's frame).
* ``camera_front_optical``: the same camera in the REP-103 optical convention (z forward,
  x right, y down), a child of ``camera_front`` in ``/tf_static``; ``CameraInfo.K``
  projects points given in this frame.
* ``camera_<name>`` and ``camera_<name>_optical`` (``camera = "rig"``): each rig camera,
  ``camera_<name>`` at the panorama camera's place turned by the camera's yaw about z (x
  forward = its optical axis, y left, z up), its optical frame a child of it; the rig's
  images and ``CameraInfo`` carry the OPTICAL frame (REP-103), so the node's rig takes each
  camera's orientation from ``/tf_static`` (base_link -> camera_<name> -> camera_<name>_optical).
  The names are front, left, right and back when the yaws are 0, 90, -90 and 180 degrees
  (any of them, each once), else cam0, cam1, ... in the order of ``rig_yaws_deg``.
* ``gnss_link``: the GNSS antenna.

Topics (defaults; all configurable through :class:`DriveTopics`)
----------------------------------------------------------------
============================================  ==================================  ===========
``/camera/panorama/image_raw``                sensor_msgs/msg/Image (rgb8)        ``rate_hz``
``/camera/panorama/image_raw/compressed``     sensor_msgs/msg/CompressedImage     (jpeg)
``/camera/front/image_raw``                   sensor_msgs/msg/Image (rgb8)        ``rate_hz`` (pinhole)
``/camera/front/image_raw/compressed``        sensor_msgs/msg/CompressedImage     (pinhole, jpeg)
``/camera/front/camera_info``                 sensor_msgs/msg/CameraInfo          with each pinhole image
``/camera/<name>/image_raw``                  sensor_msgs/msg/Image (rgb8)        ``rate_hz`` per rig camera
``/camera/<name>/image_raw/compressed``       sensor_msgs/msg/CompressedImage     (rig, jpeg)
``/camera/<name>/camera_info``                sensor_msgs/msg/CameraInfo          with each rig image
``/gnss/fix_true``                            sensor_msgs/msg/NavSatFix           ``gnss_rate_hz``
``/gnss/fix``                                 sensor_msgs/msg/NavSatFix (degraded) ``gnss_rate_hz``
``/odom``                                     nav_msgs/msg/Odometry odom->base_link ``odom_rate_hz``
``/tf``                                       tf2_msgs/msg/TFMessage odom->base_link ``odom_rate_hz``
``/ground_truth/pose``                        geometry_msgs/msg/PoseStamped (map) ``odom_rate_hz``
``/tf_static``                                tf2_msgs/msg/TFMessage              once, at t0
``/initialpose``                              geometry_msgs/msg/PoseWithCovarianceStamped  once, at the
                                              (map; with ``initial_pose_sigma``)  first image
============================================  ==================================  ===========

A drive has one camera: the panorama (its image topic) or the pinhole (its image topic
and ``camera_info``), or a rig of pinhole cameras (``camera = "rig"``: one image topic and
one ``camera_info`` per camera; with ``image = "jpeg"`` each camera's images are
CompressedImage on its ``.../compressed`` topic). Each rig camera's frames are stamped
with the image stamp plus its own jitter, uniform in ``[-rig_jitter_s, rig_jitter_s]``
(drawn from a stream of their own, kept inside the drive), and rendered at that time, so
that a reader must pair the cameras' frames by approximate time.

With ``initial_pose_sigma = (sigma_m, sigma_deg)`` the bag holds an operator's initial pose
(RViz's "2D Pose Estimate"): base_link's true pose at the first image's stamp plus Gaussian
noise of those standard deviations (x and y each ``sigma_m``, yaw ``sigma_deg``; drawn from a
stream of its own, so the rest of the drive is the same as without it), with that diagonal
covariance, in ``map``, stamped at the first image and recorded just before it.

How the messages are stamped and recorded: :mod:`unifygeo_ros.sim.bag_writer`; the
sensor models behind the numbers of :class:`DriveConfig`: :mod:`unifygeo_ros.sim.sensors`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

CAMERAS = ("panorama", "pinhole", "rig")
#: the names of rig cameras at these yaws (degrees) when every camera has one of them
RIG_NAMES = {0.0: "front", 90.0: "left", -90.0: "right", 180.0: "back"}


@dataclass(frozen=True)
class DriveTopics:
    image_raw: str = "/camera/panorama/image_raw"
    image_compressed: str = "/camera/panorama/image_raw/compressed"
    pinhole_raw: str = "/camera/front/image_raw"
    pinhole_compressed: str = "/camera/front/image_raw/compressed"
    camera_info: str = "/camera/front/camera_info"
    rig_raw: str = "/camera/{name}/image_raw"            # per rig camera; {name}: front, left, ... or cam0, ...
    rig_compressed: str = "/camera/{name}/image_raw/compressed"
    rig_camera_info: str = "/camera/{name}/camera_info"
    fix_true: str = "/gnss/fix_true"
    fix: str = "/gnss/fix"
    odom: str = "/odom"
    tf: str = "/tf"
    pose_true: str = "/ground_truth/pose"
    tf_static: str = "/tf_static"
    initialpose: str = "/initialpose"


@dataclass(frozen=True)
class DriveFrames:
    map: str = "map"
    odom: str = "odom"
    base_link: str = "base_link"
    camera: str = "camera_panorama"
    gnss: str = "gnss_link"
    pinhole: str = "camera_front"
    pinhole_optical: str = "camera_front_optical"
    rig: str = "camera_{name}"
    rig_optical: str = "camera_{name}_optical"


@dataclass(frozen=True)
class RigCamera:
    """One camera of a rig drive: its name, yaw (degrees, counter-clockwise from base_link's x
    axis), frames and topics."""

    name: str
    yaw_deg: float
    frame: str
    optical_frame: str
    image_topic: str
    camera_info_topic: str


@dataclass(frozen=True)
class DriveConfig:
    duration_s: float = 60.0
    rate_hz: float = 2.0                      # images
    camera: str = "panorama"                  # panorama | pinhole | rig
    pano_size: tuple[int, int] = (512, 256)   # W, H of a panorama
    pinhole_size: tuple[int, int] = (640, 480)  # W, H of a pinhole image
    hfov_deg: float = 90.0                    # pinhole: horizontal field of view (square pixels, no distortion)
    rig_yaws_deg: tuple[float, ...] = (0.0, 90.0, -90.0, 180.0)   # rig: each camera's yaw (CCW from forward)
    rig_jitter_s: float = 0.005               # rig: each camera's stamp = image stamp + U(-jitter, jitter)
    image: str = "raw"                        # raw | jpeg
    storage: str = "mcap"                     # mcap | sqlite3
    jpeg_quality: int = 90
    gnss_rate_hz: float = 5.0
    odom_rate_hz: float = 20.0                # also /ground_truth/pose and /tf
    sim_rate_hz: float = 100.0
    start_time_s: float = 1_700_000_000.0
    ground_altitude_m: float = 0.0            # ellipsoidal height of the map frame's z = 0
    seed: int = 0
    # extrinsics in base_link (x forward, y left, z up), metres
    camera_xyz: tuple[float, float, float] = (0.4, 0.0, 2.2)
    gnss_xyz: tuple[float, float, float] = (-0.5, 0.0, 1.9)
    # speed profile
    speed_min: float = 5.0                    # lowest cruise speed
    speed_max: float = 12.0
    turn_speed_min: float = 3.0               # turns slow the car to sqrt(a_lat R), not below this
    accel_max: float = 1.5                    # m/s^2
    decel_max: float = 2.5                    # m/s^2
    lateral_accel_max: float = 3.0            # m/s^2, slows the car in turns
    path_smoothing_m: float = 7.0             # Gaussian sigma along the road polyline (turn radius ~6.5 m)
    # degraded GNSS
    gnss_sigma_range: tuple[float, float] = (1.0, 3.0)
    gnss_vertical_factor: float = 1.5
    gnss_correlation_s: float = 2.0
    outage_mean_gap_s: float = 50.0
    outage_duration_s: tuple[float, float] = (3.0, 10.0)
    multipath_mean_gap_s: float = 35.0
    multipath_duration_s: tuple[float, float] = (2.0, 5.0)
    multipath_jump_m: tuple[float, float] = (10.0, 30.0)
    # wheel odometry + gyro
    wheel_speed_noise: float = 0.1            # m/s, white, per sim step
    wheel_scale_sigma: float = 0.01           # 1 % scale-factor error
    gyro_noise_dps: float = 0.2               # deg/s, white, per sim step
    gyro_bias_sigma_dps: float = 0.05         # initial bias
    gyro_bias_walk_dps: float = 0.005         # deg/s per sqrt(s)
    # kidnapping: at each of these drive times (s; rounded to the nearest multiple of
    # 1 / odom_rate_hz, a stamp of the truth) the true vehicle is moved to a road position at
    # least kidnap_min_distance_m away, with a new heading; the odometry does not see it
    kidnap_at_s: tuple[float, ...] = ()
    kidnap_min_distance_m: float = 100.0
    # an operator's initial pose on topics.initialpose: the true pose at the first image plus
    # Gaussian noise of (sigma_m, sigma_deg), with that covariance; None: no initial pose
    initial_pose_sigma: tuple[float, float] | None = None
    topics: DriveTopics = field(default_factory=DriveTopics)
    frames: DriveFrames = field(default_factory=DriveFrames)

    def __post_init__(self):
        problems = []
        if not self.duration_s > 0:
            problems.append("duration_s must be > 0")
        for name in ("rate_hz", "gnss_rate_hz", "odom_rate_hz", "sim_rate_hz"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        if self.sim_rate_hz < max(self.rate_hz, self.gnss_rate_hz, self.odom_rate_hz):
            problems.append("sim_rate_hz must be at least every output rate")
        if self.camera not in CAMERAS:
            problems.append("camera must be 'panorama', 'pinhole' or 'rig'")
        object.__setattr__(self, "rig_yaws_deg", tuple(float(y) for y in self.rig_yaws_deg))
        if self.camera == "rig":
            problems += self._rig_problems()
        if not 1.0 <= self.hfov_deg < 179.0:
            problems.append("hfov_deg must be in [1, 179)")
        pw, ph = self.pinhole_size
        if pw < 2 or ph < 2:
            problems.append("pinhole_size (W, H) must be at least 2 x 2")
        if self.image not in ("raw", "jpeg"):
            problems.append("image must be 'raw' or 'jpeg'")
        if self.storage not in ("mcap", "sqlite3"):
            problems.append("storage must be 'mcap' or 'sqlite3'")
        w, h = self.pano_size
        if w < 8 or h < 4:
            problems.append("pano_size (W, H) must be at least 8 x 4")
        if not (0 < self.turn_speed_min <= self.speed_min < self.speed_max):
            problems.append("need 0 < turn_speed_min <= speed_min < speed_max")
        for name in ("wheel_speed_noise", "wheel_scale_sigma", "gyro_noise_dps", "gyro_bias_sigma_dps",
                     "gyro_bias_walk_dps"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                problems.append(f"{name} must be a finite number >= 0")
        # on the truth's stamps (odom_rate_hz), so that the truth has a sample at each jump
        rate = self.odom_rate_hz if self.odom_rate_hz > 0 else 1.0
        kidnaps = tuple(sorted(round(float(t) * rate) / rate for t in self.kidnap_at_s))
        object.__setattr__(self, "kidnap_at_s", kidnaps)
        if any(not 0 < t < self.duration_s for t in kidnaps):
            problems.append("every kidnap time must be inside the drive: 0 < kidnap_at_s < duration_s")
        if len(set(kidnaps)) != len(kidnaps):
            problems.append("kidnap times must be distinct")
        if not self.kidnap_min_distance_m > 0:
            problems.append("kidnap_min_distance_m must be > 0")
        if self.initial_pose_sigma is not None:
            sig = tuple(float(v) for v in self.initial_pose_sigma)
            object.__setattr__(self, "initial_pose_sigma", sig)
            if len(sig) != 2 or not all(math.isfinite(v) and v > 0 for v in sig) or sig[1] >= 180.0:
                problems.append(f"initial_pose_sigma must be (sigma_m, sigma_deg), both > 0 and sigma_deg < 180, "
                                f"got {list(sig)}")
        if problems:
            raise ValueError("; ".join(problems))

    def _rig_problems(self) -> list[str]:
        out = []
        yaws = self.rig_yaws_deg
        if not yaws or not all(math.isfinite(y) and -180.0 <= y <= 180.0 for y in yaws):
            out.append(f"rig_yaws_deg must be one or more yaws in [-180, 180] degrees, got {list(yaws)}")
        elif len({round(y % 360.0, 9) for y in yaws}) != len(yaws):
            out.append(f"rig_yaws_deg must be distinct directions, got {list(yaws)}")
        if not (math.isfinite(self.rig_jitter_s) and 0.0 <= self.rig_jitter_s < 0.5 / max(self.rate_hz, 1e-9)):
            out.append(f"rig_jitter_s must be >= 0 and below half the image period, got {self.rig_jitter_s}")
        for kind, names, where in (("topic", ("rig_raw", "rig_compressed", "rig_camera_info"), self.topics),
                                   ("frame", ("rig", "rig_optical"), self.frames)):
            for name in names:
                if "{name}" not in getattr(where, name):
                    out.append(f"{kind} {name} must contain {{name}} (the camera's name), got "
                               f"{getattr(where, name)!r}")
        return out

    def rig_cameras(self) -> list[RigCamera]:
        """The rig's cameras in the order of ``rig_yaws_deg`` (none unless ``camera == "rig"``)."""
        if self.camera != "rig":
            return []
        norm = [180.0 if y == -180.0 else y for y in self.rig_yaws_deg]
        named = all(y in RIG_NAMES for y in norm) and len(set(norm)) == len(norm)
        out = []
        for i, yaw in enumerate(self.rig_yaws_deg):
            name = RIG_NAMES[norm[i]] if named else f"cam{i}"
            image_topic = self.topics.rig_raw if self.image == "raw" else self.topics.rig_compressed
            out.append(RigCamera(name, yaw, self.frames.rig.format(name=name),
                                 self.frames.rig_optical.format(name=name), image_topic.format(name=name),
                                 self.topics.rig_camera_info.format(name=name)))
        return out

    @property
    def image_size(self) -> tuple[int, int]:
        """W, H of the camera's images."""
        w, h = self.pano_size if self.camera == "panorama" else self.pinhole_size
        return int(w), int(h)

    @property
    def camera_frame(self) -> str:
        """frame_id of the images (and of ``CameraInfo``); a rig: its first camera's (optical) frame."""
        if self.camera == "rig":
            return self.rig_cameras()[0].optical_frame
        return self.frames.camera if self.camera == "panorama" else self.frames.pinhole

    @property
    def image_topic(self) -> str:
        tp = self.topics
        if self.camera == "rig":
            return self.rig_cameras()[0].image_topic
        if self.camera == "panorama":
            return tp.image_raw if self.image == "raw" else tp.image_compressed
        return tp.pinhole_raw if self.image == "raw" else tp.pinhole_compressed

    def pinhole_k(self) -> list[float]:
        """Row-major 3 x 3 intrinsic matrix K of the pinhole camera (ROS / OpenCV pixel coordinates:
        the centre of pixel (row r, column c) is at u = c, v = r): fx = fy = (W / 2) / tan(hfov / 2),
        principal point (cx, cy) = ((W - 1) / 2, (H - 1) / 2), the image centre."""
        w, h = self.pinhole_size
        f = 0.5 * w / math.tan(math.radians(self.hfov_deg) / 2)
        return [f, 0.0, (w - 1) / 2.0, 0.0, f, (h - 1) / 2.0, 0.0, 0.0, 1.0]

    def to_json(self) -> dict:
        return asdict(self)
