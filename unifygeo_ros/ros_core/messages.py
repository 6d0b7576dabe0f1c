"""Output messages built from a :class:`~.pipeline.PoseEstimate`, for rclpy or rosbags.

rclpy's generated message classes and rosbags' typestore classes both take every field as
a keyword argument, so one builder serves both; :class:`MsgTypes` supplies the classes and
the few container conversions that differ (rclpy wants ``array.array`` for unbounded
numeric sequences, rosbags wants numpy arrays). The node gets its :class:`MsgTypes` from
:func:`unifygeo_ros.ros.messages.rclpy_types`, the replay tool from
:func:`unifygeo_ros.replay.bagio.rosbags_types`.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import yaw_to_quaternion

NAVSAT_STATUS_FIX = 0
NAVSAT_SERVICE_NONE = 0          # not a GNSS receiver: no GNSS service flag is set
COVARIANCE_TYPE_KNOWN = 3
RESULT_TYPE = "unifygeo_ros/msg/LocalizationResult"
CANDIDATE_TYPE = "unifygeo_ros/msg/LocalizationCandidate"


@dataclass
class MsgTypes:
    Time: Any
    Header: Any
    Point: Any
    Quaternion: Any
    Pose: Any
    PoseWithCovariance: Any
    PoseWithCovarianceStamped: Any
    NavSatStatus: Any
    NavSatFix: Any
    Image: Any
    LocalizationResult: Any = None          # None: the generated package is not available
    LocalizationCandidate: Any = None
    flavor: str = "rosbags"                 # rosbags | rclpy

    def f64_fixed(self, values) -> Any:
        return np.asarray(values, dtype=np.float64).reshape(-1).copy()

    def f32_seq(self, values) -> Any:
        if self.flavor == "rclpy":
            return array.array("f", [float(v) for v in values])
        return np.asarray(list(values), dtype=np.float32)

    def u8_seq(self, data: np.ndarray) -> Any:
        data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
        if self.flavor == "rclpy":
            return array.array("B", data.tobytes())
        return data


def header(T: MsgTypes, stamp_ns: int, frame_id: str):
    return T.Header(stamp=T.Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)),
                    frame_id=str(frame_id))


def pose_with_covariance(T: MsgTypes, est) -> Any:
    qx, qy, qz, qw = yaw_to_quaternion(est.yaw if est.yaw is not None else 0.0)
    return T.PoseWithCovariance(
        pose=T.Pose(position=T.Point(x=float(est.x), y=float(est.y), z=float(est.z)),
                    orientation=T.Quaternion(x=qx, y=qy, z=qz, w=qw)),
        covariance=T.f64_fixed(est.covariance))


def pose_msg(T: MsgTypes, est) -> Any:
    """``geometry_msgs/PoseWithCovarianceStamped``: base_link in the map frame, image stamp."""
    return T.PoseWithCovarianceStamped(header=header(T, est.stamp_ns, est.frame_id),
                                       pose=pose_with_covariance(T, est))


def navsat_msg(T: MsgTypes, est) -> Any:
    """``sensor_msgs/NavSatFix`` of base_link with its ENU (true north) covariance."""
    return T.NavSatFix(
        header=header(T, est.stamp_ns, est.child_frame_id),
        status=T.NavSatStatus(status=NAVSAT_STATUS_FIX, service=NAVSAT_SERVICE_NONE),
        latitude=float(est.latitude), longitude=float(est.longitude), altitude=float(est.altitude),
        position_covariance=T.f64_fixed(est.navsat_covariance), position_covariance_type=COVARIANCE_TYPE_KNOWN)


def result_msg(T: MsgTypes, est) -> Any:
    """``unifygeo_ros/LocalizationResult``; needs ``T.LocalizationResult``."""
    if T.LocalizationResult is None:
        raise RuntimeError("the unifygeo_ros message classes are not available")
    cands = [T.LocalizationCandidate(
        tile_id=int(c["tile_id"]), retrieval_score=float(c["retrieval_score"]), m0_max=float(c["m0_max"]),
        matching_score=float(c["matching_score"]), combined=float(c["combined"]), center_x=float(c["center_x"]), center_y=float(c["center_y"]),
        center_latitude=float(c["center_latitude"]), center_longitude=float(c["center_longitude"]))
        for c in est.candidates]
    stages = [(k, v) for k, v in est.stage_ms.items() if k != "total"]
    age_ms = getattr(est, "age_ms", float("nan"))
    return T.LocalizationResult(
        header=header(T, est.stamp_ns, est.frame_id), child_frame_id=str(est.child_frame_id),
        pose=pose_with_covariance(T, est), latitude=float(est.latitude), longitude=float(est.longitude),
        yaw_observed=bool(est.yaw is not None), confidence=float(est.confidence),
        heading_mode=str(est.heading_mode), backend=str(est.backend), tile_id=int(est.tile_id),
        pixel_row=float(est.pixel[0]), pixel_col=float(est.pixel[1]), candidates=cands,
        latency_ms=float(est.latency_ms), age_ms=float(age_ms),
        stage_names=[str(k) for k, _ in stages], stage_ms=T.f32_seq([v for _, v in stages]),
        position_prior_used=bool(est.position_prior_used), heading_prior_used=bool(est.heading_prior_used),
        tracking_state=str(getattr(est, "tracking_state", "")))


def image_msg(T: MsgTypes, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    """``sensor_msgs/Image`` rgb8 from an ``H x W x 3`` uint8 array."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return T.Image(header=header(T, stamp_ns, frame_id), height=int(h), width=int(w), encoding="rgb8",
                   is_bigendian=0, step=int(w * 3), data=T.u8_seq(rgb))

