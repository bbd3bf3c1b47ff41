"""``BagWriter``: a rosbag2 bag written atomically with ``rosbags``.

Every bag is rosbag2 format 9 with ``ros2msg`` schemas (MCAP) / message definitions (SQLite3) and
RIHS01 type hashes, so ``ros2 bag info|play``, Foxglove and RViz open it, and so does
``open_sequence``. Paths: see ``vode_ros.bags.paths``.

Writes are atomic: the bag grows in a hidden ``.OUT.partial-<pid>-<token>/`` beside ``OUT`` and is
moved into place by ``commit()``; a failure (``abort()``, or an exception in a ``with`` block)
removes it, so a half-written bag never sits under the final name.
"""
from __future__ import annotations

import os
import secrets
import shutil
import threading
from pathlib import Path

from vode_ros.bags.paths import BagError, looks_like_bag_folder, resolve_output
from vode_ros.bags.typestore import SENSOR_TYPES, typestore


# -- QoS recorded in the metadata -----------------------------------------------------------------
def qos_profile(kind: str):
    """A rosbags ``Qos`` for the bag's metadata (what ``ros2 bag play`` re-offers):
    ``sensor`` (best effort, volatile, depth 5: SensorDataQoS), ``reliable`` (depth 100) or
    ``latched`` (reliable, transient local, depth 1: /tf_static)."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )
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


class BagWriter:
    """A rosbag2 bag written atomically (see the module docstring).

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
        if self.path.exists() and self.path.is_dir() and not looks_like_bag_folder(self.path):
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
