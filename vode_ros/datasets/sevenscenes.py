"""Microsoft 7-Scenes layout: ``frame-NNNNNN.color.png|jpg``, ``frame-NNNNNN.depth.png``,
``frame-NNNNNN.pose.txt`` in one sequence folder (``seq-01``).

Poses are 4x4 camera-to-world matrices (metres); depth PNGs are uint16 millimetres with 0 and
65535 invalid (returned as NaN). A frame without a depth file has ``gt_depth`` None. There are no
timestamps: frame N is stamped N / 30 s. Intrinsics come from ``camera-intrinsics.txt`` (3x3 K)
when present, else the published approximation fx = fy = 585, cx = 320, cy = 240.

7-Scenes' colour and depth cameras are not registered; depth is approximate at object edges.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from vode_ros.datasets.base import (
    DatasetError,
    Intrinsics,
    Sequence,
    camera_and_undistorter,
    data_lines,
    finite_or_nan,
    read_depth_png,
    read_intrinsics,
    read_rgb,
)

FRAME_RE = re.compile(r"frame-(\d+)\.color\.(png|jpg|jpeg)$", re.IGNORECASE)
FPS = 30.0
DEFAULT_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])


def looks_like(path: Path) -> bool:
    if not path.is_dir():
        return False
    try:
        with os.scandir(path) as it:
            return any(FRAME_RE.match(e.name) for e in it)
    except OSError:
        return False


def read_pose_matrix(path: Path) -> np.ndarray:
    rows = data_lines(path)
    vals = [v for r in rows for v in r]
    if len(vals) < 16:
        raise DatasetError(f"{path} has {len(vals)} values; expected a 4x4 camera-to-world "
                           "matrix", "format")
    try:
        return np.asarray([float(v) for v in vals[:16]]).reshape(4, 4)
    except ValueError:
        raise DatasetError(f"{path} is not numeric; expected a 4x4 matrix", "format") from None


class SevenScenesSequence(Sequence):
    layout = "7scenes"

    def __init__(self, path: Path, frames=None):
        path = Path(path)
        found = []
        for p in path.iterdir():
            m = FRAME_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        if not found:
            raise DatasetError(f"{path} has no frame-NNNNNN.color.png|jpg file", "layout")
        found.sort()
        self._numbers = [n for n, _ in found]
        self._files = [p for _, p in found]
        kfile = path / "camera-intrinsics.txt"
        intr = read_intrinsics(kfile) if kfile.is_file() else Intrinsics(DEFAULT_K)
        first = read_rgb(self._files[0])
        h, w = first.shape[:2]
        camera, self._undistort = camera_and_undistorter(
            intr, w, h, str(kfile) if kfile.is_file() else "the 7-Scenes defaults")
        stamps = np.round(np.asarray(self._numbers, dtype=np.float64) * (1e9 / FPS)) \
            .astype(np.int64)
        name = f"{path.parent.name}_{path.name}" if path.name.startswith("seq") else path.name
        super().__init__(path, name, camera, stamps, frames)

    def _stem(self, raw: int) -> Path:
        return self.path / f"frame-{self._numbers[raw]:06d}"

    def _read_image(self, raw: int) -> np.ndarray:
        img = read_rgb(self._files[raw])
        return self._undistort.image(img) if self._undistort is not None else img

    def _read_depth(self, raw: int) -> np.ndarray | None:
        p = self._stem(raw).with_name(self._stem(raw).name + ".depth.png")
        if not p.is_file():
            return None
        depth = read_depth_png(p, 1000.0, invalid=(0, 65535))
        if depth.shape != (self.camera.height, self.camera.width):
            depth = cv2.resize(depth, (self.camera.width, self.camera.height),
                               interpolation=cv2.INTER_NEAREST)
        return depth

    def _load_gt_poses(self) -> np.ndarray | None:
        out = np.full((len(self._numbers), 4, 4), np.nan)
        any_pose = False
        for i in range(len(self._numbers)):
            p = self._stem(i).with_name(self._stem(i).name + ".pose.txt")
            if p.is_file():
                out[i] = finite_or_nan(read_pose_matrix(p))
                any_pose = True
        return out if any_pose else None
