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
