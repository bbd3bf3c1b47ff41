"""A depth image as a coloured point cloud in the camera's optical frame (REP-103: x right,
y down, z forward), what ``depth/points`` publishes for RViz."""
from __future__ import annotations

import cv2
import numpy as np

from vode_ros.camera import Camera


def depth_points(depth: np.ndarray, camera: Camera, rgb: np.ndarray, stride: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(N x 3 float32 points, N x 3 uint8 colours) of every ``stride``-th pixel in each
    direction of ``depth`` (intrinsics ``camera``) with a finite positive depth; ``rgb`` (any
    resolution) gives the colours."""
    if rgb.shape[:2] != depth.shape:
        rgb = cv2.resize(rgb, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_AREA)
    s = max(int(stride), 1)
    d = depth[::s, ::s]
    v, u = np.nonzero(np.isfinite(d) & (d > 0))
    z = d[v, u].astype(np.float32)
    u, v = u * s, v * s
    xyz = np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z], 1)
    return xyz.astype(np.float32), rgb[v, u]
