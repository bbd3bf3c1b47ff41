"""SpunNode: spins in the background, survives a raising callback, closes promptly and in order."""
from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("rclpy")

from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from ros_harness import ros_environment, unique_domain_id, wait_until  # noqa: E402
from vode_ros.ros.spinning import SPIN_PERIOD_S, SpunNode  # noqa: E402


@pytest.fixture
def domain(monkeypatch):
    d = unique_domain_id()
    for k, v in ros_environment(d).items():
        if k.startswith(("ROS_", "FASTDDS_")):
            monkeypatch.setenv(k, v)
    return d


def test_callbacks_run_in_the_background_and_a_raising_one_does_not_stop_the_spin(domain, capfd):
    got = []

    def cb(msg):
        got.append(msg.data)
        if msg.data == "boom":
            raise RuntimeError("callback failed on purpose")

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    with SpunNode("spin_sub", domain) as sub, SpunNode("spin_pub", domain) as pub:
        sub.node.create_subscription(String, "chatter", cb, qos)
        publisher = pub.node.create_publisher(String, "chatter", qos)
        assert wait_until(lambda: publisher.get_subscription_count() > 0)
        publisher.publish(String(data="boom"))
        assert wait_until(lambda: got == ["boom"])
        publisher.publish(String(data="after"))
        assert wait_until(lambda: got == ["boom", "after"]), got
        assert sub.thread.is_alive()
    assert "callback raised RuntimeError: callback failed on purpose" in capfd.readouterr().err


def test_close_stops_the_thread_first_and_promptly(domain):
    spun = SpunNode("spin_close", domain)
    time.sleep(0.2)                    # the thread is now inside a wait
    t0 = time.monotonic()
    assert spun.close() is True
    took = time.monotonic() - t0
    assert not spun.thread.is_alive()
    assert took < SPIN_PERIOD_S / 2, took   # woken, not waiting out the period
    assert not spun.context.ok()
    assert spun.close() is True          # a second close does nothing


def test_close_gives_up_waiting_on_a_stuck_callback_but_still_tears_down(domain):
    release = threading.Event()
    spun = SpunNode("spin_stuck", domain)
    spun.node.create_timer(0.01, lambda: release.wait(5.0))
    time.sleep(0.2)                    # the timer callback is now blocking the spin thread
    assert spun.close(join_timeout_s=0.3) is False
    assert not spun.context.ok()
    release.set()
    spun.thread.join(5.0)
    assert not spun.thread.is_alive()
