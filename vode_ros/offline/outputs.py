"""The output folder of ``vode process`` / ``vode eval`` and the files written into it.

``AtomicOutput``: outputs are written into ``DIR/.partial-<pid>-<token>/`` and moved into DIR only
when the run has succeeded (``run.json`` last: a DIR with ``run.json`` is complete). A failed or
interrupted run removes its partial folder and leaves a previous complete run in DIR untouched.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from vode_ros.errors import VodeError

# Everything a run may write into DIR: a new run replaces all of them (an old metrics.json must
# not sit beside a new trajectory.txt).
OUTPUT_NAMES = ("trajectory.txt", "trajectory_map.txt", "depth", "timing.json", "metrics.json",
                "trajectory.png", "errors.png", "depth.png", "run.json")


class AtomicOutput:
    """Collects outputs in ``DIR/.partial-*`` and moves them into DIR on ``commit``."""

    def __init__(self, out_dir):
        self.out = Path(out_dir).expanduser()
        self.partial: Path | None = None
        self.created_out = False
        self.committed = False

    def __enter__(self) -> "AtomicOutput":
        if self.out.exists() and not self.out.is_dir():
            raise VodeError(f"--out {self.out} exists and is not a folder; expected a folder "
                            "(new or existing) for the outputs")
        self.created_out = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.partial = self.out / f".partial-{os.getpid()}-{secrets.token_hex(4)}"
            self.partial.mkdir()
        except OSError as err:
            raise VodeError(f"cannot create the output folder {self.out}: {err}") from None
        return self

    def path(self, name: str) -> Path:
        return self.partial / name

    def names(self) -> list[str]:
        """The outputs written so far, sorted."""
        return sorted(p.name for p in self.partial.iterdir())

    def commit(self) -> None:
        """Replace DIR's outputs by the new ones; ``run.json`` goes last."""
        names = [p.name for p in self.partial.iterdir()]
        for name in OUTPUT_NAMES:                 # a previous run's outputs, now superseded
            old = self.out / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
        for name in sorted(names, key=lambda n: n == "run.json"):
            os.replace(self.partial / name, self.out / name)
        self.partial.rmdir()
        self.committed = True

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.committed and self.partial is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            if self.created_out:
                try:
                    self.out.rmdir()              # only when empty
                except OSError:
                    pass
        return False


# -- JSON ----------------------------------------------------------------------------------------
def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def finite_or_none(obj):
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def write_json(path: Path, data) -> None:
    Path(path).write_text(json.dumps(finite_or_none(data), indent=2, default=_json_default)
                          + "\n")


# -- depth PNGs ----------------------------------------------------------------------------------
def write_depth_png(path: Path, depth: np.ndarray) -> None:
    """Depth (float, NaN invalid) as uint16 PNG of depth x 1000 (0 invalid, saturating)."""
    import cv2
    d = np.asarray(depth, np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(d) & (d > 0)
        v = np.where(ok, np.clip(np.round(d * 1000.0), 1, 65535), 0).astype(np.uint16)
    if not cv2.imwrite(str(path), v):
        raise VodeError(f"could not write depth image {path}")


def read_depth_png(path) -> np.ndarray:
    """A depth PNG written by ``vode process``: float32 (value / 1000), NaN where 0."""
    import cv2
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16:
        raise VodeError(f"{path} is not a 16-bit depth PNG written by `vode process`")
    d = raw.astype(np.float32) / 1000.0
    d[raw == 0] = np.nan
    return d


class DepthPngs:
    """Writes every ``every``-th frame's depth (position in the run) as ``<folder>/<frame
    index>.png``; ``every`` 0 writes none and makes no folder."""

    def __init__(self, folder: Path, every: int):
        self.folder = Path(folder)
        self.every = int(every)
        self.files = 0
        if self.every:
            self.folder.mkdir()

    def add(self, position: int, frame, est) -> None:
        if self.every and position % self.every == 0 and est.depth is not None:
            write_depth_png(self.folder / f"{frame.index}.png", est.depth)
            self.files += 1
