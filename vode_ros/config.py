"""The one configuration schema of vode_ros.

Every default lives here, once. The ROS node declares its parameters from these dataclasses
(name ``section.key``, description, range), the ``vode`` command reads YAML into them, and
``config/vode.yaml`` is generated from them (``vode config``; a test keeps the file in sync).
The tracking sections (``pose``, ``flow``, ``scale``) are in ``config_tracking``, the loop
closure's in ``config_loop_closure``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

from vode_ros.config_loop_closure import LoopClosureConfig
from vode_ros.config_tracking import FlowConfig, PoseConfig, ScaleConfig
from vode_ros.config_values import coerce, field_names, split_key
from vode_ros.config_values import param as _p
from vode_ros.errors import ConfigError

NODE_NAME = "vode_node"


@dataclass
class ModelsConfig:
    depth: str = _p("models/depth.onnx",
                    "Depth model (ONNX, vode model contract). A relative path resolves against the "
                    "working directory, then the package share directory, then the source tree.")
    pose: str = _p("models/pose.onnx",
                   "Pose model (ONNX, vode model contract): the network pose backend's estimate, "
                   "and the hybrid backend's initial guess and fallback.")
    providers: list = _p(["TensorrtExecutionProvider", "CUDAExecutionProvider",
                          "CPUExecutionProvider"],
                         "ONNX Runtime execution providers in order of preference; the first that "
                         "loads and runs is used and logged.")
    intra_op_threads: int = _p(0, "ONNX Runtime intra-op threads (0: ONNX Runtime decides).",
                               low=0, high=256)


@dataclass
class CameraConfig:
    base_to_camera_xyz: list = _p([0.0, 0.0, 0.0],
                                  "Static extrinsic: position of camera_optical_frame in base_link "
                                  "(x y z, metres).")
    base_to_camera_rpy: list = _p([-1.5707963267948966, 0.0, -1.5707963267948966],
                                  "Static extrinsic: orientation of camera_optical_frame in base_link "
                                  "(roll pitch yaw, radians, fixed axes XYZ). The default is the "
                                  "REP-103 optical rotation: z forward, x right, y down.")


@dataclass
class OdometryConfig:
    max_translation_per_frame: float = _p(
        5.0, "A network step longer than this (model units) is rejected as a tracking failure.",
        low=0.0, high=1000.0)
    max_rotation_per_frame_deg: float = _p(
        45.0, "A step rotating more than this (degrees) is rejected as a tracking failure.",
        low=0.0, high=180.0)
    max_lost_frames: int = _p(
        30, "After this many consecutive failed frames the reference frame is re-anchored to the "
        "newest frame.", low=1, high=100000)
    min_valid_depth_fraction: float = _p(
        0.5, "A depth map with fewer finite, in-range pixels than this fraction is a failure.",
        low=0.0, high=1.0)
    min_image_std: float = _p(
        2.0, "A frame whose grey-level standard deviation is below this (0-255) carries no "
        "texture to track: tracking fails and the pose holds.", low=0.0, high=255.0)
    translation_sigma_per_frame: float = _p(
        0.01, "Standard deviation of one step's translation (model units) in the covariance.",
        low=0.0, high=100.0)
    rotation_sigma_per_frame_deg: float = _p(
        0.5, "Standard deviation of one step's rotation (degrees) in the covariance.",
        low=0.0, high=180.0)
    lost_covariance_inflation: float = _p(
        100.0, "Factor applied to the step variance of a frame where tracking failed.",
        low=1.0, high=1.0e9)


@dataclass
class DepthConfig:
    source: str = _p(
        "fused", "Depth output: 'fused' (the network's depth aligned to the odometry's unit and "
        "fused with multi-view depth from the odometry's keyframes) or 'network' (the "
        "network's depth alone, aligned to the odometry's unit).", choices=("network", "fused"))
    resolution: str = _p(
        "working", "Resolution of the depth output: 'working' (depth.working_width wide, with "
        "its own camera_info; REP-118 allows it) or 'full' (the camera image's).",
        choices=("working", "full"))
    working_width: int = _p(
        160, "Width of the working resolution (pixels; the height keeps the image's aspect "
        "ratio) at which multi-view depth is swept, fused and, by default, published.",
        low=32, high=4096)
    keyframe_baseline: float = _p(
        0.06, "A depth keyframe when the camera moved this fraction of the scene's median depth "
        "since the last one (about 8 pixels of parallax at the working resolution).",
        low=0.001, high=1.0)
    keyframe_rotation_deg: float = _p(
        10.0, "A depth keyframe when the camera turned this much since the last one.",
        low=0.1, high=180.0)
    sources: int = _p(
        2, "Previous depth keyframes the current keyframe is swept against (the newest ones; "
        "at least depth.min_sources must exist). The sweep's cost grows with sources x planes.",
        low=1, high=8)
    min_sources: int = _p(2, "Multi-view depth needs at least this many source keyframes.",
                          low=1, high=8)
    sweep_delay_frames: int = _p(
        2, "The plane sweep of a depth keyframe runs on its own thread beside the next frames; "
        "its depth is used from this many frames after the keyframe (the same frame on any "
        "machine, so runs repeat exactly; 0: at the keyframe itself, in line).", low=0,
        high=100)
    planes: int = _p(32, "Depth hypotheses of the plane sweep, evenly spaced in inverse depth "
                     "(the best one is refined between its neighbours).", low=4, high=512)
    near_fraction: float = _p(
        0.2, "Nearest plane of the sweep as a fraction of the scene's median depth.",
        low=0.001, high=1.0)
    far_factor: float = _p(
        10.0, "Farthest plane of the sweep as a multiple of the scene's median depth.",
        low=1.0, high=1000.0)
    window: int = _p(7, "Side of the ZNCC matching window (working-resolution pixels, odd).",
                     low=3, high=31)
    min_parallax_px: float = _p(
        2.0, "A pixel that the sweep moves less than this across its depth range (working "
        "pixels) has no parallax: unknown.", low=0.0, high=100.0)
    min_texture: float = _p(
        2.0, "A pixel whose matching window's grey-level standard deviation is below this has no "
        "texture: unknown.", low=0.0, high=255.0)
    min_uniqueness: float = _p(
        0.15, "A match needs its cost (1 - ZNCC) this much below the best cost outside its own "
        "minimum.", low=0.0, high=2.0)
    max_cost: float = _p(0.5, "A best matching cost (1 - ZNCC) above this is no match.",
                         low=0.0, high=2.0)
    match_sigma_px: float = _p(
        0.5, "Standard deviation of a plane-sweep match along its epipolar line (working "
        "pixels): with the pixel's parallax it sets how well the depth is known (weak near the "
        "epipole of forward motion and far away), which weighs the pixel in the alignment and "
        "the fusion.", low=0.01, high=10.0)
    max_sigma_log: float = _p(
        0.5, "Multi-view depth known less well than this (standard deviation of log depth) is "
        "unknown.", low=0.01, high=10.0)
    min_confidence: float = _p(
        0.3, "Multi-view depth with a lower confidence takes no part in alignment or fusion.",
        low=0.0, high=1.0)
    network_sigma_log: float = _p(
        0.15, "Smallest standard deviation of the aligned network depth in log depth (its "
        "relative error) in the fusion; each frame measures the larger one a network shows "
        "against the confident multi-view depth.", low=1e-3, high=10.0)
    propagation_fraction: float = _p(
        0.2, "Multi-view depth spreads to the pixels around it with a Gaussian of this standard "
        "deviation (fraction of the working width).", low=0.0, high=2.0)
    propagation_sigma_log: float = _p(
        0.02, "Standard deviation (log depth) of spread multi-view depth where all pixels "
        "around are known; it grows as 1/sqrt of the known fraction. With "
        "depth.propagation_measured (the default), the least it can be.", low=1e-3, high=10.0)
    propagation_shape: float = _p(
        1.0, "Share of the network's shape that spread multi-view depth follows (0: the depth "
        "spread as it is; 1: the network's depth times the spread ratio of multi-view to "
        "network depth). With depth.propagation_measured, the value before the first "
        "measurement.", low=0.0, high=1.0)
    propagation_measured: bool = _p(
        True, "Measure depth.propagation_sigma_log (moved by depth.alignment_gain) and "
        "depth.propagation_shape (0, 0.25, .., 1: the least wrong) on every frame: the known "
        "multi-view depth of a checkerboard's cells spread to the other cells' and compared. "
        "Spread depth weighs as much as it proves right in this scene and follows the network "
        "as far as the network proves right.")
    outlier_sigmas: float = _p(
        3.0, "Multi-view depth further than this many standard deviations from what the known "
        "pixels around it spread there takes no part in the spread or the fusion (0: all "
        "kept).", low=0.0, high=100.0)
    min_alignment_pixels: int = _p(
        200, "Confident multi-view pixels a frame needs to align the network's depth; with fewer "
        "the previous alignment holds.", low=3, high=1000000)
    alignment: str = _p(
        "auto", "How the network's depth is brought to the multi-view depth: 'auto' (by the "
        "model's output kind: one scale for relative depth, scale and shift in inverse depth "
        "for affine_inverse_depth, nothing for metric), 'scale' or 'affine_inverse' (either "
        "for any non-metric model).", choices=("auto", "scale", "affine_inverse"))
    alignment_gain: float = _p(
        0.3, "Fraction (in log scale) of a frame's own alignment taken into the running "
        "alignment (1: every frame alone; lower: steadier scale).", low=0.01, high=1.0)


@dataclass
class RosConfig:
    odom_frame: str = _p("odom", "Odometry frame (REP-105).", node_only=True)
    base_frame: str = _p("base_link", "Robot body frame (REP-105).", node_only=True)
    camera_frame: str = _p("camera_optical_frame",
                           "Camera optical frame (REP-103) used in the depth output's header.",
                           node_only=True)
    publish_tf: bool = _p(True, "Broadcast TF odom -> base_link.", node_only=True)
    publish_camera_tf: bool = _p(True, "Broadcast the static TF base_link -> camera_optical_frame.",
                                 node_only=True)
    publish_odom: bool = _p(True, "Publish nav_msgs/Odometry on odom.", node_only=True)
    publish_depth: bool = _p(True, "Publish depth/image (32FC1 in the odometry's unit: metres "
                             "when the odometry is metric; NaN unknown), depth/confidence (32FC1, "
                             "0..1) and depth/camera_info, at depth.resolution.",
                             node_only=True)
    publish_points: bool = _p(False, "Publish depth/points (sensor_msgs/PointCloud2: x y z rgb in "
                              "the camera optical frame) from the depth output.", node_only=True)
    points_stride: int = _p(2, "depth/points takes every n-th pixel of the depth output in each "
                            "direction.", low=1, high=64, node_only=True)
    publish_path: bool = _p(True, "Publish nav_msgs/Path on path.", node_only=True)
    path_max_poses: int = _p(2000, "Poses kept in the published path (oldest dropped).",
                             low=1, high=10000000, node_only=True)
    path_period_s: float = _p(0.5, "Period of path publication (seconds); the path is published "
                              "from a timer, off the frame-processing thread.", low=0.01,
                              high=3600.0, node_only=True)
    reliable_qos: bool = _p(False, "Subscribe with reliable QoS instead of SensorDataQoS "
                            "(best effort); when true, both subscriptions request 'reliable' "
                            "whatever ros.image_qos_reliability and "
                            "ros.camera_info_qos_reliability say.", node_only=True)
    image_qos_reliability: str = _p("best_effort", "Reliability the image subscription requests: "
                                    "'best_effort' (SensorDataQoS; matches every camera driver) "
                                    "or 'reliable' (gets nothing from a best-effort publisher).",
                                    choices=("best_effort", "reliable"), node_only=True)
    image_qos_depth: int = _p(5, "History depth (KEEP_LAST) of the image subscription.", low=1,
                              high=1000, node_only=True)
    camera_info_qos_reliability: str = _p("best_effort", "Reliability the camera_info "
                                          "subscription requests: 'best_effort' or 'reliable'.",
                                          choices=("best_effort", "reliable"), node_only=True)
    camera_info_qos_depth: int = _p(5, "History depth (KEEP_LAST) of the camera_info "
                                    "subscription.", low=1, high=1000, node_only=True)
    output_qos_reliability: str = _p("reliable", "Reliability of odom, depth/image, "
                                     "depth/camera_info and path: 'reliable' (every subscriber "
                                     "matches) or 'best_effort'. /tf stays reliable; map_path, "
                                     "loop_closures and /tf_static are always reliable and "
                                     "transient-local (latched, REP-2003).",
                                     choices=("best_effort", "reliable"), node_only=True)
    output_qos_depth: int = _p(0, "History depth (KEEP_LAST) of odom, depth/image, "
                               "depth/camera_info and path; 0 keeps each output's own (odom 10, "
                               "depth 5, path 1).", low=0, high=1000, node_only=True)
    use_compressed: bool = _p(False, "Subscribe image/compressed (sensor_msgs/CompressedImage) "
                              "instead of image.", node_only=True)
    use_cv_bridge: bool = _p(True, "Convert images through cv_bridge when it imports; otherwise "
                             "(or when false) through vode_ros's own conversion.", node_only=True)
    diagnostics_period_s: float = _p(1.0, "Period of /diagnostics messages (seconds).",
                                     low=0.05, high=3600.0, node_only=True)
    no_frames_warn_s: float = _p(3.0, "Warn when an image publisher is matched but no frame "
                                 "arrived for this long (seconds).", low=0.1, high=3600.0,
                                 node_only=True)
    log_throttle_s: float = _p(5.0, "Minimum interval between repeats of one bad-input log line "
                               "(seconds).", low=0.0, high=3600.0, node_only=True)


@dataclass
class VodeConfig:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    odometry: OdometryConfig = field(default_factory=OdometryConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    loop_closure: LoopClosureConfig = field(default_factory=LoopClosureConfig)
    ros: RosConfig = field(default_factory=RosConfig)

    # -- flat view -----------------------------------------------------------------------------
    def parameters(self) -> Iterator[tuple[str, Any, dict]]:
        """Yield (``section.key``, value, metadata) for every parameter."""
        for section in dataclasses.fields(self):
            sub = getattr(self, section.name)
            for f in dataclasses.fields(sub):
                yield f"{section.name}.{f.name}", getattr(sub, f.name), dict(f.metadata)

    def get(self, name: str) -> Any:
        section, key = split_key(name)
        return getattr(getattr(self, section), key)

    def set(self, name: str, value: Any) -> None:
        """Set ``section.key`` to value, coerced to the field's type and range-checked."""
        section, key = split_key(name)
        sub = getattr(self, section, None)
        if sub is None or not dataclasses.is_dataclass(sub) or key not in field_names(sub):
            raise ConfigError(f"unknown configuration key '{name}'; known keys: "
                              f"{', '.join(n for n, _, _ in self.parameters())}")
        current = getattr(sub, key)
        meta = next(f.metadata for f in dataclasses.fields(sub) if f.name == key)
        setattr(sub, key, coerce(name, value, current, meta))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
