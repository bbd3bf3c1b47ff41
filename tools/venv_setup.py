#!/usr/bin/env python3
"""Make the venv a ROS prefix for vode_ros, without sourcing anything. Run with the venv's python
(make venv does, after `pip install -e .`):

1. <site-packages>/vode_ros_env.pth: one line that Python runs at start-up; it puts the venv prefix
   first on AMENT_PREFIX_PATH when it is not there yet, so ament_index_python finds share/vode_ros
   and the generated tf2_msgs in every venv python process and its children. Same mechanism as the
   ROS wheels' ros_wheels_bootstrapper.pth, which puts <venv>/lib (the typesupport libraries,
   tf2_msgs' included) on LD_LIBRARY_PATH. bin/activate gets the same export, for shells.

2. share/: setup.py's data_files (package.xml, launch/, config/, models/, the ament index marker)
   linked into the venv prefix, as `colcon build --symlink-install` would. An editable wheel
   (PEP 660) installs no data_files, and links keep edits to config/launch live.
"""
import os
import runpy
import shutil
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "vode_ros"
PTH_NAME = "vode_ros_env.pth"
PTH_LINE = (
    "import os, sys; _p = [x for x in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if x]; "
    "sys.prefix in _p or os.environ.__setitem__('AMENT_PREFIX_PATH', "
    "os.pathsep.join([sys.prefix] + _p))\n"
)
ACTIVATE_MARK = "# vode_ros: the venv is a ROS prefix"
ACTIVATE_SNIPPET = (
    f"\n{ACTIVATE_MARK}\n"
    'case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; '
    '*) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac\n'
)


def install_env_hook(prefix: Path) -> None:
    pth = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    if not pth.exists() or pth.read_text() != PTH_LINE:
        pth.write_text(PTH_LINE)
    activate = prefix / "bin" / "activate"
    if activate.exists() and ACTIVATE_MARK not in activate.read_text():
        with activate.open("a") as f:
            f.write(ACTIVATE_SNIPPET)


def data_files_of_setup_py() -> list:
    """setup.py's data_files, read by running it with setuptools.setup captured."""
    import setuptools

    captured = {}
    real_setup = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    cwd = os.getcwd()
    try:
        os.chdir(REPO)  # setup.py globs relative paths, as under pip and colcon
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    finally:
        os.chdir(cwd)
        setuptools.setup = real_setup
    return captured.get("data_files", [])


def link_share(prefix: Path) -> int:
    share_pkg = prefix / "share" / PACKAGE
    if share_pkg.is_symlink() or share_pkg.is_file():
        share_pkg.unlink()
    elif share_pkg.exists():
        shutil.rmtree(share_pkg)  # drop links to files that are gone
    count = 0
    for dest, files in data_files_of_setup_py():
        target_dir = prefix / dest
        target_dir.mkdir(parents=True, exist_ok=True)
        for rel in files:
            src = REPO / rel
            dst = target_dir / Path(rel).name
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            if src.stat().st_size == 0 and dest.startswith("share/ament_index"):
                dst.touch()  # index markers: plain empty files, like a real install
            else:
                dst.symlink_to(src)
            count += 1
    return count


def main() -> int:
    if sys.prefix == sys.base_prefix:
        print("venv_setup: run me with the venv's python", file=sys.stderr)
        return 1
    prefix = Path(sys.prefix)
    install_env_hook(prefix)
    n = link_share(prefix)
    print(f"venv_setup: AMENT_PREFIX_PATH hook in place; {n} data files linked under {prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main())
