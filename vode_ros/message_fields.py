"""The values of vode's ROS messages, computed once for both ways of building them.

The node publishes rclpy messages (``vode_ros.ros.conversions``); the offline tools write the
same messages into bags as rosbags dataclasses (``vode_ros.bags.messages``) without ROS. Both fill
their message classes from the plain values here, so the two sides cannot drift apart: the same
stamp split, camera_info matrices, pose and twist layout, quaternion and image encoding.

Plain numpy: no message library is imported, so a robot running only the node needs no rosbags
and the bag tools need no rclpy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vode_ros.geometry import from_quaternion_xyzw, to_quaternion_xyzw

NS_PER_S = 1_000_000_000
DEPTH_ENCODING = "32FC1"          # REP-118: float depth, NaN = unknown


# -- time ----------------------------------------------------------------------------------------
def stamp_to_ns(stamp) -> int:
    """A ``builtin_interfaces/Time`` (anything with ``sec`` and ``nanosec``) in nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def header_stamp_ns(header) -> int:
    """The stamp of a ``std_msgs/Header`` in nanoseconds."""
    return stamp_to_ns(header.stamp)


def ns_to_sec_nanosec(ns: int) -> tuple[int, int]:
    """Nanoseconds as the (sec, nanosec) of a ``builtin_interfaces/Time``."""
    ns = int(ns)
    return ns // NS_PER_S, ns % NS_PER_S


# -- poses ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoseFields:
    """A 4x4 transform as message values: position / translation (x, y, z) and orientation /
    rotation as a quaternion (x, y, z, w)."""

    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]


def pose_fields(T: np.ndarray) -> PoseFields:
    q = to_quaternion_xyzw(T)
    return PoseFields((float(T[0, 3]), float(T[1, 3]), float(T[2, 3])),
                      (float(q[0]), float(q[1]), float(q[2]), float(q[3])))


def pose_matrix(position, orientation) -> np.ndarray:
    """The 4x4 transform of a message's position (or translation) and orientation (or rotation)."""
    return from_quaternion_xyzw([position.x, position.y, position.z],
                                [orientation.x, orientation.y, orientation.z, orientation.w])


@dataclass(frozen=True)
class OdometryFields:
    """``nav_msgs/Odometry`` values of an ``Estimate``: the pose of base_link in odom, its twist
    in base_link (linear, angular) and both 6x6 covariances row-major (36 values)."""

    pose: PoseFields
    pose_covariance: np.ndarray
    linear: tuple[float, float, float]
    angular: tuple[float, float, float]
    twist_covariance: np.ndarray


def odometry_fields(est) -> OdometryFields:
    tw = np.asarray(est.twist, float)
    return OdometryFields(
        pose_fields(est.pose), np.asarray(est.pose_covariance, float).reshape(36),
        (float(tw[0]), float(tw[1]), float(tw[2])), (float(tw[3]), float(tw[4]), float(tw[5])),
        np.asarray(est.twist_covariance, float).reshape(36))


# -- images --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageFields:
    """``sensor_msgs/Image`` values (little-endian rows of ``step`` bytes)."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


def image_fields(rgb: np.ndarray, encoding: str = "rgb8") -> ImageFields:
    """An HxWx3 uint8 RGB image in ``encoding`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16)."""
    from vode_ros.imaging import rgb_to_raw
    data, step = rgb_to_raw(rgb, encoding)
    return ImageFields(int(rgb.shape[0]), int(rgb.shape[1]), encoding, 0, int(step), data)


def depth_image_fields(depth: np.ndarray) -> ImageFields:
    """A depth map as a 32FC1 image (REP-118: the odometry's unit, NaN invalid)."""
    d = np.ascontiguousarray(depth, dtype=np.float32)
    return ImageFields(int(d.shape[0]), int(d.shape[1]), DEPTH_ENCODING, 0, int(d.shape[1]) * 4,
                       d.tobytes())


def confidence_image_fields(confidence: np.ndarray) -> ImageFields:
    """A confidence map (0..1) as a 32FC1 image beside the depth image."""
    return depth_image_fields(confidence)


@dataclass(frozen=True)
class PointCloudFields:
    """``sensor_msgs/PointCloud2`` values of an unorganised cloud of x y z (float32) and rgb
    (the float32 field RViz reads: 0x00RRGGBB reinterpreted), little-endian, 16 bytes a point."""

    width: int
    fields: tuple                   # (name, offset) of each FLOAT32 field
    point_step: int
    row_step: int
    data: bytes


def point_cloud_fields(xyz: np.ndarray, rgb: np.ndarray) -> PointCloudFields:
    n = len(xyz)
    cloud = np.empty((n, 4), np.float32)
    cloud[:, :3] = xyz
    c = rgb.astype(np.uint32)
    cloud[:, 3] = ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)
    return PointCloudFields(n, (("x", 0), ("y", 4), ("z", 8), ("rgb", 12)), 16, 16 * n,
                            cloud.tobytes())


@dataclass(frozen=True)
class CameraInfoFields:
    """``sensor_msgs/CameraInfo`` values of an undistorted pinhole camera: plumb_bob with zero
    distortion, identity rectification, P = [K | 0]."""

    width: int
    height: int
    distortion_model: str
    d: np.ndarray
    k: np.ndarray
    r: np.ndarray
    p: np.ndarray


def camera_info_fields(camera) -> CameraInfoFields:
    K = np.asarray(camera.K, float)
    return CameraInfoFields(int(camera.width), int(camera.height), "plumb_bob", np.zeros(5),
                            K.reshape(-1), np.eye(3).reshape(-1),
                            np.hstack([K, np.zeros((3, 1))]).reshape(-1))
