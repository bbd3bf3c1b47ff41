"""Message type names and the rosbags type stores vode's bags are written and read with."""
from __future__ import annotations

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF = "tf2_msgs/msg/TFMessage"
ODOMETRY = "nav_msgs/msg/Odometry"
PATH = "nav_msgs/msg/Path"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
POSE_WITH_COVARIANCE_STAMPED = "geometry_msgs/msg/PoseWithCovarianceStamped"
CLOCK = "rosgraph_msgs/msg/Clock"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"
# Message types whose topics are sensor streams: offered with the sensor-data QoS profile.
SENSOR_TYPES = (IMAGE, COMPRESSED, CAMERA_INFO)
# The rosbags type stores to write with, newest first (the venv's rclpy is Kilted; the
# definitions of the message types above are the same from Humble on).
STORE_PREFERENCE = ("ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE")

_STORES: dict[str, object] = {}


def _store(name: str):
    """The rosbags type store ``Stores[name]`` (created once per name)."""
    if name not in _STORES:
        from rosbags.typesys import Stores, get_typestore
        _STORES[name] = get_typestore(Stores[name])
    return _STORES[name]


def typestore():
    """The type store every bag of vode is written with: the newest of ``STORE_PREFERENCE``
    that rosbags knows, else its latest."""
    from rosbags.typesys import Stores
    return _store(next((n for n in STORE_PREFERENCE if n in Stores.__members__), "LATEST"))


def typestore_for_distro(distro: str | None):
    """The type store of a bag recorded on ROS 2 ``distro`` (its metadata's ``ros_distro``),
    rosbags' latest when the distribution is unknown or not given."""
    from rosbags.typesys import Stores
    name = f"ROS2_{(distro or '').upper()}"
    return _store(name if name in Stores.__members__ else "LATEST")
