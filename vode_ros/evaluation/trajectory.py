"""Trajectory files: TUM (``t tx ty tz qx qy qz qw``) and KITTI (12 numbers of a 3x4 matrix).

Poses are 4x4 homogeneous matrices (N, 4, 4); stamps are integer nanoseconds. TUM stamps are
written in seconds with all nine decimals, so a stamp survives a write/read round trip exactly
(``1305031102.175304000``); they are read back exactly as well (decimal arithmetic, no float).
KITTI files carry no stamps: one line per pose, row-major ``r11 r12 r13 tx r21 ... tz``.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from vode_ros.errors import VodeError
from vode_ros.files import atomic_write

TUM_HEADER = "# timestamp tx ty tz qx qy qz qw"


class TrajectoryFileError(VodeError):
    """A trajectory file is missing or not in the expected format."""


def format_stamp(stamp_ns: int) -> str:
    """Integer nanoseconds as seconds with nine decimals (exact)."""
    ns = int(stamp_ns)
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return f"{sign}{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def parse_stamp(text: str) -> int:
    """Seconds (decimal text, any precision) to integer nanoseconds, exactly."""
    try:
        return int((Decimal(text.strip()) * 1_000_000_000).to_integral_value())
    except InvalidOperation:
        raise ValueError(f"'{text}' is not a time in seconds") from None


def _check_poses(poses) -> np.ndarray:
    P = np.asarray(poses, dtype=float)
    if P.ndim != 3 or P.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"poses must be an (N, 4, 4) or (N, 3, 4) array, got shape {P.shape}")
    return P


def _lines(path: Path, kind: str) -> list[tuple[int, list[str]]]:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise TrajectoryFileError(f"could not read {kind} trajectory {path}: {err}") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            out.append((n, [t for t in re.split(r"[\s,]+", line) if t]))
    return out


# -- TUM ----------------------------------------------------------------------------------------
def tum_lines(stamps_ns, poses) -> list[str]:
    """One TUM line per pose (no header)."""
    P = _check_poses(poses)
    stamps = np.asarray(stamps_ns).reshape(-1)
    if len(stamps) != len(P):
        raise ValueError(f"{len(stamps)} stamps for {len(P)} poses")
    if len(P) == 0:
        return []
    q = Rotation.from_matrix(P[:, :3, :3]).as_quat()          # x y z w
    q = np.where(q[:, 3:4] < 0, -q, q)                        # one sign convention: qw >= 0
    rows = []
    for s, t, qq in zip(stamps, P[:, :3, 3], q, strict=True):
        rows.append(f"{format_stamp(int(s))} " + " ".join(f"{v:.9g}" for v in (*t, *qq)))
    return rows


def write_tum(path, stamps_ns, poses, header: bool = True) -> Path:
    """Write a TUM trajectory (atomically: a temporary file renamed into place)."""
    lines = ([TUM_HEADER] if header else []) + tum_lines(stamps_ns, poses)
    atomic_write(path, "\n".join(lines) + "\n")
    return Path(path)


def read_tum(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory -> (stamps_ns int64 (N,), poses (N, 4, 4)) in file order."""
    stamps, rows = [], []
    for n, toks in _lines(path, "TUM"):
        if len(toks) != 8:
            raise TrajectoryFileError(f"{path} line {n} has {len(toks)} fields; expected the TUM "
                                      "format 't tx ty tz qx qy qz qw' (8 numbers)")
        try:
            stamps.append(parse_stamp(toks[0]))
            rows.append([float(v) for v in toks[1:]])
        except ValueError:
            raise TrajectoryFileError(f"{path} line {n} is not numeric; expected the TUM format "
                                      "'t tx ty tz qx qy qz qw'") from None
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 4, 4))
    vals = np.asarray(rows)
    norms = np.linalg.norm(vals[:, 3:7], axis=1)
    if np.any(~np.isfinite(vals)) or np.any(norms < 1e-9):
        raise TrajectoryFileError(f"{path} holds a non-finite value or a zero quaternion; "
                                  "expected finite numbers and unit quaternions qx qy qz qw")
    poses = np.tile(np.eye(4), (len(vals), 1, 1))
    poses[:, :3, :3] = Rotation.from_quat(vals[:, 3:7] / norms[:, None]).as_matrix()
    poses[:, :3, 3] = vals[:, :3]
    return np.asarray(stamps, dtype=np.int64), poses


# -- KITTI --------------------------------------------------------------------------------------
def write_kitti(path, poses) -> Path:
    """Write a KITTI odometry pose file: 12 numbers (3x4, row-major) per line."""
    P = _check_poses(poses)
    lines = [" ".join(f"{v:.9g}" for v in p[:3, :4].reshape(-1)) for p in P]
    atomic_write(path, "\n".join(lines) + ("\n" if lines else ""))
    return Path(path)


def read_kitti(path) -> np.ndarray:
    """Read a KITTI odometry pose file -> poses (N, 4, 4)."""
    rows = []
    for n, toks in _lines(path, "KITTI"):
        if len(toks) != 12:
            raise TrajectoryFileError(f"{path} line {n} has {len(toks)} numbers; expected the "
                                      "KITTI format (12 numbers: a 3x4 matrix row by row)")
        try:
            rows.append([float(v) for v in toks])
        except ValueError:
            raise TrajectoryFileError(f"{path} line {n} is not numeric; expected 12 numbers of "
                                      "a 3x4 matrix") from None
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    if rows:
        poses[:, :3, :4] = np.asarray(rows).reshape(-1, 3, 4)
    return poses
