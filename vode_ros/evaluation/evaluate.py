"""``vode eval``: a run's ``RunRecord`` against the sequence's ground truth.

While the run goes, ``GroundTruthSamples`` observes every processed frame: the ground-truth pose
of the frame, the depth errors where the frame has ground-truth depth (per image, so no depth map
is kept), and the few frames shown in ``depth.png``. ``evaluate_run`` then writes
``metrics.json`` (ATE, RPE, drift, depth, and for loop closure the map trajectory's ATE) and the
plots (``trajectory.png``, ``errors.png``, ``depth.png``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vode_ros.errors import VodeError
from vode_ros.evaluation.depth_grid import DepthGrid, scale_for_display
from vode_ros.offline.outputs import finite_or_none, write_json
from vode_ros.offline.record import RunRecord

# Depth evaluation range by layout (metres): KITTI's convention caps at 80 m; indoor elsewhere.
DEPTH_RANGE_BY_LAYOUT = {"kitti": (1e-3, 80.0)}
DEFAULT_DEPTH_RANGE = (0.1, 10.0)
MAP_METRICS = ("ate_rmse_m", "ate_mean_m", "ate_median_m", "ate_max_m", "ate_rot_rmse_deg",
               "scale_ratio")
LOOP_CLOSURE_COUNTS = ("keyframes", "loops_accepted", "loops_rejected", "loops_active",
                       "loops_switched_off")


class EvaluationError(VodeError):
    """An evaluation cannot be made (no ground truth, too few matched frames, ...)."""


@dataclass
class EvalOptions:
    min_depth: float | None = None
    max_depth: float | None = None
    depth_scaling: str = "auto"          # auto | median | global | none
    align: str = "auto"                  # auto | sim3 | se3
    plots: bool = True


def depth_range_for(layout: str, min_depth=None, max_depth=None) -> tuple[float, float]:
    lo, hi = DEPTH_RANGE_BY_LAYOUT.get(layout, DEFAULT_DEPTH_RANGE)
    lo = lo if min_depth is None else float(min_depth)
    hi = hi if max_depth is None else float(max_depth)
    if not 0 < lo < hi:
        raise EvaluationError(f"the depth evaluation range must satisfy 0 < min < max, got "
                              f"--min-depth {lo} --max-depth {hi}")
    return lo, hi


def require_ground_truth(seq, input_path) -> None:
    if not seq.has_ground_truth:
        raise EvaluationError(
            f"'{input_path}' ({seq.layout} layout) has no ground-truth poses; `vode eval` "
            "compares the estimate with ground truth. Use `vode process "
            f"{input_path} --out DIR` to run the pipeline without it, or give a dataset that "
            "ships ground truth (TUM groundtruth.txt, KITTI poses/NN.txt, EuRoC "
            "state_groundtruth_estimate0, 7-Scenes frame-*.pose.txt)")


class GroundTruthSamples:
    """The sequence's ground truth at the processed frames, gathered frame by frame: call
    ``add(position, frame, estimate)`` for each (a frame sink of the run)."""

    def __init__(self, seq, options: EvalOptions, metric_depth: bool):
        from vode_ros.evaluation.metrics import DepthEvaluation
        self.depth_range = depth_range_for(seq.layout, options.min_depth, options.max_depth)
        scaling = options.depth_scaling
        if scaling == "auto":
            scaling = "none" if metric_depth else "median"
        self.depth_scaling = scaling
        self.stamps_ns: list[int] = []
        self.poses: list[np.ndarray] = []
        self.depth = DepthEvaluation(*self.depth_range, scaling=scaling)
        self.grid = DepthGrid(len(seq))

    def add(self, position: int, frame, est) -> None:
        if frame.gt_pose is not None and np.all(np.isfinite(frame.gt_pose)):
            self.stamps_ns.append(int(frame.stamp_ns))
            self.poses.append(np.asarray(frame.gt_pose, float))
        if frame.gt_depth is not None and est.depth is not None:
            self.depth.add(frame.gt_depth, est.depth)
        if est.depth is not None:
            self.grid.offer(position, frame.index, frame.image, est.depth, frame.gt_depth)


def _trajectory(truth: GroundTruthSamples, record: RunRecord, poses, align: str, what: str):
    from evo import EvoException

    from vode_ros.evaluation.metrics import evaluate_trajectory
    try:
        return evaluate_trajectory(np.asarray(truth.stamps_ns), np.asarray(truth.poses),
                                   np.asarray(record.stamps_ns), np.asarray(poses),
                                   scale=record.scale, align=align)
    except (ValueError, EvoException) as err:
        raise EvaluationError(f"{what} failed: {err}") from None


def _loop_closure_metrics(truth: GroundTruthSamples, record: RunRecord, align: str) -> dict:
    """The loop-corrected trajectory, evaluated with the same protocol (none without loop
    closure)."""
    lc = record.loop_closure
    if lc is None:
        return {}
    traj = _trajectory(truth, record, lc.map_poses, align, "evaluation of trajectory_map.txt")
    out = {f"{k}_map": traj.metrics[k] for k in MAP_METRICS if k in traj.metrics}
    out["loop_closure"] = {k: lc.summary[k] for k in LOOP_CLOSURE_COUNTS if k in lc.summary}
    return out


def _path_ratio(traj, m: dict) -> float | None:
    """Travelled distance of the estimate over the truth's, both sampled once a second (the
    frame-to-frame jitter of a path does not add to its length)."""
    every = (m.get("rpe_detail", {}).get("per_second") or {}).get("delta_frames") or 1
    gt, est = traj.gt_xyz[::every], traj.est_xyz[::every]
    d_gt = float(np.linalg.norm(np.diff(gt, axis=0), axis=1).sum())
    return float(np.linalg.norm(np.diff(est, axis=0), axis=1).sum()) / d_gt if d_gt > 0 else None


def _metric_scale_metrics(truth: GroundTruthSamples, record: RunRecord, m: dict, traj) -> dict:
    """How far a metric trajectory's own scale is from the truth: its path length over the
    truth's, and beside an SE(3) alignment the Sim(3) one (the shape without the scale error);
    the scale source and its last status. Empty for a relative-scale run."""
    if record.scale != "metric":
        return {}
    from vode_ros.offline.reports import scale_source_info
    out = {"scale_source": scale_source_info(record)}
    if m.get("path_length_m"):
        out["path_length_ratio"] = m["estimate_path_length"] / m["path_length_m"]
    if m.get("scale_ratio") is None:                   # aligned without scale: also with it
        out["path_length_ratio_per_second"] = _path_ratio(traj, m)
        sim3 = _trajectory(truth, record, record.poses, "sim3", "Sim(3) evaluation")
        out["ate_rmse_m_sim3"] = sim3.metrics["ate_rmse_m"]
        out["scale_ratio_sim3"] = sim3.metrics["scale_ratio"]
    return out


def _depth_metrics(truth: GroundTruthSamples, odometry_scale: float | None
                   ) -> tuple[dict, dict]:
    """Depth metrics, and where the trajectory has a scale (metres per odometry unit; 1 for
    metric odometry) the same with that one scale for the run, the depth's unit over the
    odometry's and the spread of the per-image scales."""
    depth, baseline = truth.depth.result()
    if depth["n_images"] == 0 and truth.depth.skipped == 0:
        depth = {"n_images": 0, "note": "the input has no ground-truth depth"}
        baseline = {"n_images": 0}
        return depth, baseline
    ratios = depth["scale_ratio"]
    depth["scale_spread"] = ratios["std_over_mean"]
    if odometry_scale and depth["n_images"]:
        depth["run_scale"] = truth.depth.with_ratio(odometry_scale)
        depth["run_scale"]["rule"] = ("one scale for the run: the trajectory's Sim(3) scale "
                                      "(metres per odometry unit)")
        depth["unit_ratio"] = ratios["median"] / odometry_scale
        depth["unit_ratio_meaning"] = ("the depth's unit over the odometry's: median per-image "
                                       "scale (metres per depth unit) / the trajectory's scale")
    return depth, baseline


def evaluate_run(record: RunRecord, truth: GroundTruthSamples, options: EvalOptions,
                 path: Callable[[str], Path]) -> dict:
    """metrics.json (and with ``options.plots`` the PNG plots) at ``path(name)``; returns the
    metrics (non-finite values as None)."""
    if len(truth.stamps_ns) < 2:
        raise EvaluationError(f"only {len(truth.stamps_ns)} processed frame(s) have a "
                              "ground-truth pose; `vode eval` needs at least 2 (check --frames, "
                              "or use `vode process`)")
    traj = _trajectory(truth, record, record.poses, options.align, "trajectory evaluation")
    metric_scale = _metric_scale_metrics(truth, record, traj.metrics, traj)
    loop_metrics = _loop_closure_metrics(truth, record, options.align)
    odometry_scale = 1.0 if record.scale == "metric" else traj.metrics["scale_ratio"]
    depth, baseline = _depth_metrics(truth, odometry_scale)
    m = {
        "input": record.input, "layout": record.layout, "name": record.name,
        "frames_processed": record.frames_processed, "frames_skipped": record.frames_skipped,
        "scale": record.scale,
        **traj.metrics,
        **metric_scale,
        **loop_metrics,
        "depth": depth,
        "depth_constant_baseline": baseline,
        "depth_range_m": list(truth.depth_range),
        "depth_scaling": truth.depth_scaling,
        "tracking_lost_frames": record.lost_frames,
        "fps": record.fps,
        "fps_pipeline": record.fps_pipeline,
    }
    write_json(path("metrics.json"), m)
    if options.plots:
        _plot(record, truth, traj, m, path)
    return finite_or_none(m)


def _plot(record: RunRecord, truth: GroundTruthSamples, traj, m: dict,
          path: Callable[[str], Path]) -> None:
    from vode_ros.evaluation import plots
    unit = "m" if traj.metrics["ate_unit"] == "m" else "model units"
    s = traj.metrics["scale_ratio"]
    title = f"{record.name} ({record.layout}): ATE rmse {_fmt(m['ate_rmse_m'])} {unit}"
    sub = f"alignment {traj.metrics['alignment']}" + \
        (f", scale {s:.4g} m/unit" if s is not None else "")
    plots.plot_trajectory(path("trajectory.png"), traj.gt_xyz, traj.est_xyz, title, sub, unit)
    plots.plot_errors(path("errors.png"), traj.stamps_s, traj.ate_errors, traj.rpe_stamps_s,
                      traj.rpe_trans_errors, traj.rpe_rot_errors_deg, unit, title)
    samples = scale_for_display(truth.grid.result(), truth.depth_range, truth.depth_scaling,
                                record.depth_metric)
    d, baseline = m["depth"], m["depth_constant_baseline"]
    dtitle = (f"depth abs_rel {_fmt(d.get('abs_rel'))}, a1 {_fmt(d.get('a1'))} "
              f"(constant baseline abs_rel {_fmt(baseline.get('abs_rel'))})"
              if d.get("n_images") else "no ground-truth depth in this input")
    plots.plot_depth_grid(path("depth.png"), samples, dtitle)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"
