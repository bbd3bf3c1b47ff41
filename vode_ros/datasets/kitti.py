"""KITTI odometry layout: ``sequences/NN/{image_0,image_2,...}/NNNNNN.png``, ``calib.txt``,
``times.txt`` and, two folders up, ``poses/NN.txt``.

``calib.txt`` holds the rectified projection matrices ``P0: ..`` to ``P3: ..`` (3x4, row-major).
``times.txt`` holds seconds from the start of the sequence, one line per frame. ``poses/NN.txt``
holds, per frame, the 3x4 camera-to-world pose of the left grey camera (cam0) in cam0's first
frame. For another camera ``d`` the pose is moved by the baseline in ``Pd`` (rectified cameras
share orientation): ``T_w_camd = T_w_cam0 @ [I | -K^-1 Pd[:, 3]]``.

The stream is ``image_2`` (left colour) when present, else ``image_0`` (left grey); pass
``stream='image_0'`` (or the path of an ``image_N`` folder) to choose.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from vode_ros.camera import Camera
from vode_ros.datasets.base import (
    DatasetError,
    Sequence,
    data_lines,
    fps_stamps,
    image_files,
    read_rgb,
    seconds_to_ns,
)

STREAMS = ("image_2", "image_0", "image_3", "image_1")


def looks_like(path: Path) -> bool:
    if not path.is_dir():
        return False
    if re.fullmatch(r"image_\d", path.name) and (path.parent / "calib.txt").is_file():
        return True
    return (path / "calib.txt").is_file() and any((path / s).is_dir() for s in STREAMS)


def read_calib(path: Path) -> dict[str, np.ndarray]:
    out = {}
    for toks in data_lines(path):
        key = toks[0].rstrip(":")
        if len(toks) == 13:
            try:
                out[key] = np.asarray([float(v) for v in toks[1:]]).reshape(3, 4)
            except ValueError:
                continue
    return out


def read_kitti_poses(path: Path) -> np.ndarray:
    rows = []
    for n, toks in enumerate(data_lines(path)):
        if len(toks) != 12:
            raise DatasetError(f"{path} line {n + 1} has {len(toks)} values; expected 12 (a 3x4 "
                               "KITTI pose, row-major)", "format")
        rows.append([float(v) for v in toks])
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    if rows:
        poses[:, :3, :] = np.asarray(rows).reshape(-1, 3, 4)
    return poses


class KittiSequence(Sequence):
    layout = "kitti"

    def __init__(self, path: Path, frames=None, stream: str | None = None):
        path = Path(path)
        if re.fullmatch(r"image_\d", path.name):
            stream = stream or path.name
            path = path.parent
        if stream is None:
            stream = next((s for s in STREAMS if (path / s).is_dir()), None)
        if stream is None or not (path / stream).is_dir():
            have = sorted(p.name for p in path.glob("image_*"))
            raise DatasetError(f"KITTI sequence {path} has no image folder '{stream}'; found "
                               f"{have or 'none'}; expected image_0 (grey) or image_2 (colour)",
                               "layout")
        cam_id = int(stream[-1])
        self._files = image_files(path / stream)
        if not self._files:
            raise DatasetError(f"{path / stream} holds no PNG image", "format")
        calib = read_calib(path / "calib.txt")
        P = calib.get(f"P{cam_id}")
        if P is None:
            raise DatasetError(f"{path / 'calib.txt'} has no 'P{cam_id}:' line with 12 values; "
                               f"expected the KITTI calibration of {stream}", "intrinsics")
        K = P[:, :3]
        # baseline of camera d relative to cam0: P = K [I | t], X_d = X_0 + t
        self._t_cam = np.linalg.solve(K, P[:, 3])
        first = read_rgb(self._files[0])
        h, w = first.shape[:2]
        camera = Camera(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), w, h)
        n = len(self._files)
        times = path / "times.txt"
        if times.is_file():
            vals = [toks[0] for toks in data_lines(times)]
            if len(vals) < n:
                raise DatasetError(f"{times} has {len(vals)} stamps for {n} images; expected one "
                                   "line (seconds) per image", "format")
            stamps = np.asarray([seconds_to_ns(v) for v in vals[:n]], dtype=np.int64)
        else:
            stamps = fps_stamps(n, 10.0)
        self.stream = stream
        super().__init__(path, f"kitti_{path.name}_{stream}", camera, stamps, frames)

    def _read_image(self, raw: int) -> np.ndarray:
        return read_rgb(self._files[raw])

    def gt_file(self) -> Path:
        return self.path.parent.parent / "poses" / f"{self.path.name}.txt"

    def _load_gt_poses(self) -> np.ndarray | None:
        f = self.gt_file()
        if not f.is_file():
            return None
        cam0 = read_kitti_poses(f)
        offset = np.eye(4)
        offset[:3, 3] = -self._t_cam
        out = np.full((len(self._stamps_all), 4, 4), np.nan)
        m = min(len(cam0), len(out))
        out[:m] = cam0[:m] @ offset
        return out
