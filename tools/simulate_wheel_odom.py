#!/usr/bin/env python3
"""Simulate wheel odometry from a sequence's ground truth, as a TUM file for
``vode process|eval INPUT --wheel-odom FILE.tum``.

Each step between consecutive frames keeps the ground truth's direction and has its length
multiplied by ``1 + N(0, sigma)`` (a fixed seed: the same file every time). Only the travelled
distance of the result is meaningful to vode (it never uses the wheels' heading).

    python tools/simulate_wheel_odom.py ../shared/data/kitti-odometry/sequences/06 out/wheel06.tum
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def simulate(stamps_ns, positions, sigma: float, seed: int) -> np.ndarray:
    """(N, 3) wheel positions: the ground truth's steps, each length scaled by 1 + N(0, sigma)."""
    p = np.asarray(positions, float)
    rng = np.random.default_rng(seed)
    steps = np.diff(p, axis=0) * (1.0 + rng.normal(0.0, sigma, len(p) - 1))[:, None]
    return np.vstack([p[:1], p[0] + np.cumsum(steps, axis=0)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="a sequence with ground-truth poses (any layout vode reads)")
    ap.add_argument("out", help="TUM file to write (t x y z qx qy qz qw)")
    ap.add_argument("--frames", default=None, metavar="A:B", help="frame range (python slice)")
    ap.add_argument("--sigma", type=float, default=0.02, help="relative noise of each step's "
                    "length (standard deviation)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from vode_ros.datasets import open_sequence
    from vode_ros.files import atomic_write
    seq = open_sequence(args.input, frames=args.frames)
    stamps, xyz = [], []
    for f in seq:
        if f.gt_pose is not None and np.all(np.isfinite(f.gt_pose)):
            stamps.append(int(f.stamp_ns))
            xyz.append(np.asarray(f.gt_pose, float)[:3, 3])
    if len(stamps) < 2:
        print(f"{args.input}: fewer than 2 frames with a ground-truth pose", file=sys.stderr)
        return 1
    wheel = simulate(stamps, xyz, args.sigma, args.seed)
    lines = [f"# wheel odometry simulated from the ground truth of {seq.name}: each step's "
             f"length x (1 + N(0, {args.sigma})), seed {args.seed}; the orientation is unused"]
    lines += [f"{t * 1e-9:.9f} {x:.6f} {y:.6f} {z:.6f} 0 0 0 1" for t, (x, y, z) in
              zip(stamps, wheel, strict=True)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, "\n".join(lines) + "\n")
    d_true = float(np.sum(np.linalg.norm(np.diff(np.asarray(xyz), axis=0), axis=1)))
    d_wheel = float(np.sum(np.linalg.norm(np.diff(wheel, axis=0), axis=1)))
    print(f"{args.out}: {len(stamps)} samples, {d_wheel:.3f} m travelled (ground truth "
          f"{d_true:.3f} m)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
