"""How the keyframe pose graph corrects the odometry: the uncertainty of its edges, whether a
loop is plausible against the drift the odometry could have made, and the corrected poses.

A keyframe's node is a similarity from its camera frame (in the odometry's units) to the map; a
frame's correction is that of the latest keyframe at or before it (``C_k O_k^-1 O_f``).
"""
from __future__ import annotations

import numpy as np

from vode_ros.loop_closure import sim3
from vode_ros.loop_closure.keyframes import Keyframe
from vode_ros.loop_closure.pose_graph import PoseGraph

ANCHOR_SIGMA = 1e-6           # prior on the anchored first keyframe and on loaded keyframes
WEAK_SIGMA = 1e3              # prior on the first keyframe of an unanchored session


def odometry_sigmas(cfg, length: float, typical: float, lost: bool) -> np.ndarray:
    """Standard deviations (7,) of an odometry edge of ``length`` (``typical``: the recent
    median), inflated when tracking was lost in between."""
    trans = cfg.odometry_translation_sigma * max(length, 0.5 * typical, 1e-6)
    sig = np.r_[np.full(3, np.radians(cfg.odometry_rotation_sigma_deg)), np.full(3, trans),
                cfg.odometry_scale_sigma]
    if lost:
        sig = sig * cfg.lost_sigma_inflation
    return sig


def loop_sigmas(cfg, S_c_q: np.ndarray, median_depth: float, has_scale: bool) -> np.ndarray:
    """Standard deviations (7,) of a loop edge measured at ``median_depth``; without a measured
    scale the log-scale is left loose."""
    trans = cfg.loop_translation_sigma * median_depth + \
        cfg.loop_scale_sigma * float(np.linalg.norm(S_c_q[:3, 3]))
    return np.r_[np.full(3, np.radians(cfg.loop_rotation_sigma_deg)), np.full(3, trans),
                 cfg.loop_scale_sigma if has_scale else 1.0]


def path_length(keyframes: list[Keyframe], a: Keyframe, b: Keyframe) -> float | None:
    """Odometry path between two keyframes of one session (None: different sessions)."""
    if a.session != b.session:
        return None
    ks = [k for k in keyframes if k.session == a.session and
          min(a.id, b.id) <= k.id <= max(a.id, b.id)]
    P = np.array([k.odom_pose[:3, 3] for k in ks])
    return float(np.sum(np.linalg.norm(np.diff(P, axis=0), axis=1))) if len(P) > 1 else 0.0


def implausible_loop(cfg, predicted: np.ndarray, S_c_q: np.ndarray, path: float | None,
                     median_depth: float) -> str:
    """Why a loop measurement ``S_c_q`` asks for more correction of the graph's ``predicted``
    relative pose than the odometry could have drifted over ``path``; "" when it fits."""
    D = sim3.inverse(predicted) @ S_c_q
    rot = sim3.rotation_deg(D)
    dpos = float(np.linalg.norm(predicted[:3, 3] - S_c_q[:3, 3]))
    allowed = cfg.max_translation_drift * (path or 0.0) + 0.5 * median_depth
    if rot > cfg.max_rotation_drift_deg:
        return (f"implausible: the loop turns the graph by {rot:.1f} deg > "
                f"loop_closure.max_rotation_drift_deg {cfg.max_rotation_drift_deg}")
    if dpos > allowed:
        return (f"implausible: the loop moves the keyframe by {dpos:.3g} > "
                f"{allowed:.3g} (max_translation_drift x path {path or 0:.3g} + "
                f"half the scene depth)")
    return ""


def move_session(graph: PoseGraph, keyframes: list[Keyframe], session: int,
                 T: np.ndarray) -> None:
    """Move every node (and prior) of ``session`` by ``T`` (left-multiplied), rigidly as one."""
    for k in keyframes:
        if k.session == session:
            graph.nodes[k.id] = T @ graph.nodes[k.id]
            if k.id in graph.priors:
                graph.priors[k.id] = (graph.nodes[k.id].copy(), graph.priors[k.id][1])


def rigid_poses(nodes: np.ndarray) -> np.ndarray:
    """(N, 4, 4) similarities with their scale divided out (in place, returned)."""
    if len(nodes):
        s = np.cbrt(np.linalg.det(nodes[:, :3, :3]))
        nodes[:, :3, :3] /= s[:, None, None]
    return nodes


def map_to_odom(node: np.ndarray, odom_pose: np.ndarray) -> np.ndarray:
    """``C_k O_k^-1``: the rigid transform that takes the odometry onto the map at keyframe k."""
    return sim3.rigid(node) @ np.linalg.inv(odom_pose)


def correct_frames(kf_stamps_ns: np.ndarray, corrections: list[np.ndarray],
                   stamps_ns: np.ndarray, odom_poses: np.ndarray) -> np.ndarray:
    """Map poses (rigid) of frames: each gets the correction ``C_k O_k^-1`` of the latest
    keyframe at or before it (the first keyframe's before that)."""
    idx = np.clip(np.searchsorted(kf_stamps_ns, stamps_ns, side="right") - 1, 0,
                  len(corrections) - 1)
    out = np.empty_like(odom_poses)
    for n, (i, P) in enumerate(zip(idx, odom_poses, strict=True)):
        out[n] = sim3.rigid(corrections[i] @ P)
    return out
