"""The launch file's rule for its arguments (ROS-free, so that it is tested without ``launch``).

``launch/localize.launch.py`` declares a few arguments for the parameters users set most
(``database``, ``engines``, ``camera_topic``, ...). An argument the user does not give
keeps the :data:`FROM_CONFIG` default and leaves the value of the parameter file
(``config:=``) in force; an argument the user gives overrides the file. Defaults and
help texts come from the option declaration (:mod:`unifygeo_ros.options`).
"""

from __future__ import annotations

from typing import Mapping

from ..options import option

#: The default of every parameter argument: "not given, keep the parameter file's value".
#: Parentheses cannot appear in a topic, a path given on purpose or a backend name.
FROM_CONFIG = "(from config)"

#: Launch argument -> the node parameter it sets.
PARAMETER_OF: dict[str, str] = {
    "database": "database",
    "engines": "engines",
    "camera_topic": "image_topic",
    "compressed_camera_topic": "compressed_image_topic",
    "camera_info_topic": "camera_info_topic",
    "backend": "backend",
    "image_qos_reliability": "image_qos_reliability",
    "autostart": "autostart",
}


def argument_description(argument: str) -> str:
    """The help of ``argument``: its parameter's, with the parameter's name and default."""
    o = option(PARAMETER_OF[argument])
    shown = o.default if o.default != "" else '""'
    return (f"{o.help}; sets parameter {o.name} (default: the parameter file's value, whose own default is "
            f"{shown})")


def parameter_overrides(values: Mapping[str, str]) -> dict[str, object]:
    """Node parameters from the launch arguments' values: only the arguments that were given
    (not :data:`FROM_CONFIG`), converted to the parameter's type. ValueError names an
    argument whose value the parameter does not accept."""
    out: dict[str, object] = {}
    for argument, text in values.items():
        if argument not in PARAMETER_OF or text == FROM_CONFIG:
            continue
        o = option(PARAMETER_OF[argument])
        if isinstance(o.default, bool):
            low = text.strip().lower()
            if low not in ("true", "false"):
                raise ValueError(f"{argument}:={text}: expected true or false")
            value: object = low == "true"
        else:
            value = text
        if o.choices and value not in o.choices:
            raise ValueError(f"{argument}:={text}: expected one of {', '.join(map(str, o.choices))}")
        out[o.name] = value
    return out
