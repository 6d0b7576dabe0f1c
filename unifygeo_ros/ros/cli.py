"""``unifygeo bench node``: the node's latency under a steady camera (needs rclpy)."""

from __future__ import annotations

import argparse

from ..cli import CommandError, add_json_flag, comma_list, emit, weights_or_shipped

MODES = ("panorama", "panorama+gnss", "pinhole")


def register(sub, bench_sub) -> None:
    b = bench_sub.add_parser(
        "node", help="latency of localize_node under a steady camera: image stamp to published pose, and the "
                     "node's own work per frame, per camera mode (needs rclpy)")
    b.add_argument("--db", help="database (default: a 300 m synthetic city built with the shipped model)")
    b.add_argument("--weights", help="checkpoint for the default database, or a shipped model: small (the default) or small-fov")
    b.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    b.add_argument("--rate-hz", type=float, default=10.0, help="camera rate (default 10)")
    b.add_argument("--seconds", type=float, default=20.0, help="camera time per mode (default 20)")
    b.add_argument("--width", type=int, default=2048, help="panorama width in pixels (2:1; default 2048)")
    b.add_argument("--backend", default="onnxruntime", help="the node's backend (default onnxruntime)")
    b.add_argument("--out", default="out/bench_node", help="work folder (default out/bench_node)")
    add_json_flag(b)
    b.set_defaults(handler=bench_node_command)


def bench_node_command(args: argparse.Namespace) -> int:
    from ..log import setup_logging

    setup_logging()
    modes = comma_list(args.modes, "--modes", allowed=MODES)
    if not modes:
        raise CommandError(f"--modes: expected some of {', '.join(MODES)}, got {args.modes!r}")
    if not args.rate_hz > 0 or not args.seconds > 0 or args.width < 256 or args.width % 2:
        raise CommandError("--rate-hz and --seconds: expected > 0; --width: an even number >= 256")
    try:
        from .bench import bench_node, format_report
    except ImportError as exc:
        raise CommandError(f"rclpy is not installed ({exc}): `make test` installs the ROS 2 Jazzy wheels; "
                           f"elsewhere source a ROS 2 installation") from None
    try:
        report = bench_node(args.db, None if args.db else weights_or_shipped(args.weights), modes, args.rate_hz,
                            args.seconds, args.width, args.backend, args.out)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc
    emit(report, args.json, format_report)
    return 0
