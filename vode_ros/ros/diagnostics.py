"""What the node's /diagnostics says, and the small bookkeeping behind it: rolling frame
statistics, a throttle for repeated log lines, and the scale source's status."""
from __future__ import annotations

import collections
import time

import numpy as np


class Throttle:
    """One log line per fault kind per period."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self.last: dict[str, float] = {}
        self.counts: collections.Counter = collections.Counter()

    def ready(self, kind: str) -> bool:
        self.counts[kind] += 1
        now = time.monotonic()
        if now - self.last.get(kind, -1e18) >= self.period_s:
            self.last[kind] = now
            return True
        return False


class Stats:
    """Rolling figures for diagnostics and the benchmark."""

    def __init__(self, window: int = 300):
        self.arrivals = collections.deque(maxlen=window)
        self.latency_ms = collections.deque(maxlen=window)
        self.stage_ms: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=window))
        self.received = self.processed = self.dropped = self.skipped = 0

    def input_rate_hz(self) -> float:
        if len(self.arrivals) < 2:
            return 0.0
        span = self.arrivals[-1] - self.arrivals[0]
        return (len(self.arrivals) - 1) / span if span > 0 else 0.0

    def values(self) -> dict[str, str]:
        """Input rate, latency percentiles and frame counts, as diagnostics strings."""
        lat = np.array(self.latency_ms) if self.latency_ms else np.zeros(1)
        return {"input_rate_hz": f"{self.input_rate_hz():.2f}",
                "latency_ms_p50": f"{np.percentile(lat, 50):.2f}",
                "latency_ms_p99": f"{np.percentile(lat, 99):.2f}",
                "frames_received": str(self.received), "frames_processed": str(self.processed),
                "frames_dropped": str(self.dropped), "frames_skipped": str(self.skipped)}


def scale_values(scale_source: str, status: dict | None) -> dict[str, str]:
    """Which scale source is in use, its confidence and last update (where it measures one;
    ``status`` is ``Estimate.scale_status``: the stamp of the frame that last measured it)."""
    values = {"scale_source": scale_source}
    if status is not None:
        last = status["last_update_ns"]
        values.update({"scale_m_per_unit": f"{status['m_per_unit']:.6g}",
                       "scale_confidence": f"{status['confidence']:.3f}",
                       "scale_updates": str(status["updates"]),
                       "scale_last_update_stamp": "never" if last is None else
                       f"{last * 1e-9:.3f}"})
    return values
