"""Covariance calibration: scale factors for position and yaw, per model and camera kind.

The raw covariances of :mod:`.posterior` come from D and the alignment scores; whether
their size is right is an empirical question. ``unifygeo calibrate`` localizes panoramas in
synthetic cities whose seeds were used neither in training (11-16) or validation (21) nor by the
demo (2026), and fits

* ``c_pos``: with ``d2 = e^T S^-1 e`` (e = estimate - truth, S the unscaled 2 x 2 position
  covariance), ``c_pos^2 = quantile_95(d2) / chi2_2(0.95)`` so that 95 % of the truths fall
  inside the scaled 95 % ellipse;
* ``c_yaw``: ``quantile_95(|yaw error| / sigma_yaw) / 1.96``.

The factors are fitted separately for panoramas and for limited-field-of-view (pinhole)
views, whose errors behave differently (for the shipped model nearly every pinhole view
lands on a wrong tile): one pair of factors for all of them would leave one kind over- and
the other under-confident. The pinhole pair is stored under ``"pinhole"`` in the model's
entry; an entry without it applies its factors to every camera.

The factors are data: a JSON table keyed by model hash, ``weights/calibration.json`` in the
package (:data:`CALIBRATION_FILE`; ``{"format": ..., "models": {hash: entry}}``), which
``unifygeo calibrate --write`` updates. The localizer applies the entry of its model's hash;
a model without one gets unscaled covariances (``source: none``). The demo measures the
coverage on its own held-out city.
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


@dataclass(frozen=True)
class Calibration:
    c_pos: float = 1.0             # panoramas (and every camera when no pinhole pair is given)
    c_yaw: float = 1.0
    source: str = "none"           # none | table | explicit
    details: dict = field(default_factory=dict, compare=False)
    c_pos_pinhole: float | None = None
    c_yaw_pinhole: float | None = None

    def scales(self, camera_model: str) -> tuple[float, float]:
        """(c_pos, c_yaw) for a ``panorama`` or ``pinhole`` camera."""
        if camera_model == "pinhole" and self.c_pos_pinhole is not None:
            return self.c_pos_pinhole, self.c_yaw_pinhole if self.c_yaw_pinhole is not None else self.c_yaw
        return self.c_pos, self.c_yaw

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
    entry = read_calibrations(path).get(model_hash)
    if entry is None:
        return Calibration()
    pinhole = entry.get("pinhole") or {}
    return Calibration(c_pos=float(entry["c_pos"]), c_yaw=float(entry["c_yaw"]), source="table",
                       details={k: v for k, v in entry.items() if k not in ("c_pos", "c_yaw", "pinhole")},
                       c_pos_pinhole=float(pinhole["c_pos"]) if "c_pos" in pinhole else None,
                       c_yaw_pinhole=float(pinhole["c_yaw"]) if "c_yaw" in pinhole else None)


def mahalanobis2(err_xy: np.ndarray, cov_xy: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances of (N, 2) errors under (N, 2, 2) covariances."""
    err = np.asarray(err_xy, dtype=np.float64)
    cov = np.asarray(cov_xy, dtype=np.float64)
    sol = np.linalg.solve(cov, err[..., None])[..., 0]
    return (err * sol).sum(axis=-1)


def fit_scales(err_xy, cov_xy_raw, yaw_err_deg, sigma_yaw_raw_deg) -> dict:
    """The two scale factors from unscaled covariances (see the module docstring)."""
    d2 = mahalanobis2(err_xy, cov_xy_raw)
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
