"""QoS overrides on the real node (its own process) seen from a real rclpy peer over DDS: what
the node's endpoints offer and request, the latched outputs, and the warning that names a
mismatch with a matched peer."""
from __future__ import annotations

import pytest
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo

from ros_harness import NodeProcess, Peer, unique_domain_id
from vode_ros.config import VodeConfig
from vode_ros.ros import qos as ros_qos

REMAPS = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info"}
PARAMS = {"ros.image_qos_reliability": "reliable", "ros.image_qos_depth": 2,
          "ros.output_qos_reliability": "best_effort", "loop_closure.enabled": True,
          "ros.log_throttle_s": 600.0}
REQUESTED = ("/camera/image_raw", "/camera/camera_info")
OFFERED = ("/odom", "/map_path", "/loop_closures", "/tf_static", "/tf")


def test_defaults_keep_sensor_data_inputs_and_reliable_outputs():
    r = VodeConfig().ros
    assert ros_qos.image_qos(r).reliability == qos_profile_sensor_data.reliability
    assert ros_qos.image_qos(r).depth == qos_profile_sensor_data.depth == 5
    assert ros_qos.camera_info_qos(r).reliability == ReliabilityPolicy.BEST_EFFORT
    assert ros_qos.output_qos(r, 10).reliability == ReliabilityPolicy.RELIABLE
    assert ros_qos.output_qos(r, 10).depth == 10 and ros_qos.output_qos(r, 1).depth == 1
    r.reliable_qos = True                      # the older switch still forces reliable inputs
    assert ros_qos.image_qos(r).reliability == ReliabilityPolicy.RELIABLE
    assert ros_qos.camera_info_qos(r).reliability == ReliabilityPolicy.RELIABLE
    assert ros_qos.LATCHED_QOS.durability == DurabilityPolicy.TRANSIENT_LOCAL


def _offered(peer, topic):
    return [i.qos_profile for i in peer.node.get_publishers_info_by_topic(topic)
            if i.node_name == "vode_node"]


def _requested(peer, topic):
    return [i.qos_profile for i in peer.node.get_subscriptions_info_by_topic(topic)
            if i.node_name == "vode_node"]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    domain = unique_domain_id()
    log = tmp_path_factory.mktemp("qos") / "node.log"
    node = NodeProcess(domain, log, params=PARAMS, remaps=REMAPS)
    peer = Peer(domain)          # publishes the camera best effort; subscribes odom reliable
    # discovery reports endpoints one by one: wait for every one the tests read
    assert peer.wait_for(lambda: all(_requested(peer, t) for t in REQUESTED)
                         and all(_offered(peer, t) for t in OFFERED), 30), node.log()
    yield node, peer
    peer.close()
    node.stop()


def test_endpoints_have_the_configured_qos(graph):
    node, peer = graph
    (image,) = _requested(peer, "/camera/image_raw")
    assert image.reliability == ReliabilityPolicy.RELIABLE
    (info,) = _requested(peer, "/camera/camera_info")
    assert info.reliability == ReliabilityPolicy.BEST_EFFORT
    (odom,) = _offered(peer, "/odom")
    assert odom.reliability == ReliabilityPolicy.BEST_EFFORT
    for topic in ("/map_path", "/loop_closures", "/tf_static"):
        (latched,) = _offered(peer, topic)
        assert latched.reliability == ReliabilityPolicy.RELIABLE, topic
        assert latched.durability == DurabilityPolicy.TRANSIENT_LOCAL, topic
    (tf,) = _offered(peer, "/tf")
    assert tf.reliability == ReliabilityPolicy.RELIABLE


def test_a_best_effort_camera_and_a_reliable_subscription_are_named(graph):
    node, peer = graph
    assert peer.wait_for(lambda: "QoS mismatch on /camera/image_raw" in node.log(), 20), \
        node.log()
    line = next(ln for ln in node.log().splitlines() if "QoS mismatch on /camera/image_raw" in ln)
    assert "RELIABILITY" in line and "requests reliable/volatile" in line
    # the peer by name once discovery has told its node (the endpoint can come first)
    assert "vode_test_peer offers best_effort/volatile" in line or \
        "not discovered yet) offers best_effort/volatile" in line, line
    assert "ros.image_qos_reliability" in line
    # camera_info stays best effort: it matches the best-effort peer, no warning for it
    assert "QoS mismatch on /camera/camera_info" not in node.log()


def test_a_reliable_subscriber_of_a_best_effort_output_is_named(graph):
    node, peer = graph
    assert peer.wait_for(lambda: "QoS mismatch on /odom" in node.log(), 20), node.log()
    line = next(ln for ln in node.log().splitlines() if "QoS mismatch on /odom" in ln)
    assert "matched subscriber" in line and "offers best_effort/volatile" in line
    assert "ros.output_qos_reliability" in line


def test_a_reliable_camera_info_publisher_matches_a_best_effort_subscription(graph):
    node, peer = graph
    pub = peer.node.create_publisher(CameraInfo, "/camera/camera_info",
                                     QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    assert peer.wait_for(lambda: pub.get_subscription_count() > 0, 10)
    assert "QoS mismatch on /camera/camera_info" not in node.log()
