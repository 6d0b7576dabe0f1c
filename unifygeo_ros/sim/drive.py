"""A simulated drive through a synthetic city, written as a rosbag2 (``unifygeo sim drive``).

:func:`write_drive_bag` drives a car along the city's roads, simulates its sensors and
writes the rosbag2 (panoramas, a forward pinhole camera with its ``CameraInfo``, or a rig of
pinhole cameras, each with its ``CameraInfo`` and jittered stamps, raw or JPEG; true and
degraded NavSatFix, drifting wheel odometry, the true pose in ``map`` and the static
extrinsics) and, beside it in ``<bag>.meta/`` (:func:`drive_metadata_dir`), the
orthophoto and ``drive.json``. With kidnap times the true vehicle is moved, at each, to a
far-away road position with a new heading; the odometry (``/odom``, ``/tf``) does not see
the jump, the truth and GNSS do. One module per part:

* :mod:`unifygeo_ros.sim.drive_config`: :class:`DriveConfig`, :class:`DriveTopics`,
  :class:`DriveFrames`; the bag's frames and topics.
* :mod:`unifygeo_ros.sim.trajectory`: the route and the speed profile (:func:`plan_trajectory`),
  routes of any length (:func:`route_for`), kidnaps (:func:`add_kidnaps`).
* :mod:`unifygeo_ros.sim.sensors`: degraded GNSS and wheel odometry with a gyro.
* :mod:`unifygeo_ros.sim.bag_writer`: the clock, the messages and the rosbag2 writer.

Their public names are importable from here as well.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from unifygeo_ros.conventions import yaw_to_quaternion
from unifygeo_ros.sim.bag_writer import OPTICAL_ROTATION_XYZW, DriveSignals, initial_pose, stamps, write_messages
from unifygeo_ros.sim.drive_config import DriveConfig, DriveFrames, DriveTopics  # noqa: F401
from unifygeo_ros.sim.sensors import (  # noqa: F401
    GnssErrors,
    Odometry,
    simulate_gnss_errors,
    simulate_odometry,
)
from unifygeo_ros.sim.trajectory import (  # noqa: F401
    Kidnap,
    KidnappedTrajectory,
    Trajectory,
    add_kidnaps,
    plan_trajectory,
    route_for,
)

_DRIVE_SEED = 0x64726976     # the stream of the route, the speed profile and the sensor noise
_KIDNAP_SEED = 0x6b69646e    # the stream of the kidnaps' routes (the others do not depend on the kidnaps)


def plan_drive(city, cfg: DriveConfig) -> tuple[Trajectory | KidnappedTrajectory, np.random.Generator]:
    """The true motion of the drive ``cfg`` (with its kidnaps) and the random generator, in the
    state the sensor models continue from. Deterministic for ``cfg.seed``; a drive with
    kidnaps has the same route up to the first kidnap and the same sensor noise as without."""
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), _DRIVE_SEED]))
    first = route_for(city, cfg.duration_s, cfg, rng)
    if not cfg.kidnap_at_s:
        return first, rng
    krng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), _KIDNAP_SEED]))
    return add_kidnaps(city, first, cfg, krng), rng


def _default_renderer(cfg: DriveConfig) -> Callable:
    from unifygeo_ros.sim.render import render_panorama, render_pinhole

    if cfg.camera == "panorama":
        return render_panorama

    def render(city, xy, yaw_deg, width, height, camera_height_m=2.2):
        return render_pinhole(city, xy, yaw_deg, cfg.hfov_deg, width, height, camera_height_m=camera_height_m)

    return render


def drive_metadata_dir(bag: Path) -> Path:
    """Where the metadata of a bag goes: ``<bag>.meta/`` beside the bag directory."""
    bag = Path(bag)
    return bag.with_name(bag.name + ".meta")


def write_drive_bag(city, out: str | Path, cfg: DriveConfig, city_dir: str | Path | None = None,
                    progress: bool = True,
                    render: Callable | None = None) -> dict:
    """Simulate a drive through ``city`` and write it to the rosbag2 directory ``out``.

    Beside it, in ``<out>.meta/``: ``orthophoto.tif`` (a copy of ``city_dir/orthophoto.tif``
    when present, else rendered) and ``drive.json`` (map frame, camera model and
    intrinsics, extrinsics, topics, rates, noise models, GNSS event log, kidnaps, odometry
    drift). Returns a summary dict. ``render(city, xy, yaw_deg, width, height,
    camera_height_m)`` defaults to :func:`unifygeo_ros.sim.render.render_panorama` or, for
    ``cfg.camera == "pinhole"`` and each camera of ``"rig"``,
    :func:`unifygeo_ros.sim.render.render_pinhole` with ``cfg.hfov_deg``. The images are
    rendered and written one at a time (streamed).
    """
    t_wall = time.perf_counter()
    if render is None:
        render = _default_renderer(cfg)

    out = Path(out)
    meta_dir = drive_metadata_dir(out)
    if out.exists():
        raise FileExistsError(f"{out} exists already: expected a new path for the bag directory")
    if meta_dir.exists():
        raise FileExistsError(f"{meta_dir} exists already: expected a new path beside the bag")
    out.parent.mkdir(parents=True, exist_ok=True)

    traj, rng = plan_drive(city, cfg)
    odo = simulate_odometry(traj, cfg.duration_s, cfg, rng)
    start_ns = int(round(cfg.start_time_s * 1e9))
    t_img = stamps(start_ns, cfg.rate_hz, cfg.duration_s)
    t_gnss = stamps(start_ns, cfg.gnss_rate_hz, cfg.duration_s)
    t_odom = stamps(start_ns, cfg.odom_rate_hz, cfg.duration_s)
    signals = DriveSignals(traj, odo, start_ns)
    gerr = simulate_gnss_errors(signals.sec(t_gnss), cfg, rng)
    frame = city.frame
    fr, tp = cfg.frames, cfg.topics

    first_pose = signals.truth(start_ns)
    bag = write_messages(out, city, cfg, signals, gerr, t_img, t_gnss, t_odom, render, progress)
    topic_types, image_topic, counts, fix_err = bag.topic_types, bag.image_topic, bag.counts, bag.fix_err

    # ---- metadata beside the bag ------------------------------------------------------
    meta_dir.mkdir(parents=True)
    ortho_src = Path(city_dir) / "orthophoto.tif" if city_dir is not None else None
    ortho = meta_dir / "orthophoto.tif"
    if ortho_src is not None and ortho_src.is_file():
        shutil.copyfile(ortho_src, ortho)
        ortho_how = f"copied from {ortho_src}"
    else:
        from unifygeo_ros.sim.render import write_orthophoto_geotiff

        write_orthophoto_geotiff(city, ortho, 0.25)
        ortho_how = "rendered at 0.25 m/px"
    lat0, lon0 = frame.to_latlon(0.0, 0.0)
    end = signals.odom(int(t_odom[-1]))
    p_end = signals.truth(int(t_odom[-1]))
    # the true map->odom transform: odom = base_link at the first stamp; after a kidnap, the
    # transform that puts the odometry's pose at the kidnap onto the vehicle's new pose
    origin = (first_pose["x"], first_pose["y"], first_pose["yaw"])
    kidnaps = []
    for kid in getattr(traj, "kidnaps", []):
        k_ns = start_ns + int(round(kid.t_s * 1e9))
        o = signals.odom(k_ns)
        after = _map_to_odom(kid.after, o)
        kidnaps.append({
            "t_s": kid.t_s, "stamp_ns": k_ns,
            "from": {"x": kid.before[0], "y": kid.before[1], "yaw_rad": kid.before[2]},
            "to": {"x": kid.after[0], "y": kid.after[1], "yaw_rad": kid.after[2]},
            "distance_m": kid.distance_m,
            "odom_origin_in_map_after": {"x": after[0], "y": after[1], "yaw_rad": after[2]},
        })
        origin = after
    # odom pose mapped into map with the true map->odom transform (since the last kidnap), vs the truth
    c0, s0 = math.cos(origin[2]), math.sin(origin[2])
    ox = origin[0] + c0 * end["x"] - s0 * end["y"]
    oy = origin[1] + s0 * end["x"] + c0 * end["y"]
    drift_m = math.hypot(ox - p_end["x"], oy - p_end["y"])
    distance = traj.distance_at(cfg.duration_s)
    speeds = traj.at(np.arange(0.0, cfg.duration_s + 1e-9, 1.0 / cfg.sim_rate_hz))["speed"]
    seed = initial_pose(cfg, signals.truth(int(t_img[0]))) if len(t_img) else None
    initial = None
    if seed is not None:
        truth0 = signals.truth(int(t_img[0]))
        dyaw = math.atan2(math.sin(seed[2] - truth0["yaw"]), math.cos(seed[2] - truth0["yaw"]))
        initial = {"topic": tp.initialpose, "frame_id": fr.map, "stamp_ns": int(t_img[0]),
                   "sigma_m": cfg.initial_pose_sigma[0], "sigma_deg": cfg.initial_pose_sigma[1],
                   "pose": {"x": seed[0], "y": seed[1], "yaw_rad": seed[2]},
                   "truth": {"x": truth0["x"], "y": truth0["y"], "yaw_rad": truth0["yaw"]},
                   "error_m": math.hypot(seed[0] - truth0["x"], seed[1] - truth0["y"]),
                   "yaw_error_deg": math.degrees(dyaw),
                   "note": "an operator's initial pose (RViz 2D Pose Estimate): base_link's true pose at the first "
                           "image plus Gaussian noise of sigma_m (x, y) and sigma_deg (yaw), with that diagonal "
                           "covariance, recorded just before the first image"}
    rates = {image_topic: cfg.rate_hz, tp.fix_true: cfg.gnss_rate_hz, tp.fix: cfg.gnss_rate_hz,
             tp.odom: cfg.odom_rate_hz, tp.tf: cfg.odom_rate_hz, tp.pose_true: cfg.odom_rate_hz, tp.tf_static: None,
             tp.camera_info: cfg.rate_hz}
    if initial is not None:
        rates[tp.initialpose] = None
    for rc in cfg.rig_cameras():
        rates[rc.image_topic] = rates[rc.camera_info_topic] = cfg.rate_hz
    try:
        epsg = frame.crs.to_epsg()
    except Exception:  # pragma: no cover
        epsg = None
    meta = {
        "format": "unifygeo-drive/1",
        "bag": str(out),
        "storage": cfg.storage,
        "image": cfg.image,
        "start_time_ns": start_ns,
        "duration_s": cfg.duration_s,
        "seed": cfg.seed,
        "map_frame": {
            "frame_id": fr.map,
            "description": "the city's local UTM-grid frame: x grid east, y grid north (m) from the origin "
                           "(E0, N0) in the CRS; z up, z = 0 at ellipsoidal altitude ground_altitude_m; yaw "
                           "is ENU yaw from GRID east (true bearing = grid bearing + convergence)",
            "crs_wkt": frame.crs_wkt,
            "epsg": epsg,
            "origin_e": frame.origin_e,
            "origin_n": frame.origin_n,
            "origin_lat": float(lat0),
            "origin_lon": float(lon0),
            "ground_altitude_m": cfg.ground_altitude_m,
            "convergence_deg_at_origin": frame.convergence_deg(0.0, 0.0),
        },
        "odom_origin_in_map": {"x": first_pose["x"], "y": first_pose["y"], "yaw_rad": first_pose["yaw"],
                               "note": "true map->odom transform (odom = base_link at the first stamp)"},
        "frames": _frames_meta(cfg),
        "camera": _camera_meta(cfg, image_topic),
        "gnss_antenna": {"frame_id": fr.gnss, "parent": fr.base_link, "translation_xyz_m": list(cfg.gnss_xyz)},
        "topics": {t: {"type": topic_types[t], "rate_hz": rates[t], "count": counts[t]} for t in topic_types},
        "tf_static_qos": "reliable, transient_local, keep_last 1 (recorded as the connection's offered QoS)",
        "orthophoto": {"path": str(ortho), "source": ortho_how},
        "city": {"seed": getattr(city, "seed", None), "size_m": getattr(city, "size_m", None),
                 "style": _style_name(city), "dir": str(city_dir) if city_dir is not None else None},
        "gnss_model": {
            "sigma_range_m": list(cfg.gnss_sigma_range), "vertical_factor": cfg.gnss_vertical_factor,
            "correlation_s": cfg.gnss_correlation_s,
            "outages": [{"start_s": a, "end_s": b, "kind": k} for a, b, k in gerr.outages],
            "multipath": [{"start_s": a, "end_s": b, "jump_m": j} for a, b, j in gerr.multipath_events],
            "covariance": "diagonal, honest: per-axis variance of the applied error model (incl. jump^2/2 "
                          "during multipath); NO_FIX messages have NaN position and covariance type UNKNOWN; "
                          "'drop' outages publish nothing",
            "horizontal_error_m": {"median": float(np.median(fix_err)) if fix_err else None,
                                   "max": float(np.max(fix_err)) if fix_err else None},
        },
        "odometry_model": {
            "wheel_speed_noise_mps": cfg.wheel_speed_noise, "wheel_scale_sigma": cfg.wheel_scale_sigma,
            "wheel_scale_error": odo.scale,
            "gyro_noise_dps": cfg.gyro_noise_dps, "gyro_bias_sigma_dps": cfg.gyro_bias_sigma_dps,
            "gyro_bias_initial_dps": float(odo.bias_dps[0]),
            "gyro_bias_walk_dps_per_sqrt_s": cfg.gyro_bias_walk_dps, "integration_hz": cfg.sim_rate_hz,
            "final_drift_m": drift_m, "final_drift_since_s": kidnaps[-1]["t_s"] if kidnaps else 0.0,
            "distance_m": distance,
        },
        "kidnaps": kidnaps,
        "initial_pose": initial,
        "kidnap_model": {
            "min_distance_m": cfg.kidnap_min_distance_m,
            "note": "at each kidnap the true vehicle is moved to another road position (another route of the "
                    "road graph, entered within its first 60 s) at least min_distance_m away, with that "
                    "road's heading; the truth and both GNSS topics jump, the odometry (/odom, /tf "
                    "odom->base_link) integrates the wheel speed and gyro only and does not; the true "
                    "map->odom transform after a kidnap is odom_origin_in_map_after",
        },
        "speed_mps": {"min": float(speeds.min()), "max": float(speeds.max()), "mean": distance / cfg.duration_s},
        "config": cfg.to_json(),
    }
    (meta_dir / "drive.json").write_text(json.dumps(meta, indent=2, default=_json_default))
    return {
        "bag": str(out),
        "metadata": str(meta_dir / "drive.json"),
        "orthophoto": str(ortho),
        "storage": cfg.storage,
        "camera": cfg.camera,
        "image_topic": image_topic,
        **({"image_topics": [rc.image_topic for rc in cfg.rig_cameras()]} if cfg.camera == "rig" else {}),
        "duration_s": cfg.duration_s,
        "distance_m": round(distance, 2),
        "messages": counts,
        "gnss_outages": len(gerr.outages),
        "gnss_multipath_events": len(gerr.multipath_events),
        "odometry_final_drift_m": round(drift_m, 3),
        "kidnaps": [{"t_s": k["t_s"], "distance_m": round(k["distance_m"], 2)} for k in kidnaps],
        **({"initial_pose": {"error_m": round(initial["error_m"], 3),
                             "yaw_error_deg": round(initial["yaw_error_deg"], 3)}} if initial else {}),
        "seconds": round(time.perf_counter() - t_wall, 3),
    }


def _map_to_odom(pose, odom: dict) -> tuple[float, float, float]:
    """The map->odom transform (x, y, yaw) that puts the odometry pose ``odom`` onto ``pose``
    (x, y, yaw in map)."""
    yaw = math.atan2(math.sin(pose[2] - odom["yaw"]), math.cos(pose[2] - odom["yaw"]))
    c, s = math.cos(yaw), math.sin(yaw)
    return pose[0] - (c * odom["x"] - s * odom["y"]), pose[1] - (s * odom["x"] + c * odom["y"]), yaw


def _frames_meta(cfg: DriveConfig) -> dict:
    """The frame names of the bag (those of the other cameras left out; a rig's, one per camera)."""
    unused = {"panorama": ("pinhole", "pinhole_optical", "rig", "rig_optical"),
              "pinhole": ("camera", "rig", "rig_optical"),
              "rig": ("camera", "pinhole", "pinhole_optical", "rig", "rig_optical")}[cfg.camera]
    out = {k: v for k, v in asdict(cfg.frames).items() if k not in unused}
    if cfg.camera == "rig":
        out["rig"] = [rc.frame for rc in cfg.rig_cameras()]
        out["rig_optical"] = [rc.optical_frame for rc in cfg.rig_cameras()]
    return out


def _camera_meta(cfg: DriveConfig, image_topic: str) -> dict:
    """The camera's entry in drive.json: extrinsic, model, intrinsics, topics, and the node's
    parameters that read its images (``node_parameters``, names of :mod:`unifygeo_ros.options`)."""
    fr, tp = cfg.frames, cfg.topics
    W, H = cfg.image_size
    topic_param = "image_topic" if cfg.image == "raw" else "compressed_image_topic"
    if cfg.camera == "rig":
        return _rig_meta(cfg)
    cam = {
        "frame_id": cfg.camera_frame, "parent": fr.base_link, "translation_xyz_m": list(cfg.camera_xyz),
        "rotation_xyzw": [0.0, 0.0, 0.0, 1.0],
        "model": cfg.camera,
        "width": W, "height": H,
        "image_topic": image_topic,
    }
    if cfg.camera == "panorama":
        cam.update({
            "description": "equirectangular panorama, full sphere",
            "hfov_deg": 360.0, "vfov_deg": 180.0,
            "convention": "forward (camera x axis = vehicle heading) at the centre column, bearing grows to the "
                          "right, row 0 = zenith, horizon at H/2 (unifygeo_ros.conventions); not north-aligned",
            "node_parameters": {"camera.model": "panorama", topic_param: image_topic, "camera_frame": fr.camera},
        })
        return cam
    k = cfg.pinhole_k()
    cam.update({
        "description": "ideal forward-looking pinhole: square pixels, principal point at the image centre, "
                       "no distortion, no roll, no pitch",
        "hfov_deg": cfg.hfov_deg, "vfov_deg": math.degrees(2.0 * math.atan(0.5 * H / k[0])), "pitch_deg": 0.0,
        "camera_info_topic": tp.camera_info,
        "K": k, "distortion_model": "plumb_bob", "D": [0.0] * 5,
        "optical_frame_id": fr.pinhole_optical, "optical_rotation_xyzw": list(OPTICAL_ROTATION_XYZW),
        "convention": f"{cfg.camera_frame}: x forward (the optical axis), y left, z up, as base_link; K projects "
                      f"points of {fr.pinhole_optical} (z forward, x right, y down; its child in /tf_static); "
                      "the centre of pixel (row r, column c) is at u = c, v = r",
        "node_parameters": {"camera.model": "pinhole", "camera.hfov_deg": cfg.hfov_deg, "camera.pitch_deg": 0.0,
                            topic_param: image_topic, "camera_info_topic": tp.camera_info,
                            "camera_frame": cfg.camera_frame},
    })
    return cam


def _rig_meta(cfg: DriveConfig) -> dict:
    """The camera entry of a rig drive: the shared model and intrinsics, each camera's yaw,
    frames and topics, and the node's rig parameters (``node_parameters``)."""
    fr = cfg.frames
    W, H = cfg.image_size
    k = cfg.pinhole_k()
    cams = cfg.rig_cameras()
    return {
        "model": "rig",
        "description": "ideal pinhole cameras at one place, each turned by its yaw about base_link's z axis: "
                       "square pixels, principal point at the image centre, no distortion, no roll, no pitch",
        "parent": fr.base_link, "translation_xyz_m": list(cfg.camera_xyz),
        "width": W, "height": H, "hfov_deg": cfg.hfov_deg, "vfov_deg": math.degrees(2.0 * math.atan(0.5 * H / k[0])),
        "pitch_deg": 0.0, "K": k, "distortion_model": "plumb_bob", "D": [0.0] * 5,
        "optical_rotation_xyzw": list(OPTICAL_ROTATION_XYZW),
        "stamp_jitter_s": cfg.rig_jitter_s,
        "cameras": [{"name": rc.name, "yaw_deg": rc.yaw_deg, "frame_id": rc.optical_frame, "body_frame_id": rc.frame,
                     "rotation_xyzw": list(yaw_to_quaternion(math.radians(rc.yaw_deg))),
                     "image_topic": rc.image_topic, "camera_info_topic": rc.camera_info_topic} for rc in cams],
        "image_topic": cams[0].image_topic,
        "convention": "camera_<name>: x forward (the optical axis), y left, z up, turned by yaw_deg "
                      "(counter-clockwise, REP-103) from base_link; its images and CameraInfo carry camera_<name>_"
                      "optical (z forward, x right, y down; its child in /tf_static), whose points K projects; each "
                      "camera's frames are stamped with the image stamp plus its own jitter (uniform within "
                      "stamp_jitter_s) and rendered at that stamp",
        "node_parameters": {"camera.model": "pinhole", "camera.hfov_deg": cfg.hfov_deg,
                            "camera_extrinsic.xyz": list(cfg.camera_xyz),
                            ("rig.image_topics" if cfg.image == "raw" else "rig.compressed_image_topics"):
                                [rc.image_topic for rc in cams],
                            "rig.camera_info_topics": [rc.camera_info_topic for rc in cams],
                            "rig.yaws_deg": [rc.yaw_deg for rc in cams], "rig.frame_source": "tf"},
    }


def _style_name(city):
    style = getattr(city, "style", None)
    return getattr(style, "name", None) if style is not None and not isinstance(style, str) else style


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
