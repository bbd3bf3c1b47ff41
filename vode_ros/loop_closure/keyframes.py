"""The loop-closure back-end's keyframes: what one keeps, when a frame becomes one, and the
record of what happened to a keyframe's loop candidates."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from vode_ros.depth import sample_depth
from vode_ros.geometry import rotation_angle_deg
from vode_ros.loop_closure.features import Features


@dataclass
class Keyframe:
    id: int
    session: int
    stamp_ns: int
    odom_pose: np.ndarray                   # 4x4 camera optical frame in the session's odom
    features: Features
    depth: np.ndarray                       # (N,) per keypoint, NaN: unknown
    parallax: np.ndarray                    # (N,) degrees of the triangulation kept, NaN
    bow: tuple                              # bag-of-words (word indices, weights), sparse
    lost_before: bool = False               # tracking was lost since the previous keyframe
    fixed: bool = False                     # loaded from a map: not moved by optimisation
    path: float = 0.0                       # odometry path length from the session's start


@dataclass
class LoopEvent:
    stamp_ns: int                           # the query keyframe's stamp
    accepted: bool
    query: int
    candidate: int
    reason: str
    inliers: int = 0
    score: float = 0.0
    wall_time: float = field(default_factory=time.time)


def keyframe_due(cfg, dt_s: float, last_pose: np.ndarray, pose: np.ndarray,
                 scene_depth: float | None) -> bool:
    """Whether a frame ``dt_s`` after the last keyframe becomes a keyframe: not before
    ``keyframe_min_interval_s``; then after ``keyframe_max_interval_s``, or once the camera has
    turned ``keyframe_rotation_deg`` or moved ``keyframe_baseline_ratio`` x the scene depth."""
    if dt_s < cfg.keyframe_min_interval_s:
        return False
    rel = np.linalg.inv(last_pose) @ pose
    return bool(dt_s >= cfg.keyframe_max_interval_s
                or rotation_angle_deg(rel) >= cfg.keyframe_rotation_deg
                or (scene_depth is not None and
                    np.linalg.norm(rel[:3, 3]) >= cfg.keyframe_baseline_ratio * scene_depth))


def session_keyframes(keyframes: list[Keyframe], session: int, before: int,
                      count: int) -> list[Keyframe]:
    """Up to ``count`` keyframes of ``session`` with ids below ``before``, newest first."""
    out = []
    for k in reversed(keyframes):
        if k.session == session and k.id < before:
            out.append(k)
            if len(out) >= count:
                break
    return out


def sample_at(depth: np.ndarray, keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """Depth (any resolution) at keypoints given in a ``width`` x ``height`` image (nearest;
    ``vode_ros.depth.sample_depth``), float32, NaN where not positive and finite."""
    d = sample_depth(depth, keypoints, (width, height)).astype(np.float32)
    d[~(np.isfinite(d) & (d > 0))] = np.nan
    return d
