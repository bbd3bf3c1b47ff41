"""ROS 2 bags written with ``rosbags`` (no ROS install, no rclpy), and read back.

Three producers use ``BagWriter``:

- ``vode bag from-dataset``: any sequence ``open_sequence`` reads becomes a camera bag
  (``dataset_to_bag``): ``/camera/image_raw`` (``sensor_msgs/Image`` rgb8) or, with
  ``compressed``, ``/camera/image_raw/compressed`` (``sensor_msgs/CompressedImage`` jpeg),
  ``/camera/camera_info`` and the ground truth as ``/tf`` ``world`` -> ``camera_gt`` (the
  frame's ``gt_pose``: camera optical frame to world). Header stamps are the dataset's stamps and
  so are the bag's receive (log) times;
- ``vode process --out-bag``: what vode_node would publish for the same frames
  (``OdometryBag``), with the node's topics, frames and message conventions (those of
  ``vode_ros.ros.conversions``, built here as rosbags dataclasses so no rclpy is needed);
- ``vode bag record`` (``vode_ros.ros.bag``): serialized messages straight from the graph.

Paths: ``OUT.mcap`` is one MCAP file, ``OUT.db3`` one SQLite3 file (rosbag2 metadata inside the
file in both cases), anything else a rosbag2 folder ``OUT/`` with ``metadata.yaml`` and
``OUT/OUT.mcap`` (or ``OUT.db3`` with ``storage="sqlite3"``). Every bag is rosbag2 format 9
with ``ros2msg`` schemas (MCAP) / message definitions (SQLite3) and RIHS01 type hashes, so
``ros2 bag info|play``, Foxglove and RViz open it, and so does ``open_sequence``.

Writes are atomic: the bag grows in a hidden ``.OUT.partial-<pid>-<token>/`` beside ``OUT`` and is
moved into place by ``commit()``; a failure (``abort()``, or an exception in a ``with`` block)
removes it, so a half-written bag never sits under the final name.
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from vode_ros.errors import VodeError

STORAGES = ("mcap", "sqlite3")
SUFFIX_STORAGE = {".mcap": "mcap", ".db3": "sqlite3"}
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF = "tf2_msgs/msg/TFMessage"
ODOMETRY = "nav_msgs/msg/Odometry"
PATH = "nav_msgs/msg/Path"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
CLOCK = "rosgraph_msgs/msg/Clock"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"
# Message types whose topics are sensor streams: offered with the sensor-data QoS profile.
SENSOR_TYPES = (IMAGE, COMPRESSED, CAMERA_INFO)
# The rosbags type stores to use, newest first (the venv's rclpy is Kilted; the definitions of
# the message types above are the same from Humble on).
STORE_PREFERENCE = ("ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE")


class BagError(VodeError):
    """A bag cannot be written, opened or read."""


# -- type store and QoS --------------------------------------------------------------------------
_STORE = None


def typestore():
    """The rosbags type store every bag of vode is written with (created once)."""
    global _STORE
    if _STORE is None:
        from rosbags.typesys import Stores, get_typestore
        name = next((n for n in STORE_PREFERENCE if n in Stores.__members__), "LATEST")
        _STORE = get_typestore(Stores[name])
    return _STORE


def qos_profile(kind: str):
    """A rosbags ``Qos`` for the bag's metadata (what ``ros2 bag play`` re-offers):
    ``sensor`` (best effort, volatile, depth 5: SensorDataQoS), ``reliable`` (depth 100) or
    ``latched`` (reliable, transient local, depth 1: /tf_static)."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)
    zero = QosTime(0, 0)
    rel, dur, depth = {
        "sensor": (QosReliability.BEST_EFFORT, QosDurability.VOLATILE, 5),
        "reliable": (QosReliability.RELIABLE, QosDurability.VOLATILE, 100),
        "latched": (QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, 1),
    }[kind]
    return Qos(QosHistory.KEEP_LAST, depth, rel, dur, zero, zero, QosLiveliness.AUTOMATIC, zero,
               False)


def default_qos_kind(topic: str, msgtype: str) -> str:
    if topic.rstrip("/").endswith("tf_static"):
        return "latched"
    return "sensor" if msgtype in SENSOR_TYPES else "reliable"


# -- paths ---------------------------------------------------------------------------------------
def resolve_output(path, storage: str | None = None) -> tuple[Path, str, bool]:
    """(final path, storage, single file?) for an output bag path."""
    p = Path(path).expanduser()
    if storage is not None and storage not in STORAGES:
        raise BagError(f"bag storage '{storage}' is unknown; expected one of "
                       f"{', '.join(STORAGES)}")
    by_suffix = SUFFIX_STORAGE.get(p.suffix.lower())
    if by_suffix is not None:
        if storage is not None and storage != by_suffix:
            want = ".mcap" if storage == "mcap" else ".db3"
            raise BagError(f"output {p} ends in {p.suffix} (a {by_suffix} file) but storage "
                           f"'{storage}' was asked for; name it OUT{want}, or give a folder "
                           "name (no suffix) for a rosbag2 folder")
        return p, by_suffix, True
    return p, storage or "mcap", False


class BagWriter:
    """A rosbag2 bag written atomically (see the module docstring for paths).

    ``write(topic, msgtype, msg, log_time_ns)`` takes a rosbags message dataclass;
    ``write_raw`` takes CDR bytes (as ``rclpy`` delivers them with ``raw=True``). A topic's
    connection is made on its first write (or by ``add_topic``) with the QoS profile recorded in
    the metadata: ``qos`` is a rosbags ``Qos``, a kind of ``qos_profile`` or None (by topic and
    type: ``default_qos_kind``). Thread-safe, but the storage is opened on the first write (or
    ``add_topic``/``commit``) and SQLite3 storage must then stay in that thread.
    """

    def __init__(self, path, storage: str | None = None, overwrite: bool = False):
        from rosbags.rosbag2 import StoragePlugin, Writer
        self.path, self.storage, self.single_file = resolve_output(path, storage)
        if self.path.exists() and not overwrite:
            raise BagError(f"output bag {self.path} exists already; remove it, choose another "
                           "name, or pass --overwrite")
        if not self.path.parent.is_dir():
            raise BagError(f"the folder of output bag {self.path} does not exist; create "
                           f"{self.path.parent} first")
        if self.path.exists() and self.path.is_dir() and not _looks_like_bag_folder(self.path):
            raise BagError(f"output {self.path} is a folder that is not a rosbag2 bag; refusing "
                           "to replace it")
        self.ts = typestore()
        stem = self.path.stem if self.single_file else self.path.name
        self._work = self.path.parent / \
            f".{self.path.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        self._overwrite = overwrite
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        try:
            self._work.mkdir()
            self._writer = Writer(self._work / stem, version=9, storage_plugin=plugin)
        except Exception as err:  # noqa: BLE001 - OSError, rosbags WriterError
            shutil.rmtree(self._work, ignore_errors=True)
            raise BagError(f"cannot create bag {self.path}: {type(err).__name__}: {err}") \
                from None
        self._opened = False
        self._conns: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.types: dict[str, str] = {}
        self._lock = threading.Lock()
        self.done = False

    # -- writing -----------------------------------------------------------------------------------
    def add_topic(self, topic: str, msgtype: str, qos=None):
        with self._lock:
            return self._connection(topic, msgtype, qos)

    def _connection(self, topic: str, msgtype: str, qos=None):
        conn = self._conns.get(topic)
        if conn is not None:
            if self.types[topic] != msgtype:
                raise BagError(f"topic {topic} is {self.types[topic]} in bag {self.path}; "
                               f"cannot also write {msgtype} on it")
            return conn
        if self.done:
            raise BagError(f"bag {self.path} is closed")
        self._open()
        if qos is None:
            qos = default_qos_kind(topic, msgtype)
        profiles = [qos_profile(qos) if isinstance(qos, str) else qos]
        if msgtype not in self.ts.types:
            raise BagError(f"message type {msgtype} is unknown to the rosbags type store; "
                           "cannot write topic " + topic)
        conn = self._writer.add_connection(topic, msgtype, typestore=self.ts,
                                           offered_qos_profiles=profiles)
        self._conns[topic] = conn
        self.counts[topic] = 0
        self.types[topic] = msgtype
        return conn

    def write(self, topic: str, msgtype: str, msg, log_time_ns: int, qos=None) -> None:
        self.write_raw(topic, msgtype, self.ts.serialize_cdr(msg, msgtype), log_time_ns, qos)

    def write_raw(self, topic: str, msgtype: str, data, log_time_ns: int, qos=None) -> None:
        with self._lock:
            conn = self._connection(topic, msgtype, qos)
            self._writer.write(conn, int(log_time_ns), data)
            self.counts[topic] += 1

    def _open(self) -> None:
        if not self._opened:
            try:
                self._writer.open()
            except Exception as err:  # noqa: BLE001
                raise BagError(f"cannot create bag {self.path}: {type(err).__name__}: {err}") \
                    from None
            self._opened = True

    # -- finishing ---------------------------------------------------------------------------------
    def commit(self) -> Path:
        """Close the bag and move it to its final path (replacing an old bag with
        ``overwrite``); returns that path."""
        with self._lock:
            if self.done:
                raise BagError(f"bag {self.path} was already closed")
            try:
                self._open()
                self.done = True
                self._writer.close()
                inner = self._work / (self.path.stem if self.single_file else self.path.name)
                if self.single_file:
                    src = inner / f"{inner.name}.{'mcap' if self.storage == 'mcap' else 'db3'}"
                    if self.path.is_dir():
                        raise BagError(f"{self.path} is a folder; cannot replace it by a file")
                    os.replace(src, self.path)
                else:
                    if self.path.exists():
                        old = self._work / "replaced"
                        os.replace(self.path, old)
                    os.replace(inner, self.path)
            except BagError:
                shutil.rmtree(self._work, ignore_errors=True)
                raise
            except Exception as err:  # noqa: BLE001
                shutil.rmtree(self._work, ignore_errors=True)
                raise BagError(f"could not finish bag {self.path}: {type(err).__name__}: "
                               f"{err}") from None
            shutil.rmtree(self._work, ignore_errors=True)
            return self.path

    def abort(self) -> None:
        """Drop the partial bag; the final path is left as it was."""
        with self._lock:
            if self.done:
                return
            self.done = True
            try:
                if self._opened:
                    self._writer.abort()
            except Exception:  # noqa: BLE001 - the partial folder goes anyway
                pass
            shutil.rmtree(self._work, ignore_errors=True)

    def summary(self) -> dict:
        return {"path": str(self.path), "storage": self.storage,
                "topics": {t: {"type": self.types[t], "messages": n}
                           for t, n in sorted(self.counts.items())}}

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.abort()
        elif not self.done:
            self.commit()
        return False


def _looks_like_bag_folder(path: Path) -> bool:
    return (path / "metadata.yaml").is_file() or \
        any(p.suffix in (".mcap", ".db3") for p in path.iterdir())


# -- message builders (the conventions of vode_ros.ros.conversions) ------------------------------
class Messages:
    """rosbags message dataclasses for vode's topics (no rclpy)."""

    def __init__(self, ts=None):
        self.ts = ts or typestore()
        self.T = self.ts.types

    def time(self, ns: int):
        ns = int(ns)
        return self.T["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000,
                                                     nanosec=ns % 1_000_000_000)

    def header(self, stamp_ns: int, frame_id: str):
        return self.T["std_msgs/msg/Header"](stamp=self.time(stamp_ns), frame_id=frame_id)

    def image(self, rgb: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "rgb8"):
        from vode_ros.imaging import rgb_to_raw
        data, step = rgb_to_raw(rgb, encoding)
        return self.T[IMAGE](header=self.header(stamp_ns, frame_id), height=rgb.shape[0],
                             width=rgb.shape[1], encoding=encoding, is_bigendian=0, step=step,
                             data=np.frombuffer(data, np.uint8))

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
        d = np.ascontiguousarray(depth, dtype=np.float32)
        return self.T[IMAGE](header=self.header(stamp_ns, frame_id), height=d.shape[0],
                             width=d.shape[1], encoding="32FC1", is_bigendian=0,
                             step=d.shape[1] * 4, data=d.view(np.uint8).reshape(-1))

    def camera_info(self, camera, stamp_ns: int, frame_id: str):
        """CameraInfo of an undistorted pinhole ``camera`` (plumb_bob, zero distortion)."""
        K = camera.K
        roi = self.T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0,
                                                         width=0, do_rectify=False)
        return self.T[CAMERA_INFO](
            header=self.header(stamp_ns, frame_id), height=int(camera.height),
            width=int(camera.width), distortion_model="plumb_bob", d=np.zeros(5),
            k=K.reshape(-1).astype(float), r=np.eye(3).reshape(-1),
            p=np.hstack([K, np.zeros((3, 1))]).reshape(-1).astype(float), binning_x=0,
            binning_y=0, roi=roi)

    def _xyz_quat(self, T: np.ndarray):
        from vode_ros.geometry import to_quaternion_xyzw
        q = to_quaternion_xyzw(T)
        g = "geometry_msgs/msg/"
        return (float(T[0, 3]), float(T[1, 3]), float(T[2, 3])), \
            self.T[g + "Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))

    def pose(self, T: np.ndarray):
        (x, y, z), q = self._xyz_quat(T)
        g = "geometry_msgs/msg/"
        return self.T[g + "Pose"](position=self.T[g + "Point"](x=x, y=y, z=z), orientation=q)

    def transform(self, T: np.ndarray, stamp_ns: int, parent: str, child: str):
        (x, y, z), q = self._xyz_quat(T)
        g = "geometry_msgs/msg/"
        return self.T[g + "TransformStamped"](
            header=self.header(stamp_ns, parent), child_frame_id=child,
            transform=self.T[g + "Transform"](translation=self.T[g + "Vector3"](x=x, y=y, z=z),
                                              rotation=q))

    def tf(self, transforms: list):
        return self.T[TF](transforms=list(transforms))

    def odometry(self, est, stamp_ns: int, odom_frame: str, base_frame: str):
        g = "geometry_msgs/msg/"
        V = self.T[g + "Vector3"]
        tw = np.asarray(est.twist, float)
        return self.T[ODOMETRY](
            header=self.header(stamp_ns, odom_frame), child_frame_id=base_frame,
            pose=self.T[g + "PoseWithCovariance"](
                pose=self.pose(est.pose),
                covariance=np.asarray(est.pose_covariance, float).reshape(36)),
            twist=self.T[g + "TwistWithCovariance"](
                twist=self.T[g + "Twist"](linear=V(x=tw[0], y=tw[1], z=tw[2]),
                                          angular=V(x=tw[3], y=tw[4], z=tw[5])),
                covariance=np.asarray(est.twist_covariance, float).reshape(36)))

    def pose_stamped(self, T: np.ndarray, stamp_ns: int, frame_id: str):
        return self.T[POSE_STAMPED](header=self.header(stamp_ns, frame_id), pose=self.pose(T))

    def path(self, poses: list, stamp_ns: int, frame_id: str):
        return self.T[PATH](header=self.header(stamp_ns, frame_id), poses=list(poses))

    def clock(self, stamp_ns: int):
        return self.T[CLOCK](clock=self.time(stamp_ns))

    def diagnostics(self, stamp_ns: int, name: str, level: int, message: str, values: dict,
                    hardware_id: str = "vode_ros"):
        d = "diagnostic_msgs/msg/"
        status = self.T[d + "DiagnosticStatus"](
            level=int(level), name=name, message=message, hardware_id=hardware_id,
            values=[self.T[d + "KeyValue"](key=str(k), value=str(v)) for k, v in values.items()])
        return self.T[DIAGNOSTICS](header=self.header(stamp_ns, ""), status=[status])


# -- a dataset as a camera bag -------------------------------------------------------------------
def dataset_to_bag(input_path, out, frames: str | None = None, storage: str | None = None,
                   compressed: bool = False, overwrite: bool = False,
                   image_topic: str = "/camera/image_raw",
                   info_topic: str = "/camera/camera_info", frame_id: str = "camera",
                   gt_parent: str = "world", gt_child: str = "camera_gt",
                   jpeg_quality: int = 95, quiet: bool = False) -> dict:
    """Write a sequence (any layout ``open_sequence`` reads) as a camera bag; see the module
    docstring for its topics. Returns a summary (path, frames, topics and counts)."""
    from vode_ros.datasets import open_sequence
    seq = open_sequence(input_path, frames=frames)
    if compressed:
        image_topic = image_topic.rstrip("/") + "/compressed"
    m = Messages()
    bar = _progress(len(seq), quiet, f"vode bag from-dataset {seq.name}")
    n_gt = 0
    with BagWriter(out, storage, overwrite) as bag:
        # connections in a fixed order: camera_info, image, tf
        bag.add_topic(info_topic, CAMERA_INFO)
        bag.add_topic(image_topic, COMPRESSED if compressed else IMAGE)
        if seq.has_ground_truth:
            bag.add_topic("/tf", TF)
        try:
            for f in seq:
                t = int(f.stamp_ns)
                # camera_info first: a subscriber has the intrinsics when the image comes
                bag.write(info_topic, CAMERA_INFO, m.camera_info(f.camera, t, frame_id), t)
                if compressed:
                    bag.write(image_topic, COMPRESSED,
                              m.compressed(f.image, t, frame_id, jpeg_quality), t)
                else:
                    bag.write(image_topic, IMAGE, m.image(f.image, t, frame_id), t)
                if f.gt_pose is not None and np.all(np.isfinite(f.gt_pose)):
                    bag.write("/tf", TF, m.tf([m.transform(f.gt_pose, t, gt_parent, gt_child)]),
                              t)
                    n_gt += 1
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    out_info = bag.summary()
    out_info.update({"input": str(input_path), "layout": seq.layout, "name": seq.name,
                     "frames": len(seq), "ground_truth_poses": n_gt,
                     "camera": {k: getattr(seq.camera, k) for k in
                                ("fx", "fy", "cx", "cy", "width", "height")}})
    return out_info


def _progress(total: int, quiet: bool, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="frame", disable=quiet or not sys.stderr.isatty(),
                file=sys.stderr, dynamic_ncols=True)


# -- the pipeline's outputs as the node publishes them -------------------------------------------
class OdometryBag:
    """What vode_node publishes for each ``Estimate``, written into a bag (``vode process
    --out-bag``): ``/odom`` (odom -> base_link), ``/tf`` (the same), ``/tf_static`` (base_link ->
    camera_optical_frame, once, latched), ``/depth/image`` + ``/depth/camera_info`` (every
    ``depth_every``-th frame; 0: none), ``/path`` (like the node: every ``ros.path_period_s`` of
    stream time, stamped with its newest pose, at most ``ros.path_max_poses`` poses; and after the
    last frame), and one ``/diagnostics`` summary at the end. Frame names and the ``ros.publish_*`` switches come from the configuration, as in the
    node. Log times are the frames' stamps."""

    def __init__(self, path, cfg, *, storage: str | None = None, depth_every: int = 1,
                 overwrite: bool = True):
        from collections import deque

        from vode_ros.geometry import from_xyz_rpy
        self.cfg = cfg
        self.r = cfg.ros
        self.bag = BagWriter(path, storage, overwrite=overwrite)
        self.m = Messages(self.bag.ts)
        self.depth_every = max(0, int(depth_every))
        self.path_period_ns = int(float(getattr(cfg.ros, "path_period_s", 0.5)) * 1e9)
        self.base_to_camera = from_xyz_rpy(cfg.camera.base_to_camera_xyz,
                                           cfg.camera.base_to_camera_rpy)
        self.poses = deque(maxlen=self.r.path_max_poses)
        self.frames = 0
        self.last_stamp = None
        self.path_written_at = -1
        self.path_stamp = None
        r = self.r
        if r.publish_camera_tf:
            self.bag.add_topic("/tf_static", TF, "latched")
        if r.publish_odom:
            self.bag.add_topic("/odom", ODOMETRY)
        if r.publish_tf:
            self.bag.add_topic("/tf", TF)
        if r.publish_depth and self.depth_every:
            self.bag.add_topic("/depth/image", IMAGE, "reliable")
            self.bag.add_topic("/depth/camera_info", CAMERA_INFO, "reliable")
        if r.publish_path:
            self.bag.add_topic("/path", PATH)
        self.bag.add_topic("/diagnostics", DIAGNOSTICS)

    def add(self, est, position: int | None = None) -> None:
        """Write one estimate; ``position``: the frame's position in the run (depth cadence)."""
        r, m, t = self.r, self.m, int(est.stamp_ns)
        position = self.frames if position is None else position
        if self.frames == 0 and r.publish_camera_tf:
            self.bag.write("/tf_static", TF, m.tf([m.transform(self.base_to_camera, t,
                                                               r.base_frame, r.camera_frame)]), t)
        if r.publish_odom:
            self.bag.write("/odom", ODOMETRY, m.odometry(est, t, r.odom_frame, r.base_frame), t)
        if r.publish_tf:
            self.bag.write("/tf", TF, m.tf([m.transform(est.pose, t, r.odom_frame,
                                                        r.base_frame)]), t)
        if r.publish_depth and self.depth_every and est.depth is not None and \
                position % self.depth_every == 0:
            self.bag.write("/depth/image", IMAGE, m.depth(est.depth, t, r.camera_frame), t)
            self.bag.write("/depth/camera_info", CAMERA_INFO,
                           m.camera_info(est.camera, t, r.camera_frame), t)
        self.poses.append(m.pose_stamped(est.pose, t, r.odom_frame))
        self.frames += 1
        self.last_stamp = t
        if r.publish_path and (self.path_stamp is None or
                               t - self.path_stamp >= self.path_period_ns):
            self._write_path()

    def _write_path(self) -> None:
        if self.last_stamp is None or self.path_written_at == self.frames:
            return
        self.bag.write("/path", PATH, self.m.path(list(self.poses), self.last_stamp,
                                                  self.r.odom_frame), self.last_stamp)
        self.path_written_at = self.frames
        self.path_stamp = self.last_stamp

    def commit(self, diagnostics: dict | None = None) -> dict:
        """Write the final path and diagnostics summary, move the bag into place; returns the
        bag's summary."""
        if self.r.publish_path:
            self._write_path()
        if self.last_stamp is not None:
            values = {"frames_processed": self.frames, **(diagnostics or {})}
            self.bag.write("/diagnostics", DIAGNOSTICS, self.m.diagnostics(
                self.last_stamp, "vode process: visual odometry", 0, "offline run", values),
                self.last_stamp)
        self.bag.commit()
        return self.bag.summary()

    def abort(self) -> None:
        self.bag.abort()

    def __enter__(self) -> "OdometryBag":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.bag.done:
            self.abort()        # commit() is explicit; anything else leaves no bag
        return False


# -- reading -------------------------------------------------------------------------------------
def _target(path) -> Path:
    from vode_ros.datasets.rosbag import bag_target
    p = Path(path).expanduser()
    if not p.exists():
        raise BagError(f"bag {p} does not exist; expected a .mcap or .db3 file or a rosbag2 "
                       "folder with metadata.yaml")
    target = bag_target(p)
    if target is None:
        raise BagError(f"{p} is not a ROS 2 bag; expected a .mcap or .db3 file or a rosbag2 "
                       "folder with metadata.yaml")
    return target


def read_error(target: Path, err: Exception) -> BagError:
    """A clear error for a bag rosbags cannot read (truncated, garbage, wrong metadata)."""
    hint = ""
    if target.suffix == ".mcap" or (target.is_dir() and any(target.glob("*.mcap"))):
        hint = ("; an MCAP file cut short (recording killed) lacks its summary: recover it with "
                "`mcap recover in.mcap -o fixed.mcap` (the mcap CLI)")
    elif target.suffix == ".db3" or (target.is_dir() and any(target.glob("*.db3"))):
        hint = ("; a .db3 folder without a valid metadata.yaml can be repaired with "
                "`ros2 bag reindex <folder>`")
    return BagError(f"could not read ROS 2 bag {target}: {type(err).__name__}: {err}. Expected "
                    "a complete rosbag2 bag (a .mcap/.db3 file, or a folder with metadata.yaml "
                    f"and its files){hint}")


@contextmanager
def open_reader(path):
    """A rosbags ``Reader`` opened on ``path``; unreadable bags raise ``BagError``."""
    from rosbags.rosbag2 import Reader
    target = _target(path)
    try:
        reader = Reader(target)
        reader.open()
    except Exception as err:  # noqa: BLE001 - rosbags raises many kinds for broken bags
        raise read_error(target, err) from None
    try:
        yield reader
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001
            pass


def read_messages(path, topics: Iterable[str] | None = None
                  ) -> Iterator[tuple[str, str, int, object]]:
    """(topic, msgtype, log_time_ns, message) of ``topics`` (all when None), in bag order."""
    ts = typestore()
    with open_reader(path) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in set(topics)]
        try:
            for conn, t, raw in reader.messages(conns):
                yield conn.topic, conn.msgtype, t, ts.deserialize_cdr(raw, conn.msgtype)
        except BagError:
            raise
        except Exception as err:  # noqa: BLE001
            raise read_error(_target(path), err) from None


def bag_info(path) -> dict:
    """Topics (type, message count, offered QoS), duration and start of a bag."""
    with open_reader(path) as reader:
        topics: dict[str, dict] = {}
        for c in reader.connections:
            entry = topics.setdefault(c.topic, {"type": c.msgtype, "messages": 0})
            entry["messages"] += c.msgcount
        return {"path": str(Path(path)), "storage": _storage_of(_target(path)),
                "messages": int(reader.message_count), "start_ns": int(reader.start_time)
                if reader.message_count else None,
                "duration_s": (reader.duration / 1e9) if reader.message_count else 0.0,
                "topics": dict(sorted(topics.items()))}


def _storage_of(target: Path) -> str:
    files = [target] if target.is_file() else list(target.iterdir())
    suffixes = {f.suffix.lower() for f in files}
    return "mcap" if ".mcap" in suffixes else "sqlite3" if ".db3" in suffixes else "unknown"


def _matrix(position, orientation) -> np.ndarray:
    from vode_ros.geometry import from_quaternion_xyzw
    return from_quaternion_xyzw([position.x, position.y, position.z],
                                [orientation.x, orientation.y, orientation.z, orientation.w])


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def read_odometry(path, topic: str = "/odom") -> tuple[np.ndarray, np.ndarray, str, str]:
    """(header stamps ns (N,), poses (N, 4, 4), frame_id, child_frame_id) of the
    ``nav_msgs/Odometry`` messages on ``topic``."""
    stamps, poses, frame, child = [], [], "", ""
    for _topic, msgtype, _t, msg in read_messages(path, [topic]):
        if msgtype != ODOMETRY:
            raise BagError(f"topic {topic} of bag {path} is {msgtype}; expected {ODOMETRY}")
        stamps.append(_stamp_ns(msg.header))
        poses.append(_matrix(msg.pose.pose.position, msg.pose.pose.orientation))
        frame, child = msg.header.frame_id, msg.child_frame_id
    return (np.asarray(stamps, np.int64), np.asarray(poses).reshape(-1, 4, 4), frame, child)


def read_static_transform(path, parent: str, child: str) -> np.ndarray | None:
    """T_parent_child from the bag's /tf_static, or None."""
    for _topic, _type, _t, msg in read_messages(path, ["/tf_static"]):
        for tr in msg.transforms:
            if tr.header.frame_id.lstrip("/") == parent and tr.child_frame_id.lstrip("/") == \
                    child:
                return _matrix(tr.transform.translation, tr.transform.rotation)
    return None


@contextmanager
def odometry_bag(path, cfg, depth_every: int = 1, **kwargs):
    """``OdometryBag`` on ``path`` as a context (None when ``path`` is None): the runner's
    ``--out-bag``. Left without ``commit()``, the bag is dropped."""
    if not path:
        yield None
        return
    with OdometryBag(path, cfg, depth_every=depth_every, **kwargs) as bag:
        yield bag
