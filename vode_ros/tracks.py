"""The features the keyframe tracker follows (``vode_ros.tracker``): where each is in the last
frame and in the keyframe, its last image motion, its map point and its rays in the keyframes of
the window, as parallel arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Tracks:
    """The features the tracker follows: parallel arrays, one row per feature."""

    px: np.ndarray                # (N, 2) float32: in the last frame
    px_kf: np.ndarray             # (N, 2) float32: in the keyframe
    vel: np.ndarray               # (N, 2) float32: last image motion, NaN when new
    Xw: np.ndarray                # (N, 3): map point in the backend's world, NaN: none
    obs: np.ndarray               # (N, W, 3): unit ray in each keyframe of the window, NaN: unseen

    @classmethod
    def detected(cls, pts: np.ndarray, window: int) -> Tracks:
        """New tracks at ``pts`` (in the last frame and the keyframe alike), no map points, no
        rays yet; ``window``: how many keyframes ``obs`` holds."""
        n = len(pts)
        px = pts.astype(np.float32).copy()
        return cls(px, px.copy(), np.full((n, 2), np.nan, np.float32), np.full((n, 3), np.nan),
                   np.full((n, window, 3), np.nan))

    def __len__(self) -> int:
        return len(self.px)

    def kept(self, mask: np.ndarray) -> Tracks:
        """The tracks selected by ``mask`` (bool or indices)."""
        return Tracks(self.px[mask], self.px_kf[mask], self.vel[mask], self.Xw[mask],
                      self.obs[mask])

    def slide_window(self) -> None:
        """The oldest keyframe leaves the window: its rays go, an empty column comes last."""
        self.obs = np.concatenate([self.obs[:, 1:], np.full((len(self.obs), 1, 3), np.nan)], 1)

    def extended(self, more: Tracks) -> Tracks:
        """These tracks followed by ``more``."""
        return Tracks(*(np.concatenate([a, b]) for a, b in
                        ((self.px, more.px), (self.px_kf, more.px_kf), (self.vel, more.vel),
                         (self.Xw, more.Xw), (self.obs, more.obs))))
