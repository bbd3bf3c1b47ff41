"""vode_node with pose.scale_source wheel_odom, in its own process: a peer publishes camera frames
of a synthetic drive with exact ground truth and the vehicle's wheel odometry (nav_msgs/Odometry
on wheel_odom); the node's /odom comes out in metres and /diagnostics names the scale source."""
from __future__ import annotations

import time

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from ros_harness import NodeProcess, Peer, unique_domain_id
from vode_ros.datasets import synth
from vode_ros.ros import conversions as conv

CAM = synth.default_camera(320, 240)
N_FRAMES = 45
T0_NS, DT_NS = 1_800_000_000 * 10**9, 33_333_333
REMAPS = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info",
          "wheel_odom": "/wheel/odom"}


@pytest.fixture(scope="module")
def drive():
    scene = synth.make_scene("street", seed=1)
    poses = synth.make_trajectory(scene, "straight", N_FRAMES, seed=1)
    r = synth.Renderer(scene, CAM)
    rng = np.random.default_rng(5)
    images = [np.clip(r.render(T)[0] + rng.normal(0, 1, (CAM.height, CAM.width, 3)) + 0.5,
                      0, 255).astype(np.uint8) for T in poses]
    p = poses[:, :3, 3]
    direction = (p[-1] - p[0]) / np.linalg.norm(p[-1] - p[0])
    wheel = np.outer((p - p[0]) @ direction, direction)     # the vehicle's travel
    return poses, images, wheel


def _wheel_message(stamp_ns: int, xyz) -> Odometry:
    m = Odometry(header=Header(stamp=conv.ns_to_stamp(stamp_ns), frame_id="odom_wheel"),
                 child_frame_id="base_link")
    m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z = map(float, xyz)
    m.pose.pose.orientation.w = 1.0
    return m


def test_odom_is_metric_with_wheel_odometry(tmp_path, drive):
    poses, images, wheel = drive
    domain = unique_domain_id()
    node = NodeProcess(domain, tmp_path / "node.log",
                       params={"pose.scale_source": "wheel_odom",
                               "ros.diagnostics_period_s": 0.25, "ros.log_throttle_s": 600.0},
                       remaps=REMAPS)
    peer = Peer(domain)
    pub = peer.node.create_publisher(Odometry, "wheel/odom",
                                     QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))
    try:
        assert peer.wait_matched(30), node.log()
        assert peer.wait_for(lambda: pub.get_subscription_count() > 0, 15), node.log()
        for i, rgb in enumerate(images):
            stamp = T0_NS + i * DT_NS
            pub.publish(_wheel_message(stamp, wheel[i]))    # the wheels first, then the frame
            peer.send(rgb, CAM, stamp)
            time.sleep(0.1)
        last = T0_NS + (N_FRAMES - 1) * DT_NS
        assert peer.wait_for(lambda: any(conv.stamp_to_ns(m.header.stamp) == last
                                         for m in peer.messages("odom")), 20), node.log()
        odom = peer.messages("odom")
        index = {T0_NS + i * DT_NS: i for i in range(N_FRAMES)}
        pairs = [(index[conv.stamp_to_ns(m.header.stamp)], m.pose.pose.position) for m in odom]
        (i0, p0), (i1, p1) = pairs[0], pairs[-1]
        travelled = np.linalg.norm([p1.x - p0.x, p1.y - p0.y, p1.z - p0.z])
        truth = float(np.linalg.norm(wheel[i1] - wheel[i0]))
        # metres: the tracker's own unit is ~70 times smaller on this drive; the first frames
        # turn before the first map, so the estimate lags the truth a little there
        assert travelled == pytest.approx(truth, rel=0.2), (travelled, truth)
        assert peer.wait_for(lambda: peer.last_diagnostics() is not None and
                             peer.last_diagnostics()[1].get("scale_updates", "0") != "0", 5)
        values = peer.last_diagnostics()[1]
        assert values["scale"] == "metric" and values["scale_source"] == "wheel_odom"
        assert float(values["scale_confidence"]) > 0.5
        assert float(values["scale_m_per_unit"]) > 10.0
        assert values["scale_last_update_stamp"] != "never"
    finally:
        peer.close()
        node.stop()
