"""Warping: backproject / transform / project / bilinear sampling, pose parameterisation."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vode_ros.learn import warping  # noqa: E402

H, W = 24, 32
FX, FY, CX, CY = 30.0, 28.0, 15.5, 11.5


def _K(b=1):
    K = torch.tensor([[FX, 0, CX], [0, FY, CY], [0, 0, 1.0]])
    return K.repeat(b, 1, 1), torch.inverse(K).repeat(b, 1, 1)


def _image(b=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, 6, 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(H, W), mode="bilinear",
                                           align_corners=False)


def test_identity_pose_reproduces_the_image():
    img = _image(2)
    K, inv_K = _K(2)
    depth = 1.0 + torch.rand(2, 1, H, W)
    T = torch.eye(4).repeat(2, 1, 1)
    warped, pix = warping.warp(img, depth, T, K, inv_K, return_pixels=True)
    u, v = torch.meshgrid(torch.arange(W, dtype=torch.float32),
                          torch.arange(H, dtype=torch.float32), indexing="xy")
    assert torch.allclose(pix[0, ..., 0], u, atol=1e-4)
    assert torch.allclose(pix[0, ..., 1], v, atol=1e-4)
    assert torch.allclose(warped, img, atol=1e-5)


def test_known_pose_moves_a_known_point_to_its_projected_pixel():
    K, inv_K = _K()
    depth = torch.full((1, 1, H, W), 2.0)
    u, v = 5, 7
    depth[0, 0, v, u] = 4.0
    rot = torch.tensor([[0.02, -0.05, 0.1]])
    t = torch.tensor([[0.3, -0.1, 0.2]])
    T = warping.pose_vec_to_matrix(torch.cat([rot, t], 1))
    pts = warping.backproject(depth, inv_K)
    # the point of pixel (u, v) at depth 4 m
    X = np.array([(u - CX) / FX * 4.0, (v - CY) / FY * 4.0, 4.0])
    assert np.allclose(pts[0, :, v * W + u].numpy(), X, atol=1e-5)
    pix = warping.project(warping.transform(pts, T), K, H, W)
    from scipy.spatial.transform import Rotation
    Xs = Rotation.from_rotvec(rot[0].numpy()).as_matrix() @ X + t[0].numpy()
    expect = (FX * Xs[0] / Xs[2] + CX, FY * Xs[1] / Xs[2] + CY)
    assert np.allclose(pix[0, v, u].numpy(), expect, atol=1e-4)


def test_translation_shifts_by_the_disparity():
    # camera moved along +x by b: X_source = X_target - b -> the image shifts by fx * b / Z left
    img = _image()
    K, inv_K = _K()
    Z, shift = 3.0, 2
    depth = torch.full((1, 1, H, W), Z)
    T = warping.stereo_transform(shift * Z / FX, 1, sign=1.0)
    source = torch.zeros_like(img)
    source[..., :, :W - shift] = img[..., :, shift:]  # what the moved camera sees
    warped = warping.warp(source, depth, T, K, inv_K)
    assert torch.allclose(warped[..., :, shift:W - shift], img[..., :, shift:W - shift],
                          atol=1e-5)


def test_bilinear_sample_interpolates_between_pixels():
    img = torch.arange(W, dtype=torch.float32).repeat(1, 1, H, 1)
    pix = torch.tensor([[[[3.25, 4.0], [10.5, 0.0]]]])
    out = warping.bilinear_sample(img, pix)
    assert torch.allclose(out[0, 0, 0], torch.tensor([3.25, 10.5]))


def test_points_behind_the_camera_fall_outside():
    K, _ = _K()
    pts = torch.tensor([[[0.1], [0.1], [-1.0]]])
    pix = warping.project(pts, K, 1, 1)
    assert pix.abs().max() > 1e4
    u, v = pix[..., 0], pix[..., 1]
    assert not ((u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)).any()


@pytest.mark.parametrize("vec", [[0.0, 0.0, 0.0], [1e-6, -2e-6, 0.0], [0.3, -0.2, 0.5],
                                 [0.0, math.pi - 1e-3, 0.0]])
def test_axis_angle_matches_rodrigues(vec):
    from scipy.spatial.transform import Rotation
    R = warping.axis_angle_to_matrix(torch.tensor([vec], dtype=torch.float64))
    assert np.allclose(R[0].numpy(), Rotation.from_rotvec(vec).as_matrix(), atol=1e-9)


def test_pose_inverse():
    vec = torch.tensor([[0.1, -0.2, 0.3, 1.0, -2.0, 0.5]], dtype=torch.float64)
    T = warping.pose_vec_to_matrix(vec)
    Ti = warping.pose_vec_to_matrix(vec, invert=True)
    assert torch.allclose(T @ Ti, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_gradients_flow_to_depth_and_pose():
    img = _image()
    K, inv_K = _K()
    depth = torch.full((1, 1, H, W), 2.0, requires_grad=True)
    vec = torch.tensor([[0.01, 0.0, 0.0, 0.05, 0.0, 0.0]], requires_grad=True)
    out = warping.warp(img, depth, warping.pose_vec_to_matrix(vec), K, inv_K)
    (out - img).abs().mean().backward()
    assert depth.grad.abs().sum() > 0 and vec.grad.abs().sum() > 0
