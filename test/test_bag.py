"""The rosbag workflow without rosbag2: from-dataset, process --out-bag, play, record, and the
demo (bag play -> vode_node in its own process on sim time -> record -> evaluation).

In-process graph peers run on their own rclpy contexts, on the unique ROS_DOMAIN_ID of the test's
``ros_env`` (localhost discovery, the Fast DDS profile of config/)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import model_factory as mf
from vode_ros.bags.from_dataset import dataset_to_bag
from vode_ros.bags.paths import BagError
from vode_ros.bags.reader import bag_info, read_messages, read_odometry
from vode_ros.cli import main
from vode_ros.config import VodeConfig
from vode_ros.datasets import DatasetError, open_sequence

rclpy = pytest.importorskip("rclpy")

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402

from ros_harness import wait_until  # noqa: E402
from vode_ros.ros.bag import BagPlayer, BagRecorder  # noqa: E402
from vode_ros.ros.spinning import spun_node  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N, W, H = 8, 160, 120
MH, MW = 48, 64          # model input size


def _ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from vode_ros.datasets.synth import generate_sequence
    root = tmp_path_factory.mktemp("bag")
    seq = generate_sequence(root / "room", scene="room", trajectory="turn", n_frames=N,
                            width=W, height=H, seed=3)
    depth = mf.make_depth_model(root / "depth.onnx", MH, MW)
    pose = mf.make_pose_model(root / "pose.onnx", (0, 0, 0, 0, 0, 0.05), MH, MW)
    bag = root / "camera.mcap"
    dataset_to_bag(seq, bag, quiet=True)
    return {"root": root, "seq": seq, "bag": bag, "frames": list(open_sequence(seq)),
            "depth": depth, "pose": pose}


def model_settings(a) -> dict:
    """The small hand-built models (and the network pose backend where the schema has one)."""
    out = {"models.depth": str(a["depth"]), "models.pose": str(a["pose"]),
           "models.providers": "[CPUExecutionProvider]"}
    if "pose.backend" in {name for name, _, _ in VodeConfig().parameters()}:
        out["pose.backend"] = "network"
    return out


# -- from-dataset --------------------------------------------------------------------------------
@pytest.mark.parametrize("storage,name", [("mcap", "cam.mcap"), ("sqlite3", "cam_folder")])
def test_from_dataset_round_trip(assets, tmp_path, storage, name):
    out = tmp_path / name
    argv = ["bag", "from-dataset", str(assets["seq"]), str(out), "--quiet"]
    if storage == "sqlite3":
        argv += ["--storage", "sqlite3"]
    assert main(argv) == 0
    if storage == "sqlite3":          # a rosbag2 folder: metadata.yaml + the database
        assert (out / "metadata.yaml").is_file() and (out / f"{name}.db3").is_file()
        import yaml
        meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert meta["version"] == 9 and meta["storage_identifier"] == "sqlite3"
        assert all(t["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
                   for t in meta["topics_with_message_count"])
    else:
        assert out.is_file() and out.read_bytes()[:5] == b"\x89MCAP"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no partial left
    info = bag_info(out)
    assert info["storage"] == storage
    assert {t: (v["type"], v["messages"]) for t, v in info["topics"].items()} == {
        "/camera/image_raw": ("sensor_msgs/msg/Image", N),
        "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", N),
        "/tf": ("tf2_msgs/msg/TFMessage", N)}
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.rosbag2 import Reader
    with Reader(out) as reader:       # ros2msg schemas, offered QoS kept for `ros2 bag play`
        for c in reader.connections:
            assert c.msgdef.format == MessageDefinitionFormat.MSG and c.msgdef.data
            assert c.ext.offered_qos_profiles
    for topic, _type, t, msg in read_messages(out):      # receive time = header stamp
        stamp = _ns(msg.transforms[0].header) if topic == "/tf" else _ns(msg.header)
        assert t == stamp
    seq = open_sequence(out)
    src = assets["frames"]
    assert seq.layout == "rosbag" and len(seq) == N
    assert seq.camera == src[0].camera
    assert seq.gt_source == "/tf world -> camera_gt"
    for a, b in zip(src, seq, strict=True):
        assert b.stamp_ns == a.stamp_ns
        assert np.array_equal(b.image, a.image)
        np.testing.assert_allclose(b.gt_pose, a.gt_pose, atol=1e-9)


def test_from_dataset_compressed_and_frames(assets, tmp_path):
    out = tmp_path / "c.mcap"
    info = dataset_to_bag(assets["seq"], out, frames="2:6", compressed=True, quiet=True)
    assert info["frames"] == 4 and info["ground_truth_poses"] == 4
    topics = bag_info(out)["topics"]
    assert topics["/camera/image_raw/compressed"] == {"type": "sensor_msgs/msg/CompressedImage",
                                                      "messages": 4}
    seq = open_sequence(out)
    src = assets["frames"][2:6]
    assert list(seq.stamps_ns) == [f.stamp_ns for f in src]
    for a, b in zip(src, seq, strict=True):
        assert np.abs(b.image.astype(int) - a.image.astype(int)).mean() < 4.0   # JPEG 95
        np.testing.assert_allclose(b.gt_pose, a.gt_pose, atol=1e-9)


def test_from_dataset_failure_leaves_no_bag(assets, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(assets["seq"], broken)
    images = sorted((broken / "rgb").glob("*.png"))
    images[5].write_bytes(b"not a png")
    out = tmp_path / "out.mcap"
    with pytest.raises(DatasetError, match="expected a readable PNG"):
        dataset_to_bag(broken, out, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]   # nothing, no partial
    assert main(["bag", "from-dataset", str(broken), str(tmp_path / "f"), "--storage",
                 "sqlite3", "--quiet"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]
    # an existing bag is kept unless --overwrite
    dataset_to_bag(assets["seq"], out, frames="0:2", quiet=True)
    before = out.read_bytes()
    with pytest.raises(BagError, match="exists already"):
        dataset_to_bag(assets["seq"], out, quiet=True)
    with pytest.raises(DatasetError):
        dataset_to_bag(broken, out, overwrite=True, quiet=True)
    assert out.read_bytes() == before
    with pytest.raises(BagError, match="storage 'sqlite3'"):
        dataset_to_bag(assets["seq"], tmp_path / "x.mcap", storage="sqlite3", quiet=True)


# -- process --out-bag ---------------------------------------------------------------------------
def test_process_writes_the_node_topics_into_a_bag(assets, tmp_path):
    out_bag = tmp_path / "vo.mcap"
    argv = ["process", str(assets["bag"]), "--out", str(tmp_path / "run"), "--out-bag",
            str(out_bag), "--save-depth", "2", "--quiet"]
    for k, v in model_settings(assets).items():
        argv += ["--set", f"{k}={v}"]
    assert main(argv) == 0
    topics = {t: (v["type"], v["messages"]) for t, v in bag_info(out_bag)["topics"].items()}
    n_path = topics.pop("/path")
    assert n_path[0] == "nav_msgs/msg/Path" and n_path[1] >= 1
    assert topics == {"/odom": ("nav_msgs/msg/Odometry", N),
                      "/tf": ("tf2_msgs/msg/TFMessage", N),
                      "/tf_static": ("tf2_msgs/msg/TFMessage", 1),
                      "/depth/image": ("sensor_msgs/msg/Image", N // 2),
                      "/depth/camera_info": ("sensor_msgs/msg/CameraInfo", N // 2),
                      "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", 1)}
    stamps, poses, frame, child = read_odometry(out_bag)
    seq = open_sequence(assets["bag"])
    assert stamps.tolist() == seq.stamps_ns.tolist()          # the input's own stamps
    assert (frame, child) == ("odom", "base_link")
    assert np.isfinite(poses).all() and not np.allclose(poses[-1], poses[0])
    depth_stamps, paths = [], []
    for topic, _type, t, msg in read_messages(out_bag):
        if topic == "/tf_static":
            tr = msg.transforms[0]
            assert (tr.header.frame_id, tr.child_frame_id) == ("base_link",
                                                               "camera_optical_frame")
        elif topic == "/tf":
            tr = msg.transforms[0]
            assert (tr.header.frame_id, tr.child_frame_id) == ("odom", "base_link")
        elif topic == "/depth/image":
            assert (msg.encoding, msg.width, msg.height, msg.step) == ("32FC1", W, H, W * 4)
            assert msg.header.frame_id == "camera_optical_frame"
            depth_stamps.append(_ns(msg.header))
        elif topic == "/depth/camera_info":
            assert (msg.width, msg.height) == (W, H) and msg.k[0] == seq.camera.fx
        elif topic == "/path":
            paths.append(msg)
        if topic != "/tf_static" and hasattr(msg, "header"):
            assert t == _ns(msg.header)
    assert depth_stamps == stamps[::2].tolist()
    assert len(paths[-1].poses) == N and _ns(paths[-1].header) == stamps[-1]
    run_info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_info["out_bag"]["path"] == str(out_bag)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bag_messages_hold_the_values_the_node_publishes(assets):
    """The rosbags builder (bags.messages) and the node's rclpy conversions hold the same values
    (message_fields): the node's message, read back by rosbags, serialises to the bag message's
    bytes (re-serialised, as rclpy leaves CDR padding bytes undefined)."""
    from types import SimpleNamespace

    from nav_msgs.msg import Path as PathMsg
    from rclpy.serialization import serialize_message
    from scipy.spatial.transform import Rotation
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    from vode_ros.bags.messages import Messages
    from vode_ros.bags.typestore import CAMERA_INFO, IMAGE, ODOMETRY, PATH, POSE_STAMPED, TF
    from vode_ros.ros import conversions as conv
    rng = np.random.default_rng(7)
    m = Messages()
    frame = assets["frames"][2]
    t = frame.stamp_ns + 123
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec([0.3, -0.2, 0.9]).as_matrix()
    T[:3, 3] = [1.5, -2.0, 0.25]
    est = SimpleNamespace(pose=T, twist=rng.normal(size=6),
                          pose_covariance=rng.normal(size=(6, 6)),
                          twist_covariance=rng.normal(size=(6, 6)))
    depth = rng.random((H, W)).astype(np.float32)
    depth[3, 4] = np.nan

    def header(frame_id):
        return Header(stamp=conv.ns_to_stamp(t), frame_id=frame_id)

    pairs = [
        (IMAGE, m.image(frame.image, t, "camera"),
         conv.rgb_to_image(frame.image, header("camera"))),
        (IMAGE, m.depth(depth, t, "cam"), conv.depth_to_image(depth, header("cam"))),
        (CAMERA_INFO, m.camera_info(frame.camera, t, "cam"),
         conv.camera_to_camera_info(frame.camera, header("cam"))),
        (ODOMETRY, m.odometry(est, t, "odom", "base_link"),
         conv.estimate_to_odometry(est, header("odom"), "base_link")),
        (TF, m.tf([m.transform(T, t, "odom", "base_link")]),
         TFMessage(transforms=[conv.matrix_to_transform(T, header("odom"), "base_link")])),
        (POSE_STAMPED, m.pose_stamped(T, t, "odom"), conv.pose_stamped(T, header("odom"))),
        (PATH, m.path([m.pose_stamped(T, t, "odom")] * 2, t, "odom"),
         PathMsg(header=header("odom"), poses=[conv.pose_stamped(T, header("odom"))] * 2)),
    ]
    for msgtype, bag_msg, node_msg in pairs:
        from_node = m.ts.deserialize_cdr(serialize_message(node_msg), msgtype)
        assert bytes(m.ts.serialize_cdr(from_node, msgtype)) == \
            bytes(m.ts.serialize_cdr(bag_msg, msgtype)), msgtype


# -- play ----------------------------------------------------------------------------------------
def test_play_publishes_images_with_their_stamps_and_clock(assets, ros_env):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image
    domain = int(ros_env["ROS_DOMAIN_ID"])
    images, infos, clock = [], [], []
    with spun_node("bag_test_sub", domain) as sub:
        sub.create_subscription(Image, "/camera/image_raw", images.append,
                                QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))
        sub.create_subscription(CameraInfo, "/camera/camera_info", infos.append,
                                qos_profile_sensor_data)
        sub.create_subscription(Clock, "/clock", lambda m: clock.append(m.clock),
                                QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        with spun_node("bag_test_player", domain) as node:
            player = BagPlayer(node, assets["bag"], rate=2.0, wait_for_subscribers=20.0)
            t0 = time.monotonic()
            stats = player.play()
            wall = time.monotonic() - t0
            assert wait_until(lambda: len(images) == N, 5.0)
    stamps = [f.stamp_ns for f in assets["frames"]]
    assert [_ns(m.header) for m in images] == stamps
    assert all((m.encoding, m.width, m.height) == ("rgb8", W, H) for m in images)
    np.testing.assert_array_equal(np.frombuffer(bytes(images[3].data), np.uint8).reshape(H, W, 3),
                                  assets["frames"][3].image)
    assert [_ns(m.header) for m in infos] == stamps
    assert stats["messages"] == {"/camera/image_raw": N, "/camera/camera_info": N, "/tf": N}
    assert wall >= 0.9 * (stamps[-1] - stamps[0]) / 1e9 / 2.0          # original timing / rate
    clock_ns = [c.sec * 1_000_000_000 + c.nanosec for c in clock]
    assert clock_ns == sorted(clock_ns) and set(stamps) <= set(clock_ns)
    assert clock_ns[0] == stamps[0] and clock_ns[-1] == stamps[-1]


def test_play_loop_calls_the_node_reset_service(assets, ros_env):
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger
    domain = int(ros_env["ROS_DOMAIN_ID"])
    resets, images = [], []

    def on_reset(request, response):
        resets.append(time.monotonic())
        response.success = True
        return response

    with spun_node("vode_node", domain) as fake:       # stands in for vode_node's ~/reset
        fake.create_service(Trigger, "~/reset", on_reset)
        fake.create_subscription(Image, "/camera/image_raw", images.append,
                                 qos_profile_sensor_data)
        with spun_node("bag_test_player", domain) as node:
            player = BagPlayer(node, assets["bag"], rate=4.0, loop=True,
                               topics=["/camera/image_raw"], wait_for_subscribers=20.0,
                               clock=False)
            assert wait_until(lambda: player.reset_services() == ["/vode_node/reset"], 10.0)
            stop = threading.Event()
            thread = threading.Thread(target=lambda: player.play(stop))
            thread.start()
            ok = wait_until(lambda: len(resets) >= 1 and len(images) > N + 1, 20.0)
            stop.set()
            thread.join(10.0)
    assert ok and not thread.is_alive()
    assert player.loops >= 1
    stamps = [_ns(m.header) for m in images]
    assert stamps[:N] == [f.stamp_ns for f in assets["frames"]]
    assert stamps[N] == stamps[0]                         # the bag started again


def test_play_refuses_a_broken_bag_clearly(assets, tmp_path, ros_env):
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.mcap"
    data = assets["bag"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with spun_node("bag_test_player", int(ros_env["ROS_DOMAIN_ID"])) as node:
        for bag in (garbage, truncated):
            with pytest.raises(BagError, match="could not read ROS 2 bag .*mcap recover"):
                BagPlayer(node, bag).play()
        with pytest.raises(BagError, match="does not exist"):
            BagPlayer(node, tmp_path / "missing.mcap")
        with pytest.raises(BagError, match="none of the topics"):
            BagPlayer(node, assets["bag"], topics=["/nope"])
    assert main(["bag", "play", str(garbage)]) == 2


# -- record --------------------------------------------------------------------------------------
def test_record_writes_what_the_graph_publishes(tmp_path, ros_env):
    from geometry_msgs.msg import TransformStamped
    from nav_msgs.msg import Odometry
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage
    domain = int(ros_env["ROS_DOMAIN_ID"])
    n = 20
    out = tmp_path / "rec.mcap"
    with spun_node("bag_test_pub", domain) as pub_node:
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pub_static = pub_node.create_publisher(TFMessage, "/tf_static", latched)
        pub_static.publish(TFMessage(transforms=[TransformStamped(
            header=Header(frame_id="base_link"), child_frame_id="camera_optical_frame")]))
        pub_odom = pub_node.create_publisher(Odometry, "/odom", 10)
        pub_best = pub_node.create_publisher(Odometry, "/sensor_odom", qos_profile_sensor_data)
        with spun_node("bag_test_rec", domain) as node:
            rec = BagRecorder(node, out, ["/odom", "tf_static", "/sensor_odom", "/never"],
                              every={"/sensor_odom": 5})
            assert wait_until(lambda: rec.missing() == ["/never"], 10.0), rec.missing()
            assert wait_until(lambda: pub_odom.get_subscription_count() == 1 and
                         pub_best.get_subscription_count() == 1, 10.0)
            for i in range(n):
                h = Header(frame_id="odom")
                h.stamp.sec = 100 + i
                pub_odom.publish(Odometry(header=h, child_frame_id="base_link"))
                pub_best.publish(Odometry(header=h))
                time.sleep(0.01)
            assert wait_until(lambda: rec.counts().get("/odom") == n and
                         rec.counts().get("/tf_static") == 1, 10.0), rec.counts()
            summary = rec.stop()
    assert summary["topics"]["/odom"] == {"type": "nav_msgs/msg/Odometry", "messages": n}
    assert out.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    info = bag_info(out)                                  # a complete bag rosbags reads
    assert {t: v["messages"] for t, v in info["topics"].items()} == {
        "/odom": n, "/tf_static": 1, "/sensor_odom": (summary["received"]["/sensor_odom"] + 4)
        // 5}
    assert summary["received"]["/sensor_odom"] >= n - 2      # best effort, local: all or nearly
    msgs = [(t, m) for _topic, _type, t, m in read_messages(out, ["/odom"])]
    assert [m.header.stamp.sec for _t, m in msgs] == list(range(100, 100 + n))
    times = [t for t, _m in msgs]
    assert times == sorted(times) and abs(times[0] - time.time_ns()) < 60e9   # receive times
    from rosbags.interfaces import QosDurability, QosReliability
    from rosbags.rosbag2 import Reader
    with Reader(out) as reader:                         # publishers' QoS kept for replay
        qos = {c.topic: c.ext.offered_qos_profiles[0] for c in reader.connections}
    assert qos["/tf_static"].durability == QosDurability.TRANSIENT_LOCAL
    assert qos["/sensor_odom"].reliability == QosReliability.BEST_EFFORT


def test_record_command_closes_the_bag_on_sigint(tmp_path, ros_env):
    from std_msgs.msg import String
    out = tmp_path / "cli_rec"
    proc = subprocess.Popen([sys.executable, "-m", "vode_ros.cli", "bag", "record", str(out),
                             "--topics", "/chatter", "--storage", "sqlite3"],
                            env={**ros_env, "PYTHONPATH": str(REPO)}, cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        with spun_node("bag_test_chatter", int(ros_env["ROS_DOMAIN_ID"])) as node:
            pub = node.create_publisher(String, "/chatter", 10)
            assert wait_until(lambda: pub.get_subscription_count() == 1, 30.0), "".join(lines)
            for i in range(7):
                pub.publish(String(data=f"hello {i}"))
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    assert (out / "metadata.yaml").is_file()
    got = [m.data for _t, _type, _ts, m in read_messages(out)]
    assert got == [f"hello {i}" for i in range(7)]
    assert json.loads("".join(lines[lines.index("{\n"):]))["topics"]["/chatter"]["messages"] == 7


# -- end to end: the demo on the tiny sequence ---------------------------------------------------
def test_demo_plays_a_bag_through_the_node_and_records_its_odometry(assets, tmp_path, ros_env,
                                                                     monkeypatch):
    from vode_ros.ros.demo import run_demo
    params = [f"{k}={v}" for k, v in model_settings(assets).items()]
    params += ["ros.diagnostics_period_s=0.1"]
    for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        monkeypatch.setenv(k, ros_env[k])          # run_one sets them too; restored after
    reports = run_demo([str(assets["seq"])], str(tmp_path / "demo"), rate_hz=8.0,
                       extra_params=params, cache=tmp_path / "cache",
                       domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    (r,) = reports
    out = tmp_path / "demo" / "room"
    log = (out / "node.log").read_text()
    assert r["frames_sent"] == N and r["node_exit_code"] == 0, log
    assert r["odom_received"] >= N - 1, (r, log)             # none dropped at 8 Hz, but slack
    stamps, poses, frame, child = read_odometry(out / "vode_output.mcap")
    assert set(stamps.tolist()) <= {f.stamp_ns for f in assets["frames"]}
    assert stamps.tolist() == sorted(stamps.tolist()) and len(stamps) == r["odom_received"]
    assert (frame, child) == ("odom", "base_link") and np.isfinite(poses).all()
    assert r["tf_static"] == ["base_link->camera_optical_frame"]
    assert r["depth_camera_info_stamps_match"] and r["odom_stamps_are_input_stamps"]
    # the node ran on bag time: its diagnostics are stamped within the bag's stamps
    diag = [_ns(m.header) for _t, _ty, _s, m in read_messages(out / "vode_output.mcap",
                                                               ["/diagnostics"])]
    first, last = assets["frames"][0].stamp_ns, assets["frames"][-1].stamp_ns
    assert diag and all(first - 1 <= s <= last for s in diag), (diag, first, last)
    ev = r["evaluation"]
    assert ev["frames_matched"] == len(stamps) and ev["ate_rmse_m"] is not None, ev
    for name in ("summary.json", "metrics.json", "report.md", "trajectory.png", "errors.png",
                 "trajectory.txt"):
        assert (out / name).is_file(), name
    assert list((tmp_path / "cache" / "bags").glob("*.mcap"))      # the camera bag is cached
