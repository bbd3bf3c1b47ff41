"""An rclpy node on its own context, spun by a background thread, closed in a safe order.

Used by ``vode bag`` (player and recorder), ``vode demo`` and the tests' graph peer.

Why the order matters: rclpy does not support destroying a node, its executor's guard condition
or its context while another thread is inside ``executor.spin()`` waiting on them (ros2/rclpy
#255 and #663: segfaults; #968: a race in executor shutdown), and a process blocked there holds
the GIL, so no Python-level timeout can end it. So the spin thread here runs ``spin_once`` in a loop and checks a stop flag between calls; ``close`` sets
the flag, wakes the wait with a guard condition of the node's own (``Executor.wake`` does not end
a ``spin_once``), waits for the thread to leave, and only then shuts the executor down, destroys
the node and shuts the context down, all from the calling thread.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

import rclpy
from rclpy.executors import SingleThreadedExecutor

# The longest one spin_once waits before the stop flag is checked again (s). close() wakes it at
# once; this only bounds close when a wake is missed.
SPIN_PERIOD_S = 1.0


class SpunNode:
    """``self.node`` is spun in a daemon thread until ``close()``."""

    def __init__(self, name: str, domain_id: int | None = None, namespace: str = ""):
        self.name = name
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context, namespace=namespace or None)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._wake = self.node.create_guard_condition(lambda: None)
        self._closed = False
        self.thread = threading.Thread(target=self._spin, name=f"{name}_spin", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=SPIN_PERIOD_S)
            except Exception as exc:  # noqa: BLE001 - a callback's error must not end the spin
                if self._stop.is_set() or not self.context.ok():
                    return
                print(f"{self.name}: callback raised {type(exc).__name__}: {exc}",
                      file=sys.stderr)

    def close(self, join_timeout_s: float = 5.0) -> bool:
        """Stop spinning, then tear down. False when the spin thread was still in a callback
        after ``join_timeout_s`` (the node is torn down all the same)."""
        if self._closed:
            return True
        self._closed = True
        self._stop.set()
        self._wake.trigger()
        self.thread.join(timeout=join_timeout_s)
        left = not self.thread.is_alive()
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        return left

    def __enter__(self) -> SpunNode:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def spun_node(name: str, domain_id: int | None = None, namespace: str = ""):
    """The node of a ``SpunNode``; closed on exit."""
    spun = SpunNode(name, domain_id, namespace)
    try:
        yield spun.node
    finally:
        spun.close()
