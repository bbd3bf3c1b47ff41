"""Training data, the model step, `vode train` (resume, seeds, DDP with gloo), export of a trained
checkpoint, and a smoke test of the shipped trained models."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vode_ros.learn import data as D  # noqa: E402
from vode_ros.learn import trainer as T  # noqa: E402
from vode_ros.learn.heldout import evaluate  # noqa: E402
from vode_ros.learn.networks import build_networks  # noqa: E402
from vode_ros.learn.options import TrainError, TrainOptions, load_options  # noqa: E402
from vode_ros.learn.pose_scale import calibrate_pose_scale, pose_scale_groups  # noqa: E402
from vode_ros.learn.step import model_step  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SIZE = (64, 64)


@pytest.fixture(scope="module")
def synth_seq(tmp_path_factory):
    from vode_ros.datasets import generate_sequence
    root = tmp_path_factory.mktemp("synth")
    path = generate_sequence(root / "room", scene="room", trajectory="straight", n_frames=14,
                             width=128, height=96, seed=3)
    # a sequence whose middle frames do not move: repeat frame 0 (a copy of a static camera)
    static = root / "static"
    generate_sequence(static, scene="room", trajectory="static", n_frames=8, width=128,
                      height=96, seed=3)
    return path, static


def _config(tmp, synth, **train):
    return {"out_dir": str(tmp / "run"), "seed": 1,
            "data": {"height": SIZE[0], "width": SIZE[1], "min_motion": 0.5,
                     "train": [{"path": str(synth), "stride": 1}],
                     "val": [{"path": str(synth), "frames": "8:14", "stride": 1}]},
            "train": {"batch_size": 2, "lr": 5e-4, "max_steps": 8, "num_threads": 1,
                      "lr_decay_at": None, **train},
            "log": {"every": 1, "image_every": 2, "checkpoint_minutes": 100, "progress": False},
            "eval": {"every_steps": 4, "batch_size": 2}}


# -- data ------------------------------------------------------------------------------------------
def test_scale_and_flip_intrinsics():
    fx, fy, cx, cy = D.scale_intrinsics(500, 400, 319.5, 239.5, 640, 480, 128, 96)
    assert (fx, fy) == (100, 80) and (cx, cy) == pytest.approx((63.5, 47.5))
    K = D.flip_intrinsics(D.k_matrix(100, 80, 60.0, 47.5), 128)
    assert K[0, 2] == pytest.approx(67.0) and K[1, 2] == 47.5


def test_dataset_skips_static_frames_and_rescales(synth_seq):
    moving, static = synth_seq
    ds = D.TripletDataset([moving, {"path": str(static), "stride": 1}], *SIZE, min_motion=0.5)
    assert ds.skipped["static"] == 6 and all(it[0] == 0 for it in ds.items)
    assert len(ds) == 12
    s = ds.sample(0)
    assert s["images"].shape == (3, 3, *SIZE) and s["images"].dtype == torch.float32
    from vode_ros.datasets import open_sequence
    cam = open_sequence(moving).camera
    # a 4:3 recording for a square network is not squashed: resized to the network's height,
    # then a window of the network's width (the centre without augmentation)
    seq = ds.sequences[0]
    assert seq.images.shape[1:3] == (SIZE[0], round(cam.width * SIZE[0] / cam.height))
    assert float(s["K"][0, 0]) == pytest.approx(cam.fx * seq.images.shape[2] / cam.width)
    assert float(s["K"][1, 1]) == pytest.approx(cam.fy * SIZE[0] / cam.height)
    x0 = (seq.images.shape[2] - SIZE[1]) // 2
    assert float(s["K"][0, 2]) == pytest.approx(float(seq.K[0, 2]) - x0)
    _, a, t, b = ds.items[0]
    ref = seq.images[[a, t, b]][:, :, x0:x0 + SIZE[1]].astype(np.float32) / 255.0
    assert np.array_equal(s["images"].numpy(), ref.transpose(0, 3, 1, 2))
    assert torch.allclose(s["K"] @ s["inv_K"], torch.eye(3), atol=1e-5)
    # in training the window moves, and the principal point with it
    aug = D.TripletDataset([moving], *SIZE, min_motion=0.5, flip_prob=0.0, cache={})
    shifts = set()
    for i in range(8):
        r = aug.sample(0, np.random.default_rng(i))
        x = int(round(float(aug.sequences[0].K[0, 2] - r["K"][0, 2])))
        shifts.add(x)
        ref = seq.images[[a, t, b]][:, :, x:x + SIZE[1]].astype(np.float32) / 255.0
        assert np.array_equal(r["images"].numpy(), ref.transpose(0, 3, 1, 2))
    assert len(shifts) > 1
    assert D.cached_size(1241, 376, 96, 128) == (317, 96)      # KITTI for a 4:3 network
    assert D.cached_size(640, 480, 96, 128) == (128, 96)       # same aspect: resized


def test_sources_by_parallax_skip_a_turning_camera_and_widen_a_slow_one(tmp_path):
    from vode_ros.datasets import generate_sequence
    rot = generate_sequence(tmp_path / "rot", scene="room", trajectory="rotation", n_frames=12,
                            width=160, height=120, seed=4)
    fwd = generate_sequence(tmp_path / "fwd", scene="room", trajectory="straight", n_frames=12,
                            width=160, height=120, seed=4)
    seq_r = D.load_sequence(D.SourceSpec(str(rot)), 96, 128, parallax_greys=True)
    seq_f = D.load_sequence(D.SourceSpec(str(fwd)), 96, 128, parallax_greys=True)
    # a pure rotation leaves (almost) no parallax; a translation does, growing with the gap
    p1, p3 = D.parallax(seq_f, 5, 6), D.parallax(seq_f, 5, 8)
    assert 0 < p1 < p3
    assert D.parallax(seq_r, 5, 8) < 0.25 * p3
    # the turning camera gives no triplet; the moving one gives triplets whose sources are the
    # nearest frames with enough parallax: farther than stride 1 where one step is too little
    assert D.parallax_triplets(seq_r, 1, 4, 0.5, 0.5 * p3) == []
    trip = D.parallax_triplets(seq_f, 1, 4, 0.5, 0.5 * p3)
    assert trip and all(D.parallax(seq_f, t, a) >= 0.5 * p3 and
                        D.parallax(seq_f, t, b) >= 0.5 * p3 for a, t, b in trip)
    assert max(t - a for a, t, b in trip) > 1
    ds = D.TripletDataset([{"path": str(fwd), "stride": 1, "max_stride": 4}], 96, 128,
                          min_motion=0.5, min_parallax_px=0.5 * p3)
    assert [it[1:] for it in ds.items] == trip and "by parallax" in ds.describe()
    with pytest.raises(ValueError, match="max_stride"):
        D.TripletDataset([{"path": str(fwd), "stride": 3, "max_stride": 2}], 96, 128,
                         min_parallax_px=1.0)


def test_flip_and_jitter_are_consistent(synth_seq):
    # the recording's own aspect ratio (no window: the flip alone changes the sample)
    ds = D.TripletDataset([synth_seq[0]], 48, 64, min_motion=0.5, flip_prob=1.0)
    plain = ds.sample(3)
    s = ds.sample(3, np.random.default_rng(0))
    assert s["flipped"]
    assert torch.equal(s["images"], plain["images"].flip(-1))  # all three frames flipped
    assert float(s["K"][0, 2]) == pytest.approx(64 - 1 - float(plain["K"][0, 2]))
    frames = np.random.default_rng(1).random((3, 8, 8, 3)).astype(np.float32)
    frames[1] = frames[0]
    jit = D.color_jitter(frames, np.random.default_rng(2))
    assert np.allclose(jit[0], jit[1]) and not np.allclose(jit[0], frames[0])
    # data.jitter replaces the default strengths it names and keeps the others
    strong = D.TripletDataset([synth_seq[0]], 48, 64, min_motion=0.5,
                              jitter={"brightness": 0.4, "hue": 0.0})
    assert strong.jitter == {"brightness": 0.4, "contrast": 0.2, "saturation": 0.2, "hue": 0.0}


def test_epoch_order_is_deterministic_and_weighted(synth_seq):
    ds = D.TripletDataset([{"path": str(synth_seq[0]), "weight": 2}], *SIZE, min_motion=0.5)
    a, b = ds.epoch_order(0, 1), ds.epoch_order(0, 1)
    assert np.array_equal(a, b) and len(a) == 2 * len(ds)
    assert not np.array_equal(a, ds.epoch_order(0, 2))


def _kitti_stereo(root: Path, fx=32.0, baseline=0.5, depth=4.0, n=6, size=64):
    """A KITTI-layout stereo pair of a fronto-parallel textured plane at ``depth`` metres, the
    camera sliding sideways 2 px per frame; the right camera sees it ``fx*b/Z`` px to the left."""
    import cv2
    d = int(round(fx * baseline / depth))
    rng = np.random.default_rng(0)
    tex = cv2.resize(rng.uniform(0, 255, (16, 40, 3)).astype(np.float32), (size + 4 * n + d, size),
                     interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    for cam, shift in (("image_0", 0), ("image_1", d)):
        (root / cam).mkdir(parents=True)
        for i in range(n):
            o = 2 * i + shift
            cv2.imwrite(str(root / cam / f"{i:06d}.png"), tex[:, o:o + size])
    c = size / 2 - 0.5
    lines = [f"P{k}: {fx} 0 {c} {-fx * baseline * (k % 2)} 0 {fx} {c} 0 0 0 1 0" for k in range(4)]
    (root / "calib.txt").write_text("\n".join(lines) + "\n")
    return root


def test_stereo_partner_and_flip_keep_the_baseline_consistent(tmp_path):
    from vode_ros.learn import losses
    root = _kitti_stereo(tmp_path / "sequences" / "00")
    spec = {"path": str(root), "stream": "image_0", "stereo_stream": "image_1",
            "baseline_m": 0.5}
    ds = D.TripletDataset([spec], 64, 64, min_motion=0.5, flip_prob=1.0)
    depth = torch.full((1, 1, 64, 64), 4.0)

    def err(sample, baseline, z=4.0):
        b = ds.batch([0]) if sample is None else sample
        e = losses.stereo_photometric(b["images"][:, 1], b["stereo"], depth * z / 4.0, baseline,
                                      b["K"], b["inv_K"])
        return float(e[..., 8:-8].mean())

    plain = ds.batch([0])
    assert float(plain["baseline_m"][0]) == 0.5
    assert err(plain, 0.5) < 0.01 < err(plain, 0.5, z=2.0)
    s = ds.sample(0, np.random.default_rng(0))
    assert s["flipped"] and s["baseline_m"] == -0.5
    flipped = {k: s[k].unsqueeze(0) for k in ("images", "stereo", "K", "inv_K")}
    assert err(flipped, -0.5) < 0.01 < err(flipped, 0.5)
    # a training step with the stereo source
    cfg = load_options({"data": {"train": [spec]}, "train": {"num_threads": 1}})
    dn, pn = build_networks(cfg.model_config, seed=0)
    out = model_step(dn, pn, ds.batch([0, 1]), cfg.model_config, cfg.train)
    assert torch.isfinite(out["loss"])


# -- training --------------------------------------------------------------------------------------
def test_training_steps_lower_the_loss(synth_seq, tmp_path):
    cfg = load_options(_config(tmp_path, synth_seq[0], max_steps=40, lr=1e-3))
    ds = D.TripletDataset([synth_seq[0]], *SIZE, min_motion=0.5, augment=False)
    batch = ds.batch(list(range(len(ds))))
    torch.manual_seed(0)
    depth, pose = build_networks(cfg.model_config, seed=0)
    torch.set_num_threads(1)
    opt = torch.optim.Adam(list(depth.parameters()) + list(pose.parameters()), 1e-3)

    def loss_now():
        depth.eval(), pose.eval()
        with torch.no_grad():
            v = float(model_step(depth, pose, batch, cfg.model_config, cfg.train,
                                   deterministic=True)["loss"])
        depth.train(), pose.train()
        return v

    before = loss_now()
    for i in range(30):
        idx = [(2 * i) % len(ds), (2 * i + 1) % len(ds)]
        out = model_step(depth, pose, ds.batch(idx), cfg.model_config, cfg.train)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert loss_now() < 0.9 * before


def test_train_writes_logs_checkpoints_and_resumes_exactly(synth_seq, tmp_path):
    full = T.train(_config(tmp_path / "a", synth_seq[0]), log=lambda m: None)
    assert full["step"] == 8 and full["history"]
    out = Path(full["out_dir"])
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    kinds = {json.loads(line)["kind"] for line in (out / "log.jsonl").read_text().splitlines()}
    assert kinds == {"train", "val"}
    # the same run in two halves, the second resumed from the first's checkpoint
    cfg_b = _config(tmp_path / "b", synth_seq[0])
    T.train(cfg_b, max_steps=5, log=lambda m: None)
    T.train(cfg_b, resume=True, log=lambda m: None)
    a = torch.load(out / "last.pt", weights_only=False)
    b = torch.load(Path(cfg_b["out_dir"]) / "last.pt", weights_only=False)
    assert b["step"] == 8
    for name in ("depth", "pose"):
        for k, v in a[name].items():
            assert torch.allclose(v.float(), b[name][k].float(), atol=1e-6), (name, k)


def test_weight_averaging_is_checkpointed_resumed_exactly_and_exported(synth_seq, tmp_path):
    full = T.train(_config(tmp_path / "a", synth_seq[0], ema_decay=0.9), log=lambda m: None)
    a = torch.load(Path(full["out_dir"]) / "last.pt", weights_only=False)
    # the average lags the trained weights: it differs from them and from the initial weights
    init_depth, _ = build_networks(load_options(_config(tmp_path, synth_seq[0])).model_config,
                                   seed=1)
    key = next(k for k, v in a["depth"].items() if v.dtype.is_floating_point and v.ndim == 4)
    ema, raw, ini = a["depth_ema"][key], a["depth"][key], init_depth.state_dict()[key]
    assert not torch.allclose(ema, raw) and not torch.allclose(ema, ini)
    # decay 0.9 after 8 steps: the average sits between the start and the trained weights
    assert (ema - raw).norm() < (ini - raw).norm()
    cfg_b = _config(tmp_path / "b", synth_seq[0], ema_decay=0.9)
    T.train(cfg_b, max_steps=5, log=lambda m: None)
    T.train(cfg_b, resume=True, log=lambda m: None)
    b = torch.load(Path(cfg_b["out_dir"]) / "last.pt", weights_only=False)
    for k, v in a["depth_ema"].items():
        assert torch.allclose(v.float(), b["depth_ema"][k].float(), atol=1e-6), k
    from vode_ros.learn.export import load_checkpoint
    depth, _, _, info = load_checkpoint(Path(full["out_dir"]) / "last.pt")
    assert torch.equal(depth.state_dict()[key], ema)
    assert "moving-average weights" in info["trained_on"]
    with pytest.raises(TrainError, match="ema_decay"):
        T.train(_config(tmp_path / "c", synth_seq[0], ema_decay=1.5), log=lambda m: None)


def test_snapshot_averaging_is_the_mean_of_its_snapshots_resumed_and_exported(synth_seq,
                                                                              tmp_path):
    def config(tmp):
        cfg = _config(tmp, synth_seq[0], average_from=4, average_every=2)
        cfg["log"]["keep_every"] = 2
        return cfg

    full = T.train(config(tmp_path / "a"), log=lambda m: None)
    out = Path(full["out_dir"])
    ck = {s: torch.load(out / f"step-{s}.pt", weights_only=False) for s in (2, 4, 6, 8)}
    last = torch.load(out / "last.pt", weights_only=False)
    # before the first snapshot (step 4) there is no average to export
    assert "depth_ema" not in ck[2] and "depth_ema" in ck[4]
    for name in ("depth", "pose"):
        for k, v in last[f"{name}_ema"].items():
            if v.dtype.is_floating_point:   # weights and BatchNorm statistics: the equal mean
                mean = sum(ck[s][name][k] for s in (4, 6, 8)) / 3
                assert torch.allclose(v, mean, atol=1e-6), (name, k)
    key = next(k for k, v in last["depth"].items() if v.dtype.is_floating_point and v.ndim == 4)
    assert not torch.allclose(last["depth_ema"][key], last["depth"][key])
    # resumed half-way through the snapshots, the same average
    cfg_b = config(tmp_path / "b")
    T.train(cfg_b, max_steps=5, log=lambda m: None)
    T.train(cfg_b, resume=True, log=lambda m: None)
    b = torch.load(Path(cfg_b["out_dir"]) / "last.pt", weights_only=False)
    for k, v in last["depth_ema"].items():
        assert torch.allclose(v.float(), b["depth_ema"][k].float(), atol=1e-6), k
    from vode_ros.learn.export import load_checkpoint
    depth, _, _, info = load_checkpoint(out / "last.pt")
    assert torch.equal(depth.state_dict()[key], last["depth_ema"][key])
    assert "average of weight snapshots every 2 steps from step 4" in info["trained_on"]
    with pytest.raises(TrainError, match="average_from and train.ema_decay"):
        T.train(_config(tmp_path / "c", synth_seq[0], average_from=2, ema_decay=0.9),
                log=lambda m: None)
    with pytest.raises(TrainError, match="average_every"):
        T.train(_config(tmp_path / "d", synth_seq[0], average_from=2, average_every=0),
                log=lambda m: None)


def test_fine_tuning_at_another_size_counts_all_steps(synth_seq, tmp_path):
    base = T.train(_config(tmp_path / "base", synth_seq[0], max_steps=2), log=lambda m: None)
    cfg = _config(tmp_path / "ft", synth_seq[0], max_steps=2,
                  init_from=str(Path(base["out_dir"]) / "last.pt"))
    cfg["data"].update(height=96, width=128)
    cfg["eval"].update(at_start=True, every_steps=0)
    summary = T.train(cfg, log=lambda m: None)
    assert summary["history"][0]["step"] == 0  # the starting weights, judged at the new size
    ckpt = torch.load(Path(summary["out_dir"]) / "last.pt", weights_only=False)
    assert ckpt["step"] == 4 and ckpt["run_step"] == 2
    assert "then fine-tuned" in ckpt["trained_on"] and "96x128" in ckpt["trained_on"]


# -- poses from a trajectory (geometry) instead of the pose network ----------------------------------
def _scaled_trajectory(src: Path, dst: Path, factor: float, drop: int | None = None) -> Path:
    """A copy of a TUM trajectory with translations times ``factor`` (and row ``drop`` left out)."""
    rows = [r for r in src.read_text().splitlines() if r and not r.startswith("#")]
    out = []
    for i, r in enumerate(rows):
        if i == drop:
            continue
        v = r.split()
        out.append(" ".join([v[0]] + [repr(float(x) * factor) for x in v[1:4]] + v[4:]))
    dst.write_text("\n".join(out) + "\n")
    return dst


def test_trajectory_poses_match_frames_by_stamp_and_mirror_with_flips(synth_seq, tmp_path):
    gt = synth_seq[0] / "groundtruth.txt"
    traj = _scaled_trajectory(gt, tmp_path / "t.txt", 1.0, drop=5)
    spec = {"path": str(synth_seq[0]), "stride": 1, "poses": str(traj)}
    ds = D.TripletDataset([spec], *SIZE, min_motion=0.5, flip_prob=1.0)
    seq = ds.sequences[0]
    assert np.isnan(seq.poses[5]).all() and np.isfinite(seq.poses[4]).all()
    from vode_ros.evaluation.trajectory import read_tum
    _, P = read_tum(gt)
    k = next(i for i, (_, a, t, b) in enumerate(ds.items) if t == 9)
    plain = ds.sample(k)
    assert plain["has_pose"]
    np.testing.assert_allclose(plain["T_known"][0].numpy(), np.linalg.inv(P[8]) @ P[9],
                               atol=1e-6)
    np.testing.assert_allclose(plain["T_known"][1].numpy(), np.linalg.inv(P[10]) @ P[9],
                               atol=1e-6)
    # a triplet touching the frame without a pose falls back to the pose network
    k5 = next(i for i, (_, a, t, b) in enumerate(ds.items) if t == 5)
    assert not ds.sample(k5)["has_pose"]
    # flipped: the mirrored transform moves mirrored points where the plain one moves points
    flipped = ds.sample(k, np.random.default_rng(0))
    assert flipped["flipped"] and flipped["has_pose"]
    X = np.array([0.3, -0.2, 2.0, 1.0])
    M = np.diag([-1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(flipped["T_known"][0].numpy() @ (M @ X),
                               M @ (plain["T_known"][0].numpy() @ X), atol=1e-5)
    # a trajectory of another recording, or none at all: a clear error
    other = tmp_path / "other.txt"
    other.write_text("1000.0 0 0 0 0 0 0 1\n")
    with pytest.raises(ValueError, match="no frame's stamp matches"):
        D.TripletDataset([{**spec, "poses": str(other)}], *SIZE, min_motion=0.5)
    with pytest.raises(ValueError, match="does not exist"):
        D.TripletDataset([{**spec, "poses": str(tmp_path / "nope.txt")}], *SIZE)


def test_trajectory_poses_replace_the_pose_network_with_a_learned_scale(synth_seq, tmp_path):
    gt = synth_seq[0] / "groundtruth.txt"
    cfg = load_options(_config(tmp_path, synth_seq[0]))
    depth, pose = build_networks(cfg.model_config, seed=0)
    spec = {"path": str(synth_seq[0]), "stride": 1, "poses": str(gt)}
    ds = D.TripletDataset([spec], *SIZE, min_motion=0.5, augment=False)
    batch = ds.batch([0, 3])
    log_scale = torch.tensor([np.log(0.5)], requires_grad=True)
    out = model_step(depth, pose, batch, cfg.model_config, cfg.train,
                       pose_log_scale=log_scale[batch["source"] * 0])
    for j in range(2):
        T_k = batch["T_known"][:, j]
        assert torch.allclose(out["poses"][j][:, :3, :3], T_k[:, :3, :3])
        assert torch.allclose(out["poses"][j][:, :3, 3], 0.5 * T_k[:, :3, 3], atol=1e-7)
    out["loss"].backward()
    assert log_scale.grad is not None and float(log_scale.grad.abs()) > 0
    assert all(p.grad is None for p in pose.parameters())   # the pose network was not run
    assert any(p.grad is not None for p in depth.parameters())
    # held out: a trajectory the training reads judges the held-out loss (with its scale)
    val = D.TripletDataset([spec], *SIZE, min_motion=0.5, augment=False)
    dev = torch.device("cpu")
    with_traj = evaluate(depth, pose, val, cfg.model_config, cfg.train, dev,
                           pose_log_scale=log_scale, scale_of_source=[0])
    with_net = evaluate(depth, pose, val, cfg.model_config, cfg.train, dev,
                          pose_log_scale=log_scale, scale_of_source=[-1])
    b = {k: v for k, v in val.batch(list(range(len(val)))).items()}
    ref = model_step(depth.eval(), pose.eval(), b, cfg.model_config,
                       dataclasses.replace(cfg.train, num_scales=1), deterministic=True,
                       pose_log_scale=log_scale.detach().expand(len(val)))
    assert with_traj["photometric"] == pytest.approx(float(ref["photometric"]), rel=1e-4)
    assert with_net["photometric"] != pytest.approx(with_traj["photometric"], rel=1e-3)
    # the starting scale is the pose network's translation over the trajectory's: a trajectory
    # in twice the units gets half the factor
    twice = _scaled_trajectory(gt, tmp_path / "twice.txt", 2.0)
    one = calibrate_pose_scale(pose, ds, cfg.model_config, torch.device("cpu"))
    ds2 = D.TripletDataset([{**spec, "poses": str(twice)}], *SIZE, min_motion=0.5,
                           augment=False)
    two = calibrate_pose_scale(pose, ds2, cfg.model_config, torch.device("cpu"))
    ds3 = D.TripletDataset([spec, {**spec, "stride": 2}, synth_seq[0]], *SIZE, min_motion=0.5)
    assert pose_scale_groups(ds3.specs) == ([0, 0, -1], 1)  # one trajectory, one scale
    assert float(torch.exp(one[0] - two[0])) == pytest.approx(2.0, rel=1e-4)


def test_a_trajectory_whose_run_lost_tracking_is_flagged(tmp_path):
    traj = tmp_path / "trajectory.txt"
    traj.write_text("0.0 0 0 0 0 0 0 1\n")
    assert D.trajectory_warning(traj) is None                 # no run.json
    (tmp_path / "run.json").write_text(json.dumps({"tracking": {"lost_frames": 0}}))
    assert D.trajectory_warning(traj) is None
    (tmp_path / "run.json").write_text(json.dumps({"tracking": {"lost_frames": 7}}))
    msg = D.trajectory_warning(traj)
    assert "lost tracking on 7 frame(s)" in msg and "--frames A:B" in msg


def test_training_with_trajectory_poses_resumes_exactly(synth_seq, tmp_path):
    gt = str(synth_seq[0] / "groundtruth.txt")
    base = T.train(_config(tmp_path / "base", synth_seq[0], max_steps=2), log=lambda m: None)

    def cfg(tmp):
        c = _config(tmp, synth_seq[0], init_from=str(Path(base["out_dir"]) / "last.pt"),
                    pose_scale_lr=0.05, ema_decay=0.9)
        c["data"]["train"] = [{"path": str(synth_seq[0]), "stride": 1, "poses": gt}]
        return c
    lines = []
    full = T.train(cfg(tmp_path / "a"), log=lines.append)
    assert any("trajectory translation scales" in m for m in lines)
    assert not any("lost tracking" in m for m in lines)   # no run.json beside it: no warning
    a = torch.load(Path(full["out_dir"]) / "last.pt", weights_only=False)
    # the scale started from the base pose network's calibration and then learned
    c = load_options(cfg(tmp_path))
    _, pose = build_networks(c.model_config, seed=1)
    pose.load_state_dict(torch.load(Path(base["out_dir"]) / "last.pt",
                                    weights_only=False)["pose"])
    start = calibrate_pose_scale(pose, D.TripletDataset(c.data.train, *SIZE,
                                                          min_motion=0.5),
                                   c.model_config, torch.device("cpu"))
    assert any(f"{float(torch.exp(start[0])):.4g}" in m for m in lines)
    assert 1e-4 < float((a["pose_log_scale"] - start).abs()) < 1.0
    assert a["pose_log_scale"].shape == (1,) and "poses from" in a["trained_on"]
    cfg_b = cfg(tmp_path / "b")
    T.train(cfg_b, max_steps=5, log=lambda m: None)
    T.train(cfg_b, resume=True, log=lambda m: None)
    b = torch.load(Path(cfg_b["out_dir"]) / "last.pt", weights_only=False)
    assert torch.allclose(a["pose_log_scale"], b["pose_log_scale"], atol=1e-7)
    for k, v in a["depth"].items():
        assert torch.allclose(v.float(), b["depth"][k].float(), atol=1e-6), k
    # a checkpoint of a run without trajectories cannot resume one with them
    with pytest.raises(TrainError, match="per-recording pose scale"):
        T.train(cfg(tmp_path / "c"), resume=str(Path(base["out_dir"]) / "last.pt"),
                log=lambda m: None)


def test_relative_pose_accuracy_tool_scores_an_exact_trajectory_zero(synth_seq, capsys):
    sys.path.insert(0, str(REPO / "tools"))
    import relative_pose_accuracy as tool
    gt = synth_seq[0] / "groundtruth.txt"
    assert tool.main([str(synth_seq[0]), "--trajectory", str(gt), "--strides", "2",
                      "--every", "2"]) == 0
    out = capsys.readouterr().out
    traj = next(line for line in out.splitlines() if "trajectory" in line)
    assert "rotation error median 0.000 deg" in traj and "direction error median 0.0 deg" in traj
    model = next(line for line in out.splitlines() if "pose model" in line)
    assert "rotation error median 0.000 deg" not in model
    T = np.eye(4)
    T[:3, 3] = [1.0, 0.0, 0.0]
    R = np.eye(4)
    R[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]   # 90 degrees about z
    R[:3, 3] = [0.0, 1.0, 0.0]
    assert tool.pair_errors(R, T) == pytest.approx((90.0, 90.0))


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(TrainError, match="unknown training option 'train.bogus'"):
        load_options({"data": {"train": ["x"]}, "train": {"bogus": 1}})
    with pytest.raises(TrainError, match="data.train lists no recording"):
        load_options({})
    with pytest.raises(TrainError, match="does not exist"):
        load_options(tmp_path / "missing.yaml")


def test_shipped_configs_parse():
    import yaml
    paths = sorted((REPO / "config" / "train").glob("*.yaml"))
    assert len(paths) >= 7
    for path in paths:
        cfg = load_options(path)
        assert cfg.data.train or cfg.data.synthetic
        # every value the file gives is the option's value, as written
        loaded = cfg.to_dict()
        for key, value in yaml.safe_load(path.read_text()).items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    assert loaded[key][sub] == v, (path.name, key, sub)
            else:
                assert loaded[key] == value, (path.name, key)


def test_options_overrides_and_their_errors():
    base = {"data": {"train": ["x"], "jitter": {"hue": 0.05}}}
    opts = load_options(base, {"train.max_steps": 10, "model.max_depth": 20.0,
                               "data.jitter.hue": 0.0, "seed": 3})
    assert (opts.train.max_steps, opts.seed, opts.data.jitter) == (10, 3, {"hue": 0.0})
    assert opts.model_config["max_depth"] == 20.0 and opts.model.to_dict() == {
        "variant": "cpu", "max_depth": 20.0}
    assert opts.train.lr == TrainOptions().train.lr          # untouched keys keep defaults
    with pytest.raises(TrainError, match=r"unknown training option 'train.bogus'.*train\.lr"):
        load_options(base, {"train.bogus": 1})
    with pytest.raises(TrainError, match=r"unknown training option 'model.depth'; known: .*"
                                         r"'max_depth'"):
        load_options({**base, "model": {"depth": 3}})
    with pytest.raises(TrainError, match="scale_mode must be one of 'upsample', 'native'"):
        load_options(base, {"train.scale_mode": "nativ"})
    with pytest.raises(TrainError, match="training size 100x128 must be multiples of 32"):
        load_options(base, {"data.height": 100, "data.width": 128})
    with pytest.raises(TrainError, match="bad model section"):
        load_options(base, {"model.num_scales": 7})


def test_model_options_name_every_model_config_key():
    import dataclasses as dc

    from vode_ros.learn.networks import make_config
    from vode_ros.learn.options import ModelOptions
    assert {f.name for f in dc.fields(ModelOptions)} == set(make_config())


def _generated_section(text: str) -> str:
    begin = "<!-- BEGIN training-options (generated by vode train --options-markdown) -->\n"
    end = "<!-- END training-options -->"
    assert begin in text and end in text
    return text.split(begin, 1)[1].split(end, 1)[0]


def test_docs_training_options_table_is_generated(capsys):
    from vode_ros import cli
    from vode_ros.learn.options import options_markdown
    doc = (REPO / "docs" / "training.md").read_text()
    assert _generated_section(doc) == options_markdown(), \
        "docs/training.md is stale: paste `vode train --options-markdown` between its markers"
    assert cli.main(["train", "--options-markdown"]) == 0
    assert capsys.readouterr().out == options_markdown()
    for name, _, meta in TrainOptions().parameters():
        assert f"| `{name}` |" in doc and meta["description"]


def test_cli_train_then_export_records_data_and_steps(synth_seq, tmp_path):
    import yaml
    cfg = _config(tmp_path, synth_seq[0], max_steps=2)
    cfg["data"]["val"] = []
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    from vode_ros import cli
    assert cli.main(["train", "--config", str(path), "--set", "train.max_steps=3",
                     "--set", "train.scale_mode=native"]) == 0
    ckpt = Path(cfg["out_dir"]) / "last.pt"
    from vode_ros.learn.export import export_checkpoint
    report = export_checkpoint(ckpt, tmp_path / "models", input_size=SIZE, latency_runs=0)
    assert report["train_steps"] == 3
    assert report["trained_on"].startswith("self-supervised (images only)")
    for kind in ("depth", "pose"):
        assert report["models"][kind]["parity_max_abs_diff"] <= 1e-3
    # without a size, a checkpoint exports at the size it was trained at
    from vode_ros.learn.export import load_checkpoint
    _, _, config, _ = load_checkpoint(ckpt)
    assert (config["input_height"], config["input_width"]) == tuple(SIZE)
    _, _, config, _ = load_checkpoint(ckpt, input_size=(64, 96))
    assert (config["input_height"], config["input_width"]) == (64, 96)
    assert cli.main(["export", str(ckpt), "--out", str(tmp_path / "m2"),
                     "--input-size", "96by128"]) != 0


def test_ddp_with_torchrun_gloo_world_size_one(synth_seq, tmp_path):
    import yaml
    cfg = _config(tmp_path, synth_seq[0], max_steps=2, device="cpu")
    # one source warped with its trajectory, one with the pose network: DDP must see every
    # parameter in every step either way
    cfg["data"]["train"] = [{"path": str(synth_seq[0]), "stride": 1,
                             "poses": str(synth_seq[0] / "groundtruth.txt")},
                            {"path": str(synth_seq[0]), "stride": 2}]
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
                           "--master_port", str(29500 + os.getpid() % 1000), "-m",
                           "vode_ros.cli", "train", "--config", str(path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 1" in proc.stderr and "gloo" in proc.stderr
    assert "trajectory translation scales" in proc.stderr
    assert json.loads(proc.stdout)["step"] == 2


# -- the shipped models ----------------------------------------------------------------------------
def test_shipped_models_are_trained_and_beat_constant_depth():
    from vode_ros.inference import OnnxModel, to_tensor
    models = REPO / "models"
    depth = OnnxModel(models / "depth.onnx", "depth", providers=["CPUExecutionProvider"])
    pose = OnnxModel(models / "pose.onnx", "pose", providers=["CPUExecutionProvider"])
    for m in (depth, pose):
        assert "self-supervised" in m.spec.extra["vode.trained_on"]
        assert int(m.spec.extra["vode.train_steps"]) > 0
    scenes = SHARED / "7scenes-redkitchen"
    if not scenes.is_dir():
        pytest.skip(f"{scenes} is absent (shared data): the accuracy smoke test needs it")
    import cv2

    from vode_ros.datasets import open_sequence
    rel, const_rel = [], []
    for f in open_sequence(scenes, "480:600:20"):
        if f.gt_depth is None:
            continue
        disp = depth(to_tensor(f.image, depth.spec))[0, 0]
        d = 1.0 / (1.0 / depth.spec.max_depth + (1.0 / depth.spec.min_depth -
                                                 1.0 / depth.spec.max_depth) * disp)
        d = cv2.resize(d, f.gt_depth.shape[::-1], interpolation=cv2.INTER_LINEAR)
        ok = np.isfinite(f.gt_depth) & (f.gt_depth > 0.1) & (f.gt_depth < 10)
        g, p = f.gt_depth[ok], d[ok]
        p = p * np.median(g) / np.median(p)
        rel.append(np.mean(np.abs(p - g) / g))
        const_rel.append(np.mean(np.abs(np.median(g) - g) / g))
    # a wide margin over the constant map (the aim for a trained model): under 70 % of its error
    assert rel and np.mean(rel) < 0.7 * np.mean(const_rel)


def test_pose_distillation_fits_the_trajectory_and_leaves_a_frozen_depth_alone(synth_seq,
                                                                                tmp_path):
    from vode_ros.datasets import generate_sequence
    seq = generate_sequence(tmp_path / "turn", scene="room", trajectory="turn", n_frames=14,
                            width=128, height=96, seed=3)      # turns: rotation to learn
    gt = str(seq / "groundtruth.txt")
    base = T.train(_config(tmp_path / "base", seq, max_steps=2), log=lambda m: None)
    start = torch.load(Path(base["out_dir"]) / "last.pt", weights_only=False)

    def cfg(tmp, **train):
        c = _config(tmp, seq, init_from=str(Path(base["out_dir"]) / "last.pt"),
                    pose_distill=1.0, depth_lr_factor=0.0, lr=2e-3, max_steps=40,
                    pose_scale_lr=0.0, **train)     # a fixed target: the scale stays put
        c["data"]["flip_prob"] = 0.0
        c["data"]["train"] = [{"path": str(seq), "stride": 1, "poses": gt}]
        c["data"]["val"] = [{"path": str(seq), "frames": "8:14", "stride": 1, "poses": gt}]
        c["eval"].update(at_start=True, select_by="pose_fit", every_steps=20)
        return c
    out = T.train(cfg(tmp_path / "a"), log=lambda m: None)
    fits = [h["pose_fit"] for h in out["history"]]
    assert len(fits) == 3 and fits[-1] < 0.7 * fits[0], fits   # at start, steps 20, 40
    assert out["best_val"] == {"pose_fit": min(fits)}
    best = torch.load(Path(out["out_dir"]) / "best.pt", weights_only=False)
    assert best["step"] == start["step"] + out["history"][int(np.argmin(fits))]["step"]
    last = torch.load(Path(out["out_dir"]) / "last.pt", weights_only=False)
    for k, v in start["depth"].items():        # frozen: weights and batch-norm statistics
        assert torch.equal(v, last["depth"][k]), k
    assert any(not torch.equal(v, last["pose"][k]) for k, v in start["pose"].items())
    # what cannot work says so
    bad = cfg(tmp_path / "b")
    bad["train"]["pose_distill"] = 0.0
    with pytest.raises(TrainError, match="pose_fit needs train.pose_distill"):
        T.train(bad, log=lambda m: None)
    bad = cfg(tmp_path / "c")
    bad["data"]["val"] = [{"path": str(seq), "frames": "8:14", "stride": 1}]
    with pytest.raises(TrainError, match="held-out evaluation gave only"):
        T.train(bad, log=lambda m: None)
    bad = cfg(tmp_path / "d")
    bad["train"]["depth_lr_factor"] = -1
    with pytest.raises(TrainError, match="depth_lr_factor must be >= 0"):
        T.train(bad, log=lambda m: None)
