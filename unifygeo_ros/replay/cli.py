"""``unifygeo replay``: a rosbag2 through the node's localization path, scored against truth."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from unifygeo_ros.cli import CommandError, add_json_flag, emit
from unifygeo_ros.options import add_cli_options


def register(sub, bench_sub) -> None:
    p = sub.add_parser(
        "replay", help="localize the images of a rosbag2 with the ROS node's code and score it against truth",
        description="Reads a rosbag2 (MCAP or sqlite3) with rosbags, runs the ROS node's localization path "
                    "(unifygeo_ros.ros_core, the same code as localize_node) on its images, compares with a truth "
                    "topic interpolated to each image stamp, and writes a report and an output bag.")
    p.add_argument("--bag", required=True, help="rosbag2 folder (e.g. from `unifygeo sim drive`)")
    p.add_argument("--db", required=True, help="database folder (`unifygeo build-db`)")
    p.add_argument("--params", help="ROS 2 parameter file for the node (e.g. config/localize.yaml); options "
                                    "below override it")
    p.add_argument("--image-topic", help="sensor_msgs/Image or CompressedImage topic (default: "
                                         "/camera/panorama/image_raw, else .../compressed; a camera rig's topics "
                                         "are rig.image_topics or rig.compressed_image_topics of --params)")
    p.add_argument("--truth-topic", default="/ground_truth/pose",
                   help="base_link truth in the map frame: PoseStamped, PoseWithCovarianceStamped or Odometry "
                        "(default: %(default)s; frames are not scored without it)")
    p.add_argument("--gnss-topic", help="NavSatFix topic to use as the position prior (default: none)")
    p.add_argument("--odom-topic", help="Odometry topic for the heading prior (with --odom-heading-mode)")
    add_cli_options(p, from_parameters=True)
    p.add_argument("--map-origin", help="LAT,LON of the map frame's origin when the bag has no drive.json "
                                        "(default: the database's frame)")
    p.add_argument("--ortho", help="orthophoto for the trajectory picture (default: <bag>.meta/orthophoto.tif)")
    p.add_argument("--out-bag", help="write our poses, fixes and results (and the truth) to this new bag")
    p.add_argument("--out-storage", choices=("mcap", "sqlite3"), default="mcap",
                   help="storage of --out-bag (default mcap)")
    p.add_argument("--report", help="folder for report.json, frames.csv, trajectory.png and error.png")
    p.add_argument("--max-frames", type=int, help="stop after this many images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--track", action="store_true",
                   help="run the tracking filter (odometry + every frame's evidence) through the node's code: the "
                        "report scores its published poses too (tracking.* in --params configures it)")
    p.add_argument("--track-odom-topic", help="the vehicle's nav_msgs/Odometry for the filter (default: the "
                                              "parameter file's tracking.odom_topic, else /odom; '' for none; "
                                              "tracking.odom_source tf reads odom -> base_link on /tf instead)")
    add_json_flag(p)
    p.set_defaults(handler=_cmd_replay)


def _config(args):
    from unifygeo_ros.options import OPTIONS
    from unifygeo_ros.ros_core.config import ConfigError, NodeConfig, params_from_yaml

    values = {}
    if args.params:
        try:
            values.update(params_from_yaml(args.params))
        except ConfigError as exc:
            raise CommandError(f"--params: {exc}") from None
    values["database"] = args.db
    if getattr(args, "track", False):
        values["tracking.enabled"] = True
    if getattr(args, "track_odom_topic", None) is not None:
        values["tracking.odom_topic"] = args.track_odom_topic
    for o in OPTIONS:
        v = getattr(args, o.attr, None) if o.cli else None
        if v is not None:
            values[o.name] = v
    try:
        return NodeConfig.from_params(values)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def _parse_latlon(text):
    if text is None:
        return None
    from unifygeo_ros.sim.cli import parse_origin

    return parse_origin(text)


def _cmd_replay(args: argparse.Namespace) -> int:
    from unifygeo_ros.replay.core import ReplayError, ReplayOptions, run_replay
    from unifygeo_ros.replay.report import frame_rows, summarize, write_report
    from unifygeo_ros.types import DatabaseError

    t0 = time.perf_counter()
    if args.max_frames is not None and args.max_frames < 1:
        raise CommandError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.odom_heading_mode not in (None, "off") and not args.odom_topic:
        raise CommandError("--odom-heading-mode needs --odom-topic (an Odometry topic of the bag)")
    if not Path(args.db).is_dir():
        raise CommandError(f"--db {args.db}: not a folder; expected a database built by `unifygeo build-db`")
    cfg = _config(args)
    opts = ReplayOptions(bag=Path(args.bag), image_topic=args.image_topic, truth_topic=args.truth_topic,
                         gnss_topic=args.gnss_topic, odom_topic=args.odom_topic,
                         out_bag=Path(args.out_bag) if args.out_bag else None, out_storage=args.out_storage,
                         map_origin=_parse_latlon(args.map_origin), max_frames=args.max_frames,
                         progress=not args.no_progress, track=cfg.tracking_enabled)
    try:
        run = run_replay(cfg, opts)
    except (ReplayError, DatabaseError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    rows = frame_rows(run)
    summary = summarize(run, rows)
    track_rows = None
    if run.tracking:
        from unifygeo_ros.replay.report import tracking_summary

        track_rows = frame_rows(run, filtered=True)
        summary["tracking"] = {**tracking_summary(run, track_rows), "odom_topic": run.odom_topic,
                               "odom_source": (f"tf {cfg.odom_frame} -> {cfg.base_frame}"
                                               if cfg.tracking_odom_source == "tf" else "topic")}
    result = {
        "bag": str(args.bag), "db": str(args.db), "image_topic": run.image_topic, "truth_topic": run.truth_topic,
        "backend": run.startup.get("backend"), "map_frame": run.map_frame_source,
        "extrinsic": {"source": run.extrinsic_source, "xyz": [run.extrinsic.x, run.extrinsic.y, run.extrinsic.z],
                      "yaw_deg": round(float(__import__("math").degrees(run.extrinsic.yaw)), 6)},
        "priors": {"gnss_topic": args.gnss_topic, "odom_topic": args.odom_topic,
                   "odom_heading_mode": cfg.odom_heading_mode},
        **summary,
        **({"rig": run.rig} if run.rig is not None else {}),
        "out_bag": run.out_bag,
        "seconds": {**run.seconds, "startup": run.startup, "command": round(time.perf_counter() - t0, 3)},
    }
    if args.report:
        ortho = Path(args.ortho) if args.ortho else None
        if ortho is None and run.meta and run.meta.get("orthophoto", {}).get("path"):
            ortho = Path(run.meta["orthophoto"]["path"])
        if ortho is not None and not ortho.is_file():
            raise CommandError(f"--ortho {ortho}: no such file (expected a GeoTIFF)")
        result["report"] = write_report(run, summary, rows, Path(args.report), ortho, track_rows)
    emit(result, args.json, _human)
    return 0


def _human(r: dict) -> str:
    e, rec, lat = r["error_m"], r["recall"], r["latency_ms"].get("total", {})

    def f(v, fmt="{:.2f}"):
        return "n/a" if v is None else fmt.format(v)

    lines = [
        f"replayed {r['frames']} frames of {r['image_topic']} ({r['duration_s']:.1f} s) with {r['backend']}",
        f"availability {f(r['availability'], '{:.1%}')} ({r['published']} poses; failures {r['failures'] or 'none'})",
        f"error (m): mean {f(e['mean'])}, median {f(e['median'])}, p95 {f(e['p95'])}, max {f(e['max'])}",
        f"R@1m {f(rec['R@1m'], '{:.1%}')}, R@5m {f(rec['R@5m'], '{:.1%}')}, R@10m {f(rec['R@10m'], '{:.1%}')} "
        f"(all frames)",
        f"yaw error (deg): median {f(r['yaw_error_deg']['median'])}, p95 {f(r['yaw_error_deg']['p95'])}",
        f"inside the 95 % ellipse: {f(r['covariance']['inside_95_ellipse'], '{:.1%}')}",
        f"latency (ms): median {f(lat.get('median'), '{:.1f}')}, p95 {f(lat.get('p95'), '{:.1f}')}",
    ]
    if r.get("rig"):
        g = r["rig"]
        lines.append(f"camera rig: {g['sets']} sets of {len(g['topics'])} cameras, frames dropped "
                     f"{'/'.join(map(str, g['dropped']))}, widest set {g['max_spread_ms']:.1f} ms")
    if r.get("tracking"):
        t = r["tracking"]
        lines.append(f"tracking: first fix after {t['first_fix_frames']} frames, median error "
                     f"{f(t['median_error_m'])} m, R@5m {f(t['recall_5m'], '{:.1%}')}, inside the 95 % ellipse "
                     f"{f(t['ellipse95_coverage'], '{:.1%}')}, published > 20 m off: {t['published_over_20m']}, "
                     f"recovery {t['recovery_frames']}, {f(t['ms_per_frame_median'], '{:.0f}')} ms per frame")
        seeds = t.get("initial_poses") or {}
        if seeds.get("applied") or seeds.get("ignored"):
            lines.append(f"initial poses ({seeds['topic']}): {seeds['applied']} applied (before frames "
                         f"{seeds['at_frames']}; first fix {seeds['first_fix_frames_after']} frames after the first), "
                         f"{seeds['ignored']} ignored" + "".join(f"; {r}" for r in seeds["ignored_reasons"]))
    if r.get("report"):
        lines.append(f"report: {r['report']['report']}")
    if r.get("out_bag"):
        lines.append(f"output bag: {r['out_bag']}")
    return "\n".join(lines)
