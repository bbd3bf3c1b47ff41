"""Message conversion between ROS 2 messages and the core's numpy types."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import (Point, Pose, PoseStamped, PoseWithCovariance, Quaternion,
                               Transform, TransformStamped, Twist, TwistWithCovariance, Vector3)
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from vode_ros.camera import Camera
from vode_ros.errors import InputError
from vode_ros.geometry import to_quaternion_xyzw
from vode_ros.imaging import decode_compressed, raw_to_rgb

try:  # cv_bridge where a ROS install has it; PyPI has no working build
    from cv_bridge import CvBridge
    _BRIDGE = CvBridge()
except Exception:  # noqa: BLE001 - ImportError, or a broken binary build
    _BRIDGE = None


def cv_bridge_available() -> bool:
    return _BRIDGE is not None


def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


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
    from vode_ros.imaging import rgb_to_raw
    data, step = rgb_to_raw(rgb, encoding)
    return Image(header=header, height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                 is_bigendian=0, step=step, data=data)


def depth_to_image(depth: np.ndarray, header: Header) -> Image:
    """32FC1 depth image (REP-118: metres, NaN invalid)."""
    d = np.ascontiguousarray(depth, dtype=np.float32)
    msg = Image(header=header, height=d.shape[0], width=d.shape[1], encoding="32FC1",
                is_bigendian=0, step=d.shape[1] * 4)
    msg.data = d.tobytes()
    return msg


def camera_to_camera_info(camera: Camera, header: Header, template: CameraInfo | None = None
                          ) -> CameraInfo:
    """CameraInfo for ``camera`` (the input's own distortion kept when a template is given)."""
    info = CameraInfo(header=header, width=camera.width, height=camera.height)
    if template is not None and (template.width, template.height) == (camera.width,
                                                                       camera.height):
        info.distortion_model = template.distortion_model
        info.d = list(template.d)
        info.r = list(template.r)
        info.p = list(template.p)
    else:
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [camera.fx, 0.0, camera.cx, 0.0, 0.0, camera.fy, camera.cy, 0.0,
                  0.0, 0.0, 1.0, 0.0]
    info.k = camera.K.reshape(-1).tolist()
    return info


def matrix_to_pose(T: np.ndarray) -> Pose:
    q = to_quaternion_xyzw(T)
    return Pose(position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                       w=float(q[3])))


def matrix_to_transform(T: np.ndarray, header: Header, child: str) -> TransformStamped:
    q = to_quaternion_xyzw(T)
    return TransformStamped(
        header=header, child_frame_id=child,
        transform=Transform(translation=Vector3(x=float(T[0, 3]), y=float(T[1, 3]),
                                                z=float(T[2, 3])),
                            rotation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                w=float(q[3]))))


def estimate_to_odometry(est, header: Header, child: str) -> Odometry:
    tw = est.twist
    return Odometry(
        header=header, child_frame_id=child,
        pose=PoseWithCovariance(pose=matrix_to_pose(est.pose),
                                covariance=np.asarray(est.pose_covariance, float)
                                .reshape(36).tolist()),
        twist=TwistWithCovariance(
            twist=Twist(linear=Vector3(x=float(tw[0]), y=float(tw[1]), z=float(tw[2])),
                        angular=Vector3(x=float(tw[3]), y=float(tw[4]), z=float(tw[5]))),
            covariance=np.asarray(est.twist_covariance, float).reshape(36).tolist()))


def pose_stamped(T: np.ndarray, header: Header) -> PoseStamped:
    return PoseStamped(header=header, pose=matrix_to_pose(T))
