"""``vode demo``: the bag workflow end to end, with the real node in its own process over DDS.

For each input (default: a generated synthetic room, reused after the first run, plus 300 frames
of 7-Scenes where ../shared/data has it):

1. the sequence becomes a camera bag (``vode bag from-dataset``), cached in
   ``.cache/demo/bags/`` and reused while it is newer than its source;
2. vode_node starts as its own process (as ``ros2 run vode_ros vode_node`` would) with
   ``use_sim_time:=true``;
3. the bag's camera topics are played (``vode bag play``: original timing scaled to ``--rate``
   frames per second, /clock from the bag) while the node's outputs are recorded
   (``vode bag record``) into ``<out>/<name>/vode_output.mcap`` (depth images: every 10th);
4. the recorded /odom, moved to the camera frame with the recorded /tf_static, is evaluated
   against the bag's ground truth with ``vode_ros.evaluation`` (ATE/RPE after Sim(3) alignment,
   trajectory and error plots), and ``summary.json``, ``metrics.json``, ``report.md`` and the
   plots are written beside the recording.
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

from vode_ros.ros import fastdds

REPO = Path(__file__).resolve().parents[2]
SHARED_7SCENES = REPO.parent / "shared" / "data" / "7scenes-redkitchen"
CACHE = REPO / ".cache" / "demo"
IMAGE_TOPIC, INFO_TOPIC = "/camera/image_raw", "/camera/camera_info"
NODE_TOPICS = ["/odom", "/tf", "/tf_static", "/depth/image", "/depth/camera_info", "/path",
               "/diagnostics"]
DEPTH_EVERY = 10            # full-resolution float depth is 1.2 MB a frame at 640x480


def demo_environment(domain_id: int) -> dict:
    env = dict(os.environ)
    profile = REPO / "config" / "fastdds_shm.xml"
    env.update({"ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "PYTHONUNBUFFERED": "1"})
    if profile.is_file():
        for name in fastdds.profile_variables():     # Fast DDS 2.x (Jazzy) reads an older name
            env.setdefault(name, str(profile))
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
             rate_hz: float = 15.0, extra_params: list[str] | None = None,
             cache: Path | None = None, domain_id: int | None = None) -> list[dict]:
    """Run the demo on ``inputs`` (default: see ``default_inputs``); ``cache``: where the
    camera bags (and the synthetic room) are kept; ``domain_id``: the ROS domain (default: a
    random one in 1..200, localhost discovery)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache is not None else CACHE
    paths = [Path(p) for p in inputs] if inputs else default_inputs(cache)
    reports = []
    for path in paths:
        name = path.resolve().name or "input"
        sub_frames = frames
        if sub_frames is None and path.resolve() == SHARED_7SCENES.resolve():
            sub_frames = "0:300"          # 20 s at 15 Hz: keeps the demo under 3 minutes
        reports.append(run_one(path, out / name, sub_frames, rate_hz, extra_params or [],
                               cache=cache, domain_id=domain_id))
    return reports


# -- 1. the camera bag ---------------------------------------------------------------------------
def _newest_mtime(path: Path) -> float:
    if path.is_file():
        return path.stat().st_mtime
    return max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.iterdir()])


def camera_bag(path: Path, frames: str | None, cache: Path = CACHE) -> Path:
    """The input as a camera bag, made once and reused while newer than its source."""
    from vode_ros.bags.from_dataset import dataset_to_bag
    from vode_ros.bags.paths import BagError
    from vode_ros.bags.reader import bag_info
    tag = "" if frames is None else "_" + frames.replace(":", "-")
    bag = cache / "bags" / f"{path.resolve().name}{tag}.mcap"
    if bag.is_file() and bag.stat().st_mtime >= _newest_mtime(path):
        try:
            bag_info(bag)
            print(f"reusing camera bag {bag}", flush=True)
            return bag
        except BagError:
            pass
    bag.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    info = dataset_to_bag(path, bag, frames=frames, overwrite=True, quiet=True)
    print(f"wrote camera bag {bag}: {info['frames']} frames, {info['ground_truth_poses']} "
          f"ground-truth poses ({time.monotonic() - t0:.1f} s)", flush=True)
    return bag


# -- 2.-3. node, play, record --------------------------------------------------------------------
def run_one(path: Path, out: Path, frames: str | None, rate_hz: float,
            extra_params: list[str], cache: Path = CACHE, domain_id: int | None = None) -> dict:
    from vode_ros.bags.paths import BagError
    from vode_ros.datasets import open_sequence
    from vode_ros.ros.bag import BagPlayer, BagRecorder
    from vode_ros.ros.spinning import spun_node

    if not rate_hz > 0:
        raise ValueError(f"--rate must be positive, got {rate_hz}")
    bag = camera_bag(path, frames, cache)
    seq = open_sequence(bag)
    stamps = seq.stamps_ns
    fps = 1e9 / float(np.median(np.diff(stamps))) if len(stamps) > 1 else rate_hz
    out.mkdir(parents=True, exist_ok=True)
    out_bag = out / "vode_output.mcap"
    domain = domain_id if domain_id is not None else random.randint(1, 200)
    env = demo_environment(domain)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ROS_", "FASTDDS_"))})
    log_path = out / "node.log"
    cmd = [sys.executable, "-m", "vode_ros.ros.node", "--ros-args", "-p", "use_sim_time:=true",
           "-r", f"image:={IMAGE_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}"]
    for item in extra_params:
        cmd += ["-p", item.replace("=", ":=", 1)]
    print(f"\n== {path.name} ({len(seq)} frames at {fps:.3g} Hz) -> {out}", flush=True)
    print("starting vode_node:", " ".join(cmd[1:]), flush=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=log,
                                stderr=subprocess.STDOUT)
    recorded = {}
    play_stats = {}
    try:
        with spun_node("vode_demo", domain_id=domain) as node:
            recorder = BagRecorder(node, out_bag, NODE_TOPICS, overwrite=True,
                                   every={"/depth/image": DEPTH_EVERY}, log=lambda _t: None)
            try:
                player = BagPlayer(node, bag, rate=rate_hz / fps,
                                   topics=[IMAGE_TOPIC, INFO_TOPIC],
                                   log=lambda t: print("  " + t, flush=True))
                try:
                    player.wait_subscribers(60.0)
                except BagError as exc:
                    raise RuntimeError(f"vode_node did not subscribe to {IMAGE_TOPIC} within "
                                       f"60 s ({exc}); see {log_path}") from None
                if proc.poll() is not None:
                    raise RuntimeError(f"vode_node exited with {proc.returncode}; see {log_path}")
                recorder.wait_for_topics(10.0)      # the node's publishers exist already
                print(f"  playing {bag.name} at x{player.rate:.3g} ({rate_hz:g} frames/s), "
                      f"recording {', '.join(recorder.subscribed)}", flush=True)
                play_stats = player.play()
                _settle(recorder, len(seq))
            finally:
                _stop(proc)
                time.sleep(0.3)
                recorded = recorder.stop() if not recorder.closed else {}
    finally:
        _stop(proc)
    return _summarise(seq, bag, out, out_bag, play_stats, recorded, proc.returncode, log_path)


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _settle(recorder, n_sent: int, quiet_s: float = 1.5, timeout: float = 30.0) -> None:
    """Wait until the node has answered every frame or gone quiet."""
    end = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < end:
        n = recorder.counts().get("/odom", 0)
        if n != last:
            last, last_change = n, time.monotonic()
        if n >= n_sent or time.monotonic() - last_change > quiet_s:
            return
        time.sleep(0.1)


# -- 4. evaluation and report --------------------------------------------------------------------
def _recorded(out_bag: Path) -> dict:
    """What the recorded bag says: odometry, depth stamps and samples, path, diagnostics."""
    from vode_ros.bags.reader import read_messages, read_odometry
    from vode_ros.message_fields import header_stamp_ns
    stamps, poses, frame, child = read_odometry(out_bag, "/odom")
    rec = {"odom_stamps": stamps, "odom_poses": poses, "odom_frame": frame,
           "base_frame": child, "tf": 0, "tf_static": [], "depth_info_stamps": [],
           "depth_stamps": [], "depth_samples": [], "path_poses": 0, "diagnostics": {}}
    for topic, _type, _t, msg in read_messages(out_bag, NODE_TOPICS[1:]):
        if topic == "/tf":
            rec["tf"] += len(msg.transforms)
        elif topic == "/tf_static":
            rec["tf_static"] += [f"{t.header.frame_id}->{t.child_frame_id}"
                                 for t in msg.transforms]
        elif topic == "/depth/camera_info":
            rec["depth_info_stamps"].append(header_stamp_ns(msg.header))
        elif topic == "/depth/image":
            rec["depth_stamps"].append(header_stamp_ns(msg.header))
            d = np.frombuffer(msg.data.tobytes(), np.float32)
            rec["depth_samples"].append(d[np.isfinite(d)])
        elif topic == "/path":
            rec["path_poses"] = len(msg.poses)
        elif topic == "/diagnostics" and msg.status:
            s = msg.status[0]
            rec["diagnostics"] = {kv.key: kv.value for kv in s.values}
            rec["diagnostics"].update(level=int(s.level), message=s.message)
    return rec


def _summarise(seq, bag: Path, out: Path, out_bag: Path, play: dict, recorded: dict,
               returncode, log_path: Path) -> dict:
    from vode_ros.bags.reader import read_static_transform
    from vode_ros.config import VodeConfig
    from vode_ros.evaluation.trajectory import write_tum
    from vode_ros.geometry import from_xyz_rpy

    rec = _recorded(out_bag) if out_bag.is_file() else None
    if rec is None:
        raise RuntimeError(f"no recording was written to {out_bag}; see {log_path}")
    cfg = VodeConfig()
    camera_frame = cfg.ros.camera_frame
    T_base_cam = read_static_transform(out_bag, rec["base_frame"] or cfg.ros.base_frame,
                                       camera_frame)
    extrinsic_from = "recorded /tf_static"
    if T_base_cam is None:
        T_base_cam = from_xyz_rpy(cfg.camera.base_to_camera_xyz, cfg.camera.base_to_camera_rpy)
        extrinsic_from = "configuration default (no /tf_static recorded)"
    stamps, poses = rec["odom_stamps"], rec["odom_poses"]
    cam_poses = poses @ T_base_cam if len(poses) else poses
    traj_path = out / "trajectory.txt"
    if len(stamps):
        write_tum(traj_path, stamps, cam_poses)
    finite = bool(len(poses)) and bool(np.all(np.isfinite(poses)))
    sent = play.get("messages", {}).get(IMAGE_TOPIC, 0)
    diag = rec["diagnostics"]
    path_len = float(np.sum(np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1))) \
        if len(poses) > 1 else 0.0
    summary = {
        "input": seq.name, "camera_bag": str(bag), "frames_sent": int(sent),
        "play_wall_s": play.get("wall_s"),
        "send_rate_hz": round(sent / play["wall_s"], 2) if play.get("wall_s") else None,
        "odom_received": int(len(stamps)), "tf_received": rec["tf"],
        "tf_static": rec["tf_static"],
        "depth_camera_info_received": len(rec["depth_info_stamps"]),
        "depth_images_recorded": len(rec["depth_stamps"]),
        "depth_image_every": DEPTH_EVERY,
        "depth_camera_info_stamps_match": sorted(rec["depth_info_stamps"]) == sorted(
            int(s) for s in stamps) and set(rec["depth_stamps"]) <= set(rec["depth_info_stamps"]),
        "odom_stamps_are_input_stamps": set(int(s) for s in stamps) <= set(
            int(s) for s in seq.stamps_ns),
        "path_poses": rec["path_poses"], "all_poses_finite": finite,
        "path_length_model_units": round(path_len, 4), "diagnostics": diag,
        "camera_extrinsic_from": extrinsic_from, "node_exit_code": returncode,
        "recording": str(out_bag), "recorded_topics": recorded.get("topics", {}),
        "trajectory": str(traj_path), "node_log": str(log_path),
    }
    if rec["depth_samples"]:
        d = np.concatenate(rec["depth_samples"])
        if d.size:
            summary["depth_median_model_units"] = round(float(np.median(d)), 4)
    gt_stamps, gt_poses = seq.ground_truth()
    if len(gt_stamps) >= 2 and len(stamps) >= 2:
        summary["evaluation"] = _evaluate(out, seq.name, stamps, cam_poses, gt_stamps, gt_poses,
                                          diag.get("scale", "relative"))
    else:
        summary["evaluation"] = {"skipped": f"{len(gt_stamps)} ground-truth poses and "
                                            f"{len(stamps)} odometry messages; need 2 of each"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json) + "\n")
    _report(out, summary)
    _print(summary, out)
    return summary


def _json(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def _evaluate(out: Path, name: str, stamps, cam_poses, gt_stamps, gt_poses, scale: str) -> dict:
    try:
        from vode_ros.evaluation import plots
        from vode_ros.evaluation.metrics import evaluate_trajectory
    except ImportError as exc:  # evaluation extras (evo, matplotlib) missing
        return {"skipped": f"evaluation unavailable: {exc}"}
    try:
        ev = evaluate_trajectory(np.asarray(gt_stamps), np.asarray(gt_poses),
                                 np.asarray(stamps), np.asarray(cam_poses),
                                 scale="metric" if scale == "metric" else "relative")
    except Exception as exc:  # noqa: BLE001 - ValueError, evo's exceptions
        return {"skipped": f"trajectory evaluation failed: {exc}"}
    m = ev.metrics
    (out / "metrics.json").write_text(json.dumps(m, indent=2, default=_json) + "\n")
    unit = "m" if m["ate_unit"] == "m" else "model units"
    ate = m["ate_rmse_m"]
    title = f"{name} via vode_node (recorded /odom): ATE rmse " + \
        ("n/a" if ate is None else f"{ate:.4g} {unit}")
    sub = f"alignment {m['alignment']}" + (f", scale {m['scale_ratio']:.4g} m/unit"
                                           if m.get("scale_ratio") is not None else "")
    plots.plot_trajectory(out / "trajectory.png", ev.gt_xyz, ev.est_xyz, title, sub)
    plots.plot_errors(out / "errors.png", ev.stamps_s, ev.ate_errors, ev.rpe_stamps_s,
                      ev.rpe_trans_errors, ev.rpe_rot_errors_deg, unit, title)
    keys = ("frames_matched", "alignment", "ate_rmse_m", "ate_unit", "scale_ratio",
            "rpe_trans_m", "rpe_rot_deg", "t_err_pct")
    return {k: m.get(k) for k in keys} | {"metrics": str(out / "metrics.json"),
                                           "plots": [str(out / "trajectory.png"),
                                                     str(out / "errors.png")]}


def _report(out: Path, s: dict) -> None:
    e = s.get("evaluation", {})
    lines = [f"# vode demo: {s['input']}", "",
             f"- camera bag played: `{s['camera_bag']}` ({s['frames_sent']} frames at "
             f"{s['send_rate_hz']} Hz)",
             f"- node recording: `{s['recording']}` ({s['odom_received']} odometry, "
             f"{s['depth_camera_info_received']} depth camera_info, "
             f"{s['depth_images_recorded']} depth images kept (every {s['depth_image_every']}th))",
             f"- trajectory (TUM, camera frame): `{s['trajectory']}`", ""]
    if "skipped" in e:
        lines.append(f"Evaluation skipped: {e['skipped']}")
    elif e:
        lines += [f"ATE rmse {e['ate_rmse_m']} {e['ate_unit']} over {e['frames_matched']} frames "
                  f"(alignment {e['alignment']}, scale {e['scale_ratio']}); RPE per frame "
                  f"{(e.get('rpe_trans_m') or {}).get('per_frame')} (translation), "
                  f"{(e.get('rpe_rot_deg') or {}).get('per_frame')} deg", "",
                  "![trajectory](trajectory.png)", "", "![errors](errors.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _print(s: dict, out: Path) -> None:
    d = s["diagnostics"]
    print(f"  frames sent {s['frames_sent']} at {s['send_rate_hz']} Hz; recorded "
          f"{s['odom_received']} odometry, {s['tf_received']} TF, "
          f"{s['depth_camera_info_received']} depth camera_info (stamps match: "
          f"{s['depth_camera_info_stamps_match']}), path of {s['path_poses']} poses")
    if d:
        print(f"  node diagnostics: provider {d.get('provider')}, tracking {d.get('tracking')}, "
              f"latency p50 {d.get('latency_ms_p50')} ms, dropped {d.get('frames_dropped')}, "
              f"skipped {d.get('frames_skipped')}, scale {d.get('scale')}")
    e = s.get("evaluation", {})
    if "skipped" in e:
        print(f"  evaluation skipped: {e['skipped']}")
    elif e:
        print(f"  against ground truth: ATE rmse {_fmt(e['ate_rmse_m'])} {e['ate_unit']} "
              f"({e['alignment']}, scale {e['scale_ratio']}) over {e['frames_matched']} frames")
    print(f"  static TF: {s['tf_static']}; all poses finite: {s['all_poses_finite']}; "
          f"node exit code {s['node_exit_code']}")
    print(f"  report: {out / 'report.md'} (summary.json, metrics.json); plots: "
          f"{out / 'trajectory.png'}, {out / 'errors.png'}; recording: {s['recording']}",
          flush=True)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"
