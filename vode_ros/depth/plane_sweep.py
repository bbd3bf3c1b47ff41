"""Multi-view depth by a plane sweep: the reference view against a few source views whose poses
relative to it are known (the odometry's own), nothing learnt.

For each of ``n`` fronto-parallel planes of the reference camera, evenly spaced in inverse depth,
every source image is warped into the reference view by the plane's homography
``H = K_s (R + t n^T / d) K_r^-1`` and compared with the reference by zero-mean normalised
cross-correlation (ZNCC) over a square window: ZNCC ignores gain and offset, so an exposure change
between the views costs nothing. The cost ``1 - ZNCC`` of the sources that see a pixel is averaged
(the window is the aggregation), the best plane is refined by a parabola through its neighbours'
costs, and each pixel gets a confidence from

- the *uniqueness* of the minimum: how much better it is than the best cost outside its own
  valley (a flat or repetitive cost curve has none);
- the *agreement* of the sources: the fraction of sources whose own best plane lies within one
  plane of the joint one;
- the *parallax*: how many pixels the sweep moves the pixel in the sources (none for a camera that
  has not moved) and the *texture* of its window.

A pixel without parallax, texture or a unique minimum is unknown (NaN), not guessed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vode_ros.camera import Camera

ZNCC_EPS = 1e-6


@dataclass
class SweepView:
    """A source view: its grey image (float32, the reference's working resolution or any other)
    and intrinsics, and ``T_src_ref``: the transform of points from the reference camera's optical
    frame to this view's (``X_src = T X_ref``)."""

    grey: np.ndarray
    camera: Camera
    T_src_ref: np.ndarray


@dataclass
class SweepParams:
    planes: int = 32                  # hypotheses, evenly spaced in inverse depth
    window: int = 7                   # ZNCC window side (pixels, odd)
    min_parallax_px: float = 2.0      # sweep displacement a pixel needs over the depth range
    min_texture: float = 2.0          # grey-level standard deviation its window needs
    min_uniqueness: float = 0.15      # (second best - best) cost gap a minimum needs
    max_cost: float = 0.5             # a best cost (1 - ZNCC) above this is no match
    match_sigma_px: float = 0.5       # standard deviation of a match along the epipolar line
    max_sigma_log: float = 0.5        # a depth less certain than this (log depth) is unknown


@dataclass
class SweepResult:
    """Depth (HxW float32, the poses' unit, NaN unknown) and confidence (0..1, 0 where unknown)
    of the reference view; ``sigma_log``: the standard deviation of log depth from the plane
    spacing, NaN where unknown."""

    depth: np.ndarray
    confidence: np.ndarray
    sigma_log: np.ndarray


def inverse_depth_planes(min_depth: float, max_depth: float, n: int) -> np.ndarray:
    """``n`` inverse depths from 1/min_depth down to 1/max_depth, evenly spaced."""
    return np.linspace(1.0 / min_depth, 1.0 / max_depth, int(n))


def plane_homography(K_ref: np.ndarray, K_src: np.ndarray, T_src_ref: np.ndarray,
                     inv_depth: float) -> np.ndarray:
    """Reference pixel -> source pixel for points on the plane z = 1 / inv_depth of the
    reference camera."""
    R, t = T_src_ref[:3, :3], T_src_ref[:3, 3]
    n = np.array([0.0, 0.0, 1.0])
    H = K_src @ (R + np.outer(t, n) * inv_depth) @ np.linalg.inv(K_ref)
    return H / H[2, 2]


def _box(img: np.ndarray, window: int) -> np.ndarray:
    return cv2.boxFilter(img, cv2.CV_32F, (window, window), borderType=cv2.BORDER_REFLECT)


def _window_stats(grey: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Window mean and standard deviation of ``grey``."""
    mean = _box(grey, window)
    var = np.maximum(_box(grey * grey, window) - mean * mean, 0.0)
    return mean, np.sqrt(var)


def sweep_parallax_px(camera: Camera, view: SweepView, inv_depths: np.ndarray,
                      step: int = 8) -> np.ndarray:
    """Displacement (pixels, at the reference's resolution) of each reference pixel in ``view``
    between the nearest and the farthest plane, on a coarse grid resized to the image."""
    h, w = camera.height, camera.width
    ys, xs = np.mgrid[0:h:step, 0:w:step].astype(np.float64)
    p = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    ends = []
    for rho in (inv_depths[0], inv_depths[-1]):
        q = plane_homography(camera.K, view.camera.K, view.T_src_ref, rho) @ p
        with np.errstate(divide="ignore", invalid="ignore"):
            ends.append(q[:2] / q[2:3])
    scale = camera.width / view.camera.width
    d = np.linalg.norm(ends[0] - ends[1], axis=0).reshape(xs.shape) * scale
    d = np.nan_to_num(d, nan=0.0, posinf=0.0)
    return cv2.resize(d.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def _source_cost(ref: tuple[np.ndarray, np.ndarray, np.ndarray], camera: Camera,
                 view: SweepView, inv_depths: np.ndarray, window: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """1 - ZNCC of the reference (image, window mean, window std) with ``view`` warped through
    each plane, (P, H, W), and where the plane's point (or its window) falls outside the
    source image."""
    h, w = camera.height, camera.width
    grey = view.grey.astype(np.float32)
    P = len(inv_depths)
    mean, sq, cov = (np.empty((P, h, w), np.float32) for _ in range(3))
    outside = np.empty((P, h, w), bool)
    img, ref_mean, ref_std = ref
    kernel = np.ones((window, window), np.uint8)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for i, rho in enumerate(inv_depths):
        H = plane_homography(camera.K, view.camera.K, view.T_src_ref, rho)
        # one channel, constant border: OpenCV's fast paths (two channels or a replicated
        # border cost several times more); -1 marks what falls outside the source
        warped = cv2.warpPerspective(grey, H, (w, h), None, flags, cv2.BORDER_CONSTANT, -1.0)
        # a pixel is seen when its whole window is
        outside[i] = cv2.dilate((warped < 0).view(np.uint8), kernel) > 0
        mean[i] = _box(warped, window)
        sq[i] = _box(warped * warped, window)
        cov[i] = _box(warped * img, window)
    cov -= mean * ref_mean
    mean *= mean
    sq -= mean
    np.maximum(sq, 0.0, out=sq)
    np.sqrt(sq, out=sq)
    sq *= ref_std
    sq += ZNCC_EPS
    cov /= sq
    cost = np.subtract(1.0, cov, out=cov)
    return cost, outside


def _cost_volume(ref: np.ndarray, camera: Camera, views: list[SweepView],
                 inv_depths: np.ndarray, params: SweepParams) -> tuple[np.ndarray, np.ndarray]:
    """(joint cost (P, H, W): mean of the sources' 1 - ZNCC where they see the pixel, 2 where
    none does; per-source best plane (S, H, W))."""
    ref_stats = (ref, *_window_stats(ref, params.window))
    total = np.zeros((len(inv_depths),) + ref.shape, np.float32)
    seen = np.zeros(total.shape, np.uint8)
    best = []
    for view in views:
        c, outside = _source_cost(ref_stats, camera, view, inv_depths, params.window)
        np.copyto(c, 0.0, where=outside)
        total += c
        seen += ~outside
        np.copyto(c, np.inf, where=outside)
        best.append(np.argmin(c, axis=0))
    total /= np.maximum(seen, 1)
    np.copyto(total, 2.0, where=seen == 0)
    return total, np.stack(best)


def _at(cost: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``cost[idx[y, x], y, x]``."""
    return np.take_along_axis(cost, idx[None], 0)[0]


def _refine(cost: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Sub-plane position of the minimum: the vertex of the parabola through the costs of the
    best plane and its two neighbours (the plane itself at the ends of the range)."""
    P = cost.shape[0]
    i0 = np.clip(idx, 1, P - 2)
    c_m, c_0, c_p = (_at(cost, i0 + k) for k in (-1, 0, 1))
    denom = c_m - 2.0 * c_0 + c_p
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.where(denom > 1e-6, 0.5 * (c_m - c_p) / denom, 0.0)
    off = np.clip(off, -0.5, 0.5)
    inner = (idx > 0) & (idx < P - 1)
    return np.where(inner, i0 + off, idx).astype(np.float32)


def _uniqueness(cost: np.ndarray, idx: np.ndarray, best_cost: np.ndarray) -> np.ndarray:
    """Best cost outside the minimum's valley (two planes either side) minus the best cost."""
    P = cost.shape[0]
    outside = cost.copy()
    for k in range(-2, 3):
        np.put_along_axis(outside, np.clip(idx + k, 0, P - 1)[None], np.inf, 0)
    second = outside.min(axis=0)
    return np.where(np.isfinite(second), second - best_cost, 0.0).astype(np.float32)


def plane_sweep(ref: np.ndarray, camera: Camera, views: list[SweepView], min_depth: float,
                max_depth: float, params: SweepParams | None = None) -> SweepResult:
    """Depth of the reference view (grey float32 HxW, intrinsics ``camera``) from ``views``
    between ``min_depth`` and ``max_depth`` (the poses' unit)."""
    params = params or SweepParams()
    h, w = ref.shape
    nan = np.full((h, w), np.nan, np.float32)
    if not views or not 0 < min_depth < max_depth:
        return SweepResult(nan, np.zeros((h, w), np.float32), nan.copy())
    ref = ref.astype(np.float32)
    rho = inverse_depth_planes(min_depth, max_depth, params.planes)
    cost, best_src = _cost_volume(ref, camera, views, rho, params)
    idx = np.argmin(cost, axis=0)
    best_cost = _at(cost, idx)
    pos = _refine(cost, idx)
    inv = np.interp(pos.ravel(), np.arange(len(rho)), rho).reshape(h, w)
    depth = (1.0 / inv).astype(np.float32)

    unique = _uniqueness(cost, idx, best_cost)
    agree = np.mean(np.abs(best_src - idx[None]) <= 1, axis=0).astype(np.float32)
    parallax = np.max([sweep_parallax_px(camera, v, rho) for v in views], axis=0)
    _, texture = _window_stats(ref, params.window)
    # one plane step in log depth: d(log z) = d(rho) / rho
    step_log = np.abs(rho[1] - rho[0]) / inv
    plane_sigma = step_log / np.sqrt(12.0) + step_log * np.clip(best_cost, 0, 1)
    # the match's own error: a pixel moves along its epipolar line by about parallax / (rho
    # range) pixels per unit of inverse depth (the plane homography is nearly linear in rho
    # over small motions), so a match off by match_sigma_px is off by that over this in rho;
    # near the epipole (forward motion) and far away this dominates and the depth is weak
    with np.errstate(divide="ignore", invalid="ignore"):
        px_per_rho = parallax / abs(rho[0] - rho[-1])
        match_sigma = params.match_sigma_px / (px_per_rho * inv)
    sigma_log = np.sqrt(plane_sigma ** 2 + match_sigma ** 2).astype(np.float32)
    known = ((parallax >= params.min_parallax_px) & (texture >= params.min_texture)
             & (unique >= params.min_uniqueness) & (best_cost <= params.max_cost)
             & (agree >= 0.5) & np.isfinite(depth) & (sigma_log <= params.max_sigma_log))
    conf = np.clip(unique / (2.0 * params.min_uniqueness), 0.0, 1.0) * agree \
        * np.clip(1.0 - best_cost / params.max_cost, 0.0, 1.0) ** 0.5
    conf = np.where(known, conf, 0.0).astype(np.float32)
    depth[~known] = np.nan
    sigma_log[~known] = np.nan
    return SweepResult(depth, conf, sigma_log)
