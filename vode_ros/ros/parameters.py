"""The node's ROS parameters: every field of the configuration schema declared with its
description and range (what `ros2 param describe` shows), and the values read back."""
from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from vode_ros.config import VodeConfig


def declare_config(node: Node, cfg: VodeConfig) -> VodeConfig:
    """Declare every schema parameter (description, range) and read the values back (a parameter
    declared already, as on a managed node's second configure, is read as it is)."""
    for name, default, meta in cfg.parameters():
        if node.has_parameter(name):
            cfg.set(name, node.get_parameter(name).value)
            continue
        desc = ParameterDescriptor(description=meta["description"])
        low, high = meta.get("low"), meta.get("high")
        if low is not None and isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                            to_value=float(high))]
        elif low is not None and isinstance(default, int) and not isinstance(default, bool):
            desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
        value = node.declare_parameter(name, default, desc).value
        cfg.set(name, value)
    return cfg
