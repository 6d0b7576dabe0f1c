"""Held-out synthetic cities for the demo, the calibration and ``bench localize``.

A city (:func:`unifygeo_ros.sim.world.generate_city`) is written as a GeoTIFF at
:data:`ORTHO_MPP` (finer than the model's 0.5 m/px, so that the database build resamples
it, as it would a real orthophoto), a database is built from that GeoTIFF alone, and
street-level views are rendered at known positions and headings:

* ``panorama``: 512 x 256 equirectangular panoramas (the training data's size before
  resizing), the heading known or unknown;
* ``pinhole``: 90-degree pinhole views (320 x 240), the heading known or unknown;
* camera rigs (:data:`RIG_MODES`): 90-degree pinhole views (320 x 240) at the yaws of
  :data:`RIGS` relative to the forward direction, localized as one frame.

The demo and the covariance calibration use :data:`DEMO_MODES`: the five of :data:`MODES`, a
pinhole view with a degraded-GNSS prior and the rigs of four and of two cameras with a known
heading.

The truth's *positive tile* is the database tile whose centre is nearest (the camera lies
in its central cell), as VIGOR defines it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..conventions import angle_diff_deg
from ..types import Camera, LocalizationError, PositionPrior, Rig

#: the seeds the shipped model was trained (11-16) or validated (21) on: never used here
TRAINING_SEEDS = (11, 12, 13, 14, 15, 16, 21)
ORTHO_MPP = 0.25
PANO_SIZE = (512, 256)
PINHOLE_SIZE = (320, 240)
PINHOLE_FOV = 90.0
#: a degraded GNSS fix: the position prior's centre is the truth plus Gaussian noise of this
#: standard deviation per axis, and its radius is PRIOR_RADIUS_M (what the node derives from a
#: NavSatFix with a 10 m sigma: 3 sigma + margin)
PRIOR_NOISE_M = 10.0
PRIOR_RADIUS_M = 40.0
#: city origins (latitude, longitude) and styles of the calibration's and benchmarks' cities, by position
ORIGINS = [(45.50, -73.57), (35.68, 139.76), (-33.87, 151.21), (51.51, -0.13), (40.42, -3.70), (19.43, -99.13)]
STYLES = ("default", "downtown", "oldtown", "suburb")
MODES = {
    # name: (camera, heading known, position prior)
    "panorama, known heading": ("panorama", True, False),
    "panorama, unknown heading": ("panorama", False, False),
    "pinhole 90 deg, known heading": ("pinhole", True, False),
    "pinhole 90 deg, unknown heading": ("pinhole", False, False),
    "panorama, unknown heading, GNSS prior": ("panorama", False, True),
}

#: camera rigs of 90-degree pinhole cameras: name -> the cameras' yaws (degrees, counter-clockwise
#: from the forward direction)
RIGS = {
    "rig of four": (0.0, 90.0, -90.0, 180.0),
    "front + back": (0.0, 180.0),
    "front only": (0.0,),
}
#: the rig modes of run_mode (as MODES): the camera is ``rig:<name of RIGS>``
RIG_MODES = {f"{name}, {heading} heading": (f"rig:{name}", heading == "known", False)
             for name in RIGS for heading in ("known", "unknown")}
#: the demo's and the covariance calibration's modes: every camera kind the node takes
DEMO_MODES = {
    **MODES,
    "pinhole 90 deg, known heading, GNSS prior": ("pinhole", True, True),
    "rig of four, known heading": RIG_MODES["rig of four, known heading"],
    "front + back, known heading": RIG_MODES["front + back, known heading"],
}
ALL_MODES = {**DEMO_MODES, **RIG_MODES}


def camera_kind(mode: str) -> str:
    """The calibration's camera kind of a mode: ``panorama`` or ``pinhole`` (rigs of pinhole
    cameras included, as :attr:`unifygeo_ros.types.Rig.model` says)."""
    return "panorama" if ALL_MODES[mode][0] == "panorama" else "pinhole"


def mode_case(mode: str) -> str:
    """The calibration case of a mode's views
    (:func:`~unifygeo_ros.inference.calibration.calibration_case`)."""
    from ..inference.calibration import calibration_case

    _camera, known, prior = ALL_MODES[mode]
    return calibration_case("known" if known else "unknown", prior)


@dataclass
class Area:
    city: object
    tif: Path
    db: Path
    build: dict = field(default_factory=dict)


def make_area(seed: int, size_m: float, origin: tuple[float, float], style: str, out_dir: str | Path,
              weights: str | Path, features: str = "auto", backend: str = "auto", progress: bool = True,
              reuse: bool = False) -> Area:
    """Generate city ``seed``, write its GeoTIFF, build its database (``out_dir``/db)."""
    from ..database.build import BuildConfig, build_database
    from ..sim.render import write_orthophoto_geotiff
    from ..sim.world import generate_city

    if seed in TRAINING_SEEDS:
        raise ValueError(f"city seed {seed} was used to train the model; expected a held-out seed")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    city = generate_city(seed, size_m, origin[0], origin[1], style=style)
    tif = out_dir / f"city{seed}_ortho.tif"
    db = out_dir / "db"
    if reuse and tif.is_file() and (db / "manifest.json").is_file():
        return Area(city, tif, db)
    if progress:
        sys.stderr.write(f"city {seed} ({style}, {size_m:g} m): writing the orthophoto GeoTIFF...\n")
    write_orthophoto_geotiff(city, tif, ORTHO_MPP, progress=progress)
    summary = build_database(BuildConfig(orthos=[str(tif)], weights=str(weights), out=str(db), features=features,
                                         backend=backend, overwrite=True), progress=progress)
    return Area(city, tif, db, summary)


def sample_truths(city, n: int, seed: int, margin_m: float = 24.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` street positions (at least ``margin_m`` inside the city) and uniform ENU yaws."""
    rng = np.random.default_rng(seed)
    xy = city.street_positions(n, rng, margin_m=margin_m)
    yaw = rng.uniform(-180.0, 180.0, size=n)
    return xy, yaw


def render_view(city, xy, yaw: float, camera_model: str) -> tuple[np.ndarray | list, Camera | Rig]:
    """The view at ``xy`` facing ENU ``yaw`` and its camera: ``panorama``, ``pinhole`` or
    ``rig:<name of RIGS>`` (a list of images and their :class:`Rig`)."""
    from ..sim.render import render_panorama, render_pinhole

    if camera_model.startswith("rig:"):
        yaws = RIGS[camera_model[4:]]
        cam = Camera("pinhole", hfov_deg=PINHOLE_FOV)
        images = [render_pinhole(city, xy, yaw + y, PINHOLE_FOV, *PINHOLE_SIZE) for y in yaws]
        return images, Rig((cam,) * len(yaws), yaws)
    if camera_model == "panorama":
        return render_panorama(city, xy, yaw, *PANO_SIZE), Camera()
    return render_pinhole(city, xy, yaw, PINHOLE_FOV, *PINHOLE_SIZE), Camera("pinhole", hfov_deg=PINHOLE_FOV)


def positive_tile(db, xy) -> int:
    return int(np.argmin(np.hypot(db.centres[:, 0] - xy[0], db.centres[:, 1] - xy[1])))


def run_mode(loc, city, xy: np.ndarray, yaw: np.ndarray, mode: str, progress: bool = True,
             transform=None, prior_noise_m: float = PRIOR_NOISE_M, prior_radius_m: float = PRIOR_RADIUS_M,
             ) -> list[dict]:
    """Localize one rendered view per truth in ``mode`` (a key of :data:`ALL_MODES`); one
    record each.
    ``transform``: applied to each rendered image first (e.g. a mild blur). A mode with a
    position prior centres it on the truth plus Gaussian noise of ``prior_noise_m`` per axis,
    with radius ``prior_radius_m`` (default: the degraded GNSS fix)."""
    from unifygeo_ros.progress import tqdm

    from ..inference.calibration import MODE_RADIUS_M, mahalanobis2

    camera_model, known, with_prior = ALL_MODES[mode]
    noise = np.random.default_rng(len(xy)).normal(0.0, 1.0, size=(len(xy), 2)) * prior_noise_m
    records = []
    for i in tqdm(range(len(xy)), desc=mode, unit="view", disable=not progress, file=sys.stderr):
        img, cam = render_view(city, xy[i], float(yaw[i]), camera_model)
        if transform is not None:
            img = [transform(im) for im in img] if isinstance(img, list) else transform(img)
        rec = {"mode": mode, "truth_xy": [float(xy[i, 0]), float(xy[i, 1])], "truth_yaw": float(yaw[i])}
        prior = (PositionPrior(float(xy[i, 0] + noise[i, 0]), float(xy[i, 1] + noise[i, 1]), prior_radius_m)
                 if with_prior else None)
        try:
            res = loc.localize(img, camera=cam, heading=float(yaw[i]) if known else None, prior=prior)
        except LocalizationError as exc:
            rec["error"] = str(exc)
            records.append(rec)
            continue
        err = np.array([res.x - xy[i, 0], res.y - xy[i, 1]])
        cov = res.covariance[:2, :2]
        rec.update({
            "estimate_xy": [res.x, res.y], "error_m": float(np.hypot(*err)), "err_xy": err.tolist(),
            "cov_xy": cov.tolist(), "d2": float(mahalanobis2(err[None], cov[None])[0]),
            "tile_correct": res.tile_id == positive_tile(loc.db, xy[i]), "confidence": res.confidence,
            "yaw_deg": res.yaw_deg, "timings_ms": res.timings_ms,
            "yaw_error_deg": None if res.yaw_deg is None else float(abs(angle_diff_deg(res.yaw_deg, yaw[i]))),
            "sigma_yaw_deg": None if res.yaw_deg is None else float(np.degrees(np.sqrt(res.covariance[2, 2]))),
            "mode_mass": res.diagnostics.get("mode_mass"), "agree": res.diagnostics.get("agree_weight"),
            "in_mode": bool(np.hypot(*err) <= MODE_RADIUS_M), "fix": bool(res.fix), "no_fix_reason": res.no_fix_reason,
            "confidence_raw": res.diagnostics.get("confidence_raw"),
            "consensus_support": res.diagnostics.get("consensus_support_chosen"),
            "features": dict(res.diagnostics.get("abstention_features") or {}),
            "sigma_m": float(np.sqrt(max(np.trace(cov), 0.0))),
        })
        records.append(rec)
    return records


def summarize(records: list[dict]) -> dict:
    """The demo table's row for one mode's records."""
    from ..evaluation.metrics import recall_at_distances
    from ..inference.calibration import CHI2_2_95, Z_95

    ok = [r for r in records if "error_m" in r]
    n_fail = len(records) - len(ok)
    if not ok:
        return {"queries": len(records), "failed": n_fail}
    e = np.array([r["error_m"] for r in ok])
    d2 = np.array([r["d2"] for r in ok])
    right = [r for r in ok if r.get("in_mode")]
    row = {
        "queries": len(records), "failed": n_fail,
        "no_fix": float(np.mean([not r.get("fix", True) for r in ok])),
        "R@1_tile": float(np.mean([r["tile_correct"] for r in ok])),
        "mean_m": float(e.mean()), "median_m": float(np.median(e)),
        **recall_at_distances(e),
        "in_95_ellipse": float(np.mean(d2 <= CHI2_2_95)),
        "right_mode": len(right) / len(ok),
        "confidence_mean": float(np.mean([r["confidence"] for r in ok])),
    }
    if right:
        row.update({"in_95_ellipse_right_mode": float(np.mean([r["d2"] <= CHI2_2_95 for r in right])),
                    "median_m_right_mode": float(np.median([r["error_m"] for r in right])),
                    "median_sigma_m_right_mode": float(np.median([r["sigma_m"] for r in right]))})
    yaw = [r for r in ok if r.get("yaw_error_deg") is not None]
    if yaw:
        ye = np.array([r["yaw_error_deg"] for r in yaw])
        sy = np.array([r["sigma_yaw_deg"] for r in yaw])
        row.update({"yaw_mean_deg": float(ye.mean()), "yaw_median_deg": float(np.median(ye)),
                    "yaw_in_95": float(np.mean(ye <= Z_95 * sy))})
        yr = [r for r in yaw if r.get("in_mode")]
        if yr:
            row["yaw_in_95_right_mode"] = float(np.mean([r["yaw_error_deg"] <= Z_95 * r["sigma_yaw_deg"] for r in yr]))
    stages = ok[0]["timings_ms"].keys()
    row["ms"] = {s: float(np.median([r["timings_ms"][s] for r in ok])) for s in stages}
    return row


def elapsed(t0: float) -> float:
    return round(time.perf_counter() - t0, 1)
