"""One translation scale per trajectory: a source's ``poses`` trajectory (a monocular odometry's)
has its own unit, which the depth network's must match; training learns the log of the factor
(``train.pose_scale_lr``), started from the pose network's translations where it was trained."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vode_ros.learn.data import TripletDataset
from vode_ros.learn.step import predict_poses


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
