"""Local bundle adjustment on a synthetic keyframe window with exact ground truth."""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from vode_ros.bundle_adjustment import bundle_adjust

FOCAL = 300.0


def _window(seed=0, n_points=300, n_kf=6):
    """Keyframes moving sideways and forward, looking at points 2-6 m ahead; exact rays."""
    rng = np.random.default_rng(seed)
    X = np.c_[rng.uniform(-2, 2, n_points), rng.uniform(-1.5, 1.5, n_points),
              rng.uniform(2, 6, n_points)]
    T = np.repeat(np.eye(4)[None], n_kf, 0)
    for k in range(n_kf):
        T[k, :3, :3] = Rotation.from_euler("y", 2.0 * k, degrees=True).as_matrix()
        T[k, :3, 3] = [0.08 * k, 0.01 * k, 0.05 * k]
    rays = np.full((n_points, n_kf, 3), np.nan)
    for k in range(n_kf):
        Xc = (X - T[k, :3, 3]) @ T[k, :3, :3]
        seen = rng.random(n_points) < 0.8
        rays[seen, k] = Xc[seen] / np.linalg.norm(Xc[seen], axis=1, keepdims=True)
    return T, X, rays


def _noisy(T, X, rays, seed=1, px=0.3, rot_deg=0.5, trans=0.02, point=0.2):
    rng = np.random.default_rng(seed)
    Tn = T.copy()
    for k in range(1, len(T)):
        Tn[k, :3, :3] = T[k, :3, :3] @ Rotation.from_rotvec(
            np.radians(rot_deg) * rng.normal(size=3)).as_matrix()
        Tn[k, :3, 3] = T[k, :3, 3] + trans * rng.normal(size=3)
    Xn = X + point * rng.normal(size=X.shape)
    r = rays.copy()
    ok = np.isfinite(r[..., 0])
    xy = r[ok][:, :2] / r[ok][:, 2:3] + px / FOCAL * rng.normal(size=(ok.sum(), 2))
    b = np.c_[xy, np.ones(len(xy))]
    r[ok] = b / np.linalg.norm(b, axis=1, keepdims=True)
    return Tn, Xn, r


def _in_true_scale(res, T, Tn):
    """The result rescaled about the first keyframe (the origin) to the true distance of the
    oldest two: the scale the adjustment keeps is the noisy window's."""
    s = np.linalg.norm(T[1, :3, 3]) / np.linalg.norm(Tn[1, :3, 3])
    poses = res.poses.copy()
    poses[:, :3, 3] *= s
    return poses, res.points * s


def _pose_errors(T, Tref):
    rot = [np.degrees(Rotation.from_matrix(a[:3, :3].T @ b[:3, :3]).magnitude())
           for a, b in zip(T, Tref, strict=True)]
    return np.array(rot), np.linalg.norm(T[:, :3, 3] - Tref[:, :3, 3], axis=1)


def test_bundle_adjustment_lowers_the_error_of_a_noisy_window():
    T, X, rays = _window()
    Tn, Xn, rn = _noisy(T, X, rays)
    res = bundle_adjust(Tn, Xn, rn, FOCAL, threshold_px=2.0, max_iterations=30, max_ms=5000)
    assert res is not None and res.adjusted.mean() > 0.9
    poses, points = _in_true_scale(res, T, Tn)
    rot0, tr0 = _pose_errors(Tn, T)
    rot1, tr1 = _pose_errors(poses, T)
    assert rot1.mean() < 0.3 * rot0.mean() and tr1.mean() < 0.3 * tr0.mean()
    assert np.nanmean(np.linalg.norm(points - X, axis=1)) < \
        0.3 * np.mean(np.linalg.norm(Xn - X, axis=1))
    assert res.rms_after_px < 0.5 * res.rms_before_px and res.rms_after_px < 1.0
    np.testing.assert_allclose(res.poses[0], Tn[0])                    # the gauge: fixed
    np.testing.assert_allclose(np.linalg.norm(res.poses[1, :3, 3] - res.poses[0, :3, 3]),
                               np.linalg.norm(Tn[1, :3, 3] - Tn[0, :3, 3]))     # the scale


def test_outliers_are_rejected_and_do_not_pull_the_solution():
    T, X, rays = _window(seed=2)
    Tn, Xn, rn = _noisy(T, X, rays, seed=3)
    clean = bundle_adjust(Tn, Xn, rn, FOCAL, threshold_px=2.0, max_iterations=30, max_ms=5000)
    bad = np.arange(0, 300, 10)                     # every 10th point seen off by 20 px once
    k = np.argmax(np.isfinite(rn[bad, :, 0]), axis=1)
    b = rn[bad, k]
    b[:, 0] += 20.0 / FOCAL * b[:, 2]
    rn[bad, k] = b / np.linalg.norm(b, axis=1, keepdims=True)
    res = bundle_adjust(Tn, Xn, rn, FOCAL, threshold_px=2.0, max_iterations=30, max_ms=5000)
    assert res.rejected[bad].mean() > 0.8 and res.rejected.sum() < 1.5 * len(bad)
    rot1, tr1 = _pose_errors(_in_true_scale(res, T, Tn)[0], T)
    rot_c, tr_c = _pose_errors(_in_true_scale(clean, T, Tn)[0], T)
    assert rot1.max() < rot_c.max() + 0.03 and tr1.max() < tr_c.max() + 0.004       # noise: 35 mm


def test_held_keyframes_do_not_move_and_hold_the_scale():
    T, X, rays = _window(seed=4)
    Tn, Xn, rn = _noisy(T, X, rays, seed=5)
    Tn[-1] = T[-1]                                  # the newest known (as the tracker's)
    fixed = np.zeros(len(T), bool)
    fixed[[0, -1]] = True
    res = bundle_adjust(Tn, Xn, rn, FOCAL, max_iterations=30, max_ms=5000, fixed=fixed)
    np.testing.assert_allclose(res.poses[[0, -1]], Tn[[0, -1]])
    rot0, tr0 = _pose_errors(Tn, T)
    rot1, tr1 = _pose_errors(res.poses, T)
    assert rot1[1:-1].mean() < 0.3 * rot0[1:-1].mean()
    assert tr1[1:-1].mean() < 0.3 * tr0[1:-1].mean()


def test_time_budget_and_too_little_to_adjust():
    T, X, rays = _window(n_points=2000)
    Tn, Xn, rn = _noisy(T, X, rays)
    res = bundle_adjust(Tn, Xn, rn, FOCAL, max_iterations=100, max_ms=1.0)
    assert res is not None and res.time_ms < 400       # stops at the budget (plus one step)
    assert bundle_adjust(Tn[:1], Xn, rn[:, :1], FOCAL) is None
    assert bundle_adjust(Tn, Xn[:5], rn[:5], FOCAL) is None


def test_a_window_without_baseline_is_left_finite():
    """Keyframes that did not move (a camera turning on the spot): the points' depths are not
    determined; the adjustment must neither fail nor hand back a non-finite pose or point."""
    T, X, rays = _window(seed=6)
    T[:, :3, 3] = 0.0                               # every keyframe at the origin
    for k in range(len(T)):
        Xc = X @ T[k, :3, :3]
        seen = np.isfinite(rays[:, k, 0])
        rays[seen, k] = Xc[seen] / np.linalg.norm(Xc[seen], axis=1, keepdims=True)
    res = bundle_adjust(T, X, rays, FOCAL, max_iterations=10, max_ms=5000)
    assert res is not None
    assert np.all(np.isfinite(res.poses))
    assert np.all(np.isfinite(res.points[res.adjusted]))
    rot, _ = _pose_errors(res.poses, T)
    assert rot.max() < 0.1                          # the rotations were exact: they stay


def test_the_tracker_keeps_the_adjusted_points_depths_at_the_newest_keyframe():
    """After an adjustment the map points are rescaled about the newest keyframe so that their
    median depth there is what it was (the next keyframe's scale is measured on those depths),
    while their shape (the adjustment's correction) is kept."""
    from vode_ros.tracker import GeometricPose
    T, X, _ = _window(seed=3)
    T_new = T[-1]
    # the adjustment moved the points 2 % farther along the newest camera's rays, plus noise
    c = T_new[:3, 3]
    rng = np.random.default_rng(0)
    shape = 0.01 * rng.normal(size=X.shape)
    after = c + 1.02 * (X - c) + shape
    kept = GeometricPose._keep_depth_scale(X, after, T_new, T_new)
    z = lambda P: ((P - c) @ T_new[:3, :3])[:, 2]        # noqa: E731
    assert abs(np.median(z(kept) / z(X)) - 1.0) < 2e-3
    assert abs(np.median(z(after) / z(X)) - 1.0) > 1.5e-2     # it did need the correction
    # a rigid rescaling about the camera: the relative shape of the points is unchanged
    d_after = np.linalg.norm(after[1:] - after[:-1], axis=1)
    d_kept = np.linalg.norm(kept[1:] - kept[:-1], axis=1)
    assert np.allclose(d_kept / d_after, d_kept[0] / d_after[0])
    # too few points with a depth both times: unchanged
    few = GeometricPose._keep_depth_scale(X[:5], after[:5], T_new, T_new)
    assert np.array_equal(few, after[:5])


def test_moving_ahead_is_motion_along_the_optical_axis():
    from vode_ros.pose_refinement import moving_ahead
    first = np.eye(4)

    def at(direction_deg, yaw_deg=0.0):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
        a = np.radians(direction_deg)
        T[:3, 3] = [np.sin(a), 0.0, np.cos(a)]          # in the world (camera z ahead at yaw 0)
        return T

    assert moving_ahead(first, at(0), 0.9) and moving_ahead(first, at(180), 0.9)  # ahead, back
    assert moving_ahead(first, at(20), 0.9) and not moving_ahead(first, at(30), 0.9)
    assert not moving_ahead(first, at(90), 0.9)                                   # sideways
    assert not moving_ahead(first, at(60, yaw_deg=-30), 0.9)   # the last camera's axis counts
    assert moving_ahead(first, at(60, yaw_deg=55), 0.9)
    assert not moving_ahead(first, first, 0.9)                                    # no motion
    assert not moving_ahead(first, at(0), 1.0)                                    # 1: never


def _tracker_with_window(T, X, rays, forward_cos):
    import model_factory as mf
    from vode_ros.config_files import load_config
    from vode_ros.tracker import GeometricPose
    from vode_ros.tracks import Tracks
    cfg = load_config(None, ["pose.bundle_adjustment_iterations=6",
                             f"pose.bundle_adjustment_forward_cos={forward_cos}",
                             f"pose.window_keyframes={len(T)}"])
    geo = GeometricPose(cfg.pose, cfg.flow, mf.depth_spec())
    n = len(X)
    px = np.zeros((n, 2), np.float32)
    geo.tracks = Tracks(px, px.copy(), np.full((n, 2), np.nan, np.float32), X.copy(), rays)
    geo.win = [t.copy() for t in T]
    return geo


def test_the_adjustment_leaves_a_window_driving_ahead_alone():
    """A window whose keyframes drive straight ahead is not adjusted (on KITTI the adjustment
    let the map's depth drift there); the same window with every window adjusted, and a window
    moving sideways, are."""
    K = np.array([[FOCAL, 0, 160], [0, FOCAL, 120], [0, 0, 1]])
    rng = np.random.default_rng(4)
    X = np.c_[rng.uniform(-3, 3, 200), rng.uniform(-1, 1, 200), rng.uniform(4, 12, 200)]
    T = np.repeat(np.eye(4)[None], 5, 0)
    T[:, 2, 3] = 0.5 * np.arange(5)                     # straight ahead along z
    rays = np.stack([(X - t[:3, 3]) / np.linalg.norm(X - t[:3, 3], axis=1, keepdims=True)
                     for t in T], 1)
    Xn = X + 0.05 * rng.normal(size=X.shape)            # something to adjust
    ahead = _tracker_with_window(T, Xn, rays, 0.9)
    out = ahead._bundle_adjust(K, T[-1])
    assert ahead.ba_ms is None and np.array_equal(out, T[-1])
    assert np.array_equal(ahead.tracks.Xw, Xn)           # the map untouched
    every = _tracker_with_window(T, Xn, rays, 1.0)
    every._bundle_adjust(K, T[-1])
    assert every.ba_ms is not None and not np.array_equal(every.tracks.Xw, Xn)
    Ts, Xs, rays_s = _window(seed=5, n_kf=5)             # sideways and a little forward
    side = _tracker_with_window(Ts, Xs + 0.05 * rng.normal(size=Xs.shape), rays_s, 0.9)
    side._bundle_adjust(K, Ts[-1])
    assert side.ba_ms is not None
