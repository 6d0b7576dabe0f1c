"""unifygeo_ros: cross-view geo-localization (UnifyGeo) for ROS 2.

The package is a ROS-free core (``model``, ``data``, ``sim``, later ``database``,
``localizer``, ``backends``, ``replay``) plus a thin ROS layer that alone imports rclpy.
"""

__version__ = "0.1.0"
