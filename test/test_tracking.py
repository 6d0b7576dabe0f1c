"""The tracking filter's mathematics on hand-made cases (unifygeo_ros/tracking)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from unifygeo_ros.tracking import Evidence, EvidenceComponent, GnssEvidence, Tracker, TrackerConfig, TrackState
from unifygeo_ros.tracking.evidence import wrap_pi
from unifygeo_ros.tracking.particles import (MotionNoise, effective_sample_size, likelihood, predict,
                                             relative_motion, systematic_resample, weighted_estimate)

L, MPP = 64, 0.5           # a 32 m tile


def blob(center_xy, at_xy, sigma_m=0.7, yaw=None, yaw_sigma=math.radians(3), weight=1.0):
    """A tile centred at ``center_xy`` whose D is a Gaussian at map point ``at_xy``."""
    half = L / 2
    col = half + (at_xy[0] - center_xy[0]) / MPP
    row = half - (at_xy[1] - center_xy[1]) / MPP
    r, c = np.mgrid[0:L, 0:L] + 0.5
    d = np.exp(-0.5 * ((r - row) ** 2 + (c - col) ** 2) / (sigma_m / MPP) ** 2)
    return EvidenceComponent(weight, d, tuple(center_xy), MPP, yaw, None if yaw is None else yaw_sigma)


def test_relative_motion_and_noise_free_prediction_compose_poses():
    prev, cur = (10.0, 5.0, math.pi / 2), (10.0, 7.0, math.pi)
    d = relative_motion(prev, cur)
    assert d == pytest.approx((2.0, 0.0, math.pi / 2))
    poses = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, math.pi / 2]])
    out = predict(poses, d, MotionNoise(), rng=None)
    np.testing.assert_allclose(out, [[2.0, 0.0, math.pi / 2], [1.0, 3.0, -math.pi]], atol=1e-12)


def test_motion_noise_grows_with_distance_and_turn():
    rng = np.random.default_rng(0)
    poses = np.zeros((4000, 3))
    short = predict(poses, (1.0, 0.0, 0.0), MotionNoise(), rng)
    long = predict(poses, (10.0, 0.0, 0.0), MotionNoise(), rng)
    turn = predict(poses, (1.0, 0.0, math.pi / 2), MotionNoise(), rng)
    assert long[:, 0].std() > 5 * short[:, 0].std()
    assert turn[:, 2].std() > 3 * short[:, 2].std()
    assert abs(long[:, 0].mean() - 10.0) < 0.05


def test_likelihood_is_the_mixture_with_a_uniform_outlier():
    comp = blob((0.0, 0.0), (3.0, -2.0), yaw=0.5)
    ev = Evidence([comp])
    poses = np.array([[3.0, -2.0, 0.5], [3.0, -2.0, 0.5 + math.pi], [200.0, 200.0, 0.5]])
    p = likelihood(poses, ev, outlier=0.2, area_m2=1e4, yaw_outlier=0.2)
    uniform = 1.0 / (1e4 * 2 * math.pi)
    assert p[2] == pytest.approx(0.2 * uniform)                    # outside the tile: the outlier only
    assert p[0] > 100 * p[1] > 100 * p[2] / 100                    # right yaw beats the opposite one
    # D integrates to 1 over the tile: the density at the peak is ~ 1 / (2 pi sigma^2)
    assert comp.density(np.array([3.0]), np.array([-2.0]))[0] == pytest.approx(1 / (2 * math.pi * 0.49), rel=0.15)
    with pytest.raises(ValueError, match="expected a square"):
        EvidenceComponent(1.0, np.ones((4, 5)), (0, 0), MPP)
    with pytest.raises(ValueError, match="positive total"):
        EvidenceComponent(1.0, np.zeros((4, 4)), (0, 0), MPP)


def test_a_tempered_frame_weighs_the_particles_less():
    """``Evidence.temper`` raises the frame's likelihood to a power: 0 weighs no particle (the
    frame only tests the track), 1/2 halves its log-likelihood ratios."""
    poses = np.array([[3.0, -2.0, 0.5], [4.0, -2.0, 0.5], [200.0, 200.0, 0.5]])
    full = likelihood(poses, Evidence([blob((0.0, 0.0), (3.0, -2.0), yaw=0.5)]), outlier=0.2, area_m2=1e4)
    half = likelihood(poses, Evidence([blob((0.0, 0.0), (3.0, -2.0), yaw=0.5)], temper=0.5), outlier=0.2,
                      area_m2=1e4)
    none = likelihood(poses, Evidence([blob((0.0, 0.0), (3.0, -2.0), yaw=0.5)], temper=0.0), outlier=0.2,
                      area_m2=1e4)
    assert np.allclose(half, np.sqrt(full))
    assert np.all(none == none[0])
    assert full[0] / full[1] > 2.0 and half[0] / half[1] == pytest.approx(math.sqrt(full[0] / full[1]))
    # in the filter: a frame of no weight moves no particle and leaves the recovery's running
    # averages of the likelihood (the full frames') as they were
    tr = Tracker(TrackerConfig(particles=500, seed=2))
    truth = [0.0, 0.0, 0.0]
    drive = Drive(tr, truth)
    drive.step(tile_evidence, n=4)
    before = (tr.poses.copy(), tr._w_slow, tr._w_fast)
    off = Evidence([blob((0.0, 0.0), (truth[0], truth[1] + 2.0), yaw=truth[2])], temper=0.0)
    tr.update(off)
    assert np.array_equal(tr.poses, before[0]) and (tr._w_slow, tr._w_fast) == before[1:]


def test_the_estimate_is_taken_at_the_heaviest_place():
    """main_mode: the particles around the cell of most weight (on either side of the origin,
    4 m cells), not the mean of two places."""
    from unifygeo_ros.tracking.particles import main_mode

    rng = np.random.default_rng(5)
    here = np.c_[rng.normal(-250.0, 0.5, 600), rng.normal(-1.0, 0.5, 600), np.zeros(600)]
    there = np.c_[rng.normal(130.0, 0.5, 400), rng.normal(-900.0, 0.5, 400), np.zeros(400)]
    poses = np.vstack([here, there])
    mean, cov, share = main_mode(poses, np.full(1000, 1e-3))
    assert mean[:2] == pytest.approx(here[:, :2].mean(axis=0), abs=1e-9) and share == pytest.approx(0.6)
    w = np.r_[np.full(600, 0.2 / 600), np.full(400, 0.8 / 400)]
    mean, cov, share = main_mode(poses, w)
    assert mean[:2] == pytest.approx(np.average(there[:, :2], axis=0), abs=1e-9) and share == pytest.approx(0.8)
    assert cov[0, 0] < 1.0 and cov[1, 1] < 1.0


def test_resampling_and_the_circular_estimate():
    rng = np.random.default_rng(1)
    w = np.array([0.7, 0.1, 0.1, 0.1])
    idx = systematic_resample(w, rng)
    assert len(idx) == 4 and np.sum(idx == 0) in (2, 3)
    assert effective_sample_size(np.full(100, 0.01)) == pytest.approx(100)
    poses = np.array([[0.0, 0.0, math.pi - 0.1], [2.0, 0.0, -math.pi + 0.1]])
    mean, cov = weighted_estimate(poses, np.array([0.5, 0.5]))
    assert mean[0] == pytest.approx(1.0) and abs(abs(mean[2]) - math.pi) < 1e-9
    assert cov[2, 2] == pytest.approx(0.01) and cov[0, 0] == pytest.approx(1.0)


class Drive:
    """A vehicle moving 1 m a step along its yaw; its odometry (which a kidnap does not
    touch) feeds the tracker, and each step one frame of evidence from the truth."""

    def __init__(self, tracker, truth):
        self.tracker, self.truth, self.odom = tracker, truth, [0.0, 0.0, 0.0]
        tracker.predict(tuple(self.odom))

    def step(self, evidence_at, n=1):
        out = []
        for _ in range(n):
            self.truth[0] += math.cos(self.truth[2])
            self.truth[1] += math.sin(self.truth[2])
            self.odom[0] += math.cos(self.odom[2])
            self.odom[1] += math.sin(self.odom[2])
            self.tracker.predict(tuple(self.odom))
            out.append(self.tracker.update(evidence_at(self.truth)))
        return out


def tile_evidence(truth, offset=(5.0, 4.0), sigma=0.7):
    centre = (round(truth[0] / 16) * 16 + offset[0] * 0, round(truth[1] / 16) * 16)
    return Evidence([blob(centre, (truth[0], truth[1]), sigma, yaw=truth[2])])


def test_converges_tracks_and_ignores_one_bad_frame():
    tracker = Tracker(TrackerConfig(particles=500, area_m2=1e5, seed=3))
    truth = [100.0, 50.0, 0.0]
    car = Drive(tracker, truth)
    ests = car.step(tile_evidence, 6)
    assert ests[-1].state == TrackState.TRACKING and ests[-1].publishable
    assert math.hypot(ests[-1].x - truth[0], ests[-1].y - truth[1]) < 0.5
    assert abs(wrap_pi(ests[-1].yaw - truth[2])) < math.radians(3)
    # one frame pointing 80 m away: the estimate stays, the state stays tracking, that frame's
    # estimate is not published
    (est,) = car.step(lambda t: Evidence([blob((t[0] + 81, t[1]), (t[0] + 81, t[1]), yaw=t[2])]))
    assert est.state == TrackState.TRACKING and math.hypot(est.x - truth[0], est.y - truth[1]) < 1.5
    assert not est.publishable
    ests = car.step(tile_evidence, 2)
    assert ests[-1].publishable and math.hypot(ests[-1].x - truth[0], ests[-1].y - truth[1]) < 0.5


def test_a_kidnapped_vehicle_is_found_again():
    tracker = Tracker(TrackerConfig(particles=800, area_m2=1e5, seed=5))
    truth = [100.0, 50.0, 0.0]
    car = Drive(tracker, truth)
    car.step(tile_evidence, 6)
    assert tracker.state == TrackState.TRACKING
    truth[:] = [260.0, -120.0, 1.0]        # moved; odometry does not show it
    ests = car.step(tile_evidence, 25)
    states = [e.state for e in ests]
    assert TrackState.LOST in states, states
    first_back = next(i for i, e in enumerate(ests) if e.state == TrackState.TRACKING
                      and math.hypot(e.x - 260 - (i + 1) * math.cos(1.0), e.y + 120 - (i + 1) * math.sin(1.0)) < 1.0)
    assert first_back < 20, states
    # nothing publishable is far from the truth
    for i, e in enumerate(ests):
        if e.publishable:
            assert math.hypot(e.x - 260 - (i + 1) * math.cos(1.0), e.y + 120 - (i + 1) * math.sin(1.0)) < 20


def test_frames_that_find_nothing_near_the_track_contradict_it():
    """After a kidnap the localizer, searching near the prediction, finds no evidence (no fix):
    such frames must not leave the filter tracking on odometry alone."""
    tracker = Tracker(TrackerConfig(particles=500, area_m2=1e5, seed=11))
    truth = [100.0, 50.0, 0.0]
    car = Drive(tracker, truth)
    car.step(tile_evidence, 6)
    assert tracker.state == TrackState.TRACKING
    # one frame without evidence and not contradicting (e.g. a blurred frame): still tracking,
    # still publishable
    car.truth[0] += 1.0
    car.odom[0] += 1.0
    tracker.predict(tuple(car.odom))
    est = tracker.update(None)
    assert est.state == TrackState.TRACKING and est.publishable
    # moved elsewhere: the next frames match nothing near the track
    truth[:] = [260.0, -120.0, 1.0]
    car.truth[0] += 1.0
    car.odom[0] += 1.0
    tracker.predict(tuple(car.odom))
    for k in range(1, 4):
        est = tracker.update(None, contradicted=True)
        assert not est.publishable and est.contradicted and est.unmatched == k
        assert est.state == (TrackState.TRACKING if k < 3 else TrackState.LOST), k
        car.odom[0] += 1.0
        tracker.predict(tuple(car.odom))
    # the global search then finds the vehicle: tracking again, and published only near the truth
    published_errors = []
    for _ in range(25):
        (e,) = car.step(tile_evidence)
        if e.publishable:
            published_errors.append(math.hypot(e.x - car.truth[0], e.y - car.truth[1]))
    assert published_errors and max(published_errors) < 20, published_errors
    assert e.publishable and published_errors[-1] < 1.0


def test_lost_the_anchor_is_the_last_published_pose_moved_on_by_odometry():
    """A stretch where the localizer finds nothing near the track makes the filter lost; the
    anchor (the last publishable pose dead-reckoned) is then where the vehicle still is, with a
    spread that grows with the distance; evidence found near it takes the track up again."""
    cfg = TrackerConfig(particles=500, area_m2=1e5, seed=13, anchor_frames=6)
    tracker = Tracker(cfg)
    truth = [100.0, 50.0, 0.3]
    car = Drive(tracker, truth)
    ests = car.step(tile_evidence, 6)
    assert ests[-1].publishable and tracker.anchor is None          # tracking: no anchor offered
    last = ests[-1]
    # three frames that match nothing near the track (the vehicle was not moved): lost
    for _ in range(3):
        car.step(lambda t: None)
        est = tracker.update(None, contradicted=True)
    assert est.state == TrackState.LOST
    a = tracker.anchor
    assert a is not None and a.lost_frames == 0
    # three steps of 1 m since the last publishable pose, along its yaw (noise-free odometry)
    assert math.hypot(a.x - truth[0], a.y - truth[1]) < 0.5
    assert math.hypot(a.x - (last.x + 3 * math.cos(last.yaw)), a.y - (last.y + 3 * math.sin(last.yaw))) < 1e-6
    assert abs(wrap_pi(a.yaw - last.yaw)) < 1e-9
    sigma_then = a.sigma_m
    assert sigma_then > last.sigma_m      # grown by the motion noise over 3 m
    car.step(lambda t: None, 4)           # frames without evidence: the anchor moves on, its spread grows
    a = tracker.anchor
    assert a.lost_frames == 4 and a.sigma_m > sigma_then and math.hypot(a.x - truth[0], a.y - truth[1]) < 0.5
    # evidence near the anchor (the localizer searching there first): tracking again at the truth
    ests = car.step(tile_evidence, 4)
    back = next(i for i, e in enumerate(ests) if e.publishable)
    assert back <= 3 and math.hypot(ests[-1].x - truth[0], ests[-1].y - truth[1]) < 0.5
    assert tracker.anchor is None


def test_the_anchor_is_offered_for_anchor_frames_lost_frames_only():
    for frames, offered in ((3, 3), (0, 0)):
        tracker = Tracker(TrackerConfig(particles=300, area_m2=1e5, seed=17, anchor_frames=frames))
        car = Drive(tracker, [100.0, 50.0, 0.0])
        car.step(tile_evidence, 6)
        for _ in range(3):
            tracker.update(None, contradicted=True)
        assert tracker.state == TrackState.LOST
        seen = 0
        for _ in range(6):
            seen += tracker.anchor is not None
            car.step(lambda t: None)
        assert seen == offered, (frames, seen)
    # a seed starts afresh: no anchor
    tracker.seed(0.0, 0.0, 0.0, np.eye(3))
    assert tracker.anchor is None
    with pytest.raises(ValueError, match="anchor_frames"):
        TrackerConfig(anchor_frames=-1)


def test_seed_and_gnss_evidence():
    tracker = Tracker(TrackerConfig(particles=400, area_m2=1e5, seed=7))
    tracker.seed(10.0, 20.0, 0.3, np.diag([4.0, 4.0, 0.05]))
    est = tracker.estimate()
    assert est.state == TrackState.INITIALISING and math.hypot(est.x - 10, est.y - 20) < 0.5
    for _ in range(3):
        est = tracker.update(None, GnssEvidence(10.5, 19.5, np.diag([1.0, 1.0])))
    assert math.hypot(est.x - 10.5, est.y - 19.5) < 0.5 and est.sigma_m < 1.5
    with pytest.raises(ValueError, match="positive-definite"):
        GnssEvidence(0, 0, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="particles"):
        TrackerConfig(particles=1)


def test_gnss_fixes_confirm_outvote_and_ignore():
    """Tracker.update_gnss: fixes that agree confirm a seeded place (as supporting frames do)
    and outvote a frame that contradicted the track; a fix far from the particles (a kidnap,
    multipath) moves nothing and confirms nothing."""
    tracker = Tracker(TrackerConfig(particles=500, area_m2=1e5, seed=11))
    assert tracker.update_gnss(GnssEvidence(0.0, 0.0, np.eye(2))) is None      # nothing to weigh yet
    tracker.seed(100.0, 50.0, 0.0, np.diag([1.0, 1.0, 0.01]))
    states = [tracker.update_gnss(GnssEvidence(100.3, 49.8, np.diag([1.0, 1.0]))).state for _ in range(3)]
    assert states == [TrackState.INITIALISING, TrackState.INITIALISING, TrackState.TRACKING]
    est = tracker.estimate()
    assert est.publishable and math.hypot(est.x - 100.3, est.y - 49.8) < 0.6
    # a frame pointing 80 m away contradicts the track: not publishable until the receiver agrees
    est = tracker.update(Evidence([blob((180.0, 50.0), (180.0, 50.0), yaw=0.0)]))
    assert est.state == TrackState.TRACKING and est.contradicted and not est.publishable
    est = tracker.update_gnss(GnssEvidence(100.2, 50.1, np.diag([1.0, 1.0])))
    assert est.publishable and not est.contradicted
    # a fix 60 m off (multipath): the particles stay, and it counts as no confirmation
    est = tracker.update_gnss(GnssEvidence(160.0, 50.0, np.diag([1.0, 1.0])))
    assert math.hypot(est.x - 100.2, est.y - 50.1) < 1.0 and tracker._gnss_agree == 0


def test_fix_evidence_reads_a_navsatfix_into_the_database_grid():
    """ros_core.tracking.fix_evidence: position from the projection, the east / north
    covariance turned by the grid convergence (2 deg east of zone 32's central meridian), and
    a clear reason for a fix that cannot weigh the filter."""
    from types import SimpleNamespace as NS

    from unifygeo_ros.geo import MapFrame
    from unifygeo_ros.ros_core.tracking import fix_evidence

    db = MapFrame.utm_at(48.14, 11.58)

    def fix(status=0, lat=48.14, lon=11.58, ctype=2, cov=(4.0, 0, 0, 0, 1.0, 0, 0, 0, 9.0)):
        return NS(status=NS(status=status), latitude=lat, longitude=lon, position_covariance_type=ctype,
                  position_covariance=list(cov))

    ev, note = fix_evidence(fix(), db)
    assert note is None and ev.x == pytest.approx(0.0, abs=1e-6) and ev.y == pytest.approx(0.0, abs=1e-6)
    c = ev.covariance
    assert np.linalg.eigvalsh(c) == pytest.approx([1.0, 4.0], rel=2e-3)      # scale factor ~1.00005
    major = math.degrees(0.5 * math.atan2(2 * c[0, 1], c[0, 0] - c[1, 1]))   # true east, from grid east
    assert major == pytest.approx(db.convergence_deg(0.0, 0.0), abs=0.01) and major > 1.5
    lat, lon = db.to_latlon(30.0, -40.0)
    ev, _ = fix_evidence(fix(lat=float(lat), lon=float(lon)), db)
    assert (ev.x, ev.y) == pytest.approx((30.0, -40.0), abs=1e-6)
    for bad, why in ((fix(status=-1), "no fix"), (fix(ctype=0), "without a covariance"),
                     (fix(cov=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)), "positive-definite"),
                     (fix(lat=float("nan")), "latitude")):
        ev, note = fix_evidence(bad, db)
        assert ev is None and why in note, note


def test_no_evidence_before_the_first_frame_gives_no_estimate():
    tracker = Tracker(TrackerConfig(particles=100))
    tracker.predict((0.0, 0.0, 0.0))
    assert tracker.update(None) is None and tracker.estimate() is None
    assert tracker.update(Evidence([])) is None


def test_a_camera_mounted_off_the_vehicle_origin():
    from unifygeo_ros.tracking.particles import offset_poses, vehicle_poses

    poses = np.array([[10.0, 0.0, math.pi / 2], [0.0, 0.0, 0.0]])
    cam = offset_poses(poses, (1.0, 0.5, 0.1))
    np.testing.assert_allclose(cam, [[9.5, 1.0, math.pi / 2 + 0.1], [1.0, 0.5, 0.1]], atol=1e-12)
    np.testing.assert_allclose(vehicle_poses(cam, (1.0, 0.5, 0.1)), poses, atol=1e-12)
    # evidence of the camera's position places the vehicle behind it
    tracker = Tracker(TrackerConfig(particles=400, area_m2=1e5, seed=2, camera_offset=(1.0, 0.0, 0.0)))
    truth = [100.0, 50.0, 0.0]
    car = Drive(tracker, truth)
    ests = car.step(lambda t: Evidence([blob((96.0, 48.0), (t[0] + 1.0, t[1]), yaw=t[2])]), 5)
    assert math.hypot(ests[-1].x - truth[0], ests[-1].y - truth[1]) < 0.4


def test_the_calibration_table_holds_the_tracking_factors(tmp_path):
    import json

    from unifygeo_ros.inference.calibration import CALIBRATION_FORMAT, Calibration, lookup_calibration

    table = tmp_path / "calibration.json"
    table.write_text(json.dumps({"format": CALIBRATION_FORMAT, "models": {
        "a" * 64: {"c_pos": 2.0, "c_yaw": 1.0, "tracking": {"c_pos": 1.2, "c_yaw": 1.7, "poses": 300}},
        "b" * 64: {"c_pos": 2.0, "c_yaw": 1.0, "tracking": {"c_pos": -1.0, "c_yaw": 1.0}},
        "c" * 64: {"c_pos": 2.0, "c_yaw": 1.0},
        "d" * 64: {"c_pos": 2.0, "c_yaw": 1.0, "tracking": {"c_pos": 1.2, "c_yaw": 1.7,
                                                             "pinhole": {"c_pos": 2.5, "c_yaw": 3.0}}},
        "e" * 64: {"c_pos": 2.0, "c_yaw": 1.0, "tracking": {"c_pos": 1.2, "c_yaw": 1.7,
                                                             "pinhole": {"c_pos": 0.0, "c_yaw": 3.0}}},
        "f" * 64: {"c_pos": 2.0, "c_yaw": 1.0, "tracking": {"c_pos": 1.2, "c_yaw": 1.7,
                                                             "rig": {"c_pos": 1.5, "c_yaw": 2.0}}}}}))
    assert lookup_calibration("a" * 64, table).tracking_scales() == (1.2, 1.7)
    # a camera kind without its own factors takes the panorama drives'; one with them, its own
    assert lookup_calibration("a" * 64, table).tracking_scales("pinhole") == (1.2, 1.7)
    assert lookup_calibration("d" * 64, table).tracking_scales("pinhole") == (2.5, 3.0)
    assert lookup_calibration("d" * 64, table).tracking_scales("panorama") == (1.2, 1.7)
    with pytest.raises(ValueError, match=r"tracking factors \(pinhole\)"):
        lookup_calibration("e" * 64, table)
    assert lookup_calibration("f" * 64, table).tracking_scales("rig") == (1.5, 2.0)
    assert lookup_calibration("f" * 64, table).tracking_scales("pinhole") == (1.2, 1.7)
    assert lookup_calibration("d" * 64, table).tracking_scales("rig") == (1.2, 1.7)
    assert lookup_calibration("c" * 64, table).tracking_scales() == (1.0, 1.0)      # not calibrated: unscaled
    assert Calibration().tracking_scales() == (1.0, 1.0)
    with pytest.raises(ValueError, match="tracking factors: expected positive finite c_pos and c_yaw"):
        lookup_calibration("b" * 64, table)


@pytest.mark.slow
def test_calibrate_tracking_part_fits_the_filters_factors(tmp_path):
    """`unifygeo calibrate --part tracking` on one short drive: the filter's own (unscaled)
    covariance is measured, the factors fitted, the other parts of the entry kept."""
    from unifygeo_ros.model_config import shipped_model_path
    from unifygeo_ros.tools.calibrate import calibrate

    shipped_weights = shipped_model_path

    report = calibrate(str(shipped_weights()), [101], ["suburb"], 200.0, 4, str(tmp_path / "cal"), progress=False,
                       part="tracking", drive_s=60.0)
    t = report["tracking"]
    print({k: t[k] for k in ("c_pos", "c_yaw", "coverage_unscaled", "poses")}, t["measured_on"]["per_city"])
    assert t["poses"] >= 20 and 0.2 < t["c_pos"] < 10 and 0.2 < t["c_yaw"] < 10
    assert report["abstention"] and report["c_pos"] > 0             # the entry's other parts are kept
    assert (tmp_path / "cal" / "drive101" / "metadata.yaml").is_file()
    with pytest.raises(ValueError, match="--drive-s: expected at least 30 s"):
        calibrate(str(shipped_weights()), [101], ["suburb"], 200.0, 4, str(tmp_path / "cal"), progress=False,
                  part="tracking", drive_s=10.0)
    with pytest.raises(ValueError, match="--tracking-cameras: unknown fisheye; expected some of pinhole, rig"):
        calibrate(str(shipped_weights()), [101], ["suburb"], 200.0, 4, str(tmp_path / "cal"), progress=False,
                  part="tracking", tracking_cameras=("fisheye",))


# ---- the search while lost (ros_core.tracking): near the anchor first, the whole database after ----

class _Localizer:
    """A stand-in FrameProcessor over a straight road (5 m a frame along x): a search whose
    position prior holds the truth finds it; a global search finds ``global_at(truth)``; in
    the blind frames nothing is found near the track (a clear view, no fix)."""

    def __init__(self, blind, global_at, truth_at, refused=(), refused_offset=(0.0, 2.0)):
        from types import SimpleNamespace as NS

        from unifygeo_ros.ros_core.config import NodeConfig

        self.cfg = NodeConfig()
        self.blind, self.global_at, self.truth_at = blind, global_at, truth_at
        # frames refused near the track (no fix) whose D still lies near it, ``refused_offset`` off
        self.refused, self.refused_offset = set(refused), refused_offset
        db = NS(mpp=MPP, centres=np.array([[0.0, 0.0], [400.0, 400.0]]), tile_size=L)
        self.localizer = NS(db=db, calibration=NS(tracking_scales=lambda kind="panorama": (1.0, 1.0)))
        self.extrinsic = NS(x=0.0, y=0.0, yaw=0.0)
        self.adapter = NS(pose_to_out=lambda x, y, yaw, cov: (x, y, yaw, cov), to_db=lambda x, y: (x, y, 0.0))
        self.searches = []

    def base_estimate(self, x, y, yaw, cov, *args, **kwargs):
        from types import SimpleNamespace as NS
        return NS(x=x, y=y, yaw=yaw, distribution=None)

    def process(self, msg, st, priors, want_distribution=False, heading_deg=None, decoder_turns=None):
        from types import SimpleNamespace as NS

        from unifygeo_ros.ros_core.pipeline import FrameOutcome

        k = int(st // 1_000_000_000)
        truth = self.truth_at(k)
        pos = priors.position if priors is not None else None
        self.searches.append((k, "global" if pos is None else priors.position_note))
        if pos is None:
            at = self.global_at(k, truth)
        else:
            near = math.hypot(truth[0] - pos.x, truth[1] - pos.y) <= pos.radius_m
            at = truth if near and k not in self.blind else None
        out = FrameOutcome(stamp_ns=st, timings_ms={"total": 1.0})
        if at is None:
            out.failure = "no_fix"
            out.result = NS(distribution=None, no_fix_features=())
            return out
        centre = (round(at[0] / 16) * 16, round(at[1] / 16) * 16)
        refused = pos is not None and k in self.refused
        if refused:
            at = (at[0] + self.refused_offset[0], at[1] + self.refused_offset[1])
        d = blob(centre, at, sigma_m=1.5 if refused else 0.7, yaw=0.0).distribution
        out.result = NS(distribution=d, candidates=[NS(center_xy=centre)], yaw_deg=0.0,
                        covariance=np.diag([0.25, 0.25, 1e-3]), diagnostics={}, confidence=0.95,
                        no_fix_features=("evidence",) if refused else ())
        if refused:
            out.failure = "no_fix"
        else:
            out.estimate = object()
        return out


def _drive(frames, n, odometry=True, before=None):
    """Feed ``n`` frames at 1 Hz, the vehicle's odometry 5 m a frame along x; (k, outcome) each
    (``before(proc, k)``: called before frame k, e.g. to give GNSS fixes)."""
    from types import SimpleNamespace as NS

    from unifygeo_ros.ros_core.tracking import TrackingProcessor

    proc = TrackingProcessor(frames, seed=3)
    out = []
    for k in range(n):
        header = NS(stamp=NS(sec=k, nanosec=0), frame_id="camera")
        if before is not None:
            before(proc, k)
        if odometry:
            proc.add_odometry(NS(header=header, pose=NS(pose=NS(position=NS(x=5.0 * k, y=0.0, z=0.0),
                                                              orientation=NS(x=0.0, y=0.0, z=0.0, w=1.0)))))
        out.append(proc.process(NS(header=header), stamp=k * 1_000_000_000))
    return proc, out


def test_odometry_from_tf_takes_the_odom_to_base_transforms_only():
    """tracking.odom_source tf: of a /tf message's transforms, those from odom_frame to
    base_frame (leading slashes ignored) are the odometry; the others (map -> odom, the
    cameras) are not."""
    from types import SimpleNamespace as NS

    from unifygeo_ros.ros_core.tracking import TrackingProcessor

    def tr(parent, child, sec, x, yaw):
        return NS(header=NS(frame_id=parent, stamp=NS(sec=sec, nanosec=0)), child_frame_id=child,
                  transform=NS(translation=NS(x=x, y=0.0, z=0.0),
                               rotation=NS(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))))

    frames = _Localizer(blind=set(), truth_at=lambda k: (100.0 + 5.0 * k, 100.0), global_at=lambda k, t: t)
    proc = TrackingProcessor(frames, seed=3)
    assert proc.add_odometry_transforms(NS(transforms=[tr("map", "odom", 1, 9.0, 0.0),
                                                       tr("base_link", "camera", 1, 0.4, 0.0)])) is None
    assert not proc._odometry
    latest = proc.add_odometry_transforms(NS(transforms=[tr("/odom", "base_link", 1, 5.0, 0.1),
                                                         tr("odom", "/base_link", 2, 10.0, 0.2)]))
    assert latest == 2_000_000_000
    assert [(st, pose[0]) for st, pose in proc._odometry] == [(1_000_000_000, 5.0), (2_000_000_000, 10.0)]
    assert proc._odometry[1][1][2] == pytest.approx(0.2)


def test_an_odometry_pose_that_is_not_finite_is_dropped():
    """A NaN in the odometry (a driver's glitch) would spoil every particle: the pose is
    dropped with the reason, counted, and the filter tracks on from the next one."""
    from types import SimpleNamespace as NS

    from unifygeo_ros.ros_core.tracking import TrackingProcessor

    truth_at = lambda k: (100.0 + 5.0 * k, 100.0)
    proc = TrackingProcessor(_Localizer(blind=set(), truth_at=truth_at, global_at=lambda k, t: t), seed=3)
    outs = []
    for k in range(10):
        header = NS(stamp=NS(sec=k, nanosec=0), frame_id="camera")
        x = float("nan") if k == 5 else 5.0 * k
        note = proc.add_odometry(NS(header=header, pose=NS(pose=NS(position=NS(x=x, y=0.0, z=0.0),
                                                                    orientation=NS(x=0.0, y=0.0, z=0.0, w=1.0)))))
        assert (note == "odometry pose not finite: dropped") == (k == 5), (k, note)
        outs.append(proc.process(NS(header=header), stamp=k * 1_000_000_000))
    assert proc.odometry_dropped == 1
    assert [o.state for o in outs[3:]] == ["tracking"] * 7
    for k, o in enumerate(outs):
        if o.filtered is not None:
            assert math.hypot(o.filtered.x - truth_at(k)[0], o.filtered.y - truth_at(k)[1]) < 2.0, k
    bad = NS(header=NS(frame_id="odom", stamp=NS(sec=11, nanosec=0)), child_frame_id="base_link",
             transform=NS(translation=NS(x=float("inf"), y=0.0, z=0.0), rotation=NS(x=0.0, y=0.0, z=0.0, w=1.0)))
    assert proc.add_odometry_transforms(NS(transforms=[bad])) is None and proc.odometry_dropped == 2


def test_lost_where_the_localizer_found_nothing_searches_near_the_anchor_first():
    """Frames 6-8 find nothing near the track (lost); from then on a global search lands on a
    wrong place 150 m away, while the tiles near the dead-reckoned anchor hold the vehicle: the
    filter takes the track up again there within a few frames and publishes nothing far off."""
    truth_at = lambda k: (100.0 + 5.0 * k, 100.0)
    frames = _Localizer(blind={6, 7, 8}, truth_at=truth_at,
                        global_at=lambda k, t: t if k < 6 else (t[0] + 150.0, t[1] + 60.0))
    proc, outs = _drive(frames, 16)
    states = [o.state for o in outs]
    assert "lost" in states[6:10], states
    lost_at = states.index("lost")
    searches = [o.search for o in outs[lost_at + 1:]]
    assert searches[0] == "anchor", searches
    back = next(i for i, o in enumerate(outs) if i > lost_at and o.filtered is not None)
    assert back - lost_at <= 4, states
    for k, o in enumerate(outs):
        if o.filtered is not None:
            assert math.hypot(o.filtered.x - truth_at(k)[0], o.filtered.y - truth_at(k)[1]) < 2.0, k
    assert [note for k, note in frames.searches if k == lost_at + 1] == ["anchor"]

    # without the anchor (tracking.anchor_frames 0) a lost frame searches the whole database only
    frames0 = _Localizer(blind={6, 7, 8}, truth_at=truth_at,
                         global_at=lambda k, t: t if k < 6 else (t[0] + 150.0, t[1] + 60.0))
    frames0.cfg = dataclasses.replace(frames0.cfg, tracking_anchor_frames=0)
    _, outs0 = _drive(frames0, 12)
    assert all(o.search != "anchor" for o in outs0)
    assert all(note != "anchor" for _, note in frames0.searches)


def test_frames_refused_near_the_track_test_it_and_weigh_it_by_no_fix_weight():
    """Frames 6-11 are clear views the localizer refuses near the track (no fix), their D 2 m
    north of the truth. They support the track (it stays tracking and publishable); by default
    (tracking.no_fix_weight 0) they move no particle, so the poses follow the odometry and stay
    on the truth, while their spread grows; weighing them fully pulls the poses north."""
    truth_at = lambda k: (100.0 + 5.0 * k, 100.0)
    refused = set(range(6, 12))

    def run(weight):
        frames = _Localizer(blind=set(), truth_at=truth_at, global_at=lambda k, t: t, refused=refused)
        frames.cfg = dataclasses.replace(frames.cfg, tracking_no_fix_weight=weight)
        return _drive(frames, 12)[1]

    outs = run(0.0)
    assert all(outs[k].state == "tracking" and outs[k].filtered is not None for k in refused), \
        [o.state for o in outs]
    north = [outs[k].filtered.y - truth_at(k)[1] for k in refused]
    assert max(abs(v) for v in north) < 0.5, north
    assert outs[11].track.sigma_m > 1.5 * outs[5].track.sigma_m
    pulled = [o.filtered.y - truth_at(k)[1] for k, o in enumerate(run(1.0)) if k in refused and o.filtered]
    assert len(pulled) >= 3 and np.median(pulled) > 1.0, pulled


def test_a_kidnapped_vehicle_finds_no_fix_near_the_anchor_and_the_global_search_finds_it():
    truth_at = lambda k: (100.0 + 5.0 * k, 100.0) if k < 8 else (100.0 + 5.0 * k, 300.0)   # moved at frame 8
    frames = _Localizer(blind=set(), truth_at=truth_at, global_at=lambda k, t: t)
    proc, outs = _drive(frames, 22)
    states = [o.state for o in outs]
    assert "lost" in states[8:12], states
    lost_at = states.index("lost")
    # each lost frame tried the anchor first (no fix there), then the whole database
    tried = [note for k, note in frames.searches if k == lost_at + 1]
    assert tried == ["anchor", "global"], frames.searches
    assert outs[lost_at + 1].search == "global"
    assert outs[lost_at + 1].frame.timings_ms["total"] == pytest.approx(1.0 + outs[lost_at + 1].frame.timings_ms[
        "anchor_search"])
    back = next(i for i, o in enumerate(outs) if i > lost_at and o.filtered is not None)
    assert back - 8 <= 10, states
    for k, o in enumerate(outs):
        if o.filtered is not None:
            assert math.hypot(o.filtered.x - truth_at(k)[0], o.filtered.y - truth_at(k)[1]) < 2.0, (k, states)


def test_gnss_fixes_keep_a_track_through_frames_that_find_nothing():
    """Frames 4-15 find nothing near the track (a weak camera), and a global search lands 160 m
    off: alone, the filter is lost there. With a receiver's fixes (5 Hz, sigma 1 m, one used per
    tracking.gnss_interval_s) weighing it at their own stamps it stays tracking, publishes
    nothing at the frames that contradict it but their poses once the next fix agrees (late,
    with their stamps), and at the first frame that finds the vehicle again a pose near the
    truth at once; when the fixes show the vehicle moved, the held poses after the jump are
    dropped; a fix older than the filter's time is dropped."""
    from types import SimpleNamespace as NS

    from unifygeo_ros.geo import MapFrame

    truth_at = lambda k: (100.0 + 5.0 * k, 100.0)
    wrong = lambda k, t: t if k < 4 else (t[0] + 150.0, t[1] + 60.0)
    blind = set(range(4, 16))
    _, alone = _drive(_Localizer(blind=blind, truth_at=truth_at, global_at=wrong), 20)
    assert "lost" in [o.state for o in alone[4:16]]

    frames = _Localizer(blind=blind, truth_at=truth_at, global_at=wrong)
    db = MapFrame.utm_at(48.14, 11.58)
    frames.adapter.db = db

    def fix_at(t_s):
        lat, lon = db.to_latlon(100.0 + 5.0 * t_s, 100.0)
        sec, ns = divmod(int(round(t_s * 1e9)), 1_000_000_000)
        return NS(header=NS(stamp=NS(sec=sec, nanosec=ns), frame_id="gnss"), status=NS(status=0),
                  latitude=float(lat), longitude=float(lon), position_covariance_type=2,
                  position_covariance=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 4.0])

    def gnss(proc, k):
        for j in range(1, 6):               # 5 Hz since the previous frame, the last at this frame's stamp
            if k - 1 + 0.2 * j >= 0:
                assert proc.add_fix(fix_at(k - 1 + 0.2 * j)) is None

    proc, outs = _drive(frames, 20, before=gnss)
    states = [o.state for o in outs]
    assert all(s == "tracking" for s in states[3:]), states
    assert all(outs[k].filtered is None for k in blind)
    assert outs[16].filtered is not None
    for k, o in enumerate(outs):
        if o.filtered is not None:
            assert math.hypot(o.filtered.x - truth_at(k)[0], o.filtered.y - truth_at(k)[1]) < 2.0, k
    # each blind frame's pose was held, and the next fix (1 s later) agreed: released then, with
    # the frame's own stamp
    released = {o.released[0] // 1_000_000_000: o.released[1] for o in outs if o.released is not None}
    assert sorted(released) == sorted(blind), sorted(released)
    for k, est in released.items():
        assert math.hypot(est.x - truth_at(k)[0], est.y - truth_at(k)[1]) < 2.0, k
    assert all(o.gnss_fixes == 1 for o in outs[3:]) and proc.gnss_skipped >= 4 * 16
    # the receiver shows the vehicle 100 m away from 8 s on (moved; odometry does not show it):
    # the frames held before the jump are released, none after it
    frames_k = _Localizer(blind=blind, truth_at=truth_at, global_at=wrong)
    frames_k.adapter.db = db

    def gnss_jump(proc, k):
        for j in range(1, 6):
            t = k - 1 + 0.2 * j
            if t >= 0:
                f = fix_at(t)
                if t > 8.0:
                    f.latitude, f.longitude = (float(v) for v in db.to_latlon(100.0 + 5.0 * t, 200.0))
                proc.add_fix(f)

    _, outs_k = _drive(frames_k, 14, before=gnss_jump)
    released_k = sorted(o.released[0] // 1_000_000_000 for o in outs_k if o.released is not None)
    assert released_k == [4, 5, 6, 7], released_k
    assert all(o.filtered is None for o in outs_k[8:])
    # a fix stamped before the filter's time comes too late: dropped, not applied out of order
    assert proc.add_fix(fix_at(12.0)) is None
    proc.process(NS(header=NS(stamp=NS(sec=20, nanosec=0), frame_id="camera")), stamp=20_000_000_000)
    assert proc.gnss_dropped == 1
    # the option off: fixes are refused with the reason
    proc.cfg = dataclasses.replace(proc.cfg, tracking_gnss_evidence=False)
    assert "tracking.gnss_evidence" in proc.add_fix(fix_at(21.0))


# ---- an initial pose (/initialpose): TrackingProcessor.seed, as the node and the replay call it ----

def _initial_pose(x, y, yaw, sec=0, frame="map", sigma_m=1.0, sigma_deg=5.0):
    from types import SimpleNamespace as NS

    cov = np.zeros(36)
    cov[0] = cov[7] = sigma_m ** 2
    cov[35] = math.radians(sigma_deg) ** 2
    return NS(header=NS(stamp=NS(sec=sec, nanosec=0), frame_id=frame),
              pose=NS(pose=NS(position=NS(x=x, y=y, z=0.0),
                              orientation=NS(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))),
                      covariance=cov))


def _odometry(proc, k):
    from types import SimpleNamespace as NS

    proc.add_odometry(NS(header=NS(stamp=NS(sec=k, nanosec=0), frame_id="odom"),
                         pose=NS(pose=NS(position=NS(x=5.0 * k, y=0.0, z=0.0),
                                         orientation=NS(x=0.0, y=0.0, z=0.0, w=1.0)))))


def test_an_initial_pose_starts_the_filter_where_the_whole_database_misleads():
    """Every global search lands 160 m off (a narrow view the model places wrongly), the tiles
    near the truth hold it: seeded at the truth's pose (1.5 m off), the filter searches near the
    seed, publishes from the third frame (the confirming frames) and nothing far off."""
    from types import SimpleNamespace as NS

    from unifygeo_ros.ros_core.tracking import TrackingProcessor

    truth_at = lambda k: (100.0 + 5.0 * k, 100.0)
    frames = _Localizer(blind=set(), truth_at=truth_at, global_at=lambda k, t: (t[0] + 150.0, t[1] + 60.0))
    proc = TrackingProcessor(frames, seed=3)
    assert proc.seed(_initial_pose(101.0, 98.9, math.radians(4.0))) is None
    outs = []
    for k in range(8):
        _odometry(proc, k)
        outs.append(proc.process(NS(header=NS(stamp=NS(sec=k, nanosec=0), frame_id="camera")),
                                 stamp=k * 1_000_000_000))
    searches = [o.search for o in outs]
    assert searches[:3] == ["seed"] * 3 and "global" not in searches, searches
    assert [note for _, note in frames.searches[:3]] == ["seed"] * 3
    first = next(i for i, o in enumerate(outs) if o.filtered is not None)
    assert first == 2, [o.state for o in outs]
    assert all(o.search == "tracking" for o in outs[first + 1:])
    for k, o in enumerate(outs):
        if o.filtered is not None:
            assert math.hypot(o.filtered.x - truth_at(k)[0], o.filtered.y - truth_at(k)[1]) < 2.0, k


def test_an_initial_pose_is_where_the_vehicle_was_at_its_stamp_and_a_wrong_frame_is_ignored():
    from unifygeo_ros.ros_core.tracking import TrackingProcessor

    frames = _Localizer(blind=set(), truth_at=lambda k: (100.0 + 5.0 * k, 100.0), global_at=lambda k, t: t)
    proc = TrackingProcessor(frames, seed=3)
    for k in range(4):
        _odometry(proc, k)                  # odometry up to 3 s is buffered ...
    assert proc.seed(_initial_pose(110.0, 100.0, 0.0, sec=2)) is None     # ... the pose is at 2 s
    proc._advance(3_000_000_000)
    est = proc.tracker.estimate()
    assert est.x == pytest.approx(115.0, abs=0.6) and est.y == pytest.approx(100.0, abs=0.6), est
    # another frame, or a pose that is not finite: ignored with the reason, the filter unchanged
    fresh = TrackingProcessor(frames, seed=3)
    why = fresh.seed(_initial_pose(110.0, 100.0, 0.0, frame="odom"))
    assert "frame 'odom' ignored: expected map_frame 'map'" in why and fresh.tracker.poses is None
    assert "not finite" in fresh.seed(_initial_pose(float("nan"), 100.0, 0.0))
    assert fresh.seed(_initial_pose(110.0, 100.0, 0.0, frame="/map")) is None      # a leading / is the same frame
    # a covariance that is not positive-definite (RViz's zeros): the default one
    zero = _initial_pose(110.0, 100.0, 0.0)
    zero.pose.covariance = np.zeros(36)
    assert fresh.seed(zero) is None and 1.0 < fresh.tracker.estimate().sigma_m < 3.0
