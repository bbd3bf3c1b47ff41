"""Launch vode_node (monocular visual odometry + depth) and, optionally, RViz.

    ros2 launch vode_ros vode.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info
    ros2 launch vode_ros vode.launch.py namespace:=robot1 camera_x:=0.12 use_rviz:=true
    ros2 launch vode_ros vode.launch.py managed:=true      # vode_lifecycle_node, unconfigured

Arguments (``ros2 launch vode_ros vode.launch.py --show-args`` lists them):
  image, camera_info     the camera's topics (``image/compressed`` follows ``image``)
  params_file            node parameters; default <share>/vode_ros/config/vode.yaml
  namespace              namespace of the node and its outputs (odom, path, depth/...);
                         TF (/tf, /tf_static) and /diagnostics stay global
  use_rviz, use_sim_time, use_compressed
  managed                start vode_lifecycle_node (a managed node: it waits unconfigured for a
                         lifecycle manager, e.g. nav2's lifecycle_manager with this node in its
                         node_names, or `ros2 lifecycle set /vode_node configure`, then
                         `activate`) instead of vode_node
  camera_x/y/z, camera_roll/pitch/yaw
                         static extrinsic base_link -> camera_optical_frame (metres, radians, fixed
                         axes XYZ); the default rotation is the REP-103 optical one. These override
                         camera.base_to_camera_* from params_file.

Large images and Fast DDS: the default shared-memory segment (512 KiB) is too small for camera
images, and best-effort samples that do not fit are dropped without a word. The node is started
with FASTDDS_DEFAULT_PROFILES_FILE=<share>/vode_ros/config/fastdds_shm.xml (on Humble and Jazzy,
whose Fast DDS 2.x reads only the older name, FASTRTPS_DEFAULT_PROFILES_FILE as well), unless you
set either variable yourself, which enlarges the segment, but that only helps the node's own writers (depth
images). Start the camera driver with the same variable, e.g.

    share=$(ros2 pkg prefix vode_ros)/share/vode_ros
    FASTDDS_DEFAULT_PROFILES_FILE=$share/config/fastdds_shm.xml \
    FASTRTPS_DEFAULT_PROFILES_FILE=$share/config/fastdds_shm.xml ros2 run <camera_pkg> <camera_node>

Parameter files and namespaces: ROS applies a file's ``vode_node:`` section only to a node in the
root namespace. With namespace:=..., key the file ``/**/vode_node:`` (any namespace) or with the
node's full name; the launch logs a warning when it sees a file that will not apply.
"""
import math
import os

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'vode_ros'
NODE_NAME = 'vode_node'
# Fast DDS 3 (Kilted and later) reads the first name (and warns when the second is set), Fast DDS
# 2.x (the releases below) only the second
FASTDDS_PROFILE_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
FAST_DDS_2_RELEASES = ('humble', 'iron', 'jazzy')
HALF_PI = '-1.5707963267948966'

# (name, default, description); defaults are strings, as every launch argument is.
ARGUMENTS = [
    ('image', '/camera/image_raw', 'Camera image topic (sensor_msgs/Image); with use_compressed '
     'the node reads <image>/compressed instead.'),
    ('camera_info', '/camera/camera_info', 'Camera intrinsics topic (sensor_msgs/CameraInfo).'),
    ('namespace', '', 'Namespace of vode_node and its topics (odom, path, depth/image, ...).'),
    ('use_rviz', 'false', 'Start RViz with config/vode.rviz.'),
    ('use_sim_time', 'false', 'Use /clock (bag replay with --clock).'),
    ('use_compressed', 'false', 'Subscribe <image>/compressed (sensor_msgs/CompressedImage).'),
    ('managed', 'false', 'Start vode_lifecycle_node, a managed node that waits unconfigured for '
     'its lifecycle transitions (configure, activate), instead of vode_node.'),
    ('camera_x', '0.0', 'Camera position in base_link, x (metres).'),
    ('camera_y', '0.0', 'Camera position in base_link, y (metres).'),
    ('camera_z', '0.0', 'Camera position in base_link, z (metres).'),
    ('camera_roll', HALF_PI, 'camera_optical_frame orientation in base_link, roll (radians, '
     'fixed axes XYZ). Default with pitch 0, yaw -pi/2: REP-103 optical (z forward, x right, '
     'y down).'),
    ('camera_pitch', '0.0', 'camera_optical_frame orientation in base_link, pitch (radians).'),
    ('camera_yaw', HALF_PI, 'camera_optical_frame orientation in base_link, yaw (radians).'),
]

_TRUE = ('true', '1')
_FALSE = ('false', '0')


def _share(*parts):
    return PathJoinSubstitution([FindPackageShare(PACKAGE), *parts])


def _bool(name, text):
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"launch argument {name}:={text!r} must be true or false")


def _float(name, text):
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"launch argument {name}:={text!r} must be a number "
                         "(metres or radians)") from None
    if not math.isfinite(value):
        raise ValueError(f"launch argument {name}:={text!r} must be finite")
    return value


def _join_namespace(base, namespace):
    """launch_ros's rule: a relative namespace goes under the enclosing one (PushRosNamespace)."""
    namespace = namespace.strip()
    if not namespace.startswith('/') and base:
        namespace = base.rstrip('/') + '/' + namespace
    namespace = namespace.strip('/')
    return '/' + namespace if namespace else ''


def _absolute(namespace, topic):
    """The name a node in `namespace` ('' for the root) resolves a relative `topic` to."""
    return topic if topic.startswith('/') else f'{namespace}/{topic}'


def _params_file_warning(path, namespace):
    """A warning when the file's sections cannot apply to the namespaced node, else None."""
    if namespace in ('', '/'):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None  # launch_ros reports a missing file; the node reports a bad one
    if not isinstance(data, dict):
        return None
    fqn = f'{namespace}/{NODE_NAME}'
    keys = {str(k) for k in data}
    applies = {'/**', f'/**/{NODE_NAME}', fqn, fqn.lstrip('/')}
    if keys & {NODE_NAME, '/' + NODE_NAME} and not keys & applies:
        return (f"params_file {path} keys its parameters '{NODE_NAME}', which ROS applies only to "
                f"/{NODE_NAME}: they will NOT reach {fqn}. Key them '/**/{NODE_NAME}' "
                f"(any namespace) or '{fqn}'.")
    return None


def _launch_setup(context):
    """Evaluate the arguments into typed values and build the nodes."""
    def arg(name):
        return context.perform_substitution(LaunchConfiguration(name))

    namespace = arg('namespace').strip()
    node_ns = _join_namespace(context.launch_configurations.get('ros_namespace'), namespace)
    image = arg('image')
    camera_info = arg('camera_info')
    params_file = arg('params_file')
    use_sim_time = _bool('use_sim_time', arg('use_sim_time'))
    use_compressed = _bool('use_compressed', arg('use_compressed'))
    managed = _bool('managed', arg('managed'))
    xyz = [_float(n, arg(n)) for n in ('camera_x', 'camera_y', 'camera_z')]
    rpy = [_float(n, arg(n)) for n in ('camera_roll', 'camera_pitch', 'camera_yaw')]

    # The node's own writers need the large SHM segment; a profile the user chose wins.
    environment = getattr(context, 'environment', os.environ)
    env = {}
    profile = context.perform_substitution(_share('config', 'fastdds_shm.xml'))
    if not any(v in environment for v in FASTDDS_PROFILE_VARIABLES) and os.path.isfile(profile):
        legacy = environment.get('ROS_DISTRO', '') in FAST_DDS_2_RELEASES
        env.update({v: profile for v in FASTDDS_PROFILE_VARIABLES[:2 if legacy else 1]})

    actions = []
    warning = _params_file_warning(params_file, node_ns)
    if warning:
        actions.append(LogInfo(msg='[vode.launch.py] WARNING: ' + warning))

    actions.append(Node(
        package=PACKAGE,
        executable='vode_lifecycle_node' if managed else 'vode_node',
        name=NODE_NAME,
        namespace=namespace,
        parameters=[
            params_file,
            {
                'camera.base_to_camera_xyz': xyz,
                'camera.base_to_camera_rpy': rpy,
                'use_sim_time': use_sim_time,
                'ros.use_compressed': use_compressed,
            },
        ],
        remappings=[
            ('image', image),
            ('camera_info', camera_info),
            ('image/compressed', image.rstrip('/') + '/compressed'),
        ],
        additional_env=env,
        output='screen',
        emulate_tty=True,
    ))

    # RViz's displays name absolute topics (/odom, /camera/image_raw, ...); point them at this
    # launch's topics.
    rviz_remaps = [(f'/{t}', _absolute(node_ns, t))
                   for t in ('odom', 'path', 'depth/image', 'map_path', 'loop_closures')]
    rviz_remaps.append(('/camera/image_raw', _absolute(node_ns, image)))
    actions.append(Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        arguments=['-d', context.perform_substitution(_share('config', 'vode.rviz'))],
        parameters=[{'use_sim_time': use_sim_time}],
        remappings=[(a, b) for a, b in rviz_remaps if a != b],
        output='screen',
        condition=IfCondition(LaunchConfiguration('use_rviz')),
    ))
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in ARGUMENTS]
    declared.insert(2, DeclareLaunchArgument(
        'params_file', default_value=_share('config', 'vode.yaml'),
        description='vode_node parameter file (see config/vode.yaml; with a namespace, key it '
                    "'/**/vode_node')."))
    return LaunchDescription(declared + [OpaqueFunction(function=_launch_setup)])
