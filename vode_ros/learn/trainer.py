"""`vode train`: self-supervised training of the depth and pose networks.

Split as the design asks: configuration (:func:`load_config`), data (:mod:`vode_ros.learn.data`),
the model step (:func:`model_step`: warping and losses, no I/O), logging (:class:`Logger`:
TensorBoard scalars and images, tqdm), checkpointing (:func:`save_checkpoint`,
:func:`load_training_state`) and the loop (:func:`train`).

Checkpoints (``<out_dir>/last.pt``, ``best.pt``, ``step-N.pt``) hold what ``vode export`` reads
(``depth``, ``pose``, ``model_config``, ``step``, ``trained_on``) and what an exact resume needs
(optimiser and AMP scaler state, epoch and position in the epoch, the torch RNG state, the best
held-out loss). The sample order and augmentation are functions of ``(seed, epoch, position)``,
so a resumed run continues with the very batches an uninterrupted run would have drawn.

Multi-GPU: launch with ``torchrun --nproc_per_node N -m vode_ros.cli train --config C``; each
process takes every N-th sample of the epoch order, gradients are averaged by
DistributedDataParallel (NCCL on GPUs, gloo on CPU), rank 0 logs and writes checkpoints.
Mixed precision (``train.amp``) applies on CUDA only.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from vode_ros.errors import VodeError
from vode_ros.learn import losses, warping
from vode_ros.learn.data import SourceSpec, TripletDataset, sample_rng, trajectory_warning
from vode_ros.learn.networks import (build_networks, check_config, count_parameters,
                                     disparity_to_depth, make_config, normalize,
                                     trained_weights)


class TrainError(VodeError):
    """A training configuration or checkpoint is unusable."""


DEFAULTS = {
    "name": "vode",
    "out_dir": "runs/vode",
    "seed": 0,
    "model": {"variant": "cpu"},
    "data": {
        "height": None,            # training size; None: the model's input size
        "width": None,
        "min_motion": 1.0,         # grey levels (32x24 thumbnails) below which a triplet is skipped
        "min_parallax_px": 0.0,    # > 0: sources with max_stride pick frames by parallax
        "flip_prob": 0.5,
        "jitter": {},
        "train": [],               # SourceSpec dicts (path, frames, stride, weight, stream)
        "val": [],
        "synthetic": [],           # generate_sequence kwargs + stride/weight/frames
    },
    "train": {
        "batch_size": 6,
        "lr": 1e-4,
        "lr_decay_at": 0.75,       # fraction of max_steps where lr drops x0.1
        "weight_decay": 0.0,
        "max_steps": 20000,
        "smoothness": 1e-3,
        "num_scales": 4,
        "automask": True,
        "min_reprojection": True,
        "scale_mode": "upsample",  # upsample: every scale at input size (Monodepth2);
                                   # native: each scale at its own size (cheaper on CPU)
        "amp": True,               # CUDA only
        "grad_clip": 10.0,
        "ema_decay": 0.0,          # > 0: keep an exponential moving average of the weights
                                   # (evaluated, checkpointed as depth_ema/pose_ema, exported)
        "num_threads": 2,
        "device": "auto",          # auto | cpu | cuda
        "init_from": None,         # checkpoint whose network weights start this run (fine-tuning,
                                   # e.g. at a larger size); its optimiser and progress are not used
        "pose_scale_lr": 1e-3,     # learning rate of the per-recording log scale of the
                                   # translations of sources with a ``poses`` trajectory
        "pose_distill": 0.0,       # > 0: the pose network also learns the trajectory's relative
                                   # poses (losses.pose_fit, translation in the learned scale),
                                   # weighted by this, on samples whose source has ``poses``
        "depth_lr_factor": 1.0,    # the depth network's learning rate / lr; 0 freezes it
    },
    "log": {
        "every": 25,
        "image_every": 500,
        "checkpoint_minutes": 5.0,
        "keep_every": 0,           # also keep step-N.pt every this many steps (0: never)
        "progress": True,
    },
    "eval": {
        "every_steps": 0,          # 0: at the end of each epoch
        "at_start": False,         # also before the first step (a fine-tuning run's baseline)
        "batch_size": 8,
        "depth_range": [0.1, 10.0],
        "select_by": "photometric",  # what picks best.pt: the held-out photometric loss, or
                                     # pose_fit (held-out pose network vs trajectory; needs
                                     # train.pose_distill > 0 and held-out sources with poses)
    },
}


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if k not in out and where not in ("model.", "data.jitter."):
            raise TrainError(f"unknown training option '{where}{k}'; known: {sorted(out)}")
        if isinstance(out[k], dict) and k not in ("jitter", "model") and isinstance(v, dict):
            out[k] = _merge(out[k], v, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(path_or_dict=None, overrides: dict | None = None) -> dict:
    """The training configuration: :data:`DEFAULTS` updated by a YAML file (or dict) and by
    ``overrides`` (``{"train.max_steps": 10}`` dotted keys)."""
    user = {}
    if isinstance(path_or_dict, dict):
        user = path_or_dict
    elif path_or_dict is not None:
        import yaml
        p = Path(path_or_dict)
        if not p.is_file():
            raise TrainError(f"training config '{p}' does not exist; expected a YAML file "
                             "such as config/train/7scenes.yaml")
        user = yaml.safe_load(p.read_text()) or {}
    cfg = _merge(DEFAULTS, user)
    for key, value in (overrides or {}).items():
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise TrainError(f"unknown training option '{key}'")
            node = node[part]
        if parts[-1] not in node and parts[0] != "model":
            raise TrainError(f"unknown training option '{key}'")
        node[parts[-1]] = value
    try:
        model = dict(cfg["model"])
        cfg["model_config"] = make_config(model.pop("variant", "cpu"), **model)
    except ValueError as exc:
        raise TrainError(f"bad model section: {exc}") from None
    if not cfg["data"]["train"] and not cfg["data"]["synthetic"]:
        raise TrainError("data.train lists no recording; expected entries such as "
                         "{path: ../shared/data/7scenes-redkitchen, frames: '0:480', stride: 2}")
    return cfg


# -- the model step --------------------------------------------------------------------------------
def scale_K(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Intrinsics ``[B, 3, 3]`` of images resized by ``(sx, sy)`` (pixel-centre convention)."""
    K = K.clone()
    K[:, 0, 0] *= sx
    K[:, 1, 1] *= sy
    K[:, 0, 2] = (K[:, 0, 2] + 0.5) * sx - 0.5
    K[:, 1, 2] = (K[:, 1, 2] + 0.5) * sy - 0.5
    return K


def predict_poses(pose_net, aug: torch.Tensor, config: dict) -> list[torch.Tensor]:
    """``T_source_target [B, 4, 4]`` for the two sources of a triplet ``aug [B, 3, 3, H, W]``.

    The pose network reads (previous, current) and returns the current camera in the previous
    one: for the earlier source the pair (s, t) gives ``T_s_t`` directly; for the later one the
    pair (t, s) gives ``T_t_s``, which is inverted. Both pairs go through one forward pass."""
    b = aug.shape[0]
    pairs = torch.cat([torch.cat([aug[:, 0], aug[:, 1]], 1), torch.cat([aug[:, 1], aug[:, 2]], 1)])
    vec = pose_net(normalize(pairs, config)).float()
    return [warping.pose_vec_to_matrix(vec[:b]), warping.pose_vec_to_matrix(vec[b:], invert=True)]


def known_poses(batch: dict, log_scale: torch.Tensor | None) -> list[torch.Tensor]:
    """The trajectory poses of a batch (``T_known [B, 2, 4, 4]``) with each sample's translation
    times ``exp(log_scale[source])``: a monocular trajectory has its own unit, which the depth
    network's must match (one learned factor per recording)."""
    T = batch["T_known"]
    if log_scale is None:
        return [T[:, 0], T[:, 1]]
    s = torch.exp(log_scale[batch["source"]]).to(T.dtype)[:, None, None]
    out = []
    for j in range(2):
        Tj = T[:, j]
        out.append(torch.cat([torch.cat([Tj[:, :3, :3], Tj[:, :3, 3:] * s], 2), Tj[:, 3:]], 1))
    return out


def model_step(depth_net, pose_net, batch: dict, config: dict, train_cfg: dict,
               deterministic: bool = False, pose_log_scale: torch.Tensor | None = None) -> dict:
    """Forward both networks on a batch and compute the self-supervised loss.

    Monodepth2: every disparity scale is upsampled to the input size; each source is warped into
    the target; the per-pixel minimum of the photometric errors (``min_reprojection``), with
    auto-masking against the unwarped sources (``automask``); plus edge-aware smoothness of the
    scale's disparity weighted ``smoothness / 2**scale``; averaged over scales.

    Samples with ``has_pose`` (their recording has a ``poses`` trajectory) are warped with those
    poses (translation scaled by ``pose_log_scale``), the others with the pose network's; the
    pose network is not run when every sample has poses (it then learns nothing), unless
    ``train.pose_distill`` > 0: it then also fits those poses (``losses.pose_fit``, reported as
    ``pose_fit``), weighted by that."""
    images, aug = batch["images"], batch["aug"]
    K, inv_K = batch["K"], batch["inv_K"]
    target = images[:, 1]
    sources = [images[:, 0], images[:, 2]]
    h, w = target.shape[-2:]
    n_scales = int(train_cfg.get("num_scales", 4))
    disps = depth_net(normalize(aug[:, 1], config))[:n_scales]
    has = batch.get("has_pose")
    distill = float(train_cfg.get("pose_distill") or 0.0)
    fit = None
    if has is not None and bool(has.any()):
        known = known_poses(batch, pose_log_scale)
        if bool(has.all()) and not hasattr(pose_net, "module") and distill <= 0:
            poses = known                                   # (DDP: every rank runs the net)
        else:
            net = predict_poses(pose_net, aug, config)
            poses = [torch.where(has[:, None, None], k, n) for k, n in zip(known, net)]
            if distill > 0:
                # the target's scale is the depth's to learn (photometric), not the fit's
                fit = sum(losses.pose_fit(n[has].float(), k[has].detach().float()).mean()
                          for n, k in zip(net, known)) / 2
    else:
        poses = predict_poses(pose_net, aug, config)
    if "stereo" in batch:
        # a rectified partner camera with a known baseline: one more source whose pose is fixed,
        # so depth (and with it the pose network's translation) becomes metric
        sources = sources + [batch["stereo"]]
        poses = poses + [warping.stereo_transform(batch["baseline_m"], target.shape[0], 1.0,
                                                  target.dtype, target.device)]
    identity = [losses.photometric_error(s, target) for s in sources] \
        if train_cfg.get("automask", True) else None
    total, photo_sum, smooth_sum = 0.0, 0.0, 0.0
    out = {}
    native = train_cfg.get("scale_mode", "upsample") == "native"
    for s, disp in enumerate(disps):
        disp = disp.float()
        if native and s > 0:
            # each scale judged at its own resolution (cheaper; SfMLearner/Monodepth v1 style)
            size = disp.shape[-2:]
            tgt_l = F.interpolate(target, size=size, mode="area")
            srcs_l = [F.interpolate(x, size=size, mode="area") for x in sources]
            K_l = scale_K(K, size[1] / w, size[0] / h)
            inv_l = torch.inverse(K_l)
            depth = disparity_to_depth(disp, config["min_depth"], config["max_depth"])
            warped = [warping.warp(src, depth, T, K_l, inv_l) for src, T in zip(srcs_l, poses)]
            errors = [losses.photometric_error(wp, tgt_l) for wp in warped]
            ident_l = [losses.photometric_error(x, tgt_l) for x in srcs_l] \
                if identity is not None else None
        else:
            disp_full = F.interpolate(disp, size=(h, w), mode="bilinear",
                                      align_corners=False) if disp.shape[-2:] != (h, w) else disp
            depth = disparity_to_depth(disp_full, config["min_depth"], config["max_depth"])
            warped = [warping.warp(src, depth, T, K, inv_K) for src, T in zip(sources, poses)]
            errors = [losses.photometric_error(wp, target) for wp in warped]
            ident_l = identity
        if not train_cfg.get("min_reprojection", True):
            errors = [torch.cat(errors, 1).mean(1, keepdim=True)]
        if ident_l is not None:
            loss_map, mask = losses.automask(errors, ident_l, noise=0.0 if deterministic
                                             else 1e-5)
            photo = loss_map.mean()
        else:
            loss_map, mask = losses.min_reprojection(errors), None
            photo = loss_map.mean()
        tgt_s = F.interpolate(target, size=disp.shape[-2:], mode="area") \
            if disp.shape[-2:] != (h, w) else target
        smooth = losses.smoothness(disp, tgt_s)
        total = total + photo + float(train_cfg.get("smoothness", 1e-3)) * smooth / (2 ** s)
        photo_sum, smooth_sum = photo_sum + photo.detach(), smooth_sum + smooth.detach()
        if s == 0:
            out.update(disp=disp.detach(), warped=[x.detach() for x in warped],
                       mask=None if mask is None else mask.detach(), photometric0=photo.detach())
    n = len(disps)
    loss = total / n
    if fit is not None:
        loss = loss + distill * fit
        out["pose_fit"] = fit.detach()
    out.update(loss=loss, photometric=photo_sum / n, smoothness=smooth_sum / n,
               poses=[p.detach() for p in poses])
    return out


# -- checkpoints -----------------------------------------------------------------------------------
def _unwrap(net):
    return net.module if hasattr(net, "module") else net


def make_ema(nets, decay: float):
    """Exponential moving averages of the networks' weights and buffers (BatchNorm statistics
    included), ``w_ema <- decay * w_ema + (1 - decay) * w`` after every step (torch's
    ``AveragedModel``). Averaging over the last ~1/(1 - decay) steps smooths out the step-to-step
    wander of self-supervised training."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    return [AveragedModel(_unwrap(n), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
            for n in nets]


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic write (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def checkpoint_state(depth_net, pose_net, optimizer, scaler, cfg: dict, progress: dict,
                     trained_on: str, ema=None, pose_log_scale=None) -> dict:
    extra = {}
    if pose_log_scale is not None:
        extra["pose_log_scale"] = pose_log_scale.detach().cpu().clone()
    if ema is not None:            # the averaged weights, and the averagers for an exact resume
        extra.update(depth_ema=ema[0].module.state_dict(), pose_ema=ema[1].module.state_dict(),
                     ema_state=[e.state_dict() for e in ema])
    return {"depth": _unwrap(depth_net).state_dict(), "pose": _unwrap(pose_net).state_dict(),
            **extra,
            "model_config": cfg["model_config"],
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
            "train_config": json.dumps(cfg, sort_keys=True, default=str),
            "history": progress.get("history", [])}


def load_training_state(path, depth_net, pose_net, optimizer=None, scaler=None, ema=None,
                        pose_log_scale=None) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise TrainError(f"cannot resume from '{path}': {str(exc).splitlines()[0][:200]}") \
            from None
    _unwrap(depth_net).load_state_dict(ckpt["depth"])
    _unwrap(pose_net).load_state_dict(ckpt["pose"])
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
            for e, st in zip(ema, ckpt["ema_state"]):
                e.load_state_dict(st)
        else:                      # averaging switched on at resume: start from the weights
            for e, net in zip(ema, (depth_net, pose_net)):
                e.module.load_state_dict(_unwrap(net).state_dict())
    if ckpt.get("torch_rng") is not None:
        torch.set_rng_state(ckpt["torch_rng"])
    if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    return {"step": int(ckpt.get("run_step", ckpt["step"])),
            "base_steps": int(ckpt.get("base_steps", 0)), "epoch": int(ckpt["epoch"]),
            "position": int(ckpt["position"]), "best_val": ckpt.get("best_val"),
            "history": list(ckpt.get("history", []))}


def pose_scale_groups(specs) -> tuple[list[int], int]:
    """One translation scale per trajectory file: each source's group (-1: no ``poses``) and the
    number of groups (sources reading the same trajectory, e.g. two strides of one recording,
    share their scale)."""
    ids: dict = {}
    groups = [ids.setdefault(str(Path(sp.poses).resolve()), len(ids)) if sp.poses else -1
              for sp in specs]
    return groups, len(ids)


@torch.no_grad()
def calibrate_pose_scale(pose_net, dataset: TripletDataset, config: dict, device,
                         per_source: int = 48) -> torch.Tensor:
    """Initial log scale of each ``poses`` trajectory (``pose_scale_groups``): log of the pose
    network's median translation over the trajectory's, on up to ``per_source`` triplets of each
    source reading it. Starts a fine-tuning run in the units the depth network already has; the
    scale is then learned (``train.pose_scale_lr``)."""
    groups, n = pose_scale_groups(dataset.specs)
    was = pose_net.training
    pose_net.eval()
    t_net: list = [[] for _ in range(n)]
    t_traj: list = [[] for _ in range(n)]
    for k, g in enumerate(groups):
        if g < 0:
            continue
        items = [i for i, it in enumerate(dataset.items) if it[0] == k]
        if not items:
            continue
        pick = [items[int(j)] for j in np.linspace(0, len(items) - 1,
                                                   min(per_source, len(items)))]
        batch = dataset.batch(pick)
        ok = batch["has_pose"]
        if not bool(ok.any()):
            continue
        net = predict_poses(pose_net, batch["aug"].to(device), config)
        t_net[g] += [T[ok.to(device), :3, 3].norm(dim=1).cpu() for T in net]
        t_traj[g] += [batch["T_known"][ok, j, :3, 3].norm(dim=1) for j in range(2)]
    out = torch.zeros(n)
    for g in range(n):
        if not t_net[g]:
            continue
        a, b = torch.cat(t_net[g]), torch.cat(t_traj[g])
        good = b > 1e-9
        if good.any() and a[good].median() > 0:
            out[g] = float(torch.log(a[good].median() / b[good].median()))
    pose_net.train(was)
    return out


# -- logging ---------------------------------------------------------------------------------------
class Logger:
    """TensorBoard scalars/images and a JSON-lines log under ``out_dir`` (rank 0 only)."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.enabled = enabled
        self.writer = None
        self.jsonl = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(Path(out_dir) / "tb"))
            except Exception:  # noqa: BLE001 - tensorboard missing: keep the JSON log
                self.writer = None
            self.jsonl = open(Path(out_dir) / "log.jsonl", "a")

    def scalars(self, step: int, values: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items() if v is not None}
        if self.writer is not None:
            for k, v in clean.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.jsonl.write(json.dumps({"step": step, "kind": prefix, **clean}) + "\n")
        self.jsonl.flush()

    def images(self, step: int, batch: dict, out: dict) -> None:
        if not self.enabled or self.writer is None:
            return
        tgt = batch["images"][0, 1].detach().float().cpu().clamp(0, 1)
        disp = out["disp"][0].float().cpu()
        disp = (disp - disp.min()) / (disp.max() - disp.min() + 1e-7)
        self.writer.add_image("sample/target", tgt, step)
        self.writer.add_image("sample/disparity", disp, step)
        self.writer.add_image("sample/warped_prev", out["warped"][0][0].float().cpu().clamp(0, 1),
                              step)
        if out.get("mask") is not None:
            self.writer.add_image("sample/automask", out["mask"][0].float().cpu(), step)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()


# -- held-out evaluation ---------------------------------------------------------------------------
@torch.no_grad()
def evaluate(depth_net, pose_net, dataset: TripletDataset, config: dict, train_cfg: dict,
             device, batch_size: int = 8, gt_frames=None, depth_range=(0.1, 10.0),
             pose_log_scale: torch.Tensor | None = None, scale_of_source=None) -> dict:
    """Held-out photometric loss (scale 0, no augmentation, automask without noise) and, where
    ``gt_frames`` (``[(image_uint8_resized, gt_depth_m)]``) are given, depth abs_rel / a1 after
    per-image median scaling. For reporting and model selection by the photometric loss (or
    ``pose_fit``, with ``train.pose_distill`` > 0: the pose network against the trajectory).

    Warps use the pose network, except for held-out sources whose ``poses`` trajectory is one
    the training reads (``scale_of_source[k]``: its index in ``pose_log_scale``, -1 for none):
    those are judged with the trajectory and its learned scale, as in training."""
    was = (depth_net.training, pose_net.training)
    depth_net.eval()
    pose_net.eval()
    cfg = dict(train_cfg, num_scales=1)
    total, n = 0.0, 0
    fit_total, fit_n = 0.0, 0
    for i in range(0, len(dataset), batch_size):
        idx = list(range(i, min(i + batch_size, len(dataset))))
        batch = {k: v.to(device) for k, v in dataset.batch(idx).items()}
        log_scale = None
        if pose_log_scale is not None and scale_of_source is not None:
            group = torch.as_tensor(scale_of_source, device=device)[batch["source"]]
            batch["has_pose"] = batch["has_pose"] & (group >= 0)
            log_scale = pose_log_scale.detach()[group.clamp(min=0)]
        else:
            batch.pop("has_pose")
        out = model_step(depth_net, pose_net, batch, config, cfg, deterministic=True,
                         pose_log_scale=log_scale)
        total += float(out["photometric"]) * len(idx)
        n += len(idx)
        if "pose_fit" in out:
            k = int(batch["has_pose"].sum())
            fit_total, fit_n = fit_total + float(out["pose_fit"]) * k, fit_n + k
    result = {"photometric": total / max(n, 1)}
    if fit_n:
        result["pose_fit"] = fit_total / fit_n
    if gt_frames:
        result.update(depth_metrics(depth_net, gt_frames, config, device, depth_range))
    depth_net.train(was[0])
    pose_net.train(was[1])
    return result


@torch.no_grad()
def depth_metrics(depth_net, gt_frames, config, device, depth_range=(0.1, 10.0)) -> dict:
    abs_rel, a1 = [], []
    for img, gt in gt_frames:
        x = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0).to(device)
        disp = depth_net(normalize(x, config), scales=(0,))[0].float()
        disp = F.interpolate(disp, size=gt.shape, mode="bilinear", align_corners=False)
        pred = disparity_to_depth(disp, config["min_depth"], config["max_depth"])[0, 0].cpu()
        pred = pred.numpy().astype(np.float64)
        valid = np.isfinite(gt) & (gt > depth_range[0]) & (gt < depth_range[1])
        if valid.sum() < 10:
            continue
        p, g = pred[valid], gt[valid].astype(np.float64)
        p = p * np.median(g) / np.median(p)
        p = np.clip(p, depth_range[0], depth_range[1])
        abs_rel.append(float(np.mean(np.abs(p - g) / g)))
        ratio = np.maximum(p / g, g / p)
        a1.append(float(np.mean(ratio < 1.25)))
    if not abs_rel:
        return {}
    return {"abs_rel": float(np.mean(abs_rel)), "a1": float(np.mean(a1)), "depth_frames": len(a1)}


def load_gt_frames(specs, height: int, width: int, limit: int = 200):
    """``(resized image, gt depth)`` of the held-out frames that have ground-truth depth."""
    import cv2

    from vode_ros.learn.data import open_spec
    out = []
    for spec in specs:
        seq = open_spec(SourceSpec.from_any(spec))
        for f in seq:
            if f.gt_depth is None or not np.isfinite(f.gt_depth).any():
                continue
            out.append((cv2.resize(f.image, (width, height), interpolation=cv2.INTER_AREA),
                        f.gt_depth))
            if len(out) >= limit:
                return out
    return out


# -- data set-up -----------------------------------------------------------------------------------
def synthetic_sources(cfg: dict, out_dir: Path) -> list[dict]:
    """Render the configured synthetic sequences once (under ``out_dir/synth``) and return them as
    data sources. Only their images are used (training stays self-supervised)."""
    specs = []
    for i, item in enumerate(cfg["data"]["synthetic"]):
        item = dict(item)
        src = {k: item.pop(k) for k in ("stride", "weight", "frames") if k in item}
        name = "synth-" + "-".join(f"{k}{v}" for k, v in sorted(item.items()))
        path = out_dir / "synth" / name
        if not (path / "rgb.txt").is_file():
            from vode_ros.datasets import generate_sequence
            generate_sequence(path, **item)
        specs.append({"path": str(path), "name": name, **src})
    return specs


def describe_training_data(dataset: TripletDataset) -> str:
    return dataset.describe()


# -- the loop --------------------------------------------------------------------------------------
def _device(train_cfg: dict, local_rank: int):
    want = train_cfg.get("device", "auto")
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainError("train.device is 'cuda' but torch sees no GPU; set device: cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _lr_at(step: int, train_cfg: dict) -> float:
    lr = float(train_cfg["lr"])
    decay = train_cfg.get("lr_decay_at")
    if decay and step >= float(decay) * int(train_cfg["max_steps"]):
        lr *= 0.1
    return lr


def _setup_distributed(device_hint: str):
    """``(rank, world_size, local_rank)``; initialises the process group under torchrun."""
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


def train(config, resume: str | bool | None = None, overrides: dict | None = None,
          max_steps: int | None = None, log=print) -> dict:
    """Train from a config (path or dict). ``resume``: a checkpoint path, or True for
    ``<out_dir>/last.pt`` when it exists. ``max_steps`` stops this call early (the schedule still
    follows ``train.max_steps``). Returns a summary dict."""
    cfg = load_config(config, overrides)
    tc, lc, dc = cfg["train"], cfg["log"], cfg["data"]
    out_dir = Path(cfg["out_dir"])
    rank, world, local_rank, distributed = _setup_distributed(tc.get("device", "auto"))
    main = rank == 0
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if tc.get("num_threads"):
        torch.set_num_threads(int(tc["num_threads"]))
    device = _device(tc, local_rank)
    seed = int(cfg["seed"])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed + rank)
    mc = cfg["model_config"]
    h = int(dc["height"] or mc["input_height"])
    w = int(dc["width"] or mc["input_width"])
    if h % 32 or w % 32:
        raise TrainError(f"training size {h}x{w} must be multiples of 32")

    synth = synthetic_sources(cfg, out_dir) if dc["synthetic"] else []
    cache: dict = {}
    train_set = TripletDataset(list(dc["train"]) + synth, h, w, dc["min_motion"],
                               augment=True, flip_prob=dc["flip_prob"], jitter=dc["jitter"],
                               progress=main and lc["progress"], cache=cache,
                               min_parallax_px=float(dc.get("min_parallax_px") or 0.0))
    if len(train_set) == 0:
        raise TrainError("no training triplet: every frame was skipped as motionless "
                         f"(min_motion {dc['min_motion']}) or the sequences are too short")
    val_set = TripletDataset(dc["val"], h, w, dc["min_motion"], augment=False, cache=cache) \
        if dc["val"] else None
    gt_frames = load_gt_frames(dc["val"], h, w) if dc["val"] and main else []
    trained_on = ("self-supervised (images only) on " + train_set.describe() +
                  f"; training size {h}x{w}")

    depth_net, pose_net = build_networks(mc, seed=seed)
    depth_net.to(device).train()
    pose_net.to(device).train()
    depth_factor = float(tc.get("depth_lr_factor", 1.0))
    if depth_factor < 0:
        raise TrainError(f"train.depth_lr_factor must be >= 0, got {depth_factor}")
    if depth_factor == 0:
        # frozen: no gradients through it, and batch norm keeps its running statistics
        depth_net.requires_grad_(False)
        depth_net.eval()
    if depth_factor == 1.0:     # one group, the layout of earlier checkpoints (resume)
        groups = [{"params": list(depth_net.parameters()) + list(pose_net.parameters())}]
    else:
        groups = [{"params": list(pose_net.parameters())}]
        if depth_factor > 0:
            groups.append({"params": list(depth_net.parameters()), "lr_factor": depth_factor,
                           "lr": float(tc["lr"]) * depth_factor})
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.Adam(groups, lr=float(tc["lr"]),
                                 weight_decay=float(tc.get("weight_decay") or 0.0))
    select_by = cfg["eval"].get("select_by", "photometric")
    if select_by not in ("photometric", "pose_fit"):
        raise TrainError(f"eval.select_by must be photometric or pose_fit, got {select_by!r}")
    if select_by == "pose_fit" and not float(tc.get("pose_distill") or 0.0) > 0:
        raise TrainError("eval.select_by: pose_fit needs train.pose_distill > 0")
    use_amp = bool(tc.get("amp")) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None

    progress = {"step": 0, "epoch": 0, "position": 0, "best_val": None, "history": []}
    if tc.get("init_from"):
        init = torch.load(tc["init_from"], map_location="cpu", weights_only=False)
        depth_net.load_state_dict(trained_weights(init, "depth"))
        pose_net.load_state_dict(trained_weights(init, "pose"))
        trained_on = (f"{init.get('trained_on', 'unknown')}, {int(init.get('step', 0))} steps; "
                      f"then fine-tuned: {trained_on}")
        progress["base_steps"] = int(init.get("step", 0))
    ema_decay = float(tc.get("ema_decay") or 0.0)
    if not 0.0 <= ema_decay < 1.0:
        raise TrainError(f"train.ema_decay must be in [0, 1), got {ema_decay}")
    ema = make_ema((depth_net, pose_net), ema_decay) if ema_decay > 0 else None
    pose_log_scale = None
    scale_groups, n_groups = pose_scale_groups(train_set.specs)
    if n_groups:
        pose_log_scale = torch.nn.Parameter(
            calibrate_pose_scale(pose_net, train_set, mc, device).to(device)
            if tc.get("init_from") else torch.zeros(n_groups, device=device))
        group_of_source = torch.tensor([max(g, 0) for g in scale_groups], device=device)
        optimizer.add_param_group({"params": [pose_log_scale],
                                   "lr": float(tc["pose_scale_lr"]), "weight_decay": 0.0,
                                   "lr_factor": float(tc["pose_scale_lr"]) / float(tc["lr"])})
    # held-out sources reading a trajectory the training reads are judged with it (and its
    # scale): groups numbered after the training's are trajectories only the held-out set reads
    val_scale_groups = None
    if val_set is not None:
        both, _ = pose_scale_groups(train_set.specs + val_set.specs)
        val_scale_groups = [g if g < n_groups else -1 for g in both[len(train_set.specs):]]
    resume_path = None
    if resume is True or resume == "auto":
        cand = out_dir / "last.pt"
        resume_path = cand if cand.is_file() else None
    elif resume:
        resume_path = Path(resume)
        if not resume_path.is_file():
            raise TrainError(f"--resume: checkpoint '{resume_path}' does not exist")
    if resume_path is not None:
        progress = load_training_state(resume_path, depth_net, pose_net, optimizer, scaler, ema,
                                       pose_log_scale)
        log(f"vode train: resumed from {resume_path} at step {progress['step']} "
            f"(epoch {progress['epoch']}, position {progress['position']})")

    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [device.index] if device.type == "cuda" else None
        if depth_factor > 0:           # (DDP refuses a module with nothing to train)
            depth_net = DDP(depth_net, device_ids=ids)
        pose_net = DDP(pose_net, device_ids=ids)

    logger = Logger(out_dir, enabled=main)
    if main and pose_log_scale is not None:
        files: dict = {}           # each scale group's trajectory file
        for sp, g in zip(train_set.specs, scale_groups):
            if g >= 0:
                files.setdefault(g, sp.poses)
        for path in files.values():
            warning = trajectory_warning(path)
            if warning:
                log(f"vode train: warning: {warning}")
        log("vode train: trajectory translation scales (pose network / trajectory at the start; "
            "then learned): " + ", ".join(f"{files[g]} {float(torch.exp(v)):.4g}"
                                         for g, v in enumerate(pose_log_scale.detach())))
    if main:
        log(f"vode train: {len(train_set)} training triplets ({train_set.describe()}); "
            f"skipped as motionless: {train_set.skipped}; held-out: "
            f"{len(val_set) if val_set else 0} triplets, {len(gt_frames)} depth frames; "
            f"size {h}x{w}; depth {count_parameters(_unwrap(depth_net)):,} + pose "
            f"{count_parameters(_unwrap(pose_net)):,} parameters; device {device}"
            f"{' (AMP)' if use_amp else ''}; world size {world}"
            f"{f' (DistributedDataParallel, {distributed})' if distributed else ''}")
    bs = int(tc["batch_size"])
    total_steps = int(tc["max_steps"])
    stop_at = total_steps if max_steps is None else min(total_steps,
                                                        progress["step"] + int(max_steps))
    last_ckpt = time.time()
    bar = None
    if main and lc["progress"]:
        from tqdm import tqdm
        bar = tqdm(total=total_steps, initial=progress["step"], desc="train", dynamic_ncols=True)
    first_loss = last_loss = None
    t_steps = []

    def _save(name: str):
        if main:
            save_checkpoint(out_dir / name, checkpoint_state(depth_net, pose_net, optimizer,
                                                             scaler, cfg, progress, trained_on,
                                                             ema, pose_log_scale))

    def _evaluate():
        if not main or val_set is None:
            return None
        nets = (ema[0].module, ema[1].module) if ema is not None else \
            (_unwrap(depth_net), _unwrap(pose_net))
        res = evaluate(nets[0], nets[1], val_set, mc, tc, device,
                       int(cfg["eval"]["batch_size"]), gt_frames,
                       tuple(cfg["eval"]["depth_range"]), pose_log_scale, val_scale_groups)
        logger.scalars(progress["step"], res, "val")
        progress["history"].append({"step": progress["step"], **res})
        if select_by not in res:
            raise TrainError(f"eval.select_by: {select_by}, but the held-out evaluation gave "
                             f"only {sorted(res)} (pose_fit needs held-out sources with poses "
                             "that the training also reads)")
        better = progress["best_val"] is None or res[select_by] < progress["best_val"]
        if better:
            progress["best_val"] = res[select_by]
        log(f"vode train: step {progress['step']} held-out " +
            ", ".join(f"{k} {v:.4f}" for k, v in res.items() if isinstance(v, float)) +
            (" (best)" if better else ""))
        return better

    try:
        if cfg["eval"]["at_start"] and progress["step"] == 0 and _evaluate():
            _save("best.pt")
        while progress["step"] < stop_at:
            order = train_set.epoch_order(seed, progress["epoch"])
            n_batches = len(order) // (bs * world)
            while progress["position"] < n_batches and progress["step"] < stop_at:
                t0 = time.perf_counter()
                pos = progress["position"]
                slots = [pos * bs * world + rank + world * j for j in range(bs)]
                rngs = [sample_rng(seed, progress["epoch"], sl) for sl in slots]
                batch = train_set.batch([order[sl] for sl in slots], rngs)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                for g in optimizer.param_groups:
                    g["lr"] = _lr_at(progress["step"], tc) * g.get("lr_factor", 1.0)
                with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                    out = model_step(depth_net, pose_net, batch, mc, tc,
                                     pose_log_scale=None if pose_log_scale is None
                                     else pose_log_scale[group_of_source])
                loss = out["loss"]
                if not torch.isfinite(loss):
                    raise TrainError(f"loss became {float(loss)} at step {progress['step']}; "
                                     "lower train.lr or enable grad_clip")
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if distributed and pose_log_scale is not None:
                    # the trajectory scales live outside the DDP modules: average their
                    # gradients by hand so that every rank keeps the same scales
                    import torch.distributed as dist
                    if pose_log_scale.grad is None:
                        pose_log_scale.grad = torch.zeros_like(pose_log_scale)
                    dist.all_reduce(pose_log_scale.grad)
                    pose_log_scale.grad /= world
                if tc.get("grad_clip"):
                    torch.nn.utils.clip_grad_norm_(params, float(tc["grad_clip"]))
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                if ema is not None:
                    for e, net in zip(ema, (depth_net, pose_net)):
                        e.update_parameters(_unwrap(net))
                progress["step"] += 1
                progress["position"] += 1
                lv = float(loss.detach())
                first_loss = lv if first_loss is None else first_loss
                last_loss = lv
                t_steps.append(time.perf_counter() - t0)
                step = progress["step"]
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{lv:.4f}", epoch=progress["epoch"])
                if main and step % int(lc["every"]) == 0:
                    logger.scalars(step, {"loss": lv, "photometric": out["photometric"],
                                      **({"pose_fit": out["pose_fit"]} if "pose_fit" in out
                                         else {}),
                                          "smoothness": out["smoothness"],
                                          "automask_fraction": None if out["mask"] is None
                                          else out["mask"].mean(),
                                          "lr": optimizer.param_groups[0]["lr"],
                                          "seconds_per_step": float(np.mean(t_steps[-50:])),
                                          "translation_norm": out["poses"][0][:, :3, 3]
                                          .norm(dim=1).mean(),
                                          **({f"pose_scale/{k}": float(torch.exp(v))
                                              for k, v in enumerate(pose_log_scale.detach())}
                                             if pose_log_scale is not None else {})})
                if main and lc["image_every"] and step % int(lc["image_every"]) == 0:
                    logger.images(step, batch, out)
                if cfg["eval"]["every_steps"] and step % int(cfg["eval"]["every_steps"]) == 0:
                    if _evaluate():
                        _save("best.pt")
                if lc["keep_every"] and step % int(lc["keep_every"]) == 0:
                    _save(f"step-{step}.pt")
                if time.time() - last_ckpt > 60.0 * float(lc["checkpoint_minutes"]):
                    _save("last.pt")
                    last_ckpt = time.time()
            if progress["position"] >= n_batches:
                progress["epoch"] += 1
                progress["position"] = 0
                if not cfg["eval"]["every_steps"]:
                    if _evaluate():
                        _save("best.pt")
                _save("last.pt")
                last_ckpt = time.time()
        _save("last.pt")
    finally:
        if bar is not None:
            bar.close()
        logger.close()
        if distributed:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
    summary = {"out_dir": str(out_dir), "step": progress["step"], "epoch": progress["epoch"],
               "first_loss": first_loss, "last_loss": last_loss,
               "seconds_per_step": float(np.mean(t_steps)) if t_steps else None,
               "best_val_photometric": progress["best_val"] if select_by == "photometric"
               else None, "best_val": {select_by: progress["best_val"]},
               "history": progress["history"],
               "trained_on": trained_on}
    if main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
