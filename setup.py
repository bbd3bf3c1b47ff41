"""vode_ros: an ament_python package that is also a plain pip-installable project.

- colcon build (ament_python): setup.cfg sends the executables to lib/vode_ros/, where
  `ros2 run vode_ros vode_node` and launch files look; data files go to share/vode_ros/.
- pip install -e . (the venv, `make venv`): pip writes the console scripts into the venv's bin/
  (vode, vode_node, vode_lifecycle_node on PATH); data_files land under <venv>/share/, so with
  AMENT_PREFIX_PATH=<venv> ament_index finds share/vode_ros as under colcon.
Python dependencies for the venv are pinned in requirements.txt; ROS ones are in package.xml.
"""
import os
import re
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vode_ros"
HERE = os.path.dirname(os.path.abspath(__file__))


def _version() -> str:
    with open(os.path.join(HERE, "package.xml"), encoding="utf-8") as f:
        return re.search(r"<version>([^<]+)</version>", f.read()).group(1).strip()


def _files(*patterns: str) -> list:
    """Relative paths matching the patterns (setup.py runs from the package root); none is fine."""
    found = set()
    for pattern in patterns:
        found.update(p for p in glob(pattern) if os.path.isfile(p))
    return sorted(found)


data_files = [
    ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
    ("share/" + PACKAGE, ["package.xml"]),
]
for folder, patterns in [
    ("launch", ["launch/*.py", "launch/*.xml", "launch/*.yaml"]),
    ("config", ["config/*.yaml", "config/*.yml", "config/*.rviz", "config/*.xml"]),
    ("models", ["models/*.onnx", "models/*.npz", "models/README.md"]),
]:
    files = _files(*patterns)
    if files:
        data_files.append((f"share/{PACKAGE}/{folder}", files))

setup(
    name=PACKAGE,
    version=_version(),
    packages=find_packages(exclude=["test", "test.*", "tools", "tools.*"]),
    data_files=data_files,
    python_requires=">=3.10",
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="vode_ros maintainers",
    maintainer_email="vode_ros@example.com",
    description="Monocular visual odometry and depth for ROS 2 (node + offline CLI)",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vode = vode_ros.cli:main",
            "vode_node = vode_ros.ros.node:main",
            "vode_lifecycle_node = vode_ros.ros.lifecycle_node:main",
        ],
    },
)
