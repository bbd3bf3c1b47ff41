"""``ScaleStatus``: where the trajectory's metres come from, how much to trust them, and when they
were last measured."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ScaleStatus:
    """The metric scale of the odometry as its source last measured it.

    ``m_per_unit``: metres per unit of the pose backend's translations, the factor the odometry
    applies to each step (1.0 where the backend is metric itself or nothing was measured yet);
    ``confidence`` in [0, 1] of the last update (it decays while the scale is held);
    ``last_update_ns``: stamp of the frame where it was last measured (None: never);
    ``updates``: how many times it was measured.
    """

    source: str
    m_per_unit: float = 1.0
    confidence: float = 0.0
    last_update_ns: int | None = None
    updates: int = 0

    def update(self, m_per_unit: float, confidence: float, stamp_ns: int) -> None:
        self.m_per_unit = float(m_per_unit)
        self.confidence = float(min(max(confidence, 0.0), 1.0))
        self.last_update_ns = int(stamp_ns)
        self.updates += 1

    def to_dict(self) -> dict:
        return asdict(self)
