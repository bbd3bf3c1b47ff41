"""The frame refinement (``multiview.refine_pose``, ``pose.frame_refinement_evaluations``): a
frame's pose refined on its map points and the epipolar geometry of its tracks together."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from test_geometric import CAM
from vode_ros.config_files import load_config
from vode_ros.evaluation.evaluate import EvalOptions
from vode_ros.geometry import invert
from vode_ros.multiview import refine_pose
from vode_ros.offline import RunOptions, run


def _pixels(X, K, T):
    Xc = X @ T[:3, :3].T + T[:3, 3]
    return np.stack([K[0, 0] * Xc[:, 0] / Xc[:, 2] + K[0, 2],
                     K[1, 1] * Xc[:, 1] / Xc[:, 2] + K[1, 2]], 1)


def _pose(rotvec, t):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


def _errors(T, ref):
    rot = np.degrees(Rotation.from_matrix(T[:3, :3].T @ ref[:3, :3]).magnitude())
    return rot, float(np.linalg.norm(invert(T)[:3, 3] - invert(ref)[:3, 3]))


def make_frame():
    """A keyframe at the origin, the current camera 6 cm away and turned; 300 points 2-8 m
    ahead, a third of them mapped (slightly wrong, as triangulated points are), tracked to the
    current frame with 0.3 px noise; 10 of the mapped tracks are 8-20 px wrong (the tracker
    hands over the tracks the essential matrix kept: wrong map points are what is left)."""
    rng = np.random.default_rng(0)
    K = CAM.K
    X = rng.uniform([-3, -2, 2], [3, 2, 8], (300, 3))
    T_kf_w = np.eye(4)
    T_cur_w = _pose([0.01, -0.04, 0.005], [0.05, 0.01, -0.03])
    px_kf = _pixels(X, K, T_kf_w)
    px_cur = _pixels(X, K, T_cur_w) + rng.normal(0, 0.3, (300, 2))
    mapped = np.arange(300) % 3 == 0
    wrong = np.flatnonzero(mapped)[:10]
    px_cur[wrong] += rng.uniform(8, 20, (10, 2)) * rng.choice([-1, 1], (10, 2))
    Xw = X[mapped] * (1 + rng.normal(0, 0.01, (mapped.sum(), 1)))
    return K, X, T_kf_w, T_cur_w, px_kf, px_cur, mapped, Xw


@pytest.fixture()
def frame():
    return make_frame()


def test_refinement_lowers_a_perturbed_pose_error(frame):
    K, _, T_kf_w, T_cur_w, px_kf, px_cur, mapped, Xw = frame
    start = T_cur_w @ _pose([0.004, -0.006, 0.003], [0.02, -0.015, 0.02])
    rot0, pos0 = _errors(start, T_cur_w)
    T = refine_pose(start, Xw, px_cur[mapped], T_kf_w, px_kf, px_cur, K, 2.0, 1.0, 20, 3.0)
    rot, pos = _errors(T, T_cur_w)
    assert rot0 > 0.3 and pos0 > 0.02
    assert rot < 0.1 * rot0 and pos < 0.2 * pos0, (rot0, pos0, rot, pos)
    assert np.all(np.isfinite(T)) and np.allclose(T[3], [0, 0, 0, 1])


def test_map_only_refinement_lowers_the_error_and_leaves_wrong_points_out(frame):
    """The epipolar weight 0 (the default): OpenCV's Levenberg-Marquardt on the map points
    within the gates; the ten wrong ones (8-20 px off) must not pull the pose."""
    K, _, T_kf_w, T_cur_w, px_kf, px_cur, mapped, Xw = frame
    start = T_cur_w @ _pose([0.0015, -0.002, 0.001], [0.008, -0.006, 0.006])
    rot0, pos0 = _errors(start, T_cur_w)
    T = refine_pose(start, Xw, px_cur[mapped], T_kf_w, px_kf, px_cur, K, 2.0, 0.0, 20)
    rot, pos = _errors(T, T_cur_w)
    assert rot < 0.3 * rot0 and pos < 0.3 * pos0, (rot0, pos0, rot, pos)
    # the same with the wrong points refined on too: worse than with them gated out
    everything = refine_pose(start, Xw, px_cur[mapped], T_kf_w, px_kf, px_cur, K, 1e3, 0.0, 20)
    assert _errors(everything, T_cur_w)[1] > pos
    assert refine_pose(start, Xw[:5], px_cur[mapped][:5], T_kf_w, px_kf, px_cur, K, 2.0,
                       0.0) is None                                   # fewer than 6 points


def test_epipolar_term_constrains_what_few_map_points_leave_open(frame):
    """With eight map points, the tracks' epipolar distances still pin the rotation: the joint
    refinement ends closer than the map points alone (the epipolar weight set to 0)."""
    K, _, T_kf_w, T_cur_w, px_kf, px_cur, mapped, Xw = frame
    few = np.flatnonzero(mapped)[10:18]
    rng = np.random.default_rng(3)
    Xfew = Xw[10:18] * (1 + rng.normal(0, 0.03, (8, 1)))
    start = T_cur_w @ _pose([0.003, 0.004, -0.002], [0.01, 0.01, 0.01])
    joint = refine_pose(start, Xfew, px_cur[few], T_kf_w, px_kf, px_cur, K, 2.0, 1.0, 20, 3.0)
    alone = refine_pose(start, Xfew, px_cur[few], T_kf_w, px_kf, px_cur, K, 2.0, 0.0, 20, 3.0)
    assert _errors(joint, T_cur_w)[0] < _errors(alone, T_cur_w)[0]


def test_refinement_refuses_what_it_cannot_solve(frame):
    K, _, T_kf_w, T_cur_w, px_kf, px_cur, mapped, Xw = frame
    bad = Xw.copy()
    bad[:, 2] = np.nan
    assert refine_pose(T_cur_w, bad, px_cur[mapped], T_kf_w, px_kf, px_cur, K, 2.0) is None


def test_refined_answers_jitter_less_on_a_hand_held_recording(shared_data, tmp_path):
    """7-Scenes redkitchen frames 0-199 (a slow hand-held camera whose per-frame motion is
    smaller than its per-frame pose noise; the rotation check, which removes most of that
    noise on its own, off to see the refinement alone): with the refinement on (the default),
    every frame is answered,
    the trajectory is finite and the per-frame relative pose error is lower than without it."""
    rpe = {}
    for n in (0, 20):
        out = tmp_path / f"refine{n}"
        run(str(shared_data / "7scenes-redkitchen"), out,
            load_config(None, ["models.providers=[CPUExecutionProvider]", "depth.source=network",
                               f"pose.frame_refinement_evaluations={n}",
                               "pose.rotation_check_deg=0"]),
            RunOptions(frames="0:200", quiet=True), EvalOptions())
        m = json.loads((out / "metrics.json").read_text())
        assert m["frames_matched"] == 200
        assert math.isfinite(m["ate_rmse_m"])
        rpe[n] = m["rpe_trans_m"]["per_frame"]
    assert rpe[20] < 0.8 * rpe[0], rpe
