"""Rigid transforms as 4x4 matrices; rotations through scipy's Rotation."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation


def make_transform(rotation: np.ndarray | Rotation, translation: ArrayLike) -> np.ndarray:
    T = np.eye(4)
    R = rotation.as_matrix() if isinstance(rotation, Rotation) else np.asarray(rotation)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(translation, dtype=float).reshape(3)
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform without a general matrix inverse."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def transform_points(T: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``T`` applied to points (N, 3)."""
    return X @ T[:3, :3].T + T[:3, 3]


def from_axis_angle_translation(vec6: ArrayLike) -> np.ndarray:
    """(rx, ry, rz, tx, ty, tz): axis-angle rotation vector then translation."""
    v = np.asarray(vec6, dtype=float).reshape(6)
    return make_transform(Rotation.from_rotvec(v[:3]), v[3:])


def from_xyz_rpy(xyz: ArrayLike, rpy: ArrayLike) -> np.ndarray:
    """Transform from a position and fixed-axis roll, pitch, yaw (the URDF convention)."""
    return make_transform(Rotation.from_euler("xyz", rpy), xyz)


def to_quaternion_xyzw(T: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(T[:3, :3]).as_quat()


def from_quaternion_xyzw(translation: ArrayLike, quat_xyzw: ArrayLike) -> np.ndarray:
    return make_transform(Rotation.from_quat(quat_xyzw), translation)


def rotation_angle_rad(T: np.ndarray) -> float:
    """The angle of the rotation of ``T`` (a 4x4 transform or a 3x3 rotation), in radians: the
    one home of this formula (scipy's Rotation: accurate near 0, where arccos of the trace is not,
    and it orthonormalises a slightly drifted matrix instead of giving NaN)."""
    return float(Rotation.from_matrix(np.asarray(T, dtype=float)[:3, :3]).magnitude())


def rotation_angle_deg(T: np.ndarray) -> float:
    """The angle of the rotation of ``T`` (4x4 or 3x3), in degrees."""
    return float(np.degrees(rotation_angle_rad(T)))


def skew(v: np.ndarray) -> np.ndarray:
    """The 3x3 cross-product matrix of ``v``: ``skew(v) @ x == np.cross(v, x)``."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def adjoint(T: np.ndarray) -> np.ndarray:
    """6x6 adjoint for (translation, rotation) ordered tangent vectors: maps a perturbation in
    the child frame of T to its parent frame."""
    R, t = T[:3, :3], T[:3, 3]
    A = np.zeros((6, 6))
    A[:3, :3] = R
    A[:3, 3:] = skew(t) @ R
    A[3:, 3:] = R
    return A


def is_finite_transform(T: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(T))) and abs(np.linalg.det(T[:3, :3]) - 1.0) < 1e-3
