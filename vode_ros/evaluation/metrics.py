"""Trajectory and depth metrics.

Trajectory (on evo's core library)
----------------------------------
``evaluate_trajectory`` associates the estimate with the ground truth by stamp
(``evo.core.sync.associate_trajectories``), aligns it with Umeyama's method
(``PoseTrajectory3D.align``: Sim(3), ``correct_scale=True``, for relative-scale estimates; SE(3)
for metric ones) and computes on the aligned estimate:

- ATE (``evo.core.metrics.APE``, translation part): rmse / mean / median / max, metres;
- RPE (``evo.core.metrics.RPE``): translation (metres) and rotation (degrees) of the relative pose
  error over 1 frame and over 1 second. evo's RPE counts deltas in frames, metres or degrees but not
  seconds, so "1 second" is an index delta of ``round(1 s / median frame interval)`` frames (all
  pairs); the delta used is reported;
- drift as in the KITTI odometry benchmark: for every start frame and every sub-sequence length L,
  the end frame is the first whose ground-truth path distance from the start exceeds L; the error
  of the relative pose over that segment gives ``t_err`` (translation error / L, in %) and ``r_err``
  (rotation angle / L, in degrees per 100 m), averaged over all segments. KITTI uses L = 100..800 m;
  a trajectory shorter than 800 m uses 10 %..80 % of its path length in 8 steps (reported as
  ``drift_lengths_m``). Computed on the aligned estimate, so relative-scale output is first brought
  to metres by the Sim(3) scale;
- ``scale_ratio``: the Sim(3) scale s of ``gt ~ s R est + t``: metres per model unit. An estimate
  that is 3x too large gives 1/3.

Also reported: ``ate_rot_rmse_deg`` (rotation part of the absolute error), the estimate's own
path length and largest displacement from its start (in its units), the ground truth's extent.

Degenerate alignments are handled, not hidden: when the ground truth does not move (its positions
span less than ``STATIC_THRESHOLD_M`` = 1 cm: no scale is observable, and a Sim(3) fit to the
jitter would shrink any drift to nothing) the estimate is aligned at the first pose without scale,
``ate_unit`` says the errors are in the estimate's units (ATE is then its drift) and no
per-distance drift is computed; when the positions are collinear (Umeyama's rotation is undetermined
about the line, evo refuses) the rotation comes from the first poses' orientations and scale and
translation from least squares. ``alignment`` names the method used.

Depth (Eigen et al. 2014 protocol, written out here)
----------------------------------------------------
Valid pixels: ground truth finite and within [min_depth, max_depth], prediction finite and
positive. Relative-scale predictions are scaled per image by ``median(gt) / median(pred)`` over
the valid pixels; metric ones by 1.0 (or, on request, one global ratio: the median of the per-image
ratios). After scaling the prediction is capped to [min_depth, max_depth]. Per image:
abs_rel = mean(|p - g| / g), sq_rel = mean((p - g)^2 / g), rmse = sqrt(mean((p - g)^2)),
rmse_log = sqrt(mean((ln p - ln g)^2)), a_k = fraction of max(p/g, g/p) < 1.25^k (k = 1, 2, 3).
The sequence figure is the mean over images; ``with_ratio`` gives it with one given ratio for all
images (``vode eval``: the trajectory's Sim(3) scale, so depth and odometry must share a unit to
score well). The "median-scaled constant depth" baseline predicts
one constant per image, scaled by the same median rule (so it equals median(gt) everywhere): a
model that does not beat it has learnt no depth structure.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from vode_ros.geometry import rotation_angle_rad

DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
KITTI_LENGTHS_M = tuple(float(v) for v in range(100, 801, 100))
STATS = ("rmse", "mean", "median", "max")
# A ground truth whose positions span less than this (bounding-box diagonal) counts as not moving:
# no scale is observable and drift per distance is meaningless (e.g. a robot standing still).
STATIC_THRESHOLD_M = 0.01


# ================================================================================================
# Trajectory
# ================================================================================================
@dataclass
class TrajectoryEvaluation:
    """Metrics (JSON-ready) and the arrays the plots need."""

    metrics: dict
    stamps_s: np.ndarray = field(default_factory=lambda: np.zeros(0))   # matched, from t0
    gt_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    est_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # aligned
    ate_errors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rpe_stamps_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rpe_trans_errors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rpe_rot_errors_deg: np.ndarray = field(default_factory=lambda: np.zeros(0))


def orthonormalize(poses) -> np.ndarray:
    """Poses with each rotation replaced by the nearest rotation matrix (SVD). Ground truth
    written with few decimals (7-Scenes) is slightly off SO(3), which evo's SO(3) log refuses."""
    P = np.array(poses, dtype=float)
    U, _, Vt = np.linalg.svd(P[:, :3, :3])
    D = np.ones((len(P), 3))
    D[:, 2] = np.sign(np.linalg.det(U @ Vt))
    P[:, :3, :3] = (U * D[:, None, :]) @ Vt
    P[:, 3, :] = (0.0, 0.0, 0.0, 1.0)
    return P


def _to_evo(stamps_s, poses, name):
    from evo.core.trajectory import PoseTrajectory3D
    return PoseTrajectory3D(poses_se3=list(orthonormalize(poses)),
                            timestamps=np.asarray(stamps_s, float), name=name)


def _stats(errors) -> dict:
    e = np.asarray(errors, float)
    if e.size == 0:
        return {k: None for k in STATS}
    return {"rmse": float(np.sqrt(np.mean(e ** 2))), "mean": float(e.mean()),
            "median": float(np.median(e)), "max": float(e.max())}


def _spread(xyz: np.ndarray) -> float:
    """RMS distance of points from their centroid."""
    if len(xyz) == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.sum((xyz - xyz.mean(0)) ** 2, axis=1))))


def extent(xyz: np.ndarray) -> float:
    """Diagonal of the axis-aligned bounding box of the positions."""
    return float(np.linalg.norm(np.ptp(xyz, axis=0))) if len(xyz) else 0.0


def align_trajectory(traj_est, traj_ref, with_scale: bool,
                     static_threshold_m: float = STATIC_THRESHOLD_M
                     ) -> tuple[str, float | None, str]:
    """Align ``traj_est`` (evo trajectory, modified in place) to ``traj_ref``.

    Returns (method, scale or None when unobservable, note)."""
    from evo.core import lie_algebra as lie
    from evo.core.geometry import GeometryException

    ref_xyz, est_xyz = traj_ref.positions_xyz, traj_est.positions_xyz
    ref_spread, est_spread = _spread(ref_xyz), _spread(est_xyz)
    if extent(ref_xyz) < static_threshold_m:
        traj_est.align_origin(traj_ref)
        return ("origin", None, f"the ground truth moves less than {static_threshold_m} m: no "
                "scale is observable; the estimate is aligned at its first pose without scale, so "
                "ATE is the estimate's drift in its own units")
    if est_spread < 1e-12 * max(ref_spread, 1.0):
        traj_est.align_origin(traj_ref)
        return ("origin", None, "the estimate does not move: no scale can be found; aligned at "
                "the first pose")
    if len(ref_xyz) >= 3:
        try:
            r, t, s = traj_est.align(traj_ref, correct_scale=with_scale)
            if np.isfinite(s) and s > 0:
                return ("sim3_umeyama" if with_scale else "se3_umeyama",
                        float(s) if with_scale else 1.0, "")
        except GeometryException:
            pass
    # Collinear (or too few) positions: Umeyama's rotation is undetermined about the line.
    R0 = traj_ref.poses_se3[0][:3, :3] @ traj_est.poses_se3[0][:3, :3].T
    x = est_xyz @ R0.T
    xc, yc = x - x.mean(0), ref_xyz - ref_xyz.mean(0)
    s = float(np.sum(xc * yc) / np.sum(xc * xc)) if with_scale else 1.0
    if with_scale and not s > 0:
        s = float(np.sqrt(np.sum(yc * yc) / np.sum(xc * xc)))
    t = ref_xyz.mean(0) - s * x.mean(0)
    traj_est.scale(s)
    traj_est.transform(lie.se3(R0, t))
    return ("origin_rotation_ls_scale" if with_scale else "origin_rotation_ls_translation",
            s if with_scale else 1.0,
            "positions are collinear, so Umeyama's rotation is undetermined: rotation from the "
            "first poses' orientations, scale and translation by least squares")


def _rpe(traj_ref, traj_est, delta_frames: int):
    from evo.core import metrics
    from evo.core.filters import FilterException
    out = {}
    if delta_frames < 1 or delta_frames >= traj_ref.num_poses:
        return None
    for key, rel in (("trans", metrics.PoseRelation.translation_part),
                     ("rot", metrics.PoseRelation.rotation_angle_deg)):
        rpe = metrics.RPE(rel, delta=delta_frames, delta_unit=metrics.Unit.frames,
                          all_pairs=True)
        try:
            rpe.process_data((traj_ref, traj_est))
        except FilterException:
            return None
        out[key] = np.asarray(rpe.error, float)
        out["end_ids"] = np.asarray(rpe.delta_ids, int)      # evo: the second index of a pair
    return out


def drift_lengths(path_length_m: float) -> tuple[list[float], str]:
    """Sub-sequence lengths for the KITTI drift metric and the rule that chose them."""
    if path_length_m > KITTI_LENGTHS_M[-1]:
        return list(KITTI_LENGTHS_M), "kitti_100_800m"
    if path_length_m <= 1e-6:
        return [], "none: the ground truth does not move"
    return [round(path_length_m * f, 6) for f in np.arange(1, 9) / 10.0], \
        "fraction_10_80pct_of_path"


def kitti_drift(gt_poses, est_poses, lengths, step: int = 1) -> dict:
    """KITTI odometry drift (devkit algorithm): mean t_err (%) and r_err (deg / 100 m) over all
    segments (start frames every ``step`` frames, every length that fits)."""
    gt = np.asarray(gt_poses, float)
    est = np.asarray(est_poses, float)
    dist = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0),
                                                           axis=1))])
    t_errs, r_errs, used = [], [], set()
    for first in range(0, len(gt), max(1, step)):
        for L in lengths:
            beyond = np.nonzero(dist[first:] > dist[first] + L)[0]
            if len(beyond) == 0:
                continue
            last = first + int(beyond[0])
            d_gt = np.linalg.inv(gt[first]) @ gt[last]
            d_est = np.linalg.inv(est[first]) @ est[last]
            err = np.linalg.inv(d_est) @ d_gt
            t_errs.append(np.linalg.norm(err[:3, 3]) / L)
            r_errs.append(rotation_angle_rad(err) / L)
            used.add(L)
    if not t_errs:
        return {"t_err_pct": None, "r_err_deg_per_100m": None, "segments": 0, "lengths": []}
    return {"t_err_pct": float(np.mean(t_errs) * 100.0),
            "r_err_deg_per_100m": float(np.degrees(np.mean(r_errs)) * 100.0),
            "segments": len(t_errs), "lengths": sorted(used)}


def evaluate_trajectory(gt_stamps_ns, gt_poses, est_stamps_ns, est_poses, *,
                        scale: str = "relative", align: str = "auto", max_dt_s: float = 0.01,
                        drift_step: int = 1,
                        static_threshold_m: float = STATIC_THRESHOLD_M) -> TrajectoryEvaluation:
    """Trajectory metrics of an estimate against ground truth (both camera-to-world 4x4 poses of
    the same frame; stamps in integer ns). ``scale`` is the estimate's scale kind; ``align`` is
    ``auto`` (Sim(3) for relative, SE(3) for metric), ``sim3`` or ``se3``."""
    from evo.core import metrics as evo_metrics
    from evo.core import sync

    gt_ns = np.asarray(gt_stamps_ns, dtype=np.int64).reshape(-1)
    est_ns = np.asarray(est_stamps_ns, dtype=np.int64).reshape(-1)
    if len(gt_ns) < 2 or len(est_ns) < 2:
        raise ValueError(f"trajectory evaluation needs at least 2 poses of each; got "
                         f"{len(gt_ns)} ground-truth and {len(est_ns)} estimated")
    t0 = int(min(gt_ns.min(), est_ns.min()))
    ref = _to_evo((gt_ns - t0) * 1e-9, gt_poses, "ground truth")
    est = _to_evo((est_ns - t0) * 1e-9, est_poses, "estimate")
    try:
        ref, est = sync.associate_trajectories(ref, est, max_diff=max_dt_s)
        n = ref.num_poses
    except sync.SyncException:
        n = 0
    if n < 2:
        raise ValueError(f"only {n} estimated pose(s) have a ground-truth pose within "
                         f"{max_dt_s} s; expected at least 2")
    with_scale = {"auto": scale != "metric", "sim3": True, "se3": False}[align]
    est_aligned = copy.deepcopy(est)
    method, s, note = align_trajectory(est_aligned, ref, with_scale, static_threshold_m)
    gt_static = method == "origin" and s is None and extent(ref.positions_xyz) < \
        static_threshold_m

    ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
    ape.process_data((ref, est_aligned))
    ate = np.asarray(ape.error, float)
    ate_stats = _stats(ate)
    ape_rot = evo_metrics.APE(evo_metrics.PoseRelation.rotation_angle_deg)
    ape_rot.process_data((ref, est_aligned))
    est_xyz_raw = est.positions_xyz

    stamps = np.asarray(ref.timestamps, float)
    dt = float(np.median(np.diff(stamps))) if n > 1 else 0.0
    per_frame = _rpe(ref, est_aligned, 1)
    delta_sec = int(round(1.0 / dt)) if dt > 0 else 0
    per_second = _rpe(ref, est_aligned, delta_sec) if delta_sec >= 1 else None

    path_length = float(ref.path_length)
    lengths, rule = drift_lengths(path_length)
    if gt_static:
        lengths, rule = [], f"none: the ground truth moves less than {static_threshold_m} m"
    drift = kitti_drift(np.asarray(ref.poses_se3), np.asarray(est_aligned.poses_se3), lengths,
                        drift_step) if lengths else \
        {"t_err_pct": None, "r_err_deg_per_100m": None, "segments": 0, "lengths": []}

    def rpe_value(block, key):
        return None if block is None else _stats(block[key])["rmse"]

    def rpe_detail(block, delta):
        if block is None:
            return {"delta_frames": delta, "pairs": 0}
        return {"delta_frames": delta, "delta_s": round(delta * dt, 6),
                "pairs": len(block["trans"]), "trans_m": _stats(block["trans"]),
                "rot_deg": _stats(block["rot"])}

    unit = "m" if s is not None or scale == "metric" else "model units"
    m = {
        "frames_matched": int(n),
        "alignment": method,
        "alignment_note": note,
        "scale_ratio": s if with_scale else None,
        "scale_ratio_meaning": "metres per estimate unit (gt ~ s R est + t)",
        "path_length_m": path_length,
        "ate_unit": unit,
        "ate_rmse_m": ate_stats["rmse"], "ate_mean_m": ate_stats["mean"],
        "ate_median_m": ate_stats["median"], "ate_max_m": ate_stats["max"],
        "ate_rot_rmse_deg": _stats(ape_rot.error)["rmse"],
        "gt_extent_m": extent(ref.positions_xyz),
        "estimate_path_length": float(np.sum(np.linalg.norm(np.diff(est_xyz_raw, axis=0),
                                                            axis=1))),
        "estimate_max_displacement": float(np.max(np.linalg.norm(est_xyz_raw - est_xyz_raw[0],
                                                                 axis=1))),
        "estimate_units": "m" if scale == "metric" else "model units",
        "rpe_trans_m": {"per_frame": rpe_value(per_frame, "trans"),
                        "per_second": rpe_value(per_second, "trans")},
        "rpe_rot_deg": {"per_frame": rpe_value(per_frame, "rot"),
                        "per_second": rpe_value(per_second, "rot")},
        "rpe_statistic": "rmse over all pairs",
        "rpe_detail": {"per_frame": rpe_detail(per_frame, 1),
                       "per_second": rpe_detail(per_second, delta_sec)},
        "t_err_pct": drift["t_err_pct"],
        "r_err_deg_per_100m": drift["r_err_deg_per_100m"],
        "drift_lengths_m": drift["lengths"],
        "drift_lengths_rule": rule,
        "drift_segments": drift["segments"],
        "drift_step_frames": int(drift_step),
    }
    out = TrajectoryEvaluation(metrics=m, stamps_s=stamps, gt_xyz=ref.positions_xyz.copy(),
                               est_xyz=est_aligned.positions_xyz.copy(), ate_errors=ate)
    if per_frame is not None:
        out.rpe_stamps_s = stamps[per_frame["end_ids"]]
        out.rpe_trans_errors = per_frame["trans"]
        out.rpe_rot_errors_deg = per_frame["rot"]
    return out


# ================================================================================================
# Depth
# ================================================================================================
def valid_depth_mask(gt: np.ndarray, pred: np.ndarray, min_depth: float,
                     max_depth: float) -> np.ndarray:
    """Pixels where the ground truth is finite and in range and the prediction finite and > 0."""
    with np.errstate(invalid="ignore"):
        return (np.isfinite(gt) & (gt >= min_depth) & (gt <= max_depth)
                & np.isfinite(pred) & (pred > 0))


def median_scale(gt_valid: np.ndarray, pred_valid: np.ndarray) -> float:
    """median(gt) / median(pred) over valid pixels (the Eigen protocol's per-image scaling)."""
    return float(np.median(gt_valid) / np.median(pred_valid))


def depth_errors(gt: np.ndarray, pred: np.ndarray) -> dict:
    """The seven Eigen metrics on matching 1-D arrays of valid, positive depths."""
    gt = np.asarray(gt, np.float64)
    pred = np.asarray(pred, np.float64)
    ratio = np.maximum(gt / pred, pred / gt)
    diff = pred - gt
    return {"abs_rel": float(np.mean(np.abs(diff) / gt)),
            "sq_rel": float(np.mean(diff ** 2 / gt)),
            "rmse": float(np.sqrt(np.mean(diff ** 2))),
            "rmse_log": float(np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2))),
            "a1": float(np.mean(ratio < 1.25)),
            "a2": float(np.mean(ratio < 1.25 ** 2)),
            "a3": float(np.mean(ratio < 1.25 ** 3))}


def evaluate_depth_image(gt: np.ndarray, pred: np.ndarray, min_depth: float, max_depth: float,
                         scaling: str | float = "median") -> tuple[dict | None, float, int]:
    """Eigen metrics of one image. ``scaling``: ``median`` (per image), ``none`` (1.0) or a
    number (a given global ratio). Returns (errors or None when no pixel is valid, ratio, valid
    pixel count)."""
    gt = np.asarray(gt, np.float32)
    pred = np.asarray(pred, np.float32)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    mask = valid_depth_mask(gt, pred, min_depth, max_depth)
    n = int(mask.sum())
    if n == 0:
        return None, float("nan"), 0
    g, p = gt[mask].astype(np.float64), pred[mask].astype(np.float64)
    if scaling == "median":
        ratio = median_scale(g, p)
    elif scaling == "none":
        ratio = 1.0
    else:
        ratio = float(scaling)
    p = np.clip(p * ratio, min_depth, max_depth)
    return depth_errors(g, p), ratio, n


def constant_baseline_errors(gt: np.ndarray, mask: np.ndarray, min_depth: float,
                             max_depth: float) -> dict:
    """Metrics of a constant prediction, median-scaled: median(gt) at every valid pixel."""
    g = np.asarray(gt, np.float64)[mask]
    p = np.clip(np.full_like(g, np.median(g)), min_depth, max_depth)
    return depth_errors(g, p)


class DepthEvaluation:
    """Accumulates per-image Eigen metrics over a sequence (mean over images).

    ``scaling``: ``median`` (per-image median ratio; for relative-scale models), ``none`` (1.0;
    metric models) or ``global`` (one ratio for the sequence: the median of the per-image median
    ratios; keeps the valid pixels of every image until ``result``)."""

    def __init__(self, min_depth: float = 0.1, max_depth: float = 10.0, scaling: str = "median"):
        if scaling not in ("median", "none", "global"):
            raise ValueError(f"depth scaling must be 'median', 'none' or 'global', got "
                             f"{scaling!r}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"expected 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.min_depth, self.max_depth, self.scaling = float(min_depth), float(max_depth), scaling
        self.errors: list[dict] = []
        self.baseline: list[dict] = []
        self.ratios: list[float] = []
        self.valid_fraction: list[float] = []
        self.skipped = 0
        self._kept: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, gt: np.ndarray, pred: np.ndarray) -> dict | None:
        """Add one image (gt metres, pred model units, same shape); returns its errors (for
        ``global`` scaling: None until ``result``)."""
        gt = np.asarray(gt, np.float32)
        pred = np.asarray(pred, np.float32)
        if pred.shape != gt.shape:
            import cv2
            pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
        mask = valid_depth_mask(gt, pred, self.min_depth, self.max_depth)
        if not mask.any():
            self.skipped += 1
            return None
        g, p = gt[mask], pred[mask]
        self.ratios.append(median_scale(g.astype(np.float64), p.astype(np.float64)))
        self.valid_fraction.append(float(mask.mean()))
        self.baseline.append(constant_baseline_errors(gt, mask, self.min_depth, self.max_depth))
        self._kept.append((g.copy(), p.copy()))
        if self.scaling == "global":
            return None
        err, _, _ = evaluate_depth_image(g, p, self.min_depth, self.max_depth, self.scaling)
        self.errors.append(err)
        return err

    def with_ratio(self, ratio: float) -> dict:
        """Mean Eigen metrics with one ``ratio`` (metres per prediction unit) for every image:
        e.g. the trajectory's Sim(3) scale, which measures whether depth and odometry share a
        unit."""
        errors = [e for g, p in self._kept
                  if (e := evaluate_depth_image(g, p, self.min_depth, self.max_depth,
                                                ratio)[0]) is not None]
        out: dict = {k: (float(np.mean([e[k] for e in errors])) if errors else None)
                     for k in DEPTH_KEYS}
        out.update({"n_images": len(errors), "ratio": float(ratio)})
        return out

    def global_ratio(self) -> float | None:
        return float(np.median(self.ratios)) if self.ratios else None

    def result(self) -> tuple[dict, dict]:
        """(model metrics, constant-baseline metrics), each a JSON-ready dict."""
        errors = self.errors
        if self.scaling == "global" and self._kept:
            r = self.global_ratio()
            errors = [evaluate_depth_image(g, p, self.min_depth, self.max_depth, r)[0]
                      for g, p in self._kept]
        scaling = {"median": "per-image median ratio median(gt)/median(pred)",
                   "none": "none (metric prediction, scale 1.0)",
                   "global": "one global ratio: median of the per-image median ratios"}
        common = {"n_images": len(errors), "n_images_without_valid_pixels": self.skipped,
                  "min_depth_m": self.min_depth, "max_depth_m": self.max_depth}
        model = {k: (float(np.mean([e[k] for e in errors])) if errors else None)
                 for k in DEPTH_KEYS}
        model.update(common)
        model["scaling"] = self.scaling
        model["scaling_rule"] = scaling[self.scaling]
        r = np.asarray(self.ratios, float)
        model["scale_ratio"] = {"median": float(np.median(r)) if r.size else None,
                                "mean": float(r.mean()) if r.size else None,
                                "std_over_mean": float(r.std() / r.mean()) if r.size else None,
                                "global": self.global_ratio() if self.scaling == "global"
                                else (1.0 if self.scaling == "none" else None)}
        model["valid_pixel_fraction"] = float(np.mean(self.valid_fraction)) \
            if self.valid_fraction else None
        base = {k: (float(np.mean([e[k] for e in self.baseline])) if self.baseline else None)
                for k in DEPTH_KEYS}
        base.update(common)
        base["n_images"] = len(self.baseline)
        base["scaling"] = "median"
        base["scaling_rule"] = "constant prediction scaled per image: median(gt) everywhere"
        return model, base
