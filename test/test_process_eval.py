"""`vode process` / `vode eval` end to end on a tiny synthetic sequence with hand-built ONNX models
(and, where ../shared/data exists, on 10 KITTI frames with the shipped models)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

import model_factory as mf
from vode_ros.cli import main
from vode_ros.config_files import load_config
from vode_ros.datasets import open_sequence
from vode_ros.errors import InputError, VodeError
from vode_ros.evaluation.evaluate import EvalOptions
from vode_ros.evaluation.trajectory import read_tum
from vode_ros.offline import RunOptions, run
from vode_ros.offline.outputs import read_depth_png

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
N, W, H = 12, 64, 48
STEP = 0.05


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from vode_ros.datasets.synth import generate_sequence
    root = tmp_path_factory.mktemp("vode_pe")
    depth = mf.make_depth_model(root / "depth.onnx", H, W)
    pose = mf.make_pose_model(root / "pose.onnx", (0, 0, 0, 0, 0, STEP), H, W)
    seq = generate_sequence(root / "room", scene="room", trajectory="turn", n_frames=N,
                            width=W, height=H, seed=1)
    return {"root": root, "seq": seq, "depth": depth, "pose": pose}


def overrides(a, depth=None):
    return [f"models.depth={depth or a['depth']}", f"models.pose={a['pose']}",
            "models.providers=[CPUExecutionProvider]", "pose.backend=network"]


def cli(a, *args, depth=None):
    argv = list(args)
    for o in overrides(a, depth):
        argv += ["--set", o]
    return main(argv + ["--quiet"])


def test_process_writes_trajectory_depth_and_reports(assets, tmp_path):
    out = tmp_path / "run"
    assert cli(assets, "process", str(assets["seq"]), "--out", str(out)) == 0
    seq = open_sequence(assets["seq"])
    stamps, poses = read_tum(out / "trajectory.txt")
    lines = [ln for ln in (out / "trajectory.txt").read_text().splitlines()
             if not ln.startswith("#")]
    assert len(lines) == N and len(poses) == N
    assert stamps.tolist() == seq.stamps_ns.tolist()              # the input's own stamps
    pngs = sorted((out / "depth").glob("*.png"))
    assert [p.name for p in pngs] == sorted(f"{i}.png" for i in range(N))
    for p in pngs[:3]:
        raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint16 and raw.shape == (H, W)     # input resolution
        assert (raw > 0).all()
    info = json.loads((out / "run.json").read_text())
    assert info["frames_processed"] == N and info["frames_skipped"] == 0
    assert info["layout"] == "tum" and info["scale"] == "relative"
    assert info["models"]["depth"]["metadata"]["vode.kind"] == "depth"
    assert info["models"]["pose"]["metadata"]["vode.pose"] == "axisangle_translation"
    assert info["provider"] == "CPUExecutionProvider"
    assert info["backend_counts"] == {"none (first frame)": 1, "network": N - 1}
    assert info["tracking"]["lost_frames"] == 0
    assert info["config"]["models"]["pose"] == str(assets["pose"])
    timing = json.loads((out / "timing.json").read_text())
    for stage in ("preprocess", "depth", "pose", "odometry"):
        assert set(timing["stages"][stage]) >= {"p50_ms", "p99_ms", "mean_ms"}
    assert timing["fps"] > 0 and timing["wall_s"] > 0
    assert not list(out.glob(".partial-*"))


def test_constant_forward_motion_gives_a_straight_line_along_the_optical_axis(assets, tmp_path):
    info = run(str(assets["seq"]), tmp_path / "o", load_config(None, overrides(assets)),
               RunOptions(save_depth=0, quiet=True))
    assert info["depth_png"]["files"] == 0 and not (tmp_path / "o" / "depth").exists()
    _, P = read_tum(tmp_path / "o" / "trajectory.txt")
    rel = np.einsum("ij,njk->nik", np.linalg.inv(P[0]), P)        # in the first camera frame
    np.testing.assert_allclose(rel[:, :3, 3], np.c_[np.zeros((N, 2)), STEP * np.arange(N)],
                               atol=1e-6)
    np.testing.assert_allclose(rel[:, :3, :3], np.broadcast_to(np.eye(3), (N, 3, 3)), atol=1e-6)


def test_save_depth_every_nth_and_values_in_thousandths(assets, tmp_path):
    run(str(assets["seq"]), tmp_path / "o", load_config(None, overrides(assets)),
        RunOptions(save_depth=5, frames="2:12", quiet=True))
    names = sorted(p.name for p in (tmp_path / "o" / "depth").glob("*.png"))
    assert names == ["2.png", "7.png"]          # positions 0 and 5 of frames 2..11
    d = read_depth_png(tmp_path / "o" / "depth" / "2.png")
    assert d.shape == (H, W) and np.isfinite(d).all() and d.min() > 0


def test_eval_writes_metrics_and_plots(assets, tmp_path):
    out = tmp_path / "ev"
    assert cli(assets, "eval", str(assets["seq"]), "--out", str(out), "--save-depth", "4") == 0
    m = json.loads((out / "metrics.json").read_text())
    for k in ("ate_rmse_m", "ate_mean_m", "ate_median_m", "ate_max_m", "rpe_trans_m",
              "rpe_rot_deg", "t_err_pct", "r_err_deg_per_100m", "drift_lengths_m",
              "scale_ratio", "path_length_m", "frames_matched", "depth",
              "depth_constant_baseline", "fps", "alignment"):
        assert k in m, k
    assert set(m["rpe_trans_m"]) == {"per_frame", "per_second"}
    assert set(m["rpe_rot_deg"]) == {"per_frame", "per_second"}
    for k in ("ate_rmse_m", "t_err_pct", "r_err_deg_per_100m", "scale_ratio", "path_length_m"):
        assert math.isfinite(m[k]), k
    assert math.isfinite(m["rpe_trans_m"]["per_frame"])
    assert len(m["drift_lengths_m"]) >= 1 and m["frames_matched"] == N
    for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"):
        assert math.isfinite(m["depth"][k]) and math.isfinite(m["depth_constant_baseline"][k])
    assert m["depth"]["n_images"] == N and m["depth"]["scaling"] == "median"
    assert m["depth_range_m"] == [0.1, 10.0]
    for png in ("trajectory.png", "errors.png", "depth.png"):
        assert (out / png).stat().st_size > 1000
        assert cv2.imread(str(out / png)) is not None
    assert len(list((out / "depth").glob("*.png"))) == 3            # frames 0, 4, 8
    assert json.loads((out / "run.json").read_text())["metrics_file"] == "metrics.json"


def test_eval_without_ground_truth_says_so_and_writes_nothing(assets, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    seq = open_sequence(assets["seq"], frames="0:3")
    for f in seq:
        cv2.imwrite(str(folder / f"{f.index:04d}.png"), f.image[:, :, ::-1])
    c = seq.camera
    (folder / "intrinsics.txt").write_text(f"{c.fx} {c.fy} {c.cx} {c.cy}\n")
    out = tmp_path / "ev"
    assert cli(assets, "eval", str(folder), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "ground truth" in err and "vode process" in err
    assert not out.exists()
    assert cli(assets, "process", str(folder), "--out", str(out)) == 0   # process needs none
    assert json.loads((out / "run.json").read_text())["layout"] == "folder"


def test_failed_runs_leave_no_complete_looking_output(assets, tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    assert cli(assets, "process", str(assets["seq"]), "--out", str(out),
               depth=str(tmp_path / "missing.onnx")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (out / "trajectory.txt").exists()
    # a run that dies half-way: nothing committed, no partial folder left, an older run intact
    from vode_ros.odometry import VisualOdometry
    (out / "depth").mkdir(parents=True)
    (out / "trajectory.txt").write_text("# an earlier complete run\n")
    original = VisualOdometry.process

    def dies(self, frame):
        if self.frames == 5:
            raise RuntimeError("simulated crash")
        return original(self, frame)

    monkeypatch.setattr(VisualOdometry, "process", dies)
    with pytest.raises(RuntimeError, match="simulated"):
        run(str(assets["seq"]), out, load_config(None, overrides(assets)), RunOptions(quiet=True))
    assert (out / "trajectory.txt").read_text() == "# an earlier complete run\n"
    assert not (out / "run.json").exists() and not list(out.glob(".partial-*"))
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        run(str(assets["seq"]), fresh, load_config(None, overrides(assets)),
            RunOptions(quiet=True))
    assert not fresh.exists()


def test_frames_the_pipeline_refuses_are_skipped_and_counted(assets, tmp_path, monkeypatch):
    from vode_ros.odometry import VisualOdometry
    original = VisualOdometry.process

    def refuse_some(self, frame):
        if frame.stamp_ns in refuse:
            raise InputError("image", "simulated bad frame")
        return original(self, frame)

    stamps = open_sequence(assets["seq"]).stamps_ns
    refuse = {int(stamps[3]), int(stamps[7])}
    monkeypatch.setattr(VisualOdometry, "process", refuse_some)
    info = run(str(assets["seq"]), tmp_path / "o", load_config(None, overrides(assets)),
               RunOptions(quiet=True))
    assert info["frames_processed"] == N - 2 and info["frames_skipped"] == 2
    assert info["skipped_by_kind"] == {"image": 2}
    s, _ = read_tum(tmp_path / "o" / "trajectory.txt")
    assert len(s) == N - 2 and refuse.isdisjoint(s.tolist())


def test_dark_frames_count_as_tracking_lost_with_reasons(assets, tmp_path):
    from vode_ros.datasets.synth import generate_sequence
    seq = generate_sequence(tmp_path / "dark", n_frames=8, width=W, height=H,
                            dark_frames=(3, 6))
    info = run(str(seq), tmp_path / "o", load_config(None, overrides(assets)),
               RunOptions(quiet=True, save_depth=0), EvalOptions(plots=False))
    assert info["tracking"]["lost_frames"] == 3 and info["frames_processed"] == 8
    assert any("texture" in r for r in info["tracking"]["lost_reasons"])
    assert info["metrics"]["tracking_lost_frames"] == 3
    assert not (tmp_path / "o" / "trajectory.png").exists()


def test_eval_option_errors_are_clear(assets, tmp_path):
    with pytest.raises(VodeError, match="0 < min < max"):
        run(str(assets["seq"]), tmp_path / "o", load_config(None, overrides(assets)),
            RunOptions(quiet=True), EvalOptions(min_depth=5, max_depth=1))
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not (DATA / "kitti-odometry" / "sequences" / "06").is_dir(),
                    reason=f"real data not present at {DATA} (CI provides ../shared/data)")
def test_eval_on_kitti_06_with_shipped_models(tmp_path):
    out = tmp_path / "kitti"
    info = run(str(DATA / "kitti-odometry" / "sequences" / "06"), out,
               load_config(None, ["models.providers=[CPUExecutionProvider]"]),
               RunOptions(frames="0:10", quiet=True, save_depth=5), EvalOptions())
    m = json.loads((out / "metrics.json").read_text())
    assert m["layout"] == "kitti" and m["frames_matched"] == 10
    assert m["depth_range_m"] == [1e-3, 80.0]
    for k in ("ate_rmse_m", "ate_max_m", "path_length_m", "t_err_pct", "r_err_deg_per_100m"):
        assert math.isfinite(m[k]), k
    assert math.isfinite(m["rpe_trans_m"]["per_frame"])
    assert math.isfinite(m["rpe_rot_deg"]["per_frame"])
    assert m["depth"]["n_images"] == 0                              # KITTI odometry: no depth
    assert info["models"]["depth"]["metadata"]["vode.kind"] == "depth"
    cam = info["camera"]
    raw = cv2.imread(str(out / "depth" / "0.png"), cv2.IMREAD_UNCHANGED)
    # depth PNGs at the depth's working resolution (depth.working_width, the aspect ratio kept)
    w = load_config(None, []).depth.working_width
    assert raw.shape == (round(cam["height"] * w / cam["width"]), w)
    for png in ("trajectory.png", "errors.png", "depth.png"):
        assert (out / png).is_file()


def test_depth_grid_prefers_frames_with_ground_truth_depth():
    from vode_ros.evaluation.depth_grid import DepthGrid
    img, d = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.float32)
    for total, gt_every, want in ((12, 5, [0, 5, 10, 11]), (600, 5, [0, 200, 400, 595]),
                                  (10, 1000, [0, 3, 6, 9])):
        picker = DepthGrid(total)
        for i in range(total):
            picker.offer(i, i, img, d, d if i % gt_every == 0 else None)
        assert [s["index"] for s in picker.result()] == want
