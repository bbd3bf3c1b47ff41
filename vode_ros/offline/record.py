"""``RunRecord``: what one run of the pipeline over a sequence produced and measured.

The run (``vode_ros.offline.runner``) fills it frame by frame; the writers (trajectory, run.json,
timing.json), the evaluation (metrics.json) and the plots read it. It keeps what those need of
every processed frame (stamp, camera pose, tracking state, pose backend, timings), the frames
the pipeline refused, and the run's context (input, models, configuration, loop closure).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from vode_ros.camera import Camera
from vode_ros.config import VodeConfig


def reason_key(reason: str) -> str:
    """A failure reason with its numbers blanked, so like failures count together."""
    return re.sub(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", reason)[:300]


def file_sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


def model_info(model) -> dict | None:
    """An ``OnnxModel``'s file (resolved path, sha256), execution provider and contract
    metadata; None for no model."""
    if model is None:
        return None
    path = Path(model.path)
    return {"path": str(path.resolve()),
            "sha256": file_sha256(path) if path.is_file() else None,
            "provider": model.provider,
            "metadata": model.spec.to_metadata()}


@dataclass
class StageTimes:
    """Milliseconds per frame: ``stages`` (``Estimate.timings_ms``, and ``loop_closure_add``),
    ``process`` (the whole ``VisualOdometry.process`` call), ``read`` (loading a frame from the
    input), ``write`` (depth PNG and bag output); ``wall_s``: the whole loop."""

    stages: dict[str, list[float]] = field(default_factory=dict)
    process: list[float] = field(default_factory=list)
    read: list[float] = field(default_factory=list)
    write: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def add_stage(self, name: str, ms: float) -> None:
        self.stages.setdefault(name, []).append(float(ms))


@dataclass
class LoopClosureResult:
    """The loop-closure back-end's outcome: the trajectory corrected into the map frame (each
    frame by its latest keyframe's Sim(3) correction), its summary counters, the accepted
    loops and its last error."""

    map_poses: np.ndarray
    summary: dict
    accepted: list[dict]
    last_error: str | None


@dataclass
class RunRecord:
    """One run of ``VisualOdometry.process`` over a sequence (see the module docstring)."""

    # -- the run's context
    command: str                          # "process" or "eval"
    input: str                            # the input, resolved
    layout: str
    name: str
    frames_selection: str | None
    frames_total: int
    camera: Camera
    started_utc: datetime
    scale: str                            # relative | metric: the trajectory's unit
    depth_metric: bool                    # the depth model's output is in metres
    models: dict                          # {"depth": model_info, "pose": model_info}
    provider: str | None                  # execution provider of the depth model
    pose_backend: str
    config: VodeConfig
    config_file: str | None = None
    overrides: list = field(default_factory=list)
    # -- every processed frame
    stamps_ns: list[int] = field(default_factory=list)
    camera_poses: list[np.ndarray] = field(default_factory=list)   # Estimate.camera_pose
    image_size: list[int] | None = None   # [width, height] of the input images
    tracking: Counter = field(default_factory=Counter)
    backends: Counter = field(default_factory=Counter)
    lost_reasons: Counter = field(default_factory=Counter)
    lost_examples: dict[str, str] = field(default_factory=dict)
    # -- frames the pipeline refused (InputError), by kind
    skipped: Counter = field(default_factory=Counter)
    skip_examples: dict[str, str] = field(default_factory=dict)
    times: StageTimes = field(default_factory=StageTimes)
    loop_closure: LoopClosureResult | None = None
    scale_status: dict | None = None      # Estimate.scale_status of the last processed frame

    # -- filling it ------------------------------------------------------------------------------
    def add_skip(self, kind: str, message: str) -> int:
        """Count a refused frame; returns how many of this kind so far."""
        self.skipped[kind] += 1
        self.skip_examples.setdefault(kind, message)
        return self.skipped[kind]

    def add_estimate(self, est, image: np.ndarray) -> None:
        """Count one processed frame's estimate (``image``: the input image)."""
        self.image_size = [int(image.shape[1]), int(image.shape[0])]
        self.stamps_ns.append(int(est.stamp_ns))
        self.camera_poses.append(np.asarray(est.camera_pose, float))
        self.tracking[est.tracking] += 1
        self.backends[est.backend or "none (first frame)"] += 1
        self.scale_status = est.scale_status
        if est.tracking == "LOST":
            key = reason_key(est.reason or "unspecified")
            self.lost_reasons[key] += 1
            self.lost_examples.setdefault(key, est.reason)

    # -- reading it ------------------------------------------------------------------------------
    @property
    def poses(self) -> np.ndarray:
        """The camera poses (N, 4, 4): camera optical frame in the odometry frame."""
        return np.asarray(self.camera_poses)

    @property
    def frames_processed(self) -> int:
        return len(self.stamps_ns)

    @property
    def frames_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    @property
    def lost_frames(self) -> int:
        return int(self.tracking.get("LOST", 0))

    @property
    def fps(self) -> float | None:
        """Processed frames per second of the loop (reading and writing included)."""
        w = self.times.wall_s
        return round(self.frames_processed / w, 3) if w > 0 else None

    @property
    def fps_pipeline(self) -> float | None:
        """Processed frames per second spent in ``VisualOdometry.process``."""
        s = sum(self.times.process) / 1e3
        return round(self.frames_processed / s, 3) if s > 0 else None
