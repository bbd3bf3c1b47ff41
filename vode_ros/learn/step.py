"""The model step of self-supervised training: both networks forward on a batch, the sources warped
into the target, the loss. No I/O, no optimiser: :func:`model_step` is what training and the
held-out evaluation both run.

The steps, in Monodepth2's words: :func:`predict_poses` (the pose network on both pairs of a
triplet), :func:`warping_poses` (those poses, or a trajectory's where a source has one),
:func:`generate_images_pred` (the sources seen from the target at one scale) and
:func:`compute_losses` (photometric error, minimum reprojection, auto-masking, smoothness).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from vode_ros.learn import losses, warping
from vode_ros.learn.networks import disparity_to_depth, normalize
from vode_ros.learn.options import LearningOptions


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


def warping_poses(pose_net, batch: dict, config: dict, train: LearningOptions,
                  pose_log_scale: torch.Tensor | None = None):
    """``(poses, fit)``: the two ``T_source_target`` the sources are warped with, and the pose
    network's fit to the trajectory (None unless ``train.pose_distill`` > 0).

    Samples with ``has_pose`` take their trajectory's poses (translation scaled by
    ``pose_log_scale``), the others the pose network's. The pose network is not run when every
    sample has poses (it would learn nothing) unless it is to fit them (``pose_distill``)."""
    aug = batch["aug"]
    has = batch.get("has_pose")
    distill = float(train.pose_distill or 0.0)
    if has is None or not bool(has.any()):
        return predict_poses(pose_net, aug, config), None
    known = known_poses(batch, pose_log_scale)
    if bool(has.all()) and not hasattr(pose_net, "module") and distill <= 0:
        return known, None                                  # (DDP: every rank runs the net)
    net = predict_poses(pose_net, aug, config)
    poses = [torch.where(has[:, None, None], k, n) for k, n in zip(known, net, strict=True)]
    fit = None
    if distill > 0:
        # the target's scale is the depth's to learn (photometric), not the fit's
        fit = sum(losses.pose_fit(n[has].float(), k[has].detach().float()).mean()
                  for n, k in zip(net, known, strict=True)) / 2
    return poses, fit


@dataclass
class Views:
    """What one scale is judged on: the target, the sources (with the poses they are warped
    with), the intrinsics at that resolution and the unwarped sources' photometric errors
    (auto-masking; None without it)."""
    target: torch.Tensor
    sources: list
    poses: list
    K: torch.Tensor
    inv_K: torch.Tensor
    identity: list | None


def full_views(batch: dict, poses: list, automask: bool) -> Views:
    """The views at the input resolution: the triplet's two sources, and a rectified stereo
    partner with a known baseline where the batch has one (a third source whose fixed pose makes
    depth, and with it the pose network's translation, metric)."""
    images = batch["images"]
    target = images[:, 1]
    sources = [images[:, 0], images[:, 2]]
    if "stereo" in batch:
        sources = sources + [batch["stereo"]]
        poses = poses + [warping.stereo_transform(batch["baseline_m"], target.shape[0], 1.0,
                                                  target.dtype, target.device)]
    identity = [losses.photometric_error(s, target) for s in sources] if automask else None
    return Views(target, sources, poses, batch["K"], batch["inv_K"], identity)


def views_at(full: Views, size) -> Views:
    """The views resized to ``size`` (area averaging, intrinsics to match), for a scale judged
    at its own resolution (``train.scale_mode: native``; SfMLearner, Monodepth v1)."""
    h, w = full.target.shape[-2:]
    target = F.interpolate(full.target, size=size, mode="area")
    sources = [F.interpolate(x, size=size, mode="area") for x in full.sources]
    K = scale_K(full.K, size[1] / w, size[0] / h)
    identity = [losses.photometric_error(x, target) for x in sources] \
        if full.identity is not None else None
    return Views(target, sources, full.poses, K, torch.inverse(K), identity)


def generate_images_pred(disp: torch.Tensor, views: Views, config: dict) -> list[torch.Tensor]:
    """The sources warped into the target by the depth of ``disp`` (upsampled to the views'
    resolution where it is smaller) and their poses."""
    size = views.target.shape[-2:]
    if disp.shape[-2:] != size:
        disp = F.interpolate(disp, size=size, mode="bilinear", align_corners=False)
    depth = disparity_to_depth(disp, config["min_depth"], config["max_depth"])
    return [warping.warp(src, depth, T, views.K, views.inv_K)
            for src, T in zip(views.sources, views.poses, strict=True)]


def compute_losses(disp: torch.Tensor, views: Views, warped: list, target: torch.Tensor,
                   train: LearningOptions, deterministic: bool = False) -> dict:
    """One scale's photometric loss (per-pixel minimum over the sources, or their mean without
    ``train.min_reprojection``; auto-masked against the unwarped sources, with tie-breaking noise
    unless ``deterministic``), its auto-mask (None without auto-masking) and the edge-aware
    smoothness of its disparity against the target at the disparity's size."""
    errors = [losses.photometric_error(wp, views.target) for wp in warped]
    if not train.min_reprojection:
        errors = [torch.cat(errors, 1).mean(1, keepdim=True)]
    if views.identity is not None:
        loss_map, mask = losses.automask(errors, views.identity,
                                         noise=0.0 if deterministic else 1e-5)
    else:
        loss_map, mask = losses.min_reprojection(errors), None
    tgt_s = F.interpolate(target, size=disp.shape[-2:], mode="area") \
        if disp.shape[-2:] != target.shape[-2:] else target
    return {"photometric": loss_map.mean(), "mask": mask,
            "smoothness": losses.smoothness(disp, tgt_s)}


def supervised_losses(disps: list, batch: dict, config: dict, train: LearningOptions) -> dict:
    """The supervised losses of the samples with exact depth (``has_depth``, ``depth_gt``
    ``[B, 1, H, W]`` in metres, 0 where invalid): SILog averaged over the disparity scales
    (each upsampled to the depth's size) and gradient matching at full resolution, each per
    sample then averaged; empty where they are off or no sample has depth."""
    w_si, w_gm = float(train.silog or 0.0), float(train.grad_match or 0.0)
    has = batch.get("has_depth")
    if (w_si <= 0 and w_gm <= 0) or has is None or not bool(has.any()):
        return {}
    gt = batch["depth_gt"][has].float()
    mask = gt > 0
    out = {}
    si = 0.0
    for s, disp in enumerate(disps):
        d = disp[has].float()
        if d.shape[-2:] != gt.shape[-2:]:
            d = F.interpolate(d, size=gt.shape[-2:], mode="bilinear", align_corners=False)
        depth = disparity_to_depth(d, config["min_depth"], config["max_depth"])
        if w_si > 0:
            si = si + losses.silog(depth, gt, mask, float(train.silog_lambda)).mean()
        if s == 0 and w_gm > 0:
            out["grad_match"] = losses.gradient_matching(depth, gt, mask,
                                                         int(train.grad_match_scales)).mean()
    if w_si > 0:
        out["silog"] = si / len(disps)
    out["supervised"] = w_si * out.get("silog", 0.0) + w_gm * out.get("grad_match", 0.0)
    return out


def model_step(depth_net, pose_net, batch: dict, config: dict, train: LearningOptions,
               deterministic: bool = False, pose_log_scale: torch.Tensor | None = None) -> dict:
    """Forward both networks on a batch and compute the self-supervised loss.

    Monodepth2: each disparity scale (``train.num_scales``) is upsampled to the input size
    (``train.scale_mode: upsample``; ``native``: judged at its own size); each source is warped
    into the target (:func:`warping_poses`); the photometric loss (:func:`compute_losses`) plus
    edge-aware smoothness weighted ``smoothness / 2**scale``; averaged over scales; plus
    ``pose_distill`` times the pose fit (reported as ``pose_fit``) where it applies; plus the
    supervised losses of the samples with exact depth (:func:`supervised_losses`, reported as
    ``silog`` and ``grad_match``)."""
    disps = depth_net(normalize(batch["aug"][:, 1], config))[:int(train.num_scales)]
    poses, fit = warping_poses(pose_net, batch, config, train, pose_log_scale)
    full = full_views(batch, poses, bool(train.automask))
    native = train.scale_mode == "native"
    total, photo_sum, smooth_sum = 0.0, 0.0, 0.0
    out = {}
    for s, disp in enumerate(disps):
        disp = disp.float()
        views = views_at(full, disp.shape[-2:]) if native and s > 0 else full
        warped = generate_images_pred(disp, views, config)
        scale = compute_losses(disp, views, warped, full.target, train, deterministic)
        photo, smooth = scale["photometric"], scale["smoothness"]
        total = total + photo + float(train.smoothness) * smooth / (2 ** s)
        photo_sum, smooth_sum = photo_sum + photo.detach(), smooth_sum + smooth.detach()
        if s == 0:
            mask = scale["mask"]
            out.update(disp=disp.detach(), warped=[x.detach() for x in warped],
                       mask=None if mask is None else mask.detach(), photometric0=photo.detach())
    n = len(disps)
    loss = total / n
    sup = supervised_losses(disps, batch, config, train)
    if sup:
        loss = loss + sup.pop("supervised")
        out.update({k: v.detach() for k, v in sup.items()})
    if fit is not None:
        loss = loss + float(train.pose_distill) * fit
        out["pose_fit"] = fit.detach()
    out.update(loss=loss, photometric=photo_sum / n, smoothness=smooth_sum / n,
               poses=[p.detach() for p in full.poses])
    return out
