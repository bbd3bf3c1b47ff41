"""What a keyframe keeps of its image for a revisit: ORB keypoints and binary descriptors.

ORB (Rublee et al., ICCV 2011) on a grey working image of at most ``max_pixels`` pixels; the
keypoint coordinates are returned in the pixels of that working image together with its camera,
so verification can lift and project them without knowing the original resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vode_ros.camera import Camera


@dataclass
class Features:
    """Keypoints (N, 2) float32 working-image pixels, descriptors (N, 32) uint8, the working
    camera, and the keypoints' octave (pyramid level) for matching tolerances."""

    keypoints: np.ndarray
    descriptors: np.ndarray
    camera: Camera
    octaves: np.ndarray

    def __len__(self) -> int:
        return len(self.keypoints)


def grey_working_image(image: np.ndarray, camera: Camera, max_pixels: int
                       ) -> tuple[np.ndarray, Camera]:
    """The image as grey uint8 reduced (never enlarged) to at most ``max_pixels`` pixels."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape[:2]
    s = min(1.0, float(np.sqrt(max_pixels / float(w * h))))
    ww, wh = max(16, int(round(w * s))), max(16, int(round(h * s)))
    if (ww, wh) != (w, h):
        grey = cv2.resize(grey, (ww, wh), interpolation=cv2.INTER_AREA)
    return grey, camera.scaled(ww, wh)


class OrbExtractor:
    """ORB with a fixed feature budget; ``extract`` returns ``Features``."""

    def __init__(self, n_features: int = 1000, max_pixels: int = 307200,
                 fast_threshold: int = 12):
        self.max_pixels = int(max_pixels)
        self.orb = cv2.ORB_create(nfeatures=int(n_features), scaleFactor=1.2, nlevels=8,
                                  edgeThreshold=19, patchSize=31, fastThreshold=fast_threshold)

    def extract(self, image: np.ndarray, camera: Camera) -> Features:
        grey, cam = grey_working_image(image, camera, self.max_pixels)
        kps, desc = self.orb.detectAndCompute(grey, None)
        if desc is None or not kps:
            return Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), cam,
                            np.zeros(0, np.int16))
        pts = np.array([k.pt for k in kps], np.float32)
        octaves = np.array([k.octave for k in kps], np.int16)
        return Features(pts, np.ascontiguousarray(desc, np.uint8), cam, octaves)


def match_descriptors(query: np.ndarray, train: np.ndarray, ratio: float = 0.8,
                      max_distance: int = 64) -> np.ndarray:
    """Mutual-ratio matches between two descriptor sets: (M, 2) int indices (query, train).

    A match is kept when its Hamming distance is at most ``max_distance`` and smaller than
    ``ratio`` times the second-best one (Lowe's ratio test), and each train descriptor is used
    at most once (the closest query wins)."""
    if len(query) < 2 or len(train) < 2:
        return np.zeros((0, 2), np.int64)
    bf = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = bf.knnMatch(query, train, k=2)
    best: dict[int, tuple[int, int]] = {}
    for m in pairs:
        if len(m) < 2:
            continue
        a, b = m
        if a.distance > max_distance or a.distance >= ratio * b.distance:
            continue
        prev = best.get(a.trainIdx)
        if prev is None or a.distance < prev[1]:
            best[a.trainIdx] = (a.queryIdx, a.distance)
    if not best:
        return np.zeros((0, 2), np.int64)
    out = np.array([(q, t) for t, (q, _) in best.items()], np.int64)
    return out[np.argsort(out[:, 0])]
