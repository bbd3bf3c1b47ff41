"""Reading bags: messages, a summary of the topics, the odometry and static transforms in them."""
from __future__ import annotations

import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from vode_ros.bags.paths import BagError, existing_bag, read_error, storage_of
from vode_ros.bags.typestore import ODOMETRY, typestore
from vode_ros.message_fields import header_stamp_ns, pose_matrix


@contextmanager
def open_reader(path):
    """A rosbags ``Reader`` opened on ``path``; unreadable bags raise ``BagError``."""
    from rosbags.rosbag2 import Reader
    target = existing_bag(path)
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
        except Exception:  # noqa: BLE001 - closing a broken bag; the caller has its answer
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
        except Exception as err:  # noqa: BLE001 - rosbags raises many kinds for broken bags
            raise read_error(existing_bag(path), err) from None


def bag_info(path) -> dict:
    """Topics (type, message count, offered QoS), duration and start of a bag."""
    with open_reader(path) as reader:
        topics: dict[str, dict] = {}
        for c in reader.connections:
            entry = topics.setdefault(c.topic, {"type": c.msgtype, "messages": 0})
            entry["messages"] += c.msgcount
        return {"path": str(Path(path)), "storage": storage_of(existing_bag(path)),
                "messages": int(reader.message_count), "start_ns": int(reader.start_time)
                if reader.message_count else None,
                "duration_s": (reader.duration / 1e9) if reader.message_count else 0.0,
                "topics": dict(sorted(topics.items()))}


def read_odometry(path, topic: str = "/odom") -> tuple[np.ndarray, np.ndarray, str, str]:
    """(header stamps ns (N,), poses (N, 4, 4), frame_id, child_frame_id) of the
    ``nav_msgs/Odometry`` messages on ``topic``."""
    stamps, poses, frame, child = [], [], "", ""
    for _topic, msgtype, _t, msg in read_messages(path, [topic]):
        if msgtype != ODOMETRY:
            raise BagError(f"topic {topic} of bag {path} is {msgtype}; expected {ODOMETRY}")
        stamps.append(header_stamp_ns(msg.header))
        poses.append(pose_matrix(msg.pose.pose.position, msg.pose.pose.orientation))
        frame, child = msg.header.frame_id, msg.child_frame_id
    return (np.asarray(stamps, np.int64), np.asarray(poses).reshape(-1, 4, 4), frame, child)


def read_static_transform(path, parent: str, child: str) -> np.ndarray | None:
    """T_parent_child from the bag's /tf_static, or None."""
    for _topic, _type, _t, msg in read_messages(path, ["/tf_static"]):
        for tr in msg.transforms:
            if tr.header.frame_id.lstrip("/") == parent and tr.child_frame_id.lstrip("/") == \
                    child:
                return pose_matrix(tr.transform.translation, tr.transform.rotation)
    return None


def header_of(raw) -> tuple[int, str]:
    """(stamp_ns, frame_id) of a CDR-serialised message that starts with std_msgs/Header,
    without deserialising the rest (an image's pixels)."""
    buf = memoryview(raw)
    little = buf[1] & 1 == 1          # encapsulation CDR_LE = 0x0001, CDR_BE = 0x0000
    end = "<" if little else ">"
    sec, nsec, slen = struct.unpack_from(end + "iII", buf, 4)
    frame_id = bytes(buf[16:16 + max(0, slen - 1)]).decode("utf-8", "replace")
    return sec * 1_000_000_000 + nsec, frame_id
