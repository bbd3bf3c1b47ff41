"""Metric scale from wheel odometry: the distance the wheels travelled against the distance the
odometry travelled in its own unit, over a sliding window of steps.

Only the distance travelled is used (the length of the wheel odometry's path, interpolated at the
image stamps), never its heading: wheel headings drift and slip where distances mostly do not.
A wheel that stalls or spins while the camera moves gives per-step ratios far from the window's;
they are left out (a robust ratio), and where no step agrees the scale holds its last value.
"""
from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from vode_ros.scale.status import ScaleStatus

SOURCE = "wheel_odom"


class WheelPath:
    """Cumulative travelled distance of the wheel odometry, by stamp (samples in time order)."""

    def __init__(self, max_samples: int = 20000):
        self.stamps_ns: deque[int] = deque(maxlen=max_samples)
        self.distance_m: deque[float] = deque(maxlen=max_samples)
        self._last_xyz: np.ndarray | None = None
        self._lock = threading.Lock()        # samples arrive on another thread than frames

    def __len__(self) -> int:
        return len(self.stamps_ns)

    @property
    def last_stamp_ns(self) -> int | None:
        with self._lock:
            return self.stamps_ns[-1] if self.stamps_ns else None

    def add(self, stamp_ns: int, xyz) -> bool:
        """One wheel odometry position (metres, any fixed frame); a sample not after the last is
        ignored (returns False)."""
        p = np.asarray(xyz, float).reshape(3)
        if not np.all(np.isfinite(p)):
            return False
        with self._lock:
            if self.stamps_ns and stamp_ns <= self.stamps_ns[-1]:
                return False
            step = 0.0 if self._last_xyz is None else float(np.linalg.norm(p - self._last_xyz))
            self.stamps_ns.append(int(stamp_ns))
            self.distance_m.append((self.distance_m[-1] if self.distance_m else 0.0) + step)
            self._last_xyz = p
        return True

    def distance_at(self, stamp_ns: int) -> float | None:
        """Travelled distance at ``stamp_ns``, linearly interpolated; None outside the samples."""
        with self._lock:
            s = self.stamps_ns
            if not s or stamp_ns < s[0] or stamp_ns > s[-1]:
                return None
            i = bisect.bisect_left(s, stamp_ns)
            if s[i] == stamp_ns:
                return self.distance_m[i]
            t0, t1 = s[i - 1], s[i]
            d0, d1 = self.distance_m[i - 1], self.distance_m[i]
        return d0 + (d1 - d0) * (stamp_ns - t0) / (t1 - t0)

    def clear(self) -> None:
        with self._lock:
            self.stamps_ns.clear()
            self.distance_m.clear()
            self._last_xyz = None


@dataclass
class _Segment:
    t0_ns: int
    t1_ns: int
    units: float                  # the odometry's displacement over the segment, its own unit
    metres: float | None = None   # the wheels' travelled distance over the same interval


class WheelScale:
    """Metres per odometry unit from the wheel path (``add_wheel``) and the odometry's steps
    (``factor_for``).

    The odometry's path (its own unit) is cut into segments of ``segment_s`` seconds; each
    segment's length (the displacement from its start to its end: frame-to-frame jitter
    cancels) is compared with the wheels' travelled distance over the same interval. The scale
    is the ratio of the sums over the last ``window`` segments, leaving out those whose own ratio
    is more than ``max_deviation`` (a factor) from the window's median and those where the
    wheels did not move (a stalled wheel); with none left, the scale holds. The segment under
    way counts too (it follows a drifting unit sooner and gives the first ratio). The confidence
    is the fraction of segments kept, lower while fewer than three were measured.
    """

    def __init__(self, window: int = 4, segment_s: float = 0.5, max_deviation: float = 1.5,
                 min_units: float = 1e-9):
        self.window = int(window)
        self.segment_ns = int(round(segment_s * 1e9))
        self.max_deviation = float(max_deviation)
        self.min_units = float(min_units)
        self.path = WheelPath()
        self.reset()

    def reset(self) -> None:
        """Forget the odometry's path, the wheel path and the scale (a replayed recording starts
        both streams again)."""
        self.path.clear()
        self.segments: deque[_Segment] = deque(maxlen=self.window)
        self.pending: deque[_Segment] = deque(maxlen=10 * self.window)
        self.position = np.zeros(3)          # the odometry's position, its own unit
        self.rotation = np.eye(3)
        self.anchor: tuple[int, np.ndarray] | None = None
        self.steps_since_anchor = 0
        self.status = ScaleStatus(SOURCE)

    def add_wheel(self, stamp_ns: int, xyz) -> bool:
        return self.path.add(stamp_ns, xyz)

    def factor_for(self, t0_ns: int, t1_ns: int, step: np.ndarray) -> float:
        """The odometry made ``step`` (4x4, translation in its own unit) from ``t0_ns`` to
        ``t1_ns``: record it and return the metres per unit to apply to it (1.0 before the
        wheels gave any distance)."""
        if self.anchor is None:
            self.anchor = (int(t0_ns), self.position.copy())
        self.position = self.position + self.rotation @ step[:3, 3]
        self.rotation = self.rotation @ step[:3, :3]
        self.steps_since_anchor += 1
        if t1_ns - self.anchor[0] >= self.segment_ns:
            units = float(np.linalg.norm(self.position - self.anchor[1]))
            self.pending.append(_Segment(self.anchor[0], int(t1_ns), units))
            self.anchor, self.steps_since_anchor = (int(t1_ns), self.position.copy()), 0
        self._resolve()
        self._estimate(t1_ns)
        return self.status.m_per_unit

    def _resolve(self) -> None:
        """Segments the wheel path now covers enter the window."""
        last = self.path.last_stamp_ns
        while self.pending and last is not None and self.pending[0].t1_ns <= last:
            seg = self.pending.popleft()
            if self._measure(seg):
                self.segments.append(seg)

    def _measure(self, seg: _Segment) -> bool:
        """The wheels' distance over ``seg``; False where the wheel path does not cover it or the
        odometry did not move."""
        d0, d1 = self.path.distance_at(seg.t0_ns), self.path.distance_at(seg.t1_ns)
        if d0 is None or d1 is None or seg.units <= self.min_units:
            return False
        seg.metres = d1 - d0
        return True

    def _under_way(self, now_ns: int) -> list[_Segment]:
        """The segment under way (from its start to ``now_ns``) where the wheels cover it."""
        if self.anchor is None or self.steps_since_anchor == 0:
            return []
        seg = _Segment(self.anchor[0], int(now_ns),
                       float(np.linalg.norm(self.position - self.anchor[1])))
        return [seg] if self._measure(seg) else []

    def _estimate(self, now_ns: int) -> None:
        """The robust ratio over the window's segments and the one under way."""
        segments = list(self.segments) + self._under_way(now_ns)
        if not segments:
            return
        units = np.array([s.units for s in segments])
        metres = np.array([s.metres for s in segments])
        moving = metres > 0
        if not moving.any():                 # the wheels stalled: hold the scale
            self.status.confidence *= 0.5
            return
        ratio = metres[moving] / units[moving]
        centre = _weighted_median(ratio, units[moving])
        inl = np.zeros(len(units), bool)
        inl[moving] = _within(ratio, centre, self.max_deviation)
        self.status.update(float(metres[inl].sum() / units[inl].sum()),
                           float(inl.mean()) * min(1.0, len(segments) / min(3, self.window + 1)),
                           now_ns)


def _within(ratio, centre: float, factor: float):
    return np.abs(np.log(np.maximum(ratio, 1e-300) / centre)) <= np.log(factor)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    c = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(c, 0.5 * c[-1])])


def read_wheel_tum(path) -> list[tuple[int, np.ndarray]]:
    """(stamp ns, position) of each line of a TUM trajectory file (``t x y z qx qy qz qw``; the
    orientation is not used); ``#`` comments and blank lines are skipped."""
    from vode_ros.errors import InputError
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) < 4:
                raise InputError("wheel_odom", f"{path}:{n}: expected 't x y z [qx qy qz qw]', "
                                 f"got {line!r}")
            out.append((int(round(float(parts[0]) * 1e9)), np.array(parts[1:4], float)))
    if len(out) < 2:
        raise InputError("wheel_odom", f"{path}: at least 2 wheel odometry samples are needed, "
                         f"got {len(out)}")
    return out
