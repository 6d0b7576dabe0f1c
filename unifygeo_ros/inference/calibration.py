"""Calibration per model and camera kind: covariance scale factors, the confidence map and
the abstention thresholds.

The raw covariances of :mod:`.posterior` come from D and the alignment scores; whether
their size is right is an empirical question. ``unifygeo calibrate`` localizes views in
synthetic cities whose seeds were used neither in training (11-16) or validation (21) nor by the
demo (2026). An estimate is **in the right mode** when it lies within :data:`MODE_RADIUS_M`
of the truth (the shipped model's errors are either under about 3 m or over 10 m: a wrong
tile or a wrong mode of D). On the estimates in the right mode it fits

* ``c_pos``: with ``d2 = e^T S^-1 e`` (e = estimate - truth, S the unscaled 2 x 2 position
  covariance of the chosen mode), ``c_pos^2 = quantile_95(d2) / chi2_2(0.95)`` so that 95 % of
  the truths fall inside the scaled 95 % ellipse;
* ``c_yaw``: ``quantile_95(|yaw error| / sigma_yaw) / 1.96``;

and on all of them

* the **confidence map**: the chance that the estimate is in the right mode, a logistic
  function ``1 / (1 + exp(-(bias + w . x)))`` of :data:`CONFIDENCE_FEATURES` (the logit of the
  raw confidence of :mod:`.posterior`, and the log of the chosen candidate's consensus
  support), fitted by maximum likelihood (:func:`fit_confidence`).

The factors are fitted separately for panoramas and for limited-field-of-view (pinhole)
views, whose errors behave differently (for the shipped model nearly every pinhole view
lands on a wrong tile): one pair of factors for all of them would leave one kind over- and
the other under-confident. The pinhole pair is stored under ``"pinhole"`` in the model's
entry; an entry without it applies its factors to every camera.

Within a camera kind the factors and the confidence map are fitted again per **calibration
case** (:func:`calibration_case`): how much of the heading the frame was given (known, a window
around a predicted heading, or unknown) and whether a position prior restricted the search.
The cases differ as much as the kinds do (for the limited-field-of-view model the right-mode
share of single pinhole views is 15 % with a known heading, 50 % with a GNSS prior and 6 %
without a heading), so one map per kind is over-confident for some cases and under-confident
for others. A case is stored under ``"cases"`` in its kind's part; it holds its own factors
only when it has :data:`MIN_RIGHT_MODE` views in the right mode, and a case the table does not
hold (the tracking filter's heading window, for example) takes its kind's factors and map.

The **abstention thresholds** (:mod:`.abstention`) are fitted on genuine panoramas of other
held-out cities and a garbage set, and stored under ``"abstention"``.

The **tracking factors** (``"tracking"``: ``c_pos``, ``c_yaw``) scale the tracking filter's
posterior covariance the same way, fitted on the filtered poses the filter publishes along
drives through held-out cities (successive frames' errors are correlated, which the filter,
weighing each frame as independent evidence, does not know); a model with a pinhole part may
have a single pinhole camera's own (``"tracking"["pinhole"]``, on GNSS-aided pinhole drives)
and a rig's (``"tracking"["rig"]``).

The factors are data: a JSON table keyed by model hash, ``weights/calibration.json`` in the
package (:data:`CALIBRATION_FILE`; ``{"format": ..., "models": {hash: entry}}``), which
``unifygeo calibrate --write`` updates. The localizer applies the entry of its model's hash;
a model without one gets unscaled covariances, its raw confidence and no abstention
(``source: none``). The demo measures the coverage on its own held-out city.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CHI2_2_95 = 5.991464547107979      # chi-square, 2 degrees of freedom, 95 %
Z_95 = 1.959963984540054
CALIBRATION_FORMAT = "unifygeo_ros/calibration/1"
CALIBRATION_FILE = Path(__file__).resolve().parents[1] / "weights" / "calibration.json"
#: an estimate within this distance of the truth is in the right mode (metres)
MODE_RADIUS_M = 10.0
#: the inputs of the confidence map, in the order of its weights
CONFIDENCE_FEATURES = ("logit_raw_confidence", "log_consensus_support")
#: fewest right-mode estimates to fit covariance factors (and confidence weights) on
MIN_RIGHT_MODE = 20
#: the heading cases: the localizer's heading mode -> the case's name
HEADING_CASES = {"known": "known heading", "prior": "heading window", "unknown": "unknown heading"}


def calibration_case(heading_mode: str, position_prior: bool) -> str:
    """The calibration case of a frame: its heading mode (``known``, ``prior``: a window around a
    predicted heading, ``unknown``) and whether a position prior restricted the search, e.g.
    ``"unknown heading, position prior"``."""
    if heading_mode not in HEADING_CASES:
        raise ValueError(f"heading mode: expected one of {', '.join(HEADING_CASES)}, got {heading_mode!r}")
    return HEADING_CASES[heading_mode] + (", position prior" if position_prior else "")


#: the cameras that may have tracking factors of their own (``"tracking"[camera]``) besides the
#: panorama drives': a single pinhole camera and a rig
TRACKING_CAMERAS = ("pinhole", "rig")


@dataclass(frozen=True)
class Calibration:
    c_pos: float = 1.0             # panoramas (and every camera when no pinhole pair is given)
    c_yaw: float = 1.0
    source: str = "none"           # none | table | explicit
    details: dict = field(default_factory=dict, compare=False)
    c_pos_pinhole: float | None = None
    c_yaw_pinhole: float | None = None
    #: camera kind -> confidence map {"bias", "weights"} (:func:`fit_confidence`); none: the raw confidence
    confidence_maps: dict = field(default_factory=dict, compare=False)
    #: camera kind -> abstention thresholds {feature: minimum} (:mod:`.abstention`); none: no abstention
    abstention: dict = field(default_factory=dict, compare=False)
    #: the tracking filter's covariance factors {"c_pos", "c_yaw"}; none: unscaled
    tracking: dict = field(default_factory=dict, compare=False)
    #: (camera kind, calibration case) -> {"c_pos", "c_yaw"} and/or {"confidence": map}; a case
    #: without an entry (or without one of the two) takes its camera kind's
    cases: dict = field(default_factory=dict, compare=False)

    def scales(self, camera_model: str, case: str | None = None) -> tuple[float, float]:
        """(c_pos, c_yaw) for a ``panorama`` or ``pinhole`` camera in calibration ``case``
        (:func:`calibration_case`; the camera kind's when the case has none)."""
        own = self.cases.get((camera_model, case)) or {}
        if "c_pos" in own:
            return own["c_pos"], own["c_yaw"]
        if camera_model == "pinhole" and self.c_pos_pinhole is not None:
            return self.c_pos_pinhole, self.c_yaw_pinhole if self.c_yaw_pinhole is not None else self.c_yaw
        return self.c_pos, self.c_yaw

    def confidence_map(self, camera_model: str, case: str | None = None) -> dict | None:
        """The confidence map of a camera kind in calibration ``case`` (the kind's when the case
        has none, the panorama's when the kind has none)."""
        own = (self.cases.get((camera_model, case)) or {}).get("confidence")
        return own or self.confidence_maps.get(camera_model) or self.confidence_maps.get("panorama")

    def abstention_thresholds(self, camera_model: str) -> dict | None:
        """The abstention thresholds of a camera kind (the panorama's when the kind has none)."""
        return self.abstention.get(camera_model) or self.abstention.get("panorama")

    def tracking_scales(self, camera: str = "panorama") -> tuple[float, float]:
        """(c_pos, c_yaw) of the tracking filter's covariance for a camera (``panorama``,
        ``pinhole``: a single one, ``rig``): the camera's own (``"tracking"["pinhole"]``, fitted
        on GNSS-aided pinhole drives, or ``["rig"]``) when the table has them, else the panorama
        drives'; (1, 1) when not calibrated."""
        part = self.tracking.get(camera) if camera != "panorama" else None
        part = part if isinstance(part, dict) and "c_pos" in part else self.tracking
        return float(part.get("c_pos", 1.0)), float(part.get("c_yaw", 1.0))

    def as_dict(self) -> dict:
        return asdict(self)


def read_calibrations(path: str | Path | None = None) -> dict[str, dict]:
    """The table {model hash: entry} of ``path`` (default :data:`CALIBRATION_FILE`); empty
    when the file does not exist; ValueError naming the file when it is not such a table."""
    path = Path(path or CALIBRATION_FILE)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not a calibration table ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT or not isinstance(
            data.get("models"), dict):
        raise ValueError(f"{path}: expected a JSON object with format {CALIBRATION_FORMAT!r} and a 'models' object")
    return data["models"]


def lookup_calibration(model_hash: str, path: str | Path | None = None) -> Calibration:
    """The scale factors of ``model_hash`` from the table (unscaled when it has no entry)."""
    from .abstention import check_thresholds

    entry = read_calibrations(path).get(model_hash)
    if entry is None:
        return Calibration()
    pinhole = entry.get("pinhole") or {}
    maps, abstention, cases = {}, {}, {}
    for kind, part in (("panorama", entry), ("pinhole", pinhole)):
        if part.get("confidence"):
            maps[kind] = _check_confidence_map(part["confidence"], f"{model_hash[:12]} {kind} confidence")
        for name, case in (part.get("cases") or {}).items():
            cases[(kind, name)] = _check_case(case, f"{model_hash[:12]} {kind} case {name!r}")
        if (part.get("abstention") or {}).get("thresholds"):
            abstention[kind] = check_thresholds(part["abstention"]["thresholds"],
                                                f"{model_hash[:12]} {kind} abstention thresholds")
    tracking = entry.get("tracking") or {}
    for where, t in (("", tracking), *((f" ({cam})", tracking.get(cam) if tracking else None)
                                       for cam in TRACKING_CAMERAS)):
        if t and not all(np.isfinite(float(t.get(k, np.nan))) and float(t[k]) > 0 for k in ("c_pos", "c_yaw")):
            raise ValueError(f"{model_hash[:12]} tracking factors{where}: expected positive finite c_pos and c_yaw, "
                             f"got {t!r}")
    return Calibration(c_pos=float(entry["c_pos"]), c_yaw=float(entry["c_yaw"]), source="table",
                       details={k: v for k, v in entry.items() if k not in ("c_pos", "c_yaw", "pinhole")},
                       c_pos_pinhole=float(pinhole["c_pos"]) if "c_pos" in pinhole else None,
                       c_yaw_pinhole=float(pinhole["c_yaw"]) if "c_yaw" in pinhole else None,
                       confidence_maps=maps, abstention=abstention, cases=cases,
                       tracking=_tracking_factors(tracking))


def _tracking_factors(tracking: dict) -> dict:
    """``{"c_pos", "c_yaw"}`` of the panorama drives, with ``"pinhole"`` and ``"rig"``
    (``{"c_pos", "c_yaw"}`` each) when the table has those drives'; empty when not calibrated."""
    if not tracking:
        return {}
    out: dict = {k: float(tracking[k]) for k in ("c_pos", "c_yaw")}
    for cam in TRACKING_CAMERAS:
        if tracking.get(cam):
            out[cam] = {k: float(tracking[cam][k]) for k in ("c_pos", "c_yaw")}
    return out


def _check_case(case: dict, where: str) -> dict:
    """A calibration case's entry: optional positive finite ``c_pos`` and ``c_yaw`` (both or
    neither) and an optional confidence map."""
    if not isinstance(case, dict):
        raise ValueError(f"{where}: expected an object, got {case!r}")
    out: dict = {}
    if "c_pos" in case or "c_yaw" in case:
        try:
            c_pos, c_yaw = float(case["c_pos"]), float(case["c_yaw"])
        except (KeyError, TypeError, ValueError):
            c_pos = c_yaw = float("nan")
        if not (np.isfinite(c_pos) and np.isfinite(c_yaw) and c_pos > 0 and c_yaw > 0):
            raise ValueError(f"{where}: expected positive finite c_pos and c_yaw, got "
                             f"{ {k: case.get(k) for k in ('c_pos', 'c_yaw')} !r}")
        out.update(c_pos=c_pos, c_yaw=c_yaw)
    if case.get("confidence"):
        out["confidence"] = _check_confidence_map(case["confidence"], f"{where} confidence")
    return out


def _check_confidence_map(m: dict, where: str) -> dict:
    feats = tuple(m.get("features") or CONFIDENCE_FEATURES)
    weights = [float(w) for w in m.get("weights", [])]
    if feats != CONFIDENCE_FEATURES or len(weights) != len(feats) or not np.all(np.isfinite(weights + [
            float(m.get("bias", np.nan))])):
        raise ValueError(f"{where}: expected features {list(CONFIDENCE_FEATURES)} with as many finite weights and "
                         f"a finite bias, got {m!r}")
    return {"bias": float(m["bias"]), "weights": weights}


def confidence_inputs(raw_confidence, consensus_support) -> np.ndarray:
    """(N, 2) inputs of the confidence map (:data:`CONFIDENCE_FEATURES`) from the raw confidence
    (mode mass x agreeing weight) and the chosen candidate's consensus support."""
    raw = np.clip(np.asarray(raw_confidence, dtype=np.float64), 1e-4, 1 - 1e-4)
    sup = np.maximum(np.asarray(consensus_support, dtype=np.float64), 1e-6)
    return np.stack([np.log(raw / (1 - raw)), np.log(sup)], axis=-1)


def apply_confidence(conf_map: dict | None, raw_confidence: float, consensus_support: float) -> float:
    """The calibrated chance of the right mode; the raw confidence when there is no map."""
    if not conf_map:
        return float(np.clip(raw_confidence, 0.0, 1.0))
    x = confidence_inputs([raw_confidence], [consensus_support])[0]
    z = float(conf_map["bias"] + np.dot(conf_map["weights"], x))
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))


def fit_confidence(raw_confidence, consensus_support, correct, l2: float = 1e-3) -> dict:
    """Logistic regression of ``correct`` (in the right mode) on the confidence inputs, by
    Newton's method with a small ridge; ``{"features", "bias", "weights", "n", "right_mode_share"}``."""
    x = confidence_inputs(raw_confidence, consensus_support)
    y = np.asarray(correct, dtype=np.float64)
    if len(y) < 10 or y.min() == y.max():
        raise ValueError(f"confidence fit: expected at least 10 views with both outcomes, got {len(y)} "
                         f"({int(y.sum())} in the right mode)")
    a = np.c_[np.ones(len(x)), x]
    w = np.zeros(a.shape[1])
    ridge = l2 * len(y) * np.diag([0.0] + [1.0] * x.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -50, 50)))
        grad = a.T @ (p - y) + ridge @ w
        hess = (a * (p * (1 - p))[:, None]).T @ a + ridge + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return {"features": list(CONFIDENCE_FEATURES), "bias": float(w[0]), "weights": [float(v) for v in w[1:]],
            "n": int(len(y)), "right_mode_share": float(y.mean())}


def mahalanobis2(err_xy: np.ndarray, cov_xy: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances of (N, 2) errors under (N, 2, 2) covariances."""
    err = np.asarray(err_xy, dtype=np.float64)
    cov = np.asarray(cov_xy, dtype=np.float64)
    sol = np.linalg.solve(cov, err[..., None])[..., 0]
    return (err * sol).sum(axis=-1)


def fit_scales(err_xy, cov_xy_raw, yaw_err_deg, sigma_yaw_raw_deg) -> dict:
    """The two scale factors from unscaled covariances (see the module docstring)."""
    return scales_from_mahalanobis(mahalanobis2(err_xy, cov_xy_raw), yaw_err_deg, sigma_yaw_raw_deg)


def scales_from_mahalanobis(d2, yaw_err_deg, sigma_yaw_raw_deg) -> dict:
    """The two scale factors from the squared Mahalanobis distances of the position errors
    under the unscaled covariances, and the yaw errors and unscaled yaw sigmas."""
    d2 = np.asarray(d2, dtype=np.float64)
    c_pos = float(np.sqrt(np.quantile(d2, 0.95) / CHI2_2_95))
    out = {"c_pos": c_pos, "n_position": int(len(d2)),
           "coverage_unscaled": float(np.mean(d2 <= CHI2_2_95))}
    ye = np.abs(np.asarray(yaw_err_deg, dtype=np.float64))
    sy = np.asarray(sigma_yaw_raw_deg, dtype=np.float64)
    ok = np.isfinite(ye) & np.isfinite(sy) & (sy > 0)
    if ok.any():
        ratio = ye[ok] / sy[ok]
        out.update(c_yaw=float(np.quantile(ratio, 0.95) / Z_95), n_yaw=int(ok.sum()),
                   yaw_coverage_unscaled=float(np.mean(ratio <= Z_95)))
    else:
        out.update(c_yaw=1.0, n_yaw=0)
    return out
