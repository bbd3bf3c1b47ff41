"""Pinhole camera intrinsics and the frame the pipeline consumes."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vode_ros.errors import InputError


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels (no distortion)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def validate(self) -> "Camera":
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values):
            raise InputError("camera", f"camera intrinsics must be finite, got fx={self.fx} "
                             f"fy={self.fy} cx={self.cx} cy={self.cy}")
        if self.fx <= 0 or self.fy <= 0:
            raise InputError("camera", f"camera focal lengths must be positive, got fx={self.fx} "
                             f"fy={self.fy}; is camera_info calibrated (K[0], K[4] non-zero)?")
        if self.width <= 0 or self.height <= 0:
            raise InputError("camera", f"camera size must be positive, got "
                             f"{self.width}x{self.height}")
        return self

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_K(cls, K, width: int, height: int) -> "Camera":
        K = np.asarray(K, dtype=float).reshape(3, 3)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                   int(width), int(height))

    def scaled(self, width: int, height: int) -> "Camera":
        """The same camera for the image resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Camera(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)


@dataclass
class Frame:
    """One camera image: stamp in nanoseconds, HxWx3 uint8 RGB, and its intrinsics."""

    stamp_ns: int
    image: np.ndarray
    camera: Camera

    def validate(self) -> "Frame":
        img = self.image
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 \
                or img.dtype != np.uint8:
            got = (f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray)
                   else type(img).__name__)
            raise InputError("image", f"a frame image must be an HxWx3 uint8 RGB array, got {got}")
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise InputError("zero_size", f"frame image is empty ({img.shape[1]}x{img.shape[0]})")
        self.camera.validate()
        if (self.camera.width, self.camera.height) != (img.shape[1], img.shape[0]):
            raise InputError("camera_size", f"camera_info is for {self.camera.width}x"
                             f"{self.camera.height} but the image is {img.shape[1]}x"
                             f"{img.shape[0]}; publish camera_info of the same resolution")
        return self
