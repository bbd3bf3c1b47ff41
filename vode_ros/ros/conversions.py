"""Message conversion between ROS 2 messages and the core's numpy types (the values come from
``vode_ros.message_fields``, shared with the bags written without ROS)."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import (
    Point,
    Pose,
    PoseStamped,
    PoseWithCovariance,
    Quaternion,
    Transform,
    TransformStamped,
    Twist,
    TwistWithCovariance,
    Vector3,
)
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from vode_ros import message_fields as fields
from vode_ros.camera import Camera
from vode_ros.errors import InputError
from vode_ros.imaging import decode_compressed, raw_to_rgb

try:  # cv_bridge where a ROS install has it; PyPI has no working build
    from cv_bridge import CvBridge
    _BRIDGE = CvBridge()
except Exception:  # noqa: BLE001 - ImportError, or a broken binary build
    _BRIDGE = None


def stamp_to_ns(stamp: Time) -> int:
    return fields.stamp_to_ns(stamp)


def ns_to_stamp(ns: int) -> Time:
    sec, nanosec = fields.ns_to_sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


def image_to_rgb(msg: Image, use_cv_bridge: bool = True) -> np.ndarray:
    """sensor_msgs/Image to HxWx3 uint8 RGB (cv_bridge when available and asked for)."""
    if use_cv_bridge and _BRIDGE is not None and msg.encoding in ("rgb8", "bgr8", "rgba8",
                                                                   "bgra8", "mono8"):
        try:
            return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as exc:  # noqa: BLE001 - cv_bridge raises its own error types
            raise InputError("image", f"cv_bridge could not convert the image: {exc}") from None
    return raw_to_rgb(msg.data, msg.encoding, msg.width, msg.height, msg.step,
                      bool(msg.is_bigendian))


def compressed_to_rgb(msg) -> np.ndarray:
    return decode_compressed(msg.data, msg.format)


def camera_info_to_camera(msg: CameraInfo, width: int, height: int) -> Camera:
    """Intrinsics from CameraInfo's K (the rectified P when K is all zeros) for an image of
    ``width`` x ``height``: scaled when camera_info describes another resolution (binning)."""
    K = np.asarray(msg.k, dtype=float).reshape(3, 3)
    if K[0, 0] == 0 and msg.p[0] != 0:
        K = np.asarray(msg.p, dtype=float).reshape(3, 4)[:, :3]
    if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.all(np.isfinite(K)):
        raise InputError("camera", f"camera_info has focal lengths fx={K[0, 0]} fy={K[1, 1]}; "
                         "expected positive values in K (is the camera calibrated?)")
    if msg.width == 0 or msg.height == 0:
        return Camera.from_K(K, width, height).validate()
    return Camera.from_K(K, msg.width, msg.height).scaled(width, height).validate()


def rgb_to_image(rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    f = fields.image_fields(rgb, encoding)
    return Image(header=header, height=f.height, width=f.width, encoding=f.encoding,
                 is_bigendian=f.is_bigendian, step=f.step, data=f.data)


def depth_to_image(depth: np.ndarray, header: Header) -> Image:
    """32FC1 depth image (REP-118: metres, NaN invalid)."""
    f = fields.depth_image_fields(depth)
    msg = Image(header=header, height=f.height, width=f.width, encoding=f.encoding,
                is_bigendian=f.is_bigendian, step=f.step)
    msg.data = f.data
    return msg


def confidence_to_image(confidence: np.ndarray, header: Header) -> Image:
    """32FC1 confidence image (0..1) beside the depth image."""
    return depth_to_image(confidence, header)


def points_to_cloud(xyz: np.ndarray, rgb: np.ndarray, header: Header) -> PointCloud2:
    """An unorganised PointCloud2 of x y z rgb (float32 fields) in ``header``'s frame."""
    f = fields.point_cloud_fields(xyz, rgb)
    msg = PointCloud2(header=header, height=1, width=f.width, is_bigendian=False,
                      point_step=f.point_step, row_step=f.row_step, is_dense=True,
                      fields=[PointField(name=name, offset=offset, datatype=PointField.FLOAT32,
                                         count=1) for name, offset in f.fields])
    msg.data = f.data
    return msg


def camera_to_camera_info(camera: Camera, header: Header, template: CameraInfo | None = None
                          ) -> CameraInfo:
    """CameraInfo for ``camera`` (the input's own distortion kept when a template is given)."""
    f = fields.camera_info_fields(camera)
    info = CameraInfo(header=header, width=f.width, height=f.height)
    if template is not None and (template.width, template.height) == (camera.width,
                                                                       camera.height):
        info.distortion_model = template.distortion_model
        info.d = list(template.d)
        info.r = list(template.r)
        info.p = list(template.p)
    else:
        info.distortion_model = f.distortion_model
        info.d = f.d.tolist()
        info.r = f.r.tolist()
        info.p = f.p.tolist()
    info.k = f.k.tolist()
    return info


def _point(xyz) -> Point:
    return Point(x=xyz[0], y=xyz[1], z=xyz[2])


def _vector(xyz) -> Vector3:
    return Vector3(x=xyz[0], y=xyz[1], z=xyz[2])


def _quaternion(xyzw) -> Quaternion:
    return Quaternion(x=xyzw[0], y=xyzw[1], z=xyzw[2], w=xyzw[3])


def matrix_to_pose(T: np.ndarray) -> Pose:
    p = fields.pose_fields(T)
    return Pose(position=_point(p.position), orientation=_quaternion(p.orientation))


def matrix_to_transform(T: np.ndarray, header: Header, child: str) -> TransformStamped:
    p = fields.pose_fields(T)
    return TransformStamped(header=header, child_frame_id=child,
                            transform=Transform(translation=_vector(p.position),
                                                rotation=_quaternion(p.orientation)))


def estimate_to_odometry(est, header: Header, child: str) -> Odometry:
    o = fields.odometry_fields(est)
    return Odometry(
        header=header, child_frame_id=child,
        pose=PoseWithCovariance(pose=Pose(position=_point(o.pose.position),
                                          orientation=_quaternion(o.pose.orientation)),
                                covariance=o.pose_covariance.tolist()),
        twist=TwistWithCovariance(twist=Twist(linear=_vector(o.linear),
                                              angular=_vector(o.angular)),
                                  covariance=o.twist_covariance.tolist()))


def pose_stamped(T: np.ndarray, header: Header) -> PoseStamped:
    return PoseStamped(header=header, pose=matrix_to_pose(T))
