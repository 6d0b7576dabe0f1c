"""Configuration of a simulated drive (``unifygeo sim drive``): rates, sizes, noise models, names.

Frames (REP-103/105; names in :class:`DriveFrames`)
---------------------------------------------------
* ``map``: the city's local UTM-grid frame (:class:`unifygeo_ros.geo.MapFrame`): x = grid
  east, y = grid north, metres from the city origin (its SW corner), z up, with z = 0 the
  flat ground at ellipsoidal altitude ``ground_altitude_m``. Yaw in ``map`` is ENU yaw from
  GRID east (true bearing = grid bearing + meridian convergence).
* ``odom``: where the wheel-odometry integration starts: it coincides with ``base_link``
  at the first stamp (pose 0, yaw 0); the true ``map -> odom`` transform is in the
  metadata JSON (``odom_origin_in_map``).
* ``base_link``: the vehicle, on the ground, x forward, y left, z up.
* ``camera_panorama``: the panorama camera, x forward, y left, z up (NOT an optical
  frame); its panoramas follow :mod:`unifygeo_ros.conventions` with the forward
  direction (x axis) at the centre column, i.e. the camera is fixed on the car and the
  panoramas are NOT north-aligned.
* ``gnss_link``: the GNSS antenna.

Topics (defaults; all configurable through :class:`DriveTopics`)
----------------------------------------------------------------
============================================  ==================================  ===========
``/camera/panorama/image_raw``                sensor_msgs/msg/Image (rgb8)        ``rate_hz``
``/camera/panorama/image_raw/compressed``     sensor_msgs/msg/CompressedImage     (jpeg)
``/gnss/fix_true``                            sensor_msgs/msg/NavSatFix           ``gnss_rate_hz``
``/gnss/fix``                                 sensor_msgs/msg/NavSatFix (degraded) ``gnss_rate_hz``
``/odom``                                     nav_msgs/msg/Odometry odom->base_link ``odom_rate_hz``
``/tf``                                       tf2_msgs/msg/TFMessage odom->base_link ``odom_rate_hz``
``/ground_truth/pose``                        geometry_msgs/msg/PoseStamped (map) ``odom_rate_hz``
``/tf_static``                                tf2_msgs/msg/TFMessage              once, at t0
============================================  ==================================  ===========

How the messages are stamped and recorded: :mod:`unifygeo_ros.sim.bag_writer`; the
sensor models behind the numbers of :class:`DriveConfig`: :mod:`unifygeo_ros.sim.sensors`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DriveTopics:
    image_raw: str = "/camera/panorama/image_raw"
    image_compressed: str = "/camera/panorama/image_raw/compressed"
    fix_true: str = "/gnss/fix_true"
    fix: str = "/gnss/fix"
    odom: str = "/odom"
    tf: str = "/tf"
    pose_true: str = "/ground_truth/pose"
    tf_static: str = "/tf_static"


@dataclass(frozen=True)
class DriveFrames:
    map: str = "map"
    odom: str = "odom"
    base_link: str = "base_link"
    camera: str = "camera_panorama"
    gnss: str = "gnss_link"


@dataclass(frozen=True)
class DriveConfig:
    duration_s: float = 60.0
    rate_hz: float = 2.0                      # panoramas
    pano_size: tuple[int, int] = (512, 256)   # W, H
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
        if self.image not in ("raw", "jpeg"):
            problems.append("image must be 'raw' or 'jpeg'")
        if self.storage not in ("mcap", "sqlite3"):
            problems.append("storage must be 'mcap' or 'sqlite3'")
        w, h = self.pano_size
        if w < 8 or h < 4:
            problems.append("pano_size (W, H) must be at least 8 x 4")
        if not (0 < self.turn_speed_min <= self.speed_min < self.speed_max):
            problems.append("need 0 < turn_speed_min <= speed_min < speed_max")
        if problems:
            raise ValueError("; ".join(problems))

    def to_json(self) -> dict:
        return asdict(self)
