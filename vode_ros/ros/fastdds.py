"""Which environment variable names the Fast DDS XML profile (config/fastdds_shm.xml).

Fast DDS 3 (ROS 2 Kilted and later) reads ``FASTDDS_DEFAULT_PROFILES_FILE`` (and warns about the
older name when that is set); Fast DDS 2.x (Humble, Jazzy) reads only
``FASTRTPS_DEFAULT_PROFILES_FILE``. A process that sets the profile for a child sets the names
that child's Fast DDS reads.
"""
from __future__ import annotations

import importlib.metadata
import os

PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
LEGACY_PROFILE_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"
FAST_DDS_2_RELEASES = ("humble", "iron", "jazzy")


def fast_dds_2_here() -> bool:
    """Whether this python's ROS runs Fast DDS 2.x: the ROS wheels' ``ros-fastrtps`` package
    (Fast DDS 3's is ``ros-fastdds``), or a sourced ROS install of an older release."""
    try:
        return importlib.metadata.version("ros-fastrtps").startswith("2.")
    except importlib.metadata.PackageNotFoundError:
        return os.environ.get("ROS_DISTRO", "") in FAST_DDS_2_RELEASES


def profile_variables(fast_dds_2: bool | None = None) -> tuple[str, ...]:
    """The variable names to set for a process of this python's ROS (or of the given kind)."""
    legacy = fast_dds_2_here() if fast_dds_2 is None else fast_dds_2
    return (PROFILE_VARIABLE, LEGACY_PROFILE_VARIABLE) if legacy else (PROFILE_VARIABLE,)


def profile_set(environment) -> bool:
    """Whether the user chose a profile already (either name)."""
    return PROFILE_VARIABLE in environment or LEGACY_PROFILE_VARIABLE in environment
