"""Our message definitions (msg/) and the colcon build of the package.

unifygeo_ros is one ament_cmake package: ``rosidl_generate_interfaces`` builds the messages
of msg/ (``unifygeo_ros/msg/LocalizationResult``) and the Python package is installed beside
the generated modules, so that a plain clone in a workspace's src/ builds with ``colcon
build`` (colcon and rosdep do not look for a package inside another one).
``scripts/colcon_build.sh`` builds it with colcon against the ROS 2 Jazzy wheels from PyPI
and loads the generated messages; the slow tests below run it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MSG = REPO / "msg"
# ROS packages the code may import; each one imported must be declared in package.xml
ROS_PACKAGES = {"rclpy", "rcl_interfaces", "lifecycle_msgs", "builtin_interfaces", "std_msgs", "sensor_msgs",
                "geometry_msgs", "nav_msgs", "diagnostic_msgs", "tf2_ros", "launch", "launch_ros",
                "launch_testing", "launch_testing_ros", "cv_bridge", "tf2_msgs", "visualization_msgs",
                "unique_identifier_msgs", "action_msgs", "ament_index_python", "rosidl_runtime_py",
                "message_filters", "image_transport"}


def test_msg_files_parse_and_register_with_rosbags():
    from unifygeo_ros.replay.bagio import find_msg_dir, typestore

    assert find_msg_dir() == MSG
    ts = typestore()
    res = ts.types["unifygeo_ros/msg/LocalizationResult"]
    fields = [f.name for f in res.__dataclass_fields__.values()] if hasattr(res, "__dataclass_fields__") else []
    for name in ("header", "child_frame_id", "pose", "latitude", "longitude", "yaw_observed", "confidence",
                 "heading_mode", "backend", "tile_id", "candidates", "latency_ms", "stage_names", "stage_ms"):
        assert name in fields, name
    assert "unifygeo_ros/msg/LocalizationCandidate" in ts.types


def _package_xml():
    return ET.parse(REPO / "package.xml").getroot()


def test_one_package_builds_its_messages_and_its_python():
    root = _package_xml()
    assert root.get("format") == "3" and root.findtext("name") == "unifygeo_ros"
    assert root.find("export/build_type").text == "ament_cmake"
    tags = {(e.tag, e.text) for e in root}
    for need in (("buildtool_depend", "ament_cmake"), ("buildtool_depend", "ament_cmake_python"),
                 ("buildtool_depend", "rosidl_default_generators"), ("exec_depend", "rosidl_default_runtime"),
                 ("member_of_group", "rosidl_interface_packages"), ("depend", "std_msgs"),
                 ("depend", "geometry_msgs")):
        assert need in tags, need
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert "project(unifygeo_ros)" in cmake and "rosidl_generate_interfaces(${PROJECT_NAME}" in cmake
    assert '"${CMAKE_CURRENT_SOURCE_DIR}/msg/*.msg"' in cmake        # every definition, none listed by hand
    # the Python sources go in after the generated modules (a second ament_python_install_package
    # of the same name fails in Jazzy: ros2/rosidl_python#141)
    assert cmake.index("rosidl_generate_interfaces(") < cmake.index('install(DIRECTORY "${PROJECT_NAME}/"')
    calls = [ln for ln in cmake.splitlines() if not ln.lstrip().startswith("#")]
    assert not any("ament_python_install_package(" in ln for ln in calls)
    # the package's message types reach the messages the code expects
    from unifygeo_ros.ros_core.messages import CANDIDATE_TYPE, RESULT_TYPE
    assert RESULT_TYPE.split("/")[0] == CANDIDATE_TYPE.split("/")[0] == "unifygeo_ros"


def test_no_package_is_nested_in_the_package():
    """colcon and rosdep stop at the repository's package.xml: anything below it that looks like
    a package would never be built."""
    skip = {".git", ".venv", "build", "out", "install", "log", "node_modules"}
    nested = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in skip and not d.startswith(".")]
        if Path(dirpath) != REPO and "package.xml" in filenames:
            nested.append(str(Path(dirpath).relative_to(REPO)))
    assert not nested, f"package.xml below the package: {nested}"


def _imported_top_modules(paths):
    mods = set()
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods.add(node.module.split(".")[0])
    return mods


def test_every_imported_ros_package_is_declared():
    declared = {e.text for e in _package_xml() if e.tag in ("depend", "exec_depend", "test_depend")}
    runtime = list((REPO / "unifygeo_ros").rglob("*.py")) + list((REPO / "launch").glob("*.py"))
    used = _imported_top_modules(runtime) & ROS_PACKAGES
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "diagnostic_msgs"} <= used     # the scan sees imports
    assert used <= declared, f"imported but not in package.xml: {sorted(used - declared)}"
    tests = _imported_top_modules((REPO / "test").glob("*.py")) & ROS_PACKAGES
    assert tests <= declared, f"imported by tests but not in package.xml: {sorted(tests - declared)}"


def _run_colcon_build(*args):
    missing = [t for t in ("cmake", "c++", "cc", "git") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: the colcon build needs cmake, a C/C++ compiler and git")
    t0 = time.monotonic()
    run = subprocess.run(["bash", str(REPO / "scripts" / "colcon_build.sh"), *args], capture_output=True,
                         text=True, timeout=1200, cwd=REPO)
    seconds = time.monotonic() - t0
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-4000:]}"
    out = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"colcon_build.sh {' '.join(args)}: {seconds:.1f} s, {out['seconds']}")
    return out


@pytest.mark.slow
def test_colcon_builds_a_plain_clone_and_python_loads_the_messages():
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: --clone builds a clone of HEAD")
    out = _run_colcon_build("--clone")
    # colcon discovered the package by itself in src/ (no --base-paths): one package, built
    assert out["ok"] and out["packages"].split() == ["unifygeo_ros"]
    v = out["verify"]
    assert v["round_trip"] and v["rosbags_rclpy_interchange"] and v["cdr_bytes"] > 100
    install = Path(out["install"]) / "unifygeo_ros"
    site = next((install / "lib").glob("python3.*/site-packages"))
    assert Path(v["module"]).is_relative_to(site)
    # what `ros2 run` / `ros2 launch` / rosidl users look for
    for rel in ("lib/unifygeo_ros/localize_node", "share/unifygeo_ros/launch/localize.launch.py",
                "share/unifygeo_ros/config/localize.yaml", "share/unifygeo_ros/package.xml",
                "share/ament_index/resource_index/packages/unifygeo_ros",
                "share/ament_index/resource_index/rosidl_interfaces/unifygeo_ros",
                "share/unifygeo_ros/msg/LocalizationResult.msg", "share/unifygeo_ros/msg/LocalizationResult.idl",
                "lib/libunifygeo_ros__rosidl_typesupport_c.so"):
        assert (install / rel).exists(), rel
    # the Python package is ours (not rosidl's empty __init__.py) and complete, weights included
    assert "extend_path" in (site / "unifygeo_ros" / "__init__.py").read_text()
    for rel in ("ros/node.py", "localizer/__init__.py", "weights/calibration.json", "msg/__init__.py"):
        assert (site / "unifygeo_ros" / rel).exists(), rel
    # the installed node starts from the install alone and refuses a bad parameter in one line
    env = dict(os.environ)
    env["PYTHONPATH"] = str(site)                       # the install, not this checkout
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(install / "lib"), env.get("LD_LIBRARY_PATH", "")])
    run = subprocess.run([sys.executable, str(install / "lib/unifygeo_ros/localize_node"), "--ros-args", "-p",
                          "top_k:=0"], capture_output=True, text=True, timeout=120, env=env, cwd=install)
    lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
    assert run.returncode == 2, "\n".join(lines[-20:])
    assert any("FATAL" in ln and "top_k" in ln for ln in lines), lines
    assert not any("Traceback" in ln for ln in lines), lines
