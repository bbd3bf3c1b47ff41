"""Test stand-in for ROS 2's `launch_ros` package (see ../README.md)."""
from . import actions, substitutions  # noqa: F401
