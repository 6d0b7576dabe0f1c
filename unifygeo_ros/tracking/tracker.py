"""The tracker: a particle filter over the map pose fed by odometry and the localizer.

``Tracker.predict(odometry_pose)`` moves the particles by the odometry increment since the
previous call (the first call only records the pose); ``Tracker.update(evidence, gnss)``
weights them by a frame's evidence (and optionally a GNSS fix), resamples, and injects
particles drawn from the frame's own evidence when the evidence keeps contradicting the
particles (augmented Monte Carlo localization: the injected share is
``1 - w_fast / w_slow`` of two running averages of the mean likelihood, so a kidnapped
vehicle is found again while one bad frame does little); ``Tracker.update_gnss(fix)``
weights them by a GNSS fix between frames, at its own time. ``Tracker.seed`` starts it from a
known pose with a covariance (RViz's "2D Pose Estimate", ``/initialpose``).

States (:class:`TrackState`): **initialising** until the particles, started from the first
frame's evidence (or a seed), agree on one place (position standard deviation under
``tracking_sigma_m`` after at least ``confirm_frames`` supporting frames); **tracking**
while they do; **lost** after ``lost_frames`` frames in a row whose evidence explains the
particles no better than the outlier model, or when the spread grows past
``lost_sigma_m``; from lost, back to tracking under the same rule as from initialising. Only
a tracking estimate should be published.

**Anchor** (:attr:`Tracker.anchor`): the last publishable estimate, carried on by the
odometry increments alone (noise-free) with a spread that grows by the motion noise. While
lost, for up to ``anchor_frames`` frames, it says where the vehicle is if it was not moved
(a stretch where the localizer found nothing near the track, rather than a kidnap), so that
the caller can search there first (``ros_core.tracking``: tiles around the anchor, the whole
database only when they give no fix). Frames then weigh the particles as any other frame.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from .evidence import Evidence, GnssEvidence, wrap_pi
from .particles import (MotionNoise, effective_sample_size, gnss_likelihood, likelihood, main_mode, offset_poses,
                        predict, relative_motion, relative_support, systematic_resample, vehicle_poses)


#: a GNSS fix agrees with the particles when the Mahalanobis distance^2 of their mean from it,
#: over both covariances, is under the chi-square 99 % quantile of 2 degrees of freedom
GNSS_AGREE_D2 = 9.21


class TrackState(str, Enum):
    INITIALISING = "initialising"
    TRACKING = "tracking"
    LOST = "lost"


@dataclass(frozen=True)
class TrackerConfig:
    particles: int = 1000
    area_m2: float = 1.0e6              # the outlier component's area (the database's extent)
    outlier: float = 0.2                # weight of the uniform outlier component of a frame
    yaw_outlier: float = 0.2            # weight of a uniform yaw within a component
    gnss_outlier: float = 0.05
    noise: MotionNoise = field(default_factory=MotionNoise)
    resample_ess: float = 0.5           # resample when the effective sample size < this share of N
    alpha_slow: float = 0.02            # augmented MCL: running averages of the mean likelihood
    alpha_fast: float = 0.3
    inject_max: float = 0.3             # largest share of particles injected per frame
    lost_inject: float = 0.3            # share injected per frame while lost
    inject_after: int = 2               # contradicting frames in a row before particles are injected
    tracking_sigma_m: float = 3.0       # position std under which the particles agree on one place
    tracking_share: float = 0.6         # ... holding at least this share of the weight
    lost_sigma_m: float = 15.0          # position std above which a tracking filter is lost
    confirm_frames: int = 3             # supporting frames in a row needed before tracking
    support_min: float = 2.0            # a frame supports the particles: that much more D under them than on average
    contradict_max: float = 1.0         # ... contradicts them: less than on average
    lost_frames: int = 2                # contradicting frames in a row that make it lost
    unmatched_frames: int = 3           # frames in a row that matched nothing near it that make it lost
    anchor_frames: int = 30             # lost frames during which the dead-reckoned anchor is offered (0: none)
    camera_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)   # the camera in the vehicle frame (x, y, yaw)
    seed: int = 0

    def __post_init__(self):
        if self.particles < 10:
            raise ValueError(f"particles: expected at least 10, got {self.particles}")
        for name in ("outlier", "yaw_outlier", "gnss_outlier"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name}: expected a value in (0, 1], got {v}")
        if self.anchor_frames < 0:
            raise ValueError(f"anchor_frames: expected >= 0, got {self.anchor_frames}")
        if not self.area_m2 > 0:
            raise ValueError(f"area_m2: expected > 0, got {self.area_m2}")


@dataclass
class TrackEstimate:
    state: TrackState
    x: float
    y: float
    yaw: float                          # rad, ENU
    covariance: np.ndarray              # 3 x 3 over x, y, yaw
    ess: float                          # effective sample size
    support: float                      # the last frame's D under the particles / its average (1: neutral)
    frames: int                         # frames used so far
    share: float = 1.0                  # weight share of the place the estimate is taken at
    contradicted: bool = False          # the last frame's evidence did not support the particles
    unmatched: int = 0                  # frames in a row (up to the last) that matched nothing near the particles

    @property
    def publishable(self) -> bool:
        """Tracking, and the last frame did not contradict it: the pose can be published."""
        return self.state == TrackState.TRACKING and not self.contradicted

    @property
    def sigma_m(self) -> float:
        return float(math.sqrt(max(np.linalg.eigvalsh(self.covariance[:2, :2]).max(), 0.0)))


@dataclass(frozen=True)
class Anchor:
    """The last publishable estimate carried on by odometry (vehicle pose, map frame)."""

    x: float
    y: float
    yaw: float                          # rad, ENU
    sigma_m: float                      # position standard deviation (the estimate's, grown by the motion noise)
    sigma_yaw: float                    # rad
    lost_frames: int                    # frames since the filter was lost


class Tracker:
    def __init__(self, cfg: TrackerConfig | None = None):
        self.cfg = cfg or TrackerConfig()
        self.rng = np.random.default_rng(self.cfg.seed)
        self.poses: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.state = TrackState.INITIALISING
        self._odom: tuple[float, float, float] | None = None
        self._w_slow = 0.0
        self._w_fast = 0.0
        self._supporting = 0
        self._contradicting = 0
        self._unmatched = 0
        self._gnss_agree = 0                        # GNSS fixes in a row that agreed with the particles
        self._frames = 0
        self._support = float("nan")
        self._anchor: np.ndarray | None = None      # x, y, yaw of the last publishable estimate, dead-reckoned
        self._anchor_var = (0.0, 0.0)               # its position and yaw variances
        self._anchor_lost = 0                       # frames lost since

    # ---- inputs -----------------------------------------------------------------------------
    def seed(self, x: float, y: float, yaw: float, covariance: np.ndarray) -> None:
        """Start (or restart) from a pose with its 3 x 3 covariance (x, y, yaw)."""
        cov = np.asarray(covariance, dtype=np.float64).reshape(3, 3)
        cov = 0.5 * (cov + cov.T) + np.eye(3) * 1e-9
        n = self.cfg.particles
        draws = self.rng.multivariate_normal([x, y, yaw], cov, size=n)
        draws[:, 2] = wrap_pi(draws[:, 2])
        self._reset(draws)

    def predict(self, odometry_pose: tuple[float, float, float]) -> None:
        """Move the particles by the odometry increment since the previous pose (x, y, yaw in
        the odometry frame); the first call only records it."""
        pose = tuple(float(v) for v in odometry_pose)
        if self._odom is not None and self.poses is not None:
            delta = relative_motion(self._odom, pose)
            self.poses = predict(self.poses, delta, self.cfg.noise, self.rng)
            if self._anchor is not None:
                n = self.cfg.noise
                dist, turn = math.hypot(delta[0], delta[1]), abs(delta[2])
                s_t = n.a_tt * dist + n.a_tr * turn + n.min_trans
                s_r = n.a_rr * turn + n.a_rt * dist + n.min_rot
                self._anchor = predict(self._anchor[None, :], delta, n, None)[0]
                self._anchor_var = (self._anchor_var[0] + s_t * s_t, self._anchor_var[1] + s_r * s_r)
        self._odom = pose

    @property
    def anchor(self) -> Anchor | None:
        """While lost (for up to ``anchor_frames`` frames): the last publishable estimate
        moved by the odometry since, where the vehicle is unless it was moved; else None."""
        if self._anchor is None or self.state != TrackState.LOST or self._anchor_lost >= self.cfg.anchor_frames:
            return None
        a = self._anchor
        return Anchor(float(a[0]), float(a[1]), float(a[2]), math.sqrt(self._anchor_var[0]),
                      math.sqrt(self._anchor_var[1]), self._anchor_lost)

    def update(self, evidence: Evidence | None, gnss: GnssEvidence | None = None,
               contradicted: bool = False) -> TrackEstimate | None:
        """Weight the particles by a frame's evidence (and a GNSS fix); resample, inject and
        update the state. Returns the estimate (None before the first evidence).

        ``contradicted``: a frame without evidence that nevertheless speaks against the
        particles: a clear view that matched nothing where they are (the localizer, searching
        near the prediction only, reported no fix). It weighs nothing, but the estimate is not
        publishable after it, and ``unmatched_frames`` of them in a row make the filter lost
        (more than ``lost_frames``: a genuine view is now and then refused, and losing a good
        track costs a slow global search)."""
        cfg = self.cfg
        has_evidence = evidence is not None and not evidence.empty
        if self.state == TrackState.LOST:
            self._anchor_lost += 1
        if self.poses is None:
            if not has_evidence:
                return None
            x, y, yaw = evidence.sample(cfg.particles, self.rng)
            self._reset(vehicle_poses(np.stack([x, y, yaw], axis=1), cfg.camera_offset))
            self._frames = 1
            self._supporting = 1
            return self.estimate()
        p = np.ones(len(self.poses))
        support = 1.0
        if has_evidence:
            cams = offset_poses(self.poses, cfg.camera_offset)
            p = likelihood(cams, evidence, cfg.outlier, cfg.area_m2, cfg.yaw_outlier)
            support = float(self.weights @ relative_support(cams, evidence))
        if gnss is not None:
            p = p * gnss_likelihood(self.poses, gnss, cfg.gnss_outlier, cfg.area_m2)
        if not has_evidence and contradicted:
            self._frames += 1
            self._support = 0.0
            self._supporting = 0
            self._unmatched += 1
            return self._update_state()
        if not has_evidence and gnss is None:
            return self.estimate()
        self._frames += 1
        l_avg = float(self.weights @ p)
        # support: how much more of the frame's D lies under the particles than on average over
        # its tiles (1: neutral, e.g. a frame of no strength or GNSS alone)
        self._support = support
        w = self.weights * p
        total = w.sum()
        self.weights = w / total if total > 0 and np.isfinite(total) else np.full(len(w), 1.0 / len(w))
        if has_evidence and evidence.temper < 1.0:
            pass        # a tempered likelihood is on another scale: the running averages are the full frames'
        elif self._w_slow == 0.0:
            self._w_slow = self._w_fast = l_avg
        else:
            self._w_slow += cfg.alpha_slow * (l_avg - self._w_slow)
            self._w_fast += cfg.alpha_fast * (l_avg - self._w_fast)
        if has_evidence:
            self._unmatched = 0
            self._supporting = self._supporting + 1 if support > cfg.support_min else 0
            self._contradicting = self._contradicting + 1 if support < cfg.contradict_max else 0
        inject = 0.0
        if has_evidence and self._contradicting >= cfg.inject_after:
            inject = min(cfg.inject_max, max(0.0, 1.0 - self._w_fast / self._w_slow)) if self._w_slow > 0 else 0.0
        if has_evidence and (self.state == TrackState.LOST or self._contradicting >= cfg.lost_frames):
            inject = max(inject, cfg.lost_inject)
        if effective_sample_size(self.weights) < cfg.resample_ess * len(self.weights) or inject > 0:
            idx = systematic_resample(self.weights, self.rng)
            self.poses = self.poses[idx]
            self.weights = np.full(len(idx), 1.0 / len(idx))
            k = int(round(inject * len(self.poses)))
            if k > 0:
                x, y, yaw = evidence.sample(k, self.rng)
                replace = self.rng.choice(len(self.poses), size=k, replace=False)
                self.poses[replace] = vehicle_poses(np.stack([x, y, yaw], axis=1), cfg.camera_offset)
        return self._update_state()

    def update_gnss(self, fix: GnssEvidence) -> TrackEstimate | None:
        """Weight the particles by a GNSS fix alone, at the fix's time (the caller has moved
        the filter there): a Gaussian of its covariance with ``gnss_outlier`` of outliers;
        resample when the weights degenerate. A fix that agrees with the particles (their mean
        within :data:`GNSS_AGREE_D2` of it, over both covariances) outvotes the frames that
        contradicted them or matched nothing near them, and ``confirm_frames`` agreeing fixes
        in a row confirm a place as as many supporting frames do; so a weak camera (a single
        90-degree view) with a receiver keeps its track where the camera alone would lose it,
        while a fix away from the particles (a kidnap, multipath) confirms nothing. The running
        likelihood averages of the augmented MCL are the frames' and are left alone. None
        before the first frame's evidence."""
        if self.poses is None:
            return None
        before = self.estimate()
        e = np.array([before.x - fix.x, before.y - fix.y])
        d2 = float(e @ np.linalg.solve(before.covariance[:2, :2] + fix.covariance, e))
        if d2 <= GNSS_AGREE_D2:
            # the receiver confirms the particles: frames that contradicted them (or matched nothing
            # near them) are outvoted, and it counts toward the confirmation of a place as a
            # supporting frame does
            self._contradicting = 0
            self._unmatched = 0
            self._gnss_agree += 1
        else:
            self._gnss_agree = 0
        p = gnss_likelihood(self.poses, fix, self.cfg.gnss_outlier, self.cfg.area_m2)
        w = self.weights * p
        total = w.sum()
        self.weights = w / total if total > 0 and np.isfinite(total) else np.full(len(w), 1.0 / len(w))
        if effective_sample_size(self.weights) < self.cfg.resample_ess * len(self.weights):
            idx = systematic_resample(self.weights, self.rng)
            self.poses = self.poses[idx]
            self.weights = np.full(len(idx), 1.0 / len(idx))
        return self._update_state()

    @property
    def gnss_agrees(self) -> bool:
        """The last GNSS fix agreed with the particles (see :meth:`update_gnss`)."""
        return self._gnss_agree > 0

    # ---- state ------------------------------------------------------------------------------
    def _reset(self, poses: np.ndarray) -> None:
        self.poses = np.asarray(poses, dtype=np.float64)
        self.weights = np.full(len(self.poses), 1.0 / len(self.poses))
        self.state = TrackState.INITIALISING
        self._w_slow = self._w_fast = 0.0
        self._supporting = 0
        self._contradicting = 0
        self._unmatched = 0
        self._gnss_agree = 0
        self._anchor = None
        self._anchor_lost = 0

    def _update_state(self) -> TrackEstimate:
        """Move between the states after a change of the particles; returns the estimate."""
        cfg = self.cfg
        est = self.estimate()
        assert est is not None
        sigma = est.sigma_m
        if self.state == TrackState.TRACKING:
            if (self._contradicting >= cfg.lost_frames or self._unmatched >= cfg.unmatched_frames
                    or sigma > cfg.lost_sigma_m):
                self.state = TrackState.LOST
                self._anchor_lost = 0
        elif (sigma <= cfg.tracking_sigma_m and est.share >= cfg.tracking_share
              and max(self._supporting, self._gnss_agree) >= cfg.confirm_frames):
            self.state = TrackState.TRACKING
        if (self.state == TrackState.TRACKING and not (self._contradicting > 0 or self._unmatched > 0)
                and cfg.anchor_frames > 0):     # publishable: the anchor is this estimate
            self._anchor = np.array([est.x, est.y, est.yaw])
            self._anchor_var = (sigma * sigma, max(float(est.covariance[2, 2]), 0.0))
        return dataclasses.replace(est, state=self.state)    # the particles are as estimated; the state is new

    def estimate(self) -> TrackEstimate | None:
        if self.poses is None:
            return None
        mean, cov, share = main_mode(self.poses, self.weights)
        return TrackEstimate(self.state, float(mean[0]), float(mean[1]), float(mean[2]), cov,
                             effective_sample_size(self.weights), self._support, self._frames, share,
                             self._contradicting > 0 or self._unmatched > 0, self._unmatched)
