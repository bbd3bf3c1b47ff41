"""``vode demo``: the real node over a real or synthetic sequence, two processes over DDS.

The node runs as its own process (as ``ros2 run vode_ros vode_node`` would), a camera-driver-like
publisher replays the sequence with its own timing, and a recorder keeps what the node publishes.
The summary says what came out; where the sequence has ground truth it is evaluated too.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vode_ros.config import VodeConfig
from vode_ros.geometry import from_xyz_rpy

REPO = Path(__file__).resolve().parents[2]
SHARED_7SCENES = REPO.parent / "shared" / "data" / "7scenes-redkitchen"


def demo_environment(domain_id: int) -> dict:
    env = dict(os.environ)
    profile = REPO / "config" / "fastdds_shm.xml"
    env.update({"ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "PYTHONUNBUFFERED": "1"})
    if profile.is_file():
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    return env


def default_inputs(cache: Path) -> list[Path]:
    """The synthetic room (generated once, then reused) and, where present, 7-Scenes."""
    from vode_ros.datasets.synth import generate_sequence
    synth = cache / "synth_room_loop"
    if not (synth / "rgb.txt").is_file():
        print(f"generating a synthetic sequence in {synth} ...", flush=True)
        generate_sequence(synth, scene="room", trajectory="loop", n_frames=150, width=640,
                          height=480, fps=30, seed=0)
    inputs = [synth]
    if SHARED_7SCENES.is_dir():
        inputs.append(SHARED_7SCENES)
    return inputs


def run_demo(inputs: list[str] | None, out_dir: str, frames: str | None = None,
             rate_hz: float = 15.0, extra_params: list[str] | None = None) -> list[dict]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in inputs] if inputs else default_inputs(REPO / ".cache" / "demo")
    reports = []
    for path in paths:
        name = path.name.rstrip("/") or "input"
        sub_frames = frames
        if sub_frames is None and path == SHARED_7SCENES:
            sub_frames = "0:300"          # ~20 s at 15 Hz: keeps the demo under 3 minutes
        reports.append(run_one(path, out / name, sub_frames, rate_hz, extra_params or []))
    return reports


def run_one(path: Path, out: Path, frames: str | None, rate_hz: float,
            extra_params: list[str]) -> dict:
    from vode_ros.datasets import open_sequence
    from vode_ros.ros.replay import FramePublisher, GraphPeer, OutputRecorder

    seq = open_sequence(path, frames=frames)
    out.mkdir(parents=True, exist_ok=True)
    domain = random.randint(1, 200)
    env = demo_environment(domain)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "FASTDDS_"))})
    log_path = out / "node.log"
    cmd = [sys.executable, "-m", "vode_ros.ros.node", "--ros-args",
           "-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info"]
    for item in extra_params:
        cmd += ["-p", item.replace("=", ":=", 1)]
    print(f"\n== {seq.name} ({seq.layout}, {len(seq)} frames) -> {out}", flush=True)
    print("starting vode_node:", " ".join(cmd[1:]), flush=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=log,
                                stderr=subprocess.STDOUT)
    peer = GraphPeer("vode_demo", domain_id=domain)
    try:
        publisher = FramePublisher(peer.node)
        recorder = OutputRecorder(peer.node)
        if not publisher.wait_for_subscriber(60):
            raise RuntimeError(f"vode_node did not subscribe within 60 s; see {log_path}")
        time.sleep(0.5)
        sent, gt = [], {}
        t_start = time.monotonic()
        period = 1.0 / rate_hz
        for i, f in enumerate(seq):
            target = t_start + i * period
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            publisher.publish(f.stamp_ns, f.image, f.camera)
            sent.append(f.stamp_ns)
            if f.gt_pose is not None:
                gt[f.stamp_ns] = f.gt_pose
        send_s = time.monotonic() - t_start
        _settle(recorder, len(sent))
        diag = recorder.last_diagnostics()
    finally:
        peer.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return _summarise(seq, out, sent, send_s, recorder, diag, gt, proc.returncode, log_path)


def _settle(recorder, n_sent: int, quiet_s: float = 1.5, timeout: float = 30.0):
    """Wait until the node has answered every frame or gone quiet."""
    end = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < end:
        n = len(recorder.odom)
        if n != last:
            last, last_change = n, time.monotonic()
        if n >= n_sent or time.monotonic() - last_change > quiet_s:
            return
        time.sleep(0.1)


def _summarise(seq, out: Path, sent, send_s, recorder, diag, gt, returncode, log_path) -> dict:
    from vode_ros.evaluation.trajectory import write_tum

    cfg = VodeConfig()
    base_to_cam = from_xyz_rpy(cfg.camera.base_to_camera_xyz, cfg.camera.base_to_camera_rpy)
    stamps, poses = recorder.odometry_poses()
    cam_poses = [p @ base_to_cam for p in poses]
    traj_path = out / "trajectory.txt"
    write_tum(traj_path, stamps, cam_poses)
    finite = all(np.isfinite(p).all() for p in poses)
    depth_ok = recorder.depth_stamps == recorder.depth_info_stamps
    path_len = float(sum(np.linalg.norm(b[:3, 3] - a[:3, 3]) for a, b in zip(poses, poses[1:])))
    summary = {
        "input": str(seq.name), "layout": seq.layout, "frames_sent": len(sent),
        "send_rate_hz": round(len(sent) / send_s, 2) if send_s else None,
        "odom_received": len(recorder.odom), "tf_received": len(recorder.tf),
        "tf_static": [f"{t.header.frame_id}->{t.child_frame_id}" for t in recorder.tf_static],
        "depth_images_received": len(recorder.depth_stamps),
        "depth_camera_info_stamps_match": depth_ok,
        "path_poses": len(recorder.path.poses) if recorder.path else 0,
        "all_poses_finite": finite, "path_length_model_units": round(path_len, 4),
        "diagnostics": diag, "node_exit_code": returncode,
        "trajectory": str(traj_path), "node_log": str(log_path),
    }
    samples = list(recorder.depth_samples.values())
    if samples:
        d = np.concatenate([s[np.isfinite(s)] for s in samples])
        summary["depth_median_model_units"] = round(float(np.median(d)), 4)
    if gt and stamps:
        summary["evaluation"] = _evaluate(out, stamps, cam_poses, gt)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print(summary, out)
    return summary


def _evaluate(out: Path, stamps, cam_poses, gt: dict) -> dict:
    try:
        from vode_ros.evaluation.metrics import trajectory_metrics
    except ImportError as exc:  # evaluation extras missing
        return {"skipped": f"evaluation unavailable: {exc}"}
    gt_stamps = sorted(gt)
    metrics = trajectory_metrics(np.asarray(stamps), np.stack(cam_poses),
                                 np.asarray(gt_stamps), np.stack([gt[s] for s in gt_stamps]),
                                 metric_scale=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return {k: metrics[k] for k in ("ate_rmse_m", "scale_ratio") if k in metrics}


def _print(s: dict, out: Path):
    d = s["diagnostics"]
    print(f"  frames sent {s['frames_sent']} at {s['send_rate_hz']} Hz; node published "
          f"{s['odom_received']} odometry, {s['tf_received']} TF, {s['depth_images_received']} "
          f"depth images (camera_info stamps match: {s['depth_camera_info_stamps_match']}), "
          f"path of {s['path_poses']} poses")
    if d:
        print(f"  node diagnostics: provider {d.get('provider')}, tracking {d.get('tracking')}, "
              f"latency p50 {d.get('latency_ms_p50')} ms, dropped {d.get('frames_dropped')}, "
              f"skipped {d.get('frames_skipped')}, scale {d.get('scale')}")
    if "evaluation" in s:
        print(f"  against ground truth: {s['evaluation']}")
    print(f"  static TF: {s['tf_static']}; all poses finite: {s['all_poses_finite']}; "
          f"node exit code {s['node_exit_code']}")
    print(f"  wrote {out}/trajectory.txt (TUM), {out}/summary.json, node log {s['node_log']}")
