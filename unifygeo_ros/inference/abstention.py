"""Abstention: is a frame evidence of where the camera is at all?

The localizer always finds a best tile and a peak of D, whatever it is shown: a noise
frame, a gradient, a blurred, mirrored or upside-down panorama, or a street of another city
would otherwise be published as a pose somewhere in the database's area. Before the pose is
used, :func:`decide` compares a few features of the frame, all computed on the way, against
per-model thresholds (data, stored with the covariance factors in
``weights/calibration.json`` and fitted by ``unifygeo calibrate``); a frame below any
threshold is reported as **no fix** with the feature, its value and the threshold.

The features (:data:`FEATURES`; :func:`frame_features` computes them):

* ``evidence``: the chosen tile's retrieval score plus its matching score (the cosine of the
  global descriptors plus the mean over the decoder's four levels of max M^l, as in the
  re-ranking). A real view of the place scores high on both; noise, gradients and stripes
  score low on the matching maps, blurred and other cities' views lower than the place's
  own.
* ``peak``: D's value at its MAP pixel, the share of the probability in one pixel (a
  place seen clearly gives a sharp peak; a frame without a place a flat D).
* ``detail``: the frame's fine detail (:func:`unifygeo_ros.inference.preprocess.image_detail`,
  the mean absolute Laplacian over the contrast): a defocused, fogged or heavily blurred
  lens leaves the coarse layout, which the network still matches somewhere, but no detail.

What these features cannot tell apart is a frame that shows a street, but not one of the
database's (another city, a mirror image of a street) from a genuine view that the network
places on a wrong tile: both match some tile about as well. Those are left to the
confidence (the calibrated chance of the right mode) and the node's ``min_confidence``.

A feature without a threshold is not checked, so a model without calibrated thresholds
publishes every frame (the localizer warns once). The thresholds are per camera kind
(``panorama``, ``pinhole``); a kind without its own uses the panorama's.

:func:`fit_thresholds` chooses them from the features of genuine views and of a garbage set
(``unifygeo_ros.tools.garbage``): each threshold at a low quantile of the genuine views,
the quantiles chosen so that at most a given share of the genuine views is refused while
the fewest garbage frames pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: feature name -> what it is (a frame is refused when a feature is below its threshold)
FEATURES: dict[str, str] = {
    "evidence": "retrieval + matching score of the chosen tile",
    "peak": "D's value at its MAP pixel",
    "detail": "fine detail of the frame",
}


@dataclass(frozen=True)
class Decision:
    fix: bool
    reason: str = ""                     # "" for a fix; else each failed feature with value and threshold
    failed: tuple[str, ...] = ()         # the features below their thresholds


def frame_features(retrieval_score: float, matching_score: float, peak: float, detail: float) -> dict[str, float]:
    """The features of one frame (see the module docstring)."""
    return {"evidence": float(retrieval_score) + float(matching_score), "peak": float(peak), "detail": float(detail)}


def decide(features: Mapping[str, float], thresholds: Mapping[str, float] | None) -> Decision:
    """A fix unless a feature lies below its threshold (or is not finite). Features without a
    threshold, and thresholds without a feature, are not checked."""
    if not thresholds:
        return Decision(True)
    failed, parts = [], []
    for name, low in thresholds.items():
        if name not in features:
            continue
        value = float(features[name])
        if not (np.isfinite(value) and value >= float(low)):
            failed.append(name)
            parts.append(f"{FEATURES.get(name, name)} {value:.3f} below {float(low):.3f} ({name})")
    if not failed:
        return Decision(True)
    return Decision(False, "no evidence of where the camera is: " + "; ".join(parts), tuple(failed))


def check_thresholds(thresholds: Mapping[str, float], where: str = "abstention thresholds") -> dict[str, float]:
    """``thresholds`` as {feature: float}; ValueError naming an unknown feature or a bad value."""
    out = {}
    for name, value in thresholds.items():
        if name not in FEATURES:
            raise ValueError(f"{where}: unknown feature {name!r}; expected some of {', '.join(FEATURES)}")
        v = float(value)
        if not np.isfinite(v):
            raise ValueError(f"{where}: threshold of {name} is not finite ({value!r})")
        out[name] = v
    return out


#: the quantiles of the genuine views' features (in %) the fit tries for each threshold
FIT_QUANTILES_PCT = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)


def fit_thresholds(genuine: Sequence[Mapping[str, float]], garbage: Sequence[Mapping[str, float]],
                   max_refused: float = 0.03, features: Sequence[str] | None = None) -> dict:
    """Thresholds over ``features`` (default every feature of :data:`FEATURES` the frames
    have): each at a quantile (:data:`FIT_QUANTILES_PCT`, 0 = just under the smallest
    genuine value, i.e. refuse no genuine view on that feature) of the genuine views' values;
    of the combinations that refuse at most ``max_refused`` of the genuine views, the one
    that lets the fewest garbage frames pass, then refuses the fewest genuine ones. Each
    threshold is then lowered to halfway between it and the highest value of the garbage
    frames that only it refuses (the same garbage is refused, with a margin on both sides).
    A threshold that refuses no garbage frame of its own ends just under the smallest genuine
    value. Returns ``{"thresholds", "genuine_refused", "garbage_passed", "genuine", "garbage"}``."""
    names = [f for f in (features or FEATURES) if all(f in g for g in genuine) and genuine]
    if not names or not garbage:
        raise ValueError("abstention fit: expected genuine views and garbage frames with features")
    g = np.array([[float(x[f]) for f in names] for x in genuine])
    b = np.array([[float(x.get(f, np.nan)) for f in names] for x in garbage])
    levels = [[np.nextafter(np.nanmin(g[:, j]), -np.inf) if q == 0 else float(np.nanpercentile(g[:, j], q))
               for q in FIT_QUANTILES_PCT] for j in range(len(names))]
    best = None
    for combo in itertools.product(*levels):
        t = np.array(combo)
        g_ok = np.all(g >= t, axis=1)
        refused = 1.0 - float(g_ok.mean())
        if refused > max_refused + 1e-12:
            continue
        passed = int(np.sum(np.all(np.nan_to_num(b, nan=-np.inf) >= t, axis=1)))
        key = (passed, refused)
        if best is None or key < best[0]:
            best = (key, t)
    assert best is not None          # quantile 0 everywhere refuses nothing
    (passed, refused), t = best
    t = np.array(t, dtype=np.float64)
    bb = np.nan_to_num(b, nan=-np.inf)
    for j in range(len(names)):
        others = np.all(np.delete(bb, j, axis=1) >= np.delete(t, j), axis=1)
        only_j = others & (bb[:, j] < t[j])
        if only_j.any():
            t[j] = 0.5 * (t[j] + float(np.max(bb[only_j, j])))
        else:                        # refuses no garbage of its own: refuse no genuine view either
            t[j] = min(t[j], float(np.nextafter(np.nanmin(g[:, j]), -np.inf)))
    g_ok = np.all(g >= t, axis=1)
    refused = 1.0 - float(g_ok.mean())
    passed = int(np.sum(np.all(bb >= t, axis=1)))
    return {"thresholds": {f: float(v) for f, v in zip(names, t)}, "genuine_refused": refused,
            "garbage_passed": passed, "genuine": len(genuine), "garbage": len(garbage)}
