"""VisualOdometry: the one pipeline that the node and the offline tools both call.

``process(frame)`` runs depth and pose, accumulates the relative motion, and returns an
``Estimate``: odom -> base_link pose with covariance, twist, depth at the image resolution,
tracking state and per-stage timings. A frame that cannot be used raises ``InputError`` and
leaves the state untouched; a frame where tracking fails holds the pose and inflates covariance.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from vode_ros.camera import Camera, Frame
from vode_ros.config import VodeConfig
from vode_ros.depth import DepthEstimator
from vode_ros.depth.source import make_depth_source
from vode_ros.errors import InputError, ModelOutputError
from vode_ros.geometry import adjoint, from_xyz_rpy, invert, is_finite_transform, rotation_angle_deg
from vode_ros.pose import FrameData, PoseBackend, PoseResult
from vode_ros.scale import metric_scale_for, scale_status_of

INITIALIZING, TRACKING, LOST = "INITIALIZING", "TRACKING", "LOST"


@dataclass
class Estimate:
    stamp_ns: int
    pose: np.ndarray                  # 4x4 odom -> base_link
    camera_pose: np.ndarray           # 4x4 odom -> camera optical frame
    twist: np.ndarray                 # (vx vy vz wx wy wz) of base_link in base_link
    pose_covariance: np.ndarray       # 6x6 (x y z rx ry rz) in odom
    twist_covariance: np.ndarray      # 6x6 in base_link
    depth: np.ndarray | None          # float32, the odometry's unit, NaN unknown (depth.resolution)
    camera: Camera                    # intrinsics of the frame's image
    tracking: str                     # INITIALIZING, TRACKING or LOST
    reason: str = ""                  # why tracking failed, or why a fallback ran
    backend: str = ""                 # pose backend that produced this step
    scale: str = "relative"           # relative or metric
    timings_ms: dict = field(default_factory=dict)
    # metres per pose-backend unit applied to this step's translation (1.0: none applied; the
    # backend's unit is the trajectory's), and where the scale comes from (ScaleStatus.to_dict)
    scale_m_per_unit: float = 1.0
    scale_status: dict | None = None
    confidence: np.ndarray | None = None   # 0..1 beside ``depth``
    depth_camera: Camera | None = None     # intrinsics of ``depth`` and ``confidence``
    depth_keyframe: bool = False           # multi-view depth was swept at this frame


class VisualOdometry:
    """Monocular VO: depth estimator + pose backend + pose accumulation."""

    def __init__(self, config: VodeConfig, depth: DepthEstimator, pose_backend: PoseBackend):
        self.cfg = config.odometry
        self.depth = depth
        self.pose_backend = pose_backend
        self.base_to_camera = from_xyz_rpy(config.camera.base_to_camera_xyz,
                                           config.camera.base_to_camera_rpy)
        self.camera_to_base = invert(self.base_to_camera)
        # the trajectory's units, as the backend says: the network's where both networks say
        # metric (they are trained together); geometry's where it takes its scale from a metric
        # depth model, a known camera height or a fixed factor
        # a scale measured beside the backend (wheel odometry) multiplies each step instead
        self.metric_scale = metric_scale_for(config)
        self.scale = "metric" if pose_backend.metric or self.metric_scale is not None \
            else "relative"
        self.depth_source = make_depth_source(config.depth, depth.spec, self.scale == "metric")
        step_var = np.r_[np.full(3, self.cfg.translation_sigma_per_frame ** 2),
                         np.full(3, np.radians(self.cfg.rotation_sigma_per_frame_deg) ** 2)]
        self.step_covariance = np.diag(step_var)
        self.reset()

    def reset(self) -> None:
        """Restart odometry at identity; the next frame becomes the reference."""
        self.pose = np.eye(4)
        self.pose_covariance = np.zeros((6, 6))
        self.reference: FrameData | None = None
        self.last_stamp_ns: int | None = None
        self.lost_frames = 0
        self.tracking = INITIALIZING
        self.frames = 0
        self.pose_backend.reset()           # backends with their own state (keyframes, map)
        self.depth_source.reset()
        if self.metric_scale is not None:
            self.metric_scale.reset()

    def add_wheel_odometry(self, stamp_ns: int, xyz) -> bool:
        """One wheel odometry position (metres) for ``pose.scale_source: wheel_odom`` (only the
        distance travelled is used); False where it is not used or not after the last."""
        return self.metric_scale is not None and self.metric_scale.add_wheel(stamp_ns, xyz)

    # -- the pipeline ----------------------------------------------------------------------------
    def process(self, frame: Frame) -> Estimate:
        frame.validate()
        if self.last_stamp_ns is not None and frame.stamp_ns <= self.last_stamp_ns:
            raise InputError("stamp", f"frame stamp {frame.stamp_ns} ns is not after the previous "
                             f"frame's {self.last_stamp_ns} ns; frames must arrive in time order "
                             "(call ~/reset when a bag restarts)")
        timings = {}
        t0 = time.perf_counter()
        cur = FrameData(frame.stamp_ns, frame.image, frame.camera)
        tensor = cur.tensor(self.depth.spec)
        t1 = time.perf_counter()
        depth_net = self.depth.predict(tensor)          # ModelOutputError skips the frame
        cur.depth = depth_net
        t2 = time.perf_counter()
        timings["preprocess"] = (t1 - t0) * 1e3
        timings["depth"] = (t2 - t1) * 1e3
        timings["depth_model"] = self.depth.model.last_ms

        step = None                      # None: first frame, the pose stays where it is
        reason, backend, sigma = "", "", 1.0
        dt = 0.0
        ok = True
        resized = _size_change(self.reference, cur)
        if resized:                      # tracking restarts at the new size, the pose held
            self.reference, reason = None, resized
        if self.reference is not None:
            dt = (frame.stamp_ns - self.reference.stamp_ns) * 1e-9
            result = self._estimate_step(self.reference, cur, frame)
            timings["pose"] = (time.perf_counter() - t2) * 1e3
            timings["pose_model"] = result.timings_ms.get("model", 0.0)
            if "total" in result.timings_ms:        # the geometric part (geometric, hybrid)
                timings["pose_geometry"] = result.timings_ms["total"]
            if "bundle_adjustment" in result.timings_ms:     # inside pose_geometry
                timings["pose_bundle_adjustment"] = result.timings_ms["bundle_adjustment"]
            if "frame_refinement" in result.timings_ms:      # inside pose_geometry
                timings["pose_frame_refinement"] = result.timings_ms["frame_refinement"]
            for part in ("rematch", "wide_baseline"):         # inside pose_geometry
                if part in result.timings_ms:
                    timings[f"pose_{part}"] = result.timings_ms[part]
            backend, reason, ok = result.backend, result.reason, result.ok
            if ok:
                step, sigma = result.T, result.sigma_scale
        t3 = time.perf_counter()

        q = self.step_covariance * sigma ** 2
        m_per_unit = 1.0
        if ok:
            if step is not None:
                step, m_per_unit = self._metric_step(step, frame.stamp_ns)
                if self.metric_scale is not None:       # the translation sigmas in metres too
                    q = _scale_translation(q, m_per_unit)
                base_step = self.base_to_camera @ step @ self.camera_to_base
                self.pose = self.pose @ base_step
                self.pose_covariance = self.pose_covariance + _propagate(self.pose, q)
                twist = _twist(base_step, dt)
            else:
                twist = np.zeros(6)
            self.reference = cur
            self.lost_frames = 0
            self.tracking = INITIALIZING if resized else TRACKING
            twist_cov = q / max(dt, 1e-3) ** 2
        else:
            inflated = q * self.cfg.lost_covariance_inflation
            self.pose_covariance = self.pose_covariance + _propagate(self.pose, inflated)
            self.lost_frames += 1
            self.tracking = LOST
            if self.lost_frames >= self.cfg.max_lost_frames:
                self.reference = cur     # motion during the gap is lost; start again from here
                self.lost_frames = 0
            twist = np.zeros(6)
            twist_cov = inflated / max(dt, 1e-3) ** 2
        self.last_stamp_ns = frame.stamp_ns
        self.frames += 1
        timings["odometry"] = (time.perf_counter() - t3) * 1e3
        # depth in the odometry's unit, from this frame's network depth and camera pose
        t4 = time.perf_counter()
        out = self.depth_source.update(frame.image, frame.camera, self.pose @ self.base_to_camera,
                                       depth_net, tracked=ok)
        timings["depth"] += (time.perf_counter() - t4) * 1e3   # the depth stage: all of it
        timings.update(out.timings_ms)
        return Estimate(
            stamp_ns=frame.stamp_ns, pose=self.pose.copy(),
            camera_pose=self.pose @ self.base_to_camera, twist=twist,
            pose_covariance=self.pose_covariance.copy(), twist_covariance=twist_cov,
            depth=out.depth, camera=frame.camera, tracking=self.tracking, reason=reason,
            backend=backend, scale=self.scale, timings_ms=timings, confidence=out.confidence,
            depth_camera=out.camera, depth_keyframe=out.keyframe, scale_m_per_unit=m_per_unit,
            scale_status=scale_status_of(self.metric_scale, self.pose_backend))

    def _metric_step(self, step: np.ndarray, stamp_ns: int) -> tuple[np.ndarray, float]:
        """The step with its translation in metres where a scale is measured beside the backend
        (``scale.*``), and the factor applied."""
        if self.metric_scale is None:
            return step, 1.0
        f = self.metric_scale.factor_for(self.reference.stamp_ns, stamp_ns, step)
        out = step.copy()
        out[:3, 3] *= f
        return out, f

    def _estimate_step(self, ref: FrameData, cur: FrameData, frame: Frame) -> PoseResult:
        """Run the pose backend and check the step; a failure comes back with ok=False."""
        grey_std = float(frame.image[::4, ::4].std())   # a sparse sample is plenty
        if grey_std < self.cfg.min_image_std:
            return PoseResult(np.eye(4), ok=False, backend="none",
                              reason=f"frame has no texture (intensity std {grey_std:.2f} < "
                                     f"{self.cfg.min_image_std}): dark, blank or covered camera")
        try:
            result = self.pose_backend.estimate(ref, cur)
        except ModelOutputError as exc:
            return PoseResult(np.eye(4), ok=False, backend=self.pose_backend.name,
                              reason=str(exc))
        if not result.ok:
            return result
        T = result.T
        if not is_finite_transform(T):
            return PoseResult(np.eye(4), ok=False, backend=result.backend,
                              reason="pose estimate is not a finite rigid transform")
        # after lost frames the step spans them all: the limits are per frame
        spanned = 1 + self.lost_frames
        trans = float(np.linalg.norm(T[:3, 3]))
        if trans > self.cfg.max_translation_per_frame * spanned:
            return PoseResult(np.eye(4), ok=False, backend=result.backend,
                              reason=f"step translation {trans:.3f} exceeds "
                                     f"odometry.max_translation_per_frame "
                                     f"{self.cfg.max_translation_per_frame} x {spanned} frame(s)")
        angle = rotation_angle_deg(T)
        if angle > self.cfg.max_rotation_per_frame_deg * spanned:
            return PoseResult(np.eye(4), ok=False, backend=result.backend,
                              reason=f"step rotation {angle:.1f} deg exceeds "
                                     f"odometry.max_rotation_per_frame_deg "
                                     f"{self.cfg.max_rotation_per_frame_deg} x {spanned} frame(s)")
        return result


def _size_change(ref: FrameData | None, cur: FrameData) -> str:
    """Why tracking restarts at ``cur`` (its image size is not the reference's), or ''."""
    if ref is None or ref.image.shape[:2] == cur.image.shape[:2]:
        return ""
    (h0, w0), (h1, w1) = ref.image.shape[:2], cur.image.shape[:2]
    return (f"image size changed from {w0}x{h0} to {w1}x{h1}: tracking restarts at the new "
            f"size (intrinsics fx={cur.camera.fx:.1f} fy={cur.camera.fy:.1f}), the pose held")


def _propagate(pose: np.ndarray, step_cov: np.ndarray) -> np.ndarray:
    """Covariance added to the odom-frame pose by a step whose noise is ``step_cov`` in the body
    frame (first-order, left perturbation)."""
    A = adjoint(pose)
    return A @ step_cov @ A.T


def _scale_translation(cov: np.ndarray, f: float) -> np.ndarray:
    """A 6x6 (x y z rx ry rz) covariance with its translation scaled by ``f``."""
    d = np.r_[np.full(3, f), np.ones(3)]
    return cov * np.outer(d, d)


def _twist(step: np.ndarray, dt: float) -> np.ndarray:
    if dt <= 0:
        return np.zeros(6)
    from scipy.spatial.transform import Rotation

    return np.r_[step[:3, 3] / dt, Rotation.from_matrix(step[:3, :3]).as_rotvec() / dt]
