"""rosbags plumbing of the replay tool: our message types, message classes, bag metadata.

Our messages (``unifygeo_ros/msg/*``) are registered in a rosbags typestore from the
``.msg`` files themselves (the repository's ``msg/``, or ``share/unifygeo_ros/msg`` of an
installed package), so the replay tool writes bags with our result message without a ROS
build.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..ros_core.messages import CANDIDATE_TYPE, RESULT_TYPE, MsgTypes

MSG_NAMES = ("LocalizationCandidate", "LocalizationResult")


def msg_dirs() -> list[Path]:
    """Where the ``.msg`` files may be, in order."""
    dirs = [Path(__file__).resolve().parents[2] / "msg",
            Path(sys.prefix) / "share" / "unifygeo_ros" / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "unifygeo_ros" / "msg")
    return dirs


def find_msg_dir() -> Path:
    for d in msg_dirs():
        if all((d / f"{n}.msg").is_file() for n in MSG_NAMES):
            return d
    raise FileNotFoundError("the unifygeo_ros message definitions (LocalizationResult.msg, LocalizationCandidate.msg) "
                            "were not found; looked in: " + ", ".join(str(d) for d in msg_dirs()))


def typestore():
    """A ROS 2 Jazzy typestore with ``unifygeo_ros/msg/*`` registered from the .msg files."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    ts = get_typestore(Stores.ROS2_JAZZY)
    d = find_msg_dir()
    types = {}
    for name in MSG_NAMES:
        types.update(get_types_from_msg((d / f"{name}.msg").read_text(), f"unifygeo_ros/msg/{name}"))
    ts.register(types)
    return ts


def rosbags_types(ts) -> MsgTypes:
    T = ts.types
    return MsgTypes(
        Time=T["builtin_interfaces/msg/Time"], Header=T["std_msgs/msg/Header"], Point=T["geometry_msgs/msg/Point"],
        Quaternion=T["geometry_msgs/msg/Quaternion"], Pose=T["geometry_msgs/msg/Pose"],
        PoseWithCovariance=T["geometry_msgs/msg/PoseWithCovariance"],
        PoseWithCovarianceStamped=T["geometry_msgs/msg/PoseWithCovarianceStamped"],
        NavSatStatus=T["sensor_msgs/msg/NavSatStatus"], NavSatFix=T["sensor_msgs/msg/NavSatFix"],
        Image=T["sensor_msgs/msg/Image"], LocalizationResult=T[RESULT_TYPE], LocalizationCandidate=T[CANDIDATE_TYPE],
        flavor="rosbags")


def drive_metadata(bag: Path) -> dict | None:
    """``<bag>.meta/drive.json`` written by ``unifygeo sim drive``, if present."""
    from ..sim.drive import drive_metadata_dir

    path = drive_metadata_dir(Path(bag)) / "drive.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None
