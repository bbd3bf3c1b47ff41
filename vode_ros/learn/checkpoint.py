"""Training checkpoints: what they hold, writing them whole, reading them back.

A checkpoint (``<out_dir>/last.pt``, ``best.pt``, ``step-N.pt``) holds what ``vode export``
reads (``depth``, ``pose``, their moving averages ``depth_ema``/``pose_ema`` where training kept
them, ``model_config``, ``step``, ``trained_on``, ``train_config``) and what an exact resume
needs (optimiser and AMP scaler state, the averagers, the per-trajectory pose scales, epoch and
position in the epoch, the torch RNG state, the best held-out value, the evaluation history).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from vode_ros.files import atomic_path
from vode_ros.learn.options import TrainError, TrainOptions


def unwrap(net):
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return net.module if hasattr(net, "module") else net


def trained_weights(ckpt: dict, name: str) -> dict:
    """The weights a `vode train` checkpoint's network ``name`` ('depth' or 'pose') is used with
    (fine-tuning, export): the moving average where training kept one, else the trained
    weights."""
    return ckpt.get(f"{name}_ema") or ckpt[name]


def holds_average(averagers) -> bool:
    """Whether ``averagers`` (None, or one per network) hold at least one snapshot: before the
    first, their weights are the initial copy and nothing should use them."""
    return averagers is not None and int(averagers[0].n_averaged) > 0


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` whole or not at all (a crash leaves the previous file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def checkpoint_state(depth_net, pose_net, optimizer, scaler, options: TrainOptions,
                     progress: dict, trained_on: str, ema=None, pose_log_scale=None) -> dict:
    """The checkpoint of a run at ``progress`` (``step``, ``epoch``, ``position``, ``best_val``,
    ``history``, ``base_steps``)."""
    extra = {}
    if pose_log_scale is not None:
        extra["pose_log_scale"] = pose_log_scale.detach().cpu().clone()
    if ema is not None:            # the averagers for an exact resume, and the averaged weights
        extra["ema_state"] = [e.state_dict() for e in ema]
        if holds_average(ema):
            extra.update(depth_ema=ema[0].module.state_dict(),
                         pose_ema=ema[1].module.state_dict())
    return {"depth": unwrap(depth_net).state_dict(), "pose": unwrap(pose_net).state_dict(),
            **extra,
            "model_config": options.model_config,
            # step: optimisation steps behind these weights (with a fine-tuned run's base);
            # run_step: this run's own step, what a resume continues from
            "step": progress["step"] + int(progress.get("base_steps", 0)),
            "run_step": progress["step"], "base_steps": int(progress.get("base_steps", 0)),
            "epoch": progress["epoch"], "position": progress["position"],
            "best_val": progress["best_val"], "trained_on": trained_on,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "train_config": json.dumps(options.to_dict(), sort_keys=True, default=str),
            "history": progress.get("history", [])}


def resume_path(resume, out_dir: Path) -> Path | None:
    """The checkpoint a run resumes from: ``resume`` True or 'auto' means ``<out_dir>/last.pt``
    where it exists (else a fresh start), a path must exist, None or False: a fresh start."""
    if resume is True or resume == "auto":
        cand = Path(out_dir) / "last.pt"
        return cand if cand.is_file() else None
    if resume:
        path = Path(resume)
        if not path.is_file():
            raise TrainError(f"--resume: checkpoint '{path}' does not exist")
        return path
    return None


def read_checkpoint(path) -> dict:
    """A checkpoint's contents (every object it holds)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def load_training_state(path, depth_net, pose_net, optimizer=None, scaler=None, ema=None,
                        pose_log_scale=None) -> dict:
    """Restore a run from its checkpoint: weights, optimiser, scaler, averagers (started from
    the weights when averaging is switched on at resume), pose scales and RNG state. Returns the
    progress to continue from."""
    try:
        ckpt = read_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a bad file
        raise TrainError(f"cannot resume from '{path}': {str(exc).splitlines()[0][:200]}") \
            from None
    unwrap(depth_net).load_state_dict(ckpt["depth"])
    unwrap(pose_net).load_state_dict(ckpt["pose"])
    if pose_log_scale is not None:
        saved = ckpt.get("pose_log_scale")
        if saved is None or saved.shape != pose_log_scale.shape:
            raise TrainError(f"cannot resume from '{path}': it has no per-recording pose scale "
                             f"for the {pose_log_scale.numel()} recordings of this config "
                             "(was it trained with other data.train entries?)")
        with torch.no_grad():
            pose_log_scale.copy_(saved)
    if optimizer is not None and ckpt.get("optimizer"):
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as exc:
            raise TrainError(f"cannot resume from '{path}': its optimiser does not match this "
                             f"config ({exc})") from None
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if ema is not None:
        if ckpt.get("ema_state"):
            for e, st in zip(ema, ckpt["ema_state"], strict=True):
                e.load_state_dict(st)
        else:                      # averaging switched on at resume: start from the weights
            for e, net in zip(ema, (depth_net, pose_net), strict=True):
                e.module.load_state_dict(unwrap(net).state_dict())
    if ckpt.get("torch_rng") is not None:
        torch.set_rng_state(ckpt["torch_rng"])
    if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    return {"step": int(ckpt.get("run_step", ckpt["step"])),
            "base_steps": int(ckpt.get("base_steps", 0)), "epoch": int(ckpt["epoch"]),
            "position": int(ckpt["position"]), "best_val": ckpt.get("best_val"),
            "history": list(ckpt.get("history", []))}
