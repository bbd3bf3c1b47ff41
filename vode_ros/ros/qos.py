"""QoS of the node's subscriptions and outputs, from ``ros.*`` parameters, and the warning that
names a QoS mismatch with a matched peer.

- Inputs: the image and camera_info subscriptions request the reliability and history depth of
  ``ros.image_qos_*`` / ``ros.camera_info_qos_*`` (best effort by default: SensorDataQoS, which
  every camera driver matches; ``ros.reliable_qos`` forces reliable for both).
- Outputs: odom, depth and path follow ``ros.output_qos_*``; /tf is reliable (what TF listeners
  request); the latched outputs (map_path, loop_closures, /tf_static) are reliable and
  transient-local, depth 1 (REP-2003), so a late subscriber (RViz started later) gets the last one.
- Incompatible QoS: DDS does not deliver between a reliable subscription and a best-effort
  publisher, nor to a transient-local subscription from a volatile publisher, and says nothing
  in the data path. The event callbacks here log a warning that names the topic, the policy, what
  this side asks or offers and what the peers do, and which parameter changes it.
"""
from __future__ import annotations

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_policy_name_from_kind,
)

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT,
               "reliable": ReliabilityPolicy.RELIABLE}

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST)


def _profile(reliability: str, depth: int) -> QoSProfile:
    return QoSProfile(depth=depth, reliability=RELIABILITY[reliability],
                      durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)


def image_qos(ros_cfg) -> QoSProfile:
    """What the image (or image/compressed) subscription requests."""
    reliability = "reliable" if ros_cfg.reliable_qos else ros_cfg.image_qos_reliability
    return _profile(reliability, ros_cfg.image_qos_depth)


def camera_info_qos(ros_cfg) -> QoSProfile:
    reliability = "reliable" if ros_cfg.reliable_qos else ros_cfg.camera_info_qos_reliability
    return _profile(reliability, ros_cfg.camera_info_qos_depth)


def output_qos(ros_cfg, default_depth: int) -> QoSProfile:
    """odom, depth/image, depth/camera_info, path: ``ros.output_qos_*`` (depth 0: the output's
    own ``default_depth``)."""
    return _profile(ros_cfg.output_qos_reliability, ros_cfg.output_qos_depth or default_depth)


def describe(qos: QoSProfile) -> str:
    """``reliable/volatile`` and the like."""
    return f"{qos.reliability.name.lower()}/{qos.durability.name.lower()}"


def policy_name(kind) -> str:
    """The name of the QoS policy an incompatibility event names (``RELIABILITY``, ...)."""
    try:
        return str(qos_policy_name_from_kind(kind))
    except Exception:  # noqa: BLE001 - an unknown kind from a newer rmw: say its number
        return f"policy {int(kind)}"


class QosMismatchReporter:
    """Builds the event callbacks of one node's subscriptions and publishers; each names the
    mismatch in the node's log (at most once per topic and policy until it changes)."""

    def __init__(self, node):
        self.node = node
        self.reported: dict[tuple[str, str], int] = {}
        self.events: list[str] = []            # what was reported, for diagnostics and tests

    def for_subscription(self, topic_of, qos: QoSProfile,
                         hint: str = "") -> SubscriptionEventCallbacks:
        """``topic_of``: a callable that gives the subscription's resolved topic name (known once
        it exists); ``hint``: which parameter changes what this side requests."""
        def incompatible(info):
            topic = topic_of()
            self._report("subscription", topic, qos, info, self._offered(topic), hint)
        return SubscriptionEventCallbacks(incompatible_qos=incompatible)

    def for_publisher(self, topic_of, qos: QoSProfile, hint: str = "") -> PublisherEventCallbacks:
        def incompatible(info):
            topic = topic_of()
            self._report("publisher", topic, qos, info, self._requested(topic), hint)
        return PublisherEventCallbacks(incompatible_qos=incompatible)

    def _offered(self, topic: str) -> str:
        return self._peers(self.node.get_publishers_info_by_topic(topic), "offers")

    def _requested(self, topic: str) -> str:
        return self._peers(self.node.get_subscriptions_info_by_topic(topic), "requests")

    def _peers(self, infos, verb: str) -> str:
        own = self.node.get_fully_qualified_name()
        peers = []
        for i in infos:
            name = f"{i.node_namespace.rstrip('/')}/{i.node_name}"
            if name == own:
                continue
            if i.node_name.startswith("_NODE_NAME_UNKNOWN"):     # endpoint seen before its node
                name = "a peer (its node not discovered yet)"
            peers.append(f"{name} {verb} {describe(i.qos_profile)}")
        return "; ".join(peers) if peers else "no peer seen in the graph yet"

    def _report(self, side: str, topic: str, qos: QoSProfile, info, peers: str,
                hint: str) -> None:
        policy = policy_name(info.last_policy_kind)
        key = (topic, policy)
        if self.reported.get(key) == info.total_count:
            return
        self.reported[key] = info.total_count
        asks = "requests" if side == "subscription" else "offers"
        peer = "publisher" if side == "subscription" else "subscriber"
        text = (f"QoS mismatch on {topic}: a matched {peer} is incompatible with this {side} "
                f"({policy}); this {side} {asks} {describe(qos)} (depth {qos.depth}), {peers}. "
                f"No message passes between them.")
        if hint:
            text += f" {hint}"
        self.events.append(text)
        self.node.get_logger().warn(text)
