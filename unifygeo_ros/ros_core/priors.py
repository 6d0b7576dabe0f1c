"""GNSS and odometry messages -> the localizer's position and heading priors.

**Position prior** from ``sensor_msgs/NavSatFix``: a fix with ``status >= STATUS_FIX`` and a
finite latitude / longitude is projected into the database's frame (through the database's
CRS, so no map-frame assumption is made). Its radius is ``gnss_sigma_scale x sigma_h +
gnss_margin_m`` (``sigma_h`` = the larger of the east / north standard deviations of
``position_covariance``), at least ``gnss_min_radius_m``; a fix with
``COVARIANCE_TYPE_UNKNOWN`` gets ``gnss_radius_m``. The margin covers the antenna-to-camera
offset.

**Heading prior** from ``nav_msgs/Odometry``: an odometry's pose is in its own frame
(usually ``odom``), whose yaw is NOT the map's. It is used only

* ``odom_heading_mode = map_frame``: when ``header.frame_id`` equals ``map_frame`` (e.g. the
  output of an EKF running in the map frame); other frames are ignored and reported;
* ``odom_heading_mode = offset``: ``map yaw = odometry yaw + odom_yaw_offset_deg``, for a
  fixed, known odom -> map rotation (the user's responsibility).

The odometry's yaw is base_link's; the prior is for the camera's forward yaw
(``+ camera_extrinsic.yaw_deg``), turned into the database's frame. Its half-width is
``heading_sigma_scale x sigma_yaw``, at least ``heading_min_half_width_deg``.

Either message is used only when its stamp is within ``priors.max_age_s`` of the image's.
Thread-safe: the node updates from subscription callbacks and reads from its worker.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from ..types import HeadingPrior, PositionPrior
from .geometry import Extrinsic, FrameAdapter, quaternion_to_yaw, wrap_pi

STATUS_FIX = 0                 # sensor_msgs/NavSatStatus
COVARIANCE_TYPE_UNKNOWN = 0    # sensor_msgs/NavSatFix


def stamp_ns(header) -> int:
    """``std_msgs/Header`` stamp -> integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def fix_position(msg, db) -> tuple[tuple[float, float] | None, str | None]:
    """A ``sensor_msgs/NavSatFix``'s position in the database frame ``db`` (a
    :class:`~unifygeo_ros.geo.MapFrame`), or ``(None, why)`` for a fix without a fix status or
    with a latitude / longitude that is not finite or not a latitude."""
    status = int(msg.status.status)
    if status < STATUS_FIX:
        return None, f"NavSatFix status {status} (no fix)"
    lat, lon = float(msg.latitude), float(msg.longitude)
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90.0:
        return None, "NavSatFix with a non-finite or impossible latitude / longitude"
    x, y = db.from_latlon(lat, lon)
    return (float(x), float(y)), None


@dataclass
class PriorInfo:
    """What the tracker used for one frame (or why not)."""

    position: PositionPrior | None = None
    heading: HeadingPrior | None = None
    position_note: str = ""
    heading_note: str = ""


class PriorTracker:
    def __init__(self, cfg, adapter: FrameAdapter, extrinsic: Extrinsic):
        self.cfg = cfg
        self.adapter = adapter
        self.extrinsic = extrinsic
        self._lock = threading.Lock()
        self._fix = None        # (stamp_ns, PositionPrior) or (stamp_ns, None, note)
        self._fix_note = "no NavSatFix received"
        self._odom = None
        self._odom_note = "no Odometry received"
        self.max_age_ns = int(cfg.prior_max_age_s * 1e9)

    def apply_config(self, cfg) -> None:
        """Take the prior settings of a configuration changed at run time."""
        self.cfg = cfg
        self.max_age_ns = int(cfg.prior_max_age_s * 1e9)

    # ---- updates (subscription callbacks / bag reader) ------------------------------------
    def update_fix(self, msg) -> str | None:
        """Store a NavSatFix; returns a note when it cannot serve as a prior (else None)."""
        prior, note = self.fix_to_prior(msg)
        with self._lock:
            self._fix = (stamp_ns(msg.header), prior)
            self._fix_note = note or ""
        return note

    def update_odom(self, msg) -> str | None:
        prior, note = self.odom_to_prior(msg)
        with self._lock:
            self._odom = (stamp_ns(msg.header), prior)
            self._odom_note = note or ""
        return note

    # ---- conversions -----------------------------------------------------------------------
    def fix_to_prior(self, msg) -> tuple[PositionPrior | None, str | None]:
        cfg = self.cfg
        xy, note = fix_position(msg, self.adapter.db)
        if xy is None:
            return None, note
        x, y = xy
        cov = np.asarray(msg.position_covariance, dtype=np.float64).reshape(-1)
        ctype = int(msg.position_covariance_type)
        if ctype == COVARIANCE_TYPE_UNKNOWN or cov.size < 9 or not np.all(np.isfinite(cov[[0, 4]])) \
                or cov[0] < 0 or cov[4] < 0:
            radius = cfg.gnss_radius_m
        else:
            sigma = math.sqrt(max(cov[0], cov[4]))
            radius = max(cfg.gnss_min_radius_m, cfg.gnss_sigma_scale * sigma + cfg.gnss_margin_m)
        return PositionPrior(x, y, radius), None

    def odom_to_prior(self, msg) -> tuple[HeadingPrior | None, str | None]:
        cfg = self.cfg
        mode = cfg.odom_heading_mode
        if mode == "off":
            return None, "odom_heading_mode is off"
        q = msg.pose.pose.orientation
        yaw_frame = quaternion_to_yaw(float(q.x), float(q.y), float(q.z), float(q.w))
        if mode == "map_frame":
            frame = str(msg.header.frame_id).lstrip("/")
            if frame != cfg.map_frame.lstrip("/"):
                return None, (f"odometry in frame {msg.header.frame_id!r}, not map_frame {cfg.map_frame!r}: its yaw "
                              f"is not a map yaw (use odom_heading_mode offset with a known offset)")
            yaw_map = yaw_frame
        else:
            yaw_map = wrap_pi(yaw_frame + math.radians(cfg.odom_yaw_offset_deg))
        cov = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(-1)
        var = float(cov[35]) if cov.size == 36 and math.isfinite(cov[35]) and cov[35] >= 0 else float("nan")
        if not math.isfinite(var):
            return None, "odometry yaw variance is not a finite non-negative number"
        yaw_cam_map = self.extrinsic.base_yaw_to_camera(yaw_map)
        # map frame -> database frame (a rotation only when the CRSs differ)
        _, _, dyaw = self.adapter.to_db(0.0, 0.0) if not self.adapter.same_crs else (0.0, 0.0, 0.0)
        yaw_db = math.degrees(wrap_pi(yaw_cam_map + dyaw))
        half = max(cfg.heading_min_half_width_deg, cfg.heading_sigma_scale * math.degrees(math.sqrt(var)))
        return HeadingPrior(yaw_db, min(half, 180.0)), None

    # ---- per frame -------------------------------------------------------------------------
    def priors_for(self, image_stamp_ns: int) -> PriorInfo:
        with self._lock:
            fix, fix_note = self._fix, self._fix_note
            odom, odom_note = self._odom, self._odom_note
        position, position_note = self._usable(fix, fix_note, "NavSatFix", image_stamp_ns)
        heading, heading_note = self._usable(odom, odom_note, "Odometry", image_stamp_ns)
        info = PriorInfo()
        if position is not None:
            info.position = position
        else:
            info.position_note = position_note
        if heading is not None:
            info.heading = heading
        else:
            info.heading_note = heading_note
        return info

    def _usable(self, latest, note, what: str, image_stamp_ns: int):
        """(prior, None) when the latest (stamp, prior) message is usable for this image, else
        (None, why not)."""
        if latest is None:
            return None, note
        age_ns = abs(latest[0] - image_stamp_ns)
        if age_ns > self.max_age_ns:
            return None, f"latest {what} is {age_ns / 1e9:.2f} s from the image stamp"
        if latest[1] is None:
            return None, note
        return latest[1], None
