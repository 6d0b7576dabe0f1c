"""The thin ROS 2 layer (rclpy): the ``localize_node`` node and message conversion.

The only part of unifygeo_ros that imports rclpy and ROS message packages; the work is
done by the ROS-free :mod:`unifygeo_ros.ros_core`, which ``unifygeo replay`` runs too.
"""
