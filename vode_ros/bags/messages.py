"""rosbags messages of vode's topics, with the node's conventions and values.

``Messages`` builds the rosbags dataclasses that ``vode_ros.ros.conversions`` builds as rclpy
messages; both take their values from ``vode_ros.message_fields``, so a bag written offline holds
the numbers the node would publish.
"""
from __future__ import annotations

import numpy as np

from vode_ros import message_fields as fields
from vode_ros.bags.paths import BagError
from vode_ros.bags.typestore import (
    CAMERA_INFO,
    CLOCK,
    COMPRESSED,
    DIAGNOSTICS,
    IMAGE,
    ODOMETRY,
    PATH,
    POSE_STAMPED,
    TF,
    typestore,
)

GEOMETRY = "geometry_msgs/msg/"


class Messages:
    """rosbags message dataclasses for vode's topics (no rclpy)."""

    def __init__(self, ts=None):
        self.ts = ts or typestore()
        self.T = self.ts.types

    # -- stamps and headers ----------------------------------------------------------------------
    def time(self, ns: int):
        sec, nanosec = fields.ns_to_sec_nanosec(ns)
        return self.T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)

    def header(self, stamp_ns: int, frame_id: str):
        return self.T["std_msgs/msg/Header"](stamp=self.time(stamp_ns), frame_id=frame_id)

    # -- images ----------------------------------------------------------------------------------
    def _image(self, f: fields.ImageFields, stamp_ns: int, frame_id: str):
        return self.T[IMAGE](header=self.header(stamp_ns, frame_id), height=f.height,
                             width=f.width, encoding=f.encoding, is_bigendian=f.is_bigendian,
                             step=f.step, data=np.frombuffer(f.data, np.uint8))

    def image(self, rgb: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8"):
        return self._image(fields.image_fields(rgb, encoding), stamp_ns, frame_id)

    def compressed(self, rgb: np.ndarray, stamp_ns: int, frame_id: str, quality: int = 95):
        """JPEG, as image_transport's compressed plugin publishes it."""
        import cv2
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
        if not ok:
            raise BagError(f"JPEG encoding failed for an image of shape {rgb.shape}")
        return self.T[COMPRESSED](header=self.header(stamp_ns, frame_id),
                                  format="rgb8; jpeg compressed bgr8",
                                  data=np.frombuffer(buf.tobytes(), np.uint8))

    def depth(self, depth: np.ndarray, stamp_ns: int, frame_id: str):
        """32FC1 depth (REP-118: metres, NaN invalid)."""
        return self._image(fields.depth_image_fields(depth), stamp_ns, frame_id)

    def camera_info(self, camera, stamp_ns: int, frame_id: str):
        """CameraInfo of an undistorted pinhole ``camera`` (plumb_bob, zero distortion)."""
        f = fields.camera_info_fields(camera)
        roi = self.T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                         width=0, do_rectify=False)
        return self.T[CAMERA_INFO](
            header=self.header(stamp_ns, frame_id), height=f.height, width=f.width,
            distortion_model=f.distortion_model, d=f.d, k=f.k, r=f.r, p=f.p, binning_x=0,
            binning_y=0, roi=roi)

    # -- poses -----------------------------------------------------------------------------------
    def _vector(self, xyz):
        return self.T[GEOMETRY + "Vector3"](x=xyz[0], y=xyz[1], z=xyz[2])

    def _quaternion(self, xyzw):
        return self.T[GEOMETRY + "Quaternion"](x=xyzw[0], y=xyzw[1], z=xyzw[2], w=xyzw[3])

    def _pose(self, p: fields.PoseFields):
        x, y, z = p.position
        return self.T[GEOMETRY + "Pose"](position=self.T[GEOMETRY + "Point"](x=x, y=y, z=z),
                                         orientation=self._quaternion(p.orientation))

    def pose(self, T: np.ndarray):
        return self._pose(fields.pose_fields(T))

    def transform(self, T: np.ndarray, stamp_ns: int, parent: str, child: str):
        p = fields.pose_fields(T)
        return self.T[GEOMETRY + "TransformStamped"](
            header=self.header(stamp_ns, parent), child_frame_id=child,
            transform=self.T[GEOMETRY + "Transform"](translation=self._vector(p.position),
                                                     rotation=self._quaternion(p.orientation)))

    def tf(self, transforms: list):
        return self.T[TF](transforms=list(transforms))

    def odometry(self, est, stamp_ns: int, odom_frame: str, base_frame: str):
        o = fields.odometry_fields(est)
        return self.T[ODOMETRY](
            header=self.header(stamp_ns, odom_frame), child_frame_id=base_frame,
            pose=self.T[GEOMETRY + "PoseWithCovariance"](pose=self._pose(o.pose),
                                                          covariance=o.pose_covariance),
            twist=self.T[GEOMETRY + "TwistWithCovariance"](
                twist=self.T[GEOMETRY + "Twist"](linear=self._vector(o.linear),
                                                 angular=self._vector(o.angular)),
                covariance=o.twist_covariance))

    def pose_stamped(self, T: np.ndarray, stamp_ns: int, frame_id: str):
        return self.T[POSE_STAMPED](header=self.header(stamp_ns, frame_id), pose=self.pose(T))

    def path(self, poses: list, stamp_ns: int, frame_id: str):
        return self.T[PATH](header=self.header(stamp_ns, frame_id), poses=list(poses))

    # -- clock and diagnostics -------------------------------------------------------------------
    def clock(self, stamp_ns: int):
        return self.T[CLOCK](clock=self.time(stamp_ns))

    def diagnostics(self, stamp_ns: int, name: str, level: int, message: str, values: dict,
                    hardware_id: str = "vode_ros"):
        d = "diagnostic_msgs/msg/"
        status = self.T[d + "DiagnosticStatus"](
            level=int(level), name=name, message=message, hardware_id=hardware_id,
            values=[self.T[d + "KeyValue"](key=str(k), value=str(v)) for k, v in values.items()])
        return self.T[DIAGNOSTICS](header=self.header(stamp_ns, ""), status=[status])
