"""`vode adapt`: fit the depth and pose networks to one recording of the user's, without labels.

1. **Odometry.** The offline runner (`vode process`, the configured pipeline with the starting
   models) writes ``DIR/odometry/trajectory.txt``, the camera's poses from geometry, and
   ``DIR/odometry/map_points.npz``, the triangulated map points each frame sees.
2. **Split.** The selected frames' first ``1 - holdout`` part is trained on; the rest (the last
   20 % by default) is held out: its photometric loss judges every candidate.
3. **Fine-tuning** (:class:`AdaptTrainer`, `vode train`'s loop with a deadline), starting from
   the starting models' ONNX weights (:mod:`vode_ros.learn.onnx_weights`): the depth network by
   the photometric loss of triplets warped with the odometry's relative poses (translation
   times a learned scale; the recipe of the shipped third stage), the pose network taught
   those relative poses (``train.pose_distill``); and the depth network against the map points
   by the scale-invariant log loss, where ``map_depth_weight`` > 0 (SILog with lambda 1: the
   variance of the log ratio, TrianFlow's idea of depth taught by triangulation; off by
   default). No ground truth is read (not even for reporting).
4. **Acceptance.** The held-out loss before (the starting models) and after (the best
   evaluation, ``best.pt``): the photometric loss, plus (with map points) ``map_depth_weight``
   times the SILog against the held-out frames' map points. Only a lower held-out loss and
   models that pass every export check (ONNX Runtime against PyTorch, the contract read back by
   ``OnnxModel``) are exported; otherwise ``DIR/depth.onnx`` is a copy of the starting model
   and the command says why. The pose model is accepted on its own: only where its held-out fit
   to the odometry's poses got better.

Resume: ``DIR/adapt_state.json`` records the settings and the training time spent; running
the same command again skips a finished odometry, continues training from
``DIR/train/last.pt`` until the budget is spent, then exports. The budget (``minutes``) counts
the whole command: odometry, loading, training, final evaluation and export.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

from vode_ros.errors import VodeError
from vode_ros.files import atomic_write
from vode_ros.learn.checkpoint import read_checkpoint
from vode_ros.learn.trainer import Trainer
from vode_ros.offline.map_points import FILE_NAME as MAP_POINTS
from vode_ros.progress import progress_bar

DEFAULT_MINUTES = 15.0      # two minutes of 30 frames/s video in under 20 minutes on 2 cores
HOLDOUT = 0.2
RESERVE_S = 45.0            # kept back from training for the last evaluation and the export
EVALUATIONS = 6             # held-out evaluations over the training budget (and one at start)
STATE = "adapt_state.json"
# the scale-invariant loss against the odometry's map points: off by default (on 7-Scenes it
# made the held-out frames' depth worse, docs/results.md "vode adapt")
MAP_DEPTH_WEIGHT = 0.0
CRITERION = "photometric+silog"   # what judges a candidate where the map points teach depth


class AdaptError(VodeError):
    """The recording cannot be adapted to (too short, another run's folder, no motion)."""


@dataclasses.dataclass
class AdaptSettings:
    """What one adaptation is; a resumed run must ask for the same."""
    input: str
    frames: str | None = None
    holdout: float = HOLDOUT
    depth_model: str = "models/depth.onnx"
    pose_model: str = "models/pose.onnx"
    seed: int = 0
    map_depth_weight: float = MAP_DEPTH_WEIGHT


def split_frames(n: int, frames: str | None, holdout: float, min_val: int = 5) -> tuple[str, str]:
    """``(train, held-out)`` frame selections ('A:B:S' over the recording's ``n`` frames): the
    last ``holdout`` fraction of the selected frames is held out."""
    from vode_ros.datasets.base import parse_frames

    sel = parse_frames(frames, n)
    if not 0.0 < holdout < 1.0:
        raise AdaptError(f"holdout must lie in (0, 1), got {holdout}")
    k = int(round(len(sel) * (1.0 - holdout)))
    if k < 2 * min_val or len(sel) - k < min_val:
        raise AdaptError(f"{len(sel)} frames are too few to adapt to: at least "
                         f"{min_val} held out and {2 * min_val} trained on are needed (a few "
                         "seconds of video)")
    step = sel.step
    return f"{sel[0]}:{sel[k - 1] + 1}:{step}", f"{sel[k]}:{sel[-1] + 1}:{step}"


def training_options(settings: AdaptSettings, out: Path, trajectory: Path, train_frames: str,
                     val_frames: str, model_config: dict, threads: int, quiet: bool,
                     map_depth: bool) -> dict:
    """The `vode train` options of the adaptation (the shipped third stage's recipe, plus the
    pose network taught the odometry's relative poses; with ``map_depth``, the depth network
    taught the map points too)."""
    src = {"path": settings.input, "poses": str(trajectory)}
    if map_depth:
        src["map_points"] = str(trajectory.parent / MAP_POINTS)
    model = {k: model_config[k] for k in (
        "variant", "input_height", "input_width", "depth_encoder_widths",
        "depth_encoder_blocks", "depth_decoder_widths", "pose_widths", "pose_blocks", "mean",
        "std", "min_depth", "max_depth", "scale", "pose_scale", "width_mult")}
    return {
        "name": "adapt", "out_dir": str(out / "train"), "seed": int(settings.seed),
        "model": model,
        "data": {"height": model_config["input_height"], "width": model_config["input_width"],
                 "min_motion": 1.0,
                 "train": [dict(src, frames=train_frames, stride=2, weight=3),
                           dict(src, frames=train_frames, stride=4, weight=1)],
                 "val": [dict(src, frames=val_frames, stride=2)]},
        "train": {"batch_size": 6, "lr": 1.0e-4, "depth_lr_factor": 0.2, "lr_decay_at": None,
                  "max_steps": 1_000_000, "ema_decay": 0.995, "smoothness": 1.0e-3,
                  "num_scales": 1, "scale_mode": "native", "pose_distill": 1.0,
                  "num_threads": threads, "device": "auto",
                  "init_from": [settings.depth_model, settings.pose_model],
                  # depth against the map points: the variance of the log ratio (their unit
                  # is the odometry's, so a global factor is not asked for)
                  "silog": float(settings.map_depth_weight) if map_depth else 0.0,
                  "silog_lambda": 1.0},
        "log": {"every": 25, "image_every": 0, "checkpoint_minutes": 2.0, "keep_every": 0,
                "progress": not quiet},
        "eval": {"every_steps": 0, "at_start": True, "batch_size": 8,
                 "select_by": CRITERION if map_depth else "photometric"},
    }


class TimedTrainer(Trainer):
    """`vode train`'s trainer run against a clock (:meth:`run_for`); ``state_path``: a JSON file
    that each ``last.pt`` write updates with the training seconds spent (a resume's start)."""

    def __init__(self, *args, state_path: Path | None = None, spent_s: float = 0.0, **kw):
        self.state_path, self.spent_s = state_path, float(spent_s)
        self._clock = None
        self.budget_s, self.eval_every_s, self.next_eval_s = float("inf"), 0.0, 0.0
        self.evaluated_at = 0
        super().__init__(*args, **kw)

    def training_seconds(self) -> float:
        return self.spent_s + (time.time() - self._clock if self._clock else 0.0)

    def save(self, name: str) -> None:
        super().save(name)
        if name == "last.pt" and self.state_path is not None:
            state = json.loads(self.state_path.read_text()) if self.state_path.is_file() \
                else {}
            state.update(train_seconds=round(self.training_seconds(), 1),
                         step=self.progress["step"])
            atomic_write(self.state_path, json.dumps(state, indent=2))

    def run_for(self, budget_s: float, max_steps: int | None = None) -> dict:
        """Train until ``budget_s`` seconds of training (this run's and the resumed ones')
        are spent or ``max_steps`` steps are done; held-out evaluations at the start, about
        every ``budget_s / EVALUATIONS`` seconds and at the end pick ``best.pt``."""
        p = self.progress
        stop = int(max_steps) if max_steps is not None else int(self.options.train.max_steps)
        self.budget_s = float(budget_s)
        self.eval_every_s = max(budget_s / EVALUATIONS, 1.0)
        self._clock = time.time()
        self.next_eval_s = self.training_seconds() + self.eval_every_s
        left = max(0.0, budget_s - self.training_seconds())
        self.bar = progress_bar(int(left) + 1, "adapt", quiet=not self.options.log.progress,
                                unit="s")
        try:
            if p["step"] == 0:
                self.evaluate_and_keep_best()
            self.evaluated_at = p["step"]
            while self.keep_training(stop):
                self.run_epoch(stop)
            if self.evaluated_at != p["step"]:
                self.evaluate_and_keep_best()
            self.save("last.pt")
        finally:
            self.close()
        return self.summary()

    def keep_training(self, stop_at: int) -> bool:
        return super().keep_training(stop_at) and self.training_seconds() < self.budget_s

    def after_step(self) -> None:
        """A held-out evaluation every ``budget_s / EVALUATIONS`` seconds of training, then the
        trainer's own checkpointing."""
        if self.training_seconds() >= self.next_eval_s:
            self.evaluate_and_keep_best()
            self.evaluated_at = self.progress["step"]
            self.next_eval_s = self.training_seconds() + self.eval_every_s
        super().after_step()

    def end_of_epoch(self) -> None:
        """Nothing: evaluations follow the clock, not the epochs."""

    def log_step(self, batch: dict, out: dict, loss: float) -> None:
        bar, self.bar = self.bar, None         # the bar counts seconds, not steps
        super().log_step(batch, out, loss)
        self.bar = bar
        if bar is not None:
            bar.n = min(int(self.training_seconds() - self.spent_s), bar.total)
            bar.set_postfix(step=self.progress["step"], loss=f"{loss:.4f}")


class AdaptTrainer(TimedTrainer):
    """The adaptation's trainer: no ground truth is read."""

    read_ground_truth = False  # labels are never read for an adaptation, not even to report


def _read_state(path: Path, settings: AdaptSettings) -> dict:
    want = dataclasses.asdict(settings)
    if not path.is_file():
        return {"settings": want, "train_seconds": 0.0}
    state = json.loads(path.read_text())
    if state.get("settings") != want:
        raise AdaptError(f"{path.parent} holds an adaptation with other settings "
                         f"({state.get('settings')}); use another --out, or delete it")
    return state


def _odometry(settings: AdaptSettings, out: Path, cfg, quiet: bool, say) -> Path:
    """``DIR/odometry/trajectory.txt``, from `vode process` unless a finished run left it."""
    from vode_ros.offline import RunOptions, run

    traj = out / "odometry" / "trajectory.txt"
    if traj.is_file() and (traj.parent / MAP_POINTS).is_file():
        say(f"vode adapt: odometry: kept {traj} (from an earlier run)")
        return traj
    t0 = time.time()
    info = run(settings.input, out / "odometry", cfg,
               RunOptions(frames=settings.frames, save_depth=0, quiet=quiet, map_points=True))
    say(f"vode adapt: odometry: {info['frames_processed']} frames, "
        f"{info['tracking']['lost_frames']} lost, {time.time() - t0:.0f} s -> {traj}")
    if not traj.is_file():
        raise AdaptError(f"the odometry wrote no trajectory to {traj}")
    return traj


def _map_covers(path: Path, holdout: float, say, min_frames: int = 3) -> bool:
    """Whether the odometry's map points cover enough of both the trained and the held-out
    frames to teach and to judge depth (else the adaptation is photometric only, said)."""
    from vode_ros.learn.data import MIN_DEPTH_PIXELS
    from vode_ros.offline.map_points import read_map_points

    counts = [len(z) for _, z in read_map_points(path).values()]
    k = int(round(len(counts) * (1.0 - holdout)))
    seen = [sum(c >= MIN_DEPTH_PIXELS for c in part) for part in (counts[:k], counts[k:])]
    if min(seen) >= min_frames:
        return True
    say(f"vode adapt: the odometry's map covers {seen[0]} trained and {seen[1]} held-out "
        f"frames (at least {min_frames} each are needed); depth is adapted by the "
        "photometric loss alone")
    return False


def _history_entry(history: list, step: int) -> dict | None:
    return next((h for h in history if h["step"] == step), None)


def adapt(input_path, out_dir, minutes: float | None = None, *, frames: str | None = None,
          holdout: float = HOLDOUT, config_file=None, overrides=(), max_steps: int | None = None,
          threads: int = 2, seed: int = 0, map_depth_weight: float | None = None,
          quiet: bool = False, say=print) -> dict:
    """Adapt the configured depth and pose models (``models.depth``, ``models.pose``) to the
    recording ``input_path`` (anything `vode process` reads); write ``out_dir/depth.onnx``,
    ``pose.onnx`` and ``adapt.json`` (the report, also returned). ``minutes``: the budget of the
    whole command (default :data:`DEFAULT_MINUTES`); ``max_steps`` caps training steps."""
    from vode_ros.config_files import load_config
    from vode_ros.datasets import open_sequence
    from vode_ros.learn.export import ExportError, export_checkpoint
    from vode_ros.learn.onnx_weights import model_config_of, read_metadata
    from vode_ros.learn.options import load_options

    started = time.time()
    budget = 60.0 * float(DEFAULT_MINUTES if minutes is None else minutes)
    if budget <= 0:
        raise AdaptError(f"--minutes must be positive, got {minutes}")
    cfg = load_config(config_file, list(overrides))
    w = MAP_DEPTH_WEIGHT if map_depth_weight is None else float(map_depth_weight)
    if not w >= 0:
        raise AdaptError(f"--map-depth-weight must be >= 0, got {map_depth_weight}")
    settings = AdaptSettings(str(input_path), frames, float(holdout), str(cfg.models.depth),
                             str(cfg.models.pose), int(seed), w)
    for path in (settings.depth_model, settings.pose_model):
        if not Path(path).is_file():
            raise AdaptError(f"starting model '{path}' does not exist (models.depth and "
                             "models.pose name the networks to adapt)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE
    state = _read_state(state_path, settings)
    atomic_write(state_path, json.dumps(state, indent=2))
    n = len(open_sequence(settings.input))
    train_frames, val_frames = split_frames(n, frames, holdout)
    traj = _odometry(settings, out, cfg, quiet, say)
    map_depth = settings.map_depth_weight > 0 and _map_covers(traj.parent / MAP_POINTS,
                                                              holdout, say)
    model_config = model_config_of(settings.depth_model)
    options = load_options(training_options(settings, out, traj, train_frames, val_frames,
                                            model_config, threads, quiet, map_depth))
    torch.set_num_threads(max(1, int(threads)))
    trainer = AdaptTrainer(options, resume=True, say=say, state_path=state_path,
                           spent_s=float(state.get("train_seconds", 0.0)))
    train_budget = float(state.get("train_seconds", 0.0)) + max(
        0.0, budget - (time.time() - started) - RESERVE_S)
    say(f"vode adapt: training on frames {train_frames}, holding out {val_frames}; "
        f"training budget {train_budget:.0f} s in all")
    summary = trainer.run_for(train_budget, max_steps)
    history = summary["history"]
    before, best = _history_entry(history, 0), None
    best_step = _best_step(out / "train" / "best.pt")
    best = _history_entry(history, best_step) if best_step is not None else None
    report = {"input": settings.input, "frames": frames, "train_frames": train_frames,
              "heldout_frames": val_frames, "steps": summary["step"],
              "train_seconds": round(trainer.training_seconds(), 1),
              "seconds_per_step": summary["seconds_per_step"],
              "heldout_photometric_before": before and before["photometric"],
              "heldout_photometric_after": best and best["photometric"],
              "heldout_pose_fit_before": before and before.get("pose_fit"),
              "heldout_pose_fit_after": best and best.get("pose_fit"),
              "heldout_map_depth_silog_before": before and before.get("silog"),
              "heldout_map_depth_silog_after": best and best.get("silog"),
              "criterion": options.eval.select_by,
              "best_step": best_step, "models": {}}
    key = options.eval.select_by
    improved = best is not None and before is not None and best_step != 0 and \
        best[key] < before[key]
    pose_better = improved and (before.get("pose_fit") is None or best.get("pose_fit") is None
                                or best["pose_fit"] < before["pose_fit"])
    exported = None
    if improved:
        cand = out / "candidate"
        flip = str(read_metadata(settings.depth_model).get("vode.flip_average",
                                                           "")).startswith("true")
        try:
            exported = export_checkpoint(out / "train" / "best.pt", cand, latency_runs=0,
                                         flip_average=flip)
        except ExportError as exc:
            say(f"vode adapt: warning: the adapted networks failed the export checks ({exc}); "
                "the starting models are kept")
    for kind, start, accept in (("depth", settings.depth_model, exported is not None),
                                ("pose", settings.pose_model,
                                 exported is not None and pose_better)):
        dst = out / f"{kind}.onnx"
        if accept:
            shutil.copyfile(out / "candidate" / f"{kind}.onnx", dst)
            report["models"][kind] = {"path": str(dst), "adapted": True}
        else:
            shutil.copyfile(start, dst)
            report["models"][kind] = {"path": str(dst), "adapted": False,
                                      "copy_of": str(start)}
    report["wall_seconds"] = round(time.time() - started, 1)
    atomic_write(out / "adapt.json", json.dumps(report, indent=2, default=str))
    _tell(report, improved, say)
    return report


def _best_step(path: Path) -> int | None:
    if not path.is_file():
        return None
    ckpt = read_checkpoint(path)
    return int(ckpt.get("run_step", ckpt.get("step", 0)))


def _tell(report: dict, improved: bool, say) -> None:
    b, a = report["heldout_photometric_before"], report["heldout_photometric_after"]
    say(f"vode adapt: held-out photometric loss: before {b:.4f}, after {a:.4f} "
        f"(step {report['best_step']} of {report['steps']}, "
        f"{report['train_seconds']:.0f} s of training)" if a is not None and b is not None
        else "vode adapt: held-out photometric loss: not evaluated")
    sb, sa = report["heldout_map_depth_silog_before"], report["heldout_map_depth_silog_after"]
    if sb is not None and sa is not None:
        say(f"vode adapt: held-out depth against the map points (SILog): before {sb:.4f}, "
            f"after {sa:.4f}")
    pb, pa = report["heldout_pose_fit_before"], report["heldout_pose_fit_after"]
    if pb is not None and pa is not None:
        say(f"vode adapt: held-out pose fit to the odometry: before {pb:.4f}, after {pa:.4f}")
    if not improved:
        say("vode adapt: warning: the held-out loss did not improve; DIR/depth.onnx and "
            "DIR/pose.onnx are copies of the starting models")
    for kind, m in report["models"].items():
        say(f"vode adapt: {kind}: {m['path']} " +
            ("(adapted)" if m["adapted"] else f"(the starting model, {m['copy_of']})"))
