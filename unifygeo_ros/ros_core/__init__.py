"""The ROS-free processing core shared by the ROS 2 node and ``unifygeo replay``.

One camera frame in (an ``Image`` or ``CompressedImage``-like message, its stamp and the
latest GNSS / odometry messages), base_link's pose with covariance out. Nothing here
imports rclpy or a ROS message package: the node (:mod:`unifygeo_ros.ros`) feeds it rclpy
messages, the replay tool (:mod:`unifygeo_ros.replay`) feeds it messages read from a
rosbag2 by rosbags; both read the same fields, so both run exactly this code.

* :mod:`.config`: :class:`NodeConfig`, the node's parameters as built from the option
  declaration (:mod:`unifygeo_ros.options`), with their checks.
* :mod:`.images`: ``sensor_msgs/Image`` and ``CompressedImage`` fields -> RGB uint8.
* :mod:`.geometry`: map frames (database frame -> output map frame), the camera ->
  base_link extrinsic with covariance propagation, quaternions.
* :mod:`.priors`: NavSatFix -> position prior, Odometry -> heading prior (with the frame
  rules of the node's documentation).
* :mod:`.pipeline`: :class:`FrameProcessor`, the localization path: decode, priors,
  ``Localizer.localize``, frame conversions, the no-fix and confidence gates -> :class:`PoseEstimate`.
* :mod:`.rig_sync`: :class:`~.rig_sync.RigSynchronizer`, the approximate-time pairing of a
  camera rig's frames into sets (one frame per camera within ``rig.slop_s``).
* :mod:`.rig_cameras`: :class:`~.rig_cameras.RigCameras`, the rig's cameras: CameraInfo per
  camera, orientations from ``/tf_static`` (:class:`~.rig_cameras.StaticTransforms`) or
  ``rig.yaws_deg`` -> the :class:`~unifygeo_ros.types.Rig` of a set.
* :mod:`.messages`: builds the output messages from a :class:`PoseEstimate` with either
  rclpy's or rosbags' message classes (both accept the same keyword constructors).
* :mod:`.heatmap`: D over the chosen tile as an RGB image.
* :mod:`.stats`: rolling rate and latency for the diagnostics.
"""
