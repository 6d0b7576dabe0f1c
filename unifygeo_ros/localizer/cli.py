"""``unifygeo localize``, ``unifygeo calibrate`` and ``unifygeo bench localize``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import CommandError, add_json_flag, emit, weights_or_shipped


def register(sub, bench_sub) -> None:
    p = sub.add_parser("localize", help="localize one image (PNG/JPEG) against a database")
    p.add_argument("image", help="a panorama (equirectangular, 2:1) or, with --fov, a pinhole image")
    p.add_argument("--db", required=True, help="database folder (unifygeo build-db)")
    p.add_argument("--fov", type=float, help="pinhole camera: horizontal field of view in degrees")
    p.add_argument("--pitch", type=float, default=0.0, help="pinhole camera pitch, degrees up (default 0)")
    p.add_argument("--heading", type=float, help="known ENU yaw (map frame, degrees, 0 = east, CCW) of the "
                                                 "camera's forward direction")
    p.add_argument("--heading-prior", metavar="YAW,HALF", help="yaw window: ENU yaw +/- half-width, degrees")
    p.add_argument("--prior", metavar="X,Y,R", help="position prior: map-frame x, y and radius in metres")
    p.add_argument("--backend", default="auto", help="auto (the fastest available) | torch | onnxruntime | an exact backend name")
    p.add_argument("--engines", help="folder of ONNX files / TensorRT engines (default DB/engines)")
    p.add_argument("--top-k", type=int, default=5, help="retrieved tiles decoded and re-ranked (default 5)")
    p.add_argument("--rerank-score", default="matching", choices=["matching", "m0"],
                   help="re-ranking term: the matching score of every level (default) or max M^0 (paper Eq. 4)")
    p.add_argument("--tile-choice", default="consensus", choices=["consensus", "rerank"],
                   help="consensus (default): the candidate whose D peak the overlapping candidates' D confirm; "
                        "rerank: the best re-ranked tile (the paper)")
    p.add_argument("--alignment-candidates", type=int, default=4,   # = alignment_search.DEFAULT_CANDIDATES
                   help="without a known heading: alignments re-decoded per tile (0: the decoder's max-M^0 choice)")
    p.add_argument("--decoder-turns", type=int, default=4, choices=[1, 4, 8],
                   help="decoder ensemble on the chosen tile: 4 quarter turns (default), 8 (the turns and their "
                        "mirror images: twice the cost) or 1 (none)")
    p.add_argument("--distribution", metavar="PNG", help="also write D over the chosen tile as a heat map")
    add_json_flag(p)
    p.set_defaults(handler=localize_command)

    c = sub.add_parser("calibrate", help="fit the covariance scale factors on held-out synthetic cities")
    c.add_argument("--weights", help="model checkpoint (default: the shipped small model)")
    c.add_argument("--seeds", default="101,102,103,104", help="city seeds (never the training seeds)")
    c.add_argument("--styles", default="default,downtown,oldtown,suburb", help="city style per seed, comma-separated")
    c.add_argument("--size-m", type=float, default=400.0, help="city side in metres (default 400)")
    c.add_argument("--views", type=int, default=60, help="views per city and mode")
    c.add_argument("--out", default="out/calibration", help="work folder (cities, databases, records)")
    c.add_argument("--write", action="store_true", help="store the factors in localizer/calibration_data.py")
    add_json_flag(c)
    c.set_defaults(handler=calibrate_command)

    b = bench_sub.add_parser("localize", help="per-stage localization latency for every available backend")
    b.add_argument("--db", help="database (default: a 300 m synthetic city built with the shipped model)")
    b.add_argument("--weights", help="checkpoint for the default database (default: the shipped model)")
    b.add_argument("--backends", default="available", help="comma-separated names, or 'available'")
    b.add_argument("--repeats", type=int, default=20, help="timed frames per backend (default 20)")
    b.add_argument("--warmup", type=int, default=3, help="untimed frames first (default 3)")
    b.add_argument("--threads", type=int, default=None, help="intra-op threads of the backends (default: all cores)")
    b.add_argument("--decoder-turns", type=int, default=4, choices=[1, 4, 8],
                   help="decoder ensemble on the chosen tile, as for `unifygeo localize` (default 4)")
    add_json_flag(b)
    b.set_defaults(handler=bench_localize_command)


def _floats(text: str, n: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise CommandError(f"{what}: expected {n} comma-separated numbers, got {text!r}")
    return vals


def read_image(path: str):
    """An RGB uint8 image from a PNG / JPEG file; CommandError when unreadable."""
    import cv2
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise CommandError(f"image not found: {p}")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise CommandError(f"{p}: not a readable image; expected a PNG or JPEG file")
    return img[:, :, ::-1].copy()


def localize_command(args: argparse.Namespace) -> int:
    from ..backends.cli import setup_logging
    from .localizer import Localizer
    from .types import Camera, DatabaseError, HeadingPrior, LocalizationError, PositionPrior

    setup_logging()
    image = read_image(args.image)
    try:
        camera = Camera("pinhole", hfov_deg=args.fov, pitch_deg=args.pitch) if args.fov else Camera()
        priors = []
        if args.prior:
            priors.append(PositionPrior(*_floats(args.prior, 3, "--prior")))
        if args.heading_prior:
            priors.append(HeadingPrior(*_floats(args.heading_prior, 2, "--heading-prior")))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    try:
        loc = Localizer.open(args.db, backend=args.backend, engines=args.engines, top_k=args.top_k,
                             rerank_score=args.rerank_score, alignment_candidates=args.alignment_candidates,
                             decoder_turns=args.decoder_turns, tile_choice=args.tile_choice)
        res = loc.localize(image, camera=camera, heading=args.heading, prior=tuple(priors) or None,
                           return_distribution=bool(args.distribution))
    except (DatabaseError, LocalizationError, ValueError, RuntimeError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc
    out = res.as_dict()
    out["image"] = args.image
    out["map_frame"] = {"crs_wkt": loc.frame.crs_wkt, "origin_e": loc.frame.origin_e, "origin_n": loc.frame.origin_n}
    if args.distribution:
        from .plots import write_distribution_png

        out["distribution_png"] = str(write_distribution_png(res, loc, args.distribution))

    def human(r: dict) -> str:
        import numpy as np

        cov = np.asarray(r["covariance"])
        yaw = "not estimated" if r["yaw_deg"] is None else (
            f"{r['yaw_deg']:.1f} deg ENU (sigma {np.degrees(np.sqrt(cov[2, 2])):.1f} deg)")
        lines = [f"position  lat {r['latitude']:.7f}, lon {r['longitude']:.7f}; map x {r['x']:.2f} m, y {r['y']:.2f} m "
                 f"(sigma x {np.sqrt(cov[0, 0]):.2f} m, y {np.sqrt(cov[1, 1]):.2f} m)",
                 f"yaw       {yaw}; heading mode {r['heading_mode']}",
                 f"tile      {r['tile_id']}, MAP pixel ({r['pixel'][0]:.1f}, {r['pixel'][1]:.1f}); confidence "
                 f"{r['confidence']:.2f}; backend {r['backend']}",
                 "candidates " + ", ".join(f"{c['tile_id']} ({c['combined']:.3f})" for c in r["candidates"]),
                 "ms        " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings_ms"].items())]
        if "distribution_png" in r:
            lines.append(f"D         {r['distribution_png']}")
        return "\n".join(lines)

    emit(out, args.json, human)
    return 0


def calibrate_command(args: argparse.Namespace) -> int:
    from ..backends.cli import setup_logging
    from .calibrate import calibrate

    setup_logging()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise CommandError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    if not seeds or not styles:
        raise CommandError("--seeds and --styles: expected at least one of each")
    if args.views < 1 or not args.size_m >= 100.0:
        raise CommandError(f"--views: expected >= 1 (got {args.views}); --size-m: expected >= 100 m "
                           f"(got {args.size_m:g})")
    try:
        report = calibrate(weights_or_shipped(args.weights), seeds, styles, args.size_m, args.views, args.out, write=args.write)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    emit(report, args.json)
    return 0


def bench_localize_command(args: argparse.Namespace) -> int:
    from ..backends.cli import setup_logging
    from .bench import bench_localize, format_bench

    setup_logging()
    try:
        report = bench_localize(args.db, None if args.db else weights_or_shipped(args.weights), args.backends, args.repeats,
                                args.warmup, args.threads, decoder_turns=args.decoder_turns)
    except (ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from exc
    emit(report, args.json, format_bench)
    return 0
