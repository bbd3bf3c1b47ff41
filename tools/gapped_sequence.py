#!/usr/bin/env python3
"""Make a fast-motion test sequence from a recording: frames taken every ``--stride`` frames,
and every ``--every`` frames a burst of ``--burst`` steps of ``--gap`` frames, all restamped
at the recording's own frame interval. A gap of a second in a hand-held recording is a turn of
10-17 degrees and 0.1-0.4 m in one frame (a dropped stretch of the stream, a jerk of the hand),
on real images; the ground truth comes along, so ``vode eval`` scores it.

Writes a folder that ``vode`` reads (``vode_ros/datasets/folder.py``): PNG images as the
recording delivers them (undistorted), ``intrinsics.txt``, ``times.txt`` and a TUM
``groundtruth.txt``; prints the ground truth's rotation per frame.

    python tools/gapped_sequence.py ../shared/data/7scenes-redkitchen out/7scenes-gaps \\
        --stride 3 --gap 30 --burst 3 --every 25
    vode eval out/7scenes-gaps --out out/eval_7scenes_gaps
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def gapped_indices(n: int, stride: int, gap: int, burst: int, every: int) -> list[int]:
    """Frame indices 0, stride, 2 stride, ...: among each ``every`` steps the last ``burst``
    steps are ``gap`` frames long; stops before ``n``."""
    if min(stride, gap, every) < 1 or not 0 <= burst <= every:
        raise ValueError("stride, gap and every must be >= 1 and 0 <= burst <= every")
    idx, k = [0], 0
    while True:
        step = gap if k % every >= every - burst else stride
        if idx[-1] + step >= n:
            return idx
        idx.append(idx[-1] + step)
        k += 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="a recording with ground-truth poses (any layout vode reads)")
    ap.add_argument("out", help="folder to write")
    ap.add_argument("--stride", type=int, default=3, help="frames per ordinary step")
    ap.add_argument("--gap", type=int, default=30, help="frames per burst step")
    ap.add_argument("--burst", type=int, default=3, help="burst steps in each period")
    ap.add_argument("--every", type=int, default=25, help="steps per period")
    args = ap.parse_args(argv)
    import cv2
    from scipy.spatial.transform import Rotation

    from vode_ros.datasets import open_sequence
    seq = open_sequence(args.input)
    stamps = np.asarray(seq.stamps_ns, np.int64)
    try:
        idx = gapped_indices(len(seq), args.stride, args.gap, args.burst, args.every)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    dt_ns = int(np.median(np.diff(stamps))) if len(stamps) > 1 else 33_333_333
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    c = seq.camera
    (out / "intrinsics.txt").write_text(f"{c.fx} {c.fy} {c.cx} {c.cy} {c.width} {c.height}\n")
    times, gt, poses = [], [], []
    for j, i in enumerate(idx):
        f = seq[i]
        if f.gt_pose is None or not np.all(np.isfinite(f.gt_pose)):
            print(f"{args.input}: frame {i} has no ground-truth pose", file=sys.stderr)
            return 1
        cv2.imwrite(str(out / f"{j:06d}.png"), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
        t = j * dt_ns * 1e-9
        q = Rotation.from_matrix(f.gt_pose[:3, :3]).as_quat()
        times.append(f"{t:.9f}")
        gt.append(f"{t:.9f} " + " ".join(f"{v:.7f}" for v in (*f.gt_pose[:3, 3], *q)))
        poses.append(f.gt_pose)
    (out / "times.txt").write_text("\n".join(times) + "\n")
    (out / "groundtruth.txt").write_text(
        f"# ground truth of {seq.name}, frames {idx[0]}..{idx[-1]} (gapped), restamped\n"
        + "\n".join(gt) + "\n")
    rot = np.degrees([Rotation.from_matrix(a[:3, :3].T @ b[:3, :3]).magnitude()
                      for a, b in zip(poses[:-1], poses[1:], strict=True)])
    print(f"{out}: {len(idx)} frames; ground-truth rotation per frame: median {np.median(rot):.1f},"
          f" 90th percentile {np.percentile(rot, 90):.1f}, largest {rot.max():.1f} degrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
