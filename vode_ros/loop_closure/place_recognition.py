"""Place recognition over the keyframe database: which older keyframes a new one may revisit.

DBoW2-style: L1 bag-of-words scores against keyframes older than ``min_gap_keyframes`` (of the
same session; any keyframe of another session), above ``min_score`` and ``min_score_ratio`` x
the score with the previous keyframe, the best per neighbourhood of ``consistency_window``
keyframes; kept when consistent over ``consistency`` consecutive queries.
"""
from __future__ import annotations

import numpy as np

from vode_ros.loop_closure.keyframes import Keyframe
from vode_ros.loop_closure.vocabulary import BowDatabase


def candidates(cfg, kf: Keyframe, keyframes: list[Keyframe], db: BowDatabase,
               by_id: dict[int, Keyframe], prev: Keyframe | None) -> list[tuple[int, float]]:
    """(keyframe id, score) of keyframes that pass the score thresholds, best per
    neighbourhood of ``consistency_window`` keyframes, best first. ``kf`` is the last row of
    ``keyframes`` and ``db``; ``prev`` the session's keyframe before it (None: none)."""
    c = cfg
    n = len(keyframes) - 1            # kf itself is the last row
    if n <= 0 or not len(kf.bow[0]):
        return []
    ids = np.array([k.id for k in keyframes[:n]])
    sessions = np.array([k.session for k in keyframes[:n]])
    # a revisit: old enough, and the way travelled since is longer than the way between
    # (driving on and seeing the same place from further is no loop)
    path = kf.path - np.array([k.path for k in keyframes[:n]])
    dist = np.linalg.norm(np.array([k.odom_pose[:3, 3] for k in keyframes[:n]]) -
                          kf.odom_pose[:3, 3], axis=1)
    same = sessions == kf.session
    eligible = ~same | ((ids <= kf.id - c.min_gap_keyframes) &
                        (path >= c.min_revisit_ratio * dist))
    if not eligible.any():
        return []
    scores = db.scores(db.dense(*kf.bow), n)
    ref = float(np.minimum(db.dense(*kf.bow)[prev.bow[0]], prev.bow[1]).sum()) \
        if prev is not None else 0.0
    threshold = max(c.min_score, c.min_score_ratio * ref)
    ok = np.where(eligible & (scores >= threshold))[0]
    out: list[tuple[int, float]] = []
    for i in ok[np.argsort(-scores[ok])]:
        kid = int(ids[i])
        if any(abs(kid - o) <= c.consistency_window and
               by_id[o].session == keyframes[i].session for o, _ in out):
            continue
        out.append((kid, float(scores[i])))
        if len(out) >= c.max_candidates:
            break
    return out


class TemporalConsistency:
    """A candidate counts the consecutive queries (keyframes of one session) whose candidates
    lay within ``window`` keyframes of it; those counted ``required`` times pass."""

    def __init__(self, window: int, required: int):
        self.window, self.required = window, required
        self._counts: dict[int, int] = {}
        self._query: int | None = None

    def filter(self, kf: Keyframe, prev: Keyframe | None, cands: list[tuple[int, float]],
               by_id: dict[int, Keyframe]) -> list[tuple[int, float]]:
        """The candidates of query ``kf`` that are consistent (``prev``: the session's keyframe
        before ``kf``; the counts carry over only when it was the last query)."""
        carry = self._counts if prev is not None and self._query == prev.id else {}
        counts = {}
        for kid, _ in cands:
            best = 0
            for pid, cnt in carry.items():
                if abs(pid - kid) <= self.window and \
                        by_id[pid].session == by_id[kid].session:
                    best = max(best, cnt)
            counts[kid] = best + 1
        self._counts, self._query = counts, kf.id
        return [(kid, s) for kid, s in cands if counts[kid] >= self.required]
