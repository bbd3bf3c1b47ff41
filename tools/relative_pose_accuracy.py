#!/usr/bin/env python3
"""How accurate are the relative poses a depth training would warp with? (evaluation only)

For frame pairs ``(a, a + stride)`` of a recording with ground-truth poses, prints the median
rotation error (degrees) and translation-direction error (degrees) of

- the pose model (``--pose-model``, default ``models/pose.onnx``) on the pair, and
- a trajectory file (``--trajectory``, TUM, e.g. ``vode process REC --out DIR`` ->
  ``DIR/trajectory.txt``), as ``inv(P_a) @ P_b``,

against the ground truth's relative pose. Ground truth is read here only to score: nothing is
fitted. This is the measurement behind the shipped depth model's last training stage (poses
from geometry instead of the pose network; docs/training.md):

    vode process ../shared/data/7scenes-redkitchen --frames 0:480 --out out/vo7
    python tools/relative_pose_accuracy.py ../shared/data/7scenes-redkitchen --frames 0:480 \\
        --trajectory out/vo7/trajectory.txt --strides 2 4

Rotation errors are angles of ``R_est^T R_gt``; they are comparable to parallax: at the
network's 128-pixel width (focal ~117 px on 7-Scenes) 0.1 degree moves the image by 0.2 px.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pair_errors(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    """(rotation error, translation direction error), degrees."""
    rot = Rotation.from_matrix(T_est[:3, :3].T @ T_gt[:3, :3]).magnitude()
    te, tg = T_est[:3, 3], T_gt[:3, 3]
    den = np.linalg.norm(te) * np.linalg.norm(tg)
    ang = np.arccos(np.clip(te @ tg / den, -1.0, 1.0)) if den > 0 else np.nan
    return float(np.degrees(rot)), float(np.degrees(ang))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="a recording with ground-truth poses")
    ap.add_argument("--frames", default=None, help="A:B")
    ap.add_argument("--strides", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--every", type=int, default=3, help="pair start spacing (frames)")
    ap.add_argument("--pose-model", default=str(Path(__file__).resolve().parents[1] /
                                                "models" / "pose.onnx"))
    ap.add_argument("--trajectory", default=None, help="TUM trajectory of the same recording")
    args = ap.parse_args(argv)

    from vode_ros.datasets import open_sequence
    from vode_ros.geometry import from_axis_angle_translation
    from vode_ros.inference import OnnxModel, to_tensor
    from vode_ros.learn.data import relative_pose, trajectory_at

    seq = open_sequence(args.input, args.frames)
    frames = list(seq)
    if any(f.gt_pose is None for f in frames):
        print(f"{args.input}: some frames have no ground-truth pose", file=sys.stderr)
        return 2
    gt = np.stack([f.gt_pose for f in frames])
    model = OnnxModel(args.pose_model, "pose", providers=["CPUExecutionProvider"])
    tensors = [to_tensor(f.image, model.spec) for f in frames]
    traj = None
    if args.trajectory:
        traj = trajectory_at(args.trajectory, np.array([f.stamp_ns for f in frames]),
                             args.input)
    for stride in args.strides:
        rows = {"pose model": [], "trajectory": []}
        gt_rot, gt_len = [], []
        for a in range(0, len(frames) - stride, args.every):
            b = a + stride
            T_gt = relative_pose(gt, a, b)
            gt_rot.append(np.degrees(Rotation.from_matrix(T_gt[:3, :3]).magnitude()))
            gt_len.append(np.linalg.norm(T_gt[:3, 3]))
            vec = model(np.concatenate([tensors[a], tensors[b]], axis=1)).reshape(-1)[:6]
            rows["pose model"].append(pair_errors(from_axis_angle_translation(vec), T_gt))
            if traj is not None:
                T = relative_pose(traj, a, b)
                if T is not None:
                    rows["trajectory"].append(pair_errors(T, T_gt))
        print(f"stride {stride}: {len(gt_rot)} pairs, ground truth rotation median "
              f"{np.median(gt_rot):.2f} deg, translation median {100 * np.median(gt_len):.2f} cm")
        for name, errs in rows.items():
            if not errs:
                continue
            e = np.asarray(errs)
            print(f"  {name:10s}: rotation error median {np.nanmedian(e[:, 0]):.3f} deg "
                  f"(mean {np.nanmean(e[:, 0]):.3f}), translation direction error median "
                  f"{np.nanmedian(e[:, 1]):.1f} deg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
