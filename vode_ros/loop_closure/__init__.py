"""Loop closure: an optional back-end that removes accumulated drift when the camera returns to
a place it has seen (keyframes, bag-of-words place recognition, PnP verification, a Sim(3) pose
graph in gtsam, map -> odom). ``backend.LoopClosure`` is the entry point; see its docstring."""
from __future__ import annotations

import contextlib

from vode_ros.loop_closure.backend import LoopClosure, LoopEvent  # noqa: F401


@contextlib.contextmanager
def loop_closure_for(cfg, blocking: bool = True):
    """``LoopClosure`` when ``cfg.loop_closure.enabled`` (else None), stopped on exit.
    Offline runs use ``blocking``: ``add`` waits until each keyframe is processed rather than
    dropping one, so results do not depend on machine load or thread timing."""
    if not cfg.loop_closure.enabled:
        yield None
        return
    lc = LoopClosure(cfg.loop_closure, blocking=blocking)
    try:
        yield lc
    finally:
        lc.stop()
