"""``unifygeo bench abstention``: how many garbage frames would be published, how many
genuine panoramas are refused.

On held-out synthetic cities (seeds that neither training, the calibration nor the demo
used; default 4101 and 4102) with the shipped model:

* **genuine**: street panoramas at random places and headings, localized in the three
  panorama modes (known heading, unknown heading, unknown heading with a degraded GNSS
  prior); *refused* is the share reported as no fix; reported apart, the unknown-heading
  views again with a mild blur (:func:`mild_blur`: a slightly defocused camera, which
  the network still localizes);
* **garbage**: frames of :mod:`.garbage` (noise of three spectra, gradients, stripes, black
  with a stripe, heavy blur, upside-down, flipped and mirrored panoramas, another city's
  panoramas), localized with an unknown heading (half of them), a random known heading (a
  quarter) or a GNSS prior around a random tile (a quarter); *published* counts those that
  the node would publish: a fix with a confidence of at least ``min_confidence``.

With ``camera="pinhole"`` (``--camera pinhole``) the same for the pinhole kind: the genuine
views are single 90-degree pinhole views (heading known, unknown, with a GNSS prior) and rigs
of four and of two such cameras (:data:`PINHOLE_MODES`), the known-heading single views again
mildly blurred, and the garbage frames are made for the pinhole camera.

It prints one JSON object with ``--json``: per city and in all, the counts, the shares per
garbage kind and per genuine mode, and over the published genuine poses the 95 % ellipse's
coverage (all of them, and those in the right mode) and the median position sigma against
the median error. :func:`run_garbage` is shared with ``unifygeo calibrate``, which fits the
thresholds on other cities.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..options import default

BENCH_SEEDS = (4101, 4102)
#: the mild blur of genuine views: a Gaussian of this fraction of the image width
MILD_BLUR_FRACTION = 0.005
#: the three panorama modes of :data:`.synthetic.MODES`
PANORAMA_MODES = ("panorama, known heading", "panorama, unknown heading", "panorama, unknown heading, GNSS prior")
#: the pinhole kind's modes of :data:`.synthetic.DEMO_MODES`: single 90-degree views and rigs
PINHOLE_MODES = ("pinhole 90 deg, known heading", "pinhole 90 deg, unknown heading",
                 "pinhole 90 deg, known heading, GNSS prior", "rig of four, known heading",
                 "front + back, known heading")
#: per camera kind: the genuine modes, and the mode whose views are localized again with a mild blur
GENUINE_MODES = {"panorama": (PANORAMA_MODES, "panorama, unknown heading"),
                 "pinhole": (PINHOLE_MODES, "pinhole 90 deg, known heading")}
GARBAGE_HEADINGS = ("unknown", "unknown", "known", "prior")


def mild_blur(img: np.ndarray) -> np.ndarray:
    """A genuine view slightly defocused (:data:`MILD_BLUR_FRACTION` of the width): still
    evidence; the abstention's fit counts such views as genuine, so that its detail threshold
    refuses heavy blur only."""
    import cv2

    sigma = MILD_BLUR_FRACTION * img.shape[1]
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def run_garbage(loc, city, other_city, n: int, seed: int, progress: bool = True,
                camera: str = "panorama") -> list[dict]:
    """Localize ``n`` garbage frames (:func:`.garbage.garbage_kinds`) against ``loc``'s
    database, whose city is ``city``; ``other_city`` gives the other city's views. ``camera``:
    ``panorama`` (panorama-sized frames) or ``pinhole`` (frames of the 90-degree pinhole
    camera of :func:`.synthetic.render_view`, localized as such; the street views it turns
    into garbage are that camera's). One record per frame: kind, heading mode, fix, reason,
    confidence, features."""
    import sys

    from ..progress import tqdm
    from ..types import Camera, LocalizationError, PositionPrior
    from .garbage import FROM_PANORAMA, garbage_frame, garbage_kinds
    from .synthetic import PANO_SIZE, PINHOLE_FOV, PINHOLE_SIZE, PRIOR_RADIUS_M, render_view

    if camera not in GENUINE_MODES:
        raise ValueError(f"camera: expected one of {', '.join(GENUINE_MODES)}, got {camera!r}")
    rng = np.random.default_rng(seed)
    shown: dict = {}
    size = PANO_SIZE if camera == "panorama" else PINHOLE_SIZE
    cam = Camera() if camera == "panorama" else Camera("pinhole", hfov_deg=PINHOLE_FOV)

    def view(c):
        def make():
            xy = c.street_positions(1, rng, margin_m=24.0)[0]
            shown["xy"] = xy
            return render_view(c, xy, float(rng.uniform(-180.0, 180.0)), camera)[0]
        return make

    records = []
    for i, kind in enumerate(tqdm(garbage_kinds(n), desc="garbage", unit="frame", disable=not progress,
                                  file=sys.stderr)):
        shown.clear()
        img = garbage_frame(kind, rng, size, view(city), view(other_city))
        heading_mode = GARBAGE_HEADINGS[i % len(GARBAGE_HEADINGS)]
        heading = float(rng.uniform(-180.0, 180.0)) if heading_mode == "known" else None
        centre = loc.db.centres[int(rng.integers(loc.db.n))]
        prior = PositionPrior(float(centre[0]), float(centre[1]), PRIOR_RADIUS_M) if heading_mode == "prior" else None
        rec = {"kind": kind, "heading": heading_mode, "camera": camera}
        try:
            res = loc.localize(img, camera=cam, heading=heading, prior=prior)
        except LocalizationError as exc:          # refused at the input check (a uniform frame)
            rec.update(error=str(exc), fix=False, confidence=0.0, features={})
            records.append(rec)
            continue
        rec.update(fix=bool(res.fix), no_fix_reason=res.no_fix_reason, confidence=float(res.confidence),
                   confidence_raw=res.diagnostics.get("confidence_raw"),
                   consensus_support=res.diagnostics.get("consensus_support_chosen"),
                   features=dict(res.diagnostics.get("abstention_features") or {}), estimate_xy=[res.x, res.y])
        if kind in FROM_PANORAMA:        # how far from the place the street panorama shows
            rec["error_to_source_m"] = float(np.hypot(res.x - shown["xy"][0], res.y - shown["xy"][1]))
        records.append(rec)
    return records


def garbage_summary(records: list[dict], min_confidence: float) -> dict:
    """Published (a fix at or above ``min_confidence``) and refused counts, per kind; how many of
    the published frames made from a street panorama (blur, turned, mirrored) lie within
    ``MODE_RADIUS_M`` of the place that panorama shows."""
    from ..inference.calibration import MODE_RADIUS_M

    def published(r):
        return bool(r.get("fix")) and r.get("confidence", 0.0) >= min_confidence

    kinds: dict[str, dict] = {}
    for r in records:
        k = kinds.setdefault(r["kind"], {"frames": 0, "published": 0, "no_fix": 0})
        k["frames"] += 1
        k["published"] += int(published(r))
        k["no_fix"] += int(not r.get("fix"))
    n = len(records)
    pub = sum(published(r) for r in records)
    near = [r for r in records if published(r) and r.get("error_to_source_m", float("inf")) <= MODE_RADIUS_M]
    return {"frames": n, "published": int(pub), "published_share": pub / n if n else float("nan"),
            "published_within_10m_of_the_place_shown": len(near),
            "no_fix": int(sum(not r.get("fix") for r in records)),
            "fix_below_min_confidence": int(sum(bool(r.get("fix")) and not published(r) for r in records)),
            "by_kind": dict(sorted(kinds.items()))}


def genuine_summary(records: list[dict], min_confidence: float) -> dict:
    """Refused (no fix) and published shares of genuine views, and over the published ones the
    95 % ellipse's coverage (all, and those in the right mode) and sigma against error."""
    from ..inference.calibration import CHI2_2_95, Z_95

    ok = [r for r in records if "error_m" in r]
    n = len(records)
    refused = [r for r in ok if not r["fix"]] + [r for r in records if "error_m" not in r]
    pub = [r for r in ok if r["fix"] and r["confidence"] >= min_confidence]
    out: dict = {"views": n, "refused": len(refused), "refused_share": len(refused) / n if n else float("nan"),
                 "published": len(pub), "published_share": len(pub) / n if n else float("nan"),
                 "right_mode_share_all": float(np.mean([r["in_mode"] for r in ok])) if ok else float("nan")}
    if pub:
        mode = [r for r in pub if r["in_mode"]]
        d2 = np.array([r["d2"] for r in pub])
        out["published_right_mode_share"] = len(mode) / len(pub)
        out["in_95_ellipse_published"] = float(np.mean(d2 <= CHI2_2_95))
        if mode:
            e = np.array([r["error_m"] for r in mode])
            sig = np.array([r["sigma_m"] for r in mode])
            out["in_95_ellipse_right_mode"] = float(np.mean(np.array([r["d2"] for r in mode]) <= CHI2_2_95))
            out["median_error_m_right_mode"] = float(np.median(e))
            out["median_sigma_m_right_mode"] = float(np.median(sig))
            yaw = [r for r in mode if r.get("yaw_error_deg") is not None]
            if yaw:
                ye = np.array([r["yaw_error_deg"] for r in yaw])
                sy = np.array([r["sigma_yaw_deg"] for r in yaw])
                out["yaw_in_95_right_mode"] = float(np.mean(ye <= Z_95 * sy))
                out["median_yaw_error_deg_right_mode"] = float(np.median(ye))
                out["median_sigma_yaw_deg_right_mode"] = float(np.median(sy))
        e_all = np.array([r["error_m"] for r in pub])
        out["median_error_m_published"] = float(np.median(e_all))
        out["median_sigma_m_published"] = float(np.median([r["sigma_m"] for r in pub]))
        out["sigma_over_error_published"] = out["median_sigma_m_published"] / max(out["median_error_m_published"],
                                                                                   1e-9)
    return out


def abstention_cities(weights: str, seeds, styles, size_m: float, views: int, garbage_per_city, out: str,
                      progress: bool = True, backend: str = default("backend"), calibration=None,
                      camera: str = "panorama"):
    """Per city of ``seeds`` (built in ``out``/city<seed>, styles and origins in turn): its
    genuine views of the ``camera`` kind (:data:`GENUINE_MODES`: the panoramas in
    :data:`PANORAMA_MODES`, or the single pinhole views and rigs in :data:`PINHOLE_MODES`),
    those of one mode again with a mild blur (unknown-heading panoramas, known-heading pinhole
    views), and ``garbage_per_city[i]`` garbage frames of that camera (the other-city ones
    from the next city), localized with ``calibration`` (default: the model's table entry).
    Yields ``(seed, style, genuine, mildly_blurred, garbage)``, each record tagged with its
    seed."""
    from ..localizer.localizer import Localizer
    from ..sim.world import generate_city
    from .synthetic import ORIGINS, make_area, run_mode, sample_truths

    for i, seed in enumerate(seeds):
        style = styles[i % len(styles)]
        area = make_area(seed, size_m, ORIGINS[i % len(ORIGINS)], style, Path(out) / f"city{seed}", weights,
                         backend=backend, progress=progress, reuse=True)
        j = (i + 1) % len(seeds)
        other = generate_city(seeds[j], size_m, *ORIGINS[j % len(ORIGINS)], style=styles[j % len(styles)])
        loc = Localizer.open(area.db, backend=backend, calibration=calibration)
        xy, yaw = sample_truths(area.city, views, seed + 1000)
        modes, blur_mode = GENUINE_MODES[camera]
        gen, blurred = [], []
        for mode in modes:
            for r in run_mode(loc, area.city, xy, yaw, mode, progress):
                r.update(seed=seed)
                gen.append(r)
        for r in run_mode(loc, area.city, xy, yaw, blur_mode, progress, transform=mild_blur):
            r.update(seed=seed, variant="mild blur")
            blurred.append(r)
        gar = run_garbage(loc, area.city, other, garbage_per_city[i], seed + 2000, progress, camera=camera)
        for r in gar:
            r["seed"] = seed
        loc.close()
        yield seed, style, gen, blurred, gar


def bench_abstention(weights: str, seeds, size_m: float, views: int, garbage: int, out: str,
                     min_confidence: float = default("min_confidence"), backend: str = "auto",
                     progress: bool = True, camera: str = "panorama") -> dict:
    """The report of ``unifygeo bench abstention`` (see the module docstring) for a camera
    kind (``panorama``, ``pinhole``: :data:`GENUINE_MODES`)."""
    from ..inference.calibration import lookup_calibration
    from ..model.unifygeo import load_checkpoint
    from .demo import DEMO_SEED
    from .synthetic import STYLES, TRAINING_SEEDS

    model_hash = load_checkpoint(weights)[0].state_hash()
    cal = lookup_calibration(model_hash)
    used = set(TRAINING_SEEDS) | {DEMO_SEED}
    used |= set((cal.details.get("measured_on") or {}).get("seeds") or [])
    used |= set(((cal.details.get("abstention") or {}).get("measured_on") or {}).get("seeds") or [])
    bad = sorted(set(seeds) & used)
    if bad:
        raise ValueError(f"seeds {bad} were used in training, the demo or this model's calibration; expected "
                         f"fresh seeds (e.g. {', '.join(map(str, BENCH_SEEDS))})")
    if len(seeds) < 2:
        raise ValueError("expected at least two seeds: the other-city frames come from the next city")
    t0 = time.perf_counter()
    per_city, all_gen, all_gar, blurred = {}, [], [], []
    n_gar = [garbage // len(seeds) + (1 if i < garbage % len(seeds) else 0) for i in range(len(seeds))]
    for seed, style, gen, blur, gar in abstention_cities(weights, seeds, STYLES, size_m, views, n_gar, out,
                                                         progress, backend, camera=camera):
        blurred += blur
        per_city[str(seed)] = {"style": style, "genuine": genuine_summary(gen, min_confidence),
                               "garbage": garbage_summary(gar, min_confidence)}
        all_gen += gen
        all_gar += gar
    by_mode = {m: genuine_summary([r for r in all_gen if r["mode"] == m], min_confidence)
               for m in GENUINE_MODES[camera][0]}
    Path(out).mkdir(parents=True, exist_ok=True)
    import json

    (Path(out) / "records.json").write_text(json.dumps({"genuine": all_gen, "genuine_mild_blur": blurred,
                                                        "garbage": all_gar}, default=float))
    return {"model_hash": model_hash, "weights": str(weights), "camera": camera, "seeds": list(seeds),
            "size_m": size_m, "views_per_city_and_mode": views, "min_confidence": min_confidence,
            "thresholds": cal.abstention, "calibration_source": cal.source,
            "genuine": genuine_summary(all_gen, min_confidence), "genuine_by_mode": by_mode,
            "genuine_mild_blur": genuine_summary(blurred, min_confidence),
            "garbage": garbage_summary(all_gar, min_confidence), "per_city": per_city,
            "seconds": round(time.perf_counter() - t0, 1)}


def format_abstention(r: dict) -> str:
    g, b = r["genuine"], r["garbage"]
    lines = [f"model {r['model_hash'][:12]}, cities {r['seeds']}, min_confidence {r['min_confidence']:g}",
             f"garbage: {b['published']} of {b['frames']} published ({b['no_fix']} no fix, "
             f"{b['fix_below_min_confidence']} under min_confidence)",
             "  " + ", ".join(f"{k} {v['published']}/{v['frames']}" for k, v in b["by_kind"].items()),
             f"genuine {r.get('camera', 'panorama')} views: {g['refused']} of {g['views']} refused "
             f"({100 * g['refused_share']:.1f} %), "
             f"{g['published']} published"]
    for mode, m in r["genuine_by_mode"].items():
        lines.append(f"  {mode}: refused {100 * m['refused_share']:.1f} %, published {100 * m['published_share']:.1f} %")
    mb = r["genuine_mild_blur"]
    lines.append(f"  {GENUINE_MODES[r.get('camera', 'panorama')][1]}, mild blur: refused "
                 f"{100 * mb['refused_share']:.1f} %, published "
                 f"{100 * mb['published_share']:.1f} %")
    if "in_95_ellipse_published" in g:
        lines.append(f"published: in the 95 % ellipse {100 * g['in_95_ellipse_published']:.1f} % of all, "
                     f"{100 * g.get('in_95_ellipse_right_mode', float('nan')):.1f} % of those in the right mode "
                     f"({100 * g['published_right_mode_share']:.1f} % of them); median sigma "
                     f"{g.get('median_sigma_m_right_mode', float('nan')):.2f} m against a median error of "
                     f"{g.get('median_error_m_right_mode', float('nan')):.2f} m (right mode)")
    lines.append(f"{r['seconds']:.0f} s")
    return "\n".join(lines)
