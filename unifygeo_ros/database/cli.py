"""``unifygeo build-db`` and ``unifygeo verify-db``."""

from __future__ import annotations

import argparse

from ..cli import CommandError, add_json_flag, emit, weights_or_shipped


def register(sub, bench_sub) -> None:
    p = sub.add_parser("build-db", help="tile geo-referenced orthophotos into a localization database")
    p.add_argument("--ortho", action="append", required=True, metavar="TIF",
                   help="a GeoTIFF (any CRS GDAL reads; 1 or 3 bands, 8 or 16 bit); repeat for several")
    p.add_argument("--weights", help="model checkpoint, or a shipped model: small (panorama cameras, the default) or small-fov "
                        "(pinhole cameras and rigs)")
    p.add_argument("--out", required=True, help="database folder")
    p.add_argument("--overlap", type=float, default=0.5, help="share of a tile its neighbour overlaps (default 0.5)")
    p.add_argument("--features", default="auto", choices=["auto", "stored", "recompute"],
                   help="keep the decoder's aerial features (stored) or the tile pixels (recompute); auto: "
                        "stored when they fit in 4 GiB")
    p.add_argument("--index", default="auto", choices=["auto", "flat", "pqfs", "hnsw", "ivf"],
                   help="FAISS index (auto: exact up to 100k tiles, refined PQ fast scan above)")
    p.add_argument("--batch-size", type=int, default=32, help="tiles encoded per batch (default 32)")
    p.add_argument("--turns", type=int, default=4, choices=[1, 4],
                   help="rotation ensemble: encode every tile in 4 quarter turns (default) or as it is (1); "
                        "4 costs four aerial encodings per tile and improves retrieval")
    p.add_argument("--backend", default="auto", help="auto | torch | onnxruntime | an exact backend name")
    p.add_argument("--max-upsample", type=float, default=2.0,
                   help="refuse rasters coarser than this many times the model's metres per pixel")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing database in --out (the new one is built beside it and swapped in "
                        "when complete)")
    add_json_flag(p)
    p.set_defaults(handler=build_db_command)

    v = sub.add_parser("verify-db", help="check every file of a database against the hashes in its manifest")
    v.add_argument("--db", required=True, help="database folder (unifygeo build-db)")
    add_json_flag(v)
    v.set_defaults(handler=verify_db_command)



def build_db_command(args: argparse.Namespace) -> int:
    from ..log import setup_logging
    from ..types import DatabaseError
    from .build import BuildConfig, build_database

    setup_logging()
    weights = weights_or_shipped(args.weights)
    cfg = BuildConfig(orthos=args.ortho, weights=weights, out=args.out, overlap=args.overlap, features=args.features,
                      batch_size=args.batch_size, backend=args.backend, index=args.index,
                      max_upsample=args.max_upsample, overwrite=args.overwrite, turns=args.turns)
    try:
        summary = build_database(cfg, progress=True)
    except (DatabaseError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc

    def human(r: dict) -> str:
        return (f"database {r['out']}: {r['tiles']} tiles ({r['skipped_nodata']} nodata positions skipped), "
                f"{r['mpp_grid']:.4f} m/px grid, features {r['features']}, index {r['index']}\n"
                f"CRS: {r['crs']}\nbuilt in {r['seconds']:.1f} s ({r['tiles_encoded_this_run']} tiles encoded with "
                f"{r['backend']}, resumed from {r['resumed_from']}); {r['disk_bytes'] / 1e6:.1f} MB on disk")

    emit(summary, args.json, human)
    return 0


def verify_db_command(args: argparse.Namespace) -> int:
    from ..log import setup_logging
    from ..types import DatabaseError
    from .store import Database

    setup_logging()
    try:
        db = Database(args.db, verify="full")
    except (DatabaseError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    result = {"db": str(db.path), "ok": True, "tiles": db.n, "model_hash": db.model_hash, **db.verified}

    def human(r: dict) -> str:
        return (f"database {r['db']}: ok, {r['files']} files ({r['bytes'] / 1e6:.1f} MB) match the SHA-256 in "
                f"the manifest; {r['tiles']} tiles; checked in {r['seconds']:.2f} s")

    emit(result, args.json, human)
    return 0
