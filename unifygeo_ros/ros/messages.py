"""rclpy message classes for :mod:`unifygeo_ros.ros_core.messages`, and our own messages.

``unifygeo_msgs`` (the interface package built from the repository's ``msg/``) is optional:
:func:`load_result_types` says why it is unavailable when it does not import, and the node
then publishes only the standard messages.
"""

from __future__ import annotations

from ..ros_core.messages import MsgTypes


def load_result_types():
    """``(LocalizationResult, LocalizationCandidate, None)`` or ``(None, None, reason)``."""
    try:
        from unifygeo_msgs.msg import LocalizationCandidate, LocalizationResult
    except ImportError as exc:
        return None, None, (f"the unifygeo_msgs package does not import ({exc}); build it with "
                            f"scripts/build_msgs_colcon.sh or colcon and source its install/setup.bash")
    except Exception as exc:   # a broken build: wrong Python, missing shared libraries
        return None, None, f"the unifygeo_msgs package failed to load ({type(exc).__name__}: {exc})"
    return LocalizationResult, LocalizationCandidate, None


def rclpy_types(with_result: bool = True) -> tuple[MsgTypes, str | None]:
    """The :class:`MsgTypes` of rclpy; the second value is why the result type is missing."""
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point, Pose, PoseWithCovariance, PoseWithCovarianceStamped, Quaternion
    from sensor_msgs.msg import Image, NavSatFix, NavSatStatus
    from std_msgs.msg import Header

    result = candidate = None
    reason = "publish_result is false"
    if with_result:
        result, candidate, reason = load_result_types()
    types = MsgTypes(Time=Time, Header=Header, Point=Point, Quaternion=Quaternion, Pose=Pose,
                     PoseWithCovariance=PoseWithCovariance, PoseWithCovarianceStamped=PoseWithCovarianceStamped,
                     NavSatStatus=NavSatStatus, NavSatFix=NavSatFix, Image=Image,
                     LocalizationResult=result, LocalizationCandidate=candidate, flavor="rclpy")
    return types, reason
