"""Tracking in the node and the replay: the particle filter fed by odometry and every frame.

:class:`TrackingProcessor` wraps the :class:`~.pipeline.FrameProcessor` (the same
single-frame path) and a :class:`~unifygeo_ros.tracking.Tracker` over base_link's pose in
the database's frame:

* odometry messages (``nav_msgs/Odometry``, odom -> base_link) are buffered and applied as
  motion increments up to each image's stamp, so the filter is at the image's time when its
  evidence arrives;
* while tracking, the localizer retrieves and decodes only the tiles near the predicted
  camera position (a position prior of ``tracking.search_radius_m``, or three standard
  deviations if larger) with the predicted yaw as a known heading (a heading window of
  ``tracking.heading_window_deg`` while the vehicle turns) and the decoder ensemble of
  ``tracking.decoder_turns``; initialising it searches the whole database;
* lost, for ``tracking.anchor_frames`` frames, it first searches the same way near the
  filter's anchor (the last published pose moved on by odometry: where the vehicle is unless
  it was moved), within ``tracking.search_radius_m`` or three of the anchor's growing standard
  deviations, with a heading window; only when that gives no fix (nothing found, or under the
  confidence gate) does the frame search the whole database. A stretch where the localizer
  found nothing near the track is then taken up again where the vehicle still is, where a
  global search would often land on a wrong tile; a kidnapped vehicle finds no fix near the
  anchor, and the global search finds it;
* the frame's D (and yaw) becomes the filter's evidence, also when the frame is under the
  confidence gate (the filter's outlier component weighs it); a frame that is not evidence
  (not decodable, no fix) only advances the filter, except a clear frame (its detail passes)
  that found no evidence near the prediction: that contradicts the track (nothing is
  published; three in a row make the filter lost, and the search goes near the anchor and
  global, as above), so that a vehicle moved elsewhere is not tracked on by odometry alone;
* GNSS fixes (``sensor_msgs/NavSatFix`` of ``gnss_prior_topic``, with
  ``tracking.gnss_evidence``): a fix with a covariance is buffered (:meth:`TrackingProcessor.add_fix`)
  and, before the first frame stamped after it, weighs the particles at its own stamp (the
  filter moved there by the odometry first; :func:`fix_evidence` turns its ENU covariance into
  the database frame); a fix older than the filter's time is dropped, one within
  ``tracking.gnss_interval_s`` of the previous fix used is skipped (a receiver's errors are
  correlated over seconds), and every fix counts once. The antenna is taken at base_link
  (its lever arm, typically under a metre, is left to the fix's covariance). A frame that
  contradicts the track while the last fix agreed with it is held: the first fix after it
  (within :data:`GNSS_VOUCH_S`) releases its pose (:attr:`TrackOutcome.released`, published
  late with its own stamp) when it agrees, and drops it when the vehicle is elsewhere;
* ``/initialpose`` (``PoseWithCovarianceStamped`` of base_link in the output map frame) seeds
  it (:meth:`TrackingProcessor.seed`, which the node and the replay both call): the odometry up
  to the pose's stamp is applied first, then the particles are drawn from the pose and its
  covariance (x, y, yaw); a pose in another frame, or not finite, is ignored with the reason.
  From a seed until the filter tracks, the localizer searches near the prediction as while
  tracking (``search == "seed"``), so that frames the whole database would place wrongly
  (a narrow pinhole view) weigh the particles where the operator put them.

Each frame gives a :class:`TrackOutcome`: the single-frame outcome, the filter's estimate
and, when the filter is tracking and the frame did not contradict it, the filtered pose as a
:class:`~.pipeline.PoseEstimate` to publish.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass

import numpy as np

from ..geo import latlon_from_enu_offset
from ..tracking import Tracker, TrackerConfig, TrackState
from ..tracking.evidence import GnssEvidence, evidence_from_result
from ..tracking.particles import MotionNoise, offset_poses
from ..types import HeadingPrior, PositionPrior
from .geometry import quaternion_to_yaw
from .pipeline import FrameOutcome, FrameProcessor, PoseEstimate
from .priors import COVARIANCE_TYPE_UNKNOWN, PriorInfo, fix_position, stamp_ns

#: While tracking with the predicted yaw known to within this (3 sigma, degrees), and the
#: vehicle turning by less than ``STEADY_TURN_DEG`` since the previous frame, the predicted yaw
#: is given to the localizer as a known heading (the fast path: no heading search); in a turn
#: a heading window is searched instead, as odometry's yaw can lag the camera's there.
KNOWN_HEADING_DEG = 6.0
STEADY_TURN_DEG = 10.0
#: searches near the prediction (the localizer's tiles within the search radius)
LOCAL_SEARCHES = ("tracking", "seed")
#: the covariance (x, y, yaw) of an initial pose whose own is not positive-definite (RViz's 2D Pose
#: Estimate sends 0.25 m^2 / (15 deg)^2; other tools zeros)
DEFAULT_SEED_COVARIANCE = np.diag([4.0, 4.0, math.radians(10.0) ** 2])


#: a frame that contradicted the track while the receiver agreed with it: when the first fix
#: after it, at most this long (s) later, agrees again, the frame's filtered pose is published
#: then (late, with the frame's stamp); a jump of the vehicle shows in that fix, and the pose is
#: dropped
GNSS_VOUCH_S = 2.0
#: GNSS fixes kept while no frame comes (the oldest are dropped beyond)
MAX_BUFFERED_FIXES = 200
#: a fix's covariance types that carry a covariance (APPROXIMATED, DIAGONAL_KNOWN, KNOWN)
_KNOWN_COVARIANCE = (1, 2, 3)


def fix_evidence(msg, db) -> tuple[GnssEvidence | None, str | None]:
    """A ``sensor_msgs/NavSatFix`` as the filter's evidence in the database frame ``db`` (a
    :class:`~unifygeo_ros.geo.MapFrame`): its position, and its horizontal covariance (east,
    north; REP-145's ENU) carried into the database grid by the local Jacobian of the
    projection (grid convergence and scale). ``(None, why)`` for a fix without a fix status,
    without a covariance (``COVARIANCE_TYPE_UNKNOWN``) or with values that are not finite."""
    xy, note = fix_position(msg, db)
    if xy is None:
        return None, note
    lat, lon = float(msg.latitude), float(msg.longitude)
    ctype = int(msg.position_covariance_type)
    cov = np.asarray(msg.position_covariance, dtype=np.float64).reshape(-1)
    if ctype == COVARIANCE_TYPE_UNKNOWN or ctype not in _KNOWN_COVARIANCE or cov.size != 9:
        return None, "NavSatFix without a covariance (position_covariance_type UNKNOWN): its weight is unknown"
    c_enu = np.array([[cov[0], cov[1]], [cov[3], cov[4]]])
    c_enu = 0.5 * (c_enu + c_enu.T)
    if not np.all(np.isfinite(c_enu)) or np.linalg.eigvalsh(c_enu).min() <= 0:
        return None, "NavSatFix covariance: expected a finite, positive-definite east / north block"
    x, y = xy
    # one metre east and one metre north on the WGS 84 ellipsoid, in the database grid
    xe, ye = (float(v) for v in db.from_latlon(*latlon_from_enu_offset(lat, lon, 1.0, 0.0)))
    xn, yn = (float(v) for v in db.from_latlon(*latlon_from_enu_offset(lat, lon, 0.0, 1.0)))
    jac = np.array([[xe - x, xn - x], [ye - y, yn - y]])
    return GnssEvidence(x, y, jac @ c_enu @ jac.T), None


@dataclass
class TrackOutcome:
    frame: FrameOutcome                 # the single-frame outcome (its estimate goes to ~/result)
    state: str                          # initialising | tracking | lost | no evidence yet
    filtered: PoseEstimate | None       # the filtered pose to publish, or None
    track: object | None                # the tracker's TrackEstimate (database frame), or None
    search: str                         # "tracking" (tiles near the prediction), "seed" (the same after an
                                        # initial pose, until the filter tracks), "anchor" (lost: tiles near
                                        # the dead-reckoned last pose) or "global"
    filter_ms: float = 0.0
    gnss_fixes: int = 0                 # GNSS fixes that weighed the particles before this frame
    released: tuple[int, PoseEstimate] | None = None   # an earlier frame's pose the receiver vouched
                                        # for after it (its stamp, the estimate): publish it now


class TrackingProcessor:
    def __init__(self, frames: FrameProcessor, cfg=None, seed: int = 0):
        self.frames = frames
        cfg = cfg or frames.cfg
        self.cfg = cfg
        db = frames.localizer.db
        self.mpp = float(db.mpp)
        centres = np.asarray(db.centres, dtype=np.float64)
        side = db.tile_size * self.mpp
        extent = (np.ptp(centres[:, 0]) + side) * (np.ptp(centres[:, 1]) + side)
        ex = frames.extrinsic
        self.offset = (float(ex.x), float(ex.y), float(ex.yaw))
        self.tracker = Tracker(TrackerConfig(particles=int(cfg.tracking_particles), area_m2=float(max(extent, 1.0)),
                                             outlier=float(cfg.tracking_outlier), camera_offset=self.offset,
                                             noise=MotionNoise(a_tt=float(cfg.tracking_motion_noise)),
                                             anchor_frames=int(cfg.tracking_anchor_frames), seed=seed))
        self._odometry: collections.deque = collections.deque()
        self._applied: tuple[int, tuple[float, float, float]] | None = None
        self._frame_odom_yaw: float | None = None        # odometry yaw at the previous frame
        self._odometry_seen = False
        self._seeded = False                # an initial pose was given and the filter has not tracked since
        #: GNSS fixes waiting for the frame after them: (stamp_ns, GnssEvidence), in arrival order
        self._fixes: collections.deque = collections.deque(maxlen=MAX_BUFFERED_FIXES)
        self.gnss_dropped = 0               # fixes older than the filter's time when their turn came
        self.gnss_skipped = 0               # fixes within tracking.gnss_interval_s of the previous one used
        self.odometry_dropped = 0           # odometry poses that were not finite
        self._last_fix_ns: int | None = None
        #: a frame's filtered pose not published because the frame contradicted the track, kept
        #: while the receiver agreed with it: released when the next fix agrees (stamp, estimate)
        self._held: tuple[int, PoseEstimate] | None = None
        #: the published covariance's factors (position, yaw): the model's calibrated tracking
        #: factors (``unifygeo calibrate --part tracking``) of the camera (a single pinhole camera,
        #: a rig) where the model has them, else the panorama drives'; (1, 1) without them
        camera = "rig" if cfg.rig else ("pinhole" if str(cfg.camera_model) == "pinhole" else "panorama")
        self.covariance_scales = frames.localizer.calibration.tracking_scales(camera)

    def apply_config(self, cfg) -> None:
        self.cfg = cfg

    # ---- inputs ---------------------------------------------------------------------------------
    def add_odometry(self, msg) -> str | None:
        """Buffer an odometry message (its pose in its own frame: only increments are used);
        None when it was buffered, else why not (a pose that is not finite)."""
        if not self._buffer_odometry(stamp_ns(msg.header), msg.pose.pose.position, msg.pose.pose.orientation):
            return "odometry pose not finite: dropped"
        return None

    def _buffer_odometry(self, st: int, position, orientation) -> bool:
        """The vehicle's odometry pose (x, y, yaw in the odometry frame) at stamp ``st``;
        False (counted in ``odometry_dropped``) for a pose that is not finite, which would
        spoil every particle."""
        q = orientation
        pose = (float(position.x), float(position.y), quaternion_to_yaw(q.x, q.y, q.z, q.w))
        if not all(math.isfinite(v) for v in pose):
            self.odometry_dropped += 1
            return False
        self._odometry.append((st, pose))
        self._odometry_seen = True
        return True

    def add_odometry_transforms(self, msg) -> int | None:
        """Buffer the odometry of a ``/tf`` message (``tf2_msgs/TFMessage``,
        ``tracking.odom_source`` tf): each of its transforms from ``odom_frame`` to
        ``base_frame`` (leading slashes ignored) is the vehicle's odometry pose at its stamp.
        Returns the latest stamp taken (ns), None when the message holds none."""
        parent, child = self.cfg.odom_frame.lstrip("/"), self.cfg.base_frame.lstrip("/")
        latest = None
        for tr in msg.transforms:
            if tr.header.frame_id.lstrip("/") != parent or tr.child_frame_id.lstrip("/") != child:
                continue
            st = stamp_ns(tr.header)
            if self._buffer_odometry(st, tr.transform.translation, tr.transform.rotation):
                latest = st if latest is None else max(latest, st)
        return latest

    def add_fix(self, msg) -> str | None:
        """Buffer a NavSatFix as GNSS evidence for the filter (``tracking.gnss_evidence``):
        None when it was buffered, else why it cannot serve (the option is off, no fix, no
        covariance, values that are not finite)."""
        if not self.cfg.tracking_gnss_evidence:
            return "tracking.gnss_evidence is false"
        fix, note = fix_evidence(msg, self.frames.adapter.db)
        if fix is None:
            return note
        self._fixes.append((stamp_ns(msg.header), fix))
        return None

    def _apply_fixes(self, t_ns: int) -> tuple[int, tuple[int, PoseEstimate] | None]:
        """Every buffered fix stamped at or before ``t_ns``, in stamp order, each at its own
        time. Returns how many weighed the particles, and the held pose of an earlier frame
        (its stamp and estimate) when the first fix after that frame, within
        :data:`GNSS_VOUCH_S` of it, agreed with the particles (else the held pose is dropped)."""
        held, self._held = self._held, None
        due = sorted((f for f in self._fixes if f[0] <= t_ns), key=lambda f: f[0])
        self._fixes = collections.deque((f for f in self._fixes if f[0] > t_ns), maxlen=MAX_BUFFERED_FIXES)
        used = 0
        released = None
        interval_ns = int(float(self.cfg.tracking_gnss_interval_s) * 1e9)
        for t_f, fix in due:
            if self._applied is not None and t_f < self._applied[0]:
                self.gnss_dropped += 1          # the filter is past it already
                continue
            if self._last_fix_ns is not None and 0 <= t_f - self._last_fix_ns < interval_ns:
                self.gnss_skipped += 1          # its error is largely the previous fix's
                continue
            self._advance(t_f, idle=False)
            if self.tracker.update_gnss(fix) is not None:
                used += 1
                self._last_fix_ns = t_f
                if held is not None and t_f > held[0]:
                    # the first fix after the held frame decides: the receiver vouches for the track
                    # (the frame's contradiction was the camera's), or it does not (a kidnap)
                    if (t_f - held[0] <= GNSS_VOUCH_S * 1e9 and self.tracker.gnss_agrees
                            and self.tracker.state == TrackState.TRACKING):
                        released = held
                    held = None
        if held is not None and t_ns - held[0] <= GNSS_VOUCH_S * 1e9:
            self._held = held                   # no fix after it yet: it waits (a newer held frame replaces it)
        return used, released

    def seed(self, msg) -> str | None:
        """Start (or restart) the filter from an initial pose: a ``PoseWithCovarianceStamped`` of
        base_link in the output map frame (``map_frame``; an empty frame_id is taken as it).

        The odometry buffered up to the pose's stamp is applied first (the pose is where the
        vehicle was at its stamp); a covariance that is not positive-definite over (x, y, yaw)
        is replaced by :data:`DEFAULT_SEED_COVARIANCE`. Returns None when the filter was seeded,
        else why the pose was ignored (the filter is then unchanged)."""
        frame = msg.header.frame_id.lstrip("/")
        map_frame = str(self.cfg.map_frame).lstrip("/")
        if frame not in ("", map_frame):
            return f"initial pose in frame {msg.header.frame_id!r} ignored: expected map_frame {self.cfg.map_frame!r}"
        p = msg.pose.pose
        q = p.orientation
        values = (p.position.x, p.position.y, q.x, q.y, q.z, q.w)
        if not all(math.isfinite(float(v)) for v in values) or q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w < 1e-12:
            return "initial pose ignored: its position or orientation is not finite (or the quaternion is zero)"
        yaw_out = quaternion_to_yaw(q.x, q.y, q.z, q.w)
        cov6 = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)
        cov = cov6[np.ix_([0, 1, 5], [0, 1, 5])]
        if not np.all(np.isfinite(cov)) or np.linalg.eigvalsh(0.5 * (cov + cov.T)).min() <= 0:
            cov = DEFAULT_SEED_COVARIANCE
        st = stamp_ns(msg.header)
        if st > 0:
            self._advance(st, idle=False)
        xd, yd, dyaw = self.frames.adapter.to_db(float(p.position.x), float(p.position.y))
        self.tracker.seed(xd, yd, yaw_out + dyaw, cov)
        self._seeded = True
        return None

    def _advance(self, t_ns: int, idle: bool = True) -> None:
        """Move the filter to time ``t_ns``: every buffered odometry pose up to it, then the pose
        interpolated between the last one before and the first one after it, when there is one
        (``idle``: without any odometry, a still vehicle's jitter)."""
        while self._odometry and self._odometry[0][0] <= t_ns:
            self._applied = self._odometry.popleft()
            self.tracker.predict(self._applied[1])
        if self._odometry and self._applied is not None and self._applied[0] < t_ns:
            (t0, p0), (t1, p1) = self._applied, self._odometry[0]
            a = (t_ns - t0) / max(t1 - t0, 1)
            dyaw = math.atan2(math.sin(p1[2] - p0[2]), math.cos(p1[2] - p0[2]))
            pose = (p0[0] + a * (p1[0] - p0[0]), p0[1] + a * (p1[1] - p0[1]), p0[2] + a * dyaw)
            self.tracker.predict(pose)
            self._applied = (t_ns, pose)      # the filter is here now; the next increment starts here
        if not self._odometry_seen and idle:
            self.tracker.predict((0.0, 0.0, 0.0))           # no odometry: a still vehicle, jittered

    # ---- one frame --------------------------------------------------------------------------------
    def process(self, image_msg, stamp: int | None = None, priors: PriorInfo | None = None) -> TrackOutcome:
        st = stamp_ns(image_msg.header) if stamp is None else int(stamp)
        t0 = time.perf_counter()
        gnss_fixes, released = self._apply_fixes(st)
        self._advance(st)
        est = self.tracker.estimate()
        turn = 0.0
        if self._applied is not None:
            yaw_now = self._applied[1][2]
            if self._frame_odom_yaw is not None:
                turn = abs(math.degrees(math.atan2(math.sin(yaw_now - self._frame_odom_yaw),
                                                   math.cos(yaw_now - self._frame_odom_yaw))))
            self._frame_odom_yaw = yaw_now
        search = "global"
        frame_priors = priors
        heading = None
        # While tracking, the localizer looks near the prediction only, also after a frame that
        # contradicted the track (a global search would often land on a wrong tile where the model
        # is weak, and lose a good track); a vehicle moved elsewhere contradicts the track frame
        # after frame there, the filter is lost, and from then on it searches near the anchor first
        # and everywhere when that finds no fix.
        # After an initial pose, until the filter tracks, it looks near the prediction the same way:
        # the operator's pose is where the evidence is sought.
        seeded = est is not None and est.state == TrackState.INITIALISING and self._seeded
        if est is not None and (est.state == TrackState.TRACKING or seeded):
            search = "seed" if seeded else "tracking"
            cam = offset_poses(np.array([[est.x, est.y, est.yaw]]), self.offset)[0]
            sigma_yaw = math.degrees(math.sqrt(max(float(est.covariance[2, 2]), 0.0)))
            pos = PositionPrior(float(cam[0]), float(cam[1]),
                                max(float(self.cfg.tracking_search_radius_m), 3.0 * est.sigma_m))
            if 3.0 * sigma_yaw <= KNOWN_HEADING_DEG and turn < STEADY_TURN_DEG:
                heading = math.degrees(float(cam[2]))       # the predicted yaw as a known heading
                frame_priors = PriorInfo(position=pos, position_note=search)
            else:
                head = HeadingPrior(math.degrees(float(cam[2])),
                                    max(float(self.cfg.tracking_heading_window_deg), 3.0 * sigma_yaw))
                frame_priors = PriorInfo(position=pos, heading=head, position_note=search,
                                         heading_note=search)
        t1 = time.perf_counter()
        turns = int(self.cfg.tracking_decoder_turns)
        anchor = self.tracker.anchor if est is not None and est.state == TrackState.LOST else None
        anchor_ms = 0.0
        outcome = None
        if anchor is not None:
            # lost: first the tiles near the dead-reckoned last pose; its fix is the frame's evidence
            cam = offset_poses(np.array([[anchor.x, anchor.y, anchor.yaw]]), self.offset)[0]
            pos = PositionPrior(float(cam[0]), float(cam[1]),
                                max(float(self.cfg.tracking_search_radius_m), 3.0 * anchor.sigma_m))
            head = HeadingPrior(math.degrees(float(cam[2])), max(float(self.cfg.tracking_heading_window_deg),
                                                                 3.0 * math.degrees(anchor.sigma_yaw)))
            anchor_priors = PriorInfo(position=pos, heading=head, position_note="anchor", heading_note="anchor")
            ta = time.perf_counter()
            local = self.frames.process(image_msg, st, anchor_priors, want_distribution=True, decoder_turns=turns)
            anchor_ms = (time.perf_counter() - ta) * 1e3
            if local.failure is None:
                outcome, frame_priors, search = local, anchor_priors, "anchor"
        if outcome is None:
            outcome = self.frames.process(image_msg, st, frame_priors, want_distribution=True, heading_deg=heading,
                                          decoder_turns=turns if search in LOCAL_SEARCHES else None)
            if anchor_ms:
                # the frame's time includes the search near the anchor that found no fix
                outcome.timings_ms["anchor_search"] = anchor_ms
                outcome.timings_ms["total"] = outcome.timings_ms.get("total", 0.0) + anchor_ms
        t2 = time.perf_counter()
        res = outcome.result
        # a clear view (its detail passes) that the localizer, looking near the prediction only,
        # reports as no fix: its D over the tiles there still tests the track (as a frame under the
        # confidence gate does), supporting or contradicting it; it weighs the particles only as
        # much as tracking.no_fix_weight says (by default not at all: the refused frames of a
        # stretch where the model finds no evidence would hold the particles 1-3 m off, tightly)
        clear_no_fix = (res is not None and outcome.failure == "no_fix" and "detail" not in res.no_fix_features)
        usable = outcome.failure in (None, "low_confidence") or (search in LOCAL_SEARCHES and clear_no_fix)
        evidence = None
        if res is not None and usable and res.distribution is not None:
            evidence = evidence_from_result(res, self.mpp, st, weight=float(res.confidence),
                                            power=float(self.cfg.tracking_evidence_power))
            if outcome.failure is not None:
                evidence.temper = float(self.cfg.tracking_no_fix_weight)
        # ... and without a D it contradicts the track: the vehicle is not where the track is
        contradicted = evidence is None and search in LOCAL_SEARCHES and clear_no_fix
        track = self.tracker.update(evidence, contradicted=contradicted)
        if track is not None and track.state == TrackState.TRACKING:
            self._seeded = False            # from now on the usual rules (lost: anchor, then global)
        # a frame that contradicts the track publishes nothing now (the vehicle may have been
        # moved); while the receiver agrees with the track, its pose is held for the next fix
        filtered = None
        if track is not None and track.publishable and res is not None:
            filtered = self._filtered_estimate(track, st, res, frame_priors)
        elif (track is not None and track.state == TrackState.TRACKING and res is not None
              and self.tracker.gnss_agrees and self.cfg.tracking_gnss_evidence):
            self._held = (st, self._filtered_estimate(track, st, res, frame_priors))
        t3 = time.perf_counter()
        state = track.state.value if track is not None else "no evidence yet"
        return TrackOutcome(outcome, state, filtered, track, search, filter_ms=((t1 - t0) + (t3 - t2)) * 1e3,
                            gnss_fixes=gnss_fixes, released=released)

    def _filtered_estimate(self, track, st: int, res, priors) -> PoseEstimate:
        ad = self.frames.adapter
        c_pos, c_yaw = self.covariance_scales
        scale = np.diag([c_pos, c_pos, c_yaw])
        xb, yb, yaw_b, cov_b = ad.pose_to_out(track.x, track.y, track.yaw, scale @ track.covariance @ scale)
        cam = offset_poses(np.array([[xb, yb, yaw_b]]), self.offset)[0]
        est = self.frames.base_estimate(xb, yb, yaw_b, cov_b, st, res, priors, (float(cam[0]), float(cam[1])),
                                        float(cam[2]), confidence=float(track.share), heading_mode="tracked")
        est.distribution = None
        return est
