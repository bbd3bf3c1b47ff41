"""Shared pytest fixtures for vode_ros. Keep this small: fixtures of one test file live in that file.

The ROS side of a test run (the venv made by `make venv`):
- LD_LIBRARY_PATH: set by the ROS wheels' start-up hook in every venv python (typesupport libs).
- AMENT_PREFIX_PATH: the venv prefix, set by the venv's vode_ros_env.pth and by `make test`;
  repeated below so that a bare `.venv/bin/pytest` works too.
- This pytest process gets its own ROS_DOMAIN_ID and localhost-only discovery (unless set already),
  so in-process nodes never meet those of another test run on the machine.
- Subprocesses: pass `env=ros_env`; it has a fresh domain per test (use the same id in-process with
  `rclpy.init(domain_id=int(ros_env["ROS_DOMAIN_ID"]))` when the test talks to its subprocess).
"""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FASTDDS_PROFILE = REPO_ROOT / "config" / "fastdds_shm.xml"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

_domain_counter = itertools.count()


def unique_domain_id() -> int:
    """A ROS_DOMAIN_ID in 1..200, different for each call in this process and spread across pids."""
    return 1 + (os.getpid() * 7 + 101 + next(_domain_counter) * 13) % 200


def _ament_prefix_path() -> str:
    parts = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if sys.prefix not in parts:
        parts.insert(0, sys.prefix)
    return os.pathsep.join(parts)


os.environ["AMENT_PREFIX_PATH"] = _ament_prefix_path()
os.environ.setdefault("ROS_DOMAIN_ID", str(unique_domain_id()))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository (= ROS package) root."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repo (real recordings); the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared data at {SHARED_DATA} (CI and developers have ../shared/data "
                    "beside the repo; a bare clone does not)")
    return SHARED_DATA


@pytest.fixture
def ros_env() -> dict:
    """Environment for a ROS subprocess of this test: os.environ plus a unique ROS_DOMAIN_ID,
    localhost-only discovery, the large-image Fast DDS profile, the venv as ament prefix."""
    env = dict(os.environ)
    env.update({
        "ROS_DOMAIN_ID": str(unique_domain_id()),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE),
        "AMENT_PREFIX_PATH": _ament_prefix_path(),
        "PYTHONUNBUFFERED": "1",
        "RCUTILS_COLORIZED_OUTPUT": "0",
    })
    env.pop("ROS_STATIC_PEERS", None)
    return env
