"""``vode bag play`` and ``vode bag record``: ROS 2 bags on a live graph with rclpy and rosbags,
for machines without rosbag2 (``ros2 bag``).

Play (``BagPlayer``): one publisher per topic with the topic's own type (resolved from
``pkg/msg/Name`` by importing ``pkg.msg``); messages go out as the bag holds them (CDR bytes,
``Publisher.publish(bytes)``: nothing is decoded or re-encoded) with their original timing divided
by ``rate``. QoS: SensorDataQoS (best effort) for Image, CompressedImage and CameraInfo, reliable
for the rest, reliable + transient local for /tf_static (or any topic recorded as transient
local). ``/clock`` (rosgraph_msgs/Clock) follows the bag's receive times: before each message and
every 1/``clock_hz`` s in between, so a node with ``use_sim_time:=true`` runs on bag time.

``loop``: the bag starts again at its beginning, so bag time jumps back. vode_node refuses a
stamp that is not after the previous frame's; before each restart the player therefore waits
``LOOP_SETTLE_S`` (the node finishes the pass) and calls every ``std_srvs/srv/Trigger`` service
named ``.../vode_node/reset`` it finds in the graph (``reset_on_loop=False``, ``--no-reset``,
turns this off; without the reset the node skips every frame of the new pass as out of order). Other sim-time nodes see the usual ROS
time jump (TF buffers are cleared).

Record (``BagRecorder``): topics are discovered in the graph (``get_topic_names_and_types``, also
ones that appear later), each subscribed with ``raw=True`` so the CDR bytes go into the bag
unchanged, with the receive time (system clock) as log time. The subscription's QoS adapts to
the publishers (best effort unless every publisher is reliable; transient local when every
publisher is, so latched /tf_static is caught), and the publishers' QoS is kept in the bag's
metadata for a later ``ros2 bag play``. The bag is written atomically (``BagWriter``) and closed
cleanly on stop (SIGINT, SIGTERM, ``duration``).
"""
from __future__ import annotations

import importlib
import queue
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from rclpy.clock import Clock as RclClock
from rclpy.clock import ClockType
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from vode_ros.bags.paths import BagError, read_error
from vode_ros.bags.reader import open_reader
from vode_ros.bags.typestore import CAMERA_INFO, COMPRESSED, IMAGE, SENSOR_TYPES
from vode_ros.bags.writer import BagWriter
from vode_ros.message_fields import ns_to_sec_nanosec
from vode_ros.ros.spinning import spun_node

CLOCK_TOPIC = "/clock"
RESET_SERVICE_SUFFIX = "vode_node/reset"
LOOP_SETTLE_S = 0.5


# -- message types -------------------------------------------------------------------------------
def message_class(type_name: str):
    """The rclpy message class of ``pkg/msg/Name`` (or ``pkg/Name``)."""
    parts = type_name.strip("/").split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise BagError(f"message type '{type_name}' is not of the form pkg/msg/Name")
    pkg, kind, name = parts
    try:
        module = importlib.import_module(f"{pkg}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError) as err:
        raise BagError(f"no python message class for '{type_name}' ({err}); install its package "
                       f"(ros-<distro>-{pkg.replace('_', '-')}, or the {pkg} wheel in a venv) "
                       "or leave the topic out with --topics") from None


def _qos(reliable: bool, transient_local: bool = False, depth: int = 10) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local
        else DurabilityPolicy.VOLATILE)


def publisher_qos(topic: str, msgtype: str, offered=()) -> QoSProfile:
    """The player's QoS for a topic (see the module docstring)."""
    from rosbags.interfaces import QosDurability
    latched = topic.rstrip("/").endswith("tf_static") or \
        any(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    if latched:
        return _qos(True, True, depth=1)
    if msgtype in SENSOR_TYPES:
        return qos_profile_sensor_data
    return _qos(True, depth=10)


def _absolute(topic: str) -> str:
    return topic if topic.startswith("/") else "/" + topic


@contextmanager
def stop_on_signals(stop: threading.Event):
    """SIGINT and SIGTERM set ``stop`` (main thread only) instead of raising."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:   # a second Ctrl-C: give up waiting
            raise KeyboardInterrupt
        stop.set()

    for s in old:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# -- play ----------------------------------------------------------------------------------------
class BagPlayer:
    """Publishes a bag's messages on ``node`` with their timing (see the module docstring).

    The node must be spun by an executor (for the reset service calls of ``loop``); ``play``
    blocks the calling thread until the bag ends, ``stop`` is set, or after the last loop.
    """

    def __init__(self, node, bag, *, rate: float = 1.0, topics=None, loop: bool = False,
                 start_delay: float = 0.0, clock: bool = True, clock_hz: float = 100.0,
                 reset_on_loop: bool = True, wait_for_subscribers: float = 0.0, log=None):
        if not rate > 0:
            raise BagError(f"--rate must be positive, got {rate}")
        if start_delay < 0:
            raise BagError(f"--start-delay must be >= 0, got {start_delay}")
        self.node = node
        self.bag = Path(bag)
        self.rate = float(rate)
        self.loop = loop
        self.start_delay = float(start_delay)
        self.clock_hz = float(clock_hz)
        self.reset_on_loop = reset_on_loop
        self.wait_for_subscribers = float(wait_for_subscribers)
        self.log = log or (lambda text: node.get_logger().info(text))
        with open_reader(self.bag) as reader:       # BagError for a missing or broken bag
            conns = list(reader.connections)
            self.message_count = int(reader.message_count)
        available = sorted({c.topic for c in conns})
        wanted = None if not topics else {_absolute(t) for t in topics}
        if wanted is not None and not wanted & set(available):
            raise BagError(f"none of the topics {sorted(wanted)} is in bag {self.bag}; its "
                           f"topics: {', '.join(available) or 'none'}")
        if wanted is not None and wanted - set(available):
            self.log(f"not in the bag, not played: {sorted(wanted - set(available))}")
        self.connections = [c for c in conns if wanted is None or c.topic in wanted]
        self.publishers: dict[str, object] = {}
        for c in self.connections:
            if c.topic not in self.publishers:
                cls = message_class(c.msgtype)
                offered = getattr(c.ext, "offered_qos_profiles", ())
                self.publishers[c.topic] = node.create_publisher(
                    cls, c.topic, publisher_qos(c.topic, c.msgtype, offered))
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock
            self.clock_pub = node.create_publisher(Clock, CLOCK_TOPIC, _qos(True, depth=10))
            self._clock_cls = Clock
        self.last_clock_ns = None
        self.sent: dict[str, int] = {t: 0 for t in self.publishers}
        self.loops = 0

    # -- pieces ------------------------------------------------------------------------------------
    def _publish_clock(self, t_ns: int) -> None:
        if self.clock_pub is None or (self.last_clock_ns is not None and
                                      t_ns <= self.last_clock_ns):
            return
        from builtin_interfaces.msg import Time
        self.clock_pub.publish(self._clock_cls(clock=Time(sec=int(t_ns // 1_000_000_000),
                                                          nanosec=int(t_ns % 1_000_000_000))))
        self.last_clock_ns = t_ns

    def _sleep_until(self, wall: float, bag_t0: int, wall_t0: float, stop) -> None:
        """Sleep to ``wall`` (monotonic), publishing the bag time on /clock on the way."""
        period = 1.0 / self.clock_hz if self.clock_hz > 0 and self.clock_pub else None
        while not stop.is_set():
            now = time.monotonic()
            left = wall - now
            if left <= 0:
                return
            step = left if period is None else min(left, period)
            if stop.wait(step):
                return
            if period is not None and time.monotonic() < wall:
                self._publish_clock(bag_t0 + int((time.monotonic() - wall_t0) * self.rate * 1e9))

    def wait_subscribers(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Until every image topic has a subscriber (every topic, for a bag without images);
        then up to 2 s more for the camera_info topics, so a camera node gets its first
        CameraInfo."""
        images = [c.topic for c in self.connections if c.msgtype in (IMAGE, COMPRESSED)]
        infos = [c.topic for c in self.connections if c.msgtype == CAMERA_INFO]
        stop = stop or threading.Event()
        end = time.monotonic() + timeout
        for topics, deadline, required in ((images or list(self.publishers), end, True),
                                           (infos, None, False)):
            deadline = deadline or time.monotonic() + 2.0
            while not stop.is_set():
                missing = [t for t in topics if self.publishers[t].get_subscription_count() == 0]
                if not missing:
                    break
                if time.monotonic() > deadline:
                    if required:
                        raise BagError(f"no subscriber on {missing} within {timeout} s")
                    break
                stop.wait(0.05)

    def reset_services(self) -> list[str]:
        names = [n for n, types in self.node.get_service_names_and_types()
                 if n.endswith(RESET_SERVICE_SUFFIX) and "std_srvs/srv/Trigger" in types]
        return sorted(names)

    def _reset_nodes(self) -> None:
        from std_srvs.srv import Trigger
        for name in self.reset_services():
            client = self.node.create_client(Trigger, name)
            try:
                if not client.wait_for_service(timeout_sec=2.0):
                    self.log(f"loop: {name} did not answer; not reset")
                    continue
                future = client.call_async(Trigger.Request())
                end = time.monotonic() + 5.0
                while not future.done() and time.monotonic() < end:
                    time.sleep(0.01)
                ok = future.done() and future.result() is not None and future.result().success
                self.log(f"loop: called {name}: {'ok' if ok else 'no success'}")
            finally:
                self.node.destroy_client(client)

    # -- the loop ----------------------------------------------------------------------------------
    def play(self, stop: threading.Event | None = None) -> dict:
        stop = stop or threading.Event()
        if self.wait_for_subscribers > 0:
            self.wait_subscribers(self.wait_for_subscribers, stop)
        if self.start_delay and stop.wait(self.start_delay):
            return self.stats(0.0)
        t_start = time.monotonic()
        while not stop.is_set():
            self._play_once(stop)
            if not self.loop or stop.is_set():
                break
            self.loops += 1
            if self.reset_on_loop:
                # let a node finish the frames of the pass before its odometry restarts: a frame
                # of the old pass processed after the reset would refuse the new pass' stamps
                if stop.wait(LOOP_SETTLE_S):
                    break
                self._reset_nodes()
        return self.stats(time.monotonic() - t_start)

    def _play_once(self, stop) -> None:
        bag_t0 = wall_t0 = None
        self.last_clock_ns = None           # a new pass: bag time starts again
        with open_reader(self.bag) as reader:
            conns = [c for c in reader.connections if c.topic in self.publishers]
            try:
                for conn, t, raw in reader.messages(conns):
                    if stop.is_set():
                        return
                    if bag_t0 is None:
                        bag_t0, wall_t0 = t, time.monotonic()
                    self._sleep_until(wall_t0 + (t - bag_t0) / 1e9 / self.rate, bag_t0,
                                      wall_t0, stop)
                    if stop.is_set():
                        return
                    self._publish_clock(t)
                    self.publishers[conn.topic].publish(bytes(raw))
                    self.sent[conn.topic] += 1
            except BagError:
                raise
            except Exception as err:  # noqa: BLE001 - rosbags' errors on a broken bag
                raise read_error(self.bag, err) from None

    def stats(self, wall_s: float) -> dict:
        return {"bag": str(self.bag), "messages": dict(self.sent),
                "total": int(sum(self.sent.values())), "loops": self.loops + 1,
                "rate": self.rate, "wall_s": round(wall_s, 3)}


def play_bag(bag, *, rate: float = 1.0, topics=None, loop: bool = False,
             start_delay: float = 0.0, clock: bool = True, clock_hz: float = 100.0,
             reset_on_loop: bool = True, wait_for_subscribers: float = 0.0,
             domain_id: int | None = None, log=print) -> dict:
    """``vode bag play``: play a bag on the graph until it ends (or Ctrl-C)."""
    stop = threading.Event()
    with spun_node("vode_bag_player", domain_id) as node, stop_on_signals(stop):
        player = BagPlayer(node, bag, rate=rate, topics=topics, loop=loop,
                           start_delay=start_delay, clock=clock, clock_hz=clock_hz,
                           reset_on_loop=reset_on_loop,
                           wait_for_subscribers=wait_for_subscribers, log=log)
        log(f"playing {bag}: {len(player.publishers)} topics, {player.message_count} messages, "
            f"rate x{rate}{', looping' if loop else ''}"
            f"{', /clock on' if clock else ''}")
        stats = player.play(stop)
        time.sleep(0.2)          # let the last messages leave before the context goes
    stats["interrupted"] = stop.is_set()
    return stats


# -- record --------------------------------------------------------------------------------------
def _rosbags_qos(profile):
    """rclpy QoSProfile -> rosbags Qos (for the bag's metadata)."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    def enum(cls, value, default):
        try:
            return cls[value.name]
        except (KeyError, AttributeError):
            return default

    def dur(d):
        ns = d.nanoseconds
        if ns <= 0 or ns >= 2**63 - 1:
            return QosTime(0, 0)
        return QosTime(*ns_to_sec_nanosec(ns))

    return Qos(enum(QosHistory, profile.history, QosHistory.KEEP_LAST), int(profile.depth),
               enum(QosReliability, profile.reliability, QosReliability.RELIABLE),
               enum(QosDurability, profile.durability, QosDurability.VOLATILE),
               dur(profile.deadline), dur(profile.lifespan),
               enum(QosLiveliness, profile.liveliness, QosLiveliness.AUTOMATIC),
               dur(profile.liveliness_lease_duration),
               bool(profile.avoid_ros_namespace_conventions))


class BagRecorder:
    """Records ``topics`` (None: every topic in the graph) of the graph ``node`` is on into
    ``out`` (see the module docstring). ``every``: {topic: N} keeps every Nth message of a topic
    (e.g. full-resolution depth images). ``stop()`` closes the bag and returns its summary."""

    def __init__(self, node, out, topics=None, *, storage: str | None = None,
                 overwrite: bool = False, every: dict | None = None,
                 discovery_period: float = 0.2, log=None):
        self.node = node
        self.topics = None if topics is None else [_absolute(t) for t in topics]
        self.every = {_absolute(k): max(1, int(v)) for k, v in (every or {}).items()}
        self.log = log or (lambda text: node.get_logger().info(text))
        self.writer = BagWriter(out, storage, overwrite)
        # rosbags calls happen in one writer thread (SQLite3 objects are bound to their thread;
        # and disk writes stay off the executor)
        self.queue: queue.Queue = queue.Queue()
        self._keep = True
        self._writer_error: Exception | None = None
        self._writer_thread = threading.Thread(target=self._write_loop, name="vode_bag_writer",
                                               daemon=True)
        self._writer_thread.start()
        self.lock = threading.Lock()
        self.subs: dict[str, object] = {}
        self.types: dict[str, str] = {}
        self.received: dict[str, int] = {}
        self.written: dict[str, int] = {}
        self.unrecordable: set[str] = set()
        self.closed = False
        self._discover_lock = threading.Lock()
        self.timer = node.create_timer(discovery_period, self._discover,
                                       clock=RclClock(clock_type=ClockType.STEADY_TIME))
        self._discover()

    @property
    def subscribed(self) -> list[str]:
        with self.lock:
            return sorted(self.subs)

    def missing(self) -> list[str]:
        return [t for t in (self.topics or []) if t not in self.subscribed]

    def _discover(self) -> None:
        with self._discover_lock:
            if self.closed:
                return
            try:
                self._discover_now()
            except Exception as exc:  # noqa: BLE001 - never kill the executor
                self.log(f"topic discovery failed: {type(exc).__name__}: {exc}")

    def _write_loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                break
            try:
                if item[0] == "topic":
                    self.writer.add_topic(*item[1:])
                else:
                    self.writer.write_raw(*item[1:])
            except Exception as exc:  # noqa: BLE001
                if self._writer_error is None:
                    self._writer_error = exc
                    self.log(f"writing {item[1]} failed: {exc}")
        try:
            if self._keep and self._writer_error is None:
                self.writer.commit()
            else:
                self.writer.abort()
        except Exception as exc:  # noqa: BLE001
            self._writer_error = self._writer_error or exc

    def _discover_now(self) -> None:
        try:
            graph = dict(self.node.get_topic_names_and_types())
        except Exception:  # noqa: BLE001 - context shutting down
            return
        for topic, types in sorted(graph.items()):
            if topic in self.subs or topic in self.unrecordable or \
                    (self.topics is not None and topic not in self.topics):
                continue
            self._subscribe(topic, types)

    def _subscribe(self, topic: str, types: list[str]) -> None:
        msgtype = types[0]
        if len(types) > 1:
            self.log(f"{topic} has several types {types}; recording {msgtype}")
        try:
            cls = message_class(msgtype)
        except BagError as err:
            self.log(f"not recording {topic}: {err}")
            self.unrecordable.add(topic)
            return
        infos = self.node.get_publishers_info_by_topic(topic)
        if not infos:
            return                       # only subscribers so far: wait for a publisher
        profiles = [i.qos_profile for i in infos]
        reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in profiles)
        latched = all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
        qos = _qos(reliable, latched, depth=100)
        with self.lock:
            if self.closed:
                return
            self.queue.put(("topic", topic, msgtype, _rosbags_qos(profiles[0])))
            self.types[topic] = msgtype
            self.received[topic] = self.written[topic] = 0
            self.subs[topic] = self.node.create_subscription(cls, topic, self._callback(topic),
                                                             qos, raw=True)
        self.log(f"recording {topic} ({msgtype}, {'reliable' if reliable else 'best effort'}"
                 f"{', transient local' if latched else ''})")

    def _callback(self, topic: str):
        every = self.every.get(topic, 1)
        msgtype = self.types[topic]

        def cb(data: bytes) -> None:
            t = time.time_ns()
            with self.lock:
                if self.closed:
                    return
                n = self.received[topic]
                self.received[topic] = n + 1
                if n % every:
                    return
                self.queue.put(("msg", topic, msgtype, data, t))
                self.written[topic] += 1
        return cb

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.written)

    def wait_for_topics(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """True once every requested topic is subscribed."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            if not self.missing():
                return True
            time.sleep(0.05)
        return not self.missing()

    def stop(self) -> dict:
        with self.lock:
            if self.closed:
                return self.writer.summary()
            self.closed = True
            subs = list(self.subs.values())
        try:
            self.node.destroy_timer(self.timer)
            for s in subs:
                self.node.destroy_subscription(s)
        except Exception:  # noqa: BLE001 - the node may be going down already
            pass
        self.queue.put(None)
        self._writer_thread.join()
        if self._writer_error is not None:
            raise BagError(f"recording into {self.writer.path} failed: "
                           f"{type(self._writer_error).__name__}: {self._writer_error}")
        out = self.writer.summary()
        out["received"] = dict(self.received)
        return out

    def abort(self) -> None:
        with self.lock:
            if self.closed and not self._writer_thread.is_alive():
                return
            self.closed = True
            self._keep = False
        self.queue.put(None)
        self._writer_thread.join()


def record_bag(out, topics=None, *, duration: float | None = None, storage: str | None = None,
               overwrite: bool = False, every: dict | None = None,
               domain_id: int | None = None, log=print) -> dict:
    """``vode bag record``: record until Ctrl-C / SIGTERM or ``duration`` seconds."""
    if duration is not None and not duration > 0:
        raise BagError(f"--duration must be positive, got {duration}")
    stop = threading.Event()
    with spun_node("vode_bag_recorder", domain_id) as node, stop_on_signals(stop):
        recorder = BagRecorder(node, out, topics, storage=storage, overwrite=overwrite,
                               every=every, log=log)
        try:
            log(f"recording into {recorder.writer.path} "
                f"({'all topics' if topics is None else ', '.join(recorder.topics)}); "
                f"{'for %.1f s' % duration if duration else 'Ctrl-C to stop'}")
            end = None if duration is None else time.monotonic() + duration
            while not stop.wait(0.1):
                if end is not None and time.monotonic() >= end:
                    break
            summary = recorder.stop()
        except BaseException:
            recorder.abort()
            raise
    if recorder.topics:
        summary["never_seen"] = [t for t in recorder.topics if t not in recorder.types]
    return summary
