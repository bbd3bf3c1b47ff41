"""Self-supervised losses, one small function each (Monodepth2, UnDeepVO).

Per-pixel functions return ``[B, 1, H, W]`` maps so that they compose: photometric error of each
warped source, their per-pixel minimum (:func:`min_reprojection`), auto-masking of pixels that do
not move (:func:`automask`), then a mean. Images are ``[B, 3, H, W]`` in [0, 1].
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2
PHOTOMETRIC_ALPHA = 0.85


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel, per-channel SSIM over 3x3 windows (mean filter, reflection padding), in [-1, 1].

    Wang et al. 2004 with ``C1 = 0.01^2``, ``C2 = 0.03^2`` for images in [0, 1]."""
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x, 3, 1)
    mu_y = F.avg_pool2d(y, 3, 1)
    var_x = F.avg_pool2d(x * x, 3, 1) - mu_x * mu_x
    var_y = F.avg_pool2d(y * y, 3, 1) - mu_y * mu_y
    cov = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return num / den


def photometric_error(pred: torch.Tensor, target: torch.Tensor,
                      alpha: float = PHOTOMETRIC_ALPHA) -> torch.Tensor:
    """``alpha * (1 - SSIM) / 2 + (1 - alpha) * |pred - target|``, averaged over channels:
    ``[B, 1, H, W]``."""
    l1 = (pred - target).abs().mean(1, keepdim=True)
    dssim = ((1.0 - ssim(pred, target)) / 2.0).clamp(0.0, 1.0).mean(1, keepdim=True)
    return alpha * dssim + (1.0 - alpha) * l1


def min_reprojection(errors) -> torch.Tensor:
    """Per-pixel minimum over the sources' errors (list of ``[B, 1, H, W]``): a pixel occluded in
    one source is judged by the source that sees it (Monodepth2)."""
    return torch.cat(list(errors), dim=1).min(dim=1, keepdim=True)[0]


def automask(reprojection_errors, identity_errors, noise: float = 1e-5):
    """Monodepth2 auto-masking: a pixel whose *unwarped* source already matches the target as well
    as any warped one (a static camera, an object moving with it, a textureless region) is
    ignored.

    Returns ``(loss_map, mask)``: the per-pixel minimum over identity and reprojection errors
    (identity errors get tiny noise to break ties) and the mask (1 where a reprojection won)."""
    reproj = torch.cat(list(reprojection_errors), dim=1)
    ident = torch.cat(list(identity_errors), dim=1)
    if noise:
        ident = ident + noise * torch.randn_like(ident)
    combined = torch.cat([ident, reproj], dim=1)
    loss_map, idx = combined.min(dim=1, keepdim=True)
    mask = (idx >= ident.shape[1]).to(loss_map.dtype)
    return loss_map, mask


def smoothness(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness of mean-normalised disparity (Godard et al. 2017/2019):
    ``mean(|d_x d*| exp(-|d_x I|)) + mean(|d_y d*| exp(-|d_y I|))``, ``d* = d / mean(d)``."""
    d = disp / (disp.mean(dim=(2, 3), keepdim=True) + 1e-7)
    gdx = (d[..., :, :-1] - d[..., :, 1:]).abs()
    gdy = (d[..., :-1, :] - d[..., 1:, :]).abs()
    gix = (image[..., :, :-1] - image[..., :, 1:]).abs().mean(1, keepdim=True)
    giy = (image[..., :-1, :] - image[..., 1:, :]).abs().mean(1, keepdim=True)
    return (gdx * torch.exp(-gix)).mean() + (gdy * torch.exp(-giy)).mean()


def stereo_photometric(target: torch.Tensor, other: torch.Tensor, depth: torch.Tensor,
                       baseline_m: float, K: torch.Tensor, inv_K: torch.Tensor,
                       sign: float = 1.0) -> torch.Tensor:
    """Photometric error ``[B, 1, H, W]`` of the other camera of a rectified stereo pair, warped
    into the target by ``depth`` and the *known* baseline: its minimum fixes metric scale
    (UnDeepVO; Monodepth2 'MS'). ``sign=+1`` when the other camera lies along +x (right)."""
    from vode_ros.learn.warping import stereo_transform, warp

    T = stereo_transform(baseline_m, target.shape[0], sign, target.dtype, target.device)
    return photometric_error(warp(other, depth, T, K, inv_K), target)


def pose_fit(T_pred: torch.Tensor, T_ref: torch.Tensor) -> torch.Tensor:
    """How far predicted relative poses ``[B, 4, 4]`` are from reference ones, per sample ``[B]``:
    the mean absolute difference of the rotation matrices' nine entries plus that of the three
    translation entries (in the translation's unit). A rotation by a small angle θ about one axis
    differs from the identity by about θ in four entries, so the rotation part is ~4θ/9."""
    rot = (T_pred[:, :3, :3] - T_ref[:, :3, :3]).abs().flatten(1).mean(1)
    trans = (T_pred[:, :3, 3] - T_ref[:, :3, 3]).abs().mean(1)
    return rot + trans


# -- supervised, on exact depth (synthetic samples) -----------------------------------------------
def _log_ratio(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log pred - log gt`` where ``mask`` (0 elsewhere), ``[B, 1, H, W]``."""
    safe_gt = torch.where(mask, gt, torch.ones_like(gt))
    return torch.where(mask, torch.log(pred.clamp(min=1e-6)) - torch.log(safe_gt),
                       torch.zeros_like(pred))


def silog(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor,
          lam: float = 1.0) -> torch.Tensor:
    """Scale-invariant log loss (Eigen, Puhrsch and Fergus 2014), per sample ``[B]``: with
    ``r = log pred - log gt`` over the ``n`` valid pixels of each image,
    ``mean(r^2) - lam * mean(r)^2``. ``lam = 1``: the variance of ``r``, blind to a global
    factor on ``pred`` (a relative depth); ``lam < 1`` also asks for the scale. Depths
    ``[B, 1, H, W]``, ``mask`` boolean; a sample without a valid pixel gives 0."""
    r = _log_ratio(pred, gt, mask)
    n = mask.flatten(1).sum(1).clamp(min=1).to(r.dtype)
    m1 = r.flatten(1).sum(1) / n
    m2 = (r * r).flatten(1).sum(1) / n
    return (m2 - lam * m1 * m1).clamp(min=0.0)


def gradient_matching(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor,
                      scales: int = 4) -> torch.Tensor:
    """Multi-scale gradient matching on log depth (MegaDepth, Li and Snavely 2018; MiDaS,
    Ranftl et al. 2020), per sample ``[B]``: the mean absolute x and y differences of
    ``r = log pred - log gt`` between neighbouring valid pixels, summed over ``scales`` levels
    (each half the resolution of the last, ``r`` averaged over the valid pixels it covers).
    Zero when ``pred`` is ``gt`` times a constant (a shift of log depth), whatever the
    constant; it asks for sharp, correctly placed depth edges."""
    r = _log_ratio(pred, gt, mask)
    m = mask.to(r.dtype)
    total = torch.zeros(pred.shape[0], dtype=r.dtype, device=r.device)
    for s in range(int(scales)):
        if s > 0:
            if min(r.shape[-2:]) < 4:
                break
            cnt = F.avg_pool2d(m, 2)
            r = F.avg_pool2d(r * m, 2) / cnt.clamp(min=1e-6)
            m = (cnt > 0.99).to(r.dtype)      # only cells whose four pixels are all valid
            r = r * m
        mx = m[..., :, 1:] * m[..., :, :-1]
        my = m[..., 1:, :] * m[..., :-1, :]
        gx = (r[..., :, 1:] - r[..., :, :-1]).abs() * mx
        gy = (r[..., 1:, :] - r[..., :-1, :]).abs() * my
        n = (mx.flatten(1).sum(1) + my.flatten(1).sum(1)).clamp(min=1)
        total = total + (gx.flatten(1).sum(1) + gy.flatten(1).sum(1)) / n
    return total
