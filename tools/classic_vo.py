#!/usr/bin/env python3
"""A classic monocular OpenCV pipeline, the reference vode's figures are set beside.

Frame to frame: Shi-Tomasi corners tracked by pyramidal Lucas-Kanade, the essential matrix by
RANSAC, ``recoverPose``, a translation of unit length per step (monocular: no scale), corners
detected again when fewer than half are left. Nothing of vode_ros's tracker is used; vode_ros
only reads the frames and, with ground truth, scores the trajectory with the same metrics as
``vode eval`` (Sim(3) alignment, ATE, per-frame RPE):

    python tools/classic_vo.py ../shared/data/7scenes-redkitchen --frames 0:600:4 \\
        --out out/classic_7s_s4.txt --json out/classic_7s_s4.json

The trajectory (TUM, camera optical frame, the input's stamps) can also be scored by evo.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MAX_CORNERS = 1000
MIN_TRACKED = MAX_CORNERS // 2


def grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def corners(img: np.ndarray) -> np.ndarray:
    pts = cv2.goodFeaturesToTrack(img, MAX_CORNERS, 0.01, 8)
    return np.zeros((0, 1, 2), np.float32) if pts is None else pts.astype(np.float32)


def lk(prev: np.ndarray, cur: np.ndarray, p0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners followed from ``prev`` to ``cur``, forward-backward checked (1 px)."""
    params = {"winSize": (21, 21), "maxLevel": 3,
              "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)}
    p1, st, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **params)
    pb, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **params)
    ok = (st.ravel() == 1) & (st2.ravel() == 1) & \
        (np.linalg.norm((pb - p0).reshape(-1, 2), axis=1) < 1.0)
    return p0[ok], p1[ok]


def step_pose(p0: np.ndarray, p1: np.ndarray, K: np.ndarray) -> np.ndarray | None:
    """T_cur_prev with a unit translation, or None when the essential matrix fails."""
    if len(p0) < 8:
        return None
    E, mask = cv2.findEssentialMat(p0, p1, K, cv2.RANSAC, 0.999, 1.0)
    if E is None or E.shape[0] < 3:
        return None
    E = E[:3]            # several solutions come stacked: the first is RANSAC's best
    n, R, t, _ = cv2.recoverPose(E, p0, p1, K, mask=mask)
    if n < 8:
        return None
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t.ravel() / max(np.linalg.norm(t), 1e-12)
    return T


def run(frames) -> tuple[list[int], list[np.ndarray], int]:
    """(stamps_ns, camera-to-world poses, failed steps) over ``frames`` (SequenceFrame-like)."""
    stamps, poses, failed = [], [], 0
    T_w = np.eye(4)
    prev = pts = None
    for f in frames:
        img = grey(f.image)
        if prev is not None and len(pts) >= 8:
            p0, p1 = lk(prev, img, pts)
            T = step_pose(p0, p1, f.camera.K)
            if T is None:
                failed += 1          # the pose is held
            else:
                T_w = T_w @ np.linalg.inv(T)
            pts = p1
        if pts is None or len(pts) < MIN_TRACKED:
            pts = corners(img)
        prev = img
        stamps.append(int(f.stamp_ns))
        poses.append(T_w.copy())
    return stamps, poses, failed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", help="a sequence any vode_ros dataset reader opens")
    ap.add_argument("--frames", default=None, metavar="A:B[:S]", help="frame selection")
    ap.add_argument("--out", default=None, help="TUM trajectory to write")
    ap.add_argument("--json", default=None, help="metrics (ATE, per-frame RPE) to write")
    args = ap.parse_args(argv)

    from vode_ros.datasets import open_sequence
    from vode_ros.evaluation.metrics import evaluate_trajectory
    from vode_ros.evaluation.trajectory import write_tum

    seq = open_sequence(args.input, args.frames)
    stamps, poses, failed = run(seq)
    if args.out:
        write_tum(args.out, stamps, poses)
    result = {"input": str(args.input), "frames": args.frames, "frames_processed": len(stamps),
              "failed_steps": failed, "pipeline": "LK + essential matrix + recoverPose, unit "
              "translation per step"}
    if seq.has_ground_truth:
        gt_ns, gt_poses = seq.ground_truth()
        m = evaluate_trajectory(gt_ns, gt_poses, stamps, np.stack(poses), align="sim3").metrics
        result.update(ate_rmse_m=m["ate_rmse_m"], rpe_trans_m_per_frame=m["rpe_trans_m"][
            "per_frame"], rpe_rot_deg_per_frame=m["rpe_rot_deg"]["per_frame"])
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
