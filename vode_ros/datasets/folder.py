"""A plain folder of images (``*.png``/``*.jpg``, in name order) with an intrinsics file.

Intrinsics: ``intrinsics.txt``, ``camera.txt`` (``fx fy cx cy [width height]`` or a 3x3 K,
optionally a distortion line ``k1 k2 p1 p2 [k3]``) or ``camera.yaml``. Stamps: ``times.txt``
(one line per image, seconds, first column) when present, else 30 Hz. Ground truth: an optional
TUM trajectory ``groundtruth.txt`` (camera optical frame in the world), associated by stamp.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vode_ros.datasets.base import (
    INTRINSICS_FORMATS,
    MAX_GT_DT_NS,
    DatasetError,
    Sequence,
    camera_and_undistorter,
    data_lines,
    find_intrinsics_file,
    fps_stamps,
    image_files,
    poses_at,
    read_intrinsics,
    read_rgb,
    read_tum_trajectory,
    seconds_to_ns,
)

INTRINSICS_FILES = ("intrinsics.txt", "camera.txt", "camera.yaml", "camera.yml",
                    "intrinsics.yaml")
FPS = 30.0


def looks_like(path: Path) -> bool:
    return path.is_dir() and bool(image_files(path))


class FolderSequence(Sequence):
    layout = "folder"

    def __init__(self, path: Path, frames=None):
        path = Path(path)
        self._files = image_files(path)
        if not self._files:
            raise DatasetError(f"{path} holds no .png/.jpg image", "layout")
        f = find_intrinsics_file(path / n for n in INTRINSICS_FILES)
        if f is None:
            raise DatasetError(f"image folder {path} has no intrinsics file; expected "
                               f"intrinsics.txt with 'fx fy cx cy' (or camera.txt/camera.yaml): "
                               f"{INTRINSICS_FORMATS}", "intrinsics")
        intr = read_intrinsics(f)
        first = read_rgb(self._files[0])
        h, w = first.shape[:2]
        camera, self._undistort = camera_and_undistorter(intr, w, h, str(f))
        n = len(self._files)
        times = path / "times.txt"
        if times.is_file():
            vals = [toks[0] for toks in data_lines(times)]
            if len(vals) != n:
                raise DatasetError(f"{times} has {len(vals)} stamps for {n} images; expected "
                                   "one line (seconds) per image, in file-name order", "format")
            try:
                stamps = np.asarray([seconds_to_ns(v) for v in vals], dtype=np.int64)
            except ValueError as err:
                raise DatasetError(f"{times}: {err}; expected seconds per line",
                                   "format") from None
        else:
            stamps = fps_stamps(n, FPS)
        super().__init__(path, path.name, camera, stamps, frames)

    def _read_image(self, raw: int) -> np.ndarray:
        img = read_rgb(self._files[raw])
        return self._undistort.image(img) if self._undistort is not None else img

    def _load_gt_poses(self) -> np.ndarray | None:
        gt = self.path / "groundtruth.txt"
        if not gt.is_file():
            return None
        ref_ns, poses = read_tum_trajectory(gt)
        if len(ref_ns) == 0:
            return None
        return poses_at(self._stamps_all, ref_ns, poses, MAX_GT_DT_NS)
