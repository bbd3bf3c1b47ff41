"""Self-supervised losses on hand-made cases."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vode_ros.learn import losses  # noqa: E402

H, W = 16, 20


def _img(seed=0, b=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, H, W, generator=g)


def test_ssim_of_identical_images_is_one():
    x = _img()
    assert torch.allclose(losses.ssim(x, x), torch.ones_like(x), atol=1e-5)
    assert losses.photometric_error(x, x).abs().max() < 1e-5


def test_photometric_error_of_a_constant_offset():
    a, c = 0.3, 0.2
    x = torch.full((1, 3, H, W), a)
    y = x + c
    s = (2 * a * (a + c) + losses.SSIM_C1) / (a * a + (a + c) ** 2 + losses.SSIM_C1)
    expect = 0.85 * (1 - s) / 2 + 0.15 * c
    err = losses.photometric_error(y, x)
    assert err.shape == (1, 1, H, W)
    assert torch.allclose(err, torch.full_like(err, expect), atol=2e-5)


def test_photometric_error_grows_with_misalignment():
    x = _img()
    shifted = torch.roll(x, 1, dims=3)
    assert losses.photometric_error(shifted, x).mean() > 0.1


def test_min_reprojection_takes_the_per_pixel_minimum():
    e1 = torch.tensor([[[[1.0, 0.2], [0.5, 0.0]]]])
    e2 = torch.tensor([[[[0.3, 0.9], [0.5, 0.1]]]])
    assert torch.equal(losses.min_reprojection([e1, e2]), torch.tensor([[[[0.3, 0.2],
                                                                           [0.5, 0.0]]]]))


def test_automask_ignores_pixels_that_do_not_move():
    reproj = [torch.tensor([[[[0.1, 0.5]]]]), torch.tensor([[[[0.2, 0.6]]]])]
    identity = [torch.tensor([[[[0.3, 0.05]]]]), torch.tensor([[[[0.4, 0.4]]]])]
    loss_map, mask = losses.automask(reproj, identity, noise=0.0)
    assert torch.equal(mask, torch.tensor([[[[1.0, 0.0]]]]))
    assert torch.allclose(loss_map, torch.tensor([[[[0.1, 0.05]]]]))
    # a static scene: identity == reprojection exactly; the noise breaks the tie one way or the
    # other but the loss stays (almost) the same
    same = [torch.full((1, 1, 4, 4), 0.2)]
    lm, _ = losses.automask(same, same)
    assert torch.allclose(lm, same[0], atol=1e-4)


def test_smoothness_is_zero_for_constant_and_scale_invariant():
    img = _img()
    assert losses.smoothness(torch.full((1, 1, H, W), 0.3), img) == 0
    disp = torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(1)) + 0.1
    assert losses.smoothness(disp, img) == pytest.approx(float(losses.smoothness(3 * disp, img)),
                                                         rel=1e-5)


def test_smoothness_is_cheaper_at_image_edges():
    disp = torch.ones(1, 1, H, W)
    disp[..., W // 2:] = 2.0
    flat = torch.full((1, 3, H, W), 0.5)
    edge = flat.clone()
    edge[..., W // 2:] = 1.0  # an image edge where the disparity jumps
    assert losses.smoothness(disp, edge) < 0.7 * losses.smoothness(disp, flat)


def test_stereo_loss_is_lowest_at_the_true_metric_depth():
    fx, baseline, Z = 20.0, 0.5, 5.0  # disparity fx * b / Z = 2 px
    K = torch.tensor([[[fx, 0, W / 2], [0, fx, H / 2], [0, 0, 1.0]]])
    inv_K = torch.inverse(K)
    left = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 5), size=(H, W), mode="bilinear",
                                           align_corners=False)
    right = torch.zeros_like(left)
    right[..., :W - 2] = left[..., 2:]  # right camera: content shifted 2 px to the left
    errs = {z: float(losses.stereo_photometric(left, right, torch.full((1, 1, H, W), z), baseline,
                                               K, inv_K)[..., 3:W - 3].mean())
            for z in (2.5, 5.0, 10.0)}
    assert errs[Z] < 1e-4 and errs[Z] < errs[2.5] and errs[Z] < errs[10.0]


def test_pose_fit_on_hand_made_poses():
    from scipy.spatial.transform import Rotation
    eye = torch.eye(4).expand(2, 4, 4).clone()
    assert torch.equal(losses.pose_fit(eye, eye), torch.zeros(2))
    theta = 0.1
    turned = eye.clone()
    turned[0, :3, :3] = torch.tensor(Rotation.from_rotvec([0, 0, theta]).as_matrix(),
                                     dtype=torch.float32)
    turned[1, :3, 3] = torch.tensor([0.3, 0.0, -0.6])
    fit = losses.pose_fit(turned, eye)
    # four entries move: cos by 1 - cos(θ) twice, sin by sin(θ) twice; nine entries in all
    assert float(fit[0]) == pytest.approx((2 * (1 - np.cos(theta)) + 2 * np.sin(theta)) / 9,
                                          rel=1e-5)
    assert float(fit[1]) == pytest.approx(0.9 / 3, rel=1e-6)   # |0.3| + |-0.6| over three
    assert torch.equal(losses.pose_fit(turned, eye), losses.pose_fit(eye, turned))
