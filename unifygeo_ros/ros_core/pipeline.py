"""The localization path of the node and of ``unifygeo replay``: one frame -> base_link's pose.

:class:`FrameProcessor` ``.process(image_msg, stamp_ns, priors)``:

1. decode the ``Image`` / ``CompressedImage`` (:mod:`.images`) -> RGB;
2. ``Localizer.localize`` with the camera model and the priors (:mod:`.priors`), in the
   database's frame. With ``camera_info_topic`` the camera is the calibrated one of the latest
   ``CameraInfo`` of the image's frame_id (:meth:`FrameProcessor.update_camera_info`): a frame
   is refused (failure ``camera_info``) until one arrived, and (failure ``image``) when its size
   is not the calibrated one. With a camera rig (``rig.image_topics``, or
   ``rig.compressed_image_topics`` decoded by the same :mod:`.images` code) the frame is a
   :class:`~.rig_sync.RigSet`, one image per camera, localized as one frame with the
   :class:`~unifygeo_ros.types.Rig` of :class:`~.rig_cameras.RigCameras` (failure
   ``camera_info`` until every camera's CameraInfo arrived, ``rig`` while a camera has no
   orientation);
3. database frame -> output map frame (:class:`~.geometry.FrameAdapter`), camera ->
   base_link (:class:`~.geometry.Extrinsic`), covariance scaled by ``covariance.scale``
   and laid out 6 x 6 (:func:`~.geometry.covariance6`);
4. the abstention: a frame the localizer reports as no fix (``LocalizationResult.fix`` false:
   no evidence of where the camera is, e.g. noise, a blurred or upside-down panorama) is a
   failure of kind ``no_fix`` with the localizer's reason;
5. the confidence gate (``min_confidence``: the localizer's confidence is the chance that the
   pose lies in the right mode, i.e. on the right place rather than a wrong tile).

It returns a :class:`FrameOutcome`: either a :class:`PoseEstimate` (stamped with the
image's stamp) or a failure kind and message. It never raises for a bad frame; the
localizer keeps no per-frame state, so one bad frame does not affect the next.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..inference.camera import CameraInfoError, intrinsics_from_camera_info
from ..types import Camera, LocalizationError, Rig
from .config import NodeConfig
from .geometry import (
    Extrinsic,
    FrameAdapter,
    covariance6,
    enu_true_covariance,
    map_frame_from_config,
)
from .images import ImageError, decode_image
from .priors import PriorInfo, stamp_ns
from .rig_cameras import RigCameras
from .rig_sync import RigSet

FAILURE_KINDS = ("image", "camera_info", "rig", "localization", "no_fix", "low_confidence")


@dataclass
class PoseEstimate:
    """base_link's pose in the output map frame (ENU), stamped with the image's stamp."""

    stamp_ns: int
    frame_id: str
    child_frame_id: str
    x: float
    y: float
    z: float
    yaw: float | None                 # rad, ENU from grid east; None: not estimated
    cov3: np.ndarray                  # 3 x 3 over (x, y, yaw) of base_link
    covariance: np.ndarray            # 6 x 6 over (x, y, z, roll, pitch, yaw)
    latitude: float
    longitude: float
    altitude: float
    navsat_covariance: np.ndarray     # 3 x 3 over true east, north, up (m^2)
    confidence: float
    heading_mode: str
    backend: str
    tile_id: int
    pixel: tuple[float, float]
    candidates: list[dict]
    stage_ms: dict[str, float]
    latency_ms: float                 # decode + localize + conversions (wall time)
    camera_xy: tuple[float, float]    # the camera's position (map frame)
    camera_yaw: float | None
    position_prior_used: bool = False
    heading_prior_used: bool = False
    age_ms: float = float("nan")         # image stamp -> result (set by the node)
    tracking_state: str = ""             # the tracking filter's state when it runs (else "")
    distribution: np.ndarray | None = field(default=None, repr=False)

    @property
    def yaw_observed(self) -> bool:
        return self.yaw is not None


@dataclass
class FrameOutcome:
    stamp_ns: int
    estimate: PoseEstimate | None = None
    failure: str | None = None        # one of FAILURE_KINDS
    message: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    priors: PriorInfo | None = None
    result: object | None = None      # the localizer's LocalizationResult (camera, database frame), when it ran

    @property
    def ok(self) -> bool:
        return self.estimate is not None


class FrameProcessor:
    """Holds an open :class:`~unifygeo_ros.localizer.Localizer` and the frames of the node."""

    def __init__(self, localizer, cfg: NodeConfig, extrinsic: Extrinsic | None = None, map_frame=None):
        self.localizer = localizer
        self.cfg = cfg
        pinhole = cfg.camera_model == "pinhole"
        self.camera = Camera(cfg.camera_model, cfg.camera_hfov_deg if pinhole else None,
                             cfg.camera_pitch_deg if pinhole else 0.0, cfg.camera_roll_deg if pinhole else 0.0)
        # camera_info_topic: frame_id -> the calibrated camera of its latest usable CameraInfo
        self.cameras: dict[str, Camera] = {}
        self.camera_info_problems: dict[str, str] = {}    # frame_id -> why its latest CameraInfo is not used
        # a camera rig: its cameras (CameraInfo per camera, orientations from /tf_static or parameters)
        self.rig = RigCameras(cfg) if cfg.rig else None
        self.extrinsic = extrinsic or Extrinsic(*(float(v) for v in cfg.camera_xyz), math.radians(cfg.camera_yaw_deg))
        self.map_frame = map_frame or map_frame_from_config(cfg, localizer.frame)
        self.adapter = FrameAdapter(localizer.frame, self.map_frame)
        self.backend_name = localizer.backend_name
        self.startup: dict = {}

    @classmethod
    def open(cls, cfg: NodeConfig, extrinsic: Extrinsic | None = None, map_frame=None, log=None) -> "FrameProcessor":
        """Open the database and the backend, warm up (``cfg.warmup``). Raises
        ``DatabaseError`` / ``ValueError`` with what was expected."""
        from ..localizer import Localizer

        t0 = time.perf_counter()
        loc = Localizer.open(cfg.database, backend=cfg.backend, engines=cfg.engines or None, top_k=cfg.top_k,
                             rerank_score=cfg.rerank_score, alignment_candidates=cfg.alignment_candidates,
                             tile_choice=cfg.tile_choice,
                             decoder_turns=cfg.decoder_turns,
                             weights=cfg.weights or None, threads=cfg.threads or None)
        t1 = time.perf_counter()
        proc = cls(loc, cfg, extrinsic, map_frame)
        if cfg.warmup:
            if log:
                log("warming up the backend")
            loc.warmup()
        t2 = time.perf_counter()
        proc.startup = {"open_s": round(t1 - t0, 3), "warmup_s": round(t2 - t1, 3),
                        "tiles": int(getattr(loc.db, "n", 0)), "backend": loc.backend_name}
        return proc

    def close(self) -> None:
        self.localizer.close()

    def apply_config(self, cfg: NodeConfig) -> None:
        """Take a configuration changed at run time: the localizer's search options at once
        (ValueError, and nothing changed, when one is not allowed), the gate and the covariance
        from the next frame. Options that decide what was opened (database, backend, camera,
        frames) are read-only and stay as they were."""
        self.localizer.set_options(top_k=cfg.top_k, rerank_score=cfg.rerank_score, tile_choice=cfg.tile_choice,
                                   alignment_candidates=cfg.alignment_candidates, decoder_turns=cfg.decoder_turns)
        self.cfg = cfg

    # ---- calibrated cameras (camera_info_topic) ----------------------------------------------
    def update_camera_info(self, msg) -> str | None:
        """Take a ``sensor_msgs/CameraInfo``: the frames of its frame_id use it from now on.
        Returns None, or why it is not used (then that frame_id's frames are refused until a
        usable one arrives)."""
        frame = msg.header.frame_id.lstrip("/")
        cfg = self.cfg
        try:
            intr = intrinsics_from_camera_info(msg)
            camera = Camera("pinhole", pitch_deg=cfg.camera_pitch_deg, roll_deg=cfg.camera_roll_deg, intrinsics=intr)
        except (CameraInfoError, ValueError) as exc:
            problem = f"CameraInfo of frame_id {frame!r} not used: {exc}"
            self.cameras.pop(frame, None)
            self.camera_info_problems[frame] = problem
            return problem
        self.camera_info_problems.pop(frame, None)
        self.cameras[frame] = camera
        return None

    def camera_for(self, frame_id: str) -> tuple[Camera | None, str]:
        """The camera of an image of ``frame_id``: ``(camera, "")``, or ``(None, why not)``."""
        if not self.cfg.camera_info_topic:
            return self.camera, ""
        frame = frame_id.lstrip("/")
        camera = self.cameras.get(frame)
        if camera is not None:
            return camera, ""
        if frame in self.camera_info_problems:
            return None, self.camera_info_problems[frame]
        if not self.cameras:
            return None, (f"no CameraInfo received yet on {self.cfg.camera_info_topic}; frames wait for the "
                          f"camera's calibration")
        return None, (f"no CameraInfo for the image's frame_id {frame!r} on {self.cfg.camera_info_topic} (received "
                      f"for {', '.join(repr(f) for f in sorted(self.cameras))})")

    def rig_camera(self, rig_set: RigSet) -> tuple[Rig | None, str, str]:
        """The :class:`Rig` of a set of frames: ``(rig, "", "")`` or ``(None, failure kind, why not)``."""
        if self.rig is None:
            return None, "rig", ("a set of rig frames, but rig.image_topics and rig.compressed_image_topics are "
                                 "empty: expected one image per frame")
        return self.rig.rig_for(rig_set)

    def camera_info_status(self) -> str:
        """One line for the diagnostics: off, waiting, or the calibrated cameras in use."""
        if not self.cfg.camera_info_topic:
            return "off"
        parts = [f"{f}: {c.intrinsics.describe()}" for f, c in sorted(self.cameras.items())]
        parts += [p for f, p in sorted(self.camera_info_problems.items())]
        return "; ".join(parts) if parts else f"waiting for the first CameraInfo on {self.cfg.camera_info_topic}"

    # ---- one frame --------------------------------------------------------------------------
    def process(self, image_msg, stamp: int | None = None, priors: PriorInfo | None = None,
                want_distribution: bool = False, heading_deg: float | None = None,
                decoder_turns: int | None = None) -> FrameOutcome:
        """One frame; ``heading_deg``: the camera's yaw (ENU, database frame) when it is known
        (the tracking filter's prediction), else the localizer searches the heading;
        ``decoder_turns``: this frame's decoder ensemble, else the localizer's option."""
        cfg = self.cfg
        t0 = time.perf_counter()
        st = stamp_ns(image_msg.header) if stamp is None else int(stamp)
        out = FrameOutcome(stamp_ns=st, priors=priors)
        if isinstance(image_msg, RigSet):
            camera, kind, why_not = self.rig_camera(image_msg)
            messages = image_msg.messages
        else:
            camera, why_not = self.camera_for(image_msg.header.frame_id)
            kind, messages = "camera_info", (image_msg,)
        if camera is None:
            out.failure, out.message = kind, why_not
            return out
        cams = camera.cameras if isinstance(camera, Rig) else (camera,)
        images = []
        for i, (msg, cam) in enumerate(zip(messages, cams)):
            which = f"rig camera {i} ({self.cfg.rig_topics[i]}): " if isinstance(camera, Rig) else ""
            try:
                rgb = decode_image(msg)
            except ImageError as exc:
                out.failure, out.message = "image", which + str(exc)
                return out
            intr = cam.intrinsics
            if intr is not None and (rgb.shape[1], rgb.shape[0]) != (intr.width, intr.height):
                out.failure = "image"
                out.message = (f"{which}image of {rgb.shape[1]} x {rgb.shape[0]} pixels, but the CameraInfo of "
                               f"{'the camera' if which else 'frame_id ' + repr(msg.header.frame_id.lstrip('/'))} is "
                               f"for {intr.width} x {intr.height}; expected images of the calibrated size (a resized "
                               f"or cropped stream needs its own CameraInfo)")
                return out
            images.append(rgb)
        rgb = images if isinstance(camera, Rig) else images[0]
        t1 = time.perf_counter()
        out.timings_ms["decode"] = (t1 - t0) * 1e3
        items = tuple(p for p in ((priors.position, priors.heading) if priors else ()) if p is not None)
        try:
            # only what is given: a localizer without these keywords (a test's stand-in) still works
            known = {} if heading_deg is None else {"heading": heading_deg}
            if decoder_turns is not None:
                known["decoder_turns"] = decoder_turns
            res = self.localizer.localize(rgb, camera, prior=items or None,
                                          return_distribution=want_distribution, **known)
        except LocalizationError as exc:
            out.failure, out.message = "localization", str(exc)
            out.timings_ms["total"] = (time.perf_counter() - t0) * 1e3
            return out
        t2 = time.perf_counter()
        out.result = res
        for k, v in res.timings_ms.items():
            if k != "total":
                out.timings_ms[k] = float(v)
        out.timings_ms["localize"] = (t2 - t1) * 1e3
        if not getattr(res, "fix", True):
            out.failure = "no_fix"
            out.message = res.no_fix_reason or "the frame is no evidence of where the camera is"
            out.timings_ms["total"] = (time.perf_counter() - t0) * 1e3
            return out
        if not res.confidence >= cfg.min_confidence:
            out.failure = "low_confidence"
            out.message = f"confidence {res.confidence:.3f} below min_confidence {cfg.min_confidence:g}"
            out.timings_ms["total"] = (time.perf_counter() - t0) * 1e3
            return out
        out.estimate = self._estimate(res, st, priors)
        t3 = time.perf_counter()
        out.timings_ms["convert"] = (t3 - t2) * 1e3
        out.timings_ms["total"] = (t3 - t0) * 1e3
        out.estimate.latency_ms = out.timings_ms["total"]
        out.estimate.stage_ms = dict(out.timings_ms)
        return out

    def _estimate(self, res, st: int, priors: PriorInfo | None) -> PoseEstimate:
        cfg = self.cfg
        cov3 = np.array(res.covariance, dtype=np.float64).reshape(3, 3) * cfg.covariance_scale
        yaw_c = None if res.yaw_deg is None else math.radians(float(res.yaw_deg))
        xc, yc, yaw_c, cov_c = self.adapter.pose_to_out(float(res.x), float(res.y), yaw_c, cov3)
        if yaw_c is None:
            cov_c[2, :] = 0.0
            cov_c[:, 2] = 0.0
        xb, yb, yaw_b, cov_b = self.extrinsic.camera_to_base(xc, yc, yaw_c, cov_c)
        return self.base_estimate(xb, yb, yaw_b, cov_b, st, res, priors, (xc, yc), yaw_c)

    def base_estimate(self, xb: float, yb: float, yaw_b: float | None, cov_b: np.ndarray, st: int, res,
                      priors: PriorInfo | None, camera_xy: tuple[float, float], camera_yaw: float | None,
                      confidence: float | None = None, heading_mode: str | None = None) -> PoseEstimate:
        """The :class:`PoseEstimate` of base_link at (xb, yb, yaw_b) with covariance ``cov_b``
        (output map frame), the frame's result ``res`` giving the candidates and diagnostics."""
        cfg = self.cfg
        cov_b = 0.5 * (np.asarray(cov_b, dtype=np.float64) + np.asarray(cov_b, dtype=np.float64).T)
        xc, yc = camera_xy
        yaw_c = camera_yaw
        cov6 = covariance6(cov_b, yaw_b is not None, cfg.z_variance, cfg.roll_pitch_variance)
        lat, lon = self.map_frame.to_latlon(xb, yb)
        gamma = self.map_frame.convergence_deg(xb, yb)
        nav = np.zeros((3, 3))
        nav[:2, :2] = enu_true_covariance(cov_b[:2, :2], gamma)
        nav[2, 2] = cfg.z_variance
        cands = []
        for c in res.candidates:
            cx, cy, _ = self.adapter.to_out(float(c.center_xy[0]), float(c.center_xy[1]))
            cands.append({"tile_id": int(c.tile_id), "retrieval_score": float(c.retrieval_score),
                          "m0_max": float(c.m0_max), "matching_score": float(c.matching_score),
                          "combined": float(c.combined),
                          "center_x": float(cx), "center_y": float(cy),
                          "center_latitude": float(c.center_latlon[0]), "center_longitude": float(c.center_latlon[1])})
        return PoseEstimate(
            stamp_ns=st, frame_id=cfg.map_frame, child_frame_id=cfg.base_frame,
            x=float(xb), y=float(yb), z=0.0, yaw=yaw_b, cov3=cov_b, covariance=cov6,
            latitude=float(lat), longitude=float(lon), altitude=float(cfg.ground_altitude_m),
            navsat_covariance=nav, confidence=float(res.confidence if confidence is None else confidence),
            heading_mode=str(res.heading_mode if heading_mode is None else heading_mode),
            backend=str(res.backend), tile_id=int(res.tile_id), pixel=(float(res.pixel[0]), float(res.pixel[1])),
            candidates=cands, stage_ms={}, latency_ms=0.0, camera_xy=(float(xc), float(yc)), camera_yaw=yaw_c,
            position_prior_used=bool(priors and priors.position is not None),
            heading_prior_used=bool(priors and priors.heading is not None),
            distribution=res.distribution)

    def publishes_pose(self, est: PoseEstimate) -> bool:
        """A pose message goes out when the yaw was estimated (or the user accepts none)."""
        return est.yaw_observed or self.cfg.publish_pose_without_yaw
