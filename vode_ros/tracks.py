"""The keyframe tracker's state (``vode_ros.tracker``): the features it follows (where each is
in the last frame and in the keyframe, its last image motion, its map point and its rays in the
keyframes of the window, as parallel arrays), what it keeps of a frame and of its keyframe, what
one frame did, and why geometry gives up on a frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vode_ros.camera import Camera


@dataclass
class Tracks:
    """The features the tracker follows: parallel arrays, one row per feature."""

    px: np.ndarray                # (N, 2) float32: in the last frame
    px_kf: np.ndarray             # (N, 2) float32: in the keyframe
    vel: np.ndarray               # (N, 2) float32: last image motion, NaN when new
    Xw: np.ndarray                # (N, 3): map point in the backend's world, NaN: none
    obs: np.ndarray               # (N, W, 3): unit ray in each keyframe of the window, NaN: unseen
    lifted: np.ndarray | None = None  # (N,) bool: the map point is the learned depth's, not
    #                                   triangulated (None: none is)

    def __post_init__(self) -> None:
        if self.lifted is None:
            self.lifted = np.zeros(len(self.px), bool)

    @classmethod
    def detected(cls, pts: np.ndarray, window: int) -> Tracks:
        """New tracks at ``pts`` (in the last frame and the keyframe alike), no map points, no
        rays yet; ``window``: how many keyframes ``obs`` holds."""
        n = len(pts)
        px = pts.astype(np.float32).copy()
        return cls(px, px.copy(), np.full((n, 2), np.nan, np.float32), np.full((n, 3), np.nan),
                   np.full((n, window, 3), np.nan))

    @property
    def triangulated(self) -> np.ndarray:
        """(N,) bool: the tracks whose map point is the map's own (not ``lifted``)."""
        return np.isfinite(self.Xw[:, 2]) & ~self.lifted

    def __len__(self) -> int:
        return len(self.px)

    def kept(self, mask: np.ndarray) -> Tracks:
        """The tracks selected by ``mask`` (bool or indices)."""
        return Tracks(self.px[mask], self.px_kf[mask], self.vel[mask], self.Xw[mask],
                      self.obs[mask], self.lifted[mask])

    def slide_window(self, n: int = 1) -> None:
        """The ``n`` oldest keyframes leave the window: their rays go, empty columns come last."""
        self.obs = np.concatenate([self.obs[:, n:], np.full((len(self.obs), n, 3), np.nan)], 1)

    def extended(self, more: Tracks) -> Tracks:
        """These tracks followed by ``more``."""
        return Tracks(*(np.concatenate([a, b]) for a, b in
                        ((self.px, more.px), (self.px_kf, more.px_kf), (self.vel, more.vel),
                         (self.Xw, more.Xw), (self.obs, more.obs),
                         (self.lifted, more.lifted))))


@dataclass
class View:
    """What the backend keeps of one frame (in ``FrameData.cache``)."""

    grey: np.ndarray
    camera: Camera
    world: np.ndarray | None = None          # pose of the frame in the backend's world
    out: np.ndarray | None = None            # the pose answered for it (refined), if not world


@dataclass
class Keyframe:
    """What the tracker keeps of its keyframe."""

    stamp_ns: int
    world: np.ndarray                        # T_world_keyframe
    size: tuple[int, int]                    # working image (w, h)
    depth: np.ndarray | None                 # learned depth of the keyframe (network size)


@dataclass
class Step:
    """What one frame did inside GeometricPose (diagnostics and tests)."""

    method: str = ""              # static | rotation | pnp | essential | restart |
    #                               wide-baseline pnp | wide-baseline rotation
    keyframe: bool = False
    tracks: int = 0
    inliers: int = 0
    inlier_ratio: float = 0.0
    parallax_px: float = 0.0
    scale_method: str = ""
    note: str = ""


class GeometryFailure(Exception):
    """Geometry cannot answer for this frame; ``category`` is a short, number-free reason."""

    def __init__(self, category: str, detail: str = ""):
        super().__init__(f"{category} ({detail})" if detail else category)
        self.category = category
