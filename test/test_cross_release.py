"""vode_node on this ROS 2 release, the camera on the other one (a robot whose camera driver runs
another release): two processes over DDS (Fast DDS on both), same ROS_DOMAIN_ID, localhost.

The releases tested are Kilted (.venv, `make venv`) and Jazzy (.venv-jazzy, `make venv
ROS_DISTRO=jazzy`); run under either, the test takes the other venv for the camera and is skipped
(saying how to build it) where that venv is absent.
"""
from __future__ import annotations

import importlib.metadata
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ros_harness import REPO, NodeProcess, ros_environment, unique_domain_id
from vode_ros.ros import fastdds

VENVS = {"kilted": (REPO / ".venv", "make venv"),
         "jazzy": (REPO / ".venv-jazzy", "make venv ROS_DISTRO=jazzy")}
N_FRAMES = 16


def this_release() -> str:
    for name in VENVS:
        try:
            importlib.metadata.version(f"ros-{name}-rclpy")
            return name
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def other_release() -> tuple[str, Path]:
    mine = this_release()
    if mine not in VENVS:
        pytest.skip(f"this python's ROS release ({mine}) is not one of {sorted(VENVS)}")
    (other,) = [r for r in VENVS if r != mine]
    venv, build = VENVS[other]
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no {other} venv at {venv} for the camera process (build it: {build})")
    return other, python


def other_release_environment(domain: int) -> dict:
    """ros_environment for a process of the other venv: its own ROS wheels' start-up hook must
    run (it sets LD_LIBRARY_PATH for that venv's libraries), so nothing of this one is passed."""
    env = ros_environment(domain)
    for k in ("LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE", "AMENT_PREFIX_PATH",
              "VIRTUAL_ENV"):
        env.pop(k, None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "test")])
    return env


def profile_for(env: dict, release: str) -> dict:
    """The Fast DDS profile under the names that release's Fast DDS reads."""
    profile = str(REPO / "config" / "fastdds_shm.xml")
    env.pop(fastdds.LEGACY_PROFILE_VARIABLE, None)
    env.update({n: profile for n in fastdds.profile_variables(release in fastdds.FAST_DDS_2_RELEASES)})
    return env


def test_node_on_this_release_with_a_camera_on_the_other(tmp_path):
    other, python = other_release()
    domain = unique_domain_id()
    node = NodeProcess(domain, tmp_path / "node.log",
                       params={"ros.diagnostics_period_s": 0.5},
                       remaps={"image": "/camera/image_raw", "camera_info": "/camera/camera_info"})
    out = tmp_path / "camera.json"
    try:
        camera = subprocess.run(
            [str(python), str(REPO / "test" / "cross_release_camera.py"), str(domain),
             str(N_FRAMES), str(out)],
            env=profile_for(other_release_environment(domain), other), cwd=str(REPO),
            capture_output=True,
            text=True, timeout=240)
        assert camera.returncode == 0 and out.is_file(), camera.stdout + camera.stderr
        result = json.loads(out.read_text())
    finally:
        rc = node.stop()
    log = node.log()
    assert result["release"] == other, result
    assert result["matched"], f"the {other} camera never matched the node; node log:\n{log}"
    odom, diag = result["odom"], result["diagnostics"]
    # every frame crossed (the node's own count); how many it had time to process depends on
    # the machine's load (a frame that arrives while one waits replaces it)
    assert int(diag["frames_received"]) == N_FRAMES, (diag, log)
    assert int(diag["frames_processed"]) == len(odom) >= N_FRAMES // 4, (diag, log)
    assert {s for s, *_ in odom} <= set(result["sent"])
    assert all(math.isfinite(v) for row in odom for v in row[1:])
    assert result["tf_static"] >= 1, "the latched /tf_static did not reach the other release"
    assert rc == 0 and "Traceback" not in log, log
    print(f"node on {this_release()} ({sys.executable}), camera on {other}: "
          f"{len(odom)}/{N_FRAMES} frames answered ({result['source']})")
