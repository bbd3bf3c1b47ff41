"""The tracking sections of the configuration schema (``vode_ros.config``): the pose stage
(``pose``), the correspondences (``flow``) and the metric scale sources (``scale``)."""
from __future__ import annotations

from dataclasses import dataclass

from vode_ros.config_values import param as _p


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
    triangulation_angle_per_turn: float = _p(
        0.1, "A keyframe step's scale is measured on the new points whose parallax angle is at "
        "least this fraction of the rotation from the keyframe (an error in the rotation grows "
        "with the turn: an approximate camera model, rolling shutter, blur), where enough such "
        "points remain; 0 measures it on every point of pose.min_triangulation_angle_deg.",
        low=0.0, high=1.0)
    max_speed_change: float = _p(
        50.0, "A keyframe step whose shared-point scale implies a speed more than this many "
        "times the median of the last five frames' (all moving), or less than its inverse, "
        "takes that recent speed instead; 0 turns the check off.", low=0.0, high=1.0e6)
    map_from_learned_depth: bool = _p(
        False, "pose.scale_source 'triangulation': a keyframe left with fewer than "
        "pose.min_pnp_points map points (the tracks lost to a fast turn, a restart after a "
        "loss) gives its tracks map points from the learned depth, in the map's unit as the "
        "recent keyframes measured it, so PnP places the next frames (the rotation-only pose "
        "holds the position while the camera moves on); triangulation replaces them where "
        "the parallax allows. Off by default: it helps as far as the depth network fits the "
        "place (docs/results.md); try it after `vode adapt`.")
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
