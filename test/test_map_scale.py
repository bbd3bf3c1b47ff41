"""How the tracker's two scale estimates of a new keyframe are combined (``vode_ros.map_scale``):
each one's standard error, then the inverse-variance average in log scale."""
from __future__ import annotations

import numpy as np
import pytest

from vode_ros.map_scale import _combine, _log_ratio_sigma
from vode_ros.multiview import translation_given_rotation, translation_with_covariance


def test_translation_covariance_predicts_its_error():
    """Over repeated noisy draws, the covariance the fit reports matches the spread of its
    translations (within a factor of 1.5 in standard deviation)."""
    rng = np.random.default_rng(0)
    X = rng.uniform([-2, -1.5, 2], [2, 1.5, 6], (150, 3))
    t_true = np.array([0.05, -0.01, 0.03])
    x_true = (X + t_true)[:, :2] / (X + t_true)[:, 2:3]
    est, stds = [], []
    for _ in range(200):
        x = x_true + rng.normal(0, 1e-3, x_true.shape)        # about 0.5 px at f = 500
        t, cov = translation_with_covariance(np.eye(3), X, x, 1e-2)
        est.append(t)
        stds.append(np.sqrt(np.diag(cov)))
    spread, predicted = np.std(est, axis=0), np.median(stds, axis=0)
    assert np.all(predicted / spread > 1 / 1.5) and np.all(predicted / spread < 1.5), \
        (spread, predicted)
    assert np.allclose(np.mean(est, axis=0), t_true, atol=3 * spread.max())
    # the plain translation: the same fit
    t = translation_given_rotation(np.eye(3), X, x_true, 1e-2)
    np.testing.assert_allclose(t, t_true, atol=1e-9)
    assert translation_with_covariance(np.eye(3), X[:2], x_true[:2], 1e-2) == (None, None)
    assert translation_given_rotation(np.eye(3), X[:2], x_true[:2], 1e-2) is None


def test_log_ratio_sigma_is_the_median_standard_error():
    rng = np.random.default_rng(1)
    ref = rng.uniform(1, 5, 400)
    errs = []
    for _ in range(300):
        est = ref / 2.0 * np.exp(rng.normal(0, 0.1, ref.shape))
        errs.append(np.log(np.median(ref / est)) - np.log(2.0))
    sigma = _log_ratio_sigma(ref, ref / 2.0 * np.exp(rng.normal(0, 0.1, ref.shape)))
    assert sigma == pytest.approx(np.std(errs), rel=0.3)
    assert _log_ratio_sigma(ref[:2], ref[:2]) == float("inf")


def test_combination_weighs_by_inverse_variance():
    # equal errors: the geometric mean
    assert _combine(1.0, 0.1, 4.0, 0.1) == pytest.approx(2.0)
    # the precise one dominates
    assert _combine(1.0, 0.01, 4.0, 0.1) == pytest.approx(np.exp(np.log(4.0) / 101.0))
    # one without an error estimate drops out; none at all: the geometric mean
    assert _combine(1.0, float("inf"), 4.0, 0.1) == pytest.approx(4.0)
    assert _combine(1.0, float("inf"), 4.0, float("inf")) == pytest.approx(2.0)


def _turning_pair(rotation_error: float):
    """A keyframe pair turning 18 degrees with a small translation, triangulated with the
    rotation estimated ``rotation_error`` (relative) too large, as a slightly wrong focal
    length makes it: (TwoView, the true depths in the keyframe over the unit-baseline ones)."""
    from scipy.spatial.transform import Rotation

    from vode_ros.multiview import TwoView, triangulate
    rng = np.random.default_rng(3)
    X0 = np.c_[rng.uniform(-0.6, 0.6, (300, 2)), np.ones(300)] * rng.uniform(1.0, 10.0, (300, 1))
    rv = np.radians([0.0, 18.0, 3.0])
    R, t = Rotation.from_rotvec(rv).as_matrix(), np.array([0.12, 0.0, 0.04])
    X1 = X0 @ R.T + t
    x0, x1 = X0[:, :2] / X0[:, 2:], X1[:, :2] / X1[:, 2:]
    seen = (np.abs(x1) < 0.6).all(1)
    R_est = Rotation.from_rotvec(rv * (1 + rotation_error)).as_matrix()
    X, z1, angle = triangulate(R_est, t / np.linalg.norm(t), x0[seen], x1[seen])
    two = TwoView(R_est, t / np.linalg.norm(t), np.ones(seen.sum(), bool), int(seen.sum()),
                  X, z1, angle)
    return two, X0[seen, 2] / X[:, 2]


def test_scale_points_leave_out_low_parallax_against_the_turn():
    """With the turn's rotation 1 % off, the low-parallax points' depths are off by tens of
    percent: the scale measured on the points whose parallax is large against the turn
    (``pose.triangulation_angle_per_turn``) is several times nearer the truth than on all."""
    from types import SimpleNamespace

    from vode_ros.config import PoseConfig
    from vode_ros.tracker import GeometricPose

    two, truth_ratio = _turning_pair(0.01)
    cfg = PoseConfig()
    assert cfg.triangulation_angle_per_turn == pytest.approx(0.1)
    n = len(truth_ratio)
    idx = np.arange(n)
    mapped = SimpleNamespace(cfg=cfg, tracks=SimpleNamespace(Xw=np.ones((n, 3))))
    chosen = GeometricPose._scale_points(mapped, two, idx, 30)
    every = two.angle >= cfg.min_triangulation_angle_deg
    assert 15 <= chosen.sum() < every.sum()
    assert np.all(two.angle[chosen] >= 1.8 - 1e-6)          # a tenth of the 18.2-degree turn
    base = np.linalg.norm([0.12, 0.0, 0.04])
    err_chosen = abs(np.log(np.median(truth_ratio[chosen]) / base))
    err_every = abs(np.log(np.median(truth_ratio[every]) / base))
    assert err_every > 0.1 and err_chosen < err_every / 2, (err_chosen, err_every)
    # exact geometry: both give the true scale
    exact, ratio = _turning_pair(0.0)
    sel = GeometricPose._scale_points(mapped, exact, np.arange(len(ratio)), 30)
    assert np.median(ratio[sel]) == pytest.approx(base, rel=1e-6)


def test_scale_points_keep_every_point_where_too_few_remain():
    """Too few wide-parallax points on the map (the step would lose its link to the map), or
    the setting at 0: the scale is measured on every point of the minimum angle."""
    from types import SimpleNamespace

    from vode_ros.config import PoseConfig
    from vode_ros.tracker import GeometricPose

    two, _ = _turning_pair(0.01)
    n = len(two.angle)
    every = two.angle >= PoseConfig().min_triangulation_angle_deg
    Xw = np.full((n, 3), np.nan)
    Xw[two.angle < 1.0] = 1.0                # only low-parallax points are on the map
    few = SimpleNamespace(cfg=PoseConfig(), tracks=SimpleNamespace(Xw=Xw))
    np.testing.assert_array_equal(GeometricPose._scale_points(few, two, np.arange(n), 30), every)
    # asking for more inliers than the wide-parallax points can give
    mapped = SimpleNamespace(cfg=PoseConfig(), tracks=SimpleNamespace(Xw=np.ones((n, 3))))
    np.testing.assert_array_equal(GeometricPose._scale_points(mapped, two, np.arange(n), 400),
                                  every)
    off = PoseConfig()
    off.triangulation_angle_per_turn = 0.0
    plain = SimpleNamespace(cfg=off, tracks=SimpleNamespace(Xw=np.ones((n, 3))))
    np.testing.assert_array_equal(GeometricPose._scale_points(plain, two, np.arange(n), 30),
                                  every)


def _scale_state(speeds, limit=None):
    """What ``MapScale._believable`` reads of the tracker: a keyframe 0.2 s before the frame,
    the recent speeds (map units per second)."""
    from collections import deque
    from types import SimpleNamespace

    from vode_ros.config import PoseConfig
    cfg = PoseConfig()
    if limit is not None:
        cfg.max_speed_change = limit
    return SimpleNamespace(cfg=cfg, speeds=deque(speeds, maxlen=10), last_stamp=1_200_000_000,
                           kf=SimpleNamespace(stamp_ns=1_000_000_000))


def test_a_hundredfold_keyframe_scale_takes_the_recent_speed():
    """Moving steadily at 0.5 units/s, a keyframe 0.2 s later expects a step of 0.1 units:
    a shared-point scale of 10 (a hundred times that) or of 0.001 is not believed and the
    recent speed carries the step; 2 or 0.01 (twenty and a tenth) stand."""
    from vode_ros.map_scale import MapScale
    state = _scale_state([0.45, 0.5, 0.55, 0.5, 0.5])
    assert MapScale._believable(state, 10.0, "shared points") == (pytest.approx(0.1),
                                                                   "recent speed")
    assert MapScale._believable(state, 0.001, "shared points") == (pytest.approx(0.1),
                                                                    "recent speed")
    assert MapScale._believable(state, 2.0, "shared points") == (2.0, "shared points")
    assert MapScale._believable(state, 0.01, "shared points") == (0.01, "shared points")


def test_the_speed_check_stands_aside_without_steady_motion():
    """A camera that stood still on one of the last five frames (starting off), fewer than five
    speeds, or the check off (0): the scale stands, however large."""
    from vode_ros.map_scale import MapScale
    for state in (_scale_state([0.5, 0.5, 0.0, 0.5, 0.5]), _scale_state([0.5, 0.5, 0.5, 0.5]),
                  _scale_state([0.5] * 5, limit=0.0)):
        assert MapScale._believable(state, 10.0, "shared points") == (10.0, "shared points")
