"""Trajectory files and metrics on hand-computed cases (no models, no datasets)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vode_ros.evaluation import metrics as M
from vode_ros.evaluation.trajectory import (
    TrajectoryFileError,
    format_stamp,
    parse_stamp,
    read_kitti,
    read_tum,
    write_kitti,
    write_tum,
)


def pose(R=None, t=(0, 0, 0)):
    T = np.eye(4)
    T[:3, :3] = np.eye(3) if R is None else R
    T[:3, 3] = t
    return T


def helix(n=60, radius=2.0, pitch=0.05, turns=1.0):
    """A 3-D (non-collinear, non-planar) camera path with orientations following the curve."""
    poses = []
    for k in range(n):
        a = 2 * math.pi * turns * k / n
        R = Rotation.from_euler("y", a).as_matrix()
        poses.append(pose(R, (radius * math.cos(a), 0.3 * math.sin(3 * a), radius * math.sin(a)
                              + pitch * k)))
    return np.array(poses)


def stamps(n, hz=10.0, start_ns=1_305_031_102_175_304_000):
    return start_ns + np.round(np.arange(n) * 1e9 / hz).astype(np.int64)


def yaw(deg):
    return Rotation.from_euler("y", deg, degrees=True).as_matrix()


# -- trajectory files -----------------------------------------------------------------------------
def test_tum_round_trip_keeps_stamps_to_the_nanosecond(tmp_path):
    rng = np.random.default_rng(0)
    n = 7
    st = np.array([1_305_031_102_175_304_123 + 33_333_333 * k for k in range(n)], np.int64)
    P = np.array([pose(Rotation.random(random_state=k).as_matrix(), rng.normal(size=3) * 10)
                  for k in range(n)])
    path = write_tum(tmp_path / "t.txt", st, P)
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == n and lines[0].split()[0] == "1305031102.175304123"
    assert all(len(ln.split()) == 8 for ln in lines)
    s2, P2 = read_tum(path)
    assert s2.tolist() == st.tolist()
    np.testing.assert_allclose(P2, P, atol=1e-6)


def test_stamp_text_is_exact():
    assert format_stamp(5) == "0.000000005"
    assert format_stamp(1_000_000_000) == "1.000000000"
    assert parse_stamp("1305031102.175304") == 1_305_031_102_175_304_000
    assert parse_stamp(format_stamp(123_456_789_012_345_678)) == 123_456_789_012_345_678


def test_kitti_round_trip_and_bad_files(tmp_path):
    P = helix(5)
    path = write_kitti(tmp_path / "k.txt", P)
    assert [len(ln.split()) for ln in path.read_text().splitlines()] == [12] * 5
    np.testing.assert_allclose(read_kitti(path), P, atol=1e-7)
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(TrajectoryFileError, match="12 numbers"):
        read_kitti(tmp_path / "bad.txt")
    with pytest.raises(TrajectoryFileError, match="TUM"):
        read_tum(tmp_path / "bad.txt")


# -- trajectory metrics ---------------------------------------------------------------------------
def test_identity_trajectory_has_zero_errors():
    gt = helix()
    st = stamps(len(gt))
    m = M.evaluate_trajectory(st, gt, st, gt).metrics
    assert m["alignment"] == "sim3_umeyama" and m["frames_matched"] == len(gt)
    assert m["ate_rmse_m"] == pytest.approx(0, abs=1e-9)
    assert m["scale_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert m["rpe_trans_m"]["per_frame"] == pytest.approx(0, abs=1e-9)
    assert m["rpe_rot_deg"]["per_frame"] == pytest.approx(0, abs=1e-5)
    assert m["t_err_pct"] == pytest.approx(0, abs=1e-6)
    assert m["r_err_deg_per_100m"] == pytest.approx(0, abs=1e-3)
    assert m["path_length_m"] == pytest.approx(np.sum(np.linalg.norm(
        np.diff(gt[:, :3, 3], axis=0), axis=1)))


def test_pure_scale_is_removed_by_sim3_and_reported_as_metres_per_unit():
    gt = helix()
    est = gt.copy()
    est[:, :3, 3] *= 3.0                          # the estimate is 3x too large
    st = stamps(len(gt))
    m = M.evaluate_trajectory(st, gt, st, est).metrics
    assert m["scale_ratio"] == pytest.approx(1 / 3, rel=1e-9)   # metres per estimate unit
    assert m["ate_rmse_m"] == pytest.approx(0, abs=1e-9)
    assert m["rpe_trans_m"]["per_frame"] == pytest.approx(0, abs=1e-9)
    assert m["t_err_pct"] == pytest.approx(0, abs=1e-6)
    # metric output is aligned in SE(3): the scale error stays in the ATE
    m_se3 = M.evaluate_trajectory(st, gt, st, est, scale="metric").metrics
    assert m_se3["alignment"] == "se3_umeyama" and m_se3["scale_ratio"] is None
    assert m_se3["ate_rmse_m"] > 1.0


def test_rigid_offset_of_the_whole_trajectory_is_aligned_away():
    gt = helix()
    offset = pose(Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix(), (5, -2, 7))
    est = np.einsum("ij,njk->nik", offset, gt)
    st = stamps(len(gt))
    for scale in ("relative", "metric"):
        m = M.evaluate_trajectory(st, gt, st, est, scale=scale).metrics
        assert m["ate_rmse_m"] == pytest.approx(0, abs=1e-8)
        assert m["rpe_rot_deg"]["per_frame"] == pytest.approx(0, abs=1e-5)


def test_constant_per_frame_yaw_error_is_the_rpe_rotation():
    """Ground truth moves straight ahead; every estimated step also yaws by e: RPE rot = e."""
    n, e = 40, 0.7
    gt = np.array([pose(t=(0, 0, 0.5 * k)) for k in range(n)])
    step_est = pose(yaw(e), (0, 0, 0.5))
    est = [np.eye(4)]
    for _ in range(n - 1):
        est.append(est[-1] @ step_est)
    st = stamps(n)
    res = M.evaluate_trajectory(st, gt, st, np.array(est), scale="metric")
    m = res.metrics
    assert m["rpe_rot_deg"]["per_frame"] == pytest.approx(e, abs=1e-6)
    assert m["rpe_detail"]["per_frame"]["rot_deg"]["max"] == pytest.approx(e, abs=1e-6)
    assert m["rpe_detail"]["per_frame"]["pairs"] == n - 1
    # one second at 10 Hz is 10 frames: 10 e of accumulated yaw
    assert m["rpe_detail"]["per_second"]["delta_frames"] == 10
    assert m["rpe_rot_deg"]["per_second"] == pytest.approx(10 * e, abs=1e-5)
    assert len(res.rpe_trans_errors) == n - 1 and len(res.ate_errors) == n


def test_translation_noise_of_known_magnitude():
    """Noise of magnitude a, +a then -a on each of a doubled ground-truth pose: zero mean and
    uncorrelated with the positions, so the SE(3) alignment is the identity and ATE = a; the Sim(3)
    alignment shrinks by c = var(gt) / (var(gt) + a^2), and ATE^2 = (c-1)^2 var(gt) + c^2 a^2."""
    base = helix(30)
    gt = np.repeat(base, 2, axis=0)
    a = 0.05
    direction = np.array([0.0, 1.0, 0.0])
    est = gt.copy()
    est[0::2, :3, 3] += a * direction
    est[1::2, :3, 3] -= a * direction
    st = stamps(len(gt))
    m = M.evaluate_trajectory(st, gt, st, est, scale="metric").metrics
    assert m["ate_rmse_m"] == pytest.approx(a, rel=1e-9)
    assert m["ate_max_m"] == pytest.approx(a, rel=1e-9)
    xyz = gt[:, :3, 3]
    var = np.mean(np.sum((xyz - xyz.mean(0)) ** 2, axis=1))
    c = var / (var + a * a)
    m = M.evaluate_trajectory(st, gt, st, est).metrics
    assert m["scale_ratio"] == pytest.approx(c, rel=1e-9)
    assert m["ate_rmse_m"] == pytest.approx(math.sqrt((c - 1) ** 2 * var + c * c * a * a),
                                            rel=1e-9)


def test_kitti_drift_of_a_ten_percent_long_estimate_on_a_straight_line():
    """Straight line (collinear: Umeyama is undetermined, the fallback aligns), metric estimate
    10 % too long. KITTI rule: a segment of nominal length L ends at the first frame *beyond* L,
    so with 1 m steps it spans L + 1 m and its error is 0.1 (L + 1) m."""
    n = 101
    gt = np.array([pose(t=(0, 0, float(k))) for k in range(n)])
    est = np.array([pose(t=(0, 0, 1.1 * k)) for k in range(n)])
    st = stamps(n)
    m = M.evaluate_trajectory(st, gt, st, est, scale="metric").metrics
    assert m["alignment"] == "origin_rotation_ls_translation"
    assert m["drift_lengths_rule"] == "fraction_10_80pct_of_path"
    assert m["drift_lengths_m"] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
    errs = [0.1 * (L + 1) / L for L in range(10, 81, 10) for first in range(0, n - L - 1)]
    assert m["t_err_pct"] == pytest.approx(100 * np.mean(errs), rel=1e-9)
    assert m["r_err_deg_per_100m"] == pytest.approx(0, abs=1e-6)
    assert m["drift_segments"] == len(errs)
    # relative scale: the Sim(3) scale absorbs the 10 %
    m = M.evaluate_trajectory(st, gt, st, est).metrics
    assert m["scale_ratio"] == pytest.approx(1 / 1.1, rel=1e-9)
    assert m["t_err_pct"] == pytest.approx(0, abs=1e-6)


def test_drift_lengths_rule():
    lengths, rule = M.drift_lengths(1500.0)
    assert lengths == [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0]
    assert rule == "kitti_100_800m"
    lengths, rule = M.drift_lengths(50.0)
    assert lengths == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]
    assert M.drift_lengths(0.0)[0] == []


def test_static_ground_truth_reports_no_scale_and_errors_in_estimate_units():
    """A camera standing still (2 mm of ground-truth jitter, below the 1 cm threshold): a Sim(3)
    fit to the jitter would hide the drift, so the estimate is aligned at its first pose."""
    n = 20
    jitter = 0.002 * np.random.default_rng(0).uniform(-0.5, 0.5, (n, 3))
    gt = np.array([pose(t=j) for j in jitter])
    gt[0] = pose()
    est = np.array([pose(t=(0, 0, 0.01 * k)) for k in range(n)])
    st = stamps(n)
    m = M.evaluate_trajectory(st, gt, st, est).metrics
    assert m["alignment"] == "origin" and m["scale_ratio"] is None
    assert m["ate_unit"] == "model units"
    assert m["ate_max_m"] == pytest.approx(0.01 * (n - 1), abs=0.002)
    assert m["estimate_max_displacement"] == pytest.approx(0.01 * (n - 1))
    assert m["t_err_pct"] is None and m["drift_lengths_m"] == []
    assert m["drift_lengths_rule"].startswith("none")


def test_association_counts_matched_frames_only():
    gt = helix(50)
    st = stamps(50)
    keep = np.r_[0:20, 25:50]                    # 5 frames were skipped by the estimator
    m = M.evaluate_trajectory(st, gt, st[keep], gt[keep]).metrics
    assert m["frames_matched"] == 45 and m["ate_rmse_m"] == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="ground-truth pose within"):
        M.evaluate_trajectory(st, gt, st[:5] + 500_000_000_000, gt[:5])


# -- depth metrics --------------------------------------------------------------------------------
GT = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)


def test_prediction_twice_the_truth():
    err, ratio, n = M.evaluate_depth_image(GT, 2 * GT, 0.1, 10.0, "none")
    assert n == 4 and ratio == 1.0
    assert err["abs_rel"] == pytest.approx(1.0)
    assert err["sq_rel"] == pytest.approx(np.mean(GT))           # (2g - g)^2 / g = g
    assert err["rmse"] == pytest.approx(math.sqrt(np.mean(GT ** 2)))
    assert err["rmse_log"] == pytest.approx(math.log(2))
    assert (err["a1"], err["a2"], err["a3"]) == (0.0, 0.0, 0.0)   # 2 > 1.25^3 = 1.953
    err, ratio, _ = M.evaluate_depth_image(GT, 2 * GT, 0.1, 10.0, "median")
    assert ratio == pytest.approx(0.5)
    assert err["abs_rel"] == pytest.approx(0, abs=1e-7) and err["rmse"] == pytest.approx(0,
                                                                                          abs=1e-6)
    assert (err["a1"], err["a2"], err["a3"]) == (1.0, 1.0, 1.0)


def test_threshold_accuracies_are_exact_fractions():
    gt = np.full(4, 2.0)
    pred = gt * np.array([1.0, 1.2, 1.3, 1.6])         # ratios vs 1.25, 1.5625, 1.953125
    err, _, _ = M.evaluate_depth_image(gt, pred, 0.1, 10.0, "none")
    assert (err["a1"], err["a2"], err["a3"]) == (0.5, 0.75, 1.0)
    pred = gt / np.array([1.0, 1.2, 1.3, 2.0])         # too near counts the same way
    err, _, _ = M.evaluate_depth_image(gt, pred, 0.1, 10.0, "none")
    assert (err["a1"], err["a2"], err["a3"]) == (0.5, 0.75, 0.75)


def test_invalid_pixels_and_capping():
    gt = np.array([1.0, np.nan, 0.05, 50.0, 2.0, 5.0], np.float32)
    pred = np.array([1.0, 1.0, 1.0, 1.0, np.nan, 50.0], np.float32)
    err, _, n = M.evaluate_depth_image(gt, pred, 0.1, 10.0, "none")
    assert n == 2                                      # only gt 1.0 and gt 5.0 count
    # pred 50 is capped to max_depth 10: |10 - 5| / 5 = 1 -> mean abs_rel (0 + 1) / 2
    assert err["abs_rel"] == pytest.approx(0.5)
    assert M.evaluate_depth_image(np.full(3, np.nan), np.ones(3), 0.1, 10.0)[0] is None


def test_median_scaled_constant_baseline():
    gt = np.array([1.0, 3.0])
    base = M.constant_baseline_errors(gt, np.ones(2, bool), 0.1, 10.0)  # predicts 2 everywhere
    assert base["abs_rel"] == pytest.approx((1 / 1 + 1 / 3) / 2)
    assert base["rmse"] == pytest.approx(1.0)
    assert (base["a1"], base["a2"], base["a3"]) == (0.0, 0.5, 0.5)


def test_sequence_depth_mean_over_images_and_global_scale():
    g = np.array([[1.0, 2.0, 4.0]], np.float32)
    images = [(g, g / 2), (g, g / 4)]                  # per-image ratios 2 and 4
    ev = M.DepthEvaluation(0.1, 10.0, "median")
    for gt, pred in images:
        ev.add(gt, pred)
    model, base = ev.result()
    assert model["n_images"] == 2 and model["abs_rel"] == pytest.approx(0, abs=1e-7)
    assert model["scale_ratio"]["median"] == pytest.approx(3.0)
    assert base["abs_rel"] > 0.2 and base["n_images"] == 2
    ev = M.DepthEvaluation(0.1, 10.0, "global")        # one ratio: median(2, 4) = 3
    for gt, pred in images:
        ev.add(gt, pred)
    model, _ = ev.result()
    assert model["scale_ratio"]["global"] == pytest.approx(3.0)
    assert model["abs_rel"] == pytest.approx((0.5 + 0.25) / 2)
    ev = M.DepthEvaluation(0.1, 10.0, "none")
    ev.add(g, g / 2)
    assert ev.result()[0]["abs_rel"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="scaling"):
        M.DepthEvaluation(scaling="mean")


def test_ground_truth_slightly_off_so3_is_accepted():
    """7-Scenes poses carry 6 decimals: their rotations are a little off SO(3), which evo's log
    map refuses; they are projected to the nearest rotation first."""
    gt = helix(30)
    noisy = gt.copy()
    noisy[:, :3, :3] += 3e-5 * np.random.default_rng(1).standard_normal((30, 3, 3))
    st = stamps(30)
    m = M.evaluate_trajectory(st, noisy, st, gt).metrics
    assert m["ate_rmse_m"] == pytest.approx(0, abs=1e-6)
    assert m["ate_rot_rmse_deg"] < 0.01
    fixed = M.orthonormalize(noisy)
    np.testing.assert_allclose(fixed[:, :3, :3] @ fixed[:, :3, :3].transpose(0, 2, 1),
                               np.broadcast_to(np.eye(3), (30, 3, 3)), atol=1e-12)
