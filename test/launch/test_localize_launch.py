"""launch_testing test of launch/localize.launch.py (runs under `colcon test` where ROS 2 is
installed; skipped, with the reason, where launch_testing is absent, e.g. with only the
ROS 2 wheels from PyPI, which do not include the launch packages).

It builds a small synthetic database, launches the node with localize.launch.py (the
launch file driving the lifecycle transitions, the camera topic and backend taken from the
parameter file because those arguments are not given), waits for its one "ready" line,
publishes a panorama rendered at a known pose, expects a PoseWithCovarianceStamped with the
image's stamp near the truth, and checks that the node exits cleanly when the launch shuts
down.
"""

import math
import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

import pytest

launch_testing = pytest.importorskip(
    "launch_testing", reason="launch_testing is not installed (the ROS 2 launch packages are not on PyPI): this "
                             "launch test runs under `colcon test` in a sourced ROS 2 workspace")
pytest.importorskip("launch_ros", reason="launch_ros is not installed: source a ROS 2 installation")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
from test_node import BEST_ERROR_BOUND_M, ORIGIN, build_world, camera_panorama, street_poses  # noqa: E402

NAMESPACE = "launchtest"


@pytest.mark.launch_test
def generate_test_description():
    os.environ["ROS_DOMAIN_ID"] = str(1 + (os.getpid() + 37) % 100)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    root = Path(tempfile.mkdtemp(prefix="unifygeo_launch_test_"))
    world = build_world(root)
    params = root / "params.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n"
        f"    map_origin: {{mode: latlon, latitude: {ORIGIN[0]}, longitude: {ORIGIN[1]}}}\n"
        "    camera_extrinsic: {xyz: [0.4, 0.0, 2.2]}\n    min_confidence: 0.0\n"
        "    image_topic: /launchtest_camera/image_raw\n    backend: onnxruntime\n")
    # camera_topic and backend are not given: the parameter file's values stay in force;
    # database is given: it overrides the file's (none). lifecycle:=true: the launch file
    # configures and activates the node.
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / "launch" / "localize.launch.py")),
        launch_arguments={"database": str(world["db"]), "namespace": NAMESPACE, "config": str(params),
                          "lifecycle": "true"}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()]), {"world": world}


class TestLocalizeLaunch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import rclpy

        rclpy.init()
        cls.node = rclpy.create_node("unifygeo_launch_test_client")

    @classmethod
    def tearDownClass(cls):
        import rclpy

        cls.node.destroy_node()
        rclpy.shutdown()

    def test_ready_then_a_pose_for_a_panorama(self, proc_output, world):
        import numpy as np
        import rclpy
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from sensor_msgs.msg import Image

        proc_output.assertWaitFor("ready: backend onnxruntime", timeout=300)
        poses = []
        self.node.create_subscription(PoseWithCovarianceStamped, f"/{NAMESPACE}/unifygeo_localizer/pose",
                                      poses.append, 10)
        pub = self.node.create_publisher(Image, "/launchtest_camera/image_raw", 1)
        end = time.monotonic() + 30
        while pub.get_subscription_count() == 0 and time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.assertGreater(pub.get_subscription_count(), 0, "the node did not subscribe to the camera topic")
        x, y, yaw = street_poses(world["city"], 3)[1]     # the frame the shipped model places (test_node)
        rgb = camera_panorama(world["city"], (x, y), yaw)
        msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3,
                    data=rgb.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 1_700_000_123, 456, "camera_panorama"
        pub.publish(msg)
        end = time.monotonic() + 60
        while not poses and time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.assertTrue(poses, "no pose within 60 s")
        p = poses[0]
        self.assertEqual((p.header.stamp.sec, p.header.stamp.nanosec), (1_700_000_123, 456))
        err = math.hypot(p.pose.pose.position.x - x, p.pose.pose.position.y - y)
        self.assertLess(err, BEST_ERROR_BOUND_M)
        cov = np.array(p.pose.covariance).reshape(6, 6)[np.ix_([0, 1, 5], [0, 1, 5])]
        self.assertGreater(np.linalg.eigvalsh(cov).min(), 0.0)


@launch_testing.post_shutdown_test()
class TestLocalizeLaunchShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
