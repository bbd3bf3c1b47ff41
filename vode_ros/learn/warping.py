"""View synthesis for self-supervised training: one small function per step.

    points = backproject(depth, inv_K)          # pixels + depth -> 3-D points in the target camera
    points = transform(points, T_source_target) # into the source camera
    pixels = project(points, K)                 # onto the source image plane
    warped = bilinear_sample(source, pixels)    # the source image seen from the target view

Conventions: pixel (u, v) is the centre of column u, row v (0-based); cameras are REP-103 optical
frames (z forward, x right, y down); ``T_b_a`` maps points of frame a into frame b
(``X_b = T_b_a X_a``). Poses from the networks are ``(rx, ry, rz, tx, ty, tz)``: a rotation vector
(radians) then a translation (:func:`pose_vec_to_matrix`).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel coordinates ``[3, H*W]`` (u, v, 1), row-major."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)], 0)


def backproject(depth: torch.Tensor, inv_K: torch.Tensor) -> torch.Tensor:
    """Depth ``[B, 1, H, W]`` and inverse intrinsics ``[B, 3, 3]`` to points ``[B, 3, H*W]``."""
    b, _, h, w = depth.shape
    pix = pixel_grid(h, w, depth.device, depth.dtype)
    rays = inv_K[:, :3, :3] @ pix.unsqueeze(0)
    return rays * depth.reshape(b, 1, h * w)


def transform(points: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Rigid transform ``[B, 4, 4]`` (or ``[B, 3, 4]``) applied to points ``[B, 3, N]``."""
    return T[:, :3, :3] @ points + T[:, :3, 3:4]


def project(points: torch.Tensor, K: torch.Tensor, height: int, width: int,
            eps: float = 1e-7) -> torch.Tensor:
    """Points ``[B, 3, H*W]`` to pixel coordinates ``[B, H, W, 2]`` (u, v) through ``K [B, 3, 3]``.

    Points at or behind the camera get a tiny positive depth (``eps``): they land far outside the
    image, where sampling clamps to the border."""
    cam = K[:, :3, :3] @ points
    z = cam[:, 2:3].clamp(min=eps)
    uv = cam[:, :2] / z
    return uv.reshape(points.shape[0], 2, height, width).permute(0, 2, 3, 1)


def bilinear_sample(image: torch.Tensor, pixels: torch.Tensor,
                    padding_mode: str = "border") -> torch.Tensor:
    """Sample ``image [B, C, H, W]`` at ``pixels [B, H', W', 2]`` (u, v in pixels), bilinearly."""
    h, w = image.shape[-2:]
    grid = torch.stack([2.0 * pixels[..., 0] / max(w - 1, 1) - 1.0,
                        2.0 * pixels[..., 1] / max(h - 1, 1) - 1.0], dim=-1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode=padding_mode,
                         align_corners=True)


def warp(source: torch.Tensor, depth: torch.Tensor, T_source_target: torch.Tensor,
         K: torch.Tensor, inv_K: torch.Tensor, return_pixels: bool = False):
    """The source image resampled into the target view, given the target's depth and the target
    camera's pose in the source camera (``X_source = T X_target``)."""
    h, w = depth.shape[-2:]
    pixels = project(transform(backproject(depth, inv_K), T_source_target), K, h, w)
    warped = bilinear_sample(source, pixels)
    return (warped, pixels) if return_pixels else warped


# -- pose parameterisation -------------------------------------------------------------------------
def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``[B, 3]`` (radians) to rotation matrices ``[B, 3, 3]`` (Rodrigues)."""
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-12)
    small = theta2 < 1e-8
    # sin(t)/t and (1-cos(t))/t^2, with their Taylor series near zero
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / (theta2 + 1e-12))
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(k)
    return eye + a.unsqueeze(-1) * k + b.unsqueeze(-1) * (k @ k)


def pose_vec_to_matrix(vec: torch.Tensor, invert: bool = False) -> torch.Tensor:
    """``[B, 6]`` (rx, ry, rz, tx, ty, tz) to ``[B, 4, 4]``; ``invert`` returns the inverse."""
    R = axis_angle_to_matrix(vec[:, :3])
    t = vec[:, 3:].unsqueeze(-1)
    if invert:
        R = R.transpose(1, 2)
        t = -R @ t
    T = torch.zeros(vec.shape[0], 4, 4, dtype=vec.dtype, device=vec.device)
    T[:, :3, :3] = R
    T[:, :3, 3:] = t
    T[:, 3, 3] = 1.0
    return T


def stereo_transform(baseline_m, batch: int, sign: float = 1.0, dtype=torch.float32,
                     device=None) -> torch.Tensor:
    """``T_source_target`` of a rectified stereo pair: the other camera sits ``baseline_m`` along
    +x of the target (``sign=-1``: along -x), so ``X_source = X_target - sign * baseline``."""
    T = torch.eye(4, dtype=dtype, device=device).repeat(batch, 1, 1)
    base = torch.as_tensor(baseline_m, dtype=dtype, device=device).reshape(-1)
    T[:, 0, 3] = -sign * base.expand(batch)
    return T
