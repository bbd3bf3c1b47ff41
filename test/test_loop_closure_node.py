"""vode_node with the loop-closure back-end, in its own process, against a real rclpy peer:
TF map -> odom beside odom -> base_link, the corrected path in the map frame, loop markers,
the back-end's diagnostics, ~/save_map and ~/load_map, and a clean shutdown after frames stop.
The frames are a synthetic closed loop (the camera comes back to where it started)."""
from __future__ import annotations

import time

import pytest
from nav_msgs.msg import Path as PathMsg
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ros_harness import NodeProcess, Peer, unique_domain_id
from vode_ros.datasets import open_sequence
from vode_ros.datasets.synth import generate_sequence
from vode_ros.ros import conversions as conv

REMAPS = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info"}
N_FRAMES = 150


@pytest.fixture(scope="module")
def loop_frames(tmp_path_factory):
    path = generate_sequence(tmp_path_factory.mktemp("lc_node") / "loop", scene="room",
                             trajectory="loop", n_frames=N_FRAMES, width=320, height=240)
    return [(f.image, f.camera) for f in open_sequence(path)]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lc_node_run")
    domain = unique_domain_id()
    params = {"ros.diagnostics_period_s": 0.25, "ros.path_period_s": 0.2,
              "ros.log_throttle_s": 600.0, "loop_closure.enabled": True,
              "loop_closure.map_file": str(tmp / "maps" / "room.npz")}
    node = NodeProcess(domain, tmp / "node.log", params=params, remaps=REMAPS)
    peer = Peer(domain)
    for topic, typ in (("map_path", PathMsg), ("loop_closures", MarkerArray)):
        peer.received[topic] = []
        peer.node.create_subscription(typ, topic, peer._keep(topic),
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                                                 durability=DurabilityPolicy.VOLATILE))
    assert peer.wait_matched(30), f"node never subscribed; log:\n{node.log()}"
    yield node, peer, tmp
    peer.close()
    node.stop()


def loop_status(peer):
    msgs = peer.messages("/diagnostics")
    for msg in reversed(msgs):
        for st in msg.status:
            if st.name.endswith("loop closure"):
                return st, {kv.key: kv.value for kv in st.values}
    return None


def call(peer, name: str, timeout: float = 20.0):
    client = peer.node.create_client(Trigger, f"/vode_node/{name}")
    assert client.wait_for_service(timeout_sec=timeout), name
    future = client.call_async(Trigger.Request())
    assert peer.wait_for(future.done, timeout), name
    return future.result()


class Clock:
    ns = 1_700_000_000 * 10**9

    @classmethod
    def next(cls) -> int:
        cls.ns += 66_666_667
        return cls.ns


def send_all(peer, frames, rate_hz=10.0):
    stamps = []
    for rgb, cam in frames:
        stamps.append(Clock.next())
        peer.send(rgb, cam, stamps[-1])
        time.sleep(1.0 / rate_hz)
    return stamps


def test_loop_outputs(graph, loop_frames):
    node, peer, _ = graph
    stamps = send_all(peer, loop_frames)
    assert peer.wait_for(lambda: loop_status(peer) is not None and
                         int(loop_status(peer)[1]["keyframes"]) >= 5 and
                         loop_status(peer)[1]["queue"] == "0", 30), node.log()
    time.sleep(0.5)
    odom_stamps = {conv.stamp_to_ns(m.header.stamp) for m in peer.messages("odom")}
    assert odom_stamps and odom_stamps <= set(stamps)

    tf = [t for msg in peer.messages("/tf") for t in msg.transforms]
    m2o = [t for t in tf if t.header.frame_id == "map"]
    o2b = [t for t in tf if t.header.frame_id == "odom"]
    assert m2o and all(t.child_frame_id == "odom" for t in m2o)
    assert {conv.stamp_to_ns(t.header.stamp) for t in m2o} == \
        {conv.stamp_to_ns(t.header.stamp) for t in o2b} == odom_stamps
    for t in m2o:
        q = t.transform.rotation
        assert abs(q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2 - 1) < 1e-6

    assert peer.wait_for(lambda: peer.messages("map_path"), 5)
    path = peer.messages("map_path")[-1]
    st, values = loop_status(peer)
    assert path.header.frame_id == "map" and len(path.poses) == int(values["keyframes"])
    kf_stamps = [conv.stamp_to_ns(p.header.stamp) for p in path.poses]
    assert kf_stamps == sorted(kf_stamps) and set(kf_stamps) <= odom_stamps

    markers = peer.messages("loop_closures")[-1].markers
    kinds = {m.ns: m for m in markers}
    assert kinds["keyframes"].header.frame_id == "map"
    assert len(kinds["keyframes"].points) == int(values["keyframes"])
    loops = kinds["loop_closures"]
    assert len(loops.points) == 2 * int(values["loops_active"])
    for key in ("keyframes", "loops_accepted", "loops_rejected", "loops_active",
                "keyframes_dropped", "relocalised", "last_event", "optimisation_ms_last"):
        assert key in values
    assert values["errors"] == "0", values
    print(f"node on a synthetic loop: {values}")


def test_idle_node_keeps_reporting_then_map_services(graph, loop_frames):
    node, peer, tmp = graph
    # no frames: the worker and the back-end wait; diagnostics keep coming
    n = len(peer.messages("/diagnostics"))
    time.sleep(1.0)
    assert len(peer.messages("/diagnostics")) > n and node.alive()

    saved = call(peer, "save_map")
    assert saved.success, saved.message
    assert (tmp / "maps" / "room.npz").is_file()
    loaded = call(peer, "load_map")
    assert loaded.success, loaded.message
    assert peer.wait_for(lambda: loop_status(peer)[1]["relocalised"] == "False", 5)
    # the same place again after the load: the live session relocalises in the saved map
    send_all(peer, loop_frames[:60])
    relocalised = peer.wait_for(lambda: loop_status(peer)[1]["relocalised"] == "True", 20)
    print(f"after load_map: {loop_status(peer)[1]}")
    if not relocalised:
        pytest.xfail("no loop to the loaded map verified from the node's own odometry in 60 "
                     "frames (frames dropped under load); relocalisation itself is covered by "
                     "test_loop_closure.py")


def test_clean_shutdown(graph):
    node, peer, _ = graph
    assert node.alive()
    t0 = time.monotonic()
    rc = node.stop()
    assert time.monotonic() - t0 < 10
    assert rc == 0, node.log()
    assert "Traceback" not in node.log()


def test_failing_save_is_reported(tmp_path):
    domain = unique_domain_id()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    node = NodeProcess(domain, tmp_path / "node.log",
                       params={"loop_closure.enabled": True,
                               "loop_closure.map_file": str(blocker / "map.npz"),
                               "loop_closure.load_map_on_start": True})
    peer = Peer(domain)
    try:
        res = call(peer, "save_map", 30)
        assert not res.success and "no keyframes" in res.message
        res = call(peer, "load_map")
        assert not res.success and "map not loaded" in res.message
        assert "no keyframe map loaded at start-up" in node.log()
    finally:
        peer.close()
        rc = node.stop()
        assert rc == 0, node.log()
