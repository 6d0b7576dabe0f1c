"""The tracking filter's mathematics on hand-made cases (unifygeo_ros/tracking)."""

from __future__ import annotations

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
        "c" * 64: {"c_pos": 2.0, "c_yaw": 1.0}}}))
    assert lookup_calibration("a" * 64, table).tracking_scales() == (1.2, 1.7)
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
