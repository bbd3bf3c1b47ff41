"""vode_node: the ROS 2 door to VisualOdometry.

Glue only: messages in, ``VisualOdometry.process`` (the same call the offline tools make), messages
out. Frames go through a one-slot mailbox to a worker thread, so the node never queues frames
without bound: a frame arriving while another waits replaces it and is counted as dropped.

With ``loop_closure.enabled`` the worker also offers every estimate to the loop-closure back-end
(``vode_ros.loop_closure.LoopClosure.add``: a keyframe test and a bounded queue, never a wait);
the back-end's own thread does the rest. The node then broadcasts TF map -> odom beside
odom -> base_link (REP-105: the odometry stays continuous, only map -> odom jumps), and publishes
``map_path`` (nav_msgs/Path of the corrected keyframes in the map frame) and ``loop_closures``
(visualization_msgs/MarkerArray: loop edges as a LINE_LIST, keyframes as a SPHERE_LIST) from a
timer, a second diagnostics status with the back-end's counters and last loop event, and the
services ``~/save_map`` / ``~/load_map`` (std_srvs/Trigger, file ``loop_closure.map_file``).

The node is brought up in steps (``configure_vode``, ``create_outputs``, ``create_inputs``,
``start_processing``) that ``vode_lifecycle_node`` (``vode_ros.ros.lifecycle_node``) runs from its
lifecycle transitions; ``VodeNode`` runs them all at construction. QoS of every input and output
comes from ``vode_ros.ros.qos``; the start pose (``initialpose``, ``~/set_pose``) from
``vode_ros.ros.start_pose``.
"""
from __future__ import annotations

import collections
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry, Path
from nav_msgs.srv import SetMap
from rcl_interfaces.msg import (
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from vode_ros.camera import Frame
from vode_ros.config import NODE_NAME, VodeConfig
from vode_ros.depth.points import depth_points
from vode_ros.errors import InputError, VodeError
from vode_ros.geometry import is_finite_transform
from vode_ros.odometry import INITIALIZING, LOST
from vode_ros.pipeline import build_odometry
from vode_ros.ros import conversions as conv
from vode_ros.ros import loop_closure_outputs as lc_outputs
from vode_ros.ros import qos as ros_qos
from vode_ros.ros import start_pose
from vode_ros.ros.diagnostics import Stats, Throttle, scale_values
from vode_ros.ros.parameters import declare_config

TF_QOS = ros_qos.TF_QOS
TF_STATIC_QOS = ros_qos.LATCHED_QOS
INITIALPOSE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
NO_FRAMES_HINT = ("an image publisher is matched but no frame arrived: large images over Fast DDS "
                  "shared memory need a bigger segment; start the camera driver with "
                  "FASTDDS_DEFAULT_PROFILES_FILE=<share>/vode_ros/config/fastdds_shm.xml "
                  "(see README), or check QoS (best effort vs reliable)")


class VodeNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.configure_vode()
        self.create_outputs()
        self.create_inputs()
        self.start_processing()
        self.log.info(f"vode_node ready: image topic {self.sub_image.topic_name}, "
                      f"models on {self.provider or 'none'}, scale {self.scale}")

    # -- bring-up steps (a managed node runs them from its transitions) -------------------------
    def configure_vode(self):
        """Parameters, state, models, the loop-closure back-end and the services."""
        self.cfg = declare_config(self, VodeConfig())
        r = self.cfg.ros
        self.log = self.get_logger()
        self.throttle = Throttle(r.log_throttle_s)
        self.stats = Stats()
        self.lock = threading.Lock()          # guards the odometry and the path
        self.mailbox_cv = threading.Condition()
        self.mailbox = None                   # newest unprocessed image message
        self.camera_info: CameraInfo | None = None
        self.tracking = "NO_MODEL"
        self.last_reason = ""
        self.last_error = ""
        self.backend = ""
        self.path = collections.deque(maxlen=r.path_max_poses)
        self.path_dirty = False
        self.vo = None
        self.model_error = ""
        self.provider = ""
        self.scale = "unknown"
        self.scale_status: dict | None = None     # Estimate.scale_status of the last frame
        self.running = False
        self.worker = None
        self.qos_reporter = ros_qos.QosMismatchReporter(self)
        self._load_models()
        self.lc = None                        # the loop-closure back-end, when enabled
        self._start_loop_closure()
        if not getattr(self, "_refusing_changes", False):
            self.add_on_set_parameters_callback(self._refuse_changes)
            self._refusing_changes = True
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(SetMap, "~/set_pose", self._on_set_pose)
        if self.lc is not None:
            self.create_service(Trigger, "~/save_map", self._on_save_map)
            self.create_service(Trigger, "~/load_map", self._on_load_map)

    def _output_qos(self, topic: str, default_depth: int) -> dict:
        """QoS and event callbacks of odom, depth or path (``ros.output_qos_*``), as keywords."""
        qos = ros_qos.output_qos(self.cfg.ros, default_depth)
        events = self.qos_reporter.for_publisher(
            lambda: self.resolve_topic_name(topic), qos,
            "Set ros.output_qos_reliability to what the subscribers request.")
        return {"qos_profile": qos, "event_callbacks": events}

    def _input_qos(self, topic: str, qos, parameter: str) -> dict:
        events = self.qos_reporter.for_subscription(
            lambda: self.resolve_topic_name(topic), qos,
            f"Set {parameter} to what the publisher offers (best_effort matches both).")
        return {"qos_profile": qos, "event_callbacks": events}

    def create_outputs(self):
        r = self.cfg.ros
        self.pub_odom = self.pub_depth = self.pub_depth_info = self.pub_path = None
        self.pub_confidence = self.pub_points = None
        self.pub_tf = self.pub_tf_static = None
        if r.publish_odom:
            self.pub_odom = self.create_publisher(Odometry, "odom", **self._output_qos("odom", 10))
        if r.publish_tf:
            self.pub_tf = self.create_publisher(TFMessage, "/tf", TF_QOS)
        if r.publish_depth:
            self.pub_depth = self.create_publisher(Image, "depth/image",
                                                   **self._output_qos("depth/image", 5))
            self.pub_confidence = self.create_publisher(
                Image, "depth/confidence", **self._output_qos("depth/confidence", 5))
            self.pub_depth_info = self.create_publisher(
                CameraInfo, "depth/camera_info", **self._output_qos("depth/camera_info", 5))
        if r.publish_points:
            self.pub_points = self.create_publisher(PointCloud2, "depth/points",
                                                    **self._output_qos("depth/points", 5))
        if r.publish_path:
            self.pub_path = self.create_publisher(Path, "path", **self._output_qos("path", 1))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if r.publish_camera_tf:
            self.pub_tf_static = self.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        if self.lc is not None:
            self.pub_map_path = self.create_publisher(Path, "map_path", ros_qos.LATCHED_QOS)
            self.pub_loops = self.create_publisher(MarkerArray, "loop_closures",
                                                   ros_qos.LATCHED_QOS)
            if self.cfg.loop_closure.publish_tf and self.pub_tf is None:
                self.pub_tf = self.create_publisher(TFMessage, "/tf", TF_QOS)

    def create_inputs(self):
        r = self.cfg.ros
        image_qos, info_qos = ros_qos.image_qos(r), ros_qos.camera_info_qos(r)
        if r.use_compressed:
            self.sub_image = self.create_subscription(
                CompressedImage, "image/compressed", self._on_image,
                **self._input_qos("image/compressed", image_qos, "ros.image_qos_reliability"))
        else:
            self.sub_image = self.create_subscription(
                Image, "image", self._on_image,
                **self._input_qos("image", image_qos, "ros.image_qos_reliability"))
        self.sub_info = self.create_subscription(
            CameraInfo, "camera_info", self._on_info,
            **self._input_qos("camera_info", info_qos, "ros.camera_info_qos_reliability"))
        self.sub_initialpose = self.create_subscription(
            PoseWithCovarianceStamped, "initialpose", self._on_initialpose, INITIALPOSE_QOS)
        self.sub_wheel = self._subscribe_wheel_odom()

    def start_processing(self):
        """Static TF, the timers and the frame worker."""
        r = self.cfg.ros
        if self.pub_tf_static is not None:
            self._publish_static_tf()
        self.timers_vode = [self.create_timer(r.diagnostics_period_s, self._publish_diagnostics)]
        if self.pub_path is not None:
            # a long Path costs ~7 ms per 1000 poses to serialise: publish it from a timer
            self.timers_vode.append(self.create_timer(r.path_period_s, self.publish_path))
        if self.lc is not None:
            self._map_version = -1
            self.timers_vode.append(self.create_timer(r.path_period_s, self.publish_map))
        self.start_time = time.monotonic()
        self.no_frames_warning = ""
        self.running = True
        self.worker = threading.Thread(target=self._work, name="vode_worker", daemon=True)
        self.worker.start()

    def stop_processing(self) -> str:
        """Stop the frame worker and the timers (the odometry, path and map are kept); returns
        what the worker took to stop."""
        t = time.monotonic()
        self.running = False
        with self.mailbox_cv:
            self.mailbox = None
            self.mailbox_cv.notify_all()
        left = ""
        if self.worker is not None:
            self.worker.join(timeout=5.0)
            left = " (still in a frame, left)" if self.worker.is_alive() else ""
        for timer in getattr(self, "timers_vode", []):
            self.destroy_timer(timer)
        self.timers_vode = []
        return f"worker {time.monotonic() - t:.2f} s{left}"

    # -- set-up ----------------------------------------------------------------------------------
    def _load_models(self):
        try:
            self.vo = build_odometry(self.cfg)
        except VodeError as exc:
            self.model_error = str(exc)
            self.log.error(f"models not loaded, frames will be skipped: {exc}")
            return
        self.provider = self.vo.depth.model.provider
        self.scale = self.vo.scale
        self.tracking = "WAITING"
        errors = {**self.vo.depth.model.provider_errors,
                  **self.vo.pose_backend.model.provider_errors}
        preferred = self.cfg.models.providers[0] if self.cfg.models.providers else ""
        note = f" ({preferred} unavailable: {errors[preferred]})" if preferred in errors else ""
        self.log.info(f"ONNX Runtime provider in use: {self.provider}{note}; "
                      f"depth scale is {self.scale}")

    def _start_loop_closure(self):
        lcfg = self.cfg.loop_closure
        if not lcfg.enabled:
            return
        from vode_ros.loop_closure import LoopClosure
        try:
            self.lc = LoopClosure(lcfg)
        except VodeError as exc:
            self.log.error(f"loop closure disabled: {exc}")
            return
        self.log.info(f"loop closure on: vocabulary {len(self.lc.vocab)} words, map frame "
                      f"'{lcfg.map_frame}', keyframe map file {lcfg.map_file}")
        if lcfg.load_map_on_start:
            try:
                info = self.lc.load(lcfg.map_file)
                self.log.info(f"keyframe map loaded at start-up: {info['keyframes']} keyframes "
                              f"from {info['file']}; relocalising")
            except VodeError as exc:
                self.log.warn(f"no keyframe map loaded at start-up: {exc}")

    def _on_save_map(self, request, response):
        try:
            info = self.lc.save(self.cfg.loop_closure.map_file)
            response.success = True
            response.message = f"saved {info['keyframes']} keyframes, {info['loops']} loops " \
                               f"to {info['file']}"
        except (VodeError, OSError) as exc:
            response.success, response.message = False, f"map not saved: {exc}"
        self.log.info(response.message)
        return response

    def _on_load_map(self, request, response):
        try:
            info = self.lc.load(self.cfg.loop_closure.map_file)
            response.success = True
            response.message = f"loaded {info['keyframes']} keyframes from {info['file']}; " \
                               "map -> odom is identity until the first loop to the map"
        except VodeError as exc:
            response.success, response.message = False, f"map not loaded: {exc}"
        self.log.info(response.message)
        return response

    def _refuse_changes(self, params):
        names = {n for n, _, _ in self.cfg.parameters()}
        if any(p.name in names for p in params):
            return SetParametersResult(successful=False, reason="vode_node parameters are read "
                                       "at start-up; restart the node to change them")
        return SetParametersResult(successful=True)

    def _publish_static_tf(self):
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.cfg.ros.base_frame)
        from vode_ros.geometry import from_xyz_rpy
        T = from_xyz_rpy(self.cfg.camera.base_to_camera_xyz, self.cfg.camera.base_to_camera_rpy)
        msg = TFMessage(transforms=[conv.matrix_to_transform(T, header,
                                                             self.cfg.ros.camera_frame)])
        self.pub_tf_static.publish(msg)

    # -- inputs ----------------------------------------------------------------------------------
    def _subscribe_wheel_odom(self):
        """``pose.scale_source: wheel_odom``: nav_msgs/Odometry on ``wheel_odom`` (reliable, a
        deep queue: every sample counts); only the positions' travelled distance is used."""
        if self.vo is None or self.cfg.pose.scale_source != "wheel_odom":
            return None
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        return self.create_subscription(Odometry, "wheel_odom", self._on_wheel_odom, qos)

    def _on_wheel_odom(self, msg: Odometry):
        p = msg.pose.pose.position
        if not self.vo.add_wheel_odometry(conv.stamp_to_ns(msg.header.stamp), (p.x, p.y, p.z)):
            self._report("wheel_odom", "wheel odometry sample ignored: its stamp is not after "
                         "the previous one's, or its position is not finite")

    def _on_info(self, msg: CameraInfo):
        self.camera_info = msg

    def _on_image(self, msg):
        self.stats.received += 1
        self.stats.arrivals.append(time.monotonic())
        with self.mailbox_cv:
            if self.mailbox is not None:
                self.stats.dropped += 1
            self.mailbox = (msg, time.perf_counter())
            self.mailbox_cv.notify()

    def _on_reset(self, request, response):
        with self.lock:
            if self.vo is not None:
                self.vo.reset()
            self.path.clear()
            if self.lc is not None:
                self.lc.reset()
        response.success = self.vo is not None
        response.message = "odometry restarted at identity" if self.vo is not None else \
            f"no odometry to reset: {self.model_error}"
        self.log.info(response.message)
        return response

    def _on_initialpose(self, msg: PoseWithCovarianceStamped):
        self.set_pose(msg)

    def _on_set_pose(self, request, response):
        if request.map.data or request.map.info.width:
            self.log.warn("~/set_pose: the request's map is ignored (only initial_pose is used)")
        response.success = self.set_pose(request.initial_pose)
        return response

    def set_pose(self, msg: PoseWithCovarianceStamped) -> bool:
        """Move the odometry to the pose of ``msg`` (see vode_ros.ros.start_pose); False (and a
        log line) when it cannot be used."""
        if self.vo is None:
            self.log.error(f"pose not set: no odometry ({self.model_error})")
            return False
        try:
            T, cov = start_pose.pose_with_covariance_to_matrix(msg)
            map_to_odom = self.lc.map_to_odom() if self.lc is not None else None
            T_odom = start_pose.pose_in_odom(T, msg.header.frame_id, self.cfg.ros.odom_frame,
                                             self.cfg.loop_closure.map_frame, map_to_odom)
        except InputError as exc:
            self.log.error(f"pose not set: {exc}")
            return False
        with self.lock:
            start_pose.set_odometry_pose(self.vo, T_odom, cov)
            if self.pub_path is not None:
                header = Header(stamp=msg.header.stamp, frame_id=self.cfg.ros.odom_frame)
                self.path.append(conv.pose_stamped(T_odom, header))
                self.path_dirty = True
        x, y, z = T_odom[:3, 3]
        self.log.info(f"odometry pose set to x={x:.3f} y={y:.3f} z={z:.3f} in "
                      f"{self.cfg.ros.odom_frame} (from frame '{msg.header.frame_id}'); "
                      f"tracking continues")
        return True

    # -- processing ------------------------------------------------------------------------------
    def _work(self):
        while self.running:
            with self.mailbox_cv:
                while self.mailbox is None and self.running:
                    self.mailbox_cv.wait(timeout=0.2)
                if not self.running:
                    return
                msg, t_arrival = self.mailbox
                self.mailbox = None
            try:
                self.process_message(msg, t_arrival)
            except Exception as exc:  # noqa: BLE001 - the node must survive any one frame
                self._report("internal", f"frame skipped after an unexpected error: "
                             f"{type(exc).__name__}: {exc}")

    def process_message(self, msg, t_arrival: float | None = None) -> dict | None:
        """Convert, process and publish one image message; returns per-stage timings in ms
        (None when the frame was skipped). Used by the worker and by ``vode bench``."""
        t0 = time.perf_counter()
        t_arrival = t0 if t_arrival is None else t_arrival
        if self.vo is None:
            self._report("model", f"frame skipped: no model loaded ({self.model_error})")
            return None
        info = self.camera_info
        try:
            if isinstance(msg, CompressedImage):
                rgb = conv.compressed_to_rgb(msg)
            else:
                rgb = conv.image_to_rgb(msg, self.cfg.ros.use_cv_bridge)
            if info is None:
                raise InputError("camera_info", "no camera_info received yet on "
                                 f"{self.sub_info.topic_name}; expected sensor_msgs/CameraInfo "
                                 "with the image's intrinsics")
            camera = conv.camera_info_to_camera(info, rgb.shape[1], rgb.shape[0])
            frame = Frame(conv.stamp_to_ns(msg.header.stamp), rgb, camera)
            t1 = time.perf_counter()
            with self.lock:
                est = self.vo.process(frame)
        except InputError as exc:
            self._report(exc.kind, f"frame skipped: {exc}")
            return None
        t2 = time.perf_counter()
        if self.lc is not None:
            self.lc.add(est, rgb)                # a keyframe test and a queue: never waits
        t_lc = time.perf_counter()
        self.publish_estimate(est, msg.header.stamp, info, rgb)
        t3 = time.perf_counter()
        timings = {"decode": (t1 - t0) * 1e3, **est.timings_ms, "publish": (t3 - t_lc) * 1e3,
                   "total": (t3 - t_arrival) * 1e3}
        if self.lc is not None:
            timings["loop_closure_add"] = (t_lc - t2) * 1e3
        self.stats.processed += 1
        self.stats.latency_ms.append(timings["total"])
        for k, v in timings.items():
            self.stats.stage_ms[k].append(v)
        self.tracking, self.backend = est.tracking, est.backend
        self.scale_status = est.scale_status
        if est.tracking == INITIALIZING and est.reason:      # a restart, e.g. a new image size
            self.log.info(est.reason)
        if est.tracking == LOST:
            self._report("tracking", f"tracking lost, pose held: {est.reason}", warn=True)
            self.last_reason = est.reason
        return timings

    def publish_estimate(self, est, stamp, info: CameraInfo, rgb: np.ndarray | None = None):
        r = self.cfg.ros
        if not (is_finite_transform(est.pose) and np.all(np.isfinite(est.twist))
                and np.all(np.isfinite(est.pose_covariance))
                and np.all(np.isfinite(est.twist_covariance))):
            # The core never produces these; this guard keeps NaN off /odom and TF regardless.
            self._report("nan", "estimate is not finite; nothing published for this frame")
            return
        odom_header = Header(stamp=stamp, frame_id=r.odom_frame)
        if self.pub_odom is not None:
            self.pub_odom.publish(conv.estimate_to_odometry(est, odom_header, r.base_frame))
        if self.pub_tf is not None:
            transforms = [conv.matrix_to_transform(est.pose, odom_header, r.base_frame)] \
                if r.publish_tf else []
            if self.lc is not None and self.cfg.loop_closure.publish_tf:
                map_header = Header(stamp=stamp, frame_id=self.cfg.loop_closure.map_frame)
                transforms.append(conv.matrix_to_transform(self.lc.map_to_odom(), map_header,
                                                           r.odom_frame))
            self.pub_tf.publish(TFMessage(transforms=transforms))
        self._publish_depth(est, Header(stamp=stamp, frame_id=r.camera_frame), info, rgb)
        if self.pub_path is not None:
            with self.lock:
                self.path.append(conv.pose_stamped(est.pose, odom_header))
                self.path_dirty = True

    def _publish_depth(self, est, header: Header, info: CameraInfo,
                       rgb: np.ndarray | None) -> None:
        """depth/image, depth/confidence and depth/camera_info (the depth's own intrinsics) and
        depth/points, all with the image's stamp in the camera optical frame."""
        if est.depth is None:
            return
        camera = est.depth_camera or est.camera
        if self.pub_depth is not None:
            self.pub_depth.publish(conv.depth_to_image(est.depth, header))
            if est.confidence is not None:
                self.pub_confidence.publish(conv.confidence_to_image(est.confidence, header))
            self.pub_depth_info.publish(conv.camera_to_camera_info(camera, header, info))
        if self.pub_points is not None and rgb is not None:
            xyz, colour = depth_points(est.depth, camera, rgb, self.cfg.ros.points_stride)
            self.pub_points.publish(conv.points_to_cloud(xyz, colour, header))

    def publish_path(self):
        with self.lock:
            if not self.path_dirty or not self.path:
                return
            poses = list(self.path)
            self.path_dirty = False
        self.pub_path.publish(Path(header=poses[-1].header, poses=poses))

    def publish_map(self):
        """The corrected keyframe path and the loop markers, when the back-end has news."""
        lc = self.lc
        if lc is None or lc.version == self._map_version:
            return
        self._map_version = lc.version
        cam_to_base = self.vo.camera_to_base if self.vo is not None else np.eye(4)
        path, markers = lc_outputs.map_messages(lc, self.cfg.loop_closure.map_frame, cam_to_base,
                                                self.get_clock().now().to_msg())
        self.pub_map_path.publish(path)
        self.pub_loops.publish(markers)

    def _loop_closure_status(self) -> DiagnosticStatus:
        return lc_outputs.loop_closure_status(self.lc, self.get_name())

    def _report(self, kind: str, text: str, warn: bool = False):
        if kind != "tracking":
            self.stats.skipped += 1
            self.last_error = text
        if self.throttle.ready(kind):
            n = self.throttle.counts[kind]
            suffix = f" [{n} times so far]" if n > 1 else ""
            # one call site per severity: Jazzy's rclpy refuses a severity change at one site
            if warn:
                self.log.warn(text + suffix)
            else:
                self.log.error(text + suffix)

    # -- diagnostics -----------------------------------------------------------------------------
    def _publish_diagnostics(self):
        s = self.stats
        level, message = DiagnosticStatus.OK, "tracking"
        if self.vo is None:
            level, message = DiagnosticStatus.ERROR, f"no model loaded: {self.model_error}"
        elif self.tracking == LOST:
            level, message = DiagnosticStatus.WARN, f"tracking lost: {self.last_reason}"
        elif self.tracking == "WAITING":
            message = "waiting for frames"
        matched = self.sub_image.get_publisher_count()
        idle_s = time.monotonic() - (s.arrivals[-1] if s.arrivals else self.start_time)
        if matched > 0 and idle_s > self.cfg.ros.no_frames_warn_s:
            if self.throttle.ready("no_frames"):
                self.log.warn(f"{matched} publisher(s) matched on {self.sub_image.topic_name} but "
                              f"no frame for {idle_s:.1f} s: {NO_FRAMES_HINT}")
            if level == DiagnosticStatus.OK:
                level, message = DiagnosticStatus.WARN, f"no frames for {idle_s:.1f} s from " \
                                                        f"{matched} matched publisher(s)"
        values = {
            **s.values(),
            "provider": self.provider or "none", "tracking": self.tracking,
            "pose_backend": self.backend, "scale": self.scale,
            "matched_image_publishers": str(matched), "last_error": self.last_error,
            **scale_values(self.cfg.pose.scale_source, self.scale_status),
        }
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: visual odometry",
                                  message=message, hardware_id="vode_ros",
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        statuses = [status]
        if self.lc is not None:
            try:
                statuses.append(self._loop_closure_status())
            except Exception as exc:  # noqa: BLE001 - diagnostics must not end the node
                self._report("internal", f"loop-closure diagnostics failed: {exc}")
        self.pub_diag.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                              status=statuses))

    def shutdown(self) -> str:
        """Stop the worker and the back-end; returns what each step took (for the log: a node
        that does not exit promptly then says where it waited)."""
        steps = [self.stop_processing()]
        if self.lc is not None:
            t = time.monotonic()
            self.lc.stop(timeout=5.0)
            steps.append(f"loop closure {time.monotonic() - t:.2f} s")
        return ", ".join(steps)


def main(args=None, node_class=None):
    """Run ``node_class`` (``VodeNode``, or the managed ``VodeLifecycleNode``) until Ctrl-C,
    then stop it in order, saying what each step took."""
    rclpy.init(args=args)
    node = None
    try:
        node = (node_class or VodeNode)()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            t0 = time.monotonic()
            # (printed: /rosout's publisher is gone with the context after Ctrl-C)
            name = node.get_name()
            print(f"[INFO] [{name}]: shutting down", file=sys.stderr, flush=True)
            steps = node.shutdown()
            t = time.monotonic()
            node.destroy_node()
            print(f"[INFO] [{name}]: stopped in {time.monotonic() - t0:.2f} s ({steps}, "
                  f"node {time.monotonic() - t:.2f} s)", file=sys.stderr, flush=True)
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
