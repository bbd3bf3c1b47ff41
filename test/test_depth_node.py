"""A depth model exported elsewhere, stamped with ``vode model describe``, in the real node: its
affine-invariant inverse depth comes out as depth in the odometry's unit, with confidence and
points of the same stamps.

The model is a small ONNX graph whose output is an exact affine transform of the synthetic
sequence's inverse depth, which the test carries into the model in the image's red channel."""
from __future__ import annotations

import itertools
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ros_harness import NodeProcess, Peer, unique_domain_id
from vode_ros.cli import main as vode
from vode_ros.datasets import synth
from vode_ros.inference import OnnxModel
from vode_ros.ros import conversions as conv

NEAR = 0.5                  # red = 255 NEAR / z: the channel's inverse depth, z >= NEAR
A, B = 3.0, 0.7             # the model's output: A / z + B (scale and shift unknown to vode)
MEAN, STD = 0.45, 0.225
H, W = 96, 128


def affine_depth_model(path) -> None:
    """out = A / z + B from the normalised red channel x = (NEAR / z - MEAN) / STD."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])
    y = helper.make_tensor_value_info("inverse_depth", TensorProto.FLOAT, [1, 1, H, W])
    inits = [numpy_helper.from_array(np.array(v, dtype), name) for v, dtype, name in
             (([0], np.int64, "start"), ([1], np.int64, "end"), ([1], np.int64, "axis"),
              ([A * STD / NEAR], np.float32, "gain"), ([A * MEAN / NEAR + B], np.float32,
                                                       "offset"))]
    nodes = [helper.make_node("Slice", ["image", "start", "end", "axis"], ["red"]),
             helper.make_node("Mul", ["red", "gain"], ["scaled"]),
             helper.make_node("Add", ["scaled", "offset"], ["inverse_depth"])]
    model = helper.make_model(helper.make_graph(nodes, "foreign", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))


def depth_coded_sequence(n: int):
    """(rgb with the red channel carrying NEAR / z, z in metres, camera pose) of a room loop."""
    scene = synth.make_scene("room", 5)
    cam = synth.default_camera(320, 240)
    r = synth.Renderer(scene, cam)
    out = []
    for T in synth.make_trajectory(scene, "loop", n, 5):
        img, z = r.render(T)
        img = img.copy()
        img[:, :, 0] = np.clip(np.round(255 * NEAR / np.nan_to_num(z, nan=1e9)), 0, 255)
        out.append((img, z, T))
    return out, cam


@pytest.fixture(scope="module")
def stamped_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("foreign")
    affine_depth_model(d / "export.onnx")
    sets = {"vode.contract": "1", "vode.kind": "depth", "vode.input_height": H,
            "vode.input_width": W, "vode.input_mean": "0.45,0.45,0.45",
            "vode.input_std": "0.225,0.225,0.225", "vode.scale": "relative",
            "vode.output": "affine_inverse_depth", "vode.min_depth": 0.1, "vode.max_depth": 100}
    args = ["model", "describe", str(d / "export.onnx"), "--out", str(d / "stamped.onnx")]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    assert vode(args) == 0
    assert OnnxModel(d / "stamped.onnx", "depth").spec.output == "affine_inverse_depth"
    return d / "stamped.onnx"


def _send_sequence(tmp_path, stamped_model, frames, cam):
    """The node and a peer on a new domain, the sequence sent at 12 Hz: (node, peer, stamps).
    Fast DDS 2.x (ROS 2 Jazzy) in a pytest process that has made many participants before has
    been seen never to deliver the peer's images (the node logs the publisher matched and no
    frame, for good): where the first twelve frames get no odometry back, both start again on
    another domain, once."""
    for attempt in range(2):
        domain = unique_domain_id()
        node = NodeProcess(domain, tmp_path / f"node{attempt}.log",
                           params={"models.depth": str(stamped_model), "ros.publish_points": True,
                                   "ros.diagnostics_period_s": 0.25},
                           remaps={"image": "/camera/image_raw",
                                   "camera_info": "/camera/camera_info"})
        peer = Peer(domain)
        try:
            assert peer.wait_matched(30), node.log()
            stamps: list[int] = []
            for i, (img, _, _) in enumerate(frames):
                stamps.append(1_700_000_000 * 10**9 + i * 66_666_667)
                peer.send(img, cam, stamps[-1])
                time.sleep(1 / 12)
                if i == 11 and attempt == 0 and \
                        not peer.wait_for(lambda p=peer: p.messages("odom"), 10):
                    break
            else:
                return node, peer, stamps
        except BaseException:
            peer.close()
            node.stop()
            raise
        log = node.log()
        peer.close()
        node.stop()
    pytest.fail(f"the node received none of the peer's images, twice:\n{log}")


def test_foreign_affine_model_gives_depth_in_the_odometry_unit(tmp_path, stamped_model):
    frames, cam = depth_coded_sequence(90)
    node, peer, stamps = _send_sequence(tmp_path, stamped_model, frames, cam)
    try:
        assert peer.wait_for(lambda: len(peer.messages("depth/points")) >= len(frames) - 5,
                             30), node.log()
        time.sleep(0.3)
        depth = {conv.stamp_to_ns(m.header.stamp): m for m in peer.messages("depth/image")}
        conf = {conv.stamp_to_ns(m.header.stamp): m for m in peer.messages("depth/confidence")}
        points = {conv.stamp_to_ns(m.header.stamp): m for m in peer.messages("depth/points")}
        odom = {conv.stamp_to_ns(m.header.stamp): m for m in peer.messages("odom")}
        assert set(depth) == set(conf) == set(points) == set(odom)
        cloud = points[max(points)]
        assert cloud.header.frame_id == "camera_optical_frame" and cloud.width > 1000
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]

        # depth against the ground truth, in the odometry's unit: one scale for all frames
        # (metres per odometry unit from the trajectory's length)
        index = {s: i for i, s in enumerate(stamps)}
        seen = sorted(odom)
        gt_path = sum(np.linalg.norm(frames[index[b]][2][:3, 3] - frames[index[a]][2][:3, 3])
                      for a, b in itertools.pairwise(seen))
        xyz = [np.array([odom[s].pose.pose.position.x, odom[s].pose.pose.position.y,
                         odom[s].pose.pose.position.z]) for s in seen]
        odom_path = sum(np.linalg.norm(b - a) for a, b in itertools.pairwise(xyz))
        metres_per_unit = gt_path / odom_path
        ratios, errors = [], []
        for s in seen[len(seen) // 2:]:
            msg = depth[s]
            d = np.frombuffer(bytes(msg.data), np.float32).reshape(msg.height, msg.width)
            z = frames[index[s]][1][::240 // msg.height, ::320 // msg.width]
            ok = np.isfinite(d) & np.isfinite(z) & (z < 8)
            ratios.append(np.median(z[ok] / d[ok]))
            errors.append(np.mean(np.abs(d[ok] * ratios[-1] - z[ok]) / z[ok]))
        assert np.mean(errors) < 0.08, errors            # the right shape: the shift is undone
        assert np.std(ratios) / np.mean(ratios) < 0.05, ratios
        assert np.median(ratios) == pytest.approx(metres_per_unit, rel=0.1)
    finally:
        peer.close()
        node.stop()
