"""Our message definitions (msg/, the unifygeo_msgs interface package) and their colcon build.

The same-name clash of rosidl_generate_interfaces and an ament_python package
(ros2/rosidl_python#141) is avoided by a separate interface package, unifygeo_msgs, whose
package folder is the repository's msg/. ``scripts/build_msgs_colcon.sh`` builds it (and
unifygeo_ros beside it) with colcon against the ROS 2 Jazzy wheels from PyPI and loads the
generated messages; the slow test below runs it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MSG = REPO / "msg"


def test_msg_files_parse_and_register_with_rosbags():
    from unifygeo_ros.replay.bagio import find_msg_dir, typestore

    assert find_msg_dir() == MSG
    ts = typestore()
    res = ts.types["unifygeo_msgs/msg/LocalizationResult"]
    fields = [f.name for f in res.__dataclass_fields__.values()] if hasattr(res, "__dataclass_fields__") else []
    for name in ("header", "child_frame_id", "pose", "latitude", "longitude", "yaw_observed", "confidence",
                 "heading_mode", "backend", "tile_id", "candidates", "latency_ms", "stage_names", "stage_ms"):
        assert name in fields, name
    assert "unifygeo_msgs/msg/LocalizationCandidate" in ts.types


def test_interface_package_is_complete_and_separate():
    root = ET.parse(MSG / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "unifygeo_msgs"             # not unifygeo_ros: no target clash
    tags = {(e.tag, e.text) for e in root}
    for need in (("buildtool_depend", "ament_cmake"), ("buildtool_depend", "rosidl_default_generators"),
                 ("exec_depend", "rosidl_default_runtime"), ("member_of_group", "rosidl_interface_packages"),
                 ("depend", "std_msgs"), ("depend", "geometry_msgs")):
        assert need in tags, need
    assert root.find("export/build_type").text == "ament_cmake"
    cmake = (MSG / "CMakeLists.txt").read_text()
    listed = set(re.findall(r":msg/(\w+)\.msg", cmake))
    assert listed == {p.stem for p in MSG.glob("*.msg")}, "CMakeLists.txt must list every msg/*.msg"
    assert "ament_export_dependencies(rosidl_default_runtime)" in cmake and "project(unifygeo_msgs)" in cmake
    # the Python package stays ament_python and depends on the interface package
    top = ET.parse(REPO / "package.xml").getroot()
    assert top.findtext("name") == "unifygeo_ros" and top.find("export/build_type").text == "ament_python"
    assert "unifygeo_msgs" in [e.text for e in top.findall("exec_depend")]


@pytest.mark.slow
def test_colcon_builds_unifygeo_msgs_beside_unifygeo_ros_and_python_loads_it():
    missing = [t for t in ("cmake", "c++", "cc") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: the colcon build needs cmake and a C/C++ compiler")
    t0 = time.monotonic()
    run = subprocess.run(["bash", str(REPO / "scripts" / "build_msgs_colcon.sh"), "--with-node"],
                         capture_output=True, text=True, timeout=1200)
    seconds = time.monotonic() - t0
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    out = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"build_msgs_colcon.sh: {seconds:.1f} s, {out['seconds']}")
    assert out["ok"] and out["packages"].split() == ["unifygeo_msgs", "unifygeo_ros"]
    v = out["verify"]
    assert v["round_trip"] and v["rosbags_rclpy_interchange"] and v["cdr_bytes"] > 100
    install = Path(out["install"])
    # what `ros2 run` / `ros2 launch` / rosidl users look for
    for rel in ("unifygeo_ros/lib/unifygeo_ros/localize_node", "unifygeo_ros/share/unifygeo_ros/launch/"
                "localize.launch.py", "unifygeo_ros/share/unifygeo_ros/config/localize.yaml",
                "unifygeo_ros/share/ament_index/resource_index/packages/unifygeo_ros",
                "unifygeo_msgs/share/unifygeo_msgs/msg/LocalizationResult.msg",
                "unifygeo_msgs/share/unifygeo_msgs/msg/LocalizationResult.idl",
                "unifygeo_msgs/share/ament_index/resource_index/rosidl_interfaces/unifygeo_msgs"):
        assert (install / rel).exists(), rel
