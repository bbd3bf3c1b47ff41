"""Robust statistics shared by the scale sources and the depth alignment."""
from __future__ import annotations

import numpy as np


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The weighted median, interpolated between the middle values (equal weights: the
    median)."""
    order = np.argsort(values)
    v, w = values[order], weights[order]
    c = np.cumsum(w) - 0.5 * w                 # the centre of each value's weight
    return float(np.interp(0.5 * w.sum(), c, v))
