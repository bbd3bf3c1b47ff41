"""Shared pytest fixtures for vode_ros. Keep this small: fixtures of one test file live in that file.

The ROS side of a test run (the venv made by `make venv`):
- LD_LIBRARY_PATH: set by the ROS wheels' start-up hook in every venv python (typesupport libs).
- AMENT_PREFIX_PATH: the venv prefix, set by the venv's vode_ros_env.pth and by `make test`;
  repeated below so that a bare `.venv/bin/pytest` works too.
- This pytest process gets its own ROS_DOMAIN_ID and localhost-only discovery (unless set already),
  so in-process nodes never meet those of another test run on the machine.
- Subprocesses: pass `env=ros_env`; it has a fresh domain per test (use the same id in-process with
  `rclpy.init(domain_id=int(ros_env["ROS_DOMAIN_ID"]))` when the test talks to its subprocess).

Markers (registered in setup.cfg) are given here, not on each test; `make test-core` runs
`-m "not ros and not slow"`, the quick tests of every algorithm, in well under a minute:
- ros: the test uses `ros_env` (a ROS subprocess) or its module uses rclpy, the ROS harness or
  vode_ros.ros (nodes in this process);
- slow: a few seconds or more, measured with `pytest --durations=0` on two cores (SLOW_* below).
"""
from __future__ import annotations

import itertools
import os
import sys
import types
from pathlib import Path

import pytest

from vode_ros.ros import fastdds

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
for _name in fastdds.profile_variables():      # Fast DDS 2.x (Jazzy) reads an older name
    os.environ.setdefault(_name, str(FASTDDS_PROFILE))


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
        **{name: str(FASTDDS_PROFILE) for name in fastdds.profile_variables()},
        "AMENT_PREFIX_PATH": _ament_prefix_path(),
        "PYTHONUNBUFFERED": "1",
        "RCUTILS_COLORIZED_OUTPUT": "0",
    })
    env.pop("ROS_STATIC_PEERS", None)
    return env


# -- markers ---------------------------------------------------------------------------------------
# what a module that runs ROS imports (or names it imports come from)
ROS_MODULES = ("rclpy", "ros_harness", "vode_ros.ros", "launch_ros")
# whole modules, and why
SLOW_MODULES = {
    "test_training.py": "trains networks with torch",
    "test_export.py": "exports checkpoints and checks ONNX Runtime parity",
    "test_bench.py": "runs `vode bench` in subprocesses (one through the node)",
    "test_build.py": "builds the package with colcon, runs pytest in a subprocess",
    "test_onnx_weights.py": "reads the shipped ONNX models back into torch, trains a step",
    "test_adapt.py": "runs the odometry and fine-tunes the networks on a synthetic recording",
    "test_device_check.py": "exports networks and benches them (tools/device_check.sh)",
}
# module fixtures that take long to build: every test that uses one
SLOW_FIXTURES = {
    "test_loop_closure.py": {"room_loop", "corridor_straight"},     # 240-frame renderings
}
# single tests of otherwise quick modules (2 s or more each)
SLOW_TESTS = {
    "test_geometric.py": {"test_turn", "test_static_camera_stays_put",
                          "test_ground_scale_converges_to_metres",
                          "test_pure_rotation_makes_no_translation",
                          "test_dark_stretch_falls_back_then_recovers",
                          "test_lost_features_fall_back_with_their_reason"},
    "test_process_eval.py": {"test_eval_writes_metrics_and_plots",
                             "test_eval_on_kitti_06_with_shipped_models"},
    "test_loop_closure.py": {"test_vode_eval_writes_both_trajectories"},
}


def _origin(value) -> str:
    """The module a module-level name of a test file comes from ("" when none)."""
    if isinstance(value, types.ModuleType):
        return value.__name__
    origin = getattr(value, "__module__", None)
    return origin if isinstance(origin, str) else ""


def _uses_ros(module: types.ModuleType) -> bool:
    return any(_origin(v) == m or _origin(v).startswith(m + ".")
               for v in vars(module).values() for m in ROS_MODULES)


def pytest_collection_modifyitems(config, items):
    ros_modules: dict[str, bool] = {}
    for item in items:
        name = item.path.name
        if name not in ros_modules:
            ros_modules[name] = item.module is not None and _uses_ros(item.module)
        if ros_modules[name] or "ros_env" in item.fixturenames:
            item.add_marker(pytest.mark.ros)
        function = getattr(item, "originalname", item.name)
        if (name in SLOW_MODULES or function in SLOW_TESTS.get(name, ())
                or SLOW_FIXTURES.get(name, set()) & set(item.fixturenames)):
            item.add_marker(pytest.mark.slow)
