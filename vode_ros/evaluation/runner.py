"""``vode process`` and ``vode eval``: the pipeline the node runs, over a recorded sequence.

Both build the pipeline with ``build_odometry(cfg)`` and call ``VisualOdometry.process`` on every
frame, exactly as the ROS node does; there is no second, simplified path. A frame the pipeline
refuses (``InputError``, including a model output that is not finite) is skipped and counted.

Outputs (DIR = ``--out``):

- ``trajectory.txt``: TUM ``t tx ty tz qx qy qz qw``, one line per processed frame, the input's
  own stamps (ns precision); the pose is ``Estimate.camera_pose``, the camera optical frame in the
  odometry frame, so it compares directly with a dataset's camera ground truth;
- ``depth/<index>.png``: every Nth frame (``save_depth``; 0 = none), 16-bit PNG at the input image
  resolution, value = depth x 1000, 0 = invalid, saturating at 65535. For a metric model that is
  millimetres; for a relative-scale model it is model units x 1000 (multiply by a scale ratio from
  ``vode eval`` to get metres);
- ``run.json``: input, layout, frames processed/skipped (by kind), scale kind, model files with
  their contract metadata, execution provider, pose backend counts, tracking-lost count and
  reasons, the configuration used;
- ``timing.json``: per-stage p50/p99/mean milliseconds from ``Estimate.timings_ms``, total wall
  time and frames per second;
- ``vode eval`` adds ``metrics.json`` and ``trajectory.png``, ``errors.png``, ``depth.png``;
- ``--out-bag OUT.mcap``: what vode_node would publish for these frames, as a ROS 2 bag
  (``vode_ros.bags.odometry.OdometryBag``: /odom, /tf, /tf_static, /depth/image +
  /depth/camera_info every ``save_depth``-th frame, /path, /diagnostics), written atomically and
  moved into place when the run succeeds (replacing an older bag there).

With ``loop_closure.enabled`` (``--set loop_closure.enabled=true``) the loop-closure back-end
(``vode_ros.loop_closure``) runs beside the odometry, fed by ``LoopClosure.add`` after every
``process`` and flushed at the end: ``trajectory.txt`` stays the odometry, and
``trajectory_map.txt`` is the loop-corrected trajectory in the map frame (each frame corrected by
its latest keyframe's Sim(3) correction); run.json gets ``loop_closure`` (keyframes, loops
accepted/rejected, the accepted loops), timing.json the ``loop_closure_add`` stage, and
metrics.json ``ate_rmse_m_map`` beside ``ate_rmse_m``.

Outputs are written into ``DIR/.partial-<pid>-<token>/`` and moved into DIR only when the run has
succeeded (``run.json`` last: a DIR with ``run.json`` is complete). A failed or interrupted run
removes its partial folder and leaves a previous complete run in DIR untouched.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vode_ros.config import VodeConfig
from vode_ros.errors import InputError, VodeError

LOG = logging.getLogger(__name__)

# Depth evaluation range by layout (metres): KITTI's convention caps at 80 m; indoor elsewhere.
DEPTH_RANGE_BY_LAYOUT = {"kitti": (1e-3, 80.0)}
DEFAULT_DEPTH_RANGE = (0.1, 10.0)
OUTPUT_NAMES = ("trajectory.txt", "trajectory_map.txt", "depth", "timing.json", "metrics.json",
                "trajectory.png", "errors.png", "depth.png", "run.json")
GRID_SAMPLES = 4
MAX_WARNINGS_PER_KIND = 3


class EvaluationError(VodeError):
    """An evaluation cannot be made (no ground truth, too few matched frames, ...)."""


@dataclass
class RunOptions:
    frames: str | None = None
    save_depth: int = 1
    quiet: bool = False
    config_file: str | None = None
    overrides: list = field(default_factory=list)
    out_bag: str | None = None           # also write the node's topics into this ROS 2 bag


@dataclass
class EvalOptions:
    min_depth: float | None = None
    max_depth: float | None = None
    depth_scaling: str = "auto"          # auto | median | global | none
    align: str = "auto"                  # auto | sim3 | se3
    plots: bool = True


# -- atomic output folder ------------------------------------------------------------------------
class AtomicOutput:
    """Collects outputs in ``DIR/.partial-*`` and moves them into DIR on ``commit``."""

    def __init__(self, out_dir):
        self.out = Path(out_dir).expanduser()
        self.partial: Path | None = None
        self.created_out = False
        self.committed = False

    def __enter__(self) -> "AtomicOutput":
        if self.out.exists() and not self.out.is_dir():
            raise VodeError(f"--out {self.out} exists and is not a folder; expected a folder "
                            "(new or existing) for the outputs")
        self.created_out = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.partial = self.out / f".partial-{os.getpid()}-{secrets.token_hex(4)}"
            self.partial.mkdir()
        except OSError as err:
            raise VodeError(f"cannot create the output folder {self.out}: {err}") from None
        return self

    def path(self, name: str) -> Path:
        return self.partial / name

    def commit(self) -> None:
        """Replace DIR's outputs by the new ones; ``run.json`` goes last."""
        names = [p.name for p in self.partial.iterdir()]
        for name in OUTPUT_NAMES:                 # a previous run's outputs, now superseded
            old = self.out / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
        for name in sorted(names, key=lambda n: n == "run.json"):
            os.replace(self.partial / name, self.out / name)
        self.partial.rmdir()
        self.committed = True

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.committed and self.partial is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            if self.created_out:
                try:
                    self.out.rmdir()              # only when empty
                except OSError:
                    pass
        return False


# -- small helpers -------------------------------------------------------------------------------
def _summary(values) -> dict:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None, "n": 0}
    return {"p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": int(a.size)}


def _sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


def _model_info(model) -> dict | None:
    if model is None:
        return None
    path = Path(getattr(model, "path", ""))
    spec = getattr(model, "spec", None)
    return {"path": str(path.resolve()) if str(path) else None,
            "sha256": _sha256(path) if path.is_file() else None,
            "provider": getattr(model, "provider", None),
            "metadata": spec.to_metadata() if spec is not None else None}


def _reason_key(reason: str) -> str:
    """A failure reason with its numbers blanked, so like failures count together."""
    return re.sub(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", reason)[:300]


def write_depth_png(path: Path, depth: np.ndarray) -> None:
    """Depth (float, NaN invalid) as uint16 PNG of depth x 1000 (0 invalid, saturating)."""
    import cv2
    d = np.asarray(depth, np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(d) & (d > 0)
        v = np.where(ok, np.clip(np.round(d * 1000.0), 1, 65535), 0).astype(np.uint16)
    if not cv2.imwrite(str(path), v):
        raise VodeError(f"could not write depth image {path}")


def read_depth_png(path) -> np.ndarray:
    """A depth PNG written by ``vode process``: float32 (value / 1000), NaN where 0."""
    import cv2
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16:
        raise VodeError(f"{path} is not a 16-bit depth PNG written by `vode process`")
    d = raw.astype(np.float32) / 1000.0
    d[raw == 0] = np.nan
    return d


def _thumb(image: np.ndarray, max_width: int = 320) -> np.ndarray:
    import cv2
    h, w = image.shape[:2]
    if w <= max_width:
        return image.copy()
    s = max_width / w
    interp = cv2.INTER_AREA if image.ndim == 3 else cv2.INTER_NEAREST
    return cv2.resize(image, (max_width, max(1, round(h * s))), interpolation=interp)


def _progress(total: int, quiet: bool, desc: str):
    disable = quiet or not sys.stderr.isatty()
    try:
        from tqdm import tqdm
    except ImportError:                           # progress is a nicety, not a dependency
        return None
    return tqdm(total=total, desc=desc, unit="frame", disable=disable, file=sys.stderr,
                dynamic_ncols=True)


def _warn(bar, message: str) -> None:
    text = f"warning: {message}"
    if bar is not None and not bar.disable:
        bar.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _finite_or_none(obj):
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def write_json(path: Path, data) -> None:
    Path(path).write_text(json.dumps(_finite_or_none(data), indent=2, default=_json_default)
                          + "\n")


# -- the grid of depth samples -------------------------------------------------------------------
class _GridPicker:
    """Keeps up to ``n`` frames spread over the sequence for the depth grid. For each target
    position it takes the first frame at or after it that has ground-truth depth; failing that
    (none before the next target), the latest one with ground-truth depth since the previous
    sample, else the frame at the target."""

    def __init__(self, total: int, n: int = GRID_SAMPLES):
        n = max(1, min(n, total))
        self.targets = sorted(set(np.linspace(0, total - 1, n).round().astype(int).tolist()))
        self.k = 0
        self.fallback = None          # the frame at the target (no ground-truth depth)
        self.recent_gt = None         # the latest frame with ground-truth depth, not yet used
        self.samples: list[dict] = []

    @staticmethod
    def _sample(index, image, pred, gt) -> dict:
        return {"index": index, "image": _thumb(image), "pred": _thumb(pred),
                "gt": None if gt is None else _thumb(gt)}

    def offer(self, position: int, index: int, image, pred, gt) -> None:
        while self.k + 1 < len(self.targets) and position >= self.targets[self.k + 1]:
            self._settle()                        # the next target is reached: settle this one
        if self.k >= len(self.targets):
            return
        if position < self.targets[self.k] or (self.fallback is not None and gt is None):
            if gt is not None:
                self.recent_gt = (index, image, pred, gt)
            return
        if gt is not None:
            self._take(self._sample(index, image, pred, gt))
        else:
            self.fallback = self._sample(index, image, pred, None)

    def _take(self, sample: dict) -> None:
        self.samples.append(sample)
        self.fallback = self.recent_gt = None
        self.k += 1

    def _settle(self) -> None:
        if self.recent_gt is not None:
            self._take(self._sample(*self.recent_gt))
        elif self.fallback is not None:
            self._take(self.fallback)
        else:
            self.k += 1

    def result(self) -> list[dict]:
        if self.k < len(self.targets):
            self._settle()
        return sorted(self.samples, key=lambda smp: smp["index"])


# -- the run -------------------------------------------------------------------------------------
def _open(input_path: str, frames):
    from vode_ros.datasets import open_sequence
    return open_sequence(input_path, frames=frames)


def depth_range_for(layout: str, min_depth=None, max_depth=None) -> tuple[float, float]:
    lo, hi = DEPTH_RANGE_BY_LAYOUT.get(layout, DEFAULT_DEPTH_RANGE)
    lo = lo if min_depth is None else float(min_depth)
    hi = hi if max_depth is None else float(max_depth)
    if not 0 < lo < hi:
        raise EvaluationError(f"the depth evaluation range must satisfy 0 < min < max, got "
                              f"--min-depth {lo} --max-depth {hi}")
    return lo, hi


def run(input_path: str, out_dir, cfg: VodeConfig, options: RunOptions | None = None,
        evaluate: EvalOptions | None = None) -> dict:
    """Process (and with ``evaluate``, evaluate) a sequence; returns run.json's content (plus
    ``metrics`` when evaluating)."""
    from vode_ros.pipeline import build_odometry

    opts = options or RunOptions()
    if opts.save_depth < 0:
        raise VodeError(f"--save-depth must be >= 0 (0 writes no depth), got {opts.save_depth}")
    command = "eval" if evaluate is not None else "process"
    seq = _open(input_path, opts.frames)
    if evaluate is not None and not getattr(seq, "has_ground_truth", True):
        raise EvaluationError(
            f"'{input_path}' ({seq.layout} layout) has no ground-truth poses; `vode eval` "
            "compares the estimate with ground truth. Use `vode process "
            f"{input_path} --out DIR` to run the pipeline without it, or give a dataset that "
            "ships ground truth (TUM groundtruth.txt, KITTI poses/NN.txt, EuRoC "
            "state_groundtruth_estimate0, 7-Scenes frame-*.pose.txt)")
    vo = build_odometry(cfg)                       # ModelError before anything is written
    depth_scaling = None
    if evaluate is not None:
        depth_range = depth_range_for(seq.layout, evaluate.min_depth, evaluate.max_depth)
        depth_scaling = evaluate.depth_scaling
        if depth_scaling == "auto":
            depth_scaling = "none" if vo.depth.metric else "median"
    started = datetime.now(timezone.utc)

    from vode_ros.bags.odometry import odometry_bag
    from vode_ros.loop_closure import loop_closure_for
    with AtomicOutput(out_dir) as out, odometry_bag(opts.out_bag, cfg, opts.save_depth) as bag, \
            loop_closure_for(cfg) as lc:
        depth_dir = out.path("depth")
        if opts.save_depth:
            depth_dir.mkdir()
        stamps, poses = [], []
        gt_stamps, gt_poses = [], []
        stage_ms: dict[str, list] = {}
        process_ms, read_ms, write_ms = [], [], []
        skipped: Counter = Counter()
        skip_examples: dict[str, str] = {}
        tracking: Counter = Counter()
        lost_reasons: Counter = Counter()
        lost_examples: dict[str, str] = {}
        backends: Counter = Counter()
        depth_files = 0
        depth_eval = grid = None
        if evaluate is not None:
            from vode_ros.evaluation.metrics import DepthEvaluation
            depth_eval = DepthEvaluation(*depth_range, scaling=depth_scaling)
            grid = _GridPicker(len(seq))
        image_size = None
        bar = _progress(len(seq), opts.quiet, f"vode {command} {seq.name}")
        t_wall = time.perf_counter()
        try:
            it = iter(seq)
            position = -1
            while True:
                t_read = time.perf_counter()
                try:
                    f = next(it)
                except StopIteration:
                    break
                position += 1
                read_ms.append((time.perf_counter() - t_read) * 1e3)
                t0 = time.perf_counter()
                try:
                    est = vo.process(f.frame())
                except InputError as exc:
                    skipped[exc.kind] += 1
                    skip_examples.setdefault(exc.kind, str(exc))
                    if skipped[exc.kind] <= MAX_WARNINGS_PER_KIND:
                        more = " (further ones counted silently)" \
                            if skipped[exc.kind] == MAX_WARNINGS_PER_KIND else ""
                        _warn(bar, f"frame {f.index} skipped ({exc.kind}): {exc}{more}")
                    if bar is not None:
                        bar.update(1)
                    continue
                process_ms.append((time.perf_counter() - t0) * 1e3)
                for k, v in est.timings_ms.items():
                    stage_ms.setdefault(k, []).append(float(v))
                if lc is not None:
                    t_lc = time.perf_counter()
                    lc.add(est, f.image)
                    stage_ms.setdefault("loop_closure_add", []).append(
                        (time.perf_counter() - t_lc) * 1e3)
                image_size = [int(f.image.shape[1]), int(f.image.shape[0])]
                stamps.append(int(est.stamp_ns))
                poses.append(np.asarray(est.camera_pose, float))
                tracking[est.tracking] += 1
                backends[est.backend or "none (first frame)"] += 1
                if est.tracking == "LOST":
                    key = _reason_key(est.reason or "unspecified")
                    lost_reasons[key] += 1
                    lost_examples.setdefault(key, est.reason)
                t_w = time.perf_counter()
                if opts.save_depth and position % opts.save_depth == 0 and est.depth is not None:
                    write_depth_png(depth_dir / f"{f.index}.png", est.depth)
                    depth_files += 1
                if bag is not None:
                    bag.add(est, position)
                write_ms.append((time.perf_counter() - t_w) * 1e3)
                if evaluate is not None:
                    if f.gt_pose is not None and np.all(np.isfinite(f.gt_pose)):
                        gt_stamps.append(int(f.stamp_ns))
                        gt_poses.append(np.asarray(f.gt_pose, float))
                    if f.gt_depth is not None and est.depth is not None:
                        depth_eval.add(f.gt_depth, est.depth)
                    if est.depth is not None:
                        grid.offer(position, f.index, f.image, est.depth, f.gt_depth)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        wall_s = time.perf_counter() - t_wall
        n_done, n_skipped = len(stamps), int(sum(skipped.values()))
        if n_done == 0:
            raise VodeError(f"no frame of '{input_path}' could be processed ({n_skipped} skipped: "
                            f"{dict(skipped)}); first reason: "
                            f"{next(iter(skip_examples.values()), 'none')}")
        if n_skipped:
            print(f"vode {command}: skipped {n_skipped} of {len(seq)} frames "
                  f"({', '.join(f'{k}: {v}' for k, v in skipped.items())})", file=sys.stderr)

        from vode_ros.evaluation.trajectory import write_tum
        write_tum(out.path("trajectory.txt"), stamps, np.asarray(poses))
        map_poses = None
        if lc is not None:
            lc.flush()
            map_poses = lc.correct(stamps, np.asarray(poses))
            write_tum(out.path("trajectory_map.txt"), stamps, map_poses)

        total_process_s = sum(process_ms) / 1e3
        timing = {
            "frames": n_done,
            "stages": {k: _summary(v) for k, v in stage_ms.items()},
            "process": _summary(process_ms),
            "read": _summary(read_ms),
            "write": _summary(write_ms),
            "wall_s": round(wall_s, 3),
            "fps": round(n_done / wall_s, 3) if wall_s > 0 else None,
            "fps_pipeline": round(n_done / total_process_s, 3) if total_process_s > 0 else None,
            "notes": "stages: Estimate.timings_ms per processed frame; process: the whole "
                     "VisualOdometry.process call; read: loading a frame from the input; write: "
                     "depth PNG output; fps: processed frames / wall time of the loop (reading "
                     "and writing included); fps_pipeline: processed frames / time in process",
        }
        write_json(out.path("timing.json"), timing)

        depth_model = getattr(vo.depth, "model", None)
        pose_model = getattr(vo.pose_backend, "model", None)
        info = {
            "command": f"vode {command}",
            "vode_version": _version(),
            "started_utc": started.isoformat(timespec="seconds"),
            "input": str(Path(input_path).expanduser().resolve()),
            "layout": seq.layout,
            "name": seq.name,
            "frames_selection": opts.frames,
            "frames_total": len(seq),
            "frames_processed": n_done,
            "frames_skipped": n_skipped,
            "skipped_by_kind": dict(skipped),
            "skipped_examples": skip_examples,
            "image_size": image_size,
            "camera": {k: getattr(seq.camera, k) for k in ("fx", "fy", "cx", "cy", "width",
                                                            "height")},
            "scale": vo.scale,
            "models": {"depth": _model_info(depth_model), "pose": _model_info(pose_model)},
            "provider": getattr(depth_model, "provider", None),
            "pose_backend": getattr(vo.pose_backend, "name", type(vo.pose_backend).__name__),
            "backend_counts": dict(backends),
            "tracking": {"states": dict(tracking), "lost_frames": int(tracking.get("LOST", 0)),
                         "lost_reasons": dict(lost_reasons.most_common()),
                         "lost_examples": lost_examples},
            "trajectory": {"file": "trajectory.txt", "format": "TUM 't tx ty tz qx qy qz qw'",
                           "pose": "Estimate.camera_pose: camera optical frame in odom",
                           "units": "metres" if vo.scale == "metric" else "model units"},
            "depth_png": {"folder": "depth", "every_nth_frame": opts.save_depth,
                          "files": depth_files, "name": "<frame index>.png",
                          "encoding": "uint16, value = depth x 1000, 0 = invalid, saturates at "
                                      "65535",
                          "unit": "millimetres" if vo.depth.metric else
                                  "model units x 1000 (relative-scale model: multiply by the "
                                  "scale ratio of `vode eval` for millimetres)"},
            "config_file": opts.config_file,
            "overrides": list(opts.overrides),
            "config": cfg.to_dict(),
            "wall_s": round(wall_s, 3),
        }
        if lc is not None:
            info["loop_closure"] = {
                **lc.summary(),
                "trajectory_map": "trajectory_map.txt: camera optical frame in the map, "
                                  "each frame corrected by its latest keyframe",
                "accepted": [{"stamp_ns": e.stamp_ns, "query": e.query,
                              "candidate": e.candidate, "reason": e.reason}
                             for e in lc.events if e.accepted],
                "last_error": lc.last_error}

        metrics = None
        if evaluate is not None:
            metrics = _evaluate(out, info, timing, vo, evaluate, depth_scaling, depth_range,
                                (gt_stamps, gt_poses), (stamps, poses), depth_eval, grid,
                                map_poses)
            info["metrics_file"] = "metrics.json"
        if bag is not None:
            info["out_bag"] = bag.commit({"frames_skipped": n_skipped, "scale": vo.scale,
                                          "provider": info["provider"]})
        info["outputs"] = sorted(p.name for p in out.partial.iterdir()) + ["run.json"]
        write_json(out.path("run.json"), info)
        out.commit()
    result = dict(info)
    if metrics is not None:
        result["metrics"] = metrics
    result["out"] = str(out.out)
    return result


def _version() -> str:
    try:
        from vode_ros import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


def _evaluate(out: AtomicOutput, info, timing, vo, ev: EvalOptions, depth_scaling,
              depth_range, gt, est, depth_eval, grid, map_poses=None) -> dict:
    from evo import EvoException

    from vode_ros.evaluation.metrics import evaluate_trajectory

    gt_stamps, gt_poses = gt
    stamps, poses = est
    if len(gt_stamps) < 2:
        raise EvaluationError(f"only {len(gt_stamps)} processed frame(s) have a ground-truth "
                              "pose; `vode eval` needs at least 2 (check --frames, or use "
                              "`vode process`)")
    try:
        traj = evaluate_trajectory(np.asarray(gt_stamps), np.asarray(gt_poses),
                                   np.asarray(stamps), np.asarray(poses), scale=vo.scale,
                                   align=ev.align)
    except (ValueError, EvoException) as err:
        raise EvaluationError(f"trajectory evaluation failed: {err}") from None
    loop_metrics = {}
    if map_poses is not None:                 # the loop-corrected trajectory, same protocol
        try:
            traj_map = evaluate_trajectory(np.asarray(gt_stamps), np.asarray(gt_poses),
                                           np.asarray(stamps), np.asarray(map_poses),
                                           scale=vo.scale, align=ev.align)
        except (ValueError, EvoException) as err:
            raise EvaluationError(f"evaluation of trajectory_map.txt failed: {err}") from None
        loop_metrics = {f"{k}_map": traj_map.metrics[k] for k in
                        ("ate_rmse_m", "ate_mean_m", "ate_median_m", "ate_max_m",
                         "ate_rot_rmse_deg", "scale_ratio") if k in traj_map.metrics}
        loop_metrics["loop_closure"] = {k: info["loop_closure"][k] for k in
                                        ("keyframes", "loops_accepted", "loops_rejected",
                                         "loops_active", "loops_switched_off")
                                        if k in info["loop_closure"]}
    depth, baseline = depth_eval.result()
    if depth["n_images"] == 0 and depth_eval.skipped == 0:
        depth = {"n_images": 0, "note": "the input has no ground-truth depth"}
        baseline = {"n_images": 0}
    m = {
        "input": info["input"], "layout": info["layout"], "name": info["name"],
        "frames_processed": info["frames_processed"], "frames_skipped": info["frames_skipped"],
        "scale": vo.scale,
        **traj.metrics,
        **loop_metrics,
        "depth": depth,
        "depth_constant_baseline": baseline,
        "depth_range_m": list(depth_range),
        "depth_scaling": depth_scaling,
        "tracking_lost_frames": info["tracking"]["lost_frames"],
        "fps": timing["fps"],
        "fps_pipeline": timing["fps_pipeline"],
    }
    write_json(out.path("metrics.json"), m)
    if ev.plots:
        from vode_ros.evaluation import plots
        unit = "m" if traj.metrics["ate_unit"] == "m" else "model units"
        s = traj.metrics["scale_ratio"]
        title = f"{info['name']} ({info['layout']}): ATE rmse {_fmt(m['ate_rmse_m'])} {unit}"
        sub = f"alignment {traj.metrics['alignment']}" + \
            (f", scale {s:.4g} m/unit" if s is not None else "")
        plots.plot_trajectory(out.path("trajectory.png"), traj.gt_xyz, traj.est_xyz, title, sub,
                              unit)
        plots.plot_errors(out.path("errors.png"), traj.stamps_s, traj.ate_errors,
                          traj.rpe_stamps_s, traj.rpe_trans_errors, traj.rpe_rot_errors_deg,
                          unit, title)
        samples = grid.result()
        for smp in samples:
            if smp["gt"] is not None and depth_scaling != "none":
                from vode_ros.evaluation.metrics import valid_depth_mask
                mask = valid_depth_mask(smp["gt"], smp["pred"], *depth_range)
                if mask.any():
                    r = float(np.median(smp["gt"][mask]) / np.median(smp["pred"][mask]))
                    smp["pred"] = smp["pred"] * r
                    smp["pred_note"] = f"(median-scaled x{r:.3g}) [m]"
            else:
                smp.setdefault("pred_note", "[m]" if vo.depth.metric else "[model units]")
        d = m["depth"]
        dtitle = (f"depth abs_rel {_fmt(d.get('abs_rel'))}, a1 {_fmt(d.get('a1'))} "
                  f"(constant baseline abs_rel {_fmt(baseline.get('abs_rel'))})"
                  if d.get("n_images") else "no ground-truth depth in this input")
        plots.plot_depth_grid(out.path("depth.png"), samples, dtitle)
    return _finite_or_none(m)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"
