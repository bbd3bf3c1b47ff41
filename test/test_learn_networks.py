"""Depth and pose networks: shapes, ranges, multi-scale outputs, near-identity poses at init."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from vode_ros.learn import networks as nw  # noqa: E402

H, W = 64, 96


@pytest.fixture(scope="module")
def nets():
    cfg = nw.make_config(input_height=H, input_width=W)
    depth, pose = nw.build_networks(cfg, seed=0)
    return cfg, depth, pose


def test_depth_multiscale_shapes_and_range(nets):
    cfg, depth, _ = nets
    depth.train()
    x = nw.normalize(torch.rand(2, 3, H, W), cfg)
    disps = depth(x)
    assert len(disps) == cfg["num_scales"] == 4
    for s, d in enumerate(disps):
        assert d.shape == (2, 1, H // 2 ** s, W // 2 ** s)
        assert torch.all((d > 0) & (d < 1))
    (sum(d.mean() for d in disps)).backward()
    assert all(p.grad is not None for p in depth.parameters() if p.requires_grad)
    depth.zero_grad()


def test_depth_export_wrapper_gives_full_resolution_only(nets):
    cfg, depth, _ = nets
    depth.eval()
    x = nw.normalize(torch.rand(1, 3, H, W), cfg)
    with torch.no_grad():
        full = nw.DepthExport(depth).eval()(x)
        all_scales = depth(x)
    assert full.shape == (1, 1, H, W)
    assert torch.allclose(full, all_scales[0])
    depth_m = nw.disparity_to_depth(full, cfg["min_depth"], cfg["max_depth"])
    assert torch.all((depth_m >= cfg["min_depth"]) & (depth_m <= cfg["max_depth"]))


def test_pose_shape_and_near_identity_at_init(nets):
    cfg, _, pose = nets
    pose.eval()
    pair = nw.normalize(torch.rand(3, 6, H, W), cfg)
    with torch.no_grad():
        out = pose(pair)
    assert out.shape == (3, 6)
    assert torch.all(torch.isfinite(out))
    assert out[:, :3].norm(dim=1).max() < 0.05    # radians
    assert out[:, 3:].norm(dim=1).max() < 0.05    # model units


def test_pose_depends_on_frame_order(nets):
    cfg, _, pose = nets
    pose.eval()
    a, b = torch.rand(1, 3, H, W), torch.rand(1, 3, H, W)
    with torch.no_grad():
        ab = pose(nw.normalize(torch.cat([a, b], 1), cfg))
        ba = pose(nw.normalize(torch.cat([b, a], 1), cfg))
    assert not torch.allclose(ab, ba)


def test_config_checks_and_variants():
    cpu, gpu = nw.make_config("cpu"), nw.make_config("gpu")
    assert (cpu["input_height"], cpu["input_width"]) == (192, 256)
    assert gpu["input_height"] * gpu["input_width"] > cpu["input_height"] * cpu["input_width"]
    with pytest.raises(ValueError, match="multiples of 32"):
        nw.make_config(input_height=100)
    with pytest.raises(ValueError, match="unknown model_config"):
        nw.make_config(no_such_key=1)
    with pytest.raises(ValueError, match="unknown network variant"):
        nw.make_config("tpu")
    # a checkpoint's (possibly older, partial) config is completed with defaults
    assert nw.check_config({"input_height": 64, "input_width": 64})["num_scales"] == 4


def test_width_multiplier_and_rebuild_from_config():
    small = nw.make_config(input_height=64, input_width=64, width_mult=0.5)
    d_small, p_small = nw.build_networks(small, seed=1)
    d_base, _ = nw.build_networks(nw.make_config(input_height=64, input_width=64), seed=1)
    assert nw.count_parameters(d_small) < nw.count_parameters(d_base)
    # the config alone rebuilds networks the saved weights fit
    d_again, p_again = nw.build_networks(d_small.config)
    d_again.load_state_dict(d_small.state_dict())
    p_again.load_state_dict(p_small.state_dict())


def test_normalize_matches_the_runtime():
    import numpy as np

    from vode_ros.inference import ModelSpec, to_tensor

    cfg = nw.make_config(input_height=32, input_width=32)
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    spec = ModelSpec(kind="depth", input_height=32, input_width=32, mean=tuple(cfg["mean"]),
                     std=tuple(cfg["std"]), scale="relative")
    runtime = to_tensor(rgb, spec)
    ours = nw.normalize(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0, cfg)
    assert np.allclose(runtime, ours.numpy(), atol=1e-5)
