"""The synthetic world (places, robot paths, texture sources, camera looks) and the supervised
losses on its exact depth: depth consistent with the poses, determinism, every place renders,
SILog and gradient matching on known cases, and a few training steps with them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vode_ros.datasets import synth
from vode_ros.datasets.base import DatasetError
from vode_ros.datasets.synth_places import PLACES, ROBOT_PATHS, make_place, robot_path
from vode_ros.datasets.synth_sources import check_sources, make_textures, mirror_tile

REPO = Path(__file__).resolve().parents[1]
CAM = synth.default_camera(80, 64, fov_deg=70.0)


def _inside_free_zone(scene, poses):
    x0, x1, y0, y1 = scene.info["free"]
    pos = poses[:, :3, 3]
    return np.all((pos[:, 0] >= x0) & (pos[:, 0] <= x1) & (pos[:, 1] >= y0) & (pos[:, 1] <= y1))


@pytest.mark.parametrize("place", PLACES)
def test_every_place_renders_finite_depth_along_every_path(place):
    scene = make_place(place, seed=4, textures=["procedural"])
    renderer = synth.Renderer(scene, CAM)
    for kind in ROBOT_PATHS:
        poses = robot_path(scene, kind, 12, seed=4)
        assert poses.shape == (12, 4, 4) and np.all(np.isfinite(poses))
        assert _inside_free_zone(scene, poses), (place, kind)
        # out of every solid box (the paths keep to the free zone)
        pos = poses[:, :3, 3]
        for box in scene.boxes[1:]:
            assert not np.any(np.all((pos > box.lo - 0.05) & (pos < box.hi + 0.05), axis=1))
        for T in poses[::5]:
            img, depth = renderer.render(T)
            assert img.shape == (64, 80, 3) and img.dtype == np.uint8
            hit = np.isfinite(depth)
            if not scene.info["outdoor"]:
                assert hit.all(), (place, kind)           # walls everywhere indoors
            assert hit.mean() > 0.3 and np.all(depth[hit] > 0.05), (place, kind)
            assert img.std() > 3.0                        # textured, not blank


def _turn_per_frame_deg(poses):
    from scipy.spatial.transform import Rotation
    R = Rotation.from_matrix(poses[:, :3, :3])
    return np.degrees((R[:-1].inv() * R[1:]).magnitude())


def test_a_vehicle_slows_for_the_bends_of_a_long_street_and_never_spins():
    """A street is 30-60 m long and a few metres wide: the ellipse course of earlier versions
    turned a car at its ends by 20-40 degrees in a frame at full speed. The stadium course
    turns it by at most 1.5 degrees a frame (plus the heading's wobble) and slows it for the
    bend; the hand-held camera keeps its deliberate fast turns."""
    scene = make_place("town", seed=21, textures=["procedural"])
    old = robot_path(scene, "vehicle", 200, seed=21, course="ellipse")
    new = robot_path(scene, "vehicle", 200, seed=21)
    assert _turn_per_frame_deg(old).max() > 20.0              # the case
    assert _turn_per_frame_deg(new).max() < 2.0
    assert _inside_free_zone(scene, new)
    step = np.linalg.norm(np.diff(new[:, :3, 3], axis=0), axis=1)
    turn = _turn_per_frame_deg(new)
    assert step[turn > 1.2].mean() < 0.7 * step[turn < 0.3].mean()   # slower in the bend
    assert np.all(np.abs(np.diff(step)) < 0.025 * step.max())  # no jolt (2 % a frame, sampled)
    for place in PLACES:
        scene = make_place(place, seed=5, textures=["procedural"])
        for kind, most in (("vehicle", 2.0), ("drone", 5.0)):   # (a drone also yaws to and fro)
            assert _turn_per_frame_deg(robot_path(scene, kind, 300, seed=5)).max() < most, \
                (place, kind)
        assert _turn_per_frame_deg(robot_path(scene, "handheld", 300, seed=5)).max() > 10.0
    with pytest.raises(DatasetError, match="course 'circle' is unknown"):
        robot_path(scene, "vehicle", 10, seed=5, course="circle")


def test_depth_agrees_with_the_poses_between_two_frames():
    """A pixel of frame A back-projected with its depth and seen from frame B lands where B's
    rendered depth is the point's depth in B (exact depth and poses), but at occlusion edges."""
    scene = make_place("office", seed=2, textures=["procedural"])
    poses = robot_path(scene, "handheld", 30, seed=2)
    cam = synth.default_camera(160, 128, fov_deg=65.0)
    r = synth.Renderer(scene, cam)
    TA, TB = poses[0], poses[6]
    dA, dB = r.depth(TA), r.depth(TB)
    K = np.array([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1.0]])
    v, u = np.mgrid[0:128:3, 0:160:3]
    z = dA[v, u]
    pts = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)]) * z.ravel()
    T_BA = np.linalg.inv(TB) @ TA
    pB = T_BA[:3, :3] @ pts + T_BA[:3, 3:]
    proj = K @ pB
    ub, vb = proj[0] / proj[2], proj[1] / proj[2]
    ok = (pB[2] > 0.1) & (ub > 1) & (ub < 158) & (vb > 1) & (vb < 126)
    ui, vi = np.round(ub[ok]).astype(int), np.round(vb[ok]).astype(int)
    # the depth at the nearest pixel, compared with the point's depth where the surface is
    # smooth there (the rounding moves at most half a pixel)
    rendered, expected = dB[vi, ui], pB[2, ok]
    rel = np.abs(rendered - expected) / expected
    assert ok.sum() > 500
    assert np.median(rel) < 0.01
    assert np.mean(rel < 0.03) > 0.9          # the rest: occlusions and depth edges


def test_places_and_sequences_are_deterministic_for_a_seed(tmp_path):
    a = make_place("kitchen", seed=7, textures=["procedural"])
    b = make_place("kitchen", seed=7, textures=["procedural"])
    c = make_place("kitchen", seed=8, textures=["procedural"])
    assert len(a.boxes) == len(b.boxes)
    assert all(np.array_equal(x.lo, y.lo) and np.array_equal(x.hi, y.hi)
               for x, y in zip(a.boxes, b.boxes, strict=True))
    assert len(a.boxes) != len(c.boxes) or any(
        not np.array_equal(x.lo, y.lo) for x, y in zip(a.boxes, c.boxes, strict=False))
    kw = dict(scene="town", trajectory="drone", n_frames=3, width=64, height=64, seed=5,
              textures=["procedural"], fov_deg=(50, 90), look=True, supersample=2)
    p1 = synth.generate_sequence(tmp_path / "a", **kw)
    p2 = synth.generate_sequence(tmp_path / "b", **kw)
    for sub in ("rgb", "depth"):
        f1, f2 = sorted((p1 / sub).iterdir()), sorted((p2 / sub).iterdir())
        assert [f.read_bytes() for f in f1] == [f.read_bytes() for f in f2]
    assert (p1 / "groundtruth.txt").read_text() == (p2 / "groundtruth.txt").read_text()
    assert (p1 / "camera.txt").read_text() == (p2 / "camera.txt").read_text()
    fx = float((p1 / "camera.txt").read_text().split()[0])
    fov = np.degrees(2 * np.arctan(32 / fx))
    assert 50 <= fov <= 90


def test_a_sequence_of_a_place_reads_back_with_its_exact_depth(tmp_path):
    from vode_ros.datasets import open_sequence
    path = synth.generate_sequence(tmp_path / "h", scene="hallway", trajectory="vehicle",
                                   n_frames=4, width=96, height=64, seed=1,
                                   textures=["procedural"], look=True)
    seq = open_sequence(path)
    r = synth.Renderer(make_place("hallway", 1, ["procedural"]), seq.camera)
    f = seq[2]
    exact = r.depth(f.gt_pose)
    ok = np.isfinite(f.gt_depth)
    assert ok.mean() > 0.9
    assert np.abs(f.gt_depth[ok] - exact[ok]).max() < 2e-4     # the PNG's 0.2 mm steps


def test_vode_synth_renders_the_course_it_is_asked_for(tmp_path):
    """`vode synth --course ellipse` writes the ellipse's poses (the earlier sequences'), the
    default the stadium's, and says which in synth.json."""
    from vode_ros.cli import main
    scene = make_place("town", 3, ["procedural"])
    for course in ("ellipse", "stadium"):
        out = tmp_path / course
        args = ["synth", str(out), "--scene", "town", "--trajectory", "vehicle", "--frames",
                "40", "--width", "48", "--height", "32", "--seed", "3", "--textures",
                "procedural"] + (["--course", course] if course == "ellipse" else [])
        assert main(args) == 0
        assert json.loads((out / "synth.json").read_text())["course"] == course
        gt = np.loadtxt(out / "groundtruth.txt", comments="#")[:, 1:4]
        want = robot_path(scene, "vehicle", 40, seed=3, course=course)[:, :3, 3]
        assert np.abs(gt - want).max() < 1e-6, course


def test_the_camera_look_meters_dark_and_bright_scenes_to_its_level():
    """A look with an auto-exposure level brings a dim and a bright rendering to about the same
    mean (a real camera meters its scene), follows a change of brightness over a few frames,
    and the fixed-gain look of old (no level) leaves the two apart."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 1.0, (64, 80, 3)).astype(np.float32)
    dim, bright = (base * 60).astype(np.uint8), (base * 220).astype(np.uint8)
    look = {"exposure": 1.0, "gamma": 1.0, "level": 0.5, "white": [1.0, 1.0, 1.0],
            "vignetting": 0.0, "blur": 0.0, "noise": 0.0, "grey": False, "drift": 0.0}
    means = [synth.apply_look(im, look, 0, rng).mean() / 255 for im in (dim, bright)]
    assert all(abs(m - 0.5) < 0.03 for m in means)
    fixed = {k: v for k, v in look.items() if k != "level"}
    apart = [synth.apply_look(im, fixed, 0, rng).mean() / 255 for im in (dim, bright)]
    assert apart[1] - apart[0] > 0.3
    # a scene that turns 3x brighter: over-exposed at first, metered again within frames
    state: dict = {}
    seq = [synth.apply_look(dim if i < 3 else (base * 180).astype(np.uint8), look, i, rng,
                            state).mean() / 255 for i in range(14)]
    assert abs(seq[2] - 0.5) < 0.03 and seq[3] > 0.7 and abs(seq[-1] - 0.5) < 0.03
    assert seq[3] > seq[5] > seq[8]
    drawn = synth.random_look(np.random.default_rng(3), metered=True)
    assert 0.35 <= drawn["level"] <= 0.6 and 0.85 <= drawn["exposure"] <= 1.2
    assert "level" not in synth.random_look(np.random.default_rng(3))


def test_a_metered_sequence_is_brighter_than_the_fixed_gain_one_of_a_dim_place(tmp_path):
    import cv2
    kw = dict(scene="hallway", trajectory="handheld", n_frames=4, width=64, height=48, seed=2,
              textures=["procedural"])
    means = {}
    for look in (True, "metered"):
        path = synth.generate_sequence(tmp_path / str(look), look=look, **kw)
        means[look] = np.mean([cv2.imread(str(f)).mean() for f in (path / "rgb").iterdir()])
        meta = json.loads((path / "synth.json").read_text())["look"]
        assert ("level" in meta) == (look == "metered")
    assert 0.3 * 255 < means["metered"] < 0.65 * 255, means
    assert means["metered"] > means[True] + 20, means
    with pytest.raises(DatasetError, match="look must be"):
        synth.generate_sequence(tmp_path / "bad", look="bright", **kw)


def test_texture_sources_are_the_listed_ones(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(DatasetError, match="texture source"):
        check_sources([3])
    with pytest.raises(DatasetError, match="no texture source"):
        check_sources([])
    procedural = make_textures(rng, 4, ["procedural"])
    assert len(procedural) == 4 and all(t.shape == (512, 512, 3) for t in procedural)
    tile = mirror_tile(np.arange(48, dtype=np.float32).reshape(4, 4, 3), 8)
    assert np.allclose(tile[:, 0], tile[:, -1]) and np.allclose(tile[0], tile[-1])   # seamless
    # crops of a recording: a texture made only from a synthetic recording's frames
    rec = synth.generate_sequence(tmp_path / "rec", scene="room", trajectory="straight",
                                  n_frames=3, width=128, height=96, seed=2)
    photos = make_textures(np.random.default_rng(1), 3, [str(rec)])
    assert all(t.shape == (512, 512, 3) and t.std() > 1 for t in photos)


def test_no_7scenes_config_uses_no_7scenes_frame():
    import yaml
    cfg = yaml.safe_load((REPO / "config" / "train" / "no_7scenes_synth.yaml").read_text())
    text = repr(cfg).lower()
    assert "7scenes" not in text.replace("no-7scenes", "").replace("no_7scenes", "")
    assert cfg["data"]["height"] * cfg["data"]["width"] >= 128 * 160
    textures = cfg["data"]["synthetic"][0]["textures"]
    assert any("kitti" in str(t) for t in textures)


# -- losses ----------------------------------------------------------------------------------------
torch = pytest.importorskip("torch")


def _depths():
    g = torch.Generator().manual_seed(0)
    gt = 0.5 + 5 * torch.rand(3, 1, 24, 32, generator=g)
    mask = torch.ones_like(gt, dtype=torch.bool)
    mask[:, :, :4] = False
    gt = torch.where(mask, gt, torch.zeros_like(gt))
    return gt, mask


def test_silog_is_zero_for_a_scaled_exact_prediction_and_positive_otherwise():
    from vode_ros.learn.losses import silog
    gt, mask = _depths()
    pred = torch.where(mask, gt, torch.ones_like(gt)) * torch.tensor([0.5, 2.0, 7.0])[:, None,
                                                                                      None, None]
    assert torch.all(silog(pred, gt, mask) < 1e-5)
    # lambda < 1 asks for the scale too
    assert torch.all(silog(pred[1:], gt[1:], mask[1:], lam=0.85) > 0.01)
    noisy = pred * (1 + 0.3 * torch.rand_like(pred))
    assert torch.all(silog(noisy, gt, mask) > 1e-3)
    # invalid pixels do not count
    wild = pred.clone()
    wild[~mask] = 1000.0
    assert torch.allclose(silog(wild, gt, mask), silog(pred, gt, mask), atol=1e-6)


def test_gradient_matching_is_zero_for_shifted_log_depth_and_positive_otherwise():
    from vode_ros.learn.losses import gradient_matching
    gt, mask = _depths()
    shifted = torch.exp(torch.log(gt.clamp(min=1e-3)) + 1.3)
    assert torch.all(gradient_matching(shifted, gt, mask) < 1e-5)
    blurred = torch.nn.functional.avg_pool2d(gt, 3, 1, 1)
    assert torch.all(gradient_matching(blurred, gt, mask) > 1e-2)
    flat = torch.full_like(gt, 2.0)
    assert torch.all(gradient_matching(flat, gt, mask) > gradient_matching(blurred, gt, mask))


def test_training_with_the_supervised_losses_on_a_synthetic_world(tmp_path):
    from vode_ros.learn.data import TripletDataset
    from vode_ros.learn.networks import build_networks
    from vode_ros.learn.options import load_options
    from vode_ros.learn.step import model_step
    from vode_ros.learn.synthetic import expand, synthetic_sources
    items = [{"count": 2, "scenes": ["kitchen", "town"], "trajectories": ["handheld"],
              "seed": 3, "n_frames": 6, "width": 64, "height": 64, "look": True,
              "textures": ["procedural"], "poses": True, "stride": 1}]
    assert [(e["scene"], e["seed"]) for e in expand(items)] == [("kitchen", 3), ("town", 4)]
    specs = synthetic_sources(items, tmp_path, depth=True)
    assert all(s["depth"] and s["poses"].endswith("groundtruth.txt") for s in specs)
    cfg = load_options({"out_dir": str(tmp_path / "run"),
                        "data": {"height": 64, "width": 64, "train": specs, "min_motion": 0.0},
                        "train": {"silog": 1.0, "grad_match": 0.5, "num_threads": 1,
                                  "scale_mode": "native", "num_scales": 2}})
    ds = TripletDataset(specs, 64, 64, min_motion=0.0, augment=True)
    rng = [np.random.default_rng(i) for i in range(4)]
    batch = ds.batch([0, 1, len(ds) - 2, len(ds) - 1], rng)
    assert batch["has_depth"].all() and batch["has_pose"].all()
    flipped = batch["flipped"]
    assert (batch["depth_gt"] > 0).float().mean() > 0.5
    torch.manual_seed(0)
    torch.set_num_threads(1)
    depth, pose = build_networks(cfg.model_config, seed=0)
    opt = torch.optim.Adam(list(depth.parameters()) + list(pose.parameters()), 1e-3)
    first = None
    for _ in range(6):
        out = model_step(depth, pose, batch, cfg.model_config, cfg.train)
        assert torch.isfinite(out["loss"]) and out["silog"] > 0 and out["grad_match"] > 0
        first = float(out["silog"]) if first is None else first
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(out["silog"]) < first
    # a recording's depth (ground truth) is refused
    with pytest.raises(ValueError, match="only from synthetic sequences"):
        TripletDataset([{"path": str(_strip_synth(tmp_path, specs[0]["path"])),
                         "depth": True}], 64, 64)
    # a flipped sample's depth is mirrored with its images
    k = int(torch.nonzero(flipped)[0]) if bool(flipped.any()) else None
    if k is not None:
        idx = [0, 1, len(ds) - 2, len(ds) - 1][k]
        plain = ds.sample(idx)
        assert torch.equal(batch["depth_gt"][k], plain["depth_gt"].flip(-1))


def _strip_synth(tmp_path, path):
    """A copy of a synthetic sequence without its synth.json (a plain TUM recording)."""
    import shutil
    dst = tmp_path / "plain"
    shutil.copytree(path, dst)
    (dst / "synth.json").unlink()
    return dst
