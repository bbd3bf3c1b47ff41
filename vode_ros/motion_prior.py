"""Which rotation prediction starts Lucas-Kanade: the pose network's or constant velocity,
whichever has lately agreed better with the rotation geometry then found.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from vode_ros.geometry import rotation_angle_deg


class MotionPrior:
    """Which rotation prediction the tracker trusts: the pose network's (hybrid) or constant
    velocity (the last step's rotation again). Both are scored against the rotation geometry
    then finds (median angle of the last ``window`` frames); the network is trusted while its
    errors are no larger than constant velocity's."""

    def __init__(self, window: int = 30):
        self.errors: dict[str, deque[float]] = {"network": deque(maxlen=window),
                                                "constant velocity": deque(maxlen=window)}
        self.last_R: np.ndarray | None = None          # R_cur_prev of the last step
        self.pending: dict[str, np.ndarray] = {}

    def predict(self, network_R: np.ndarray | None) -> None:
        """The predictions for the frame being tracked (scored when it is placed)."""
        self.pending = {}
        if network_R is not None:
            self.pending["network"] = network_R
        if self.last_R is not None:
            self.pending["constant velocity"] = self.last_R

    def observe(self, R_cur_prev: np.ndarray, consecutive: bool) -> None:
        """Geometry placed the frame: score the predictions, remember the step's rotation."""
        for name, R in self.pending.items():
            self.errors[name].append(rotation_angle_deg(R.T @ R_cur_prev))
        self.pending = {}
        self.last_R = R_cur_prev.copy() if consecutive else None

    def trust_network(self) -> bool:
        net, cv = self.errors["network"], self.errors["constant velocity"]
        return not net or not cv or float(np.median(net)) <= float(np.median(cv))

    def fallback_rotation(self, network_R: np.ndarray) -> tuple[np.ndarray, str]:
        """The rotation (R_cur_prev) of a frame geometry could not place: the pose network's
        ``network_R``, or constant velocity's where that has lately predicted geometry's
        rotation better (a fast turn the network, trained on slower motion, does not follow).
        Returns (R, which)."""
        R = self.pending.get("constant velocity")
        if R is not None and not self.trust_network():
            return R.copy(), "constant velocity"
        return network_R, "network"

    def expected(self) -> tuple[np.ndarray, float] | None:
        """Constant velocity's prediction for the frame being tracked (R_cur_prev) with the
        median of its recent errors (degrees); None before it has a record of three. The
        network's prediction is left out on purpose: what checks geometry must not depend on a
        network that may never have seen the place (with one that had not, checking against it
        made 7-Scenes worse, 0.077 -> 0.109 m)."""
        R, errors = self.pending.get("constant velocity"), self.errors["constant velocity"]
        if R is None or len(errors) < 3:
            return None
        return R, float(np.median(errors))
