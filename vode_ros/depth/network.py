"""Dense depth from a depth model of the contract."""
from __future__ import annotations

import cv2
import numpy as np

from vode_ros.errors import ModelOutputError
from vode_ros.inference import ModelSpec, OnnxModel


def disparity_to_depth(disp: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Sigmoid disparity in [0, 1] to depth within [min_depth, max_depth] (Monodepth2's mapping:
    linear in inverse depth)."""
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    return 1.0 / (min_disp + (max_disp - min_disp) * disp)


def sample_depth(depth: np.ndarray, px: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Depth (any resolution, e.g. the depth network's input size) at pixels ``px`` of an image
    of ``size`` = (w, h), nearest sample, as float64."""
    dh, dw = depth.shape[:2]
    w, h = size
    x = np.clip(np.round((px[:, 0] + 0.5) * dw / w - 0.5).astype(int), 0, dw - 1)
    y = np.clip(np.round((px[:, 1] + 0.5) * dh / h - 0.5).astype(int), 0, dh - 1)
    return depth[y, x].astype(np.float64)


class DepthEstimator:
    """Runs the depth model and returns depth at the network and at the image resolution."""

    def __init__(self, model: OnnxModel, min_valid_fraction: float = 0.5):
        self.model = model
        self.spec: ModelSpec = model.spec
        self.min_valid_fraction = min_valid_fraction

    @property
    def metric(self) -> bool:
        return self.spec.metric

    def predict(self, tensor: np.ndarray) -> np.ndarray:
        """Depth (h x w float32, model units, NaN invalid) at the network's input size (for
        ``affine_inverse_depth`` models the inverse of the output: right up to an affine
        transform of its inverse, which ``vode_ros.depth.alignment`` fits)."""
        out = self.model(tensor)[0, 0].astype(np.float32)
        finite = np.isfinite(out)
        if finite.mean() < max(self.min_valid_fraction, 1e-9):
            raise ModelOutputError(f"depth model returned {int((~finite).sum())} non-finite "
                                   f"values of {out.size}; expected finite "
                                   f"{self.spec.output} values")
        if self.spec.output == "disparity":
            depth = disparity_to_depth(np.clip(out, 0.0, 1.0), self.spec.min_depth,
                                       self.spec.max_depth)
        elif self.spec.output == "affine_inverse_depth":
            # depth up to an affine transform of its inverse: 1 / output, in the depth range
            depth = 1.0 / np.clip(out, 1.0 / self.spec.max_depth, 1.0 / self.spec.min_depth)
        else:
            depth = np.clip(out, self.spec.min_depth, self.spec.max_depth)
        depth = depth.astype(np.float32)
        depth[~finite] = np.nan
        return depth

    @staticmethod
    def upsample(depth: np.ndarray, width: int, height: int) -> np.ndarray:
        """Depth resized to the image (bilinear; a pixel next to an invalid one stays invalid)."""
        if depth.shape == (height, width):
            return depth
        out = cv2.resize(depth, (width, height), interpolation=cv2.INTER_LINEAR)
        return out.astype(np.float32)
