"""Run the loop-closure back-end on a recorded odometry: a ``trajectory.txt`` written by
``vode process`` and the sequence it came from (its images, matched by stamp). Writes the
loop-corrected trajectory and, where the sequence has ground truth, prints ATE of both, evaluated
as ``vode eval`` does. Tuning the back-end this way needs no second run of the odometry.

    vode process /work/shared/data/7scenes-redkitchen --out run
    python -m vode_ros.loop_closure.replay run/trajectory.txt /work/shared/data/7scenes-redkitchen \\
        --out run/trajectory_map.txt [--set loop_closure.min_inliers=25]
"""
from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

import numpy as np


def replay(trajectory: str, input_path: str, cfg, out: str | None = None) -> dict:
    from vode_ros.datasets import open_sequence
    from vode_ros.evaluation.trajectory import read_tum, write_tum
    from vode_ros.loop_closure import LoopClosure

    stamps, poses = read_tum(trajectory)
    index = {int(s): n for n, s in enumerate(stamps)}
    lc = LoopClosure(cfg.loop_closure, blocking=True)
    gt_stamps, gt_poses = [], []
    try:
        for f in open_sequence(input_path):
            n = index.get(int(f.stamp_ns))
            if n is None:
                continue
            lc.add(SimpleNamespace(stamp_ns=int(f.stamp_ns), camera_pose=poses[n], depth=None,
                                   camera=f.camera, tracking="TRACKING", scale="relative"),
                   f.image)
            if f.gt_pose is not None:
                gt_stamps.append(int(f.stamp_ns))
                gt_poses.append(f.gt_pose)
        lc.flush()
        corrected = lc.correct(stamps, poses)
        result = {"summary": lc.summary(),
                  "accepted": [e.reason for e in lc.events if e.accepted]}
    finally:
        lc.stop()
    if out:
        write_tum(out, stamps, corrected)
    if len(gt_stamps) >= 2:
        from vode_ros.evaluation.metrics import evaluate_trajectory
        for name, P in (("odometry", poses), ("map", corrected)):
            ev = evaluate_trajectory(np.array(gt_stamps), np.array(gt_poses), np.asarray(stamps),
                                     np.asarray(P), scale="relative", align="auto")
            result[f"ate_rmse_m_{name}"] = ev.metrics["ate_rmse_m"]
    return result


def main(argv=None) -> int:
    from vode_ros.config_files import load_config
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trajectory")
    ap.add_argument("input")
    ap.add_argument("--out")
    ap.add_argument("--config")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    a = ap.parse_args(argv)
    cfg = load_config(a.config, a.overrides)
    print(json.dumps(replay(a.trajectory, a.input, cfg, a.out), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
