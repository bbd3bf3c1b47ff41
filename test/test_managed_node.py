"""vode_lifecycle_node in its own process, driven through its lifecycle_msgs services by a real
rclpy peer (this process) over DDS; and the start pose (initialpose, ~/set_pose) on it.

The tests of this module run in order on one node: unconfigured -> configure -> activate (frames,
start pose) -> deactivate -> activate (the odometry continued) -> cleanup -> a configure that fails
-> configure -> shutdown.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseWithCovarianceStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from nav_msgs.srv import SetMap
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from scipy.spatial.transform import Rotation

from ros_harness import NodeProcess, Peer, real_or_synthetic_frames, unique_domain_id
from vode_ros.config import VodeConfig
from vode_ros.ros import conversions as conv

LIFECYCLE_NODE = [sys.executable, "-m", "vode_ros.ros.lifecycle_node"]
PARAMS = {"ros.diagnostics_period_s": 0.25, "ros.log_throttle_s": 600.0}
REMAPS = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info"}
N_FRAMES = 20


class Clock:
    ns = 1_700_000_000 * 10**9

    @classmethod
    def next(cls) -> int:
        cls.ns += 100_000_000
        return cls.ns


class Managed:
    """The peer's clients of the node's lifecycle and parameter services."""

    def __init__(self, peer: Peer, node: str = "/vode_node"):
        self.peer = peer
        n = peer.node
        self.get = n.create_client(GetState, f"{node}/get_state")
        self.change = n.create_client(ChangeState, f"{node}/change_state")
        self.params = n.create_client(SetParameters, f"{node}/set_parameters")
        self.set_pose_client = n.create_client(SetMap, f"{node}/set_pose")
        self.pub_initialpose = n.create_publisher(
            PoseWithCovarianceStamped, "/initialpose",
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))

    def call(self, client, request, timeout: float = 60.0):
        assert client.wait_for_service(timeout_sec=timeout), client.srv_name
        future = client.call_async(request)
        assert self.peer.wait_for(future.done, timeout), f"no answer from {client.srv_name}"
        return future.result()

    def state(self) -> str:
        return self.call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(self.change, request).success

    def set_string(self, name: str, value: str) -> bool:
        p = Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING,
                                                      string_value=value))
        return self.call(self.params, SetParameters.Request(parameters=[p])).results[0].successful


def pose_message(xyz, yaw_rad: float, frame: str) -> PoseWithCovarianceStamped:
    msg = PoseWithCovarianceStamped()
    msg.header.frame_id = frame
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = map(float, xyz)
    q = Rotation.from_euler("z", yaw_rad).as_quat()
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = map(float, q)
    cov = np.diag([0.25, 0.25, 0.01, 0.01, 0.01, 0.07]).ravel()
    msg.pose.covariance = [float(v) for v in cov]
    return msg


def position(odom) -> np.ndarray:
    p = odom.pose.pose.position
    return np.array([p.x, p.y, p.z])


def yaw(odom) -> float:
    o = odom.pose.pose.orientation
    return float(Rotation.from_quat([o.x, o.y, o.z, o.w]).as_euler("zyx")[0])


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return real_or_synthetic_frames(N_FRAMES, tmp_path_factory.mktemp("frames"))[0]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    domain = unique_domain_id()
    log = tmp_path_factory.mktemp("managed") / "node.log"
    node = NodeProcess(domain, log, params=PARAMS, remaps=REMAPS, command=LIFECYCLE_NODE)
    peer = Peer(domain)
    managed = Managed(peer)
    yield node, peer, managed
    peer.close()
    node.stop()


class Sender:
    """Frames of the sequence in order, across the tests."""
    index = 0

    @classmethod
    def send(cls, peer, frames, n: int, period_s: float = 0.1) -> list[int]:
        stamps = []
        for _ in range(n):
            rgb, cam = frames[cls.index % len(frames)]
            cls.index += 1
            stamps.append(Clock.next())
            peer.send(rgb, cam, stamps[-1])
            time.sleep(period_s)
        return stamps


def answered(peer, stamp: int):
    return next((m for m in peer.messages("odom") if conv.stamp_to_ns(m.header.stamp) == stamp),
                None)


def send_until_answered(peer, frames, timeout: float = 30.0):
    """One frame at a time until the node answers one; that /odom."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        (stamp,) = Sender.send(peer, frames, 1, period_s=0.0)
        if peer.wait_for(lambda s=stamp: answered(peer, s) is not None, 3.0):
            return answered(peer, stamp)
    return None


def test_starts_unconfigured_without_subscriptions(graph):
    node, peer, managed = graph
    assert managed.state() == "unconfigured", node.log()
    time.sleep(1.0)
    assert peer.pub_image.get_subscription_count() == 0
    assert peer.messages("/diagnostics") == []
    assert "waiting for configure" in node.log()


def test_configure_then_activate_runs_the_odometry(graph, frames):
    node, peer, managed = graph
    assert managed.transition(Transition.TRANSITION_CONFIGURE), node.log()
    assert managed.state() == "inactive"
    assert "configured in" in node.log()
    time.sleep(0.5)
    assert peer.pub_image.get_subscription_count() == 0     # inactive: not subscribed yet
    assert managed.transition(Transition.TRANSITION_ACTIVATE), node.log()
    assert managed.state() == "active"
    assert peer.wait_matched(30), node.log()
    stamps = Sender.send(peer, frames, 10)
    assert peer.wait_for(lambda: answered(peer, stamps[-1]) is not None, 30), node.log()
    assert len(peer.messages("odom")) >= 5
    assert peer.wait_for(lambda: peer.messages("/tf_static"), 10), "no latched /tf_static"
    assert peer.wait_for(lambda: peer.messages("/diagnostics"), 10)


def test_initialpose_moves_the_odometry_and_tracking_continues(graph, frames):
    node, peer, managed = graph
    tracking_before = peer.last_diagnostics()[1]["tracking"]
    assert peer.wait_for(lambda: managed.pub_initialpose.get_subscription_count() > 0, 10)
    managed.pub_initialpose.publish(pose_message((1.0, 2.0, 0.0), math.pi / 2, "odom"))
    assert peer.wait_for(lambda: "odometry pose set to x=1.000 y=2.000" in node.log(), 10), \
        node.log()
    odom = send_until_answered(peer, frames)
    assert odom is not None, node.log()
    assert np.linalg.norm(position(odom) - [1.0, 2.0, 0.0]) < 0.3, position(odom)
    assert abs(yaw(odom) - math.pi / 2) < math.radians(10), yaw(odom)
    assert np.isfinite(np.array(odom.pose.covariance)).all()
    assert np.array(odom.pose.covariance).reshape(6, 6)[0, 0] >= 0.25 - 1e-9
    time.sleep(0.6)
    assert peer.last_diagnostics()[1]["tracking"] in {tracking_before, "TRACKING"}


def test_set_pose_service_takes_map_or_odom_and_refuses_other_frames(graph, frames):
    node, peer, managed = graph
    request = SetMap.Request(initial_pose=pose_message((-3.0, 0.5, 0.0), 0.0, "map"))
    assert managed.call(managed.set_pose_client, request).success, node.log()
    odom = send_until_answered(peer, frames)
    assert odom is not None and np.linalg.norm(position(odom) - [-3.0, 0.5, 0.0]) < 0.3, \
        position(odom)
    assert abs(yaw(odom)) < math.radians(10)
    bad = SetMap.Request(initial_pose=pose_message((9.0, 9.0, 0.0), 0.0, "camera_link"))
    assert not managed.call(managed.set_pose_client, bad).success
    assert "pose in frame 'camera_link'" in node.log()
    odom = send_until_answered(peer, frames)
    assert odom is not None and np.linalg.norm(position(odom) - [-3.0, 0.5, 0.0]) < 0.5


def test_deactivate_stops_and_keeps_the_odometry(graph, frames):
    node, peer, managed = graph
    last = send_until_answered(peer, frames)
    assert last is not None
    assert managed.transition(Transition.TRANSITION_DEACTIVATE), node.log()
    assert managed.state() == "inactive"
    assert peer.wait_for(lambda: peer.pub_image.get_subscription_count() == 0, 10)
    peer.clear()
    Sender.send(peer, frames, 3)
    time.sleep(1.0)
    assert peer.messages("odom") == [] and peer.messages("/diagnostics") == []
    assert managed.transition(Transition.TRANSITION_ACTIVATE), node.log()
    assert peer.wait_matched(30)
    odom = send_until_answered(peer, frames)
    assert odom is not None, node.log()
    # continued from where it stopped (about x=-3 after the set pose), not restarted at identity
    assert np.linalg.norm(position(odom) - position(last)) < 0.5, (position(odom), position(last))


def test_cleanup_then_a_bad_model_fails_configure(graph):
    node, peer, managed = graph
    assert managed.transition(Transition.TRANSITION_DEACTIVATE)
    assert managed.transition(Transition.TRANSITION_CLEANUP), node.log()
    assert managed.state() == "unconfigured"
    assert managed.set_string("models.depth", "/nonexistent/depth.onnx")
    assert not managed.transition(Transition.TRANSITION_CONFIGURE)
    assert managed.state() == "unconfigured"
    assert "configure failed: models not loaded" in node.log()
    assert managed.set_string("models.depth", VodeConfig().models.depth)
    assert managed.transition(Transition.TRANSITION_CONFIGURE), node.log()
    assert managed.state() == "inactive"
    # configured: parameters are read-only again
    assert not managed.set_string("models.depth", "/elsewhere.onnx")


def test_shutdown_finalizes_and_the_process_exits_cleanly(graph):
    node, peer, managed = graph
    assert managed.transition(Transition.TRANSITION_INACTIVE_SHUTDOWN), node.log()
    assert managed.state() == "finalized"
    assert node.alive()
    assert node.stop() == 0, node.log()
    assert "Traceback" not in node.log()


def test_launch_managed_true_starts_a_node_that_waits_for_its_transitions(tmp_path):
    """The command line launch/vode.launch.py builds with managed:=true, run for real."""
    from test_launch import run_launch
    r = run_launch({"managed": "true", "namespace": "robot2"}, executable=LIFECYCLE_NODE,
                   tmp_dir=tmp_path)
    assert r.nodes["vode_lifecycle_node"].fqn == "/robot2/vode_node"
    domain = unique_domain_id()
    node = NodeProcess(domain, tmp_path / "node.log", command=r.argv)
    peer = Peer(domain)
    try:
        managed = Managed(peer, "/robot2/vode_node")
        assert managed.state() == "unconfigured", node.log()
        assert managed.transition(Transition.TRANSITION_CONFIGURE), node.log()
        assert managed.state() == "inactive"
    finally:
        peer.close()
        assert node.stop() == 0, node.log()
