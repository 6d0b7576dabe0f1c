"""Start unifygeo_ros's localize_node.

    ros2 launch unifygeo_ros localize.launch.py database:=/data/munich_db
    ros2 launch unifygeo_ros localize.launch.py database:=/data/db engines:=/data/engines \\
        camera_topic:=/cam360/image_raw namespace:=car1 use_sim_time:=true config:=/path/my_params.yaml

Arguments: ``config`` (parameter file; default: this package's config/localize.yaml),
``namespace``, ``use_sim_time`` (true when replaying a bag with ``ros2 bag play --clock``),
``log_level``, ``lifecycle`` (true: the node waits unconfigured and this launch file drives
its configure and activate transitions, as a lifecycle manager would; false: the node's
``autostart`` does), and the parameter arguments ``database``, ``engines``,
``camera_topic`` (a sensor_msgs/Image topic), ``compressed_camera_topic``, ``camera_info_topic``
(sensor_msgs/CameraInfo of a calibrated pinhole camera), ``backend``, ``image_qos_reliability``,
``autostart``. A parameter argument that is not given leaves the
parameter file's value in force; a given one overrides it
(:mod:`unifygeo_ros.ros_core.launch_args`).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

from unifygeo_ros.ros_core.launch_args import FROM_CONFIG, PARAMETER_OF, argument_description, parameter_overrides


def _node(context):
    given = {name: LaunchConfiguration(name).perform(context) for name in PARAMETER_OF}
    overrides = parameter_overrides(given)
    lifecycle = LaunchConfiguration("lifecycle").perform(context).lower() == "true"
    if lifecycle:
        overrides["autostart"] = False
    typed = {name: ParameterValue(value, value_type=type(value)) for name, value in overrides.items()}
    typed["use_sim_time"] = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    node = LifecycleNode(
        package="unifygeo_ros",
        executable="localize_node",
        name="unifygeo_localizer",
        namespace=LaunchConfiguration("namespace").perform(context),
        parameters=[LaunchConfiguration("config"), typed],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
        emulate_tty=True,
    )
    if not lifecycle:
        return [node]

    def change(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[change(Transition.TRANSITION_ACTIVATE)]))
    return [node, activate_when_configured, change(Transition.TRANSITION_CONFIGURE)]


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution(
            [FindPackageShare("unifygeo_ros"), "config", "localize.yaml"]), description="parameter file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("log_level", default_value="info", description="node log level"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="true: this launch file drives configure and activate (the node's "
                                          "autostart is set false); false: the node's autostart does"),
        *(DeclareLaunchArgument(name, default_value=FROM_CONFIG, description=argument_description(name))
          for name in PARAMETER_OF),
    ]
    return LaunchDescription([*args, OpaqueFunction(function=_node)])
