"""A real rclpy test peer and a vode_node subprocess, isolated on their own ROS domain."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from vode_ros.ros import conversions as conv
from vode_ros.ros import fastdds
from vode_ros.ros.spinning import SpunNode

REPO = Path(__file__).resolve().parent.parent
_COUNTER = [0]


def unique_domain_id() -> int:
    _COUNTER[0] += 1
    return 1 + (os.getpid() * 7 + _COUNTER[0] * 13) % 200


def wait_until(predicate, timeout: float = 20.0, period: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` s pass; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


def ros_environment(domain_id: int) -> dict:
    env = dict(os.environ)
    env.update({"ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0"})
    env.update({name: str(REPO / "config" / "fastdds_shm.xml")
                for name in fastdds.profile_variables()})
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    return env


class NodeProcess:
    """vode_node as a subprocess; its log goes to a file the test can read."""

    def __init__(self, domain_id: int, log_path: Path, params: dict | None = None,
                 remaps: dict | None = None, command: list | None = None):
        args = ["--ros-args"]
        for k, v in (params or {}).items():
            args += ["-p", f"{k}:={_param(v)}"]
        for k, v in (remaps or {}).items():
            args += ["-r", f"{k}:={v}"]
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        cmd = (command or [sys.executable, "-m", "vode_ros.ros.node"]) + args
        self.proc = subprocess.Popen(cmd, env=ros_environment(domain_id), cwd=str(REPO),
                                     stdout=self.log_file, stderr=subprocess.STDOUT)

    def log(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(2)   # SIGINT, like Ctrl-C / ros2 launch shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


def _param(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_param(x) for x in v) + "]"
    return str(v)


class Peer(SpunNode):
    """The test's side of the graph: publishes camera frames, records what the node publishes."""

    TOPICS = {"odom": Odometry, "depth/image": Image, "depth/camera_info": CameraInfo,
              "depth/confidence": Image, "depth/points": PointCloud2,
              "path": PathMsg, "/tf": TFMessage, "/diagnostics": DiagnosticArray}

    def __init__(self, domain_id: int, namespace: str = ""):
        for k, v in ros_environment(domain_id).items():
            if k.startswith(("ROS_", "FASTDDS_", "FASTRTPS_")):
                os.environ[k] = v
        super().__init__("vode_test_peer", domain_id, namespace)
        self.lock = threading.Lock()
        self.received: dict[str, list] = {t: [] for t in self.TOPICS}
        self.received["/tf_static"] = []
        for topic, typ in self.TOPICS.items():
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            self.node.create_subscription(typ, topic, self._keep(topic), qos)
        static_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(TFMessage, "/tf_static", self._keep("/tf_static"),
                                      static_qos)
        self.pub_image = self.node.create_publisher(Image, "camera/image_raw",
                                                    qos_profile_sensor_data)
        self.pub_compressed = self.node.create_publisher(
            CompressedImage, "camera/image_raw/compressed", qos_profile_sensor_data)
        self.pub_info = self.node.create_publisher(CameraInfo, "camera/camera_info",
                                                   qos_profile_sensor_data)
        self.reset_client = self.node.create_client(Trigger, "/vode_node/reset")

    def _keep(self, topic):
        def cb(msg):
            with self.lock:
                self.received[topic].append(msg)
        return cb

    def messages(self, topic: str) -> list:
        with self.lock:
            return list(self.received[topic])

    def clear(self):
        """Forget what was received (but the latched /tf_static, which comes only once)."""
        with self.lock:
            for topic, v in self.received.items():
                if topic != "/tf_static":
                    v.clear()

    def wait_for(self, predicate, timeout: float = 20.0, period: float = 0.05) -> bool:
        return wait_until(predicate, timeout, period)

    def wait_matched(self, timeout: float = 20.0, node_side: bool = True) -> bool:
        """The node subscribes image and camera_info, and (``node_side``) its own side has
        matched our image publisher too (``wait_node_matched``)."""
        ours = self.wait_for(lambda: self.pub_image.get_subscription_count() > 0
                             and self.pub_info.get_subscription_count() > 0, timeout)
        return ours and (not node_side or self.wait_node_matched(timeout))

    def wait_node_matched(self, timeout: float = 20.0) -> bool:
        """Discovery is not symmetric: the peer can see the node's subscription before the
        node has matched the peer's image publisher, and best-effort frames sent in between are
        lost. The node's /diagnostics says when its side has matched
        (``matched_image_publishers``)."""
        def node_sees_us() -> bool:
            last = self.last_diagnostics()
            return last is not None and int(last[1].get("matched_image_publishers", 0)) > 0
        return self.wait_for(node_sees_us, timeout)

    def send(self, rgb: np.ndarray, camera, stamp_ns: int, encoding: str = "rgb8",
             info: bool = True, frame_id: str = "camera") -> Header:
        header = Header(stamp=conv.ns_to_stamp(stamp_ns), frame_id=frame_id)
        if info:
            self.pub_info.publish(conv.camera_to_camera_info(camera, header))
        self.pub_image.publish(conv.rgb_to_image(rgb, header, encoding))
        return header

    def last_diagnostics(self):
        msgs = self.messages("/diagnostics")
        if not msgs:
            return None
        status = msgs[-1].status[0]
        return status, {kv.key: kv.value for kv in status.values}

    def reset(self, timeout: float = 10.0):
        assert self.reset_client.wait_for_service(timeout_sec=timeout)
        future = self.reset_client.call_async(Trigger.Request())
        assert self.wait_for(future.done, timeout)
        return future.result()



SHARED = REPO.parent / "shared" / "data"


def real_or_synthetic_frames(n: int, tmp_dir: Path) -> tuple[list, str]:
    """n frames (rgb, camera) of the 7-Scenes recording when ../shared/data is there, else of a
    synthetic room sequence rendered by the project's generator."""
    from vode_ros.datasets import open_sequence
    seven = SHARED / "7scenes-redkitchen"
    if seven.is_dir():
        seq = open_sequence(seven, frames=f"0:{n}")
        source = "7-Scenes redkitchen"
    else:
        from vode_ros.datasets.synth import generate_sequence
        path = generate_sequence(tmp_dir / "synth", scene="room", trajectory="straight",
                                 n_frames=n, width=640, height=480)
        seq = open_sequence(path)
        source = "synthetic room"
    return [(f.image, f.camera) for f in seq], source
