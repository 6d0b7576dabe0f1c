"""``unifygeo sim vigor``, ``unifygeo sim drive`` and ``unifygeo bench sim``.

These hang under the ``sim`` command that :mod:`unifygeo_ros.sim.cli` creates (it exposes
its sub-subparsers as ``SIM_SUBPARSERS``), so this module must be registered after it.
"""

from __future__ import annotations

import argparse
from typing import Any


def parse_size(text: str, what: str = "size") -> tuple[int, int]:
    """``"768x384"`` -> ``(768, 384)`` (width, height)."""
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
        if w <= 0 or h <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be WIDTHxHEIGHT in pixels, e.g. 768x384; got {text!r}") from None
    return w, h


def register(sub, bench_sub) -> None:
    from unifygeo_ros.cli import add_json_flag
    from unifygeo_ros.sim import cli as sim_cli

    sim_sub = getattr(sim_cli, "SIM_SUBPARSERS", None)
    if sim_sub is None:
        raise RuntimeError("unifygeo_ros.sim.cli must be registered before unifygeo_ros.sim.export_cli "
                           "(expected unifygeo_ros.sim.cli.SIM_SUBPARSERS)")

    v = sim_sub.add_parser(
        "vigor", help="export a synthetic city in the VIGOR layout (panoramas, tiles, label files, meta.json)",
        description="Render north-aligned panoramas and true-north-up aerial tiles of a city written by "
                    "`unifygeo sim city`, on VIGOR's half-overlapping tile grid, with VIGOR's label files "
                    "under ROOT/splits/<City>/ and the metres per pixel in ROOT/<City>/meta.json.")
    v.add_argument("--city", required=True, help="city directory written by `unifygeo sim city` (holds city.json)")
    v.add_argument("--panoramas", type=int, required=True, help="number of panoramas")
    v.add_argument("--out", required=True, help="VIGOR root to write into (other cities there are kept)")
    v.add_argument("--city-name", default="SynthCity", help="the city's folder name in the VIGOR root")
    v.add_argument("--pano-size", type=lambda s: parse_size(s, "--pano-size"), default=(768, 384),
                   help="panorama WIDTHxHEIGHT (default 768x384)")
    v.add_argument("--tile-px", type=int, default=640, help="aerial tile side in pixels (default 640, as VIGOR)")
    v.add_argument("--mpp", type=float, default=None,
                   help="ground metres per pixel of a tile (default 0.1; VIGOR's cities are 0.10-0.12)")
    v.add_argument("--seed", type=int, default=0, help="sampling seed (the export is deterministic for a seed)")
    v.add_argument("--test-fraction", type=float, default=0.5, help="share of panoramas in the same-area test split")
    v.add_argument("--max-per-tile", type=int, default=2, help="at most this many positives per tile (VIGOR: 2)")
    v.add_argument("--workers", type=int, default=None,
                   help="rendering processes (default: the CPU count; the output does not depend on it)")
    add_json_flag(v)
    v.set_defaults(handler=_vigor)

    from unifygeo_ros.sim.drive_config import DriveConfig

    dflt = DriveConfig()
    d = sim_sub.add_parser(
        "drive", help="write a rosbag2 of a vehicle driving the city's roads (camera, GNSS, odometry, truth)",
        description="Simulate a drive and write a rosbag2 (MCAP or sqlite3) with the images of a panorama, "
                    "a forward pinhole camera (with its CameraInfo) or a rig of pinhole cameras (each with its "
                    "CameraInfo, its frames in /tf_static and jittered stamps), true and degraded NavSatFix, "
                    "drifting wheel odometry, the true pose in `map` and the static extrinsics; BAG.meta/ "
                    "beside it holds the orthophoto and a JSON (drive.json) with the map frame, camera, "
                    "extrinsics, topics, rates, noise models and kidnaps. Drives of any length: the images "
                    "are streamed to the bag. Topics: see unifygeo_ros/sim/drive_config.py.")
    d.add_argument("--city", required=True, help="city directory written by `unifygeo sim city`")
    d.add_argument("--duration-s", type=float, required=True,
                   help="length of the drive in seconds (any length: the route goes on round the city's roads)")
    d.add_argument("--out", required=True, help="bag directory to create (must not exist)")
    d.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default mcap)")
    d.add_argument("--image", choices=("raw", "jpeg"), default="raw",
                   help="sensor_msgs/Image rgb8 (raw) or sensor_msgs/CompressedImage (jpeg)")
    d.add_argument("--camera", choices=("panorama", "pinhole", "rig"), default="panorama",
                   help="panorama: equirectangular 360 x 180 on /camera/panorama/image_raw; pinhole: a forward-"
                        "looking camera (frame camera_front) on /camera/front/image_raw with its CameraInfo on "
                        "/camera/front/camera_info; rig: pinhole cameras at the yaws of --rig, each on "
                        "/camera/<name>/image_raw with its CameraInfo on /camera/<name>/camera_info (names front, "
                        "left, right, back for yaws 0, 90, -90, 180, else cam0, cam1, ...; with --image jpeg on "
                        "/camera/<name>/image_raw/compressed) "
                        "(default panorama)")
    d.add_argument("--rig", metavar="YAWS", default=None,
                   help="rig: the cameras' yaws in degrees relative to the vehicle's forward direction, counter-"
                        "clockwise (REP-103: left 90), comma-separated (default {}; --rig=... for a negative first "
                        "yaw)".format(",".join(f"{y:g}" for y in dflt.rig_yaws_deg)))
    d.add_argument("--rig-jitter-s", type=float, default=None, metavar="S",
                   help=f"rig: each camera's stamp is the image stamp plus a jitter uniform in [-S, S] (default "
                        f"{dflt.rig_jitter_s:g} s)")
    d.add_argument("--fov", type=float, default=None, metavar="DEG",
                   help=f"pinhole and rig: horizontal field of view in degrees, 1 to 179 (default {dflt.hfov_deg:g})")
    d.add_argument("--image-size", type=lambda s: parse_size(s, "--image-size"), default=None, metavar="WxH",
                   help="pinhole and rig: image WIDTHxHEIGHT in pixels (default {}x{})".format(*dflt.pinhole_size))
    d.add_argument("--rate-hz", type=float, default=2.0, help="image rate (default 2 Hz)")
    d.add_argument("--pano-size", type=lambda s: parse_size(s, "--pano-size"), default=None, metavar="WxH",
                   help="panorama: WIDTHxHEIGHT in pixels (default 512x256)")
    d.add_argument("--gnss-rate-hz", type=float, default=5.0, help="GNSS rate (default 5 Hz)")
    d.add_argument("--odom-rate-hz", type=float, default=20.0, help="odometry / true pose / tf rate (default 20 Hz)")
    d.add_argument("--start-time-s", type=float, default=1_700_000_000.0, help="sim clock at the first message")
    d.add_argument("--topic", action="append", default=[], metavar="KEY=NAME",
                   help="rename a topic; KEY is one of image_raw, image_compressed (panorama), pinhole_raw, "
                        "pinhole_compressed, camera_info (pinhole), rig_raw, rig_compressed, rig_camera_info (rig: a pattern with "
                        "{name}), fix_true, fix, odom, tf, pose_true, tf_static, initialpose (repeatable)")
    d.add_argument("--seed", type=int, default=0,
                   help="seed of route, speed profile, sensor noise and kidnaps (same seed, same bag)")
    d.add_argument("--kidnap-at", type=float, action="append", default=[], metavar="SECONDS",
                   help="at this time of the drive the vehicle is moved to a road position far away (at least "
                        "--kidnap-min-distance-m), with a new heading, and drives on from there; the truth and "
                        "GNSS show the jump, the odometry (/odom, /tf) does not; rounded to the nearest stamp "
                        "of the truth (a multiple of 1 / --odom-rate-hz); repeatable: one kidnap per time")
    d.add_argument("--kidnap-min-distance-m", type=float, default=dflt.kidnap_min_distance_m, metavar="M",
                   help="least distance of a kidnap's jump in metres (default %(default)g)")
    d.add_argument("--initial-pose", default=None, metavar="SIGMA_M,SIGMA_DEG",
                   help="record an operator's initial pose (RViz's 2D Pose Estimate) on /initialpose "
                        "(geometry_msgs/PoseWithCovarianceStamped in map, stamped at the first image): the vehicle's "
                        "true pose there plus Gaussian noise of these standard deviations (metres in x and y, "
                        "degrees in yaw), with that covariance (e.g. 2,10); default: none")
    g = d.add_argument_group("odometry noise", "the wheel-odometry and gyro error model (unifygeo_ros/sim/sensors.py)")
    g.add_argument("--odom-speed-noise", type=float, default=dflt.wheel_speed_noise, metavar="M/S",
                   help="white noise of the measured wheel speed, per integration step (default %(default)g m/s)")
    g.add_argument("--odom-speed-scale-error", type=float, default=dflt.wheel_scale_sigma, metavar="SIGMA",
                   help="standard deviation of the wheel-speed scale-factor error, drawn once per drive "
                        "(default %(default)g: 1 %%)")
    g.add_argument("--gyro-noise", type=float, default=dflt.gyro_noise_dps, metavar="DEG/S",
                   help="white noise of the gyro's yaw rate, per integration step (default %(default)g deg/s)")
    g.add_argument("--gyro-bias-deg-s", type=float, default=dflt.gyro_bias_sigma_dps, metavar="DEG/S",
                   help="standard deviation of the gyro's initial bias, drawn once per drive "
                        "(default %(default)g deg/s)")
    g.add_argument("--gyro-bias-walk", type=float, default=dflt.gyro_bias_walk_dps, metavar="DEG/S/SQRT(S)",
                   help="random walk of the gyro bias (default %(default)g deg/s per sqrt(s))")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(d)
    d.set_defaults(handler=_drive)

    b = bench_sub.add_parser(
        "sim", help="synthetic world speed: panorama render time, 1 km^2 city + 2,000 panoramas + VIGOR export",
        description="Targets: median 512x128 panorama <= 50 ms (dense city, >= 20 renders after warm-up); "
                    "1 km^2 city + 2,000 panoramas + its VIGOR export <= 10 min. --quick: a small city and "
                    "count, for smoke tests (its times say nothing about the targets).")
    b.add_argument("--quick", action="store_true", help="small city and counts (smoke test)")
    b.add_argument("--workers", type=int, default=None, help="export processes (default: CPU count)")
    add_json_flag(b)
    b.set_defaults(handler=_bench)


def _load_city(path: str):
    from pathlib import Path

    from unifygeo_ros.cli import CommandError
    from unifygeo_ros.sim.world import City

    p = Path(path)
    if not (p / "city.json").is_file():
        raise CommandError(f"--city {path}: expected a directory written by `unifygeo sim city` (with city.json)")
    try:
        return City.load(p)
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"--city {path}: could not load the city ({exc})") from None


def _vigor(args) -> int:
    import os

    from unifygeo_ros.cli import CommandError
    from unifygeo_ros.sim.vigor_export import DEFAULT_MPP, VigorExportConfig, export_vigor

    try:
        cfg = VigorExportConfig(
            n_panoramas=args.panoramas, city_name=args.city_name, pano_size=tuple(args.pano_size),
            tile_px=args.tile_px, mpp=DEFAULT_MPP if args.mpp is None else args.mpp, seed=args.seed,
            test_fraction=args.test_fraction, max_per_tile=args.max_per_tile,
            workers=args.workers if args.workers is not None else (os.cpu_count() or 1))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return _run_on_city(export_vigor, args, cfg)


def _run_on_city(export, args, cfg, progress: bool = True) -> int:
    """Load ``--city``, run ``export(city, args.out, cfg, ...)`` and print its report."""
    from unifygeo_ros.cli import CommandError, emit

    city = _load_city(args.city)
    try:
        result = export(city, args.out, cfg, city_dir=args.city, progress=progress)
    except (ValueError, FileExistsError) as exc:
        raise CommandError(str(exc)) from None
    emit(result, args.json)
    return 0


def _drive(args) -> int:
    from dataclasses import fields

    from unifygeo_ros.cli import CommandError
    from unifygeo_ros.sim.drive import DriveConfig, DriveTopics, write_drive_bag

    keys = {f.name for f in fields(DriveTopics)}
    renames = {}
    for item in args.topic:
        key, sep, name = item.partition("=")
        if not sep or key not in keys or not name.startswith("/"):
            raise CommandError(f"--topic {item!r}: expected KEY=/name with KEY one of {', '.join(sorted(keys))}")
        renames[key] = name
    camera: dict[str, Any] = {}
    rig_flags = [flag for flag, v in (("--rig", args.rig), ("--rig-jitter-s", args.rig_jitter_s)) if v is not None]
    if rig_flags and args.camera != "rig":
        raise CommandError(f"{', '.join(rig_flags)}: only with --camera rig")
    if args.camera == "panorama":
        wrong = [flag for flag, v in (("--fov", args.fov), ("--image-size", args.image_size)) if v is not None]
        if wrong:
            raise CommandError(f"{', '.join(wrong)}: only with --camera pinhole or rig (the panorama's size is "
                               f"--pano-size)")
        if args.pano_size is not None:
            camera["pano_size"] = tuple(args.pano_size)
    else:
        if args.pano_size is not None:
            raise CommandError(f"--pano-size: only with --camera panorama (the {args.camera} camera's size is "
                               f"--image-size)")
        if args.rig is not None:
            try:
                camera["rig_yaws_deg"] = tuple(float(v) for v in args.rig.split(","))
            except ValueError:
                raise CommandError(f"--rig {args.rig!r}: expected the cameras' yaws in degrees, comma-separated "
                                   f"(e.g. 0,90,-90,180)") from None
        if args.rig_jitter_s is not None:
            camera["rig_jitter_s"] = args.rig_jitter_s
        if args.fov is not None:
            camera["hfov_deg"] = args.fov
        if args.image_size is not None:
            camera["pinhole_size"] = tuple(args.image_size)
    initial = None
    if args.initial_pose is not None:
        try:
            initial = tuple(float(v) for v in args.initial_pose.split(","))
        except ValueError:
            initial = ()
        if len(initial) != 2:
            raise CommandError(f"--initial-pose {args.initial_pose!r}: expected SIGMA_M,SIGMA_DEG (e.g. 2,10)")
    try:
        cfg = DriveConfig(duration_s=args.duration_s, rate_hz=args.rate_hz, camera=args.camera, **camera,
                          image=args.image, storage=args.storage, gnss_rate_hz=args.gnss_rate_hz,
                          odom_rate_hz=args.odom_rate_hz, start_time_s=args.start_time_s, seed=args.seed,
                          kidnap_at_s=tuple(args.kidnap_at), kidnap_min_distance_m=args.kidnap_min_distance_m,
                          wheel_speed_noise=args.odom_speed_noise, wheel_scale_sigma=args.odom_speed_scale_error,
                          gyro_noise_dps=args.gyro_noise, gyro_bias_sigma_dps=args.gyro_bias_deg_s,
                          gyro_bias_walk_dps=args.gyro_bias_walk, initial_pose_sigma=initial,
                          topics=DriveTopics(**renames))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return _run_on_city(write_drive_bag, args, cfg, progress=not args.no_progress)


def _bench(args) -> int:
    from unifygeo_ros.cli import CommandError, emit
    from unifygeo_ros.sim.bench import bench_sim, format_bench

    if args.workers is not None and args.workers < 1:
        raise CommandError("--workers must be >= 1")
    result = bench_sim(quick=args.quick, workers=args.workers)
    emit(result, args.json, format_bench)
    return 0
