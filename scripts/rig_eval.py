#!/usr/bin/env python3
"""Camera rigs against real panoramas on the demo city (held out from training and calibration).

    python scripts/rig_eval.py                       # 60 poses, out/rig_eval
    python scripts/rig_eval.py --views 20 --json

The same poses (``tools.synthetic.sample_truths`` of the demo's seed) are localized with the
shipped model as real 512 x 256 panoramas and as the rigs of ``tools.synthetic.RIGS`` (90-degree
pinhole cameras, 320 x 240: four at yaw 0, +90, -90 and 180; front and back; front only),
each with the heading known and unknown. Prints, per mode, the share of views whose chosen tile
is the right one, the median error and R@10m (and the demo table's other columns with --json).
The demo's database (``unifygeo demo``'s out/demo) is reused when present.
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
from unifygeo_ros.tools.demo import DEMO_ORIGIN, DEMO_SEED  # noqa: E402
from unifygeo_ros.tools.synthetic import RIG_MODES, make_area, run_mode, sample_truths, summarize  # noqa: E402

BASELINES = ("panorama, known heading", "panorama, unknown heading")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--views", type=int, default=60, help="poses per mode (default 60)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"city seed (default {DEMO_SEED}, the demo's)")
    p.add_argument("--size-m", type=float, default=500.0, help="city side in metres (default 500, the demo's)")
    p.add_argument("--out", default="out/demo", help="the demo's output folder, reused (default out/demo)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    area = make_area(args.seed, args.size_m, DEMO_ORIGIN, "default", args.out, weights_or_shipped(None),
                     backend=args.backend, reuse=True)
    loc = Localizer.open(area.db, backend=args.backend)
    loc.warmup()
    xy, yaw = sample_truths(area.city, args.views, args.seed)
    rows = {}
    for mode in (*BASELINES, *RIG_MODES):
        rows[mode] = summarize(run_mode(loc, area.city, xy, yaw, mode, progress=not args.json))
    result = {"seed": args.seed, "views": args.views, "backend": loc.backend_name, "modes": rows,
              "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        print(json.dumps(result, default=float))
    else:
        print(f"city {args.seed}, {args.views} poses per mode, backend {loc.backend_name}")
        print(f"{'mode':34s} {'right tile':>10} {'median m':>9} {'R@10m':>6} {'yaw med deg':>11} {'no fix':>6}")
        for mode, r in rows.items():
            if "median_m" not in r:
                print(f"{mode:34s} all {r['queries']} views failed")
                continue
            yaw_med = f"{r['yaw_median_deg']:.1f}" if "yaw_median_deg" in r else "-"
            print(f"{mode:34s} {r['R@1_tile']:>10.2f} {r['median_m']:>9.2f} {r['R@10m']:>6.2f} {yaw_med:>11} "
                  f"{r['no_fix']:>6.2f}")
        print(f"({result['seconds']:.0f} s)")
    loc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
