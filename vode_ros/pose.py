"""Relative camera motion between two frames.

A pose backend (``PoseBackend``) turns a previous and a current ``FrameData`` into a
``PoseResult``: the pose of the current camera in the previous camera's optical frame.
``NetworkPose`` runs a pose model of the contract; the geometric (``vode_ros.tracker``) and hybrid
(``vode_ros.hybrid``) backends implement the same protocol.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from vode_ros.camera import Camera
from vode_ros.errors import ModelOutputError
from vode_ros.geometry import from_axis_angle_translation
from vode_ros.inference import ModelSpec, OnnxModel, to_tensor


@dataclass
class FrameData:
    """What the pipeline knows of one frame; backends cache their own inputs in ``cache``."""

    stamp_ns: int
    image: np.ndarray            # HxWx3 uint8 RGB, full resolution
    camera: Camera               # intrinsics of ``image``
    depth: np.ndarray | None = None   # depth at the depth model's input size (model units)
    cache: dict = field(default_factory=dict)

    def tensor(self, spec: ModelSpec) -> np.ndarray:
        """The model input for ``spec`` (computed once per frame and input format)."""
        key = (spec.input_height, spec.input_width, spec.mean, spec.std)
        if key not in self.cache:
            self.cache[key] = to_tensor(self.shrunk(spec.input_height, spec.input_width), spec)
        return self.cache[key]

    def shrunk(self, height: int, width: int) -> np.ndarray:
        """The image the ``height`` x ``width`` model input is resampled from: the full image,
        or where it is at least 8 times that size, the full image shrunk by the integer factor
        that keeps it at least 4 times that size (an area average, made once per frame and
        factor). A 1920x1080 frame took 5-6 ms to area-resample to each network's input
        directly, 0.4 ms to halve and 2 ms from the half; images under 8 times the input
        (640x480, KITTI's 1241x376) are resampled directly, as before."""
        H, W = self.image.shape[:2]
        k = max(1, min(H // (4 * height), W // (4 * width)))
        if k == 1:
            return self.image
        key = ("shrunk", k)
        if key not in self.cache:
            import cv2
            self.cache[key] = cv2.resize(self.image, (W // k, H // k),
                                         interpolation=cv2.INTER_AREA)
        return self.cache[key]


@dataclass
class PoseResult:
    T: np.ndarray                 # 4x4, current camera in previous camera frame
    ok: bool = True
    reason: str = ""
    sigma_scale: float = 1.0      # multiplies the per-frame standard deviations
    backend: str = ""
    timings_ms: dict = field(default_factory=dict)


@runtime_checkable
class PoseBackend(Protocol):
    """What the odometry asks of a pose backend (network, geometric, hybrid)."""

    name: str                                  # "network", "geometric", "hybrid"

    @property
    def metric(self) -> bool:
        """Whether the translations it returns are in metres."""

    @property
    def model(self) -> OnnxModel | None:
        """The pose model it runs (or keeps for reporting), None where there is none."""

    def reset(self) -> None:
        """Forget every frame seen (keyframes, map): the next pair starts afresh."""

    def estimate(self, prev: FrameData, cur: FrameData) -> PoseResult:
        """The pose of ``cur``'s camera in ``prev``'s optical frame."""


class NetworkPose:
    """Pose from a pose network (PoseNet of SfMLearner / Monodepth2 kind): a ``PoseBackend``.

    ``depth_spec`` is the depth model's: pose and depth networks are trained together, so the
    translations are metric only where both models say metric."""

    name = "network"

    def __init__(self, model: OnnxModel, depth_spec: ModelSpec):
        self.model = model
        self.spec = model.spec
        self.depth_metric = depth_spec.metric

    @property
    def metric(self) -> bool:
        return self.spec.metric and self.depth_metric

    def reset(self) -> None:
        """Nothing to forget: each estimate depends on its two frames alone."""

    def estimate(self, prev: FrameData, cur: FrameData) -> PoseResult:
        t0 = time.perf_counter()
        pair = np.concatenate([prev.tensor(self.spec), cur.tensor(self.spec)], axis=1)
        t1 = time.perf_counter()
        out = self.model(pair).reshape(-1)[:6].astype(np.float64)
        timings = {"preprocess": (t1 - t0) * 1e3, "model": self.model.last_ms}
        if not np.all(np.isfinite(out)):
            raise ModelOutputError(f"pose model returned non-finite values {out.tolist()}; "
                                   "expected 6 finite numbers (rotation vector, translation)")
        return PoseResult(from_axis_angle_translation(out), backend=self.name,
                          timings_ms=timings)
