"""The network's depth brought to the odometry's unit, with the model that fits its output kind.

- ``relative`` depth (a disparity or depth model of relative scale, ours): one scale,
  ``z = s d``, the median of the ratios: robust to half the pixels being wrong;
- ``affine_inverse_depth`` (MiDaS, Depth Anything): the network's inverse depth is right up to a
  scale and a shift, ``1 / z = a / d + b``: fitted by least squares in inverse depth, iteratively
  reweighted (Huber) from the median-based start;
- ``metric`` depth: nothing (the odometry is metric with it).

``Alignment`` keeps the running alignment of a sequence: each frame's own fit moves it by a gain
(in log scale), so that one frame's noise does not shake the unit of the depth output.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vode_ros.robust import weighted_median

RELATIVE, AFFINE, METRIC = "scale", "affine_inverse", "none"
HUBER_K = 1.345                      # Huber's constant: 95 % efficiency on Gaussian residuals
IRLS_ITERATIONS = 5


def alignment_model(output: str, metric: bool) -> str:
    """How a model's depth is aligned: ``none`` for metric models, ``affine_inverse`` for
    ``affine_inverse_depth`` outputs, else ``scale``."""
    if output == "affine_inverse_depth":
        return AFFINE
    return METRIC if metric else RELATIVE


def fit_scale(net: np.ndarray, target: np.ndarray, sigma_log: np.ndarray | None = None
              ) -> float:
    """``s`` of ``target ~ s net`` (1-D positive arrays): the median of the ratios, weighted by
    the target's inverse variance where its standard deviation in log depth is given (a far
    multi-view depth, known only loosely, weighs less than a near one)."""
    if sigma_log is None:
        return float(np.median(target / net))
    w = 1.0 / np.maximum(sigma_log, 1e-3) ** 2
    return float(np.exp(weighted_median(np.log(target / net), w)))


def _mad_sigma(r: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(r - np.median(r)))) + 1e-12


def fit_affine_inverse(net: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of ``1 / target ~ a / net + b`` (1-D positive arrays): Huber-weighted least
    squares in inverse depth, started from the scale-only fit."""
    x, y = 1.0 / net, 1.0 / target
    a, b = float(np.median(y / x)), 0.0
    w = np.ones_like(x)
    for _ in range(IRLS_ITERATIONS):
        r = y - (a * x + b)
        k = HUBER_K * _mad_sigma(r)
        w = np.where(np.abs(r) <= k, 1.0, k / np.maximum(np.abs(r), 1e-12))
        A = np.stack([x * w, w], 1)
        sol, *_ = np.linalg.lstsq(A, y * w, rcond=None)
        if not np.all(np.isfinite(sol)) or sol[0] <= 0:
            break
        a, b = float(sol[0]), float(sol[1])
    return a, b


def apply_alignment(net: np.ndarray, model: str, a: float, b: float) -> np.ndarray:
    """The network depth ``net`` in the odometry's unit: ``a net`` (scale), ``1 / (a / net +
    b)`` (affine inverse; NaN where that is not positive) or ``net`` (none)."""
    if model == METRIC:
        return net
    if model == RELATIVE:
        return (net * a).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = a / net + b
        out = np.where(inv > 0, 1.0 / inv, np.nan)
    return out.astype(np.float32)


@dataclass
class Alignment:
    """The running alignment of a sequence's network depth to the odometry's unit."""

    model: str
    gain: float = 0.3
    min_pixels: int = 200
    a: float = 1.0
    b: float = 0.0
    fits: int = 0

    def reset(self) -> None:
        self.a, self.b, self.fits = 1.0, 0.0, 0

    def update(self, net: np.ndarray, target: np.ndarray,
               sigma_log: np.ndarray | None = None) -> bool:
        """Fit this frame's network depth ``net`` to ``target`` (same shape; NaN where target
        is unknown; ``sigma_log``: the target's standard deviation in log depth, which weighs
        its pixels) and move the running alignment towards it. The first fit is taken whole.
        Returns whether there were enough pixels to fit."""
        if self.model == METRIC:
            return False
        ok = np.isfinite(net) & np.isfinite(target) & (net > 0) & (target > 0)
        if sigma_log is not None:
            ok &= np.isfinite(sigma_log)
        if ok.sum() < self.min_pixels:
            return False
        n, t = net[ok].astype(np.float64), target[ok].astype(np.float64)
        g = 1.0 if self.fits == 0 else self.gain
        if self.model == RELATIVE:
            s = fit_scale(n, t, None if sigma_log is None else sigma_log[ok].astype(np.float64))
            self.a = float(np.exp((1 - g) * np.log(self.a) + g * np.log(s)))
        else:
            a, b = fit_affine_inverse(n, t)
            # the shift moves with the scale it was fitted with (b is in inverse depth units)
            self.a = float(np.exp((1 - g) * np.log(self.a) + g * np.log(a)))
            self.b = float((1 - g) * self.b + g * b)
        self.fits += 1
        return True

    def apply(self, net: np.ndarray) -> np.ndarray:
        return apply_alignment(net, self.model, self.a, self.b)
