"""``TfTree``: the transforms of a bag's /tf and /tf_static, looked up per stamp."""
from __future__ import annotations

import numpy as np

from vode_ros.datasets.base import DatasetError, poses_at
from vode_ros.message_fields import header_stamp_ns, pose_matrix

MAX_DT_NS = 100_000_000          # a moving link's nearest sample is at most this far from a stamp


class TfTree:
    """The transforms of /tf and /tf_static, looked up per stamp: a moving link interpolated
    between its samples (``poses_at``), NaN where none is within ``max_dt_ns`` (no
    extrapolation)."""

    def __init__(self, max_dt_ns: int = MAX_DT_NS):
        self.max_dt_ns = int(max_dt_ns)
        self._dyn: dict[str, tuple[str, list, list]] = {}
        self._static: dict[str, tuple[str, np.ndarray]] = {}
        self._arrays: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}

    def add(self, msg, static: bool) -> None:
        for t in msg.transforms:
            parent = t.header.frame_id.lstrip("/")
            child = t.child_frame_id.lstrip("/")
            T = pose_matrix(t.transform.translation, t.transform.rotation)
            if static:
                self._static[child] = (parent, T)
            else:
                entry = self._dyn.setdefault(child, (parent, [], []))
                entry[1].append(header_stamp_ns(t.header))
                entry[2].append(T)

    def finish(self) -> None:
        for child, (parent, stamps, poses) in self._dyn.items():
            s = np.asarray(stamps, dtype=np.int64)
            order = np.argsort(s, kind="stable")
            self._arrays[child] = (parent, s[order], np.asarray(poses)[order])

    @property
    def frames(self) -> set[str]:
        out = set()
        for child, (parent, *_rest) in list(self._arrays.items()) + list(self._static.items()):
            out.update((child, parent))
        return out

    @property
    def moving(self) -> list[str]:
        return sorted(self._arrays)

    def moving_leaves(self) -> list[str]:
        parents = {p for p, *_ in self._arrays.values()}
        return [c for c in self.moving if c not in parents]

    def parent(self, frame: str) -> str | None:
        if frame in self._arrays:
            return self._arrays[frame][0]
        if frame in self._static:
            return self._static[frame][0]
        return None

    def static_path(self, frame: str, ancestor: str) -> np.ndarray | None:
        """T_ancestor_frame through static links only, or None."""
        T = np.eye(4)
        f = frame
        for _ in range(64):
            if f == ancestor:
                return T
            if f not in self._static or f in self._arrays:
                return None
            parent, S = self._static[f]
            T = S @ T
            f = parent
        return None

    def lookup(self, frame: str, stamps: np.ndarray) -> tuple[np.ndarray, str]:
        """T_root_frame at each stamp (NaN where a moving link has no sample) and the root."""
        out = np.tile(np.eye(4), (len(stamps), 1, 1))
        f = frame
        for _ in range(64):
            if f in self._arrays:
                parent, s, P = self._arrays[f]
                out = poses_at(stamps, s, P, self.max_dt_ns) @ out
            elif f in self._static:
                parent, S = self._static[f]
                out = S @ out
            else:
                return out, f
            f = parent
        raise DatasetError(f"/tf has a cycle through frame '{frame}'", "bag")
