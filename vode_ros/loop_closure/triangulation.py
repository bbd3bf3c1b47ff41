"""Depth of a keyframe's keypoints from its neighbours and the odometry between them.

When the learned depth is of relative or unknown scale, verification lifts points with depths
triangulated from two keyframes and the odometry's relative pose: in the odometry's own units,
whatever they are, so a loop's Sim(3) measurement is consistent with the odometry edges of the
pose graph (the monocular-SLAM way of keeping one scale). A keypoint keeps the triangulation
with the largest parallax it has taken part in.

The odometry's rotation between two keyframes is the weak part: a fraction of a degree of error
against a few degrees of parallax biases every depth. So the relative pose is re-estimated from
the matches themselves (essential matrix, USAC/RANSAC, ``cv2.recoverPose``) where they determine
it and it agrees with the odometry; the odometry then only gives the baseline's length (the
units), as in monocular SLAM.
"""
from __future__ import annotations

import cv2
import numpy as np

from vode_ros.geometry import rotation_angle_deg
from vode_ros.loop_closure.features import Features, match_descriptors


def refine_relative_pose(xa: np.ndarray, xb: np.ndarray, Ka: np.ndarray, Kb: np.ndarray,
                         T_a_b: np.ndarray, threshold_px: float = 1.0,
                         max_rotation_diff_deg: float = 5.0, max_direction_diff_deg: float = 30.0
                         ) -> np.ndarray | None:
    """``T_a_b`` with rotation and translation direction from the essential matrix of the
    matches (pixels ``xa``, ``xb``), the odometry's baseline length kept; None when the matches
    do not determine it or disagree with the odometry."""
    base = float(np.linalg.norm(T_a_b[:3, 3]))
    if len(xa) < 15 or base <= 0:
        return None
    # normalised coordinates, so that one essential matrix serves two different cameras
    na = cv2.undistortPoints(xa.reshape(-1, 1, 2), Ka, None).reshape(-1, 2)
    nb = cv2.undistortPoints(xb.reshape(-1, 1, 2), Kb, None).reshape(-1, 2)
    f = 0.5 * (Ka[0, 0] + Kb[0, 0])
    E, mask = cv2.findEssentialMat(nb, na, np.eye(3), method=cv2.RANSAC, prob=0.999,
                                   threshold=threshold_px / f)
    if E is None or E.shape != (3, 3) or mask is None or mask.sum() < 15:
        return None
    n, R, t, _ = cv2.recoverPose(E, nb, na, np.eye(3), mask=mask.copy())
    if n < 15:
        return None
    # recoverPose gives x_a = R x_b + t: the pose of b in a
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t.reshape(3) * base
    dR = T_a_b[:3, :3].T @ R
    rot = rotation_angle_deg(dR)
    cosd = float(t.reshape(3) @ T_a_b[:3, 3]) / base
    if rot > max_rotation_diff_deg or cosd < np.cos(np.radians(max_direction_diff_deg)):
        return None
    return T


def triangulate_pair(a: Features, b: Features, T_a_b: np.ndarray, min_parallax_deg: float = 1.0,
                     max_reprojection_px: float = 2.0, ratio: float = 0.8, refine: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Triangulate matches between keyframes ``a`` and ``b`` (``T_a_b``: b's camera in a's).

    Returns (indices in a, depths in a, indices in b, depths in b, parallax angles in degrees)
    of the points that pass: positive depth in both, parallax at least ``min_parallax_deg``,
    reprojection error at most ``max_reprojection_px`` in both images. With ``refine`` the
    relative pose comes from the matches where they determine it (``refine_relative_pose``)."""
    empty = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    m = match_descriptors(a.descriptors, b.descriptors, ratio)
    if len(m) < 8:
        return empty
    if refine:
        T = refine_relative_pose(a.keypoints[m[:, 0]].astype(np.float64),
                                 b.keypoints[m[:, 1]].astype(np.float64), a.camera.K,
                                 b.camera.K, T_a_b)
        if T is not None:
            T_a_b = T
    T_b_a = np.linalg.inv(T_a_b)
    Ka, Kb = a.camera.K, b.camera.K
    Pa = Ka @ np.eye(3, 4)
    Pb = Kb @ T_b_a[:3, :]
    xa = a.keypoints[m[:, 0]].astype(np.float64)
    xb = b.keypoints[m[:, 1]].astype(np.float64)
    H = cv2.triangulatePoints(Pa, Pb, xa.T, xb.T)
    w = H[3]
    good = np.abs(w) > 1e-12
    X = np.full((len(m), 3), np.nan)
    X[good] = (H[:3, good] / w[good]).T
    Xb = X @ T_b_a[:3, :3].T + T_b_a[:3, 3]
    with np.errstate(invalid="ignore"):
        ok = good & (X[:, 2] > 0) & (Xb[:, 2] > 0)
    # parallax: angle between the rays from both centres
    ca = np.zeros(3)
    cb = T_a_b[:3, 3]
    ra = X - ca
    rb = X - cb
    cosang = np.sum(ra * rb, 1) / np.maximum(np.linalg.norm(ra, axis=1) *
                                             np.linalg.norm(rb, axis=1), 1e-12)
    parallax = np.degrees(np.arccos(np.clip(cosang, -1, 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        pa = (X @ Ka.T)
        pa = pa[:, :2] / pa[:, 2:3]
        pb = (Xb @ Kb.T)
        pb = pb[:, :2] / pb[:, 2:3]
        ea = np.linalg.norm(pa - xa, axis=1)
        eb = np.linalg.norm(pb - xb, axis=1)
        ok &= (parallax >= min_parallax_deg) & (ea <= max_reprojection_px) & \
            (eb <= max_reprojection_px)
    ok &= np.isfinite(parallax)
    return m[ok, 0], X[ok, 2], m[ok, 1], Xb[ok, 2], parallax[ok]


def merge_depths(depth: np.ndarray, parallax: np.ndarray, idx: np.ndarray, new_depth: np.ndarray,
                 new_parallax: np.ndarray) -> None:
    """Keep, per keypoint, the depth of the triangulation with the largest parallax (in place)."""
    better = ~(parallax[idx] >= new_parallax)         # NaN parallax: no depth yet
    depth[idx[better]] = new_depth[better]
    parallax[idx[better]] = new_parallax[better]
