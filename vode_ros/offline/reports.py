"""run.json and timing.json of a run, from its ``RunRecord``."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from vode_ros.offline.outputs import DepthPngs
from vode_ros.offline.record import RunRecord

TIMING_NOTES = ("stages: Estimate.timings_ms per processed frame; process: the whole "
                "VisualOdometry.process call; read: loading a frame from the input; write: "
                "depth PNG output; fps: processed frames / wall time of the loop (reading "
                "and writing included); fps_pipeline: processed frames / time in process")


def latency_summary(values) -> dict:
    """p50 / p99 / mean milliseconds and the count of a list of per-frame times."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None, "n": 0}
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": int(a.size)}


def timing_report(record: RunRecord) -> dict:
    """timing.json: per-stage latencies, wall time and frames per second."""
    t = record.times
    return {
        "frames": record.frames_processed,
        "stages": {k: latency_summary(v) for k, v in t.stages.items()},
        "process": latency_summary(t.process),
        "read": latency_summary(t.read),
        "write": latency_summary(t.write),
        "wall_s": round(t.wall_s, 3),
        "fps": record.fps,
        "fps_pipeline": record.fps_pipeline,
        "notes": TIMING_NOTES,
    }


def vode_version() -> str:
    try:
        from vode_ros import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def run_info(record: RunRecord, depth_pngs: DepthPngs) -> dict:
    """run.json's content (the outputs list and the bag summary are added by the run)."""
    r = record
    info = {
        "command": f"vode {r.command}",
        "vode_version": vode_version(),
        "started_utc": r.started_utc.isoformat(timespec="seconds"),
        "input": r.input,
        "layout": r.layout,
        "name": r.name,
        "frames_selection": r.frames_selection,
        "frames_total": r.frames_total,
        "frames_processed": r.frames_processed,
        "frames_skipped": r.frames_skipped,
        "skipped_by_kind": dict(r.skipped),
        "skipped_examples": r.skip_examples,
        "image_size": r.image_size,
        "camera": asdict(r.camera),
        "scale": r.scale,
        "scale_source": scale_source_info(r),
        "models": r.models,
        "provider": r.provider,
        "pose_backend": r.pose_backend,
        "backend_counts": dict(r.backends),
        "tracking": {"states": dict(r.tracking), "lost_frames": r.lost_frames,
                     "lost_reasons": dict(r.lost_reasons.most_common()),
                     "lost_examples": r.lost_examples},
        "trajectory": {"file": "trajectory.txt", "format": "TUM 't tx ty tz qx qy qz qw'",
                       "pose": "Estimate.camera_pose: camera optical frame in odom",
                       "units": "metres" if r.scale == "metric" else "model units"},
        "depth_png": _depth_png_info(r, depth_pngs),
        "config_file": r.config_file,
        "overrides": list(r.overrides),
        "config": r.config.to_dict(),
        "wall_s": round(r.times.wall_s, 3),
    }
    if r.loop_closure is not None:
        lc = r.loop_closure
        info["loop_closure"] = {
            **lc.summary,
            "trajectory_map": "trajectory_map.txt: camera optical frame in the map, "
                              "each frame corrected by its latest keyframe",
            "accepted": lc.accepted,
            "last_error": lc.last_error}
    return info


def scale_source_info(r: RunRecord) -> dict:
    """Which scale source the run used (``pose.scale_source``, ``pose.fixed_scale``) and, where
    it measures one, its last ``ScaleStatus`` (metres per unit, confidence, last update)."""
    pose = r.config.pose
    info = {"pose.scale_source": pose.scale_source, "pose.fixed_scale": pose.fixed_scale}
    if r.scale_status is not None:
        info["status"] = r.scale_status
    return info


def _depth_png_info(r: RunRecord, depth_pngs: DepthPngs) -> dict:
    return {"folder": "depth", "every_nth_frame": depth_pngs.every, "files": depth_pngs.files,
            "name": "<frame index>.png",
            "encoding": "uint16, value = depth x 1000, 0 = invalid, saturates at 65535",
            "unit": "millimetres" if r.scale == "metric" else
                    "thousandths of the odometry's unit (relative scale: multiply by the scale "
                    "ratio of `vode eval` for millimetres)"}
