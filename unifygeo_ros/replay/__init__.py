"""``unifygeo replay`` (ROS-free): rosbag2 in (via rosbags), the node's localization path
(:mod:`unifygeo_ros.ros_core`), a report and an output bag out. See :mod:`.core`."""
