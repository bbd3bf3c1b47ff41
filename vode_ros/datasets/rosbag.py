"""ROS 2 bags (rosbag2 folders with metadata.yaml, or single .mcap / .db3 files) via ``rosbags``.

Images: ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16, ...) or
``sensor_msgs/CompressedImage``. The image topic is the only one, or the one passed as
``image_topic``; when several exist, topics whose first message is not a colour/grey image
(depth, 32FC1, compressedDepth) and ``.../compressed`` twins of a raw topic are set aside, and a
remaining ambiguity is an error that lists the topics. Frames are in bag order; their stamps are
``header.stamp`` (the receive time when the stamp is zero).

Camera: the first ``sensor_msgs/CameraInfo`` on ``<image namespace>/camera_info`` (or the only
CameraInfo topic): K and, for a distorted model (plumb_bob, rational_polynomial, equidistant),
undistortion to OpenCV's optimal new camera (alpha = 0). For an ``image_rect*`` topic the
rectified projection P is used as is. Without CameraInfo, a sidecar file beside the bag
(``<bag>.intrinsics.txt``, ``camera.yaml``, ``camera.txt``) is read.

Ground truth (optional): ``/tf`` (+ ``/tf_static``): the pose of the image's ``frame_id`` in the
root of its TF tree when that frame is in the tree, else of ``gt_frame``, else of the only moving
leaf frame; or a ``geometry_msgs/PoseStamped``, ``PoseWithCovarianceStamped`` or
``nav_msgs/Odometry`` topic (``gt_topic``, or the only one when /tf has no moving frame). Poses
are interpolated to image stamps (nearest sample within 100 ms). Pass ``gt_topic=""`` to read
none (e.g. a bag that holds vode's own /odom output).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from vode_ros.bags.paths import bag_target
from vode_ros.bags.reader import header_of
from vode_ros.bags.tf import TfTree
from vode_ros.bags.typestore import (
    CAMERA_INFO,
    COMPRESSED,
    IMAGE,
    ODOMETRY,
    POSE_STAMPED,
    POSE_WITH_COVARIANCE_STAMPED,
    TF,
    typestore_for_distro,
)
from vode_ros.datasets.base import (
    INTRINSICS_FORMATS,
    DatasetError,
    Intrinsics,
    Sequence,
    camera_and_undistorter,
    find_intrinsics_file,
    poses_at,
    read_intrinsics,
)
from vode_ros.errors import InputError
from vode_ros.message_fields import header_stamp_ns, pose_matrix

POSE_TYPES = (POSE_STAMPED, POSE_WITH_COVARIANCE_STAMPED, ODOMETRY)
GT_MAX_DT_NS = 100_000_000


def looks_like(path: Path) -> bool:
    return bag_target(path) is not None


class RosbagSequence(Sequence):
    layout = "rosbag"

    def __init__(self, path: Path, frames=None, image_topic: str | None = None,
                 gt_frame: str | None = None, gt_topic: str | None = None):
        path = Path(path)
        target = bag_target(path)
        if target is None:
            raise DatasetError(f"{path} is not a ROS 2 bag; expected a rosbag2 folder with "
                               "metadata.yaml, or a .mcap / .db3 file", "layout")
        self._target = target
        self._where = target              # what errors name: the bag file until it is opened
        self.gt_source = "none"
        try:
            with self._reader() as reader:
                self._ts = typestore_for_distro(reader.ros_distro)
                self._scan(reader, path, image_topic, gt_frame, gt_topic)
        except (DatasetError, InputError):
            raise
        except Exception as err:  # noqa: BLE001 - rosbags raises many kinds for broken bags
            raise self._bag_error(err) from None
        super().__init__(path, path.stem if path.is_file() else path.name, self._camera,
                         self._stamps, frames)
        self._where = self.path

    # -- opening ---------------------------------------------------------------------------------
    def _bag_error(self, err: Exception) -> DatasetError:
        files = [self._target] if self._target.is_file() else list(self._target.iterdir())
        hint = []
        if any(p.suffix == ".mcap" for p in files):
            hint.append("an MCAP file cut short (recording killed) lacks its summary: recover "
                        "it with `mcap recover in.mcap -o fixed.mcap` (the mcap CLI)")
        if any(p.suffix == ".db3" for p in files):
            hint.append("a .db3 folder without a valid metadata.yaml can be repaired with "
                        "`ros2 bag reindex <folder>`; a malformed database cannot")
        return DatasetError(f"could not read ROS 2 bag {self._target}: {type(err).__name__}: "
                            f"{err}. Expected a complete rosbag2 bag (a folder with "
                            "metadata.yaml and its .db3/.mcap files, or one .mcap/.db3 file)"
                            + ("; " + "; ".join(hint) if hint else "") + ".", "bag")

    @contextmanager
    def _reader(self):
        from rosbags.rosbag2 import Reader
        reader = Reader(self._target)
        reader.open()
        try:
            yield reader
        finally:
            reader.close()

    def _scan(self, reader, path: Path, image_topic, gt_frame, gt_topic) -> None:
        conns = reader.connections
        by_topic: dict[str, list] = {}
        for c in conns:
            by_topic.setdefault(c.topic, []).append(c)
        listing = ", ".join(f"{t} ({cs[0].msgtype}, {sum(c.msgcount for c in cs)} msgs)"
                            for t, cs in sorted(by_topic.items())) or "no topics"
        topic = self._pick_image_topic(reader, by_topic, image_topic, listing)
        self.image_topic = topic
        self._img_conns = by_topic[topic]
        self._img_type = self._img_conns[0].msgtype

        tf_conns = [c for c in conns if c.msgtype == TF]
        pose_topics = {t: cs for t, cs in by_topic.items() if cs[0].msgtype in POSE_TYPES}
        use_gt = gt_topic is None or bool(gt_topic)
        if gt_topic and gt_topic not in by_topic:
            raise DatasetError(f"gt_topic '{gt_topic}' is not in bag {path}; topics: {listing}",
                               "topic")
        if gt_topic and gt_topic in pose_topics:
            gt_conns = pose_topics[gt_topic]
            tf_conns_used: list = []
        elif gt_topic and by_topic[gt_topic][0].msgtype == TF:
            gt_conns = []
            tf_conns_used = tf_conns
        elif gt_topic:
            raise DatasetError(f"gt_topic '{gt_topic}' is a {by_topic[gt_topic][0].msgtype}; "
                               "expected /tf, or a PoseStamped, PoseWithCovarianceStamped or "
                               "Odometry topic", "topic")
        else:
            gt_conns = [c for cs in pose_topics.values() for c in cs] if use_gt else []
            tf_conns_used = tf_conns if use_gt else []

        logtimes, stamps = [], []
        frame_id = ""
        tree = TfTree(GT_MAX_DT_NS)
        pose_msgs: dict[str, list] = {}
        first_raw = None
        img_ids = {c.id for c in self._img_conns}
        for conn, t, raw in reader.messages(self._img_conns + tf_conns_used + gt_conns):
            if conn.id in img_ids:
                stamp, fid = header_of(raw)
                if first_raw is None:
                    first_raw = bytes(raw)
                    frame_id = fid.lstrip("/")
                logtimes.append(t)
                stamps.append(stamp if stamp > 0 else t)
            elif conn.msgtype == TF:
                tree.add(self._ts.deserialize_cdr(raw, TF), conn.topic.endswith("tf_static"))
            else:
                msg = self._ts.deserialize_cdr(raw, conn.msgtype)
                pose = msg.pose if conn.msgtype == POSE_STAMPED else msg.pose.pose
                child = msg.child_frame_id if conn.msgtype == ODOMETRY else ""
                pose_msgs.setdefault(conn.topic, []).append(
                    (header_stamp_ns(msg.header), pose_matrix(pose.position, pose.orientation),
                     child.lstrip("/")))
        if not logtimes:
            raise DatasetError(f"image topic {topic} of bag {path} has no message", "topic")
        tree.finish()
        self._logtimes = np.asarray(logtimes, dtype=np.int64)
        self._stamps = np.asarray(stamps, dtype=np.int64)
        self.frame_id = frame_id
        first = self._decode(first_raw, 0, undistort=False)
        h, w = first.shape[:2]
        self._undistort = None
        self._camera = self._camera_from(reader, by_topic, topic, path, w, h)
        self._gt = self._ground_truth(tree, pose_msgs, gt_frame, gt_topic, listing)

    def _pick_image_topic(self, reader, by_topic, image_topic, listing) -> str:
        images = sorted(t for t, cs in by_topic.items() if cs[0].msgtype in (IMAGE, COMPRESSED))
        if image_topic is not None:
            if image_topic not in by_topic:
                raise DatasetError(f"image_topic '{image_topic}' is not in the bag; image topics: "
                                   f"{images or 'none'}; all topics: {listing}", "topic")
            if by_topic[image_topic][0].msgtype not in (IMAGE, COMPRESSED):
                raise DatasetError(f"image_topic '{image_topic}' is a "
                                   f"{by_topic[image_topic][0].msgtype}; expected "
                                   "sensor_msgs/Image or sensor_msgs/CompressedImage", "topic")
            return image_topic
        if not images:
            raise DatasetError(f"the bag has no sensor_msgs/Image or CompressedImage topic; "
                               f"topics: {listing}", "topic")
        if len(images) == 1:
            return images[0]
        usable = [t for t in images if self._first_is_colour(reader, by_topic[t])]
        raw_topics = {t for t in usable if by_topic[t][0].msgtype == IMAGE}
        usable = [t for t in usable if not (by_topic[t][0].msgtype == COMPRESSED
                                            and t.rsplit("/", 1)[0] in raw_topics)]
        if len(usable) == 1:
            return usable[0]
        raise DatasetError(f"the bag has several image topics ({', '.join(usable or images)}); "
                           "choose one with image_topic=... (vode: --image-topic)", "topic")

    def _first_is_colour(self, reader, conns) -> bool:
        from vode_ros.imaging import ENCODINGS
        for _conn, _t, raw in reader.messages(conns):
            msg = self._ts.deserialize_cdr(raw, conns[0].msgtype)
            if conns[0].msgtype == IMAGE:
                return msg.encoding in ENCODINGS and msg.encoding not in ("16UC1",)
            return "depth" not in msg.format.lower()
        return False

    def _camera_from(self, reader, by_topic, topic, path, w, h):
        infos = sorted(t for t, cs in by_topic.items() if cs[0].msgtype == CAMERA_INFO)
        ns = topic.rsplit("/", 1)[0]
        info_topic = ns + "/camera_info" if ns + "/camera_info" in infos else \
            (infos[0] if len(infos) == 1 else None)
        if info_topic is None and infos:
            same = [t for t in infos if t.startswith(ns + "/")]
            info_topic = same[0] if len(same) == 1 else None
        intr = None
        source = ""
        if info_topic is not None:
            for _conn, _t, raw in reader.messages(by_topic[info_topic]):
                info = self._ts.deserialize_cdr(raw, CAMERA_INFO)
                intr = self._intrinsics_from_info(info, topic)
                source = f"CameraInfo on {info_topic}"
                break
        if intr is None:
            base = path if path.is_dir() else path.with_suffix("")
            cands = [base.with_name(base.name + ".intrinsics.txt"),
                     base.parent / "camera.yaml", base.parent / "camera.txt"]
            if path.is_dir():
                cands += [path / "camera.yaml", path / "camera.txt", path / "intrinsics.txt"]
            f = find_intrinsics_file(cands)
            if f is None:
                raise DatasetError(f"bag {path} has no sensor_msgs/CameraInfo for {topic} "
                                   f"(CameraInfo topics: {infos or 'none'}) and no intrinsics "
                                   f"file beside it; expected a camera_info topic, or "
                                   f"{cands[0].name}: {INTRINSICS_FORMATS}", "intrinsics")
            intr = read_intrinsics(f)
            source = str(f)
        camera, self._undistort = camera_and_undistorter(intr, w, h, source)
        self.intrinsics_source = source
        return camera

    @staticmethod
    def _intrinsics_from_info(info, topic: str) -> Intrinsics:
        K = np.asarray(info.k, float).reshape(3, 3)
        P = np.asarray(info.p, float).reshape(3, 4)
        width = int(info.width) or None
        height = int(info.height) or None
        if "rect" in topic.rsplit("/", 1)[-1] and P[0, 0] > 0:
            return Intrinsics(P[:, :3].copy(), None, width, height)
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise DatasetError(f"CameraInfo for {topic} is uncalibrated (K = {K.reshape(-1)}); "
                               "expected fx, fy > 0: calibrate the camera or give an intrinsics "
                               "file", "intrinsics")
        d = np.asarray(info.d, float).reshape(-1)
        model = info.distortion_model.lower()
        dist = d if d.size and np.any(d != 0) else None
        kind = "equidistant" if model in ("equidistant", "fisheye") else "radtan"
        return Intrinsics(K, dist, width, height, kind)

    def _ground_truth(self, tree: TfTree, pose_msgs, gt_frame, gt_topic, listing):
        cam = self.frame_id
        if tree.moving:
            frames = tree.frames
            if gt_frame:
                if gt_frame not in frames:
                    raise DatasetError(f"gt_frame '{gt_frame}' is not in the bag's /tf; frames: "
                                       f"{sorted(frames)}", "topic")
                target = gt_frame
            elif cam and cam in frames:
                target = cam
            else:
                leaves = tree.moving_leaves()
                target = leaves[0] if len(leaves) == 1 else None
                if target is None:
                    self.gt_source = (f"none: /tf moves several frames {leaves}; pass gt_frame "
                                      "to choose")
            if target is not None:
                poses, root = tree.lookup(target, self._stamps)
                self.gt_source = f"/tf {root} -> {target}"
                return poses
        if pose_msgs:
            if len(pose_msgs) > 1 and not gt_topic:
                self.gt_source = (f"none: several pose topics {sorted(pose_msgs)}; pass "
                                  "gt_topic to choose")
                return None
            topic, msgs = next(iter(pose_msgs.items()))
            s = np.asarray([m[0] for m in msgs], dtype=np.int64)
            P = np.asarray([m[1] for m in msgs])
            order = np.argsort(s, kind="stable")
            poses = poses_at(self._stamps, s[order], P[order], GT_MAX_DT_NS)
            child = msgs[0][2]
            if child and cam and child != cam:
                extra = tree.static_path(cam, child)
                if extra is not None:
                    poses = poses @ extra
            self.gt_source = f"{topic}"
            return poses
        return None

    # -- reading ---------------------------------------------------------------------------------
    def _decode(self, raw, index: int, undistort: bool = True) -> np.ndarray:
        from vode_ros.imaging import decode_compressed, raw_to_rgb
        try:
            msg = self._ts.deserialize_cdr(raw, self._img_type)
            if self._img_type == COMPRESSED:
                img = decode_compressed(msg.data, msg.format)
            else:
                img = raw_to_rgb(msg.data, msg.encoding, int(msg.width), int(msg.height),
                                 int(msg.step), bool(msg.is_bigendian))
        except InputError as err:
            raise DatasetError(f"bag {self._where}, "
                               f"topic {self.image_topic}, frame {index}: {err}", "format") \
                from None
        if undistort and self._undistort is not None:
            img = self._undistort.image(img)
        return img

    def _load_gt_poses(self) -> np.ndarray | None:
        return self._gt

    def _iter_images(self, raws: Iterable[int]) -> Iterator[np.ndarray]:
        wanted = list(raws)
        if not wanted:
            return
        want = set(wanted)
        last = wanted[-1]
        start = int(self._logtimes[wanted[0]])
        first_at_start = int(np.searchsorted(self._logtimes, start, side="left"))
        try:
            with self._reader() as reader:
                i = first_at_start
                for _conn, _t, raw in reader.messages(self._img_conns, start=start):
                    if i in want:
                        yield self._decode(raw, i)
                    if i >= last:
                        return
                    i += 1
        except (DatasetError, InputError):
            raise
        except Exception as err:  # noqa: BLE001
            raise self._bag_error(err) from None
        raise DatasetError(f"bag {self._target} ended before frame {last} of topic "
                           f"{self.image_topic}", "bag")

    def _read_image(self, raw: int) -> np.ndarray:
        t = int(self._logtimes[raw])
        k = raw - int(np.searchsorted(self._logtimes, t, side="left"))
        try:
            with self._reader() as reader:
                for j, (_c, _t, data) in enumerate(reader.messages(self._img_conns, start=t,
                                                                   stop=t + 1)):
                    if j == k:
                        return self._decode(data, raw)
        except (DatasetError, InputError):
            raise
        except Exception as err:  # noqa: BLE001
            raise self._bag_error(err) from None
        raise DatasetError(f"bag {self._target}: frame {raw} of {self.image_topic} not found "
                           "on a second read; was the bag modified?", "bag")
