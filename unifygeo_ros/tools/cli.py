"""Tooling commands: ``calibrate``, ``bench model``, ``bench retrieval``, ``bench localize`` and
``bench abstention``.

(``demo`` registers itself from :mod:`.demo`.) Handlers import their modules lazily so
that ``unifygeo --help`` stays fast.
"""

from __future__ import annotations

import argparse

from ..cli import CommandError, add_json_flag, comma_list, emit, weights_or_shipped
from ..options import add_cli_options


def register(sub, bench_sub) -> None:
    c = sub.add_parser("calibrate", help="fit the covariance scale factors, the confidence map and the abstention "
                                         "thresholds on held-out synthetic cities")
    c.add_argument("--weights", help="model checkpoint, or a shipped model: small (panorama cameras, the default) or small-fov "
                        "(pinhole cameras and rigs)")
    c.add_argument("--part", default="all", choices=("all", "covariance", "abstention", "tracking"),
                   help="what to fit: covariance (scale factors and confidence map), abstention (thresholds), all "
                        "(default: both), or tracking (the tracking filter's covariance factors, on drives through "
                        "the --seeds cities; after the others); a part not run keeps the table's entry")
    c.add_argument("--seeds", default=None, help="city seeds of the covariance part (never the training seeds; "
                                                 "default 101,102,103,104, none with --records)")
    c.add_argument("--records", default=None,
                   help="covariance: records.json files of earlier runs (comma-separated) to fit on, with the "
                        "--seeds cities' views when --seeds is given")
    c.add_argument("--abstention-seeds", default="3101,3102,3103,3104",
                   help="city seeds of the abstention part (other cities than --seeds)")
    c.add_argument("--styles", default="default,downtown,oldtown,suburb", help="city style per seed, comma-separated")
    c.add_argument("--size-m", type=float, default=400.0, help="city side in metres (default 400)")
    c.add_argument("--views", type=int, default=60, help="views per city and mode")
    c.add_argument("--garbage", type=int, default=125, help="garbage frames per abstention city (default 125)")
    c.add_argument("--max-refused", type=float, default=0.03,
                   help="abstention: largest share of the genuine panoramas the thresholds may refuse (default 0.03)")
    c.add_argument("--drive-s", type=float, default=120.0, help="tracking: seconds of each drive (1 Hz, a kidnap "
                                                                 "half-way; default 120)")
    c.add_argument("--tracking-cameras", default="",
                   help="tracking: comma-separated cameras whose own factors are fitted too, besides the panorama "
                        "drives': pinhole (a single 90-degree camera, on drives with the drive's degraded GNSS as "
                        "the filter's evidence) and rig (four 90-degree cameras); for a model with a pinhole "
                        "calibration, e.g. small-fov; a camera not named keeps the entry's earlier factors")
    c.add_argument("--out", default="out/calibration", help="work folder (cities, databases, records)")
    c.add_argument("--write", action="store_true",
                   help="store the result for the model's hash in the calibration table "
                        "(unifygeo_ros/weights/calibration.json)")
    add_json_flag(c)
    c.set_defaults(handler=calibrate_command)

    b = bench_sub.add_parser("abstention", help="garbage frames published and genuine panoramas refused, on fresh "
                                                "held-out cities; coverage and sigma of the published poses")
    b.add_argument("--weights", help="model checkpoint, or a shipped model: small (panorama cameras, the default) or small-fov "
                        "(pinhole cameras and rigs)")
    b.add_argument("--seeds", default="4101,4102", help="city seeds, at least two (never training, demo or "
                                                         "calibration seeds; default 4101,4102)")
    b.add_argument("--size-m", type=float, default=400.0, help="city side in metres (default 400)")
    b.add_argument("--views", type=int, default=50, help="genuine views per city and mode (three panorama modes, or "
                                                          "the pinhole kind's five; default 50)")
    b.add_argument("--camera", default="panorama", choices=("panorama", "pinhole"),
                   help="the camera kind: panorama (panoramas and panorama-sized garbage), or pinhole (single "
                        "90-degree views with and without a heading or a prior, rigs of four and of two, and "
                        "garbage frames of the 90-degree pinhole camera; for small-fov)")
    b.add_argument("--garbage", type=int, default=500, help="garbage frames in all (default 500)")
    b.add_argument("--backend", default="auto", help="auto (the fastest available) | torch | onnxruntime | an exact "
                                                     "backend name")
    add_cli_options(b, ["min_confidence"])
    b.add_argument("--out", default="out/bench_abstention", help="work folder (cities, databases, records)")
    add_json_flag(b)
    b.set_defaults(handler=bench_abstention_command)

    b = bench_sub.add_parser("localize", help="per-stage localization latency for every available backend")
    b.add_argument("--db", help="database (default: a 300 m synthetic city built with the shipped model)")
    b.add_argument("--weights", help="checkpoint for the default database, or a shipped model: small (the default) or small-fov")
    b.add_argument("--backends", default="available", help="comma-separated names, or 'available'")
    b.add_argument("--repeats", type=int, default=20, help="timed frames per backend (default 20)")
    b.add_argument("--warmup", type=int, default=3, help="untimed frames first (default 3)")
    b.add_argument("--threads", type=int, default=None, help="intra-op threads of the backends (default: all cores)")
    add_cli_options(b, ["decoder_turns"])
    add_json_flag(b)
    b.set_defaults(handler=bench_localize_command)

    b = bench_sub.add_parser("model", help="per-branch latency and peak memory: PyTorch eager vs ONNX Runtime")
    b.add_argument("--config", default="small", help="small | paper | vigor (default: small)")
    b.add_argument("--repeats", type=int, default=20, help="timed runs per branch and backend (default 20)")
    b.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    b.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    b.add_argument("--backends", default="torch,onnxruntime", help="comma-separated backends (default torch,onnxruntime)")
    add_json_flag(b)
    b.set_defaults(handler=bench_model_command)

    b = bench_sub.add_parser("retrieval", help="FAISS index types at scale: build time, memory, latency, recall")
    b.add_argument("--tiles", default="10000,100000,1000000", help="comma-separated database sizes")
    b.add_argument("--dim", type=int, default=None, help="descriptor dimension (default: the small model's)")
    b.add_argument("--kinds", default="flat,pqfs,ivf,hnsw", help="comma-separated FAISS index kinds (default flat,pqfs,ivf,hnsw)")
    b.add_argument("--queries", type=int, default=200, help="queries per size for latency and recall (default 200)")
    b.add_argument("--threads", type=int, default=1, help="FAISS threads for building and searching (default 1)")
    b.add_argument("--hnsw-m", type=int, default=None, help="HNSW neighbours per node, M (default: build-db's, 32)")
    b.add_argument("--ef-search", default=None, help="HNSW efSearch values to sweep, comma-separated")
    b.add_argument("--nprobe", default=None, help="IVF nprobe values to sweep, comma-separated")
    b.add_argument("--k-factor", default=None, help="pqfs refine factors to sweep, comma-separated")
    add_json_flag(b)
    b.set_defaults(handler=bench_retrieval_command)


def _seed_list(text: str, option: str) -> list[int]:
    seeds = comma_list(text, option, int, "integers")
    if not seeds:
        raise CommandError(f"{option}: expected at least one seed")
    return seeds


def calibrate_command(args: argparse.Namespace) -> int:
    from ..log import setup_logging
    from ..tools.calibrate import calibrate

    setup_logging()
    records = comma_list(args.records, "--records") if args.records else []
    if records and args.part not in ("all", "covariance"):
        raise CommandError(f"--records: expected --part covariance or all (the records are the covariance part's), "
                           f"got --part {args.part}")
    seeds = [] if records and args.seeds is None else _seed_list(args.seeds or "101,102,103,104", "--seeds")
    abstention_seeds = _seed_list(args.abstention_seeds, "--abstention-seeds")
    styles = comma_list(args.styles, "--styles")
    if not styles:
        raise CommandError("--styles: expected at least one style")
    if args.views < 1 or not args.size_m >= 100.0:
        raise CommandError(f"--views: expected >= 1 (got {args.views}); --size-m: expected >= 100 m "
                           f"(got {args.size_m:g})")
    if args.garbage < 1 or not 0.0 <= args.max_refused < 1.0:
        raise CommandError(f"--garbage: expected >= 1 (got {args.garbage}); --max-refused: expected 0 <= value < 1 "
                           f"(got {args.max_refused:g})")
    try:
        report = calibrate(weights_or_shipped(args.weights), seeds, styles, args.size_m, args.views, args.out,
                           write=args.write, part=args.part, abstention_seeds=abstention_seeds, garbage=args.garbage,
                           max_refused=args.max_refused, drive_s=args.drive_s, records_from=records,
                           tracking_cameras=tuple(c for c in (args.tracking_cameras or "").split(",") if c))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    emit(report, args.json)
    return 0


def bench_abstention_command(args: argparse.Namespace) -> int:
    from ..log import setup_logging
    from ..tools.abstention import bench_abstention, format_abstention

    setup_logging()
    seeds = _seed_list(args.seeds, "--seeds")
    if args.views < 1 or args.garbage < 1 or not args.size_m >= 100.0:
        raise CommandError(f"--views, --garbage: expected >= 1 (got {args.views}, {args.garbage}); --size-m: "
                           f"expected >= 100 m (got {args.size_m:g})")
    try:
        report = bench_abstention(weights_or_shipped(args.weights), seeds, args.size_m, args.views, args.garbage,
                                  args.out, min_confidence=args.min_confidence, backend=args.backend,
                                  camera=args.camera)
    except (ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from exc
    emit(report, args.json, format_abstention)
    return 0


def bench_localize_command(args: argparse.Namespace) -> int:
    from ..log import setup_logging
    from ..tools.bench_localize import bench_localize, format_bench

    setup_logging()
    try:
        report = bench_localize(args.db, None if args.db else weights_or_shipped(args.weights), args.backends, args.repeats,
                                args.warmup, args.threads, decoder_turns=args.decoder_turns)
    except (ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from exc
    emit(report, args.json, format_bench)
    return 0


def bench_model_command(args: argparse.Namespace) -> int:
    from ..model_config import get_config
    from ..tools.bench_model import bench_model, format_report

    try:
        get_config(args.config)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    backends = tuple(comma_list(args.backends, "--backends", allowed=("torch", "onnxruntime")))
    report = bench_model(args.config, args.repeats, args.warmup, args.threads, backends)
    emit(report, args.json, format_report)
    return 0


def _ints(text: str | None, option: str) -> list[int] | None:
    return None if text is None else comma_list(text, option, lambda v: int(float(v)), "integers")


def bench_retrieval_command(args: argparse.Namespace) -> int:
    from ..tools.bench_retrieval import bench_retrieval, format_retrieval

    sizes = _ints(args.tiles, "--tiles")
    kinds = comma_list(args.kinds, "--kinds")
    bad = set(kinds) - {"flat", "pqfs", "ivf", "hnsw"}
    if bad or not sizes or min(sizes) < 1000:
        raise CommandError(f"--kinds: expected flat, pqfs, ivf, hnsw (got {sorted(bad)}); --tiles: sizes >= 1000")
    report = bench_retrieval(sizes, kinds, dim=args.dim, queries=args.queries, threads=args.threads,
                             hnsw_m=args.hnsw_m, ef_search=_ints(args.ef_search, "--ef-search"), nprobe=_ints(args.nprobe, "--nprobe"),
                             k_factor=_ints(args.k_factor, "--k-factor"))
    emit(report, args.json, format_retrieval)
    return 0
