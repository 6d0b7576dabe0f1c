#!/usr/bin/env python3
"""Limited field of view against panoramas on the demo city, for one model or several.

    python scripts/fov_eval.py                                   # the shipped model, 100 poses
    python scripts/fov_eval.py --weights A.pt --weights B.pt --json

The demo city (seed 2026, held out from training and calibration) gets a database per model
(``OUT/<model hash>/``, reused when present); the same poses (``tools.synthetic.sample_truths``)
are localized in each mode: panoramas and 90-degree pinhole views (320 x 240) with the heading
known and unknown, the pinhole view with a 15 m position prior centred on the truth (which
puts the right tile among the candidates: the decoder's D alone), and the rigs of four and
of two 90-degree cameras. Per mode: the share of views whose chosen tile is the right one,
the median error, R@5m and R@10m (and the demo table's other columns with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unifygeo_ros.cli import weights_or_shipped  # noqa: E402
from unifygeo_ros.localizer.localizer import Localizer  # noqa: E402
from unifygeo_ros.model.unifygeo import load_checkpoint  # noqa: E402
from unifygeo_ros.tools.demo import DEMO_ORIGIN, DEMO_SEED  # noqa: E402
from unifygeo_ros.tools.synthetic import make_area, run_mode, sample_truths, summarize  # noqa: E402

PRIOR_AT_TRUTH = "pinhole 90 deg, known heading, 15 m prior at the truth"
#: (label, run_mode's mode, prior noise m, prior radius m)
MODES = (
    ("panorama, known heading", "panorama, known heading", None, None),
    ("panorama, unknown heading", "panorama, unknown heading", None, None),
    ("pinhole 90 deg, known heading", "pinhole 90 deg, known heading", None, None),
    ("pinhole 90 deg, unknown heading", "pinhole 90 deg, unknown heading", None, None),
    (PRIOR_AT_TRUTH, "pinhole 90 deg, known heading, GNSS prior", 0.0, 15.0),
    ("rig of four, known heading", "rig of four, known heading", None, None),
    ("front + back, known heading", "front + back, known heading", None, None),
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", action="append", help="model checkpoint (repeatable; default: the shipped model)")
    p.add_argument("--views", type=int, default=100, help="poses per mode (default 100)")
    p.add_argument("--modes", help="comma-separated labels (default: all)")
    p.add_argument("--out", default="out/fov_eval", help="work folder: one database per model (default out/fov_eval)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    chosen = [m for m in MODES if not args.modes or m[0] in args.modes.split(",")]
    result = {"seed": DEMO_SEED, "views": args.views, "models": {}}
    for weights in args.weights or [None]:
        weights = weights_or_shipped(weights)
        model_hash = load_checkpoint(weights)[0].state_hash()
        area = make_area(DEMO_SEED, 500.0, DEMO_ORIGIN, "default", Path(args.out) / model_hash[:12], weights,
                         backend=args.backend, reuse=True, progress=not args.json)
        loc = Localizer.open(area.db, backend=args.backend)
        loc.warmup()
        xy, yaw = sample_truths(area.city, args.views, DEMO_SEED)
        rows = {}
        for label, mode, noise, radius in chosen:
            extra = {} if noise is None else {"prior_noise_m": noise, "prior_radius_m": radius}
            rows[label] = summarize(run_mode(loc, area.city, xy, yaw, mode, progress=not args.json, **extra))
        result["models"][model_hash[:12]] = {"weights": str(weights), "hash": model_hash,
                                             "backend": loc.backend_name, "modes": rows}
        loc.close()
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(result, default=float))
        return 0
    print(f"demo city {DEMO_SEED}, {args.views} poses per mode")
    for h, m in result["models"].items():
        print(f"\nmodel {h} ({m['weights']}), backend {m['backend']}")
        print(f"{'mode':56s} {'right tile':>10} {'median m':>9} {'R@5m':>6} {'R@10m':>6} {'no fix':>6}")
        for label, r in m["modes"].items():
            if "median_m" not in r:
                print(f"{label:56s} all {r['queries']} views failed")
                continue
            print(f"{label:56s} {r['R@1_tile']:>10.2f} {r['median_m']:>9.2f} {r['R@5m']:>6.2f} {r['R@10m']:>6.2f} "
                  f"{r['no_fix']:>6.2f}")
    print(f"({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
