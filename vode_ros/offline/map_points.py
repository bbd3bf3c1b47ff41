"""The odometry's map points, frame by frame: what `vode adapt` teaches the depth network with
(a scale-invariant loss against the triangulated points, TrianFlow's idea), written as
``map_points.npz`` beside a run's trajectory.

The file holds ``stamps_ns`` (F,), ``offsets`` (F + 1,), and for all frames together ``px`` (N, 2,
pixels of the input image) and ``depth`` (N,, along the optical axis in the odometry's unit):
frame ``i``'s points are rows ``offsets[i]:offsets[i + 1]``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FILE_NAME = "map_points.npz"


def geometric_tracker(vo):
    """The keyframe tracker behind ``vo``'s pose backend (geometric or hybrid), or None."""
    backend = getattr(vo, "pose_backend", None)
    backend = getattr(backend, "geometric", backend)
    return backend if hasattr(backend, "map_points") else None


class MapPointsRecorder:
    """A frame sink of the offline runner: after each frame, the map points the tracker sees."""

    def __init__(self, vo):
        self.tracker = geometric_tracker(vo)
        self.stamps: list[int] = []
        self.px: list[np.ndarray] = []
        self.depth: list[np.ndarray] = []

    def add(self, position: int, frame, est) -> None:
        if self.tracker is None:
            return
        stamp = int(frame.stamp_ns)
        got = self.tracker.map_points(stamp)
        if got is None:
            return
        px, z, (w, h) = got
        img_h, img_w = frame.image.shape[:2]
        # working-image pixel centres to the input image's (pixel-centre convention)
        sx, sy = img_w / w, img_h / h
        px = np.c_[(px[:, 0] + 0.5) * sx - 0.5, (px[:, 1] + 0.5) * sy - 0.5]
        self.stamps.append(stamp)
        self.px.append(px.astype(np.float32))
        self.depth.append(z.astype(np.float32))

    def save(self, path: Path) -> int:
        """Write the file; returns the number of frames with points."""
        counts = [len(z) for z in self.depth]
        np.savez_compressed(
            path, stamps_ns=np.asarray(self.stamps, np.int64),
            offsets=np.r_[0, np.cumsum(counts)].astype(np.int64),
            px=np.concatenate(self.px) if self.px else np.zeros((0, 2), np.float32),
            depth=np.concatenate(self.depth) if self.depth else np.zeros(0, np.float32))
        return len(self.stamps)


def read_map_points(path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{stamp_ns: (px (N, 2), depth (N,))}`` of a ``map_points.npz``."""
    from vode_ros.errors import VodeError
    try:
        with np.load(path) as f:
            stamps, off, px, depth = f["stamps_ns"], f["offsets"], f["px"], f["depth"]
    except (OSError, KeyError, ValueError) as exc:
        raise VodeError(f"{path}: not a map points file (stamps_ns, offsets, px, depth "
                        f"expected): {exc}") from exc
    if len(off) != len(stamps) + 1 or off[-1] != len(px) or len(px) != len(depth):
        raise VodeError(f"{path}: inconsistent map points file ({len(stamps)} frames, "
                        f"{len(off)} offsets, {len(px)} pixels, {len(depth)} depths)")
    return {int(s): (px[off[i]:off[i + 1]], depth[off[i]:off[i + 1]])
            for i, s in enumerate(stamps)}
