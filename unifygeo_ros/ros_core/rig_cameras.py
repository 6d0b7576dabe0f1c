"""The cameras of a rig as the node knows them: calibration from CameraInfo, orientation from
``/tf_static`` or the parameters.

:class:`RigCameras` holds, per camera of ``rig.image_topics`` (or ``rig.compressed_image_topics``;
in that order), the latest usable ``sensor_msgs/CameraInfo`` of its ``rig.camera_info_topics``
entry, and the static transforms of ``/tf_static`` (:class:`StaticTransforms`). For a set of frames
(:class:`~.rig_sync.RigSet`) :meth:`RigCameras.rig_for` gives the
:class:`~unifygeo_ros.types.Rig` to localize it with, or why not (a camera without its
CameraInfo yet, or without an orientation).

Orientation of camera ``i`` (its optical axis relative to ``base_frame``):

* ``rig.frame_source: tf``: the transform ``base_frame -> frame_id of the image``, composed
  along ``/tf_static``'s tree. The frame is an optical one when its name ends in ``_optical``
  (REP-103: z forward, x right, y down), else a body frame (x forward, y left, z up). Yaw is
  the optical axis' heading (counter-clockwise from base_frame's x axis), pitch its elevation
  (up positive), roll the turn about it (positive lowers the camera's right side), as
  :class:`~unifygeo_ros.types.Camera` takes them. A camera whose transform is not (yet)
  known uses ``rig.yaws_deg`` when given;
* ``rig.frame_source: parameters``, or the fallback: ``rig.yaws_deg[i]`` with
  ``camera.pitch_deg`` and ``camera.roll_deg``.

Nothing here imports ROS: the node feeds it rclpy messages, ``unifygeo replay`` rosbags
messages (both have the same fields).
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ..inference.camera import CameraInfoError, intrinsics_from_camera_info
from ..types import Camera, Rig
from .geometry import Extrinsic

OPTICAL_SUFFIX = "_optical"


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """The 3 x 3 rotation of a unit quaternion (normalised first)."""
    q = np.array([x, y, z, w], dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if not math.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"rotation: expected a unit quaternion, got {[x, y, z, w]}")
    x, y, z, w = q / norm
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


class StaticTransforms:
    """The transforms of ``/tf_static`` (``tf2_msgs/TFMessage``), looked up along their tree."""

    def __init__(self):
        self._lock = threading.Lock()
        self._edges: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}   # child -> (parent, R, t)

    def __len__(self) -> int:
        return len(self._edges)

    def update(self, msg) -> int:
        """Take the transforms of a TFMessage (a later one of the same child replaces it);
        returns how many were taken (one with a bad rotation is not)."""
        taken = 0
        for tr in msg.transforms:
            parent, child = tr.header.frame_id.lstrip("/"), tr.child_frame_id.lstrip("/")
            r, t = tr.transform.rotation, tr.transform.translation
            try:
                rot = quaternion_matrix(float(r.x), float(r.y), float(r.z), float(r.w))
            except ValueError:
                continue
            if not parent or not child or parent == child:
                continue
            with self._lock:
                self._edges[child] = (parent, rot, np.array([float(t.x), float(t.y), float(t.z)]))
            taken += 1
        return taken

    def _to_root(self, frame: str) -> tuple[str, np.ndarray, np.ndarray]:
        """(root, R, t): ``frame``'s pose in the root of its tree."""
        rot, t = np.eye(3), np.zeros(3)
        seen = {frame}
        with self._lock:
            while frame in self._edges:
                parent, r, tr = self._edges[frame]
                rot, t = r @ rot, r @ t + tr
                frame = parent
                if frame in seen:               # a loop: no tree
                    break
                seen.add(frame)
        return frame, rot, t

    def lookup(self, target: str, source: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(R, t)``: frame ``source``'s axes and origin in frame ``target`` (``p_target = R p_source
        + t``), or None when the two are not connected."""
        target, source = target.lstrip("/"), source.lstrip("/")
        root_s, rs, ts = self._to_root(source)
        root_t, rt, tt = self._to_root(target)
        if root_s != root_t:
            return None
        return rt.T @ rs, rt.T @ (ts - tt)


def camera_angles(rotation: np.ndarray, optical: bool) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees of a camera whose axes in base_frame are the columns of
    ``rotation``: an optical frame (z forward, x right) or a body frame (x forward, y left)."""
    rot = np.asarray(rotation, dtype=np.float64)
    fwd, right = (rot[:, 2], rot[:, 0]) if optical else (rot[:, 0], -rot[:, 1])
    yaw = math.atan2(fwd[1], fwd[0])
    pitch = math.asin(float(np.clip(fwd[2], -1.0, 1.0)))
    level_right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(fwd, level_right)           # the camera's down direction without roll
    roll = math.atan2(float(right @ down), float(right @ level_right))
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


class RigCameras:
    """Calibration and orientation of the rig's cameras (see the module's docstring)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.n = len(cfg.rig_topics)
        self._intrinsics: list = [None] * self.n            # the latest usable CameraInfo's, per camera
        self._info_problems: list[str] = [""] * self.n      # why the latest CameraInfo is not used
        self.transforms = StaticTransforms()
        self._used: list[str] = [""] * self.n               # where each camera's orientation came from, last set

    # ---- inputs --------------------------------------------------------------------------------
    def update_camera_info(self, index: int, msg) -> str | None:
        """Take camera ``index``'s CameraInfo; returns None, or why it is not used (then that
        camera's sets are refused until a usable one arrives)."""
        topic = self._info_topic(index)
        try:
            intr = intrinsics_from_camera_info(msg)
        except (CameraInfoError, ValueError) as exc:
            self._intrinsics[index] = None
            self._info_problems[index] = f"CameraInfo of rig camera {index} ({topic}) not used: {exc}"
            return self._info_problems[index]
        self._intrinsics[index] = intr
        self._info_problems[index] = ""
        return None

    def update_tf(self, msg) -> int:
        """Take a ``/tf_static`` TFMessage; returns the transforms taken."""
        return self.transforms.update(msg)

    def intrinsics(self, index: int):
        return self._intrinsics[index]

    # ---- per set ---------------------------------------------------------------------------------
    def orientation(self, index: int, frame_id: str) -> tuple[tuple[float, float, float] | None, str]:
        """``((yaw, pitch, roll), source)`` of camera ``index`` whose images carry ``frame_id``,
        or ``(None, why not)``."""
        cfg = self.cfg
        if cfg.rig_frame_source == "tf":
            frame = frame_id.lstrip("/")
            found = self.transforms.lookup(cfg.base_frame, frame) if frame else None
            if found is not None:
                return camera_angles(found[0], frame.endswith(OPTICAL_SUFFIX)), f"/tf_static {frame}"
        if cfg.rig_yaws_deg:
            return (float(cfg.rig_yaws_deg[index]), float(cfg.camera_pitch_deg), float(cfg.camera_roll_deg)), \
                "rig.yaws_deg"
        return None, (f"no /tf_static transform {cfg.base_frame} -> {frame_id.lstrip('/')!r} for rig camera {index} "
                      f"({cfg.rig_topics[index]}) and no rig.yaws_deg; expected the camera's transform on "
                      f"/tf_static or its yaw in rig.yaws_deg")

    def rig_for(self, rig_set) -> tuple[Rig | None, str, str]:
        """``(rig, "", "")`` for a set of frames, or ``(None, failure kind, why)``: kind
        ``camera_info`` while a camera's CameraInfo is missing or unusable, ``rig`` when a
        camera has no orientation or an unusable one."""
        cfg = self.cfg
        if cfg.rig_camera_info_topics:
            missing = [i for i in range(self.n) if self._intrinsics[i] is None]
            if missing:
                problems = [self._info_problems[i] for i in missing if self._info_problems[i]]
                if problems:
                    return None, "camera_info", "; ".join(problems)
                return None, "camera_info", (
                    f"no CameraInfo received yet for rig camera{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(f'{i} ({cfg.rig_camera_info_topics[i]})' for i in missing)}; sets wait for every "
                    f"camera's calibration")
        cameras, yaws = [], []
        for i, msg in enumerate(rig_set.messages):
            angles, source = self.orientation(i, msg.header.frame_id)
            if angles is None:
                return None, "rig", source
            yaw, pitch, roll = angles
            try:
                if cfg.rig_camera_info_topics:
                    cam = Camera("pinhole", pitch_deg=pitch, roll_deg=roll, intrinsics=self._intrinsics[i])
                else:
                    cam = Camera("pinhole", hfov_deg=cfg.camera_hfov_deg, pitch_deg=pitch, roll_deg=roll)
            except ValueError as exc:
                return None, "rig", f"rig camera {i} ({cfg.rig_topics[i]}, {source}): {exc}"
            self._used[i] = f"yaw {yaw:.1f}, pitch {pitch:.1f}, roll {roll:.1f} deg from {source}"
            cameras.append(cam)
            yaws.append(yaw)
        return Rig(tuple(cameras), tuple(yaws)), "", ""

    def centre(self, frame_ids) -> Extrinsic | None:
        """The rig's centre in base_frame (the mean of the cameras' origins), facing its x axis,
        when ``/tf_static`` gives every camera's frame; else None."""
        points = []
        for frame in frame_ids:
            found = self.transforms.lookup(self.cfg.base_frame, frame) if frame else None
            if found is None:
                return None
            points.append(found[1])
        x, y, z = (float(v) for v in np.mean(points, axis=0))
        return Extrinsic(x, y, z, 0.0)

    # ---- diagnostics -----------------------------------------------------------------------------
    def status(self) -> str:
        """One line per camera, joined: its calibration and the orientation of the last set."""
        cfg = self.cfg
        parts = []
        for i in range(self.n):
            if not cfg.rig_camera_info_topics:
                calib = f"ideal {cfg.camera_hfov_deg:g} deg"
            elif self._intrinsics[i] is not None:
                calib = self._intrinsics[i].describe()
            else:
                calib = self._info_problems[i] or f"waiting for CameraInfo on {cfg.rig_camera_info_topics[i]}"
            parts.append(f"{i} {cfg.rig_topics[i]}: {calib}" + (f"; {self._used[i]}" if self._used[i] else ""))
        return " | ".join(parts)

    def _info_topic(self, index: int) -> str:
        topics = self.cfg.rig_camera_info_topics
        return topics[index] if index < len(topics) else "?"


def rig_status_values(sync, cameras: RigCameras | None) -> list[tuple[str, str]]:
    """The diagnostics' key-value pairs of a camera rig (none without one): the pairing counts of
    the synchronizer ``sync`` (:class:`~.rig_sync.RigSynchronizer`) and each camera's state."""
    if sync is None:
        return []
    st = sync.stats.as_dict()
    return [("rig_sets", str(st["sets"])),
            ("rig_frames_received", " ".join(map(str, st["received"]))),
            ("rig_frames_dropped", " ".join(map(str, st["dropped"]))),
            ("rig_frames_waiting", " ".join(map(str, sync.pending()))),
            ("rig_max_spread_ms", f"{st['max_spread_ms']:.3f}"),
            ("rig_cameras", cameras.status() if cameras is not None else "not configured")]
