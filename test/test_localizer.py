"""The Localizer contract: results, conventions, priors, the posterior's covariance and
confidence, calibration, and bad frames that never take the localizer down."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unifygeo_ros.conventions import angle_diff_deg
from unifygeo_ros.database.build import BuildConfig, build_database
from unifygeo_ros.inference import posterior
from unifygeo_ros.inference.calibration import (
    CHI2_2_95,
    Calibration,
    fit_scales,
    mahalanobis2,
)
from unifygeo_ros.inference.preprocess import ground_input
from unifygeo_ros.localizer import (
    Camera,
    HeadingPrior,
    LocalizationError,
    LocalizationResult,
    Localizer,
    PositionPrior,
)
from unifygeo_ros.localizer import localizer as localizer_module
from unifygeo_ros.model.unifygeo import UnifyGeo, save_checkpoint
from unifygeo_ros.sim.render import (
    render_panorama,
    render_pinhole,
    write_orthophoto_geotiff,
)
from unifygeo_ros.sim.world import generate_city

SEED = 3001          # a held-out city seed (training used 11-16, validation 21)

# Accuracy bounds for the shipped model (test_trained_model_localizes_rendered_panoramas):
# panoramas with a known heading and a 25 m position prior centred 10 m off the truth.
# Set from the final shipped model: the provisional epoch-4 model (bb93239267ba) measured a
# median error of 0.52 m and a median yaw error of 1.5 deg here; keep the bounds loose enough to
# pass on the final model, tight enough to catch a sign or axis error (tens of metres off).
SHIPPED_MAX_MEDIAN_ERROR_M = 2.5          # shipped model measured 0.91 m
SHIPPED_MAX_MEDIAN_YAW_ERROR_DEG = 4.0    # shipped model measured 1.40 deg


@pytest.fixture(scope="module")
def city():
    return generate_city(SEED, 200.0, 48.14, 11.58, style="default")


@pytest.fixture(scope="module")
def db_path(tmp_path_factory, city):
    root = tmp_path_factory.mktemp("loc")
    torch.manual_seed(0)
    weights = root / "w.pt"
    save_checkpoint(UnifyGeo("small").eval(), weights, half=True, training={"aerial_mpp": 0.5})
    tif = root / "city.tif"
    write_orthophoto_geotiff(city, tif, 0.25)
    out = root / "db"
    build_database(BuildConfig([str(tif)], str(weights), str(out), backend="torch-cpu"), progress=False)
    return out


@pytest.fixture(scope="module")
def loc(db_path):
    return Localizer.open(db_path, backend="torch-cpu")


@pytest.fixture(scope="module")
def pano(city):
    return render_panorama(city, (100.0, 100.0), 30.0, 512, 256)


def test_result_contract(loc, pano):
    res = loc.localize(pano, return_distribution=True)
    assert isinstance(res, LocalizationResult)
    assert res.heading_mode == "unknown" and res.backend == "torch-cpu" == loc.backend_name
    assert res.covariance.shape == (3, 3) and np.allclose(res.covariance, res.covariance.T)
    assert np.all(np.linalg.eigvalsh(res.covariance) > 0)
    assert 0.0 <= res.confidence <= 1.0
    assert set(res.timings_ms) == {"preprocess", "ground", "search", "aerial", "decoder", "ensemble", "posterior",
                                   "total"}
    assert len(res.candidates) == 5 and res.candidates[0].tile_id == res.tile_id
    # The default tile choice, the consensus: the candidates by their support, best first.
    assert res.diagnostics["tile_choice"] == "consensus"
    support = list(res.diagnostics["consensus_support"])
    assert len(support) == 5 and support == sorted(support, reverse=True)
    for c in res.candidates:
        assert c.combined == pytest.approx(c.retrieval_score + c.matching_score)   # rerank_score "matching"
    # x, y is the MAP pixel's centre in the chosen tile; lat / lon is the same point.
    d = res.distribution
    assert d.shape == (128, 128) and d.sum() == pytest.approx(1.0, abs=1e-4)
    r, c = np.unravel_index(np.argmax(d), d.shape)
    assert res.pixel == (r + 0.5, c + 0.5)
    assert (res.x, res.y) == pytest.approx(loc.db.pixel_to_xy(res.tile_id, r + 0.5, c + 0.5))
    lat, lon = loc.frame.to_latlon(res.x, res.y)
    assert (res.latitude, res.longitude) == pytest.approx((lat, lon), abs=1e-9)
    assert res.yaw_deg is not None and -180.0 < res.yaw_deg <= 180.0
    assert loc.localize(pano).distribution is None


def test_known_heading_turns_the_panorama_to_grid_north(city):
    """Seen with a known heading, a panorama facing yaw 30 becomes the one facing north (ENU 90)."""
    xy = (100.0, 100.0)
    facing = render_panorama(city, xy, 30.0, 512, 256)
    north = render_panorama(city, xy, 90.0, 512, 256)
    got, mask = ground_input(facing, Camera(), (128, 256), heading_deg=30.0)
    want, _ = ground_input(north, Camera(), (128, 256), heading_deg=None)
    assert mask.min() == 1.0
    assert np.abs(got.astype(float) - want.astype(float)).mean() < 3.0
    assert np.abs(got.astype(float) - ground_input(facing, Camera(), (128, 256), None)[0]).mean() > 15.0


def test_known_heading_places_a_pinhole_at_its_bearing(city):
    """A 90-degree pinhole facing ENU 0 (east) lands on the east quarter of the north-aligned panorama."""
    xy = (100.0, 100.0)
    pin = render_pinhole(city, xy, 0.0, 90.0, 320, 240)
    got, mask = ground_input(pin, Camera("pinhole", hfov_deg=90.0), (128, 256), heading_deg=0.0)
    north, _ = ground_input(render_panorama(city, xy, 90.0, 1024, 512), Camera(), (128, 256), None)
    cols = np.nonzero(mask)[0]
    assert cols.min() == pytest.approx(256 * 0.5 + 256 * 45 / 360, abs=1.5)       # bearing 45 .. 135
    assert cols.max() == pytest.approx(256 * 0.5 + 256 * 135 / 360, abs=1.5)
    band = slice(50, 78)                                                           # near the horizon
    diff = np.abs(got[band][:, cols].astype(float) - north[band][:, cols].astype(float)).mean()
    assert diff < 20.0


def test_priors(loc, pano, db_path):
    res = loc.localize(pano, prior=PositionPrior(100.0, 100.0, 30.0))
    for c in res.candidates:
        assert math.hypot(c.center_xy[0] - 100.0, c.center_xy[1] - 100.0) <= 30.0 + 32.0 / math.sqrt(2) + 1e-6
    with pytest.raises(LocalizationError, match="no database tile within 10 m"):
        loc.localize(pano, prior=PositionPrior(5000.0, 5000.0, 10.0))
    res = loc.localize(pano, prior=(HeadingPrior(30.0, 20.0), PositionPrior(100.0, 100.0, 60.0)))
    assert res.heading_mode == "prior"
    assert res.diagnostics["calibration_case"] == "heading window, position prior"
    # The chosen alignment lies inside the window: 90 + k * 11.25 within 20 + 5.625 of yaw 30.
    k = res.diagnostics["alignment"]
    assert abs(angle_diff_deg(90.0 + k * 11.25, 30.0)) <= 20.0 + 5.625 + 1e-9
    known = loc.localize(pano, heading=30.0)
    assert known.heading_mode == "known" and known.diagnostics["calibration_case"] == "known heading"
    assert loc.localize(pano).diagnostics["calibration_case"] == "unknown heading"
    with pytest.raises(LocalizationError, match="not both"):
        loc.localize(pano, heading=30.0, prior=HeadingPrior(30.0, 10.0))


def test_bad_frames_raise_and_the_next_frame_still_works(loc, pano):
    bad = [
        (pano[:, :300], "not 2:1"),
        (pano.astype(np.float32) * np.nan, "NaN"),
        (pano.astype(np.uint16), "uint8"),
        (pano[..., :2], "H x W x 3"),
        (pano.tolist(), "numpy array"),
        (np.zeros((8, 16, 3), np.uint8), "at least 16 px"),
        (np.zeros_like(pano), "no content"),                         # a covered lens
        (np.full_like(pano, 255), "no content"),                     # a saturated frame
        (np.clip(np.full_like(pano, 128) + np.random.default_rng(0).integers(0, 2, pano.shape), 0, 255)
         .astype(np.uint8), "no content"),                          # sensor noise on a grey frame
    ]
    for image, message in bad:
        with pytest.raises(LocalizationError, match=message):
            loc.localize(image)
        assert loc.localize(pano).tile_id >= 0
    with pytest.raises(LocalizationError, match="finite ENU yaw"):
        loc.localize(pano, heading=float("nan"))
    with pytest.raises(ValueError, match="pinhole camera"):
        Camera("pinhole")


def test_pinhole_frames(loc, city):
    pin = render_pinhole(city, (100.0, 100.0), 30.0, 90.0, 320, 240)
    res = loc.localize(pin, camera=Camera("pinhole", hfov_deg=90.0))
    assert res.heading_mode == "unknown" and np.isfinite(res.x)
    res = loc.localize(pin, camera=Camera("pinhole", hfov_deg=90.0), heading=30.0)
    assert res.heading_mode == "known"


def test_recompute_mode_matches_stored(tmp_path, db_path, pano):
    """The same database with tile pixels re-encoded per query localizes the same way."""
    import shutil

    from unifygeo_ros.database.store import read_manifest

    manifest = read_manifest(db_path)
    out = tmp_path / "db"
    build_database(BuildConfig([manifest["sources"][0]["path"]], str(db_path / "model.pt"), str(out),
                               backend="torch-cpu", features="recompute"), progress=False)
    a = Localizer.open(db_path, backend="torch-cpu").localize(pano)
    b = Localizer.open(out, backend="torch-cpu").localize(pano)
    assert a.tile_id == b.tile_id
    assert math.hypot(a.x - b.x, a.y - b.y) <= 0.5 + 1e-9          # within one pixel (fp16 features)
    shutil.rmtree(out)


def _gaussian(shape, centre, sigma, mass=1.0):
    r, c = np.mgrid[0:shape[0], 0:shape[1]]
    g = np.exp(-((r + 0.5 - centre[0]) ** 2 + (c + 0.5 - centre[1]) ** 2) / (2 * sigma ** 2))
    return mass * g / g.sum()


def test_posterior_covariance_of_a_gaussian_D():
    d = _gaussian((128, 128), (40.5, 70.5), 3.0)
    st = posterior.position_stats(d)
    assert (st.row, st.col) == (40.5, 70.5)
    # The support (>= 5 % of the peak) is the disk r^2 <= 2 ln(20) sigma^2; a Gaussian truncated
    # to it has a per-axis variance of sigma^2 (1 - 0.05 ln(20) / 0.95); plus 1/12 px^2.
    expected = 9.0 * (1 - 0.05 * math.log(20) / 0.95) + 1 / 12
    assert st.cov_px[0, 0] == pytest.approx(expected, rel=0.08) and abs(st.cov_px[0, 1]) < 1e-6
    assert st.components == 1 and st.mode_mass == pytest.approx(st.support_mass)
    cov = posterior.cov_px_to_xy(st.cov_px, 0.5)
    assert cov[0, 0] == pytest.approx(st.cov_px[1, 1] * 0.25) and cov[1, 1] == pytest.approx(st.cov_px[0, 0] * 0.25)


def test_posterior_a_second_mode_lowers_the_mass_not_the_precision():
    """Multimodality: a second peak 30 px east with 60 % of the first one's mass lowers the
    mode's mass (hence the confidence: the chance of the wrong mode), while the covariance is
    the chosen mode's own; over the whole support it would stretch along the line joining the
    modes."""
    one = posterior.position_stats(_gaussian((128, 128), (64.5, 40.5), 2.0))
    d = _gaussian((128, 128), (64.5, 40.5), 2.0, 0.625) + _gaussian((128, 128), (64.5, 70.5), 2.0, 0.375)
    two = posterior.position_stats(d)
    assert (two.row, two.col) == (64.5, 40.5) and two.components == 2
    np.testing.assert_allclose(two.cov_px, one.cov_px, rtol=0.02, atol=1e-3)      # the chosen mode's spread
    assert two.cov_support_px[1, 1] > 100 * one.cov_px[1, 1]                # every mode: along the joining line
    assert two.mode_mass == pytest.approx(0.625 * 0.95, abs=0.02)          # 95 % of a Gaussian lies in its support
    # A competing tile that agrees adds nothing; one that disagrees widens the ellipse.
    est = np.array([10.0, 10.0])
    cov_a, agree_a, _ = posterior.candidate_mixture(np.array([[10.0, 10.0], [10.2, 9.9]]), est,
                                                    np.array([1.0, 0.98]), 14.0, 3.0)
    cov_b, agree_b, _ = posterior.candidate_mixture(np.array([[10.0, 10.0], [60.0, 10.0]]), est,
                                                    np.array([1.0, 0.98]), 14.0, 3.0)
    assert np.trace(cov_a) < 0.1 and agree_a == pytest.approx(1.0)
    assert cov_b[0, 0] > 500 and agree_b < 0.6


def test_yaw_variance_from_the_alignment_posterior_and_the_field():
    bins = 32
    d = _gaussian((128, 128), (64.5, 64.5), 2.0)
    mode = posterior.position_stats(d).mode_mask
    field = np.stack([np.zeros((128, 128)), np.ones((128, 128))])            # yaw 90 everywhere
    sharp = np.full(bins, -1.0)
    sharp[3] = 1.0
    v1, info = posterior.yaw_variance_deg2(sharp, np.zeros(bins), 50.0, 3, 11.25, field, mode, d, 64, 64)
    assert v1 == pytest.approx(posterior.YAW_FLOOR_DEG ** 2, rel=1e-3) and info["var_field_deg2"] < 1e-9
    flat = np.zeros(bins)
    v2, _ = posterior.yaw_variance_deg2(flat, np.zeros(bins), 50.0, 3, 11.25, field, mode, d, 64, 64)
    assert math.sqrt(v2) > 90.0                                   # a uniform posterior: ~104 deg
    known = np.full(bins, -1e4)
    known[0] = 0.0
    v3, _ = posterior.yaw_variance_deg2(flat, known, 50.0, 0, 11.25, field, mode, d, 64, 64)
    assert v3 == pytest.approx(v1, rel=1e-3)                       # a known heading removes the search term
    # Two hills (the heading and its opposite): the variance is the chosen hill's, not the
    # spread between the hills; the other hill is the wrong-mode chance.
    a = np.arange(bins)
    two = 1.0 - 0.1 * np.minimum(np.abs(a - 8), np.abs(a - 24)) ** 2
    two[24] += 0.02                                                 # the opposite hill a little higher
    assert list(posterior.alignment_hill(posterior.softmax(5.0 * two), 8)) == list(range(6, 11))
    v4, info = posterior.yaw_variance_deg2(two, np.zeros(bins), 5.0, 8, 11.25, field, mode, d, 64, 64)
    assert 5.0 < math.sqrt(v4) < 15.0 and info["alignment_hill_mass"] < 0.5      # both hills: about 120 deg


def test_calibration_fit_recovers_a_known_scale():
    rng = np.random.default_rng(0)
    n = 4000
    cov = np.array([[4.0, 1.0], [1.0, 2.0]])
    err = rng.multivariate_normal([0, 0], cov * 9.0, size=n)          # true covariance 3^2 times larger
    fit = fit_scales(err, np.repeat(cov[None], n, 0), rng.normal(0, 6.0, n), np.full(n, 2.0))
    assert fit["c_pos"] == pytest.approx(3.0, rel=0.05) and fit["c_yaw"] == pytest.approx(3.0, rel=0.05)
    d2 = mahalanobis2(err, np.repeat(cov[None] * fit["c_pos"] ** 2, n, 0))
    assert np.mean(d2 <= CHI2_2_95) == pytest.approx(0.95, abs=0.005)


def test_calibration_scales_the_published_covariance(db_path, pano):
    raw = Localizer.open(db_path, backend="torch-cpu", calibration=Calibration(1.0, 1.0, "explicit")).localize(pano)
    scaled = Localizer.open(db_path, backend="torch-cpu", calibration=Calibration(2.0, 3.0, "explicit")).localize(pano)
    np.testing.assert_allclose(scaled.covariance[:2, :2], 4.0 * raw.covariance[:2, :2])
    assert scaled.covariance[2, 2] == pytest.approx(9.0 * raw.covariance[2, 2])


def test_pinhole_views_get_their_own_scale_factors(db_path, pano):
    pin = np.random.default_rng(4).integers(0, 255, size=(240, 320, 3), dtype=np.uint8)
    cam = Camera("pinhole", hfov_deg=90.0)
    two = Calibration(2.0, 3.0, "explicit", c_pos_pinhole=5.0, c_yaw_pinhole=0.5)
    one = Calibration(1.0, 1.0, "explicit")
    raw_pin = Localizer.open(db_path, backend="torch-cpu", calibration=one).localize(pin, camera=cam, heading=10.0)
    got_pin = Localizer.open(db_path, backend="torch-cpu", calibration=two).localize(pin, camera=cam, heading=10.0)
    np.testing.assert_allclose(got_pin.covariance[:2, :2], 25.0 * raw_pin.covariance[:2, :2])
    assert got_pin.covariance[2, 2] == pytest.approx(0.25 * raw_pin.covariance[2, 2])
    raw = Localizer.open(db_path, backend="torch-cpu", calibration=one).localize(pano)
    got = Localizer.open(db_path, backend="torch-cpu", calibration=two).localize(pano)
    np.testing.assert_allclose(got.covariance[:2, :2], 4.0 * raw.covariance[:2, :2])
    # Without a pinhole pair every camera gets the one pair.
    assert Calibration(2.0, 3.0).scales("pinhole") == (2.0, 3.0)
    assert two.scales("pinhole") == (5.0, 0.5) and two.scales("panorama") == (2.0, 3.0)


def test_calibration_table_entries_with_and_without_a_pinhole_pair(monkeypatch, tmp_path):
    from unifygeo_ros.inference import calibration
    from unifygeo_ros.inference.calibration import lookup_calibration

    table = tmp_path / "calibration.json"
    table.write_text(json.dumps({"format": calibration.CALIBRATION_FORMAT, "models": {
        "a" * 64: {"c_pos": 2.0, "c_yaw": 1.5, "pinhole": {"c_pos": 9.0, "c_yaw": 1.1}, "date": "x"},
        "b" * 64: {"c_pos": 3.0, "c_yaw": 1.2}}}))
    monkeypatch.setattr(calibration, "CALIBRATION_FILE", table)
    a = lookup_calibration("a" * 64)
    assert a.source == "table" and a.scales("pinhole") == (9.0, 1.1) and a.scales("panorama") == (2.0, 1.5)
    assert "pinhole" not in a.details and a.details["date"] == "x"
    b = lookup_calibration("b" * 64)
    assert b.scales("pinhole") == (3.0, 1.2)
    assert lookup_calibration("c" * 64).source == "none"


def test_calibration_cases_take_their_own_factors_and_map_or_their_kinds(monkeypatch, tmp_path):
    from unifygeo_ros.inference import calibration
    from unifygeo_ros.inference.calibration import calibration_case, lookup_calibration

    assert calibration_case("known", False) == "known heading"
    assert calibration_case("prior", True) == "heading window, position prior"
    assert calibration_case("unknown", True) == "unknown heading, position prior"
    with pytest.raises(ValueError, match="expected one of known, prior, unknown"):
        calibration_case("compass", False)
    own_map = {"features": list(calibration.CONFIDENCE_FEATURES), "bias": -3.0, "weights": [0.0, 0.0]}
    kind_map = {"features": list(calibration.CONFIDENCE_FEATURES), "bias": 1.0, "weights": [0.0, 0.0]}
    table = tmp_path / "calibration.json"
    entry = {"c_pos": 2.0, "c_yaw": 1.5, "confidence": kind_map,
             "cases": {"known heading": {"c_pos": 1.2, "c_yaw": 0.4, "views": 9}},
             "pinhole": {"c_pos": 9.0, "c_yaw": 1.1, "cases": {
                 "unknown heading": {"c_pos": 4.0, "c_yaw": 7.0, "confidence": own_map},
                 "known heading": {"confidence": own_map, "fitted_on": "the pinhole factors"}}}}
    table.write_text(json.dumps({"format": calibration.CALIBRATION_FORMAT, "models": {"a" * 64: entry}}))
    monkeypatch.setattr(calibration, "CALIBRATION_FILE", table)
    a = lookup_calibration("a" * 64)
    assert a.scales("panorama", "known heading") == (1.2, 0.4)
    assert a.scales("panorama", "unknown heading") == (2.0, 1.5)          # no such case: the kind's
    assert a.scales("pinhole", "unknown heading") == (4.0, 7.0)
    assert a.scales("pinhole", "known heading") == (9.0, 1.1)             # a map of its own, the kind's factors
    assert a.scales("pinhole", "heading window, position prior") == (9.0, 1.1)
    assert a.confidence_map("pinhole", "known heading")["bias"] == -3.0
    assert a.confidence_map("pinhole", "heading window") == a.confidence_map("panorama", "known heading") == {
        "bias": 1.0, "weights": [0.0, 0.0]}                              # the panorama's map
    for bad, message in (({"c_pos": 0.0, "c_yaw": 1.0}, "positive finite c_pos and c_yaw"),
                         ({"c_pos": 1.0}, "positive finite c_pos and c_yaw"),
                         ({"confidence": {"bias": 1.0}}, "expected features"),
                         ([1, 2], "expected an object")):
        entry["pinhole"]["cases"]["unknown heading"] = bad
        table.write_text(json.dumps({"format": calibration.CALIBRATION_FORMAT, "models": {"a" * 64: entry}}))
        with pytest.raises(ValueError, match=message) as err:
            lookup_calibration("a" * 64)
        assert "pinhole case 'unknown heading'" in str(err.value)


def test_the_localizer_applies_its_frames_calibration_case(db_path, pano):
    one = Calibration(1.0, 1.0, "explicit")
    never = {"bias": -20.0, "weights": [0.0, 0.0]}
    cases = Calibration(1.0, 1.0, "explicit", cases={("panorama", "known heading"): {"c_pos": 3.0, "c_yaw": 2.0},
                                                     ("panorama", "unknown heading"): {"confidence": never}})
    raw = Localizer.open(db_path, backend="torch-cpu", calibration=one)
    got = Localizer.open(db_path, backend="torch-cpu", calibration=cases)
    r0, r1 = raw.localize(pano, heading=40.0), got.localize(pano, heading=40.0)
    np.testing.assert_allclose(r1.covariance[:2, :2], 9.0 * r0.covariance[:2, :2])
    assert r1.confidence == pytest.approx(r0.confidence)
    u0, u1 = raw.localize(pano), got.localize(pano)
    np.testing.assert_allclose(u1.covariance, u0.covariance)
    assert u1.confidence < 1e-8 < u0.confidence
    assert u1.diagnostics["calibration_case"] == "unknown heading"


class FakeBackend:
    """Canned network outputs: D a Gaussian at ``pixel`` (sigma 2 px) in every candidate, a yaw
    field of constant angle ``field_deg``, and alignment ``k``."""

    name = "fake"

    def __init__(self, real, pixel, field_deg, k, fail_once=False):
        self.real, self.pixel, self.field_deg, self.k, self.fail_once = real, pixel, field_deg, k, fail_once
        self.cfg = real.cfg
        self.model_hash = real.model_hash

    def encode_ground(self, image, mask):
        return self.real.encode_ground(image, mask)

    def encode_aerial(self, image):
        return self.real.encode_aerial(image)

    def decode(self, inputs):
        if self.fail_once:
            self.fail_once = False
            raise RuntimeError("simulated backend failure")
        b = inputs["heading_logprior"].shape[0]
        d = np.repeat(_gaussian((128, 128), self.pixel, 2.0)[None], b, 0).astype(np.float32)
        a = math.radians(self.field_deg)
        field = np.zeros((b, 2, 128, 128), np.float32)
        field[:, 0], field[:, 1] = math.cos(a), math.sin(a)
        scores = np.full((b, 32), -0.5, np.float32)
        scores[:, self.k] = 0.9
        chosen = np.argmax(scores + inputs["heading_logprior"], axis=1)   # a one-hot prior forces its alignment
        # Matching score: a parabola in the alignment whose vertex lies a quarter bin past k.
        dist = (chosen - (self.k + 0.25) + 16) % 32 - 16
        match = (2.0 - 0.01 * dist ** 2).astype(np.float32)
        return {"D": d, "yaw_field": field, "m0_max": np.linspace(0.9, 0.5, b).astype(np.float32),
                "match_score": match, "alignment_scores": scores, "alignment": chosen.astype(np.int64)}

    def close(self):
        pass


def _with_backend(loc, backend, **kw):
    """A localizer on ``backend``; the canned outputs do not turn with the tile, so the
    decoder ensemble is off unless asked for."""
    return Localizer(loc.db, backend, 5, Calibration(1.0, 1.0, "explicit"), **{"decoder_turns": 1, **kw})


class _PerCandidateBackend(FakeBackend):
    """Canned outputs with one D and one matching score per candidate row (known heading:
    the localizer decodes the k candidates once, in the search's order)."""

    def __init__(self, real, ds, match):
        super().__init__(real, (64.0, 64.0), 90.0, 0)
        self.ds, self.match = np.asarray(ds, np.float32), np.asarray(match, np.float32)

    def decode(self, inputs):
        out = super().decode(inputs)
        b = inputs["heading_logprior"].shape[0]
        assert b == len(self.ds), "expected one decode of every candidate"
        return {**out, "D": self.ds, "match_score": self.match}


def test_tile_choice_rerank_or_consensus(loc, pano, monkeypatch):
    """Five candidates: three overlapping tiles whose D all peak at one map point P, and two
    tiles far from them, one of which has the best re-ranking score (by 0.05) and a D peaked
    at its own centre. ``rerank`` (the paper) takes that lonely tile; ``consensus`` the place
    three candidates confirm, P; both publish the chosen tile's MAP pixel."""
    db = loc.db
    x, y = db.tiles["x"], db.tiles["y"]
    half_m = db.tile_size / 2 * db.mpp
    a = int(np.argmin(np.hypot(x - np.median(x), y - np.median(y))))
    p = np.array([x[a] + 8.0, y[a] + 8.0])
    inside = np.nonzero((np.abs(x - p[0]) < half_m - 4) & (np.abs(y - p[1]) < half_m - 4))[0]
    far = np.argsort(-np.hypot(x - p[0], y - p[1]))[:2]
    assert len(inside) >= 3 and np.hypot(x[far] - p[0], y[far] - p[1]).min() > 2 * half_m
    ids = [int(far[0]), int(inside[0]), int(inside[1]), int(inside[2]), int(far[1])]
    ds = []
    for t in ids:
        centre = (db.tile_size / 2, db.tile_size / 2) if t in far else db.xy_to_pixel(t, *p)
        ds.append(_gaussian((db.tile_size, db.tile_size), centre, 2.0))
    match = [0.30, 0.25, 0.25, 0.25, 0.0]
    # The retrieval replaced by fixed candidates (scores, tile ids).
    monkeypatch.setattr(localizer_module, "search_tiles",
                        lambda _db, _query, k, near=None: (np.full(5, 0.5, np.float32)[:k], np.asarray(ids)[:k]))
    results = {}
    for choice in ("rerank", "consensus"):
        located = Localizer(db, _PerCandidateBackend(loc.backend, ds, match), 5,
                            Calibration(1.0, 1.0, "explicit"), decoder_turns=1, tile_choice=choice)
        results[choice] = located.localize(pano, heading=0.0)
    paper, ours = results["rerank"], results["consensus"]
    assert paper.tile_id == ids[0] and paper.diagnostics["tile_choice"] == "rerank"
    assert (paper.x, paper.y) == pytest.approx((x[ids[0]], y[ids[0]]), abs=db.mpp)
    assert "consensus_support" not in paper.diagnostics
    combined = [c.combined for c in paper.candidates]
    assert combined == sorted(combined, reverse=True)
    assert ours.tile_id == ids[1] and ours.diagnostics["tile_choice"] == "consensus"   # a tie keeps s + m order
    assert (ours.x, ours.y) == pytest.approx(tuple(p), abs=db.mpp)
    support = list(ours.diagnostics["consensus_support"])
    assert support == sorted(support, reverse=True) and [c.tile_id for c in ours.candidates][:3] == ids[1:4]
    with pytest.raises(ValueError, match="tile choice: expected one of consensus, rerank"):
        Localizer(db, loc.backend, 5, Calibration(1.0, 1.0, "explicit"), tile_choice="best")


def test_pose_arithmetic_with_canned_network_outputs(loc, pano):
    fake = _with_backend(loc, FakeBackend(loc.backend, (30.5, 90.5), 100.0, 3))
    res = fake.localize(pano)                                   # unknown heading: alignment 3 of 32
    assert res.pixel == (30.5, 90.5)
    assert (res.x, res.y) == pytest.approx(fake.db.pixel_to_xy(res.tile_id, 30.5, 90.5))
    # The alignment search keeps alignment 3 and moves it a quarter bin (the matching
    # score's vertex); the yaw field's reading is added.
    assert res.diagnostics["alignment"] == 3
    assert res.diagnostics["alignment_offset_bins"] == pytest.approx(0.25)
    assert res.yaw_deg == pytest.approx(100.0 + 3.25 * 11.25)
    plain = _with_backend(loc, FakeBackend(loc.backend, (30.5, 90.5), 100.0, 3), alignment_candidates=0)
    assert plain.localize(pano).yaw_deg == pytest.approx(100.0 + 3 * 11.25)   # no search: the decoder's bin
    known = _with_backend(loc, FakeBackend(loc.backend, (30.5, 90.5), 100.0, 0)).localize(pano, heading=-20.0)
    assert known.yaw_deg == pytest.approx(-20.0 + 10.0)         # field 10 deg left of tile-up refines the heading
    # sigma_x of a 2 px Gaussian over 0.5 m pixels, truncated at 5 % of its peak, plus quantisation
    sx = math.sqrt(res.diagnostics["cov_d"][0, 0])
    assert sx == pytest.approx(0.5 * math.sqrt(4.0 * (1 - 0.05 * math.log(20) / 0.95) + 1 / 12), rel=0.05)
    # The published covariance is the chosen mode's (factors of 1 here): the candidates, which
    # all peak at the same pixel of different tiles, localize tens of metres apart, and that
    # spread is not in it (it lowers the confidence instead).
    np.testing.assert_allclose(res.covariance[:2, :2], res.diagnostics["cov_d"])
    assert np.trace(res.diagnostics["cov_candidates"]) > 100.0
    # Without a confidence map the confidence is the raw one; without thresholds every frame a fix.
    assert res.confidence == pytest.approx(res.diagnostics["mode_mass"] * res.diagnostics["agree_weight"])
    assert res.fix and res.no_fix_reason == ""


def test_abstention_thresholds_make_a_frame_no_fix(loc, pano):
    """The calibration's thresholds decide; the features are those of the chosen tile and the frame."""
    from unifygeo_ros.inference.preprocess import image_detail

    low = Calibration(1.0, 1.0, "explicit", abstention={"panorama": {"evidence": -99.0, "detail": 0.0}})
    high = Calibration(1.0, 1.0, "explicit", abstention={"panorama": {"evidence": 99.0}})
    ok = Localizer(loc.db, loc.backend, 5, low).localize(pano, return_distribution=True)
    f = ok.diagnostics["abstention_features"]
    assert ok.fix and set(f) == {"evidence", "peak", "detail"}
    assert f["evidence"] == pytest.approx(ok.candidates[0].retrieval_score + ok.candidates[0].matching_score)
    assert f["peak"] == pytest.approx(float(ok.distribution.max()), rel=1e-5)
    assert f["detail"] == pytest.approx(image_detail(pano)) and f["detail"] > 0.1        # a sharp rendered street
    blurred = __import__("cv2").GaussianBlur(pano, (0, 0), 25)
    assert image_detail(blurred) < 0.05 < 0.1 < image_detail(pano)
    no = Localizer(loc.db, loc.backend, 5, high).localize(pano)
    assert not no.fix and "below 99.000 (evidence)" in no.no_fix_reason
    assert no.as_dict()["fix"] is False and no.as_dict()["no_fix_reason"] == no.no_fix_reason
    assert (no.x, no.y, no.tile_id) == (ok.x, ok.y, ok.tile_id)       # the best guess is still reported
    # A pinhole camera without thresholds of its own uses the panorama's.
    pin = np.random.default_rng(4).integers(0, 255, size=(240, 320, 3), dtype=np.uint8)
    res = Localizer(loc.db, loc.backend, 5, high).localize(pin, camera=Camera("pinhole", hfov_deg=90.0))
    assert not res.fix


def test_a_backend_failure_is_a_failed_frame_not_a_dead_localizer(loc, pano):
    fake = _with_backend(loc, FakeBackend(loc.backend, (64.5, 64.5), 90.0, 0, fail_once=True))
    with pytest.raises(LocalizationError, match="simulated backend failure"):
        fake.localize(pano)
    assert fake.localize(pano).pixel == (64.5, 64.5)


def test_trained_model_localizes_rendered_panoramas(tmp_path):
    """End to end with the shipped model on a held-out city: known heading, a 25 m position prior
    (its centre 10 m off the truth). A sign or axis error anywhere (tiles, pixels, map frame,
    heading rotation) would put the estimates tens of metres off."""
    from unifygeo_ros.model_config import shipped_model_path
    from unifygeo_ros.tools.synthetic import make_area, render_view, sample_truths

    weights = shipped_model_path()          # ships with the package: missing is a failure, not a skip
    area = make_area(3004, 200.0, (44.43, 26.10), "default", tmp_path, weights, progress=False)
    trained = Localizer.open(area.db, backend="onnxruntime-cpu")
    xy, yaw = sample_truths(area.city, 10, 3004)
    rng = np.random.default_rng(1)
    errors, yaw_errors = [], []
    for p, y in zip(xy, yaw):
        img, cam = render_view(area.city, p, float(y), "panorama")
        off = rng.normal(size=2)
        centre = p + 10.0 * off / np.linalg.norm(off)
        res = trained.localize(img, camera=cam, heading=float(y), prior=PositionPrior(centre[0], centre[1], 25.0))
        errors.append(math.hypot(res.x - p[0], res.y - p[1]))
        yaw_errors.append(abs(angle_diff_deg(res.yaw_deg, y)))
    print(f"median error {np.median(errors):.2f} m, median yaw error {np.median(yaw_errors):.2f} deg")
    assert np.median(errors) < SHIPPED_MAX_MEDIAN_ERROR_M
    assert np.median(yaw_errors) < SHIPPED_MAX_MEDIAN_YAW_ERROR_DEG


def test_an_open_localizer_keeps_openblas_to_one_thread(loc):
    """Idle OpenBLAS threads spin on the cores the network needs (see single_thread_blas)."""
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    assert blas, "numpy's OpenBLAS should be visible to threadpoolctl"
    assert all(i["num_threads"] == 1 for i in blas), blas


def test_small_databases_are_searched_on_one_faiss_thread(loc):
    import faiss

    from unifygeo_ros.localizer.localizer import (
        SINGLE_THREAD_SEARCH_TILES,
        set_search_threads,
    )

    assert loc.db.n <= SINGLE_THREAD_SEARCH_TILES and faiss.omp_get_max_threads() == 1
    before = faiss.omp_get_max_threads()
    assert set_search_threads(None, SINGLE_THREAD_SEARCH_TILES + 1) == 0      # large: FAISS's default kept
    assert faiss.omp_get_max_threads() == before
    assert set_search_threads(2, 10) == 2 and faiss.omp_get_max_threads() == 2
    set_search_threads(None, 10)
    with pytest.raises(ValueError, match="search_threads"):
        set_search_threads(0, 10)


def test_decoder_ensemble_on_the_chosen_tile(db_path, pano, tmp_path, caplog):
    """The ensemble replaces the chosen tile's D and alignment and keeps the re-ranking; its
    turned tiles are the stored tile turned counter-clockwise (the training's rotation), read
    from the orthophoto for a stored-features database and from the pixels in recompute mode,
    with the same result; without readable pixels the frame goes on without it, logged once."""
    import logging
    import shutil

    from unifygeo_ros.database.store import read_manifest
    from unifygeo_ros.inference.preprocess import normalize_images

    four = Localizer.open(db_path, backend="torch-cpu")
    one = Localizer.open(db_path, backend="torch-cpu", decoder_turns=1)
    with pytest.raises(ValueError, match="expected one of"):
        Localizer.open(db_path, backend="torch-cpu", decoder_turns=3)
    a = four.localize(pano, return_distribution=True)
    b = one.localize(pano, return_distribution=True)
    assert [c.tile_id for c in a.candidates] == [c.tile_id for c in b.candidates]
    assert [c.combined for c in a.candidates] == pytest.approx([c.combined for c in b.candidates])
    assert a.diagnostics["decoder_turns"] == 4 and a.diagnostics["decoder_turns_decodes"] == 4 * 32
    assert b.diagnostics["decoder_turns"] == 1
    assert a.distribution.sum() == pytest.approx(1.0, abs=1e-4)
    assert not np.allclose(a.distribution, b.distribution)
    known = four.localize(pano, heading=30.0)
    assert known.diagnostics["decoder_turns_decodes"] == 4 and known.diagnostics["alignment"] == 0
    # The turned tiles' features: the tile read back, turned 1-3 quarters counter-clockwise.
    pixels, why = four.db.tile_image(a.tile_id)
    assert why == ""
    turned = four._turned_features(a.tile_id, 4)
    for j in (1, 2, 3):
        ref = four.backend.encode_aerial(normalize_images(np.rot90(pixels, j, axes=(0, 1))[None].copy()))
        np.testing.assert_allclose(turned[0][j - 1], ref["aerial_feat0"][0], atol=1e-4)
    # Eight members: the four turns and their mirror images, with the mirrored panorama.
    eight = Localizer.open(db_path, backend="torch-cpu", decoder_turns=8)
    e = eight.localize(pano, return_distribution=True)
    assert [c.tile_id for c in e.candidates] == [c.tile_id for c in a.candidates]
    assert e.diagnostics["decoder_turns"] == 8 and e.diagnostics["decoder_turns_decodes"] == 8 * 32
    assert e.distribution.sum() == pytest.approx(1.0, abs=1e-4)
    assert not np.allclose(e.distribution, a.distribution)
    assert eight.localize(pano, heading=30.0).diagnostics["decoder_turns_decodes"] == 8
    members = eight._turned_features(a.tile_id, 8)
    assert len(members[0]) == 7
    # The ensemble per frame, the localizer's option untouched; a localizer switched from four
    # to eight members (at run time) does not reuse the four-member features it holds.
    per_frame = one.localize(pano, return_distribution=True, decoder_turns=4)
    assert one.decoder_turns == 1 and per_frame.diagnostics["decoder_turns"] == 4
    np.testing.assert_allclose(per_frame.distribution, a.distribution, atol=1e-6)
    with pytest.raises(LocalizationError, match="expected one of"):
        one.localize(pano, decoder_turns=3)
    four.set_options(top_k=four.top_k, rerank_score=four.rerank_score, alignment_candidates=four.alignment_candidates,
                     decoder_turns=8, tile_choice=four.tile_choice)
    switched = four.localize(pano, return_distribution=True)
    assert switched.diagnostics["decoder_turns"] == 8
    np.testing.assert_allclose(switched.distribution, e.distribution, atol=1e-6)
    for j in (4, 5):                # the tile mirrored left-right, then turned j - 4 quarters
        ref = eight.backend.encode_aerial(normalize_images(np.rot90(pixels[:, ::-1], j - 4, axes=(0, 1))[None].copy()))
        np.testing.assert_allclose(members[0][j - 1], ref["aerial_feat0"][0], atol=1e-4)
    # Recompute mode reads the stored pixels instead: the same fix (fp16 features aside).
    manifest = read_manifest(db_path)
    out = tmp_path / "db"
    build_database(BuildConfig([manifest["sources"][0]["path"]], str(db_path / "model.pt"), str(out),
                               backend="torch-cpu", features="recompute"), progress=False)
    c = Localizer.open(out, backend="torch-cpu").localize(pano)
    assert c.tile_id == a.tile_id and c.diagnostics["decoder_turns"] == 4
    assert math.hypot(a.x - c.x, a.y - c.y) <= 0.5 + 1e-9
    shutil.rmtree(out)
    # Stored features whose orthophoto is gone: no ensemble, a warning once, the frames go on.
    copy = tmp_path / "moved"
    shutil.copytree(db_path, copy, ignore=shutil.ignore_patterns("engines"))
    moved = Localizer.open(copy, backend="torch-cpu")
    moved.db.manifest["plan"]["orthos"] = [str(tmp_path / "gone.tif")]
    with caplog.at_level(logging.WARNING, logger="unifygeo_ros.localizer"):
        r1 = moved.localize(pano)
        r2 = moved.localize(pano)
    assert r1.diagnostics["decoder_turns"] == 1 and "gone.tif" in r1.diagnostics["decoder_turns_skipped"]
    assert (r1.x, r1.y) == pytest.approx((b.x, b.y)) and r2.tile_id == r1.tile_id
    assert sum("decoder ensemble off" in rec.message for rec in caplog.records) == 1
