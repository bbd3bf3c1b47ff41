"""Wide-baseline matching: binary (ORB) descriptors of the recent keyframes' map points, matched
against a frame that Lucas-Kanade could not follow (a fast turn, a blur, a gap in the stream)
or that comes after tracking was lost, to place it in the map again (relocalisation).

At each keyframe the tracker hands over the features it tracks and their map points; their
ORB descriptors (Rublee et al., ICCV 2011; upright: a hand-held camera rolls little) are kept
with the points for the last few keyframes. A frame to recover is described the same way at
its own ORB corners, matched to each kept keyframe with Lowe's ratio test, and verified
geometrically: PnP in RANSAC on the matched map points (the pose then lands in the map's own
frame and scale); where too few points verify, the rotation alone from the matched rays, the
position held.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from vode_ros.multiview import bearings, pnp_pose, rotation_only

PATCH = 31                          # ORB's patch size: keypoints closer to the border are dropped
ASSOCIATE_PX = 1.5                  # an ORB corner this close to a tracked feature takes its point


@dataclass
class KeyframeFeatures:
    """What is kept of one keyframe for wide-baseline matching."""

    stamp_ns: int
    world: np.ndarray             # T_world_keyframe
    px: np.ndarray                # (N, 2) float32 feature positions in the keyframe
    desc: np.ndarray              # (N, 32) uint8 ORB descriptors
    Xw: np.ndarray                # (N, 3) their map points (world)


@dataclass
class Recovery:
    """A frame placed against a kept keyframe."""

    world: np.ndarray             # T_world_frame
    method: str                   # 'pnp' (position and orientation) or 'rotation'
    keyframe: KeyframeFeatures
    px: np.ndarray                # (M, 2) verified matches: positions in the frame
    Xw: np.ndarray                # (M, 3) and their map points (NaN for 'rotation')
    inliers: int
    matches: int


def upright_orb(grey: np.ndarray, px: np.ndarray, orb) -> tuple[np.ndarray, np.ndarray]:
    """Upright ORB descriptors at ``px``: (indices of ``px`` described, descriptors)."""
    if len(px) == 0:
        return np.zeros(0, int), np.zeros((0, 32), np.uint8)
    kps = [cv2.KeyPoint(float(x), float(y), PATCH, 0.0, 0, 0, i) for i, (x, y) in enumerate(px)]
    kps, desc = orb.compute(grey, kps)
    if desc is None or not kps:
        return np.zeros(0, int), np.zeros((0, 32), np.uint8)
    return np.array([k.class_id for k in kps], int), desc


def ratio_matches(desc_a: np.ndarray, desc_b: np.ndarray, ratio: float) -> np.ndarray:
    """(K, 2) index pairs (a, b) whose best Hamming match is clearly better than the second
    (Lowe's ratio test), each b used once."""
    if len(desc_a) < 2 or len(desc_b) < 2:
        return np.zeros((0, 2), int)
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(desc_a, desc_b, k=2)
    pairs = [(m.queryIdx, m.trainIdx, m.distance) for m, n in (p for p in knn if len(p) == 2)
             if m.distance < ratio * n.distance]
    if not pairs:
        return np.zeros((0, 2), int)
    pairs.sort(key=lambda p: p[2])
    seen, out = set(), []
    for a, b, _ in pairs:
        if b not in seen:
            seen.add(b)
            out.append((a, b))
    return np.array(out, int)


class KeyframeMemory:
    """ORB descriptors of the features of the last ``capacity`` keyframes, with their map
    points."""

    def __init__(self, capacity: int = 8, n_features: int = 1000, ratio: float = 0.8):
        self.keyframes: deque[KeyframeFeatures] = deque(maxlen=capacity)
        self.ratio = ratio
        self.orb = cv2.ORB_create(nfeatures=n_features, nlevels=3, scaleFactor=1.2,
                                  edgeThreshold=PATCH, patchSize=PATCH, fastThreshold=10)

    def __len__(self) -> int:
        return len(self.keyframes)

    def clear(self) -> None:
        self.keyframes.clear()

    def add(self, stamp_ns: int, grey: np.ndarray, world: np.ndarray, px: np.ndarray,
            Xw: np.ndarray, min_points: int) -> None:
        """Keep a keyframe: the features at ``px`` with their map points ``Xw`` (NaN: none;
        those serve the rotation-only model), and the keyframe's own ORB corners, which a
        later frame's ORB corners find again more often than the tracker's corners (each takes
        the map point of a tracked feature within ``ASSOCIATE_PX``, else none)."""
        idx, desc = upright_orb(grey, px, self.orb)
        if np.isfinite(Xw[idx, 2]).sum() < min_points:
            return
        px_k, X_k = px[idx].astype(np.float32), Xw[idx]
        corners, desc_c = self.describe(grey)
        if len(corners) and len(px_k):
            dist, near = cKDTree(px_k).query(corners)
            X_c = np.where((dist <= ASSOCIATE_PX)[:, None], X_k[near], np.nan)
            px_k = np.concatenate([px_k, corners])
            desc = np.concatenate([desc, desc_c])
            X_k = np.concatenate([X_k, X_c])
        self.keyframes.append(KeyframeFeatures(stamp_ns, world.copy(), px_k, desc,
                                               X_k.copy()))

    def describe(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ORB corners of a frame and their upright descriptors."""
        kps = self.orb.detect(grey)
        px = cv2.KeyPoint_convert(kps).reshape(-1, 2) if kps else np.zeros((0, 2), np.float32)
        idx, desc = upright_orb(grey, px, self.orb)
        return px[idx].astype(np.float32), desc

    def matched_motion(self, grey0: np.ndarray, grey1: np.ndarray, px: np.ndarray,
                       threshold_px: float, min_matches: int, neighbours: int = 5
                       ) -> tuple[np.ndarray, np.ndarray] | None:
        """Where the points ``px`` of frame 0 went in frame 1, from ORB matches between the two
        frames (each described at its own ORB corners, Lowe's ratio test, the fundamental
        matrix in RANSAC): each point moved as the median of its ``neighbours`` nearest
        verified matches, so that the prediction follows the turn and the translation's
        parallax alike. A start for Lucas-Kanade where a fast motion took the features out of
        its reach. Returns (the predicted positions, the fundamental matrix ``F`` with
        ``x1^T F x0 = 0``), or None with fewer than ``min_matches`` verified matches."""
        if len(px) == 0:
            return None
        px0, d0 = self.describe(grey0)
        px1, d1 = self.describe(grey1)
        m = ratio_matches(d0, d1, self.ratio)
        if len(m) < max(min_matches, 8):
            return None
        a, b = px0[m[:, 0]].astype(np.float64), px1[m[:, 1]].astype(np.float64)
        F, inl = cv2.findFundamentalMat(a, b, cv2.FM_RANSAC, threshold_px, 0.999)
        if F is None or F.shape != (3, 3) or inl is None or inl.sum() < min_matches:
            return None
        keep = inl.ravel().astype(bool)
        a, flow = a[keep], (b - a)[keep]
        k = min(neighbours, len(a))
        _, idx = cKDTree(a).query(np.asarray(px, np.float64), k=k)
        idx = np.asarray(idx).reshape(len(px), k)
        return (px + np.median(flow[idx], axis=1)).astype(np.float32), F

    def recover(self, grey: np.ndarray, K: np.ndarray, position: np.ndarray,
                pnp_threshold_px: float, min_points: int, before_ns: int | None = None,
                then_newer: bool = False) -> Recovery | None:
        """Place the frame ``grey`` against the kept keyframes, newest first (only those older
        than ``before_ns`` where given; with ``then_newer`` the others after them, where the
        older ones verify nothing): PnP on the matched map points, else the rotation from the
        matched rays (``position``: where the camera is held then). None when no keyframe
        verifies."""
        newest_first = list(reversed(self.keyframes))
        older = [kf for kf in newest_first if before_ns is None or kf.stamp_ns < before_ns]
        groups = [older]
        if then_newer and before_ns is not None:
            groups.append([kf for kf in newest_first if kf.stamp_ns >= before_ns])
        if not any(groups):
            return None
        px, desc = self.describe(grey)
        for group in groups:
            best = self._recover_from(group, px, desc, K, position, pnp_threshold_px,
                                      min_points)
            if best is not None:
                return best
        return None

    def _recover_from(self, keyframes: list[KeyframeFeatures], px: np.ndarray,
                      desc: np.ndarray, K: np.ndarray, position: np.ndarray,
                      pnp_threshold_px: float, min_points: int) -> Recovery | None:
        """The first of ``keyframes`` that PnP verifies, else the rotation with most inliers."""
        best: Recovery | None = None
        for kf in keyframes:
            m = ratio_matches(kf.desc, desc, self.ratio)
            if len(m) < min_points:
                continue
            got = _verify(kf, px[m[:, 1]], kf.px[m[:, 0]], kf.Xw[m[:, 0]], K, position,
                          pnp_threshold_px, min_points)
            if got is not None and got.method == "pnp":
                return got
            if got is not None and (best is None or got.inliers > best.inliers):
                best = got
        return best

def _verify(kf: KeyframeFeatures, px: np.ndarray, px_kf: np.ndarray, Xw: np.ndarray,
            K: np.ndarray, position: np.ndarray, threshold_px: float, min_points: int
            ) -> Recovery | None:
    """Geometric verification of matches with keyframe ``kf``: PnP on its map points, else the
    rotation-only model on the rays."""
    mapped = np.flatnonzero(np.isfinite(Xw[:, 2]))
    if len(mapped) >= min_points:
        T_cw, inl = pnp_pose(Xw[mapped], px[mapped], K, threshold_px)
        if T_cw is not None and inl.sum() >= min_points:
            sel = mapped[inl]
            return Recovery(np.linalg.inv(T_cw), "pnp", kf, px[sel], Xw[sel], len(sel),
                            len(px))
    f_px = 0.5 * (K[0, 0] + K[1, 1])
    b0, b1 = bearings(px_kf, K), bearings(px, K)
    R, inl = rotation_only(b0, b1, 2.0 * threshold_px / f_px)     # R_frame_kf
    if R is None or inl.sum() < min_points:
        return None
    T = np.eye(4)
    T[:3, :3] = kf.world[:3, :3] @ R.T
    T[:3, 3] = position
    return Recovery(T, "rotation", kf, px[inl], np.full((int(inl.sum()), 3), np.nan),
                    int(inl.sum()), len(px))


def epipolar_distance(F: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance (pixels) of each ``p1`` from the epipolar line ``F p0`` of its ``p0`` (OpenCV's
    lines, normalised so that a^2 + b^2 = 1); inf where it is not finite."""
    if len(p0) == 0:
        return np.zeros(0)
    lines = cv2.computeCorrespondEpilines(np.asarray(p0, np.float32).reshape(-1, 1, 2), 1,
                                          np.asarray(F, np.float64)).reshape(-1, 3)
    q = np.asarray(p1, np.float64).reshape(-1, 2)
    d = np.abs(lines[:, 0] * q[:, 0] + lines[:, 1] * q[:, 1] + lines[:, 2])
    return np.where(np.isfinite(d), d, np.inf)
