"""Similarity transforms as 4x4 matrices ``[[s R, t], [0, 1]]``: ``p' = s R p + t``.

A keyframe's corrected pose is a similarity from its camera frame (in the odometry's units at
that keyframe) to the map, so a pose graph of them corrects scale drift as well as rotation and
translation (Strasdat et al., "Scale drift-aware large scale monocular SLAM", RSS 2010).
"""
from __future__ import annotations

import numpy as np

from vode_ros.geometry import rotation_angle_deg


def sim3(R: np.ndarray, t, s: float = 1.0) -> np.ndarray:
    M = np.eye(4)
    M[:3, :3] = s * np.asarray(R, float)
    M[:3, 3] = np.asarray(t, float).reshape(3)
    return M


def parts(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(R, t, s) of a similarity matrix."""
    A = np.asarray(M, float)[:3, :3]
    s = float(np.cbrt(np.linalg.det(A)))
    return A / s, np.asarray(M, float)[:3, 3].copy(), s


def scale_of(M: np.ndarray) -> float:
    return float(np.cbrt(np.linalg.det(np.asarray(M, float)[:3, :3])))


def inverse(M: np.ndarray) -> np.ndarray:
    R, t, s = parts(M)
    return sim3(R.T, -R.T @ t / s, 1.0 / s)


def rigid(M: np.ndarray) -> np.ndarray:
    """The rigid part: the same rotation and translation, scale dropped."""
    R, t, _ = parts(M)
    return sim3(R, t)


def rotation_deg(M: np.ndarray) -> float:
    """The angle of the rotation part, in degrees."""
    return rotation_angle_deg(parts(M)[0])


def to_gtsam(M: np.ndarray):
    """gtsam.Similarity3: gtsam applies ``s (R p + t_g)``, so ``t_g = t / s``."""
    import gtsam
    R, t, s = parts(M)
    return gtsam.Similarity3(gtsam.Rot3(R), t / s, s)


def from_gtsam(S) -> np.ndarray:
    s = float(S.scale())
    return sim3(S.rotation().matrix(), s * np.asarray(S.translation(), float), s)
