"""Setting the odometry's pose from outside, without breaking tracking.

Two ways in, one rule:
- ``initialpose`` (geometry_msgs/PoseWithCovarianceStamped), what RViz's "2D Pose Estimate" tool
  publishes;
- ``~/set_pose``, a service of type nav_msgs/srv/SetMap, whose request carries the same
  PoseWithCovarianceStamped (``initial_pose``). nav_msgs is a message package every ROS 2 release
  ships (on PyPI too), and no release has a service that carries only a pose; the request's
  ``map`` is ignored (leave it empty).

The pose is that of ``base_link``. Its frame may be the odometry frame (or empty: taken as it) or
the map frame: then it is moved into odom through the loop-closure back-end's map -> odom (identity
without loop closure, where odom is the map). Another frame is refused: the node has no TF buffer.
The covariance, when finite, becomes the odometry's pose covariance; otherwise the current one
is kept.

Only the accumulated pose changes: the reference frame, the tracker's keyframe and map and the
tracking state stay, so the next /odom is the set pose composed with the next step.
"""
from __future__ import annotations

import numpy as np

from vode_ros.errors import InputError
from vode_ros.geometry import from_quaternion_xyzw


def pose_with_covariance_to_matrix(msg) -> tuple[np.ndarray, np.ndarray | None]:
    """(4x4 pose, 6x6 covariance or None when not all finite) of a PoseWithCovarianceStamped;
    refuses a non-finite position or a quaternion that is not a rotation."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    position = np.array([p.x, p.y, p.z], dtype=float)
    quat = np.array([q.x, q.y, q.z, q.w], dtype=float)
    if not (np.all(np.isfinite(position)) and np.all(np.isfinite(quat))):
        raise InputError("pose", "the pose has non-finite values; expected a finite position "
                         "and a unit quaternion")
    norm = float(np.linalg.norm(quat))
    if norm < 1e-6:
        raise InputError("pose", "the pose's quaternion is zero; expected a unit quaternion "
                         "(w = 1 for no rotation)")
    T = from_quaternion_xyzw(position, quat / norm)
    cov = np.asarray(msg.pose.covariance, dtype=float).reshape(6, 6)
    return T, (cov if np.all(np.isfinite(cov)) else None)


def pose_in_odom(T: np.ndarray, frame_id: str, odom_frame: str, map_frame: str,
                 map_to_odom: np.ndarray | None) -> np.ndarray:
    """``T`` (base_link in ``frame_id``) as odom -> base_link."""
    frame = frame_id.lstrip("/")
    if frame in ("", odom_frame):
        return T
    if frame == map_frame:
        M = np.eye(4) if map_to_odom is None else map_to_odom
        return np.linalg.inv(M) @ T
    raise InputError("pose", f"pose in frame '{frame_id}': expected the odometry frame "
                     f"'{odom_frame}' or the map frame '{map_frame}'")


def set_odometry_pose(vo, T_odom: np.ndarray, covariance: np.ndarray | None) -> None:
    """Move the odometry's accumulated pose (odom -> base_link) to ``T_odom``; the caller holds
    the lock that guards the odometry."""
    vo.pose = np.array(T_odom, dtype=float)
    if covariance is not None:
        vo.pose_covariance = 0.5 * (covariance + covariance.T)
