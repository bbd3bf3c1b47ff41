"""Fusion of the aligned network depth with the multi-view depth of the last depth keyframe.

Both are estimates of log depth with a standard deviation: the network's is
``depth.network_sigma_log`` everywhere, the multi-view depth's comes from its plane spacing and
matching cost (``plane_sweep``). Where multi-view depth is known and confident they are combined
by inverse-variance weighting in log depth; elsewhere the network's stands alone. The confidence
published beside the depth is ``1 / (1 + (sigma / 0.1)^2)``: 0.5 for a 10 % standard deviation,
near 1 for multi-view depth with a clear minimum, about 0.3 for the network alone.

Multi-view depth is known only where there is texture and parallax; ``propagate`` spreads it to
the pixels around (normalised convolution in log depth with a wide Gaussian), its standard
deviation growing as the support of known pixels thins, so that geometry also speaks for the
textureless wall beside a textured poster. What is spread is the log multi-view depth less a
share of the network's log depth, added back after: share 1 keeps the network's shape and lets
geometry correct its scale locally, share 0 spreads the depth as it is. ``measure_spread``
chooses the share on every frame and measures the spread's deviation, on the frame itself: a
checkerboard of cells whose known depth is spread to the other cells' known pixels. The
network's own standard deviation is measured on every frame against the confident multi-view
depth (``network_sigma``); it stands alone only where no multi-view depth is near.

``reproject`` carries the keyframe's multi-view depth to a later frame (forward-projected through
the odometry's relative pose, the nearest surface kept), so frames between keyframes are fused
and aligned too.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vode_ros.camera import Camera

SIGMA_REF = 0.1                        # log-depth standard deviation of confidence 0.5


@dataclass
class DepthImage:
    """Depth (HxW float32, NaN unknown) and the standard deviation of its log (NaN unknown)."""

    depth: np.ndarray
    sigma_log: np.ndarray

    @classmethod
    def unknown(cls, height: int, width: int) -> DepthImage:
        nan = np.full((height, width), np.nan, np.float32)
        return cls(nan, nan.copy())


def confidence_from_sigma(sigma_log: np.ndarray) -> np.ndarray:
    """Confidence in 0..1 of a log-depth standard deviation (0 where unknown)."""
    with np.errstate(invalid="ignore"):
        c = 1.0 / (1.0 + (sigma_log / SIGMA_REF) ** 2)
    return np.nan_to_num(c, nan=0.0).astype(np.float32)


def reproject(depth: DepthImage, camera: Camera, T_cur_kf: np.ndarray, out_camera: Camera
              ) -> DepthImage:
    """The keyframe's depth (intrinsics ``camera``) seen from a camera at ``T_cur_kf``
    (``X_cur = T X_kf``) with intrinsics ``out_camera``: each known pixel's point projected to
    its nearest output pixel, the nearest point kept; unknown where no point lands."""
    out = DepthImage.unknown(out_camera.height, out_camera.width)
    v, u = np.nonzero(np.isfinite(depth.depth))
    if len(u) == 0:
        return out
    z = depth.depth[v, u].astype(np.float64)
    X = np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z])
    Xc = T_cur_kf[:3, :3] @ X + T_cur_kf[:3, 3:4]
    zc = Xc[2]
    front = zc > 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        uc = np.round(out_camera.fx * Xc[0] / zc + out_camera.cx)
        vc = np.round(out_camera.fy * Xc[1] / zc + out_camera.cy)
    inside = front & (uc >= 0) & (uc < out_camera.width) & (vc >= 0) & (vc < out_camera.height)
    order = np.argsort(-zc[inside])        # far first: the nearest point is written last
    ui, vi = uc[inside][order].astype(int), vc[inside][order].astype(int)
    out.depth[vi, ui] = zc[inside][order]
    out.sigma_log[vi, ui] = depth.sigma_log[v, u][inside][order]
    return out


def fuse(network: DepthImage, multiview: DepthImage) -> DepthImage:
    """Inverse-variance weighted mean in log depth where both are known, else whichever is."""
    ln, lm = np.log(network.depth), np.log(multiview.depth)
    wn, wm = network.sigma_log ** -2.0, multiview.sigma_log ** -2.0
    both = np.isfinite(ln) & np.isfinite(lm) & np.isfinite(wn) & np.isfinite(wm)
    depth = np.where(np.isfinite(ln), network.depth, multiview.depth).astype(np.float32)
    sigma = np.where(np.isfinite(ln), network.sigma_log, multiview.sigma_log).astype(np.float32)
    w = wn[both] + wm[both]
    depth[both] = np.exp((ln[both] * wn[both] + lm[both] * wm[both]) / w)
    sigma[both] = w ** -0.5
    return DepthImage(depth, sigma)


def network_sigma(network: np.ndarray, multiview: np.ndarray, floor: float,
                  min_pixels: int = 50) -> float | None:
    """Robust standard deviation (1.4826 MAD) of log(multi-view / aligned network depth) where
    both are known, at least ``floor``; None with fewer than ``min_pixels`` such pixels."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(multiview / network)
    r = r[np.isfinite(r)]
    if r.size < min_pixels:
        return None
    return max(float(1.4826 * np.median(np.abs(r - np.median(r)))), floor)


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma_px``, computed at a quarter of the size (the
    result is smooth at that scale anyway)."""
    h, w = img.shape
    small = cv2.resize(img, (max(w // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(sigma_px / 4.0, 0.5),
                             borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


SHAPES = (0.0, 0.25, 0.5, 0.75, 1.0)     # the network shares tried by ``measure_spread``


def _spread_log(known: np.ndarray, values: np.ndarray, sigma_px: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Normalised convolution: the Gaussian-weighted mean of ``values`` (finite everywhere)
    over the ``known`` pixels, and the support (the weighted fraction of known pixels around,
    0..1)."""
    wgt = known.astype(np.float32)
    support = _blur(wgt, sigma_px)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = _blur(values * wgt, sigma_px) / support
    return mean, support


def deviations(log_diff: np.ndarray, sigma_a: np.ndarray, sigma_b: np.ndarray) -> np.ndarray:
    """A log-depth difference in standard deviations of its two sides together (NaN where
    either is unknown): what ``propagate`` and the fusion leave out beyond ``reject``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(log_diff) / np.sqrt(sigma_a ** 2 + sigma_b ** 2)


def _logs(multiview: np.ndarray, network: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Pixels where multi-view depth (and the network's, if given) is known, and their log
    depths (0 elsewhere)."""
    known = np.isfinite(multiview)
    log_net = None
    if network is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_net = np.log(network)
        known &= np.isfinite(log_net)
        log_net = np.where(known, log_net, 0.0).astype(np.float32)
    log_mv = np.where(known, np.log(np.where(known, multiview, 1.0)), 0.0).astype(np.float32)
    return known, log_mv, log_net


def _checkerboard_sigmas(multiview: np.ndarray, network: np.ndarray | None, sigma_px: float,
                         shapes: tuple[float, ...], floor: float, min_pixels: int
                         ) -> list[float] | None:
    """``propagation_sigma`` for each network share in ``shapes`` (the spread is linear in the
    share, so one set of blurs serves them all); None where it cannot be measured."""
    known, log_mv, log_net = _logs(multiview, network)
    h, w = multiview.shape
    cell = max(int(round(2.0 * sigma_px)), 1)
    black = ((np.arange(h)[:, None] // cell + np.arange(w)[None, :] // cell) % 2) == 0
    z = [[] for _ in shapes]
    for src in (known & black, known & ~black):
        dst = known & ~src
        if src.sum() < min_pixels or dst.sum() < min_pixels:
            return None
        wgt = src.astype(np.float32)
        support = _blur(wgt, sigma_px)
        ok = dst & (support > 1e-3)
        root = np.sqrt(support[ok])
        mean_mv = _blur(log_mv * wgt, sigma_px)[ok] / support[ok] - log_mv[ok]
        mean_net = (_blur(log_net * wgt, sigma_px)[ok] / support[ok] - log_net[ok]
                    if log_net is not None else np.zeros_like(mean_mv))
        for i, shape in enumerate(shapes):
            z[i].append((mean_mv - shape * mean_net) * root)
    out = []
    for parts in z:
        e = np.concatenate(parts)
        e = e[np.isfinite(e)]
        if e.size < min_pixels:
            return None
        out.append(max(float(1.4826 * np.median(np.abs(e))), floor))
    return out


def propagation_sigma(multiview: np.ndarray, sigma_px: float, floor: float,
                      min_pixels: int = 50, network: np.ndarray | None = None,
                      shape: float = 0.0) -> float | None:
    """How far spread multi-view depth is off, measured on the frame itself (no ground truth):
    the image is cut into a checkerboard of cells twice ``sigma_px`` wide, so that a pixel is
    mostly told by depth some way off, as the unknown pixels that the spread fills are; the
    known depth of one colour is spread (as ``propagate`` does, with the same network
    ``shape``) to the known pixels of the other, and back. The log errors there, times the
    square root of their support, have a robust standard deviation (1.4826 times their median
    absolute value, a bias counting as error) that is ``propagate``'s ``sigma_log`` for this
    scene: small where the depth varies smoothly (a road), large in clutter. At least
    ``floor``; None with fewer than ``min_pixels`` known pixels on either side."""
    out = _checkerboard_sigmas(multiview, network if shape != 0.0 else None, sigma_px,
                               (shape,), floor, min_pixels)
    return None if out is None else out[0]


def measure_spread(multiview: np.ndarray, network: np.ndarray, sigma_px: float, floor: float,
                   shapes: tuple[float, ...] = SHAPES, min_pixels: int = 50
                   ) -> tuple[float, float] | None:
    """The network share of the spread (``propagate``'s ``shape``) that the checkerboard of
    ``propagation_sigma`` finds least wrong on this frame, and its deviation; None where it
    cannot be measured. Where the network's shape is right (a street it knows) the share is 1
    and multi-view depth only corrects its scale locally; where it is wrong (a room it never
    saw) the multi-view depth is spread more as it is."""
    sigmas = _checkerboard_sigmas(multiview, network, sigma_px, shapes, floor, min_pixels)
    if sigmas is None:
        return None
    i = int(np.argmin(sigmas))
    return shapes[i], sigmas[i]


def propagate(multiview: DepthImage, sigma_px: float, sigma_log: float,
              network: np.ndarray | None = None, shape: float = 0.0,
              reject: float = 0.0) -> DepthImage:
    """Multi-view depth spread to every pixel it reaches: the Gaussian-weighted (``sigma_px``)
    mean of the known log depths less ``shape`` (0..1) times the log network depth, with that
    share of the network's log depth added back (0: the depth spread as it is; 1: the network's
    depth times the spread ratio, its shape kept), standard deviation ``sigma_log /
    sqrt(support)`` (support: the weighted fraction of known pixels around, 0..1). It covers the
    known pixels too (a second estimate there, for ``fuse``); unknown where no known pixel is
    near. With ``reject`` > 0 it is computed again without the known pixels further than
    ``reject`` standard deviations (theirs and the spread's together) from the first spread."""
    follow = network is not None and shape != 0.0
    known, log_mv, log_net = _logs(multiview.depth, network if follow else None)
    h, w = multiview.depth.shape
    if not known.any():
        return DepthImage.unknown(h, w)
    values = log_mv - shape * log_net if log_net is not None else log_mv
    mean, support = _spread_log(known, values, sigma_px)
    if reject > 0:        # once more without the known pixels far off what the others say
        with np.errstate(divide="ignore", invalid="ignore"):
            spread_sigma = sigma_log / np.sqrt(support)
            own_sigma = np.nan_to_num(multiview.sigma_log, nan=0.0)
            keep = known & (deviations(values - mean, own_sigma, spread_sigma) <= reject)
        if keep.any() and not keep.all():
            mean, support = _spread_log(keep, values, sigma_px)
    near = support > 1e-3
    if follow:
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = mean + shape * np.log(network)
        near &= np.isfinite(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(near, np.exp(mean), np.nan)
        sig = np.where(near, sigma_log / np.sqrt(support), np.nan)
    return DepthImage(depth.astype(np.float32), sig.astype(np.float32))
