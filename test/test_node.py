"""The real node in its own process, talking over DDS to a real rclpy peer in this process.

The node runs the shipped models on frames of a real sequence (7-Scenes when ../shared/data is
present, else a synthetic room), on a unique ROS_DOMAIN_ID with localhost discovery.
"""
from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest

import model_factory as mf
from ros_harness import NodeProcess, Peer, real_or_synthetic_frames, unique_domain_id
from vode_ros.camera import Camera
from vode_ros.depth.source import working_camera
from vode_ros.ros import conversions as conv

N_FRAMES = 24
BASE_PARAMS = {"ros.diagnostics_period_s": 0.25, "ros.no_frames_warn_s": 1.5,
               "ros.log_throttle_s": 600.0}
REMAPS = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info",
          "image/compressed": "/camera/image_raw/compressed"}


def _finite(*values) -> bool:
    return all(math.isfinite(v) for v in values)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return real_or_synthetic_frames(N_FRAMES, tmp_path_factory.mktemp("frames"))[0]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """The node with the shipped default models and the peer, shared by the tests in order."""
    domain = unique_domain_id()
    log = tmp_path_factory.mktemp("node") / "node.log"
    node = NodeProcess(domain, log, params=BASE_PARAMS, remaps=REMAPS)
    peer = Peer(domain)
    assert peer.wait_matched(30), f"node never subscribed; log:\n{node.log()}"
    yield node, peer
    peer.close()
    node.stop()


class Clock:
    """Stamps for the sequence: strictly increasing across the tests of the module."""
    ns = 1_700_000_000 * 10**9

    @classmethod
    def next(cls, dt_ns: int = 33_333_333) -> int:
        cls.ns += dt_ns
        return cls.ns


def _settled(peer, n_sent: int) -> bool:
    last = peer.last_diagnostics()
    if last is None:
        return False
    d = last[1]
    received = int(d["frames_received"])
    return received >= n_sent and received == int(d["frames_processed"]) + \
        int(d["frames_dropped"]) + int(d["frames_skipped"]) and \
        len(peer.messages("odom")) >= int(d["frames_processed"]) - 1


def send_and_wait(peer, rgb, camera, encoding="rgb8", timeout=15.0):
    stamp = Clock.next()
    peer.send(rgb, camera, stamp, encoding)
    ok = peer.wait_for(lambda: any(conv.stamp_to_ns(m.header.stamp) == stamp
                                   for m in peer.messages("odom")), timeout)
    return stamp, ok


def test_frame_before_camera_info_is_skipped_with_a_clear_error(graph, frames):
    node, peer = graph
    rgb, cam = frames[0]
    peer.send(rgb, cam, Clock.next(), info=False)
    assert peer.wait_for(lambda: "no camera_info received yet" in node.log(), 10), node.log()
    assert peer.messages("odom") == []


def test_sequence_end_to_end(graph, frames):
    node, peer = graph
    peer.clear()
    sent = []
    for rgb, cam in frames:
        sent.append(Clock.next())
        peer.send(rgb, cam, sent[-1])
        time.sleep(1 / 10)       # 10 Hz: the node keeps up on 2 cores
    # every frame is answered, dropped (a newer one replaced it while the node was busy) or
    # skipped; on an idle 2-core machine none is dropped at 10 Hz
    assert peer.wait_for(lambda: _settled(peer, len(sent)), 30), (peer.last_diagnostics(),
                                                                  node.log())
    time.sleep(0.3)
    diag = peer.last_diagnostics()[1]
    assert int(diag["frames_skipped"]) == 1           # the frame before camera_info
    assert len(peer.messages("odom")) == int(diag["frames_processed"]) >= len(sent) // 2
    odom = peer.messages("odom")
    stamps = [conv.stamp_to_ns(m.header.stamp) for m in odom]
    assert set(stamps) <= set(sent) and stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    for m in odom:
        assert m.header.frame_id == "odom" and m.child_frame_id == "base_link"
        p, q = m.pose.pose.position, m.pose.pose.orientation
        assert _finite(p.x, p.y, p.z, q.x, q.y, q.z, q.w)
        assert abs(q.x**2 + q.y**2 + q.z**2 + q.w**2 - 1) < 1e-6
        cov = np.array(m.pose.covariance).reshape(6, 6)
        assert np.isfinite(cov).all() and np.allclose(cov, cov.T, atol=1e-9)
        assert (np.diag(cov) >= 0).all()
        assert np.isfinite(np.array(m.twist.covariance)).all()
    # the camera moves in these frames: the pose changes (the hybrid backend may hold the
    # position and update only the rotation until its first keyframe)
    assert odom[-1].pose.pose != odom[0].pose.pose

    tf = [t for msg in peer.messages("/tf") for t in msg.transforms]
    tf_stamps = [conv.stamp_to_ns(t.header.stamp) for t in tf]
    assert all(t.header.frame_id == "odom" and t.child_frame_id == "base_link" for t in tf)
    assert sorted(tf_stamps) == stamps
    static = [t for msg in peer.messages("/tf_static") for t in msg.transforms]
    assert [(t.header.frame_id, t.child_frame_id) for t in static] == \
        [("base_link", "camera_optical_frame")]

    depth = peer.messages("depth/image")
    infos = peer.messages("depth/camera_info")
    confidence = peer.messages("depth/confidence")
    assert [conv.stamp_to_ns(m.header.stamp) for m in depth] == stamps
    assert [conv.stamp_to_ns(m.header.stamp) for m in infos] == stamps
    assert [conv.stamp_to_ns(m.header.stamp) for m in confidence] == stamps
    # depth at its working resolution (depth.resolution), with that resolution's camera_info
    cam = working_camera(frames[0][1], 160)
    w, h = cam.width, cam.height
    for d, c, info in zip(depth, confidence, infos, strict=True):
        for img in (d, c):
            assert img.encoding == "32FC1" and (img.width, img.height) == (w, h)
            assert img.step == w * 4
        assert d.header.frame_id == c.header.frame_id == info.header.frame_id == \
            "camera_optical_frame"
        assert (info.width, info.height) == (w, h)
        np.testing.assert_allclose(np.array(info.k).reshape(3, 3), cam.K)
    z = np.frombuffer(bytes(depth[-1].data), np.float32)
    valid = z[np.isfinite(z)]
    assert valid.size > 0.9 * z.size and (valid > 0).all()
    conf = np.frombuffer(bytes(confidence[-1].data), np.float32)
    assert ((conf >= 0) & (conf <= 1)).all()

    # the path is published from a timer (ros.path_period_s): it catches up within a period
    assert peer.wait_for(lambda: peer.messages("path") and
                         len(peer.messages("path")[-1].poses) >= len(odom), 5)
    path = peer.messages("path")[-1]
    assert path.header.frame_id == "odom"
    assert [p.header.stamp for p in path.poses[-len(odom):]] == [m.header.stamp for m in odom]

    status, values = peer.last_diagnostics()
    assert values["provider"] == "CPUExecutionProvider"
    assert values["scale"] in ("relative", "metric") and values["tracking"] == "TRACKING"
    assert int(values["frames_processed"]) >= len(odom)
    assert "ONNX Runtime provider in use: CPUExecutionProvider" in node.log()


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_other_encodings_are_processed(graph, frames, encoding):
    node, peer = graph
    rgb, cam = frames[1]
    stamp, ok = send_and_wait(peer, rgb, cam, encoding)
    assert ok, node.log()


def _bad_image(peer, stamp, **fields):
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    msg = Image(header=Header(stamp=conv.ns_to_stamp(stamp), frame_id="camera"), height=4,
                width=4, encoding="rgb8", step=12, data=bytes(48))
    for k, v in fields.items():
        setattr(msg, k, v)
    peer.pub_image.publish(msg)


@pytest.mark.parametrize("case,expect", [
    ("encoding", "unsupported image encoding 'yuv422'"),
    ("size", "step x height"),
    ("zero", "zero size"),
    ("focal", "camera_info has focal lengths fx=0.0"),
    ("backwards", "is not after the previous frame's"),
])
def test_bad_input_is_skipped_logged_once_and_the_node_keeps_running(graph, frames, case,
                                                                      expect):
    node, peer = graph
    rgb, cam = frames[2]
    for _ in range(3):                  # three times: the log line is throttled to one
        stamp = Clock.next()
        if case == "encoding":
            _bad_image(peer, stamp, encoding="yuv422", step=8, data=bytes(32))
        elif case == "size":
            _bad_image(peer, stamp, data=bytes(40))
        elif case == "zero":
            _bad_image(peer, stamp, width=0, height=0, step=0, data=b"")
        elif case == "focal":
            peer.send(rgb, Camera(0.0, 0.0, cam.cx, cam.cy, cam.width, cam.height), stamp)
        elif case == "backwards":
            peer.send(rgb, cam, stamp - 10**9)
        time.sleep(0.15)
    assert peer.wait_for(lambda: expect in node.log(), 10), node.log()
    assert sum(expect in line for line in node.log().splitlines()) == 1
    assert node.alive()
    # nothing was published for the bad frames; a good frame afterwards is processed
    bad_stamps = {Clock.ns - i * 33_333_333 for i in range(3)}
    assert not bad_stamps & {conv.stamp_to_ns(m.header.stamp) for m in peer.messages("odom")}
    assert send_and_wait(peer, rgb, cam)[1], node.log()


def test_tracking_loss_holds_pose_warns_and_recovers(graph, frames):
    node, peer = graph
    rgb, cam = frames[3]
    stamp, _ = send_and_wait(peer, rgb, cam)
    before = [m for m in peer.messages("odom") if conv.stamp_to_ns(m.header.stamp) == stamp][0]
    black = np.zeros_like(rgb)
    stamp, ok = send_and_wait(peer, black, cam)
    assert ok
    lost = [m for m in peer.messages("odom") if conv.stamp_to_ns(m.header.stamp) == stamp][0]
    assert lost.pose.pose == before.pose.pose
    assert np.trace(np.reshape(lost.pose.covariance, (6, 6))) > \
        np.trace(np.reshape(before.pose.covariance, (6, 6)))
    assert peer.wait_for(lambda: peer.last_diagnostics()[0].level == b"\x01"
                         and "tracking lost" in peer.last_diagnostics()[0].message, 5)
    assert "no texture" in node.log()
    for rgb2, cam2 in frames[4:7]:
        assert send_and_wait(peer, rgb2, cam2)[1]
    assert peer.wait_for(lambda: peer.last_diagnostics()[1]["tracking"] == "TRACKING", 5)


def test_reset_service_restarts_at_identity(graph, frames):
    node, peer = graph
    result = peer.reset()
    assert result.success and "identity" in result.message
    stamp, ok = send_and_wait(peer, *frames[8])
    assert ok
    m = [m for m in peer.messages("odom") if conv.stamp_to_ns(m.header.stamp) == stamp][0]
    p = m.pose.pose.position
    assert (p.x, p.y, p.z) == (0.0, 0.0, 0.0) and m.pose.pose.orientation.w == 1.0


def test_resolution_change_restarts_tracking_and_odometry_goes_on(graph, frames):
    """A camera reconfigured to 320x240 (its camera_info too): tracking restarts at that size
    with one log line, the pose is held through the restart, every later frame is answered."""
    import cv2
    node, peer = graph
    for rgb, cam in frames[10:14]:
        assert send_and_wait(peer, rgb, cam)[1], node.log()
    before = peer.messages("odom")[-1].pose.pose
    answered = []
    for rgb, cam in frames[14:24]:
        small = cv2.resize(rgb, (320, 240), interpolation=cv2.INTER_AREA)
        stamp, ok = send_and_wait(peer, small, cam.scaled(320, 240))
        answered.append(ok)
        if len(answered) == 1:
            first = [m for m in peer.messages("odom")
                     if conv.stamp_to_ns(m.header.stamp) == stamp][0].pose.pose
    assert all(answered), node.log()
    assert first == before                                      # held through the restart
    assert node.log().count("image size changed from 640x480 to 320x240") == 1, node.log()
    assert "unexpected error" not in node.log()
    for m in peer.messages("odom")[-9:]:
        p, q = m.pose.pose.position, m.pose.pose.orientation
        assert _finite(p.x, p.y, p.z, q.x, q.y, q.z, q.w)
    assert peer.wait_for(lambda: peer.last_diagnostics()[1]["tracking"] == "TRACKING", 5)


def test_burst_replaces_waiting_frame_and_counts_drops(graph, frames):
    node, peer = graph
    for rgb, cam in frames[:12]:            # as fast as we can publish: the node cannot keep up
        peer.send(rgb, cam, Clock.next())

    def settled():
        d = peer.last_diagnostics()[1]
        return int(d["frames_received"]) == int(d["frames_processed"]) + \
            int(d["frames_dropped"]) + int(d["frames_skipped"]) and int(d["frames_dropped"]) > 0
    assert peer.wait_for(settled, 15), peer.last_diagnostics()[1]


def test_warns_when_a_matched_publisher_sends_nothing(graph):
    node, peer = graph
    def warned():
        d = peer.last_diagnostics()
        return d is not None and d[0].level == b"\x01" and "no frames for" in d[0].message
    assert peer.wait_for(warned, 10)
    assert "matched on /camera/image_raw but no frame" in node.log()


def test_clean_shutdown_on_sigint(graph):
    node, peer = graph
    assert node.stop() == 0, node.log()
    # it says what shutting down took, step by step (where it waited, if it ever hangs)
    assert re.search(r"\[vode_node\]: stopped in [0-9.]+ s \(worker [0-9.]+ s, node [0-9.]+ s\)",
                     node.log()), node.log()


# -- nodes of their own ---------------------------------------------------------------------------
def _run_node(tmp_path, params, frames, n=3, encoding="rgb8", remaps=REMAPS, compressed=False):
    domain = unique_domain_id()
    node = NodeProcess(domain, tmp_path / "node.log", params={**BASE_PARAMS, **params},
                       remaps=remaps)
    peer = Peer(domain)
    try:
        if compressed:        # both sides matched (as wait_matched does for raw images)
            assert peer.wait_for(lambda: peer.pub_compressed.get_subscription_count() > 0
                                 and peer.pub_info.get_subscription_count() > 0, 30)
            assert peer.wait_node_matched(30), node.log()
        else:
            assert peer.wait_matched(30), node.log()
        for rgb, cam in frames[:n]:
            stamp = Clock.next()
            if compressed:
                import cv2
                from sensor_msgs.msg import CompressedImage
                from std_msgs.msg import Header
                header = Header(stamp=conv.ns_to_stamp(stamp), frame_id="camera")
                peer.pub_info.publish(conv.camera_to_camera_info(cam, header))
                ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                peer.pub_compressed.publish(CompressedImage(header=header, format="jpeg",
                                                            data=jpg.tobytes()))
            else:
                peer.send(rgb, cam, stamp, encoding)
            time.sleep(0.2)
        time.sleep(1.0)
        return node, peer
    except BaseException:
        peer.close()
        node.stop()
        raise


@pytest.mark.parametrize("fault,expect", [
    ("missing", "does not exist"),
    ("corrupt", "not a readable ONNX model"),
    ("shape", "output shape"),
])
def test_model_faults_keep_the_node_alive_with_an_error(tmp_path, frames, fault, expect):
    path = tmp_path / "depth.onnx"
    if fault == "corrupt":
        path.write_bytes(b"\x08garbage" * 100)
    elif fault == "shape":
        mf.make_depth_model(path, out_hw=(24, 32))
    node, peer = _run_node(tmp_path, {"models.depth": str(path)}, frames)
    try:
        assert expect in node.log()
        assert peer.wait_for(lambda: peer.last_diagnostics() is not None, 5)
        status, values = peer.last_diagnostics()
        assert status.level == b"\x02" and expect in status.message
        assert "frame skipped: no model loaded" in node.log()
        assert peer.messages("odom") == [] and node.alive()
    finally:
        peer.close()
        assert node.stop() == 0


def test_nan_from_models_never_reaches_odom_or_tf(tmp_path, frames):
    small = [(f, c) for f, c in frames]
    depth_nan = mf.make_depth_model(tmp_path / "dn.onnx", nan=True)
    pose_ok = mf.make_pose_model(tmp_path / "p.onnx")
    node, peer = _run_node(tmp_path, {"models.depth": str(depth_nan),
                                      "models.pose": str(pose_ok)}, small)
    try:
        assert "depth model returned" in node.log() and "non-finite" in node.log()
        assert peer.messages("odom") == [] and peer.messages("/tf") == []
        assert node.alive()
    finally:
        peer.close()
        node.stop()
    depth_ok = mf.make_depth_model(tmp_path / "d.onnx")
    pose_nan = mf.make_pose_model(tmp_path / "pn.onnx", nan=True)
    node, peer = _run_node(tmp_path, {"models.depth": str(depth_ok),
                                      "models.pose": str(pose_nan),
                                      "pose.backend": "network"}, small)
    try:
        assert peer.wait_for(lambda: len(peer.messages("odom")) >= 2, 15), node.log()
        odom = peer.messages("odom")
        for m in odom:
            p = m.pose.pose.position
            assert (p.x, p.y, p.z) == (0.0, 0.0, 0.0)
            assert np.isfinite(np.array(m.pose.covariance)).all()
        for msg in peer.messages("/tf"):
            t = msg.transforms[0].transform.translation
            assert _finite(t.x, t.y, t.z)
        assert "tracking lost" in node.log()
    finally:
        peer.close()
        node.stop()


def test_outputs_can_be_switched_off(tmp_path, frames):
    node, peer = _run_node(tmp_path, {"ros.publish_tf": False, "ros.publish_depth": False,
                                      "ros.publish_path": False,
                                      "ros.publish_camera_tf": False}, frames)
    try:
        assert peer.wait_for(lambda: len(peer.messages("odom")) >= 2, 15), node.log()
        for topic in ("/tf", "/tf_static", "depth/image", "depth/camera_info", "path"):
            assert peer.messages(topic) == [], topic
    finally:
        peer.close()
        node.stop()


def test_compressed_images(tmp_path, frames):
    node, peer = _run_node(tmp_path, {"ros.use_compressed": True}, frames, compressed=True)
    try:
        assert peer.wait_for(lambda: len(peer.messages("odom")) >= 2, 15), node.log()
    finally:
        peer.close()
        node.stop()

