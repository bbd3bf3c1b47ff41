"""The hybrid pose backend: the geometric tracker first, the pose network as its initial guess
(where the network was trained) and as fallback where geometry cannot answer.
"""
from __future__ import annotations

import numpy as np

from vode_ros.errors import ModelOutputError
from vode_ros.pose import FrameData, NetworkPose, PoseResult
from vode_ros.tracker import GeometricPose, Step


class HybridPose:
    """Geometry first; the pose network as initial guess (``use_guess``: its rotation predicts
    where the features move) and as fallback where geometry cannot answer (too few tracked
    features, no motion model, a textureless or dark frame). The network's translation is brought
    to the map's units by the recent geometric speed; the fallback and its reason show in
    ``PoseResult.backend`` (``network (fallback: <reason>)``) and ``reason``, its step's
    covariance inflated. Low parallax and pure rotation are no reason to fall back: geometry
    answers them exactly (rotation, no translation)."""

    name = "hybrid"

    def __init__(self, geometric: GeometricPose, network: NetworkPose, use_guess: bool):
        self.geometric = geometric
        self.network = network
        self.model = network.model
        self.use_guess = use_guess

    @property
    def metric(self) -> bool:
        return self.geometric.metric

    @property
    def last_step(self) -> Step:
        return self.geometric.last_step

    def reset(self) -> None:
        self.geometric.reset()

    def estimate(self, prev: FrameData, cur: FrameData) -> PoseResult:
        net = None
        if self.use_guess:
            net = self._network(prev, cur)
            if net is not None:
                self.geometric.prior_R = net.T[:3, :3].T          # R_cur_prev
        geo = self.geometric.estimate(prev, cur)
        if net is not None:
            geo.timings_ms["model"] = net.timings_ms.get("model", 0.0)
        if geo.ok:
            return geo
        if net is None:
            net = self._network(prev, cur)
        if net is None:
            geo.reason += "; the pose network's output is not finite either"
            return geo
        return self._fallback(prev, cur, geo, net)

    def _fallback(self, prev: FrameData, cur: FrameData, geo: PoseResult, net: PoseResult
                  ) -> PoseResult:
        """The network's step where geometry failed: its direction, the map's recent speed, and
        its rotation or constant velocity's, whichever has lately predicted geometry's rotation
        better (``MotionPrior.fallback_rotation``); the tracker (restarted at ``cur``) is placed
        there."""
        T = net.T.copy()
        R, which = self.geometric.motion.fallback_rotation(T[:3, :3].T)
        T[:3, :3] = R.T
        speed = self.geometric.map_speed()
        dt = (cur.stamp_ns - prev.stamp_ns) * 1e-9
        norm = float(np.linalg.norm(T[:3, 3]))
        if speed is not None and norm > 1e-12 and dt > 0:
            T[:3, 3] *= speed * dt / norm         # the network's direction, the map's speed
        self.geometric.rebase(prev, cur, T)
        category = self.geometric.last_step.note or "geometry failed"
        turn = "" if which == "network" else " (the rotation constant velocity's)"
        return PoseResult(T, ok=True, reason=f"fallback to the pose network{turn}: {geo.reason}",
                          sigma_scale=self.geometric.cfg.fallback_sigma_scale,
                          backend=f"network (fallback: {category})",
                          timings_ms={**geo.timings_ms, "model": net.timings_ms.get("model", 0)})

    def _network(self, prev: FrameData, cur: FrameData) -> PoseResult | None:
        try:
            return self.network.estimate(prev, cur)
        except ModelOutputError:
            return None
