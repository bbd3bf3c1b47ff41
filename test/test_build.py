"""The package builds and installs as a ROS user gets it, and the venv is the ROS prefix it claims.

- colcon build (ament_python) of a copy of the repo: executables in lib/vode_ros, share files, index.
- the venv (make venv): vode/vode_node on its bin/, share/vode_ros found through ament_index,
  tf2_msgs generated from msg/TFMessage.msg and usable by rclpy publishers and subscribers.
- config/fastdds_shm.xml: camera-sized best-effort images cross between two processes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _colcon() -> str | None:
    local = VENV_BIN / "colcon"
    return str(local) if local.exists() else shutil.which("colcon")


def _copy_sources(dst: Path) -> None:
    """The files git would ship (tracked, plus new files not ignored), else a filtered copy."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, capture_output=True, check=True, timeout=30).stdout
        files = [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.SubprocessError):
        files = []
    if not files:
        shutil.copytree(REPO, dst, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "install", "log", "*.egg-info", "__pycache__"))
        return
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory):
    colcon = _colcon()
    if colcon is None:
        pytest.skip("colcon is not installed (make venv installs colcon-common-extensions)")
    tmp = tmp_path_factory.mktemp("colcon")
    src = tmp / "src" / "vode_ros"
    src.mkdir(parents=True)
    _copy_sources(src)
    env = dict(os.environ, COLCON_HOME=str(tmp / "colcon_home"), PYTHONDONTWRITEBYTECODE="1")
    cmd = [colcon, "--log-base", str(tmp / "log"), "build", "--base-paths", str(src.parent),
           "--build-base", str(tmp / "build"), "--install-base", str(tmp / "install"),
           "--event-handlers", "console_direct-"]
    r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"colcon build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return tmp / "install", src


def test_colcon_build_installs_node_and_share_files(colcon_install):
    install, src = colcon_install
    pkg = install / "vode_ros"
    node = pkg / "lib" / "vode_ros" / "vode_node"
    assert node.is_file(), f"missing {node}; lib/vode_ros has {sorted(p.name for p in node.parent.glob('*'))}"
    assert os.access(node, os.X_OK), f"{node} is not executable"
    assert (pkg / "lib" / "vode_ros" / "vode").is_file()
    managed = pkg / "lib" / "vode_ros" / "vode_lifecycle_node"     # launch managed:=true
    assert managed.is_file() and os.access(managed, os.X_OK), f"missing {managed}"
    share = pkg / "share" / "vode_ros"
    assert (share / "package.xml").is_file()
    assert (share / "config" / "vode.yaml").is_file()
    assert (share / "config" / "fastdds_shm.xml").is_file()
    assert (pkg / "share" / "ament_index" / "resource_index" / "packages" / "vode_ros").is_file()
    if (src / "launch" / "vode.launch.py").is_file():
        assert (share / "launch" / "vode.launch.py").is_file()
    for model in sorted([*(src / "models").glob("*.onnx"), *(src / "models").glob("*.npz")]):
        assert (share / "models" / model.name).is_file()
    site = list(pkg.glob("lib/python3*/site-packages/vode_ros/__init__.py"))
    assert site, "the vode_ros python package was not installed"


def test_colcon_installed_node_entry_point_resolves(colcon_install):
    """The installed vode_node entry point is vode_ros.ros.node:main, importable from the install."""
    install, _ = colcon_install
    script = (install / "vode_ros" / "lib" / "vode_ros" / "vode_node").read_text()
    assert script.startswith("#!") and "vode_node" in script
    site = next((install / "vode_ros").glob("lib/python3*/site-packages"))
    code = textwrap.dedent("""
        from importlib.metadata import entry_points
        ep = [e for e in entry_points(group='console_scripts') if e.name == 'vode_node'][0]
        assert ep.value == 'vode_ros.ros.node:main', ep.value
        main = ep.load()
        import vode_ros
        print(vode_ros.__file__)
    """)
    env = dict(os.environ, PYTHONPATH=str(site))
    r = subprocess.run([sys.executable, "-c", code], cwd=install, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    assert str(site) in r.stdout, f"imported from {r.stdout.strip()}, not from the install"


def _in_make_venv() -> bool:
    return (Path(sys.prefix) / ".stamp").is_file()


@pytest.mark.skipif(not _in_make_venv(), reason="not running from a venv made by `make venv`")
def test_venv_has_both_executables_on_its_bin():
    for name in ("vode", "vode_node"):
        exe = VENV_BIN / name
        assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} missing"


@pytest.mark.skipif(not _in_make_venv(), reason="not running from a venv made by `make venv`")
def test_venv_is_an_ament_prefix_without_sourcing_anything(tmp_path):
    """A bare venv python (no AMENT_PREFIX_PATH given) finds share/vode_ros and tf2_msgs."""
    code = textwrap.dedent("""
        from ament_index_python.packages import get_package_share_directory as share
        from pathlib import Path
        assert (Path(share('vode_ros')) / 'config' / 'vode.yaml').is_file()
        assert (Path(share('tf2_msgs')) / 'msg' / 'TFMessage.msg').is_file()
        from tf2_msgs.msg import TFMessage
        print('ok')
    """)
    env = {k: v for k, v in os.environ.items()
           if k not in ("AMENT_PREFIX_PATH", "LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE")}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


TF_ROUNDTRIP = textwrap.dedent("""
    import time
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    rclpy.init()
    pub_node, sub_node = rclpy.create_node('tf_pub'), rclpy.create_node('tf_sub')
    got = []
    sub_node.create_subscription(TFMessage, '/tf', got.append, 10)
    pub = pub_node.create_publisher(TFMessage, '/tf', 10)
    ex = SingleThreadedExecutor()
    ex.add_node(pub_node)
    ex.add_node(sub_node)
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = 'odom', 'base_link'
    t.transform.translation.x, t.transform.rotation.w = 1.25, 1.0
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        pub.publish(TFMessage(transforms=[t]))
        ex.spin_once(timeout_sec=0.1)
    assert got, 'no TFMessage received'
    m = got[0].transforms[0]
    assert (m.header.frame_id, m.child_frame_id, m.transform.translation.x) == ('odom', 'base_link', 1.25)
    print('roundtrip ok')
    rclpy.shutdown()
""")


def test_tf2_msgs_publish_and_subscribe(ros_env, tmp_path):
    """tf2_msgs/TFMessage, generated into the venv, loads its typesupport and crosses rmw."""
    r = subprocess.run([sys.executable, "-c", TF_ROUNDTRIP], cwd=tmp_path, env=ros_env,
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and "roundtrip ok" in r.stdout, (r.stdout + r.stderr)[-3000:]


def test_large_images_cross_processes_with_the_shm_profile(ros_env):
    """30 best-effort 640x480 rgb8 images at 15 Hz, publisher and subscriber in two processes."""
    r = subprocess.run([sys.executable, str(REPO / "tools" / "check_large_images.py"),
                        "--only", "with", "--min-ratio", "0.8",
                        "--domain-id", ros_env["ROS_DOMAIN_ID"]],
                       env=ros_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


def test_a_test_deadlocked_in_c_with_the_gil_held_ends_the_run_with_its_stack(tmp_path):
    """The suite's own pytest settings (setup.cfg): a thread blocked in C with the GIL held is out
    of pytest-timeout's reach, so faulthandler's watchdog must end the run and name the test."""
    (tmp_path / "test_stuck.py").write_text(textwrap.dedent("""
        import ctypes

        def test_stuck_in_c():
            libc = ctypes.PyDLL(None)               # PyDLL: the call keeps the GIL
            mutex = ctypes.create_string_buffer(64)  # a zeroed pthread_mutex_t
            libc.pthread_mutex_lock(mutex)
            libc.pthread_mutex_lock(mutex)          # locks itself out for good

        def test_never_reached():
            pass
    """))
    # the repo's setup.cfg, only the watchdog shortened to keep the test quick
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-c", str(REPO / "setup.cfg"), "--rootdir", str(tmp_path),
                           "-o", "faulthandler_timeout=3", str(tmp_path / "test_stuck.py")],
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Timeout" in out and "test_stuck_in_c" in out, out
    assert "passed" not in out, out
