"""``vode bench``: per-stage latency and end-to-end throughput of the pipeline the node runs.

With ROS (the default), frames go through the real node's ``process_message`` as sensor_msgs/Image
messages: decode, preprocess, depth, pose, odometry and publish are all timed, exactly the path a
robot runs (the node is not spun; its publishers serialise onto DDS as usual). ``use_ros=False``
times the core pipeline alone. ONNX Runtime model-only time is measured beside it on the same
inputs, so the pipeline's own overhead shows.
"""
from __future__ import annotations

import os
import platform
import time
from typing import TYPE_CHECKING

import numpy as np

from vode_ros.config import VodeConfig

if TYPE_CHECKING:
    from vode_ros.inference import OnnxModel

STAGES = ("decode", "preprocess", "depth", "pose", "odometry", "publish")


def _summary(values) -> dict:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None}
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3)}


def _pose_model(vo) -> OnnxModel:
    """The pose model the backend runs (every backend the pipeline builds keeps one)."""
    model = vo.pose_backend.model
    if model is None:
        raise ValueError(f"bench times the pose model, and the '{vo.pose_backend.name}' pose "
                         "backend has none")
    return model


def _model_only(vo, tensor_depth, tensor_pose, n: int = 50) -> dict:
    depth_model, pose_model = vo.depth.model, _pose_model(vo)
    times = {"depth": [], "pose": []}
    for _ in range(5):
        depth_model(tensor_depth)
        pose_model(tensor_pose)
    for _ in range(n):
        depth_model(tensor_depth)
        times["depth"].append(depth_model.last_ms)
        pose_model(tensor_pose)
        times["pose"].append(pose_model.last_ms)
    d, p = (float(np.median(times[k])) for k in ("depth", "pose"))
    return {"depth_ms": round(d, 3), "pose_ms": round(p, 3), "total_ms": round(d + p, 3)}


def run_bench(input_path: str, cfg: VodeConfig, frames: str | None = None, warmup: int = 5,
              repeat: int = 1, use_ros: bool = True) -> dict:
    from vode_ros.datasets import open_sequence

    seq = open_sequence(input_path, frames=frames)
    items = [(f.stamp_ns, f.image, f.camera) for f in seq]
    if len(items) < 2:
        raise ValueError(f"bench needs at least 2 frames, '{input_path}' gave {len(items)}")
    if use_ros:
        from vode_ros.ros.bench_runner import NodeRunner  # the ROS door; rclpy lives there
        runner = NodeRunner(cfg)
    else:
        runner = _CoreRunner(cfg)
    try:
        vo = runner.vo
        stages: dict[str, list] = {k: [] for k in STAGES}
        stages["total"] = []
        model_ms: dict[str, list] = {"depth": [], "pose": []}
        geometry_ms: list = []
        pose_with_geometry_ms: list = []   # the pose stage on the same frames
        ba_ms: list = []
        refine_ms: list = []
        recovery_ms: dict[str, list] = {"pose_rematch": [], "pose_wide_baseline": []}
        depth_ms: dict[str, list] = {"plane_sweep": [], "depth_fusion": []}
        n_timed, wall = 0, 0.0
        for rep in range(repeat + 1):          # pass 0 is warm-up (first `warmup` frames)
            runner.reset()
            subset = items[:warmup] if rep == 0 else items
            if rep > 0:
                t_start = time.perf_counter()
            for stamp_ns, image, camera in subset:
                timings = runner.step(stamp_ns, image, camera)
                if rep == 0 or timings is None:
                    continue
                for k in STAGES:
                    stages[k].append(timings.get(k, 0.0))
                stages["total"].append(timings["total"])
                model_ms["depth"].append(timings.get("depth_model", 0.0))
                model_ms["pose"].append(timings.get("pose_model", 0.0))
                if "pose_geometry" in timings:
                    geometry_ms.append(timings["pose_geometry"])
                    pose_with_geometry_ms.append(timings.get("pose", 0.0))
                if "pose_bundle_adjustment" in timings:     # keyframes only
                    ba_ms.append(timings["pose_bundle_adjustment"])
                if "pose_frame_refinement" in timings:      # frames between keyframes
                    refine_ms.append(timings["pose_frame_refinement"])
                for k, v in recovery_ms.items():                # the frames that needed them
                    if k in timings:
                        v.append(timings[k])
                for k, v in depth_ms.items():
                    if k in timings:
                        v.append(timings[k])
                n_timed += 1
            if rep > 0:
                wall += time.perf_counter() - t_start
        from vode_ros.pose import FrameData
        fd = FrameData(0, items[0][1], items[0][2])
        td = fd.tensor(vo.depth.spec)
        pose_spec = _pose_model(vo).spec
        tp = np.concatenate([fd.tensor(pose_spec)] * 2, axis=1)
        model_only = _model_only(vo, td, tp)
        report = {
            "input": str(input_path), "layout": seq.layout, "frames_timed": n_timed,
            "image_size": [int(items[0][1].shape[1]), int(items[0][1].shape[0])],
            "depth_input_size": [vo.depth.spec.input_width, vo.depth.spec.input_height],
            "pose_input_size": [pose_spec.input_width, pose_spec.input_height],
            "provider": vo.depth.model.provider, "through_ros_node": use_ros,
            "pose_backend": vo.pose_backend.name,
            "fps_end_to_end": round(n_timed / wall, 2) if wall > 0 else None,
            "model_only_ms": model_only,
            "model_in_pipeline_ms": {"depth": _summary(model_ms["depth"]),
                                     "pose": _summary(model_ms["pose"])},
            "stages": {k: _summary(v) for k, v in stages.items()},
            # inside the pose stage: the geometric backend's own time (tracking, two-view
            # geometry, keyframes), what geometry adds over the pose network
            "geometry_in_pose_ms": _summary(geometry_ms) if geometry_ms else None,
            # the pose stage over the frames geometry ran on (the first frame of a run has no
            # step), so that the two summaries compare like with like
            "pose_with_geometry_ms": (_summary(pose_with_geometry_ms) if geometry_ms
                                      else None),
            # inside geometry: the local bundle adjustment, on the keyframes where it ran
            "bundle_adjustment_ms": _summary(ba_ms) if ba_ms else None,
            # inside geometry: the frame refinement (pose.frame_refinement_evaluations)
            "frame_refinement_ms": _summary(refine_ms) if refine_ms else None,
            # inside geometry, on the frames Lucas-Kanade could not follow: ORB matches to the
            # last frame restarting it, and matches to the kept keyframes
            "rematch_ms": (_summary(recovery_ms["pose_rematch"])
                           if recovery_ms["pose_rematch"] else None),
            "wide_baseline_ms": (_summary(recovery_ms["pose_wide_baseline"])
                                 if recovery_ms["pose_wide_baseline"] else None),
            # inside the depth stage: the multi-view plane sweep (at depth keyframes only) and
            # the alignment and fusion of every frame
            "plane_sweep_ms": {**_summary(depth_ms["plane_sweep"]),
                               "keyframes": len(depth_ms["plane_sweep"])},
            "depth_fusion_ms": _summary(depth_ms["depth_fusion"]),
            "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or
                        platform.machine(), "python": platform.python_version()},
        }
        p50 = report["stages"]["total"]["p50_ms"]
        report["overhead_ms_p50"] = round(p50 - model_only["total_ms"], 3) if p50 else None
        return report
    finally:
        runner.close()


class _CoreRunner:
    def __init__(self, cfg: VodeConfig):
        from vode_ros.pipeline import build_odometry
        self.vo = build_odometry(cfg)

    def step(self, stamp_ns, image, camera):
        from vode_ros.camera import Frame
        t0 = time.perf_counter()
        est = self.vo.process(Frame(stamp_ns, image, camera))
        return {**est.timings_ms, "total": (time.perf_counter() - t0) * 1e3}

    def reset(self):
        self.vo.reset()

    def close(self):
        pass
