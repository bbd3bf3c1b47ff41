"""The loop-closure section of the configuration schema (``vode_ros.config``)."""
from __future__ import annotations

from dataclasses import dataclass

from vode_ros.config_values import param as _p


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
