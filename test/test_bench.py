"""`vode bench` runs the real node's code path and reports per-stage latency and throughput (its
keys, not speed: speed is measured by the command, with figures in docs/results.md)."""
import json
import subprocess
import sys

import pytest

import model_factory as mf
from vode_ros.datasets.synth import generate_sequence


@pytest.mark.parametrize("through_node", [True, False])
def test_bench_reports_stages_and_model_only_time(tmp_path, through_node):
    seq = generate_sequence(tmp_path / "seq", n_frames=8, width=160, height=120)
    depth = mf.make_depth_model(tmp_path / "d.onnx")
    pose = mf.make_pose_model(tmp_path / "p.onnx")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "vode_ros.cli", "bench", str(seq), "--warmup", "2",
           "--out", str(out), "--set", f"models.depth={depth}", "--set", f"models.pose={pose}",
           "--set", "models.providers=[CPUExecutionProvider]", "--set", "pose.backend=network"]
    if not through_node:
        cmd.append("--no-ros")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert report["through_ros_node"] is through_node
    assert report["frames_timed"] == 8 and report["fps_end_to_end"] > 0
    assert report["provider"] == "CPUExecutionProvider"
    assert report["model_only_ms"]["total_ms"] > 0
    stages = ["decode", "preprocess", "depth", "pose", "odometry", "publish", "total"]
    for stage in stages:
        assert set(report["stages"][stage]) >= {"p50_ms", "p99_ms"}
    if through_node:   # decode and publish happen only on the node's path
        assert report["stages"]["publish"]["p50_ms"] > 0
        assert report["stages"]["decode"]["p50_ms"] > 0
    assert report["geometry_in_pose_ms"] is None          # the network backend has no geometry


def test_bench_reports_what_geometry_adds_inside_the_pose_stage(tmp_path):
    seq = generate_sequence(tmp_path / "seq", n_frames=10, width=160, height=120)
    depth = mf.make_depth_model(tmp_path / "d.onnx")
    pose = mf.make_pose_model(tmp_path / "p.onnx")
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "vode_ros.cli", "bench", str(seq), "--warmup", "2", "--no-ros",
         "--out", str(out), "--set", f"models.depth={depth}", "--set", f"models.pose={pose}",
         "--set", "models.providers=[CPUExecutionProvider]", "--set", "pose.backend=hybrid"],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    geo = report["geometry_in_pose_ms"]
    assert geo["p50_ms"] > 0
    # a part of the pose stage, frame by frame, so also in every quantile over the same frames
    whole = report["pose_with_geometry_ms"]
    assert geo["p50_ms"] <= whole["p50_ms"] and geo["p99_ms"] <= whole["p99_ms"]
