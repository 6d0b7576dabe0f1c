"""Subcommands of the data subsystem (see unifygeo_ros/cli.py for the pattern)."""

from __future__ import annotations


def register(sub, bench_sub) -> None:
    """Add this subsystem's subcommands to ``sub`` and its benchmarks to ``bench_sub``."""
    from unifygeo_ros.cli import add_json_flag

    p = sub.add_parser(
        "vigor-check",
        help="validate a VIGOR copy: counts, missing images, label offsets vs the names' GPS",
        description="Validate a VIGOR copy (real download, label excerpt or synthetic export). Exit "
                    "status 1 when a city's median label-offset error exceeds --max-median-px "
                    "(or its max exceeds --max-max-px).",
    )
    p.add_argument("--root", required=True, help="VIGOR root (holds splits/ or splits__corrected/)")
    p.add_argument("--cities", default=None, help="comma-separated cities (default: all under the label folder)")
    p.add_argument("--labels", choices=("auto", "corrected", "original"), default="auto",
                   help="label folder: splits__corrected/ (auto when present) or splits/")
    p.add_argument("--max-median-px", type=float, default=5.0, help="fail above this median error (px)")
    p.add_argument("--max-max-px", type=float, default=None, help="also fail above this max error (px)")
    p.add_argument("--require-images", action="store_true", help="also fail when images are missing on disk")
    add_json_flag(p)
    p.set_defaults(handler=_vigor_check)


def _vigor_check(args) -> int:
    from unifygeo_ros.cli import CommandError, emit
    from unifygeo_ros.data.vigor import VigorFormatError
    from unifygeo_ros.data.vigor_check import check_vigor, format_report

    if args.max_median_px <= 0 or (args.max_max_px is not None and args.max_max_px <= 0):
        raise CommandError("--max-median-px and --max-max-px must be positive pixel counts")
    try:
        result = check_vigor(args.root, args.cities, args.labels, args.max_median_px, args.max_max_px,
                             args.require_images)
    except VigorFormatError as exc:
        raise CommandError(str(exc)) from None
    emit(result, args.json, format_report)
    return 0 if result["passed"] else 1
