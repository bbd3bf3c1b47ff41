"""The one configuration schema of vode_ros.

Every default lives here, once. The ROS node declares its parameters from these dataclasses
(name ``section.key``, description, range), the ``vode`` command reads YAML into them, and
``config/vode.yaml`` is generated from them (``vode config``; a test keeps the file in sync).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

from vode_ros.config_values import coerce, field_names, split_key
from vode_ros.errors import ConfigError

NODE_NAME = "vode_node"


def _p(default, description: str, *, low=None, high=None, choices=None, node_only=False):
    """A parameter: its default and what the node declares about it."""
    meta = {"description": description, "low": low, "high": high, "choices": choices,
            "node_only": node_only}
    if isinstance(default, list):
        frozen = tuple(default)
        return field(default_factory=lambda: list(frozen), metadata=meta)
    return field(default=default, metadata=meta)


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
class PoseConfig:
    backend: str = _p(
        "hybrid", "Pose backend: 'network' (the pose model), 'geometric' (tracked features, "
        "essential matrix and PnP, scale from the map or the learned depth) or 'hybrid' "
        "(geometric, with the pose network as initial guess and as fallback where geometry is "
        "degenerate).", choices=("network", "geometric", "hybrid"))
    scale_source: str = _p(
        "triangulation", "Scale of geometric translation: 'depth' (triangulated depth aligned "
        "to the learned depth at each keyframe; metric with a metric depth model), "
        "'triangulation' (propagated through points shared by consecutive keyframes; relative), "
        "'ground' (pose.camera_height_m over a fitted ground plane; metric) or 'auto' ('depth' "
        "when the depth model's metadata says it was trained, else 'triangulation'). Keep "
        "'triangulation' with a relative depth model; choose 'depth' with a depth model trained "
        "for the scenes it sees (its scale then sets the trajectory's), 'ground' for a camera at "
        "a known height over textured ground, 'wheel_odom' (the distance travelled by the wheel "
        "odometry, topic wheel_odom or `vode process --wheel-odom`, against the odometry's; "
        "metric; the tracker scales as 'triangulation').",
        choices=("auto", "depth", "triangulation", "ground", "wheel_odom"))
    camera_height_m: float = _p(
        0.0, "Camera height above the ground (metres) for pose.scale_source 'ground'.",
        low=0.0, high=100.0)
    fixed_scale: float = _p(
        0.0, "When > 0, geometric translations are multiplied by this factor (metres per map "
        "unit) and declared metric; 0 leaves them in map units.", low=0.0, high=1.0e6)
    network_guess: str = _p(
        "auto", "Hybrid: run the pose network on every frame and use its rotation to predict "
        "feature motion ('on'), only as fallback ('off'), or 'on' when the pose model's metadata "
        "says it was trained ('auto').", choices=("auto", "on", "off"))
    min_grey_std: float = _p(
        3.0, "Geometry gives up on a working image whose grey-level standard deviation is below "
        "this (textureless or dark frame).", low=0.0, high=255.0)
    static_parallax_px: float = _p(
        0.3, "Median feature displacement from the keyframe (working-image pixels) below which "
        "the camera is taken as static (identity motion).", low=0.0, high=100.0)
    parallax_quantile: float = _p(
        0.75, "Quantile of the features' rotation-compensated parallax that measures a frame's "
        "parallax (a high quantile: the near features show translation first).",
        low=0.0, high=1.0)
    essential_parallax_px: float = _p(
        3.0, "Rotation-compensated parallax (working-image pixels) from the keyframe above which "
        "the pose comes from the essential matrix (below: PnP on the map).", low=0.1,
        high=1000.0)
    keyframe_parallax_px: float = _p(
        8.0, "Rotation-compensated parallax (working-image pixels) from the keyframe above which "
        "the frame becomes a keyframe (its tracks are triangulated into the map).",
        low=0.1, high=1000.0)
    init_parallax_px: float = _p(
        3.0, "Parallax (as pose.keyframe_parallax_px) at which the first two-view estimate "
        "starts a map (and a new one after a restart).", low=0.1, high=1000.0)
    window_keyframes: int = _p(
        6, "Keyframes whose observations of a track are triangulated together (a sliding "
        "window, newest keyframe included).", low=2, high=50)
    redetect_fraction: float = _p(
        0.5, "A keyframe is also made (features topped up) when fewer than this fraction of "
        "flow.max_features tracks survive (before the map has started, a keyframe that began "
        "with fewer than that counts its own tracks).", low=0.0, high=1.0)
    min_tracks: int = _p(
        30, "Fewer tracked features than this is a geometric failure (hybrid falls back to "
        "the pose network).", low=5, high=100000)
    min_pnp_points: int = _p(
        20, "Map points (with inliers) needed to take the pose from PnP.", low=6, high=100000)
    pnp_threshold_px: float = _p(
        2.0, "PnP RANSAC reprojection threshold (working-image pixels).", low=0.1, high=100.0)
    ransac_threshold_px: float = _p(
        1.0, "Essential-matrix robust estimator threshold (working-image pixels).",
        low=0.05, high=100.0)
    essential_method: str = _p(
        "accurate", "Essential-matrix robust estimator: 'accurate' (OpenCV USAC_ACCURATE: USAC "
        "with graph-cut local optimisation; cheaper than MAGSAC++), 'magsac' (USAC_MAGSAC, "
        "MAGSAC++) or 'ransac' (classic RANSAC, five-point solver).",
        choices=("accurate", "magsac", "ransac"))
    min_inliers: int = _p(
        30, "Essential-matrix inliers needed for a two-view estimate.", low=8, high=100000)
    min_inlier_ratio: float = _p(
        0.5, "Fraction of correspondences that must be essential-matrix inliers.",
        low=0.0, high=1.0)
    min_triangulation_angle_deg: float = _p(
        0.3, "Triangulated points with a smaller parallax angle (degrees) are not mapped.",
        low=0.0, high=90.0)
    min_shared_points: int = _p(
        15, "Map points shared with a two-view triangulation needed to carry the map's scale to "
        "it (fewer: the new points keep the previous median scene depth).", low=3, high=100000)
    covariance_reference_inliers: int = _p(
        100, "Inlier count at which a geometric step has the per-frame standard deviations of "
        "odometry.*_sigma_per_frame (they scale with 1/sqrt(inliers) and the outlier "
        "fraction).", low=1, high=100000)
    fallback_sigma_scale: float = _p(
        10.0, "Standard-deviation factor of a step from the network fallback (and the largest "
        "for a geometric step).", low=1.0, high=1.0e6)
    relocalisation_keyframes: int = _p(
        8, "Recent keyframes whose map points are kept with ORB descriptors for wide-baseline "
        "matching: a frame Lucas-Kanade cannot follow, or the frames after tracking was lost, "
        "are matched to them (ratio test, then PnP in RANSAC on their map points, else the "
        "rotation alone) and placed in the map again; 0 turns it off.", low=0, high=1000)
    relocalisation_frames: int = _p(
        30, "After a loss, frames during which relocalisation against the kept keyframes is "
        "tried before the new map is kept.", low=0, high=100000)
    recover_survivor_fraction: float = _p(
        0.0, "Wide-baseline matching is also tried when fewer than this fraction of the tracked "
        "features survive Lucas-Kanade from one frame to the next (0: only when fewer than "
        "pose.min_tracks survive; where enough survive, their geometry is the better answer).",
        low=0.0, high=1.0)
    rematch_survivor_fraction: float = _p(
        0.2, "Where fewer than this fraction of the tracked features survive Lucas-Kanade from "
        "one frame to the next (a turn faster than the prediction), ORB matches between the "
        "two frames (verified by their fundamental matrix) predict where each feature went, "
        "Lucas-Kanade starts again from there and its tracks off the matches' epipolar lines "
        "are dropped (0 turns it off).", low=0.0, high=1.0)
    orb_features: int = _p(
        1000, "ORB corners described in a frame to recover.", low=50, high=100000)
    orb_ratio: float = _p(
        0.8, "Lowe's ratio test for ORB matches (best Hamming distance over the second best).",
        low=0.1, high=1.0)
    min_inliers_moving: int = _p(
        15, "Inliers an essential matrix needs where the camera moved (parallax) but neither "
        "it with pose.min_inliers nor PnP on the map held, before the rotation-only pose, "
        "which holds the position, answers; 0 (or pose.min_inliers or more) turns this "
        "second try off.", low=0, high=100000)
    rotation_check_deg: float = _p(
        1.0, "An essential matrix whose rotation differs from constant velocity's prediction "
        "by more than this many degrees and four times the prediction's recent median error "
        "gives way to PnP on the map where PnP's rotation agrees with the prediction at least "
        "twice as well (a wrong decomposition on a road) and PnP's inlier share is within two "
        "standard errors of the essential matrix's; 0 turns the check off.",
        low=0.0, high=180.0)
    frame_refinement_evaluations: int = _p(
        20, "The pose answered for a frame between keyframes refined on its map points' "
        "reprojection (with pose.frame_refinement_epipolar_weight above 0, and its tracks' "
        "epipolar distance from the keyframe together): at most this many Levenberg-Marquardt "
        "iterations (cost evaluations with the epipolar term); the tracker's own state keeps "
        "the unrefined pose. It halves the per-frame jitter of a slow hand-held camera (see "
        "docs/results.md); 0 turns it off.", low=0, high=1000)
    frame_refinement_epipolar_weight: float = _p(
        0.0, "Weight of the epipolar (Sampson) distances against the map points' reprojection "
        "errors in the frame refinement; 0 (the default) refines on the map points alone with "
        "OpenCV's solvePnPRefineLM, ten times faster than the joint robust fit.",
        low=0.0, high=1000.0)
    bundle_adjustment_iterations: int = _p(
        0, "Local bundle adjustment after each keyframe: Levenberg-Marquardt iterations over "
        "the keyframe window's poses and map points (Huber kernel at pose.pnp_threshold_px, "
        "outliers dropped, the oldest keyframe and the map's scale held; 6 is plenty); 0 turns "
        "it off (the default: on KITTI it moved the trajectory away from the ground truth, see "
        "docs/results.md).", low=0, high=1000)
    bundle_adjustment_moves_newest: bool = _p(
        False, "Whether the local bundle adjustment also moves the newest keyframe (the frame "
        "being answered); off, it refines the older keyframes and the map the next frames are "
        "tracked against, and the newest keyframe with the oldest hold the scale.")
    bundle_adjustment_forward_cos: float = _p(
        0.9, "The local bundle adjustment leaves a window alone whose displacement (oldest to "
        "newest keyframe) lies within the angle of this cosine of the newest camera's optical "
        "axis (a vehicle driving ahead: on KITTI the adjustment let the map's depth drift and "
        "each step came out 0.3 % shorter than the last); 1 adjusts every window.",
        low=0.0, high=1.0)
    bundle_adjustment_max_ms: float = _p(
        15.0, "Time budget of one local bundle adjustment (milliseconds): it stops there with "
        "the best solution so far.", low=0.1, high=10000.0)


@dataclass
class ScaleConfig:
    wheel_segment_s: float = _p(
        0.5, "pose.scale_source 'wheel_odom': the odometry's path is compared with the wheels' "
        "travelled distance in segments of this duration (seconds; frame-to-frame jitter "
        "cancels within a segment).", low=0.0, high=3600.0)
    wheel_window_segments: int = _p(
        4, "pose.scale_source 'wheel_odom': the scale is the ratio of travelled distances over "
        "this many recent segments and the one under way.", low=1, high=100000)
    wheel_max_deviation: float = _p(
        1.5, "pose.scale_source 'wheel_odom': a segment whose own ratio differs from the "
        "window's median by more than this factor (a stalled or slipping wheel) is left out.",
        low=1.01, high=100.0)
    ground_window: int = _p(
        7, "pose.scale_source 'ground': the scale follows the median of this many recent "
        "reliable ground-plane measurements (one per keyframe).", low=1, high=1000)
    ground_min_confidence: float = _p(
        0.3, "pose.scale_source 'ground': a ground-plane measurement less confident than this "
        "(0-1) is not used; the scale holds.", low=0.0, high=1.0)


@dataclass
class FlowConfig:
    method: str = _p(
        "lk", "Correspondences: 'lk' (sparse pyramidal Lucas-Kanade on corners) or "
        "'dis' (dense DIS optical flow moving the features; slower).", choices=("lk", "dis"))
    max_pixels: int = _p(
        200000, "Geometry works on a grey image reduced (never enlarged) to about this many "
        "pixels, the intrinsics scaled to match (KITTI 1241x376 -> 812x246, 640x480 -> "
        "516x387).", low=1024, high=100000000)
    max_features: int = _p(
        300, "Features tracked from a keyframe (topped up at each keyframe).",
        low=10, high=100000)
    detector: str = _p(
        "fast", "Feature detector: 'fast' (FAST corners, cheap) or 'shi-tomasi' "
        "(goodFeaturesToTrack).", choices=("fast", "shi-tomasi"))
    min_distance_px: float = _p(
        8.0, "Minimum distance between features (working-image pixels).", low=1.0, high=1000.0)
    grid_cols: int = _p(8, "Columns of the grid features and correspondences are spread over.",
                        low=1, high=1000)
    grid_rows: int = _p(6, "Rows of the grid features and correspondences are spread over.",
                        low=1, high=1000)
    lk_window: int = _p(11, "Lucas-Kanade window (pixels).", low=5, high=101)
    lk_levels: int = _p(3, "Lucas-Kanade pyramid levels above the base image (the fewest).",
                        low=0, high=8)
    lk_max_levels: int = _p(
        5, "Most Lucas-Kanade pyramid levels: more than flow.lk_levels are used where the "
        "predicted image motion needs them (each level doubles the reach).", low=0, high=8)
    motion_prior: bool = _p(
        True, "Start LK from each feature's position predicted by its last image motion "
        "(constant velocity) instead of its last position.")
    fb_threshold_px: float = _p(
        1.0, "Forward-backward consistency threshold (pixels): a feature tracked there and "
        "back must land this close to where it started.", low=0.01, high=100.0)
    keep_fraction: float = _p(
        0.9, "Best-scoring (forward-backward) fraction of the tracks used for geometry.",
        low=0.05, high=1.0)
    max_correspondences: int = _p(
        200, "At most this many correspondences (spread over the image) go into the essential "
        "matrix and PnP.", low=8, high=100000)


@dataclass
class LoopClosureConfig:
    enabled: bool = _p(
        False, "Run the loop-closure back-end (own thread): keyframes, place recognition, "
        "verification, Sim(3) pose graph; publishes map -> odom and a corrected path, and "
        "`vode process` writes trajectory_map.txt.")
    vocabulary: str = _p(
        "models/orb_vocabulary.npz", "ORB bag-of-words vocabulary (npz of binary words and IDF "
        "weights; train one with `python -m vode_ros.loop_closure.vocabulary`). Resolved like "
        "the models.")
    map_file: str = _p(
        "~/.ros/vode_keyframe_map.npz", "Keyframe map file written by the ~/save_map service "
        "and read by ~/load_map (and at start-up with loop_closure.load_map_on_start).")
    load_map_on_start: bool = _p(
        False, "Load loop_closure.map_file at start-up and relocalise in it (map -> odom is "
        "identity until the first verified loop to the map).", node_only=True)
    map_frame: str = _p("map", "Map frame (REP-105) of map -> odom and the corrected path.",
                        node_only=True)
    publish_tf: bool = _p(True, "Broadcast TF map -> odom (when loop closure is enabled).",
                          node_only=True)
    keyframe_min_interval_s: float = _p(
        0.1, "No keyframe sooner than this after the previous one (seconds).",
        low=0.0, high=3600.0)
    keyframe_max_interval_s: float = _p(
        0.5, "A keyframe at least this often while tracking (seconds).", low=0.01, high=3600.0)
    keyframe_rotation_deg: float = _p(
        5.0, "A keyframe when the camera turned this much since the previous one (degrees).",
        low=0.1, high=180.0)
    keyframe_baseline_ratio: float = _p(
        0.05, "A keyframe when the camera moved this fraction of the scene depth since the "
        "previous one.", low=0.001, high=100.0)
    queue_size: int = _p(
        8, "Keyframes waiting for the back-end; a full queue drops the keyframe (counted), the "
        "odometry never waits.", low=1, high=10000)
    thread_priority: str = _p(
        "idle", "Scheduling of the back-end thread (Linux): 'idle' (SCHED_IDLE: it runs only on "
        "CPU time nothing else wants, so the odometry never waits for it), 'low' (niceness 10) "
        "or 'normal'.", choices=("idle", "low", "normal"))
    orb_features: int = _p(1000, "ORB features per keyframe.", low=50, high=100000)
    max_pixels: int = _p(
        307200, "Features are extracted on a grey image reduced to at most this many pixels.",
        low=1024, high=100000000)
    depth_source: str = _p(
        "auto", "Depth of a keyframe's keypoints for verification: 'predicted' (the depth "
        "model, assumed in the odometry's units), 'triangulated' (from neighbouring keyframes "
        "and the odometry between them: the odometry's units by construction) or 'auto' "
        "('predicted' for a metric estimate, else 'triangulated').",
        choices=("auto", "predicted", "triangulated"))
    triangulation_neighbours: int = _p(
        2, "Previous keyframes a keyframe is triangulated against (depth_source triangulated).",
        low=1, high=20)
    min_parallax_deg: float = _p(
        1.0, "Triangulated points with a smaller parallax angle are not used (degrees).",
        low=0.0, high=90.0)
    min_gap_keyframes: int = _p(
        20, "Loop candidates are at least this many keyframes older than the query (within one "
        "odometry run; a loaded map's keyframes are always candidates).", low=1, high=1000000)
    min_revisit_ratio: float = _p(
        2.0, "A candidate of the same odometry run is a revisit only when the odometry path "
        "travelled since it is at least this many times the distance between the two (moving "
        "on while seeing the same place is no loop).", low=0.0, high=1000.0)
    min_score: float = _p(
        0.05, "Smallest bag-of-words L1 score (0-1) of a loop candidate.", low=0.0, high=1.0)
    min_score_ratio: float = _p(
        0.5, "A candidate must also score at least this fraction of the query's score with its "
        "previous keyframe.", low=0.0, high=10.0)
    max_candidates: int = _p(3, "Best candidates kept per query (one per neighbourhood).",
                             low=1, high=100)
    consistency: int = _p(
        2, "Consecutive keyframes whose candidates must agree (lie within "
        "loop_closure.consistency_window keyframes) before a candidate is verified.",
        low=1, high=100)
    consistency_window: int = _p(
        3, "Keyframe-index neighbourhood for candidate grouping and consistency.",
        low=0, high=1000)
    max_verifications: int = _p(2, "Consistent candidates verified per query, best first.",
                                low=1, high=100)
    min_inliers: int = _p(30, "PnP inliers needed to verify a loop.", low=6, high=100000)
    min_inlier_ratio: float = _p(
        0.3, "Fraction of 3-D/2-D matches that must be PnP inliers.", low=0.0, high=1.0)
    pnp_threshold_px: float = _p(
        3.0, "PnP RANSAC and triangulation reprojection threshold (feature-image pixels).",
        low=0.1, high=100.0)
    max_rotation_deg: float = _p(
        60.0, "A verified loop's cameras differ by at most this rotation (degrees).",
        low=0.0, high=180.0)
    max_baseline_ratio: float = _p(
        1.0, "A verified loop's cameras are at most this fraction of the scene depth apart.",
        low=0.0, high=1000.0)
    max_translation_drift: float = _p(
        0.3, "A loop may move a keyframe against the odometry by at most this fraction of the "
        "path travelled between the two keyframes (plus half the scene depth).",
        low=0.0, high=100.0)
    max_rotation_drift_deg: float = _p(
        30.0, "A loop may turn a keyframe against the odometry by at most this (degrees).",
        low=0.0, high=180.0)
    odometry_rotation_sigma_deg: float = _p(
        1.0, "Rotation standard deviation of an odometry edge between keyframes (degrees).",
        low=1e-6, high=180.0)
    odometry_translation_sigma: float = _p(
        0.05, "Translation standard deviation of an odometry edge as a fraction of its length.",
        low=1e-6, high=100.0)
    odometry_scale_sigma: float = _p(
        0.02, "Log-scale standard deviation of an odometry edge (scale drift per keyframe).",
        low=1e-6, high=10.0)
    lost_sigma_inflation: float = _p(
        100.0, "Factor on an odometry edge's deviations when tracking was lost in between.",
        low=1.0, high=1e9)
    loop_rotation_sigma_deg: float = _p(
        0.5, "Rotation standard deviation of a loop edge (degrees).", low=1e-6, high=180.0)
    loop_translation_sigma: float = _p(
        0.005, "Translation standard deviation of a loop edge as a fraction of the scene depth "
        "(PnP noise), to which loop_closure.loop_scale_sigma x the loop's baseline is added "
        "(the depth's scale error moves the PnP translation along itself).",
        low=1e-6, high=100.0)
    loop_scale_sigma: float = _p(
        0.1, "Log-scale standard deviation of a loop edge (the uncertainty of the relative "
        "scale of two keyframes' depths; raise it when keyframe depths are noisy).",
        low=1e-6, high=10.0)
    robust_kernel: str = _p(
        "huber", "Robust kernel of loop edges: 'huber' (converges from a drifted start), "
        "'cauchy' (stronger down-weighting, needs a good start) or 'none'.",
        choices=("huber", "cauchy", "none"))
    robust_kernel_width: float = _p(
        1.0, "Kernel width in standard deviations.", low=1e-3, high=1000.0)
    max_loop_chi2: float = _p(
        30.0, "After optimising, a loop whose whitened squared residual exceeds this is "
        "switched off as inconsistent and the graph optimised again.", low=0.0, high=1e9)


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
