"""Start unifygeo_ros's localize_node.

    ros2 launch unifygeo_ros localize.launch.py database:=/data/munich_db
    ros2 launch unifygeo_ros localize.launch.py database:=/data/db engines:=/data/engines \\
        camera_topic:=/cam360/image_raw namespace:=car1 use_sim_time:=true config:=/path/my_params.yaml

Arguments: ``database`` (required), ``engines`` (default: DATABASE/engines), ``config``
(parameter file; default: this package's config/localize.yaml), ``namespace``,
``camera_topic`` (a sensor_msgs/Image topic; ``compressed_camera_topic`` for a
CompressedImage one), ``backend``, ``use_sim_time`` (true when replaying a bag with
``ros2 bag play --clock``), ``log_level``. Arguments given here override the file.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from unifygeo_ros.options import option

# Launch argument -> the node parameter it sets (defaults and help from the declaration).
PARAMETER_OF = {"engines": "engines", "camera_topic": "image_topic",
                "compressed_camera_topic": "compressed_image_topic", "backend": "backend"}


def _argument(name: str) -> DeclareLaunchArgument:
    o = option(PARAMETER_OF[name])
    return DeclareLaunchArgument(name, default_value=str(o.default), description=f"{o.help} (parameter {o.name})")


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("database", description="folder of the aerial database (`unifygeo build-db`)"),
        _argument("engines"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution(
            [FindPackageShare("unifygeo_ros"), "config", "localize.yaml"]), description="parameter file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        _argument("camera_topic"),
        _argument("compressed_camera_topic"),
        _argument("backend"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("log_level", default_value="info", description="node log level"),
    ]

    def text(name):
        # typed explicitly: an empty or numeric-looking string must stay a string
        return ParameterValue(LaunchConfiguration(name), value_type=str)

    overrides = {
        "database": text("database"),
        **{parameter: text(argument) for argument, parameter in PARAMETER_OF.items()},
        "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
    }
    node = Node(
        package="unifygeo_ros",
        executable="localize_node",
        name="unifygeo_localizer",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("config"), overrides],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([*args, node])
