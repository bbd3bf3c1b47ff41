"""Where a bag is: ``OUT.mcap`` is one MCAP file, ``OUT.db3`` one SQLite3 file (rosbag2 metadata
inside the file in both cases), anything else a rosbag2 folder ``OUT/`` with ``metadata.yaml``
and its ``.mcap`` (or ``.db3``) file."""
from __future__ import annotations

from pathlib import Path

from vode_ros.errors import VodeError

STORAGES = ("mcap", "sqlite3")
SUFFIX_STORAGE = {".mcap": "mcap", ".db3": "sqlite3"}
BAG_SUFFIXES = tuple(SUFFIX_STORAGE)


class BagError(VodeError):
    """A bag cannot be written, opened or read."""


def resolve_output(path, storage: str | None = None) -> tuple[Path, str, bool]:
    """(final path, storage, single file?) for an output bag path."""
    p = Path(path).expanduser()
    if storage is not None and storage not in STORAGES:
        raise BagError(f"bag storage '{storage}' is unknown; expected one of "
                       f"{', '.join(STORAGES)}")
    by_suffix = SUFFIX_STORAGE.get(p.suffix.lower())
    if by_suffix is not None:
        if storage is not None and storage != by_suffix:
            want = ".mcap" if storage == "mcap" else ".db3"
            raise BagError(f"output {p} ends in {p.suffix} (a {by_suffix} file) but storage "
                           f"'{storage}' was asked for; name it OUT{want}, or give a folder "
                           "name (no suffix) for a rosbag2 folder")
        return p, by_suffix, True
    return p, storage or "mcap", False


def looks_like_bag_folder(path: Path) -> bool:
    return (path / "metadata.yaml").is_file() or \
        any(p.suffix in BAG_SUFFIXES for p in path.iterdir())


def bag_target(path: Path) -> Path | None:
    """What rosbags should open for ``path``, or None when it is no bag."""
    if path.is_file() and path.suffix.lower() in BAG_SUFFIXES:
        return path
    if path.is_dir():
        if (path / "metadata.yaml").is_file():
            return path
        files = [p for p in path.iterdir() if p.suffix.lower() in BAG_SUFFIXES]
        if len(files) == 1:
            return files[0]
    return None


def existing_bag(path) -> Path:
    """``bag_target`` of a bag that must exist; ``BagError`` when there is none."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BagError(f"bag {p} does not exist; expected a .mcap or .db3 file or a rosbag2 "
                       "folder with metadata.yaml")
    target = bag_target(p)
    if target is None:
        raise BagError(f"{p} is not a ROS 2 bag; expected a .mcap or .db3 file or a rosbag2 "
                       "folder with metadata.yaml")
    return target


def storage_of(target: Path) -> str:
    files = [target] if target.is_file() else list(target.iterdir())
    suffixes = {f.suffix.lower() for f in files}
    return "mcap" if ".mcap" in suffixes else "sqlite3" if ".db3" in suffixes else "unknown"


def read_error(target: Path, err: Exception) -> BagError:
    """A clear error for a bag rosbags cannot read (truncated, garbage, wrong metadata)."""
    hint = ""
    if target.suffix == ".mcap" or (target.is_dir() and any(target.glob("*.mcap"))):
        hint = ("; an MCAP file cut short (recording killed) lacks its summary: recover it with "
                "`mcap recover in.mcap -o fixed.mcap` (the mcap CLI)")
    elif target.suffix == ".db3" or (target.is_dir() and any(target.glob("*.db3"))):
        hint = ("; a .db3 folder without a valid metadata.yaml can be repaired with "
                "`ros2 bag reindex <folder>`")
    return BagError(f"could not read ROS 2 bag {target}: {type(err).__name__}: {err}. Expected "
                    "a complete rosbag2 bag (a .mcap/.db3 file, or a folder with metadata.yaml "
                    f"and its files){hint}")
