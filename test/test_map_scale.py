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
