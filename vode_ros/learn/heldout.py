"""Held-out evaluation during training: the photometric loss of the held-out triplets, the pose
network's fit to a trajectory where they have one, and depth abs_rel / a1 against ground-truth
depth after per-image median scaling (for reporting and for picking ``best.pt``)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.nn import functional as F

from vode_ros.learn.data import SourceSpec, TripletDataset, open_spec
from vode_ros.learn.networks import disparity_to_depth, normalize
from vode_ros.learn.options import LearningOptions
from vode_ros.learn.step import model_step


@torch.no_grad()
def evaluate(depth_net, pose_net, dataset: TripletDataset, config: dict, train: LearningOptions,
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
    scale0 = dataclasses.replace(train, num_scales=1)
    total, n = 0.0, 0
    fit_total, fit_n = 0.0, 0
    si_total, si_n = 0.0, 0
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
        out = model_step(depth_net, pose_net, batch, config, scale0, deterministic=True,
                         pose_log_scale=log_scale)
        total += float(out["photometric"]) * len(idx)
        n += len(idx)
        if "pose_fit" in out:
            k = int(batch["has_pose"].sum())
            fit_total, fit_n = fit_total + float(out["pose_fit"]) * k, fit_n + k
        if "silog" in out:
            k = int(batch["has_depth"].sum())
            si_total, si_n = si_total + float(out["silog"]) * k, si_n + k
    result = {"photometric": total / max(n, 1)}
    if fit_n:
        result["pose_fit"] = fit_total / fit_n
    if si_n:       # the supervised depth of the held-out frames (map points, synthetic depth)
        result["silog"] = si_total / si_n
        result["photometric+silog"] = result["photometric"] + \
            float(train.silog) * result["silog"]
    if gt_frames:
        result.update(depth_metrics(depth_net, gt_frames, config, device, depth_range))
    depth_net.train(was[0])
    pose_net.train(was[1])
    return result


@torch.no_grad()
def depth_metrics(depth_net, gt_frames, config, device, depth_range=(0.1, 10.0)) -> dict:
    """Mean abs_rel and a1 (``max(p/g, g/p) < 1.25``) of the depth network over ``gt_frames``
    after per-image median scaling, on ground truth within ``depth_range``; {} without a frame
    of at least 10 valid pixels."""
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
