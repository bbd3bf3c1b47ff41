"""TUM RGB-D layout: rgb.txt, depth.txt, groundtruth.txt (and rgb/, depth/ image folders).

Each list file holds ``timestamp filename`` lines (seconds, ``#`` comments). Depth PNGs are uint16
with 5000 units per metre, 0 = invalid. ``groundtruth.txt`` is a TUM trajectory of the camera
optical frame in the world; poses are interpolated to image stamps when a sample lies within
20 ms, depth images associated to the nearest colour stamp within 20 ms.

Intrinsics come, in order, from ``camera.yaml``/``camera.yml``/``camera.txt``/``intrinsics.txt``
in the sequence folder, from the published calibration of the Freiburg cameras when the folder
name says ``freiburg1``/``freiburg2``/``freiburg3``, else from the ROS default Kinect model
(525, 525, 319.5, 239.5). Freiburg 1 and 2 images are distorted: they are undistorted (and the
camera reported after undistortion) with the published coefficients.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vode_ros.datasets.base import (
    MAX_GT_DT_NS,
    DatasetError,
    Intrinsics,
    Sequence,
    associate_nearest,
    camera_and_undistorter,
    data_lines,
    find_intrinsics_file,
    poses_at,
    read_depth_png,
    read_intrinsics,
    read_rgb,
    read_tum_trajectory,
    seconds_to_ns,
)

DEPTH_SCALE = 5000.0

# Published calibration of the TUM RGB-D cameras (fx fy cx cy, distortion d0..d4).
FREIBURG = {
    "freiburg1": ((517.3, 516.5, 318.6, 255.3), (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    "freiburg2": ((520.9, 521.0, 325.1, 249.7), (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    "freiburg3": ((535.4, 539.2, 320.1, 247.6), None),
}
DEFAULT_INTRINSICS = (525.0, 525.0, 319.5, 239.5)
CAMERA_FILES = ("camera.yaml", "camera.yml", "camera.txt", "intrinsics.txt")


def looks_like(path: Path) -> bool:
    return path.is_dir() and (path / "rgb.txt").is_file()


def _read_list(path: Path) -> tuple[np.ndarray, list[str]]:
    stamps, names = [], []
    for n, toks in enumerate(data_lines(path)):
        if len(toks) < 2:
            raise DatasetError(f"{path} line {n + 1} has {len(toks)} fields; expected "
                               "'timestamp filename'", "format")
        try:
            stamps.append(seconds_to_ns(toks[0]))
        except ValueError:
            raise DatasetError(f"{path} line {n + 1}: '{toks[0]}' is not a time in seconds; "
                               "expected 'timestamp filename'", "format") from None
        names.append(toks[1])
    return np.asarray(stamps, dtype=np.int64), names


def tum_intrinsics(path: Path) -> tuple[Intrinsics, str]:
    """The intrinsics of a TUM folder and where they came from."""
    f = find_intrinsics_file(path / n for n in CAMERA_FILES)
    if f is not None:
        return read_intrinsics(f), str(f)
    for key, (vals, dist) in FREIBURG.items():
        if key in path.name or key in path.parent.name:
            K = np.array([[vals[0], 0, vals[2]], [0, vals[1], vals[3]], [0, 0, 1.0]])
            return Intrinsics(K, None if dist is None else np.asarray(dist), 640, 480), \
                f"the published {key} calibration"
    fx, fy, cx, cy = DEFAULT_INTRINSICS
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    return Intrinsics(K, None, 640, 480), "the default Kinect intrinsics (525, 525, 319.5, 239.5)"


class TumSequence(Sequence):
    layout = "tum"

    def __init__(self, path: Path, frames=None):
        path = Path(path)
        stamps, names = _read_list(path / "rgb.txt")
        if len(stamps) == 0:
            raise DatasetError(f"{path / 'rgb.txt'} lists no image; expected lines "
                               "'timestamp rgb/<stamp>.png'", "format")
        order = np.argsort(stamps, kind="stable")
        self._rgb = [path / names[i] for i in order]
        stamps = stamps[order]
        self._depth: list[Path | None] = [None] * len(stamps)
        if (path / "depth.txt").is_file():
            d_stamps, d_names = _read_list(path / "depth.txt")
            if len(d_stamps):
                d_order = np.argsort(d_stamps, kind="stable")
                d_sorted = d_stamps[d_order]
                near = associate_nearest(stamps, d_sorted, MAX_GT_DT_NS)
                self._depth = [path / d_names[d_order[j]] if j >= 0 else None for j in near]
        intr, source = tum_intrinsics(path)
        first = read_rgb(self._rgb[0])
        h, w = first.shape[:2]
        camera, self._undistort = camera_and_undistorter(intr, w, h, source)
        self.intrinsics_source = source
        super().__init__(path, path.name, camera, stamps, frames)

    def _read_image(self, raw: int) -> np.ndarray:
        img = read_rgb(self._rgb[raw])
        return self._undistort.image(img) if self._undistort is not None else img

    def _read_depth(self, raw: int) -> np.ndarray | None:
        p = self._depth[raw]
        if p is None:
            return None
        depth = read_depth_png(p, DEPTH_SCALE)
        return self._undistort.depth(depth) if self._undistort is not None else depth

    def _load_gt_poses(self) -> np.ndarray | None:
        gt = self.path / "groundtruth.txt"
        if not gt.is_file():
            return None
        ref_ns, ref_poses = read_tum_trajectory(gt)
        if len(ref_ns) == 0:
            return None
        return poses_at(self._stamps_all, ref_ns, ref_poses, MAX_GT_DT_NS)
