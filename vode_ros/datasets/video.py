"""A video file (.mp4, .avi, .mkv, .mov, ...) read with OpenCV.

Stamps come from the container's frame rate (frame N at N / fps s). Intrinsics come from a
sidecar file, first found: ``<video>.intrinsics.txt`` (e.g. ``clip.mp4.intrinsics.txt``),
``<stem>.intrinsics.txt``, ``<stem>.yaml``, then ``camera.yaml``, ``camera.txt`` or
``intrinsics.txt`` in the video's folder (formats as for image folders; a distortion line makes
the frames undistorted).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from vode_ros.datasets.base import (
    INTRINSICS_FORMATS,
    DatasetError,
    Sequence,
    camera_and_undistorter,
    find_intrinsics_file,
    fps_stamps,
    read_intrinsics,
)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg")


def looks_like(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def sidecar_candidates(path: Path) -> list[Path]:
    d = path.parent
    return [path.with_name(path.name + ".intrinsics.txt"),
            path.with_name(path.stem + ".intrinsics.txt"),
            path.with_name(path.stem + ".yaml"),
            d / "camera.yaml", d / "camera.txt", d / "intrinsics.txt"]


class VideoSequence(Sequence):
    layout = "video"

    def __init__(self, path: Path, frames=None):
        path = Path(path)
        cap = self._open(path)
        try:
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if n <= 0:          # a container without a frame count: count by grabbing
                while cap.grab():
                    n += 1
        finally:
            cap.release()
        if n <= 0 or w <= 0 or h <= 0:
            raise DatasetError(f"video {path} has no decodable frame ({n} frames, {w}x{h}); "
                               "expected a video OpenCV's FFmpeg backend can read", "format")
        side = find_intrinsics_file(sidecar_candidates(path))
        if side is None:
            names = ", ".join(p.name for p in sidecar_candidates(path)[:3])
            raise DatasetError(f"video {path} has no intrinsics sidecar; expected one of {names} "
                               f"(or camera.yaml / camera.txt beside it): {INTRINSICS_FORMATS}",
                               "intrinsics")
        intr = read_intrinsics(side)
        camera, self._undistort = camera_and_undistorter(intr, w, h, str(side))
        self.fps = fps if fps > 0 else 30.0
        super().__init__(path, path.stem, camera, fps_stamps(n, self.fps), frames)

    @staticmethod
    def _open(path: Path) -> cv2.VideoCapture:
        if not path.is_file():
            raise DatasetError(f"video {path} does not exist", "missing")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            cap.release()
            raise DatasetError(f"OpenCV could not open video {path}; expected a video file "
                               "(mp4, avi, mkv, mov) its FFmpeg backend decodes; is it "
                               "complete?", "format")
        return cap

    def _convert(self, bgr: np.ndarray) -> np.ndarray:
        if bgr.ndim == 2:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        else:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return self._undistort.image(rgb) if self._undistort is not None else rgb

    def _iter_images(self, raws: Iterable[int]) -> Iterator[np.ndarray]:
        wanted = list(raws)
        if not wanted:
            return
        cap = self._open(self.path)
        try:
            pos = 0     # grab sequentially: seeking is not frame-exact for every codec
            for raw in wanted:
                while pos < raw:
                    if not cap.grab():
                        raise DatasetError(f"video {self.path} ended at frame {pos}, before "
                                           f"frame {raw} of the {len(self._stamps_all)} it "
                                           "announced; is the file truncated?", "format")
                    pos += 1
                ok, bgr = cap.read()
                pos += 1
                if not ok or bgr is None:
                    raise DatasetError(f"video {self.path}: frame {raw} could not be decoded; "
                                       "is the file truncated?", "format")
                yield self._convert(bgr)
        finally:
            cap.release()

    def _read_image(self, raw: int) -> np.ndarray:
        cap = self._open(self.path)
        try:
            if raw:
                cap.set(cv2.CAP_PROP_POS_FRAMES, raw)
            ok, bgr = cap.read()
        finally:
            cap.release()
        if not ok or bgr is None:
            raise DatasetError(f"video {self.path}: frame {raw} could not be decoded",
                               "format")
        return self._convert(bgr)
