"""The node's latency under a steady camera (``unifygeo bench node``).

For each camera mode, ``localize_node`` runs in its own process on a database; this process
publishes frames at a fixed rate with rclpy's default QoS, stamped with the wall clock at
publication, and receives the node's poses and diagnostics. Reported per mode: frames sent,
received and localized, the latency from the image stamp to the pose's arrival (median, 90th
percentile; the node works on the newest frame, so this is the inference time plus at most
one frame period of waiting), and the node's own work per frame (``node_overhead_ms_median``
of its diagnostics: decoding, copies, conversions and message building, not the localizer).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PINHOLE_FOV = 90.0
ORIGIN = (48.137, 11.575)
CITY_SEED = 3001          # held out from training and calibration
CITY_SIZE_M = 300.0


def _area(weights, out: Path) -> tuple[Path, object]:
    """A synthetic city and its database (built once in ``out``)."""
    from ..database.build import BuildConfig, build_database
    from ..sim.render import write_orthophoto_geotiff
    from ..sim.world import City, generate_city

    out.mkdir(parents=True, exist_ok=True)
    city_dir, db = out / "city", out / "db"
    if (city_dir / "city.json").is_file():
        city = City.load(city_dir)
    else:
        city = generate_city(CITY_SEED, CITY_SIZE_M, *ORIGIN, "default")
        city.save(city_dir)
    ortho = city_dir / "orthophoto.tif"
    if not ortho.is_file():
        write_orthophoto_geotiff(city, ortho, 0.25)
    if not (db / "manifest.json").is_file():
        build_database(BuildConfig(orthos=[str(ortho)], weights=str(weights), out=str(db)), progress=True)
    return db, city


def _frames(city, width: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """A panorama (width x width/2) and a 90-degree pinhole view (width/2 x width*3/8) at a
    street position of ``city``, and that position."""
    import cv2

    from ..sim.render import render_panorama, render_pinhole

    rng = np.random.default_rng(7)
    xy = city.street_positions(1, rng, margin_m=30.0)[0]
    yaw = float(rng.uniform(-180, 180))
    pano = render_panorama(city, xy, yaw, 1024, 512)
    pano = cv2.resize(pano, (width, width // 2), interpolation=cv2.INTER_LINEAR)
    pin = render_pinhole(city, xy, yaw, PINHOLE_FOV, 640, 480)
    pin = cv2.resize(pin, (width // 2, width * 3 // 8), interpolation=cv2.INTER_LINEAR)
    return pano, pin, (float(xy[0]), float(xy[1]))


def _node_process(params: dict, folder: Path, namespace: str, env: dict) -> subprocess.Popen:
    import yaml

    path = folder / f"params_{namespace.strip('/')}.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    cmd = [sys.executable, "-m", "unifygeo_ros.ros.node", "--ros-args", "--params-file", str(path),
           "-r", f"__ns:={namespace}"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run_mode(mode: str, db: Path, city_origin, frames, truth_xy, rate_hz: float, seconds: float, backend: str,
              folder: Path, env: dict) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image, NavSatFix

    from ..geo import MapFrame

    ns = f"/bench_{mode.replace('+', '_')}"
    params = {"database": str(db), "backend": backend, "min_confidence": 0.0, "diagnostics_period_s": 1.0,
              "map_origin": {"mode": "latlon", "latitude": ORIGIN[0], "longitude": ORIGIN[1]},
              "image_topic": f"{ns}/camera/image_raw"}
    if mode == "pinhole":
        params["camera"] = {"model": "pinhole", "hfov_deg": PINHOLE_FOV}
    if mode == "panorama+gnss":
        params["gnss_prior_topic"] = f"{ns}/gnss/fix"
    proc = _node_process(params, folder, ns, env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(line.rstrip() for line in proc.stdout), daemon=True).start()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("unifygeo_bench_node", context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    arrivals: list[tuple[int, int]] = []       # (stamp ns, arrival ns)
    diags: list[dict] = []

    def on_pose(msg):
        arrivals.append((msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, time.time_ns()))

    def on_diag(arr):
        for st in arr.status:
            if st.name.startswith("unifygeo_localizer"):
                kv = {v.key: v.value for v in st.values}
                if kv.get("database") == str(db):
                    diags.append(kv)

    base = f"{ns}/unifygeo_localizer"
    node.create_subscription(PoseWithCovarianceStamped, f"{base}/pose", on_pose, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    pub = node.create_publisher(Image, f"{ns}/camera/image_raw", 10)
    pub_fix = node.create_publisher(NavSatFix, f"{ns}/gnss/fix", 10)
    rgb = frames[1] if mode == "pinhole" else frames[0]
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3, data=rgb.tobytes())
    lat, lon = MapFrame.utm_at(*ORIGIN).to_latlon(*truth_xy)
    try:
        end = time.monotonic() + 300
        while not any("ready: backend" in line for line in list(lines)):
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the node did not start ({mode}):\n" + "\n".join(lines[-20:]))
            ex.spin_once(timeout_sec=0.1)
        end = time.monotonic() + 30
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.1)
        sent = 0
        period = 1.0 / rate_hz
        t_next = time.monotonic()
        t_end = t_next + seconds
        while time.monotonic() < t_end:
            now_ns = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = now_ns // 10**9, now_ns % 10**9
            if mode == "panorama+gnss":
                fix = NavSatFix(latitude=float(lat), longitude=float(lon), position_covariance_type=2)
                fix.header.stamp = msg.header.stamp
                fix.status.status = 0
                fix.position_covariance[0] = fix.position_covariance[4] = 100.0   # 10 m sigma
                pub_fix.publish(fix)
            pub.publish(msg)
            sent += 1
            t_next += period
            while time.monotonic() < t_next:
                ex.spin_once(timeout_sec=max(0.0, t_next - time.monotonic()))
        settle = time.monotonic() + 5.0
        while time.monotonic() < settle:
            ex.spin_once(timeout_sec=0.1)
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        proc.send_signal(2)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    lat_ms = np.array([(a - s) / 1e6 for s, a in arrivals])
    last = diags[-1] if diags else {}

    def num(key):
        try:
            return float(last[key])
        except (KeyError, ValueError):
            return None

    return {"frames_sent": sent, "frames_received": int(num("frames_received") or 0), "poses": len(arrivals),
            "pose_rate_hz": round(len(arrivals) / seconds, 2),
            "latency_ms_median": round(float(np.median(lat_ms)), 1) if lat_ms.size else None,
            "latency_ms_p90": round(float(np.percentile(lat_ms, 90)), 1) if lat_ms.size else None,
            "node_overhead_ms_median": num("node_overhead_ms_median"),
            "drop_share": num("drop_share"), "image": f"{rgb.shape[1]} x {rgb.shape[0]} rgb8 "
                                                        f"({rgb.nbytes / 1e6:.1f} MB)"}


def bench_node(db: str | None, weights, modes: list[str], rate_hz: float, seconds: float, width: int,
               backend: str, out: str) -> dict:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if db is None:
        db_path, city = _area(weights, folder / "area")
    else:
        from ..sim.world import City

        db_path = Path(db)
        city_dir = db_path.parent / "city"
        if not (city_dir / "city.json").is_file():
            raise ValueError(f"--db {db}: the benchmark renders its frames from the database's synthetic city, "
                             f"expected {city_dir}/city.json beside it (or leave --db out)")
        city = City.load(city_dir)
    frames_pano, frames_pin, xy = _frames(city, width)
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            results[mode] = _run_mode(mode, db_path, ORIGIN, (frames_pano, frames_pin), xy, rate_hz, seconds,
                                      backend, Path(tmp), env)
    return {"modes": results, "rate_hz": rate_hz, "seconds_per_mode": seconds, "backend": backend,
            "database": str(db_path),
            "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                        "platform": platform.platform(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d")}


def format_report(r: dict) -> str:
    lines = [f"localize_node at {r['rate_hz']:g} Hz for {r['seconds_per_mode']:g} s per mode, backend "
             f"{r['backend']} ({r['machine']['cpu_count']} cores)",
             f"{'mode':16s}{'image':>28s}{'sent':>7s}{'recv':>7s}{'poses':>7s}{'lat med ms':>12s}"
             f"{'lat p90 ms':>12s}{'node ms':>9s}"]
    for mode, m in r["modes"].items():
        lines.append(f"{mode:16s}{m['image']:>28s}{m['frames_sent']:7d}{m['frames_received']:7d}{m['poses']:7d}"
                     f"{m['latency_ms_median'] or float('nan'):12.1f}{m['latency_ms_p90'] or float('nan'):12.1f}"
                     f"{m['node_overhead_ms_median'] or float('nan'):9.1f}")
    lines.append("latency: image stamp (wall clock at publication) to the pose's arrival; node ms: the node's own "
                 "work per frame (decoding, copies, conversions, messages), median")
    return "\n".join(lines)
