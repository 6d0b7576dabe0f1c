"""The drive export: trajectory, sensor models, and the rosbag2 read back with rosbags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from unifygeo_ros.conventions import quaternion_to_yaw
from unifygeo_ros.sim.drive import (
    DriveConfig,
    DriveTopics,
    drive_metadata_dir,
    plan_trajectory,
    simulate_gnss_errors,
    simulate_odometry,
    write_drive_bag,
)


def block_route(loops: int = 6) -> np.ndarray:
    """A 200 m square block driven ``loops`` times, points 2 m apart (like City.road_route)."""
    corners = np.array([[0, 0], [200, 0], [200, 200], [0, 200], [0, 0]], float)
    pts = [corners[:1]]
    for _ in range(loops):
        for a, b in zip(corners[:-1], corners[1:]):
            t = np.arange(1, 101)[:, None] / 100
            pts.append(a + t * (b - a))
    return np.concatenate(pts)


# ---------------------------------------------------------------------------------------
# Pure models (no rendering)
# ---------------------------------------------------------------------------------------

def test_trajectory_speed_profile_and_smooth_yaw():
    cfg = DriveConfig(duration_s=300)
    traj = plan_trajectory(block_route(), cfg, np.random.default_rng(1))
    t = np.arange(0.0, 300.0, 0.05)
    s = traj.at(t)
    assert s["speed"].min() >= cfg.turn_speed_min - 1e-6 and s["speed"].max() <= cfg.speed_max + 1e-6
    assert np.percentile(s["speed"], 10) >= 4.0         # 90 degree corners at ~4.5 m/s
    assert np.median(s["speed"]) > 7.0                  # cruising most of the time
    acc = np.diff(s["speed"]) / 0.05
    assert acc.max() <= cfg.accel_max * 1.05 and acc.min() >= -cfg.decel_max * 1.05
    yaw_rate = np.diff(s["yaw"]) / 0.05
    assert np.abs(yaw_rate).max() < math.radians(60)    # no instantaneous turns at the corners
    assert abs(s["yaw"][-1] - s["yaw"][0]) > math.radians(300)   # it did go round the block
    # the car slows in the corners: speed near corners below the straight-line speed
    curv = np.abs(s["yaw_rate"]) / s["speed"]
    assert s["speed"][curv > 0.05].mean() < s["speed"][curv < 0.005].mean() - 1.0


def test_gnss_error_model():
    cfg = DriveConfig(duration_s=1200)
    times = np.arange(0.0, 1200.0, 0.2)
    g = simulate_gnss_errors(times, cfg, np.random.default_rng(3))
    normal = g.fix & ~g.multipath
    horiz = g.err_enu[normal, :2]
    # per-axis error is consistent with the reported sigma (honest covariance), sigma in [1, 3]
    z = horiz / g.sigma_enu[normal, :2]
    assert 0.8 < z.std() < 1.2
    assert g.sigma_enu[normal, 0].min() >= 1.0 - 1e-9 and g.sigma_enu[normal, 0].max() <= 3.0 + 1e-9
    # outages: both kinds, 3-10 s each; 'drop' publishes nothing, 'no_fix' publishes NO_FIX
    kinds = {k for _, _, k in g.outages}
    assert kinds == {"drop", "no_fix"}
    for a, b, kind in g.outages:
        inside = (times >= a) & (times < b)
        assert (b - a) <= 10.0 and (b - a >= 3.0 or b >= times[-1])
        assert not g.fix[inside].any()
        assert (not g.published[inside].any()) if kind == "drop" else g.published[inside].all()
    # multipath: 10-30 m jumps lasting a few seconds, with the covariance honestly inflated
    assert len(g.multipath_events) >= 10
    for a, b, jump in g.multipath_events:
        assert 10.0 <= jump <= 30.0 and 2.0 <= b - a <= 5.0 + 1e-9
        inside = (times >= a) & (times < b)
        err = np.hypot(g.err_enu[inside, 0], g.err_enu[inside, 1])
        assert np.median(err) > jump - 8.0
        assert (g.sigma_enu[inside, 0] >= jump / math.sqrt(2) - 1e-9).all()
    zmp = g.err_enu[g.multipath, :2] / g.sigma_enu[g.multipath, :2]
    assert 0.5 < zmp.std() < 1.6


def test_odometry_drift_and_honest_covariance():
    cfg = DriveConfig(duration_s=40)
    traj = plan_trajectory(block_route(2), cfg, np.random.default_rng(0))
    t = np.arange(0.0, 40.0 + 1e-9, 0.01)
    truth = traj.at(t)
    finals, covs = [], []
    for seed in range(24):
        o = simulate_odometry(traj, 40.0, cfg, np.random.default_rng(100 + seed))
        # odom starts at the true pose's origin: express the truth in the odom frame
        c, s = math.cos(truth["yaw"][0]), math.sin(truth["yaw"][0])
        dx, dy = truth["x"] - truth["x"][0], truth["y"] - truth["y"][0]
        tx, ty = c * dx + s * dy, -s * dx + c * dy
        tyaw = truth["yaw"] - truth["yaw"][0]
        finals.append([o.x[-1] - tx[-1], o.y[-1] - ty[-1], o.yaw[-1] - tyaw[-1]])
        covs.append(o.cov[-1])
        assert o.cov[0].trace() == 0.0 and np.all(np.diff(o.cov[:, 0, 0] + o.cov[:, 1, 1]) >= -1e-12)
    finals, covs = np.array(finals), np.array(covs)
    dist = float(np.interp(40.0, traj.t, traj.s))
    drift = np.hypot(finals[:, 0], finals[:, 1])
    assert 0.05 < np.median(drift) < 0.05 * dist            # it drifts, but like odometry, not wildly
    # predicted vs empirical spread (within a factor ~2: 24 runs)
    pred = np.sqrt(np.mean(covs[:, 0, 0] + covs[:, 1, 1]))
    emp = np.sqrt(np.mean(finals[:, 0] ** 2 + finals[:, 1] ** 2))
    assert 0.5 < emp / pred < 2.0, (emp, pred)
    pred_yaw = np.sqrt(np.mean(covs[:, 2, 2]))
    emp_yaw = np.sqrt(np.mean(finals[:, 2] ** 2))
    assert 0.5 < emp_yaw / pred_yaw < 2.0, (emp_yaw, pred_yaw)


def test_config_validation():
    with pytest.raises(ValueError, match="image"):
        DriveConfig(image="png")
    with pytest.raises(ValueError, match="duration_s"):
        DriveConfig(duration_s=0)
    with pytest.raises(ValueError, match="storage"):
        DriveConfig(storage="bag")
    with pytest.raises(ValueError, match="camera"):
        DriveConfig(camera="fisheye")
    with pytest.raises(ValueError, match="hfov_deg"):
        DriveConfig(camera="pinhole", hfov_deg=180.0)
    with pytest.raises(ValueError, match="gyro_bias_sigma_dps"):
        DriveConfig(gyro_bias_sigma_dps=-0.1)
    with pytest.raises(ValueError, match="kidnap"):
        DriveConfig(duration_s=10, kidnap_at_s=(10.0,))
    with pytest.raises(ValueError, match="kidnap"):
        DriveConfig(duration_s=10, kidnap_at_s=(3.0, 3.0))
    assert DriveConfig(duration_s=10, kidnap_at_s=[7, 2.5]).kidnap_at_s == (2.5, 7.0)
    assert DriveConfig(duration_s=10, kidnap_at_s=[3.03], odom_rate_hz=20).kidnap_at_s == (3.05,)   # truth stamps
    with pytest.raises(ValueError, match="distinct"):
        DriveConfig(duration_s=10, kidnap_at_s=(3.01, 3.02), odom_rate_hz=20)


# ---------------------------------------------------------------------------------------
# The bag, with helper-1's city and renderer
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def city_dir(tmp_path_factory):
    from unifygeo_ros.sim.render import write_orthophoto_geotiff
    from unifygeo_ros.sim.world import generate_city

    d = tmp_path_factory.mktemp("city")
    city = generate_city(3, 250.0, 47.6062, -122.3321)
    city.save(d)
    write_orthophoto_geotiff(city, d / "orthophoto.tif", 1.0)
    return d


def read_bag(path: Path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    out: dict[str, list] = {}
    types = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        for con in reader.connections:
            types[con.topic] = con.msgtype
            if con.topic == DriveTopics().tf_static:     # latched like a static-TF publisher
                assert [q.durability.name for q in con.ext.offered_qos_profiles] == ["TRANSIENT_LOCAL"]
        for con, t, raw in reader.messages():
            out.setdefault(con.topic, []).append((t, reader.deserialize(raw, con.msgtype)))
    return types, out


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.mark.parametrize("storage,image", [("mcap", "raw"), ("sqlite3", "jpeg")])
def test_drive_bag_round_trip(city_dir, tmp_path, capsys, storage, image):
    from rosbags.image import message_to_cvimage

    from unifygeo_ros.cli import main as cli_main
    from unifygeo_ros.geo import MapFrame

    bag = tmp_path / f"drive_{storage}"
    code = cli_main(["sim", "drive", "--city", str(city_dir), "--duration-s", "6", "--out", str(bag),
                     "--storage", storage, "--image", image, "--pano-size", "64x32", "--seed", "4", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    meta_dir = drive_metadata_dir(bag)
    meta = json.loads((meta_dir / "drive.json").read_text())
    assert (meta_dir / "orthophoto.tif").read_bytes() == (city_dir / "orthophoto.tif").read_bytes()
    assert (bag / "metadata.yaml").is_file()
    assert any(p.suffix == (".mcap" if storage == "mcap" else ".db3") for p in bag.iterdir())

    types, msgs = read_bag(bag)
    topics = DriveTopics()
    assert meta["speed_mps"]["min"] >= 3.0 - 1e-9 and meta["speed_mps"]["max"] <= 12.0 + 1e-9
    img_topic = topics.image_raw if image == "raw" else topics.image_compressed
    assert types == {
        img_topic: "sensor_msgs/msg/Image" if image == "raw" else "sensor_msgs/msg/CompressedImage",
        topics.fix_true: "sensor_msgs/msg/NavSatFix", topics.fix: "sensor_msgs/msg/NavSatFix",
        topics.odom: "nav_msgs/msg/Odometry", topics.tf: "tf2_msgs/msg/TFMessage",
        topics.pose_true: "geometry_msgs/msg/PoseStamped", topics.tf_static: "tf2_msgs/msg/TFMessage",
    }
    # counts: rates x 6 s, both ends included
    assert len(msgs[img_topic]) == 13
    assert len(msgs[topics.fix_true]) == 31
    assert len(msgs[topics.odom]) == len(msgs[topics.pose_true]) == len(msgs[topics.tf]) == 121
    assert len(msgs[topics.tf_static]) == 1
    assert result["messages"][img_topic] == 13
    assert meta["topics"][topics.fix]["count"] == len(msgs.get(topics.fix, []))

    # one clock: header stamps == bag time, monotonic per topic, all within [t0, t0 + 6 s]
    t0 = meta["start_time_ns"]
    for topic, items in msgs.items():
        ts = [t for t, _ in items]
        assert ts == sorted(ts) and len(set(ts)) == len(ts)
        assert t0 <= ts[0] and ts[-1] <= t0 + 6_000_000_000
        for t, m in items:
            if topic in (topics.tf, topics.tf_static):
                assert all(stamp_ns(tr) == t for tr in m.transforms)
            else:
                assert stamp_ns(m) == t

    # static extrinsics
    tf_static = {tr.child_frame_id: tr for tr in msgs[topics.tf_static][0][1].transforms}
    assert set(tf_static) == {"camera_panorama", "gnss_link"}
    assert all(tr.header.frame_id == "base_link" for tr in tf_static.values())
    ant = tf_static["gnss_link"].transform.translation
    assert (ant.x, ant.y, ant.z) == tuple(meta["gnss_antenna"]["translation_xyz_m"])

    # the true pose (map frame) + the antenna extrinsic == the true fix, via the map frame
    mf = meta["map_frame"]
    frame = MapFrame(mf["crs_wkt"], mf["origin_e"], mf["origin_n"])
    poses = {t: m for t, m in msgs[topics.pose_true]}
    for t, fix in msgs[topics.fix_true]:
        pose = poses[t]
        assert pose.header.frame_id == "map" and fix.status.status == 0
        q = pose.pose.orientation
        yaw = quaternion_to_yaw(q.x, q.y, q.z, q.w)
        ax = pose.pose.position.x + math.cos(yaw) * ant.x - math.sin(yaw) * ant.y
        ay = pose.pose.position.y + math.sin(yaw) * ant.x + math.cos(yaw) * ant.y
        fx, fy = frame.from_latlon(fix.latitude, fix.longitude)
        assert math.hypot(fx - ax, fy - ay) < 0.01
        assert fix.altitude == pytest.approx(mf["ground_altitude_m"] + ant.z)

    # the vehicle moves at road speed
    p = [m.pose.position for _, m in msgs[topics.pose_true]]
    dist = sum(math.hypot(b.x - a.x, b.y - a.y) for a, b in zip(p[:-1], p[1:]))
    assert 3.0 * 6 <= dist <= 12.0 * 6 + 1

    # degraded fix: near the truth (no multipath this early is not guaranteed: bound loosely)
    true_by_t = {t: m for t, m in msgs[topics.fix_true]}
    for t, fix in msgs.get(topics.fix, []):
        if fix.status.status == 0:
            tx, ty = frame.from_latlon(true_by_t[t].latitude, true_by_t[t].longitude)
            fx, fy = frame.from_latlon(fix.latitude, fix.longitude)
            sig = math.sqrt(fix.position_covariance[0])
            assert fix.position_covariance_type == 2 and sig >= 1.0
            assert math.hypot(fx - tx, fy - ty) < 6 * sig
        else:
            assert fix.status.status == -1 and math.isnan(fix.latitude)

    # odometry: odom -> base_link, starts at zero, covariance grows
    odo = [m for _, m in msgs[topics.odom]]
    assert odo[0].header.frame_id == "odom" and odo[0].child_frame_id == "base_link"
    assert abs(odo[0].pose.pose.position.x) < 1e-9 and abs(odo[0].pose.pose.position.y) < 1e-9
    assert odo[-1].pose.covariance[0] > odo[1].pose.covariance[0] > 0
    assert 2.5 <= odo[len(odo) // 2].twist.twist.linear.x <= 12.5

    # an image decodes to the requested size
    img = message_to_cvimage(msgs[img_topic][3][1], "rgb8")
    assert img.shape == (32, 64, 3) and img.dtype == np.uint8 and img.std() > 0


def test_drive_bag_refuses_existing_path(city_dir, tmp_path, capsys):
    from unifygeo_ros.cli import main as cli_main

    bag = tmp_path / "exists"
    bag.mkdir()
    code = cli_main(["sim", "drive", "--city", str(city_dir), "--duration-s", "2", "--out", str(bag), "--json"])
    assert code == 2 and "exists" in json.loads(capsys.readouterr().out)["error"]
    code = cli_main(["sim", "drive", "--city", str(tmp_path / "nocity"), "--duration-s", "2",
                     "--out", str(tmp_path / "b"), "--json"])
    assert code == 2 and "city.json" in json.loads(capsys.readouterr().out)["error"]


def test_drive_bag_gnss_events_and_odometry_tf(city_dir, tmp_path):
    """Frequent events in a short drive: drops publish nothing, NO_FIX publishes NaN with an
    unknown covariance, multipath jumps 10-30 m with an honestly inflated covariance."""
    from unifygeo_ros.geo import MapFrame
    from unifygeo_ros.sim.world import City

    cfg = DriveConfig(duration_s=24.0, rate_hz=0.5, pano_size=(32, 16), image="jpeg", odom_rate_hz=10.0,
                      outage_mean_gap_s=7.0, outage_duration_s=(3.0, 4.0), multipath_mean_gap_s=5.0,
                      multipath_duration_s=(2.0, 3.0), seed=11)
    res = write_drive_bag(City.load(city_dir), tmp_path / "ev", cfg, city_dir=city_dir, progress=False)
    meta = json.loads(Path(res["metadata"]).read_text())
    outages = meta["gnss_model"]["outages"]
    multipath = meta["gnss_model"]["multipath"]
    assert {o["kind"] for o in outages} == {"drop", "no_fix"} and multipath
    types, msgs = read_bag(tmp_path / "ev")
    tp = DriveTopics()
    mf = meta["map_frame"]
    frame = MapFrame(mf["crs_wkt"], mf["origin_e"], mf["origin_n"])
    t0 = meta["start_time_ns"]
    fixes = {t: m for t, m in msgs[tp.fix]}
    seen = {"drop": 0, "no_fix": 0, "multipath": 0, "normal": 0}
    for t, true in msgs[tp.fix_true]:
        s = (t - t0) / 1e9
        kind = next((o["kind"] for o in outages if o["start_s"] <= s < o["end_s"]), None)
        jump = next((m["jump_m"] for m in multipath if m["start_s"] <= s < m["end_s"]), None)
        if kind == "drop":
            assert t not in fixes
            seen["drop"] += 1
            continue
        fix = fixes[t]
        if kind == "no_fix":
            assert fix.status.status == -1 and math.isnan(fix.latitude) and fix.position_covariance_type == 0
            seen["no_fix"] += 1
            continue
        assert fix.status.status == 0 and fix.position_covariance_type == 2
        tx, ty = frame.from_latlon(true.latitude, true.longitude)
        fx, fy = frame.from_latlon(fix.latitude, fix.longitude)
        err = math.hypot(fx - tx, fy - ty)
        var = fix.position_covariance[0]
        assert fix.position_covariance[4] == pytest.approx(var)
        if jump is not None:
            assert jump - 10.0 < err < jump + 10.0
            assert var >= jump ** 2 / 2
            seen["multipath"] += 1
        else:
            assert 1.0 <= math.sqrt(var) <= 3.0 + 1e-9 and err < 5 * math.sqrt(var) * math.sqrt(2)
            seen["normal"] += 1
    assert all(v > 0 for v in seen.values()), seen
    assert len(msgs[tp.fix]) == len(msgs[tp.fix_true]) - seen["drop"]
    # /tf carries the same odom -> base_link as /odom
    tf = {t: m.transforms[0] for t, m in msgs[tp.tf]}
    for t, o in msgs[tp.odom]:
        tr = tf[t]
        assert tr.header.frame_id == "odom" and tr.child_frame_id == "base_link"
        assert tr.transform.translation.x == pytest.approx(o.pose.pose.position.x)
        assert tr.transform.rotation.z == pytest.approx(o.pose.pose.orientation.z)
    # odometry mapped through the true map->odom transform stays near the truth (it drifts slowly)
    org = meta["odom_origin_in_map"]
    c, s_ = math.cos(org["yaw_rad"]), math.sin(org["yaw_rad"])
    truth = {t: m.pose.position for t, m in msgs[tp.pose_true]}
    errs = []
    for t, o in msgs[tp.odom]:
        p = o.pose.pose.position
        mx, my = org["x"] + c * p.x - s_ * p.y, org["y"] + s_ * p.x + c * p.y
        errs.append(math.hypot(mx - truth[t].x, my - truth[t].y))
    assert errs[0] < 1e-6 and 0.0 < errs[-1] < 10.0
    assert meta["odometry_model"]["final_drift_m"] == pytest.approx(errs[-1], abs=1e-6)


# ---------------------------------------------------------------------------------------
# Pinhole camera, kidnapping, odometry noise, long drives, the default bag
# ---------------------------------------------------------------------------------------

def test_pinhole_drive_bag(city_dir, tmp_path, capsys):
    """--camera pinhole: images and CameraInfo on the front camera's topics, K of an ideal
    pinhole of the field of view, camera_front (+ its optical frame) in /tf_static, and the
    images are the renderer's forward views from the true camera pose."""
    from rosbags.image import message_to_cvimage

    from unifygeo_ros.cli import main as cli_main
    from unifygeo_ros.sim.render import render_pinhole
    from unifygeo_ros.sim.world import City

    bag = tmp_path / "pinhole"
    code = cli_main(["sim", "drive", "--city", str(city_dir), "--duration-s", "3", "--rate-hz", "1", "--out",
                     str(bag), "--camera", "pinhole", "--fov", "60", "--image-size", "96x64", "--seed", "2",
                     "--no-progress", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    meta = json.loads((drive_metadata_dir(bag) / "drive.json").read_text())
    types, msgs = read_bag(bag)
    tp = DriveTopics()
    assert result["image_topic"] == tp.pinhole_raw == "/camera/front/image_raw"
    assert types[tp.pinhole_raw] == "sensor_msgs/msg/Image"
    assert types[tp.camera_info] == "sensor_msgs/msg/CameraInfo" and tp.camera_info == "/camera/front/camera_info"
    assert tp.image_raw not in types and tp.image_compressed not in types
    assert len(msgs[tp.pinhole_raw]) == len(msgs[tp.camera_info]) == 4

    # CameraInfo: an ideal pinhole of 60 degrees, 96 x 64, stamped and framed like its image
    fx = 48.0 / math.tan(math.radians(30.0))
    for (t_img, img), (t_info, info) in zip(msgs[tp.pinhole_raw], msgs[tp.camera_info]):
        assert t_img == t_info and stamp_ns(img) == stamp_ns(info)
        assert img.header.frame_id == info.header.frame_id == "camera_front"
        assert (info.width, info.height) == (96, 64) and (img.width, img.height) == (96, 64)
        assert info.distortion_model == "plumb_bob" and list(info.d) == [0.0] * 5
        np.testing.assert_allclose(info.k, [fx, 0, 47.5, 0, fx, 31.5, 0, 0, 1], rtol=1e-12)
        np.testing.assert_allclose(info.r, np.eye(3).ravel())
        np.testing.assert_allclose(info.p, [fx, 0, 47.5, 0, 0, fx, 31.5, 0, 0, 0, 1, 0], rtol=1e-12)
    k = msgs[tp.camera_info][0][1].k
    assert math.degrees(2 * math.atan(0.5 * 96 / k[0])) == pytest.approx(60.0)
    assert math.degrees(2 * math.atan(0.5 * 64 / k[4])) == pytest.approx(meta["camera"]["vfov_deg"])

    # frames: base_link -> camera_front (x forward), camera_front -> camera_front_optical (z forward, x right)
    tf_static = {tr.child_frame_id: tr for tr in msgs[tp.tf_static][0][1].transforms}
    assert set(tf_static) == {"camera_front", "camera_front_optical", "gnss_link"}
    cam = tf_static["camera_front"]
    assert cam.header.frame_id == "base_link"
    assert (cam.transform.translation.x, cam.transform.translation.z) == (0.4, 2.2)
    assert quaternion_to_yaw(cam.transform.rotation.x, cam.transform.rotation.y, cam.transform.rotation.z,
                             cam.transform.rotation.w) == 0.0
    q = tf_static["camera_front_optical"].transform.rotation
    assert tf_static["camera_front_optical"].header.frame_id == "camera_front"
    x, y, z, w = q.x, q.y, q.z, q.w
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    np.testing.assert_allclose(rot, [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)   # columns: right, down, fwd

    # drive.json: what a replay needs to configure itself
    mc = meta["camera"]
    assert mc["model"] == "pinhole" and mc["hfov_deg"] == 60.0 and (mc["width"], mc["height"]) == (96, 64)
    assert mc["frame_id"] == "camera_front" and mc["image_topic"] == tp.pinhole_raw
    assert mc["camera_info_topic"] == tp.camera_info
    np.testing.assert_allclose(mc["K"], k)
    assert mc["node_parameters"] == {"camera.model": "pinhole", "camera.hfov_deg": 60.0, "camera.pitch_deg": 0.0,
                                     "image_topic": tp.pinhole_raw, "camera_info_topic": tp.camera_info,
                                     "camera_frame": "camera_front"}
    from unifygeo_ros.ros_core.config import NodeConfig

    NodeConfig.from_params(mc["node_parameters"], require_database=False)       # parameters the node takes
    assert meta["topics"][tp.camera_info]["count"] == 4

    # the image is the forward pinhole view from the true camera position
    city = City.load(city_dir)
    poses = {t: m.pose for t, m in msgs[tp.pose_true]}
    t2, img2 = msgs[tp.pinhole_raw][2]
    pose = poses[t2]
    yaw = quaternion_to_yaw(pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w)
    cxy = (pose.position.x + 0.4 * math.cos(yaw), pose.position.y + 0.4 * math.sin(yaw))
    expected = render_pinhole(city, cxy, math.degrees(yaw), 60.0, 96, 64, camera_height_m=2.2)
    got = message_to_cvimage(img2, "rgb8")
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 2.0

    # options of the other camera are refused
    code = cli_main(["sim", "drive", "--city", str(city_dir), "--duration-s", "2", "--out", str(tmp_path / "x"),
                     "--camera", "pinhole", "--pano-size", "64x32", "--json"])
    assert code == 2 and "--pano-size" in json.loads(capsys.readouterr().out)["error"]
    code = cli_main(["sim", "drive", "--city", str(city_dir), "--duration-s", "2", "--out", str(tmp_path / "x"),
                     "--fov", "60", "--json"])
    assert code == 2 and "--fov" in json.loads(capsys.readouterr().out)["error"]


def test_rig_drive_bag(city_dir, tmp_path, capsys):
    """--camera rig: one Image and one CameraInfo topic per camera, named by its yaw; each camera's
    frames stamped with its own jitter and carrying its optical frame, which /tf_static places
    (base_link -> camera_<name> -> camera_<name>_optical); the images are the renderer's views
    along the vehicle's yaw plus the camera's at the jittered stamp; drive.json suggests the
    node's rig parameters."""
    from rosbags.image import message_to_cvimage

    from unifygeo_ros.cli import main as cli_main
    from unifygeo_ros.ros_core.config import NodeConfig
    from unifygeo_ros.ros_core.rig_cameras import StaticTransforms, camera_angles
    from unifygeo_ros.sim.drive import plan_drive
    from unifygeo_ros.sim.render import render_pinhole
    from unifygeo_ros.sim.world import City

    bag = tmp_path / "rig"
    code = cli_main(["sim", "drive", "--city", str(city_dir), "--duration-s", "2", "--rate-hz", "2", "--out",
                     str(bag), "--camera", "rig", "--rig", "0,90,-90,180", "--fov", "100", "--image-size", "64x48",
                     "--rig-jitter-s", "0.01", "--seed", "2", "--no-progress", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    names = ("front", "left", "right", "back")
    topics = [f"/camera/{n}/image_raw" for n in names]
    infos = [f"/camera/{n}/camera_info" for n in names]
    assert result["image_topics"] == topics and result["camera"] == "rig"
    types, msgs = read_bag(bag)
    assert {t: types[t] for t in topics + infos} == {**{t: "sensor_msgs/msg/Image" for t in topics},
                                                       **{t: "sensor_msgs/msg/CameraInfo" for t in infos}}
    assert not any(t.startswith("/camera/panorama") for t in types)
    start = 1_700_000_000 * 10**9
    jitters = []
    for name, topic, info in zip(names, topics, infos):
        assert len(msgs[topic]) == len(msgs[info]) == 5
        for k, ((t, img), (t_info, cinfo)) in enumerate(zip(msgs[topic], msgs[info])):
            assert t == stamp_ns(img) == t_info == stamp_ns(cinfo)
            assert img.header.frame_id == cinfo.header.frame_id == f"camera_{name}_optical"
            assert (img.width, img.height, cinfo.width, cinfo.height) == (64, 48, 64, 48)
            jitters.append(t - (start + k * 500_000_000))
    assert max(abs(j) for j in jitters) <= 10_000_000 and len(set(jitters)) > 10      # each camera its own

    # /tf_static: each camera's optical frame, composed along the tree, looks along its yaw
    tf = StaticTransforms()
    tf.update(msgs[DriveTopics().tf_static][0][1])
    for name, yaw in zip(names, (0.0, 90.0, -90.0, 180.0)):
        rot, t = tf.lookup("base_link", f"camera_{name}_optical")
        assert camera_angles(rot, optical=True) == pytest.approx((yaw, 0.0, 0.0), abs=1e-9)
        np.testing.assert_allclose(t, [0.4, 0.0, 2.2], atol=1e-12)

    # the left camera's third image: the view 90 degrees left of the vehicle at its own stamp
    cfg = DriveConfig(duration_s=2.0, rate_hz=2.0, camera="rig", hfov_deg=100.0, pinhole_size=(64, 48), seed=2,
                      rig_jitter_s=0.01)
    city = City.load(city_dir)
    traj, _ = plan_drive(city, cfg)
    t2, img2 = msgs[topics[1]][2]
    p = {k: float(v) for k, v in traj.at((t2 - start) / 1e9).items()}
    cxy = (p["x"] + 0.4 * math.cos(p["yaw"]), p["y"] + 0.4 * math.sin(p["yaw"]))
    expected = render_pinhole(city, cxy, math.degrees(p["yaw"]) + 90.0, 100.0, 64, 48, camera_height_m=2.2)
    assert np.abs(message_to_cvimage(img2, "rgb8").astype(int) - expected.astype(int)).mean() < 2.0

    # drive.json: the node's rig parameters, which it accepts
    meta = json.loads((drive_metadata_dir(bag) / "drive.json").read_text())
    mc = meta["camera"]
    assert mc["model"] == "rig" and [c["name"] for c in mc["cameras"]] == list(names)
    params = mc["node_parameters"]
    assert params["rig.image_topics"] == topics and params["rig.camera_info_topics"] == infos
    assert params["rig.yaws_deg"] == [0.0, 90.0, -90.0, 180.0] and params["rig.frame_source"] == "tf"
    cfg_node = NodeConfig.from_params(params, require_database=False)
    assert cfg_node.rig and cfg_node.camera_xyz == (0.4, 0.0, 2.2)
    assert meta["frames"]["rig_optical"] == [f"camera_{n}_optical" for n in names]
    assert meta["topics"][topics[0]]["count"] == 5

    # other yaws: cameras cam0, cam1, ...; options refused where they do not apply
    cfg2 = DriveConfig(camera="rig", rig_yaws_deg=(0.0, 45.0))
    assert [(c.name, c.image_topic, c.optical_frame) for c in cfg2.rig_cameras()] == [
        ("cam0", "/camera/cam0/image_raw", "camera_cam0_optical"), ("cam1", "/camera/cam1/image_raw",
                                                                     "camera_cam1_optical")]
    for extra, expected_error in ((["--rig", "0,90"], "--rig: only with --camera rig"),
                                  (["--camera", "rig", "--rig", "0,left"], "expected the cameras' yaws"),
                                  (["--camera", "rig", "--rig", "0,360"], "rig_yaws_deg must be"),
                                  (["--camera", "rig", "--rig", "0,180,-180"], "distinct directions")):
        code = cli_main(["sim", "drive", "--city", str(city_dir), "--duration-s", "2", "--out", str(tmp_path / "x"),
                         *extra, "--json"])
        assert code == 2 and expected_error in json.loads(capsys.readouterr().out)["error"], extra


def test_rig_drive_bag_with_jpeg_images(city_dir, tmp_path, capsys):
    """--camera rig --image jpeg: each camera's images are CompressedImage on image_transport's
    /camera/<name>/image_raw/compressed, carrying the camera's optical frame, beside its raw
    CameraInfo; drive.json suggests rig.compressed_image_topics, which the node accepts."""
    import cv2

    from unifygeo_ros.cli import main as cli_main
    from unifygeo_ros.ros_core.config import NodeConfig
    from unifygeo_ros.ros_core.images import decode_image
    from unifygeo_ros.sim.drive import plan_drive
    from unifygeo_ros.sim.render import render_pinhole
    from unifygeo_ros.sim.world import City

    bag = tmp_path / "rig_jpeg"
    code = cli_main(["sim", "drive", "--city", str(city_dir), "--duration-s", "1", "--rate-hz", "2", "--out",
                     str(bag), "--camera", "rig", "--rig", "0,90", "--fov", "100", "--image-size", "64x48",
                     "--image", "jpeg", "--seed", "2", "--no-progress", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    topics = ["/camera/front/image_raw/compressed", "/camera/left/image_raw/compressed"]
    infos = ["/camera/front/camera_info", "/camera/left/camera_info"]
    assert result["image_topics"] == topics
    types, msgs = read_bag(bag)
    assert {t: types[t] for t in topics + infos} == {**{t: "sensor_msgs/msg/CompressedImage" for t in topics},
                                                       **{t: "sensor_msgs/msg/CameraInfo" for t in infos}}
    assert not any(t.endswith("/image_raw") for t in types)
    for name, topic, info in zip(("front", "left"), topics, infos):
        assert len(msgs[topic]) == len(msgs[info]) == 3
        for (t, img), (t_info, cinfo) in zip(msgs[topic], msgs[info]):
            assert t == stamp_ns(img) == t_info and "jpeg" in img.format
            assert img.header.frame_id == cinfo.header.frame_id == f"camera_{name}_optical"
            assert decode_image(img).shape == (48, 64, 3)
    # the left camera's second image: the view 90 degrees left of the vehicle, through JPEG
    cfg = DriveConfig(duration_s=1.0, rate_hz=2.0, camera="rig", rig_yaws_deg=(0.0, 90.0), hfov_deg=100.0,
                      pinhole_size=(64, 48), image="jpeg", seed=2)
    assert [c.image_topic for c in cfg.rig_cameras()] == topics
    city = City.load(city_dir)
    traj, _ = plan_drive(city, cfg)
    t1, img1 = msgs[topics[1]][1]
    p = {k: float(v) for k, v in traj.at((t1 - 1_700_000_000 * 10**9) / 1e9).items()}
    cxy = (p["x"] + 0.4 * math.cos(p["yaw"]), p["y"] + 0.4 * math.sin(p["yaw"]))
    expected = render_pinhole(city, cxy, math.degrees(p["yaw"]) + 90.0, 100.0, 64, 48, camera_height_m=2.2)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(bytes(img1.data), np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB)
    assert np.abs(decoded.astype(int) - expected.astype(int)).mean() < 6.0

    params = json.loads((drive_metadata_dir(bag) / "drive.json").read_text())["camera"]["node_parameters"]
    assert params["rig.compressed_image_topics"] == topics and "rig.image_topics" not in params
    assert params["rig.camera_info_topics"] == infos
    cfg_node = NodeConfig.from_params(params, require_database=False)
    assert cfg_node.rig_compressed and cfg_node.rig_topics == tuple(topics)


def test_kidnap_moves_the_truth_not_the_odometry(city_dir, tmp_path):
    """At the kidnap time the truth and GNSS jump by more than 100 m; /odom and /tf go on
    smoothly; drive.json records the kidnap; before it, everything is as without it."""
    from unifygeo_ros.geo import MapFrame
    from unifygeo_ros.sim.world import City

    city = City.load(city_dir)
    base = dict(duration_s=16.0, rate_hz=0.5, pano_size=(32, 16), odom_rate_hz=10.0, seed=9)
    res = write_drive_bag(city, tmp_path / "kid", DriveConfig(**base, kidnap_at_s=(7.0,)), city_dir=city_dir,
                          progress=False)
    write_drive_bag(city, tmp_path / "plain", DriveConfig(**base), city_dir=city_dir, progress=False)
    meta = json.loads(Path(res["metadata"]).read_text())
    tp = DriveTopics()
    _, msgs = read_bag(tmp_path / "kid")
    _, plain = read_bag(tmp_path / "plain")
    t0 = meta["start_time_ns"]
    t_k = t0 + 7_000_000_000

    (kid,) = meta["kidnaps"]
    assert kid["t_s"] == 7.0 and kid["stamp_ns"] == t_k and kid["distance_m"] > 100.0
    assert res["kidnaps"] == [{"t_s": 7.0, "distance_m": round(kid["distance_m"], 2)}]

    truth = [(t, m.pose) for t, m in msgs[tp.pose_true]]
    steps = [(t1, math.hypot(b.position.x - a.position.x, b.position.y - a.position.y))
             for (_, a), (t1, b) in zip(truth[:-1], truth[1:])]
    jumps = [(t, d) for t, d in steps if d > 2.0]
    assert len(jumps) == 1 and jumps[0][0] == t_k and jumps[0][1] > 100.0
    pose_k = dict(truth)[t_k]
    assert (pose_k.position.x, pose_k.position.y) == pytest.approx((kid["to"]["x"], kid["to"]["y"]))
    yaw_k = quaternion_to_yaw(pose_k.orientation.x, pose_k.orientation.y, pose_k.orientation.z,
                              pose_k.orientation.w)
    assert math.cos(yaw_k - kid["to"]["yaw_rad"]) == pytest.approx(1.0)
    prev = dict(truth)[t_k - 100_000_000].position
    assert math.hypot(prev.x - kid["from"]["x"], prev.y - kid["from"]["y"]) < 1.3   # 0.1 s before, <= 12 m/s

    # the odometry does not see the jump
    odo = [(t, m.pose.pose) for t, m in msgs[tp.odom]]
    o_steps = [math.hypot(b.position.x - a.position.x, b.position.y - a.position.y)
               for (_, a), (_, b) in zip(odo[:-1], odo[1:])]
    assert max(o_steps) < 1.5          # 0.1 s at road speed
    tf = {t: m.transforms[0].transform.translation for t, m in msgs[tp.tf]}
    assert all(tf[t].x == pytest.approx(p.position.x) for t, p in odo)

    # the true fix jumps with the vehicle
    mf = meta["map_frame"]
    frame = MapFrame(mf["crs_wkt"], mf["origin_e"], mf["origin_n"])
    fixes = [(t, frame.from_latlon(m.latitude, m.longitude)) for t, m in msgs[tp.fix_true]]
    f_jumps = [t1 for (_, a), (t1, b) in zip(fixes[:-1], fixes[1:]) if math.hypot(b[0] - a[0], b[1] - a[1]) > 50]
    assert f_jumps == [t_k]

    # before the kidnap: the same truth and odometry as the drive without it
    same = [t for t, _ in plain[tp.odom] if t < t_k]
    p_odo, p_truth = dict(plain[tp.odom]), dict(plain[tp.pose_true])
    k_odo, k_truth = dict(msgs[tp.odom]), dict(msgs[tp.pose_true])
    assert all(k_odo[t].pose.pose.position.x == p_odo[t].pose.pose.position.x for t in same)
    assert all(k_truth[t].pose.position.y == p_truth[t].pose.position.y for t in same)

    # after the kidnap, the recorded map->odom puts the odometry back onto the truth (slow drift)
    org = kid["odom_origin_in_map_after"]
    c, s_ = math.cos(org["yaw_rad"]), math.sin(org["yaw_rad"])
    errs = []
    for t, o in odo:
        if t >= t_k:
            mx = org["x"] + c * o.position.x - s_ * o.position.y
            my = org["y"] + s_ * o.position.x + c * o.position.y
            errs.append(math.hypot(mx - k_truth[t].pose.position.x, my - k_truth[t].pose.position.y))
    assert errs[0] < 1e-6 and errs[-1] < 5.0
    assert meta["odometry_model"]["final_drift_m"] == pytest.approx(errs[-1], abs=1e-6)
    assert meta["odometry_model"]["final_drift_since_s"] == 7.0


def test_kidnaps_are_far_and_deterministic(city_dir):
    from unifygeo_ros.sim.drive import plan_drive
    from unifygeo_ros.sim.world import City

    city = City.load(city_dir)
    cfg = DriveConfig(duration_s=120.0, kidnap_at_s=(30.0, 75.0), seed=5)
    traj, _ = plan_drive(city, cfg)
    again, _ = plan_drive(city, cfg)
    other, _ = plan_drive(city, DriveConfig(duration_s=120.0, kidnap_at_s=(30.0, 75.0), seed=6))
    assert [k.t_s for k in traj.kidnaps] == [30.0, 75.0]
    assert all(k.distance_m > 100.0 for k in traj.kidnaps)
    assert [k.after for k in traj.kidnaps] == [k.after for k in again.kidnaps]
    assert [k.after for k in traj.kidnaps] != [k.after for k in other.kidnaps]
    t = np.arange(0.0, 120.0 + 1e-9, 0.5)
    p = traj.at(t)
    assert (p["speed"] >= cfg.turn_speed_min - 1e-6).all()
    assert ((p["x"] >= 0) & (p["x"] <= city.size_m) & (p["y"] >= 0) & (p["y"] <= city.size_m)).all()
    assert traj.distance_at(120.0) > 120.0 * cfg.turn_speed_min
    with pytest.raises(ValueError, match="no road position"):
        plan_drive(city, DriveConfig(duration_s=60.0, kidnap_at_s=(10.0,), kidnap_min_distance_m=1000.0))


def _odometry_drift(city, cfg) -> float:
    """Final position error (m) of the odometry of ``cfg``'s drive, in the odom frame."""
    from unifygeo_ros.sim.drive import plan_drive

    traj, rng = plan_drive(city, cfg)
    o = simulate_odometry(traj, cfg.duration_s, cfg, rng)
    truth = traj.at(o.t)
    c, s = math.cos(truth["yaw"][0]), math.sin(truth["yaw"][0])
    dx, dy = truth["x"][-1] - truth["x"][0], truth["y"][-1] - truth["y"][0]
    return math.hypot(o.x[-1] - (c * dx + s * dy), o.y[-1] - (-s * dx + c * dy))


def test_odometry_noise_options_change_the_drift(city_dir, tmp_path, capsys):
    from unifygeo_ros.cli import main as cli_main
    from unifygeo_ros.sim.world import City

    city = City.load(city_dir)
    quiet = dict(wheel_speed_noise=0.0, wheel_scale_sigma=0.0, gyro_noise_dps=0.0, gyro_bias_sigma_dps=0.0,
                 gyro_bias_walk_dps=0.0)
    loud = dict(wheel_speed_noise=0.5, wheel_scale_sigma=0.05, gyro_noise_dps=1.0, gyro_bias_sigma_dps=0.5,
                gyro_bias_walk_dps=0.05)
    drift = {name: _odometry_drift(city, DriveConfig(duration_s=90.0, seed=3, **kw))
             for name, kw in (("quiet", quiet), ("default", {}), ("loud", loud))}
    # without noise what is left is the integration of the planner's smoothed curvature (< 0.1 % of the way)
    assert drift["quiet"] < 1.0 and drift["quiet"] < drift["default"] / 2 < drift["loud"] / 6, drift
    assert _odometry_drift(city, DriveConfig(duration_s=90.0, seed=3, **loud)) == drift["loud"]   # seeded

    # the options reach the sensor model (and drive.json)
    bag = tmp_path / "quiet"
    code = cli_main(["sim", "drive", "--city", str(city_dir), "--duration-s", "4", "--pano-size", "16x8",
                     "--out", str(bag), "--odom-speed-noise", "0", "--odom-speed-scale-error", "0",
                     "--gyro-noise", "0", "--gyro-bias-deg-s", "0", "--gyro-bias-walk", "0", "--no-progress",
                     "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    om = json.loads((drive_metadata_dir(bag) / "drive.json").read_text())["odometry_model"]
    assert om["wheel_scale_error"] == 0.0 and om["gyro_bias_initial_dps"] == 0.0 and om["final_drift_m"] < 0.01
    assert om["wheel_speed_noise_mps"] == om["gyro_noise_dps"] == om["gyro_bias_walk_dps_per_sqrt_s"] == 0.0
    code = cli_main(["sim", "drive", "--city", str(city_dir), "--duration-s", "2", "--out", str(tmp_path / "neg"),
                     "--gyro-noise", "-1", "--json"])
    assert code == 2 and "gyro_noise_dps" in json.loads(capsys.readouterr().out)["error"]


def test_long_drive_route_does_not_run_out(city_dir):
    """A 20-minute drive in a 250 m city: the route goes on round the blocks to the end."""
    from unifygeo_ros.sim.drive import plan_drive
    from unifygeo_ros.sim.world import City

    city = City.load(city_dir)
    cfg = DriveConfig(duration_s=1200.0, seed=1, kidnap_at_s=(600.0,))
    traj, rng = plan_drive(city, cfg)
    assert traj.duration_s >= 1200.0
    t = np.arange(0.0, 1200.0 + 1e-9, 0.25)
    p = traj.at(t)
    assert (p["speed"] >= cfg.turn_speed_min - 1e-6).all() and (p["speed"] <= cfg.speed_max + 1e-6).all()
    assert ((p["x"] >= 0) & (p["x"] <= city.size_m) & (p["y"] >= 0) & (p["y"] <= city.size_m)).all()
    step = np.hypot(np.diff(p["x"]), np.diff(p["y"]))
    assert (step[t[1:] != 600.0] <= cfg.speed_max * 0.25 + 1e-6).all()    # moving smoothly but at the kidnap
    dist = traj.distance_at(1200.0)
    assert 1200.0 * 5.0 < dist < 1200.0 * cfg.speed_max
    # (x, y) cells of 25 m visited: the drive goes round much of the city, not back and forth
    cells = {(int(x // 25), int(y // 25)) for x, y in zip(p["x"], p["y"])}
    assert len(cells) > 30
    odo = simulate_odometry(traj, 1200.0, cfg, rng)
    assert len(odo.t) == 120_001 and np.isfinite(odo.x).all()


def test_default_bag_is_the_bag_of_the_explicit_defaults(city_dir, tmp_path, capsys):
    """The panorama drive of the defaults, written with every new option at its default value
    and through write_drive_bag, is byte for byte the same bag."""
    from unifygeo_ros.cli import main as cli_main
    from unifygeo_ros.sim.render import render_panorama
    from unifygeo_ros.sim.world import City

    common = ["sim", "drive", "--city", str(city_dir), "--duration-s", "2", "--seed", "8", "--no-progress", "--json"]
    explicit = ["--camera", "panorama", "--pano-size", "512x256", "--odom-speed-noise", "0.1",
                "--odom-speed-scale-error", "0.01", "--gyro-noise", "0.2", "--gyro-bias-deg-s", "0.05",
                "--gyro-bias-walk", "0.005", "--kidnap-min-distance-m", "100"]
    # the same bag name in three folders: metadata.yaml names the storage file
    assert cli_main(common + ["--out", str(tmp_path / "default" / "drive")]) == 0
    assert cli_main(common + explicit + ["--out", str(tmp_path / "explicit" / "drive")]) == 0
    capsys.readouterr()
    write_drive_bag(City.load(city_dir), tmp_path / "api" / "drive", DriveConfig(duration_s=2.0, seed=8),
                    city_dir=city_dir, progress=False, render=render_panorama)

    def files(bag):
        return {p.name: p.read_bytes() for p in sorted(bag.iterdir())}

    ref = files(tmp_path / "default" / "drive")
    assert set(ref) == {"drive.mcap", "metadata.yaml"}
    assert files(tmp_path / "explicit" / "drive") == ref
    assert files(tmp_path / "api" / "drive") == ref
    types, _ = read_bag(tmp_path / "default" / "drive")
    assert "/camera/panorama/image_raw" in types and not any(t.startswith("/camera/front") for t in types)


def test_initial_pose_is_the_noisy_truth_at_the_first_image(city_dir, tmp_path, capsys):
    """--initial-pose SIGMA_M,SIGMA_DEG: one PoseWithCovarianceStamped of base_link on
    /initialpose, in map, stamped at the first image and recorded just before it, within a few
    sigma of the truth there, with that covariance; drive.json records it; the other topics are
    the bag of the same drive without it."""
    from unifygeo_ros.cli import main as cli_main

    common = ["sim", "drive", "--city", str(city_dir), "--duration-s", "2", "--rate-hz", "1", "--pano-size", "64x32",
              "--seed", "5", "--json"]
    code = cli_main(common + ["--out", str(tmp_path / "seeded"), "--initial-pose", "2,10"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert cli_main(common + ["--out", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    types, msgs = read_bag(tmp_path / "seeded")
    _, plain = read_bag(tmp_path / "plain")
    topics = DriveTopics()
    assert types[topics.initialpose] == "geometry_msgs/msg/PoseWithCovarianceStamped"
    (t_seed, seed), = msgs[topics.initialpose]
    first_image_t = msgs[topics.image_raw][0][0]
    assert stamp_ns(seed) == t_seed == first_image_t == stamp_ns(msgs[topics.image_raw][0][1])
    assert seed.header.frame_id == "map"
    meta = json.loads((drive_metadata_dir(tmp_path / "seeded") / "drive.json").read_text())
    ip = meta["initial_pose"]
    truth = ip["truth"]
    p = seed.pose.pose
    assert (p.position.x, p.position.y) == pytest.approx((ip["pose"]["x"], ip["pose"]["y"]))
    assert math.hypot(p.position.x - truth["x"], p.position.y - truth["y"]) < 5 * 2.0
    yaw = quaternion_to_yaw(p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w)
    assert abs(math.remainder(yaw - truth["yaw_rad"], 2 * math.pi)) < math.radians(5 * 10.0)
    cov = np.asarray(seed.pose.covariance).reshape(6, 6)
    assert cov[0, 0] == cov[1, 1] == pytest.approx(4.0) and cov[5, 5] == pytest.approx(math.radians(10.0) ** 2)
    assert ip["sigma_m"] == 2.0 and ip["sigma_deg"] == 10.0 and ip["stamp_ns"] == first_image_t
    assert result["initial_pose"]["error_m"] == pytest.approx(ip["error_m"], abs=1e-3)
    assert meta["topics"][topics.initialpose]["count"] == 1 and meta["config"]["initial_pose_sigma"] == [2.0, 10.0]
    # nothing else changes: the same messages on every other topic
    assert set(msgs) - {topics.initialpose} == set(plain)
    for topic in (topics.odom, topics.fix, topics.pose_true):
        assert [t for t, _ in msgs[topic]] == [t for t, _ in plain[topic]]
    assert msgs[topics.odom][-1][1].pose.pose.position.x == plain[topics.odom][-1][1].pose.pose.position.x
    assert json.loads((drive_metadata_dir(tmp_path / "plain") / "drive.json").read_text())["initial_pose"] is None
    # recorded before the first image in the bag
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    with AnyReader([tmp_path / "seeded"], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        seen = [con.topic for con, _, _ in reader.messages()]
    assert seen.index(topics.initialpose) < seen.index(topics.image_raw)
    for bad in ("2", "2,x", "0,10", "2,-1"):
        assert cli_main(common + ["--out", str(tmp_path / "bad"), "--initial-pose", bad]) == 2
        assert "initial" in json.loads(capsys.readouterr().out)["error"]
