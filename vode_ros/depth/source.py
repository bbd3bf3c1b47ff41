"""The depth the odometry publishes, frame by frame, in the odometry's unit.

A ``DepthSource`` takes each frame's network depth and the odometry's camera pose and returns a
``DepthOutput``. Both sources keep depth keyframes (a keyframe when the camera moved
``depth.keyframe_baseline`` of the scene's depth or turned ``depth.keyframe_rotation_deg`` since
the last), sweep each new keyframe against the previous ones (``plane_sweep``) and carry that
multi-view depth to the frames after it (``fusion.reproject``); every frame's network depth is
aligned to it (``alignment``). ``network`` then publishes the aligned network depth, ``fused``
its fusion with the multi-view depth.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from vode_ros.camera import Camera
from vode_ros.config import DepthConfig
from vode_ros.depth.alignment import AFFINE, METRIC, RELATIVE, Alignment, alignment_model
from vode_ros.depth.fusion import (
    DepthImage,
    confidence_from_sigma,
    deviations,
    fuse,
    measure_spread,
    network_sigma,
    propagate,
    reproject,
)
from vode_ros.depth.plane_sweep import SweepParams, SweepView, plane_sweep
from vode_ros.geometry import invert, rotation_angle_deg
from vode_ros.inference import ModelSpec


@dataclass
class DepthOutput:
    """Depth (float32, the odometry's unit, NaN unknown), its confidence (0..1) and the
    intrinsics of both; ``keyframe``: whether multi-view depth was swept at this frame."""

    depth: np.ndarray
    confidence: np.ndarray
    camera: Camera
    keyframe: bool = False
    timings_ms: dict = field(default_factory=dict)


@dataclass
class _DepthKeyframe:
    grey: np.ndarray                      # working resolution, float32
    pose: np.ndarray                      # T_odom_camera
    multiview: DepthImage | None = None   # confident multi-view depth, None before any
    sweep: Future | None = None           # the sweep running beside the frames that follow
    due: int = 0                          # the frame whose update takes its result


class DepthSource(Protocol):
    """What the odometry asks of a depth source (network, fused)."""

    name: str

    def reset(self) -> None:
        """Forget the keyframes and the alignment."""

    def update(self, image: np.ndarray, camera: Camera, pose: np.ndarray,
               network_depth: np.ndarray, tracked: bool = True) -> DepthOutput:
        """The depth of a frame (RGB ``image``, ``camera``, ``pose``: T_odom_camera) from its
        network depth (at the network's input size); an untracked frame (its pose held, not
        measured) makes no keyframe and forgets the previous ones."""


def working_camera(camera: Camera, width: int) -> Camera:
    """``camera`` for its image resized to ``width`` pixels wide (the aspect ratio kept; pixel
    centres mapped onto pixel centres)."""
    width = min(int(width), camera.width)
    height = max(1, round(camera.height * width / camera.width))
    sx, sy = width / camera.width, height / camera.height
    return Camera(camera.fx * sx, camera.fy * sy, (camera.cx + 0.5) * sx - 0.5,
                  (camera.cy + 0.5) * sy - 0.5, width, height)


def _resized(img: np.ndarray, cam: Camera, interpolation: int) -> np.ndarray:
    if img.shape[:2] == (cam.height, cam.width):
        return img
    return cv2.resize(img, (cam.width, cam.height), interpolation=interpolation)


class KeyframeDepth:
    """Depth keyframes, their multi-view depth and the alignment of the network to it: the
    ``network`` depth source (``fused`` adds the fusion)."""

    name = "network"

    def __init__(self, cfg: DepthConfig, spec: ModelSpec, odometry_metric: bool):
        self.cfg = cfg
        # metric network depth needs no alignment only where the odometry is metric too
        model = alignment_model(spec.output, spec.metric and odometry_metric)
        if cfg.alignment != "auto" and model != METRIC:
            model = {"scale": RELATIVE, "affine_inverse": AFFINE}[cfg.alignment]
        self.alignment = Alignment(model, cfg.alignment_gain, cfg.min_alignment_pixels)
        self.sweep = SweepParams(cfg.planes, cfg.window | 1, cfg.min_parallax_px,
                                 cfg.min_texture, cfg.min_uniqueness, cfg.max_cost,
                                 cfg.match_sigma_px, cfg.max_sigma_log)
        self._executor: ThreadPoolExecutor | None = None
        self.keyframes: deque[_DepthKeyframe] = deque()
        self.reset()

    def reset(self) -> None:
        for kf in self.keyframes:
            if kf.sweep is not None:
                kf.sweep.cancel()
        self.keyframes = deque(maxlen=self.cfg.sources + 1)
        self.frame = 0
        self.alignment.reset()
        self.network_sigma = self.cfg.network_sigma_log

    def update(self, image: np.ndarray, camera: Camera, pose: np.ndarray,
               network_depth: np.ndarray, tracked: bool = True) -> DepthOutput:
        t0 = time.perf_counter()
        if not tracked:              # the poses to come do not continue the keyframes'
            self.keyframes.clear()
        cam = working_camera(camera, self.cfg.working_width)
        net = _resized(network_depth, cam, cv2.INTER_LINEAR).astype(np.float32)
        timings: dict[str, float] = {}
        self.frame += 1
        swept = tracked and self._keyframe(image, cam, pose, net, timings)
        self._collect_sweeps(timings)
        mv = self._multiview_at(cam, pose) if tracked else None
        if mv is not None:
            self.alignment.update(net, mv.depth, mv.sigma_log)
        net = self.alignment.apply(net)
        if mv is not None:
            self._update_network_sigma(net, mv.depth)
        aligned = DepthImage(net, np.full(net.shape, self.network_sigma, np.float32))
        out = self._combine(aligned, mv, cam)
        depth, conf = out.depth, confidence_from_sigma(out.sigma_log)
        if self.cfg.resolution == "full":
            depth = _resized(depth, camera, cv2.INTER_LINEAR)
            conf = _resized(conf, camera, cv2.INTER_LINEAR)
            cam = camera
        timings["depth_fusion"] = (time.perf_counter() - t0) * 1e3 - timings.get("sweep_here",
                                                                                0.0)
        timings.pop("sweep_here", None)
        return DepthOutput(depth, conf, cam, swept, timings)

    def _update_network_sigma(self, net: np.ndarray, mv: np.ndarray) -> None:
        """The network's log-depth standard deviation measured against the multi-view depth,
        moved by the alignment's gain."""
        s = network_sigma(net, mv, self.cfg.network_sigma_log)
        if s is not None:
            g = self.cfg.alignment_gain
            self.network_sigma = float(np.exp((1 - g) * np.log(self.network_sigma)
                                              + g * np.log(s)))

    def _combine(self, aligned: DepthImage, mv: DepthImage | None, cam: Camera) -> DepthImage:
        """What this source publishes: the aligned network depth."""
        return aligned

    # -- keyframes -------------------------------------------------------------------------------
    def _keyframe_due(self, pose: np.ndarray, scene_depth: float) -> bool:
        if not self.keyframes:
            return True
        rel = invert(self.keyframes[-1].pose) @ pose
        return (float(np.linalg.norm(rel[:3, 3])) >= self.cfg.keyframe_baseline * scene_depth
                or rotation_angle_deg(rel) >= self.cfg.keyframe_rotation_deg)

    def _keyframe(self, image: np.ndarray, cam: Camera, pose: np.ndarray, net: np.ndarray,
                  timings: dict) -> bool:
        """A new depth keyframe where one is due (its grey image at the working resolution),
        swept against the previous ones where there are enough; returns whether a sweep ran."""
        aligned = self.alignment.apply(net)
        finite = aligned[np.isfinite(aligned) & (aligned > 0)]
        if finite.size == 0:
            return False
        scene = float(np.median(finite))
        if not self._keyframe_due(pose, scene):
            return False
        grey = cv2.cvtColor(_resized(image, cam, cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        grey = grey.astype(np.float32)
        kf = _DepthKeyframe(grey, pose.copy())
        sources = list(self.keyframes)[-self.cfg.sources:]
        self.keyframes.append(kf)
        if len(sources) < self.cfg.min_sources:
            return False
        views = [SweepView(s.grey, cam, invert(s.pose) @ pose) for s in reversed(sources)]
        args = (grey, cam, views, self.cfg.near_fraction * scene, self.cfg.far_factor * scene)
        delay = self.cfg.sweep_delay_frames
        if delay == 0:
            t0 = time.perf_counter()
            kf.multiview, timings["plane_sweep"] = self._sweep(*args)
            timings["sweep_here"] = (time.perf_counter() - t0) * 1e3
        else:
            kf.sweep, kf.due = self._pool().submit(self._sweep, *args), self.frame + delay
        return True

    def _sweep(self, grey: np.ndarray, cam: Camera, views: list[SweepView], near: float,
               far: float) -> tuple[DepthImage, float]:
        """The keyframe's confident multi-view depth and the sweep's time (ms)."""
        t0 = time.perf_counter()
        res = plane_sweep(grey, cam, views, near, far, self.sweep)
        keep = res.confidence >= self.cfg.min_confidence
        mv = DepthImage(np.where(keep, res.depth, np.nan).astype(np.float32),
                        np.where(keep, res.sigma_log, np.nan).astype(np.float32))
        return mv, (time.perf_counter() - t0) * 1e3

    def _pool(self) -> ThreadPoolExecutor:
        """One worker thread for the sweeps (OpenCV and numpy release the GIL while they run)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="vode-plane-sweep")
        return self._executor

    def _collect_sweeps(self, timings: dict) -> None:
        """Sweeps whose frame has come: their result joins their keyframe (waiting for it if
        it is not ready), the same frame however fast the machine, so runs repeat exactly."""
        for kf in self.keyframes:
            if kf.sweep is not None and self.frame >= kf.due:
                t0 = time.perf_counter()
                kf.multiview, timings["plane_sweep"] = kf.sweep.result()
                timings["sweep_wait"] = (time.perf_counter() - t0) * 1e3
                kf.sweep = None

    def _multiview_at(self, cam: Camera, pose: np.ndarray) -> DepthImage | None:
        """The newest keyframe's multi-view depth seen from ``pose`` (None before any)."""
        kf = next((k for k in reversed(self.keyframes) if k.multiview is not None), None)
        if kf is None or kf.multiview is None:
            return None
        if kf is self.keyframes[-1] and np.array_equal(kf.pose, pose):
            return kf.multiview
        return reproject(kf.multiview, cam, invert(pose) @ kf.pose, cam)


class FusedDepth(KeyframeDepth):
    """The ``fused`` depth source: the aligned network depth fused with multi-view depth."""

    name = "fused"

    def reset(self) -> None:
        super().reset()
        self.propagation_sigma = self.cfg.propagation_sigma_log
        self.propagation_shape = self.cfg.propagation_shape
        self.propagation_measures = 0

    def _combine(self, aligned: DepthImage, mv: DepthImage | None, cam: Camera) -> DepthImage:
        if mv is None:
            return aligned
        width = self.cfg.propagation_fraction * cam.width
        if self.cfg.propagation_measured:
            best = measure_spread(mv.depth, aligned.depth, width, self.cfg.propagation_sigma_log)
            if best is not None:         # the first measurement stands alone
                g = self.cfg.alignment_gain if self.propagation_measures else 1.0
                self.propagation_measures += 1
                self.propagation_shape = best[0]
                self.propagation_sigma = float(np.exp((1 - g) * np.log(self.propagation_sigma)
                                                      + g * np.log(best[1])))
        reject = self.cfg.outlier_sigmas
        spread = propagate(mv, width, self.propagation_sigma, aligned.depth,
                           self.propagation_shape, reject)
        if reject > 0:                   # multi-view depth far off its neighbours' spread
            with np.errstate(divide="ignore", invalid="ignore"):
                off = deviations(np.log(mv.depth / spread.depth), mv.sigma_log,
                                 spread.sigma_log) > reject
            mv = DepthImage(np.where(off, np.nan, mv.depth).astype(np.float32),
                            np.where(off, np.nan, mv.sigma_log).astype(np.float32))
        out = fuse(spread, mv)
        none = ~np.isfinite(out.depth)       # no multi-view depth near: the network alone
        out.depth[none] = aligned.depth[none]
        out.sigma_log[none] = aligned.sigma_log[none]
        return out


def make_depth_source(cfg: DepthConfig, spec: ModelSpec, odometry_metric: bool) -> DepthSource:
    """The depth source ``depth.source`` names."""
    cls = FusedDepth if cfg.source == "fused" else KeyframeDepth
    return cls(cfg, spec, odometry_metric)
