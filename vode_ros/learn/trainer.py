"""`vode train`: self-supervised training of the depth and pose networks.

Split as the design asks: the options (:mod:`vode_ros.learn.options`), data
(:mod:`vode_ros.learn.data`), the model step (:mod:`vode_ros.learn.step`: warping and losses, no
I/O), the held-out evaluation (:mod:`vode_ros.learn.heldout`), logging
(:mod:`vode_ros.learn.run_log`: TensorBoard scalars and images), checkpoints
(:mod:`vode_ros.learn.checkpoint`) and here the loop: :class:`Trainer`, whose methods are the
algorithm's steps, and :func:`train`, which runs it.

The sample order and augmentation are functions of ``(seed, epoch, position)``, so a resumed run
continues with the very batches an uninterrupted run would have drawn.

Multi-GPU: launch with ``torchrun --nproc_per_node N -m vode_ros.cli train --config C``; each
process takes every N-th sample of the epoch order, gradients are averaged by
DistributedDataParallel (NCCL on GPUs, gloo on CPU), rank 0 logs and writes checkpoints.
Mixed precision (``train.amp``) applies on CUDA only.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from vode_ros.files import atomic_write
from vode_ros.learn import heldout
from vode_ros.learn.checkpoint import (
    checkpoint_state,
    holds_average,
    load_training_state,
    read_checkpoint,
    resume_path,
    save_checkpoint,
    trained_weights,
    unwrap,
)
from vode_ros.learn.data import TripletDataset, sample_rng, trajectory_warning
from vode_ros.learn.networks import build_networks, count_parameters, normalize
from vode_ros.learn.options import LearningOptions, TrainError, TrainOptions, load_options
from vode_ros.learn.pose_scale import calibrate_pose_scale, pose_scale_groups
from vode_ros.learn.run_log import Logger
from vode_ros.learn.step import model_step
from vode_ros.learn.synthetic import synthetic_sources
from vode_ros.progress import progress_bar


def make_ema(nets, decay: float):
    """Exponential moving averages of the networks' weights and buffers (BatchNorm statistics
    included), ``w_ema <- decay * w_ema + (1 - decay) * w`` after every step (torch's
    ``AveragedModel``). Averaging over the last ~1/(1 - decay) steps smooths out the step-to-step
    wander of self-supervised training."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    return [AveragedModel(unwrap(n), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
            for n in nets]


def make_weight_average(nets):
    """Equal-weight averages of the networks' weights and buffers (BatchNorm statistics
    included), one snapshot added at each ``train.average_every``-th step from
    ``train.average_from`` on (stochastic weight averaging, Izmailov et al. 2018, with torch's
    ``AveragedModel``): at a constant learning rate the snapshots lie around a wide basin, and
    their mean sits nearer its centre than any one of them."""
    from torch.optim.swa_utils import AveragedModel
    return [AveragedModel(unwrap(n), use_buffers=True) for n in nets]


def _device(train: LearningOptions, local_rank: int):
    want = train.device
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainError("train.device is 'cuda' but torch sees no GPU; set device: cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _lr_at(step: int, train: LearningOptions) -> float:
    lr = float(train.lr)
    decay = train.lr_decay_at
    if decay and step >= float(decay) * int(train.max_steps):
        lr *= 0.1
    return lr


def _setup_distributed(device_hint: str):
    """``(rank, world_size, local_rank, backend)``; initialises the process group under
    torchrun (backend None without one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    under_torchrun = "TORCHELASTIC_RUN_ID" in os.environ
    if world > 1 or under_torchrun or os.environ.get("VODE_DDP") == "1":
        import torch.distributed as dist
        if not dist.is_initialized():
            use_nccl = torch.cuda.is_available() and device_hint != "cpu"
            dist.init_process_group("nccl" if use_nccl else "gloo")
        return rank, world, local, dist.get_backend()
    return 0, 1, 0, None


class Trainer:
    """One training run: built from its options (networks, optimiser, data, resumed state), then
    :meth:`run`. Each step draws a batch (:meth:`load_batch`), runs the model step
    (:meth:`process_batch`), optimises (:meth:`optimise`) and logs (:meth:`log_step`); held-out
    evaluations (:meth:`evaluate`) pick ``best.pt``; :meth:`save` writes checkpoints.

    ``progress`` (``step``, ``epoch``, ``position``, ``best_val``, ``history``, ``base_steps``)
    is what a checkpoint stores and a resume restores; ``say`` receives the run's messages."""

    read_ground_truth = True   # held-out depth metrics where data.val has ground truth

    def __init__(self, options: TrainOptions, resume: str | bool | None = None, say=print):
        self.options = options
        self.say = say
        self.model_config = options.model_config
        self._set_up_process()
        self._load_data()
        self._build_networks()
        self._build_optimizer()
        self.progress = {"step": 0, "epoch": 0, "position": 0, "best_val": None, "history": []}
        if options.train.init_from:
            self._start_from(options.train.init_from)
        ema_decay = float(options.train.ema_decay or 0.0)
        nets = (self.depth_net, self.pose_net)
        self.average_from = int(options.train.average_from or 0)
        # the averaged weights: a moving average (every step) or snapshots' equal average
        self.ema = make_ema(nets, ema_decay) if ema_decay > 0 else \
            make_weight_average(nets) if self.average_from > 0 else None
        self._build_pose_scales()
        self._resume(resume)
        self._wrap_distributed()
        self.logger = Logger(self.out_dir, enabled=self.main)
        self._announce()
        self.bar = None
        self.first_loss = self.last_loss = None
        self.step_seconds: list = []
        self.last_checkpoint = time.time()

    # -- set-up -----------------------------------------------------------------------------------
    def _set_up_process(self) -> None:
        """Rank and device of this process, threads and seeds."""
        o = self.options
        self.out_dir = Path(o.out_dir)
        self.rank, self.world, local_rank, self.distributed = _setup_distributed(o.train.device)
        self.main = self.rank == 0
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if o.train.num_threads:
            torch.set_num_threads(int(o.train.num_threads))
        self.device = _device(o.train, local_rank)
        self.seed = int(o.seed)
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch.manual_seed(self.seed + self.rank)

    def _load_data(self) -> None:
        """The training and held-out triplets, and the held-out frames with ground-truth depth."""
        dc, main = self.options.data, self.main
        h, w = self.height, self.width = self.options.training_size()
        tc = self.options.train
        supervised = float(tc.silog or 0.0) > 0 or float(tc.grad_match or 0.0) > 0
        synth = synthetic_sources(dc.synthetic, self.out_dir, supervised,
                                  self.say if main else None) if dc.synthetic else []
        cache: dict = {}
        self.train_set = TripletDataset(list(dc.train) + synth, h, w, dc.min_motion,
                                        augment=True, flip_prob=dc.flip_prob, jitter=dc.jitter,
                                        progress=main and self.options.log.progress, cache=cache,
                                        min_parallax_px=float(dc.min_parallax_px or 0.0))
        if len(self.train_set) == 0:
            raise TrainError("no training triplet: every frame was skipped as motionless "
                             f"(min_motion {dc.min_motion}) or the sequences are too short")
        self.val_set = TripletDataset(dc.val, h, w, dc.min_motion, augment=False, cache=cache) \
            if dc.val else None
        self.gt_frames = heldout.load_gt_frames(dc.val, h, w) \
            if dc.val and main and self.read_ground_truth else []
        self.trained_on = ("self-supervised (images only) on " + self.train_set.describe() +
                           (" (the synthetic sequences also with their exact depth: SILog "
                            f"{tc.silog}, gradient matching {tc.grad_match})" if supervised and
                            synth else "") +
                           (f" (depth also against the odometry's map points: SILog {tc.silog})"
                            if supervised and any(s.map_points for s in self.train_set.specs)
                            else "") +
                           f"; training size {h}x{w}")

    def _build_networks(self) -> None:
        self.depth_net, self.pose_net = build_networks(self.model_config, seed=self.seed)
        self.depth_net.to(self.device).train()
        self.pose_net.to(self.device).train()
        if float(self.options.train.depth_lr_factor) == 0:
            # frozen: no gradients through it, and batch norm keeps its running statistics
            self.depth_net.requires_grad_(False)
            self.depth_net.eval()

    def _build_optimizer(self) -> None:
        """Adam over both networks (the depth network at ``depth_lr_factor`` times the rate),
        and the AMP gradient scaler on CUDA."""
        tc = self.options.train
        depth_factor = float(tc.depth_lr_factor)
        if depth_factor == 1.0:     # one group, the layout of earlier checkpoints (resume)
            groups = [{"params": list(self.depth_net.parameters()) +
                       list(self.pose_net.parameters())}]
        else:
            groups = [{"params": list(self.pose_net.parameters())}]
            if depth_factor > 0:
                groups.append({"params": list(self.depth_net.parameters()),
                               "lr_factor": depth_factor, "lr": float(tc.lr) * depth_factor})
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.Adam(groups, lr=float(tc.lr),
                                          weight_decay=float(tc.weight_decay or 0.0))
        self.use_amp = bool(tc.amp) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.use_amp else None

    def _start_from(self, path) -> None:
        """Fine-tuning: the networks start from another run's weights (its moving average where
        it kept one); its steps count in this run's checkpoints."""
        from vode_ros.learn.onnx_weights import is_onnx_source
        if is_onnx_source(path):
            self._start_from_onnx(path)
            return
        init = read_checkpoint(path)
        self.depth_net.load_state_dict(trained_weights(init, "depth"))
        self.pose_net.load_state_dict(trained_weights(init, "pose"))
        self.trained_on = (f"{init.get('trained_on', 'unknown')}, {int(init.get('step', 0))} "
                           f"steps; then fine-tuned: {self.trained_on}")
        self.progress["base_steps"] = int(init.get("step", 0))

    def _start_from_onnx(self, source) -> None:
        """Fine-tuning from exported models (``models/depth.onnx``, a folder of them): their
        weights read back from the ONNX initializers and checked against ONNX Runtime
        (:mod:`vode_ros.learn.onnx_weights`), batch norm restandardised on training images."""
        from vode_ros.learn.onnx_weights import (
            OnnxWeightsError,
            networks_from_onnx,
            restandardize_batchnorm,
        )
        try:
            nets, reports, _ = networks_from_onnx(source, self.model_config)
        except OnnxWeightsError as exc:
            raise TrainError(f"train.init_from: {exc}") from None
        sample = self.train_set.batch(list(np.linspace(0, len(self.train_set) - 1,
                                                       min(32, len(self.train_set)),
                                                       dtype=int)))["aug"]
        inputs = {"depth": normalize(sample[:, 1], self.model_config),
                  "pose": normalize(torch.cat([torch.cat([sample[:, 0], sample[:, 1]], 1),
                                               torch.cat([sample[:, 1], sample[:, 2]], 1)]),
                                    self.model_config)}
        mine = {"depth": self.depth_net, "pose": self.pose_net}
        steps, told = [], []
        for kind, net in nets.items():
            restandardize_batchnorm(net, inputs[kind])
            unwrap(mine[kind]).load_state_dict(net.state_dict())
            rep = reports[kind]
            steps.append(int(rep["train_steps"]) if str(rep["train_steps"]).isdigit() else 0)
            told.append(f"{kind} from {rep['path']} ({rep['matched_by_name']} convolutions "
                        f"matched by name, {rep['matched_by_order']} by order; ONNX Runtime "
                        f"agrees to {rep['max_abs_diff']:.1e})")
            missing = rep["not_in_file"]
            if missing and int(self.options.train.num_scales) > 1:
                self.say(f"vode train: warning: {rep['path']} lacks {', '.join(missing)} (not "
                         "exported); they start untrained; train.num_scales: 1 leaves them out")
        if "depth" in nets and float(self.options.train.depth_lr_factor) == 0:
            self.depth_net.eval()
        first = next(iter(reports.values()))
        self.say("vode train: init_from " + "; ".join(told))
        self.trained_on = (f"{first['trained_on']}, {max(steps)} steps; then fine-tuned: "
                           f"{self.trained_on}")
        self.progress["base_steps"] = max(steps)

    def _build_pose_scales(self) -> None:
        """One learned log translation scale per ``poses`` trajectory of the training sources
        (started from the pose network's when fine-tuning), and which scale judges each held-out
        source: those reading a trajectory the training reads are judged with it; groups
        numbered after the training's are trajectories only the held-out set reads."""
        tc = self.options.train
        self.pose_log_scale = None
        self.scale_groups, n_groups = pose_scale_groups(self.train_set.specs)
        if n_groups:
            start = calibrate_pose_scale(self.pose_net, self.train_set, self.model_config,
                                         self.device).to(self.device) if tc.init_from \
                else torch.zeros(n_groups, device=self.device)
            self.pose_log_scale = torch.nn.Parameter(start)
            self.group_of_source = torch.tensor([max(g, 0) for g in self.scale_groups],
                                                device=self.device)
            self.optimizer.add_param_group({"params": [self.pose_log_scale],
                                            "lr": float(tc.pose_scale_lr), "weight_decay": 0.0,
                                            "lr_factor": float(tc.pose_scale_lr) / float(tc.lr)})
        self.val_scale_groups = None
        if self.val_set is not None:
            both, _ = pose_scale_groups(self.train_set.specs + self.val_set.specs)
            self.val_scale_groups = [g if g < n_groups else -1
                                     for g in both[len(self.train_set.specs):]]

    def _resume(self, resume) -> None:
        path = resume_path(resume, self.out_dir)
        if path is None:
            return
        self.progress = load_training_state(path, self.depth_net, self.pose_net, self.optimizer,
                                            self.scaler, self.ema, self.pose_log_scale)
        p = self.progress
        self.say(f"vode train: resumed from {path} at step {p['step']} "
                 f"(epoch {p['epoch']}, position {p['position']})")

    def _wrap_distributed(self) -> None:
        if not self.distributed:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [self.device.index] if self.device.type == "cuda" else None
        if float(self.options.train.depth_lr_factor) > 0:  # (DDP refuses a frozen module)
            self.depth_net = DDP(self.depth_net, device_ids=ids)
        self.pose_net = DDP(self.pose_net, device_ids=ids)

    def _announce(self) -> None:
        """Rank 0 says what it trains on: trajectory warnings and scales, data, sizes, device."""
        if not self.main:
            return
        if self.pose_log_scale is not None:
            files: dict = {}           # each scale group's trajectory file
            for sp, g in zip(self.train_set.specs, self.scale_groups, strict=True):
                if g >= 0:
                    files.setdefault(g, sp.poses)
            for path in files.values():
                warning = trajectory_warning(path)
                if warning:
                    self.say(f"vode train: warning: {warning}")
            self.say("vode train: trajectory translation scales (pose network / trajectory at "
                     "the start; then learned): " +
                     ", ".join(f"{files[g]} {float(torch.exp(v)):.4g}"
                               for g, v in enumerate(self.pose_log_scale.detach())))
        ts, vs = self.train_set, self.val_set
        self.say(f"vode train: {len(ts)} training triplets ({ts.describe()}); "
                 f"skipped as motionless: {ts.skipped}; held-out: "
                 f"{len(vs) if vs else 0} triplets, {len(self.gt_frames)} depth frames; "
                 f"size {self.height}x{self.width}; depth "
                 f"{count_parameters(unwrap(self.depth_net)):,} + pose "
                 f"{count_parameters(unwrap(self.pose_net)):,} parameters; device {self.device}"
                 f"{' (AMP)' if self.use_amp else ''}; world size {self.world}"
                 f"{f' (DistributedDataParallel, {self.distributed})' if self.distributed else ''}")

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, max_steps: int | None = None) -> dict:
        """Train to ``train.max_steps`` (or ``max_steps`` more steps, the schedule unchanged),
        then write ``last.pt`` and ``summary.json``; returns the summary."""
        p = self.progress
        total_steps = int(self.options.train.max_steps)
        stop_at = total_steps if max_steps is None else min(total_steps,
                                                            p["step"] + int(max_steps))
        self.last_checkpoint = time.time()
        if self.main and self.options.log.progress:
            self.bar = progress_bar(total_steps, "train", unit="it")
            self.bar.n = self.bar.last_print_n = self.bar.initial = p["step"]  # a resume's start
            self.bar.refresh()
        try:
            if self.options.eval.at_start and p["step"] == 0:
                self.evaluate_and_keep_best()
            while p["step"] < stop_at:
                self.run_epoch(stop_at)
            self.save("last.pt")
        finally:
            self.close()
        return self.summary()

    def run_epoch(self, stop_at: int) -> None:
        """The rest of the current epoch (up to step ``stop_at``); at its end the epoch's
        evaluation (without ``eval.every_steps``) and ``last.pt``."""
        p = self.progress
        order = self.train_set.epoch_order(self.seed, p["epoch"])
        n_batches = len(order) // (int(self.options.train.batch_size) * self.world)
        while p["position"] < n_batches and self.keep_training(stop_at):
            self.step(order)
            self.after_step()
        if p["position"] >= n_batches:
            p["epoch"] += 1
            p["position"] = 0
            self.end_of_epoch()

    def keep_training(self, stop_at: int) -> bool:
        """Whether to take another step (until step ``stop_at``)."""
        return self.progress["step"] < stop_at

    def end_of_epoch(self) -> None:
        """The epoch's evaluation (without ``eval.every_steps``) and ``last.pt``."""
        if not self.options.eval.every_steps:
            self.evaluate_and_keep_best()
        self.save("last.pt")
        self.last_checkpoint = time.time()

    def step(self, order: np.ndarray) -> None:
        """One optimisation step on the batch at the current position of the epoch ``order``."""
        t0 = time.perf_counter()
        p = self.progress
        batch = self.load_batch(order)
        for g in self.optimizer.param_groups:
            g["lr"] = _lr_at(p["step"], self.options.train) * g.get("lr_factor", 1.0)
        out = self.process_batch(batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise TrainError(f"loss became {float(loss)} at step {p['step']}; "
                             "lower train.lr or enable grad_clip")
        self.optimise(loss)
        p["step"] += 1
        p["position"] += 1
        value = float(loss.detach())
        self.first_loss = value if self.first_loss is None else self.first_loss
        self.last_loss = value
        self.step_seconds.append(time.perf_counter() - t0)
        self.log_step(batch, out, value)

    def load_batch(self, order: np.ndarray) -> dict:
        """This process's batch at the current position: every ``world``-th slot of the epoch
        order, each sample augmented by its own ``(seed, epoch, slot)`` generator."""
        p, bs, world = self.progress, int(self.options.train.batch_size), self.world
        slots = [p["position"] * bs * world + self.rank + world * j for j in range(bs)]
        rngs = [sample_rng(self.seed, p["epoch"], sl) for sl in slots]
        batch = self.train_set.batch([order[sl] for sl in slots], rngs)
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def process_batch(self, batch: dict) -> dict:
        """The model step (:func:`vode_ros.learn.step.model_step`), under autocast with AMP."""
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.use_amp):
            return model_step(self.depth_net, self.pose_net, batch, self.model_config,
                              self.options.train,
                              pose_log_scale=None if self.pose_log_scale is None
                              else self.pose_log_scale[self.group_of_source])

    def optimise(self, loss: torch.Tensor) -> None:
        """Backward (scaled with AMP), gradient clipping, the optimiser step, the averages."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.distributed and self.pose_log_scale is not None:
            self._average_scale_gradients()
        if self.options.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, float(self.options.train.grad_clip))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None and not self.average_from:
            self._update_average()

    def _update_average(self) -> None:
        for e, net in zip(self.ema, (self.depth_net, self.pose_net), strict=True):
            e.update_parameters(unwrap(net))

    def _average_scale_gradients(self) -> None:
        """The trajectory scales live outside the DDP modules: average their gradients by hand
        so that every rank keeps the same scales."""
        import torch.distributed as dist
        if self.pose_log_scale.grad is None:
            self.pose_log_scale.grad = torch.zeros_like(self.pose_log_scale)
        dist.all_reduce(self.pose_log_scale.grad)
        self.pose_log_scale.grad /= self.world

    def log_step(self, batch: dict, out: dict, loss: float) -> None:
        """Progress bar, training scalars every ``log.every`` steps, sample images every
        ``log.image_every``."""
        step, lc = self.progress["step"], self.options.log
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", epoch=self.progress["epoch"])
        if self.main and step % int(lc.every) == 0:
            self.logger.scalars(step, self.step_scalars(out, loss))
        if self.main and lc.image_every and step % int(lc.image_every) == 0:
            self.logger.images(step, batch, out)

    def step_scalars(self, out: dict, loss: float) -> dict:
        """What the training scalars of a step are (TensorBoard ``train/*``, log.jsonl)."""
        scales = self.pose_log_scale
        return {"loss": loss, "photometric": out["photometric"],
                **{k: out[k] for k in ("pose_fit", "silog", "grad_match") if k in out},
                "smoothness": out["smoothness"],
                "automask_fraction": None if out["mask"] is None else out["mask"].mean(),
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds_per_step": float(np.mean(self.step_seconds[-50:])),
                "translation_norm": out["poses"][0][:, :3, 3].norm(dim=1).mean(),
                **({f"pose_scale/{k}": float(torch.exp(v)) for k, v in enumerate(scales.detach())}
                   if scales is not None else {})}

    def after_step(self) -> None:
        """Evaluation every ``eval.every_steps``, ``step-N.pt`` every ``log.keep_every``,
        ``last.pt`` every ``log.checkpoint_minutes``."""
        step, lc = self.progress["step"], self.options.log
        if self.average_from and step >= self.average_from and \
                (step - self.average_from) % int(self.options.train.average_every) == 0:
            self._update_average()
        every = self.options.eval.every_steps
        if every and step % int(every) == 0:
            self.evaluate_and_keep_best()
        if lc.keep_every and step % int(lc.keep_every) == 0:
            self.save(f"step-{step}.pt")
        if time.time() - self.last_checkpoint > 60.0 * float(lc.checkpoint_minutes):
            self.save("last.pt")
            self.last_checkpoint = time.time()

    # -- evaluation, checkpoints, the end ---------------------------------------------------------
    def evaluate(self) -> bool | None:
        """The held-out evaluation (rank 0, with data.val; the averaged weights where kept),
        logged and added to the history; whether it is the best so far by ``eval.select_by``
        (None when nothing was evaluated)."""
        if not self.main or self.val_set is None:
            return None
        ec, p = self.options.eval, self.progress
        nets = (self.ema[0].module, self.ema[1].module) if holds_average(self.ema) else \
            (unwrap(self.depth_net), unwrap(self.pose_net))
        res = heldout.evaluate(nets[0], nets[1], self.val_set, self.model_config,
                               self.options.train, self.device, int(ec.batch_size),
                               self.gt_frames, tuple(ec.depth_range), self.pose_log_scale,
                               self.val_scale_groups)
        self.logger.scalars(p["step"], res, "val")
        p["history"].append({"step": p["step"], **res})
        if ec.select_by not in res:
            raise TrainError(f"eval.select_by: {ec.select_by}, but the held-out evaluation gave "
                             f"only {sorted(res)} (pose_fit needs held-out sources with poses "
                             "that the training also reads)")
        better = p["best_val"] is None or res[ec.select_by] < p["best_val"]
        if better:
            p["best_val"] = res[ec.select_by]
        self.say(f"vode train: step {p['step']} held-out " +
                 ", ".join(f"{k} {v:.4f}" for k, v in res.items() if isinstance(v, float)) +
                 (" (best)" if better else ""))
        return better

    def evaluate_and_keep_best(self) -> None:
        if self.evaluate():
            self.save("best.pt")

    def save(self, name: str) -> None:
        """Write the checkpoint ``<out_dir>/name`` (rank 0)."""
        if self.main:
            save_checkpoint(self.out_dir / name, checkpoint_state(
                self.depth_net, self.pose_net, self.optimizer, self.scaler, self.options,
                self.progress, self.trained_on, self.ema, self.pose_log_scale))

    def close(self) -> None:
        """Close the progress bar and the logs; leave the process group."""
        if self.bar is not None:
            self.bar.close()
        self.logger.close()
        if self.distributed:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()

    def summary(self) -> dict:
        """The run's summary (also ``<out_dir>/summary.json``, written by rank 0)."""
        p, select_by = self.progress, self.options.eval.select_by
        t = self.step_seconds
        summary = {"out_dir": str(self.out_dir), "step": p["step"], "epoch": p["epoch"],
                   "first_loss": self.first_loss, "last_loss": self.last_loss,
                   "seconds_per_step": float(np.mean(t)) if t else None,
                   "best_val_photometric": p["best_val"] if select_by == "photometric"
                   else None, "best_val": {select_by: p["best_val"]},
                   "history": p["history"],
                   "trained_on": self.trained_on}
        if self.main:
            atomic_write(self.out_dir / "summary.json", json.dumps(summary, indent=2,
                                                                   default=str))
        return summary


def train(config, resume: str | bool | None = None, overrides: dict | None = None,
          max_steps: int | None = None, log=print) -> dict:
    """Train from a config (a YAML path, a mapping of the same form or :class:`TrainOptions`)
    with ``overrides`` (``{"train.max_steps": 10}``). ``resume``: a checkpoint path, or True for
    ``<out_dir>/last.pt`` when it exists. ``max_steps`` stops this call early (the schedule still
    follows ``train.max_steps``). ``log`` receives the run's messages. Returns a summary dict."""
    options = load_options(config, overrides)
    return Trainer(options, resume=resume, say=log).run(max_steps)
