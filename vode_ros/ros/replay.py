"""Feed a frame sequence to the graph as a camera driver would, and record what vode_node says.

Used by ``vode demo`` and by tests; the publisher sends sensor_msgs/Image + CameraInfo with the
sequence's own stamps (SensorDataQoS, like camera drivers), the recorder keeps the node's outputs.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from vode_ros.geometry import from_quaternion_xyzw
from vode_ros.ros import conversions as conv


class GraphPeer:
    """An rclpy node on its own context, spun in a background thread."""

    def __init__(self, name: str, domain_id: int | None = None, namespace: str = ""):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context, namespace=namespace or None)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the context was shut down under the executor
            pass

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class FramePublisher:
    """Publishes frames as a camera driver: Image (rgb8) then CameraInfo of the same stamp."""

    def __init__(self, node, image_topic: str = "/camera/image_raw",
                 info_topic: str = "/camera/camera_info", frame_id: str = "camera"):
        self.node = node
        self.frame_id = frame_id
        self.pub_image = node.create_publisher(Image, image_topic, qos_profile_sensor_data)
        self.pub_info = node.create_publisher(CameraInfo, info_topic, qos_profile_sensor_data)

    def wait_for_subscriber(self, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.pub_image.get_subscription_count() and self.pub_info.get_subscription_count():
                return True
            time.sleep(0.05)
        return False

    def publish(self, stamp_ns: int, rgb: np.ndarray, camera) -> None:
        header = Header(stamp=conv.ns_to_stamp(stamp_ns), frame_id=self.frame_id)
        self.pub_info.publish(conv.camera_to_camera_info(camera, header))
        self.pub_image.publish(conv.rgb_to_image(rgb, header))


class OutputRecorder:
    """Keeps what vode_node publishes: odometry, TF, path, diagnostics, depth (stamps and a few
    images, not every image, to bound memory)."""

    def __init__(self, node, keep_depth_every: int = 10):
        self.lock = threading.Lock()
        self.odom: list[Odometry] = []
        self.tf: list = []
        self.tf_static: list = []
        self.depth_stamps: list[int] = []
        self.depth_info_stamps: list[int] = []
        self.depth_samples: dict[int, np.ndarray] = {}
        self.path: Path | None = None
        self.diagnostics: list = []
        self.keep_depth_every = keep_depth_every
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(Odometry, "/odom", self._keep(self.odom), reliable)
        node.create_subscription(TFMessage, "/tf", lambda m: self._extend(self.tf, m.transforms),
                                 reliable)
        node.create_subscription(TFMessage, "/tf_static",
                                 lambda m: self._extend(self.tf_static, m.transforms), latched)
        node.create_subscription(Image, "/depth/image", self._on_depth, reliable)
        node.create_subscription(CameraInfo, "/depth/camera_info", self._on_depth_info, reliable)
        node.create_subscription(Path, "/path", self._on_path, reliable)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._keep(self.diagnostics),
                                 reliable)

    def _keep(self, store):
        def cb(msg):
            with self.lock:
                store.append(msg)
        return cb

    def _extend(self, store, items):
        with self.lock:
            store.extend(items)

    def _on_depth(self, msg: Image):
        with self.lock:
            self.depth_stamps.append(conv.stamp_to_ns(msg.header.stamp))
            if len(self.depth_stamps) % self.keep_depth_every == 1:
                self.depth_samples[self.depth_stamps[-1]] = np.frombuffer(
                    bytes(msg.data), np.float32).reshape(msg.height, msg.width).copy()

    def _on_depth_info(self, msg: CameraInfo):
        with self.lock:
            self.depth_info_stamps.append(conv.stamp_to_ns(msg.header.stamp))

    def _on_path(self, msg: Path):
        with self.lock:
            self.path = msg

    def odometry_poses(self) -> tuple[list[int], list[np.ndarray]]:
        """(stamps_ns, odom -> base_link 4x4 poses) of the recorded odometry."""
        with self.lock:
            msgs = list(self.odom)
        stamps, poses = [], []
        for m in msgs:
            p, q = m.pose.pose.position, m.pose.pose.orientation
            stamps.append(conv.stamp_to_ns(m.header.stamp))
            poses.append(from_quaternion_xyzw([p.x, p.y, p.z], [q.x, q.y, q.z, q.w]))
        return stamps, poses

    def last_diagnostics(self) -> dict:
        with self.lock:
            if not self.diagnostics:
                return {}
            status = self.diagnostics[-1].status[0]
        out = {kv.key: kv.value for kv in status.values}
        out["level"] = int.from_bytes(status.level, "little") if isinstance(status.level, bytes) \
            else int(status.level)
        out["message"] = status.message
        return out
