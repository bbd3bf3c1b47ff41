"""What every dataset reader shares: the Sequence API, frame selection, and small file helpers.

A ``Sequence`` knows its frames' stamps and camera at open time and loads an image only when the
frame is asked for, so a long recording never sits in memory. Readers (one module per layout)
subclass ``Sequence`` and implement ``_read_image`` (and, where the layout has them,
``_read_depth`` and ``_load_gt_poses``).

Conventions of every reader:
- images are HxWx3 uint8 RGB (grey images are replicated to three channels), after undistortion
  where the layout ships a distortion model, and ``camera`` describes them as delivered;
- ``gt_pose`` is the 4x4 camera-to-world pose of the camera optical frame (z forward, x right,
  y down) in metres; ``gt_depth`` is HxW float32 metres with NaN where invalid;
- stamps are integer nanoseconds.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from vode_ros.camera import Camera, Frame
from vode_ros.errors import VodeError

# Largest gap between an image stamp and the ground-truth sample associated to it (TUM's own
# associate.py uses 20 ms).
MAX_GT_DT_NS = 20_000_000


class DatasetError(VodeError):
    """A sequence (folder, video or bag) cannot be opened or read.

    ``kind`` names the fault (``missing``, ``layout``, ``frames``, ``intrinsics``, ``format``,
    ``topic``, ``bag``) for callers that want to react to one kind.
    """

    def __init__(self, message: str, kind: str = "dataset"):
        super().__init__(message)
        self.kind = kind


@dataclass
class SequenceFrame:
    """One frame of a sequence.

    ``index`` is the frame's position in the underlying recording (with ``frames="10:20"`` the
    first frame has index 10). ``gt_pose`` is camera-to-world (optical frame) or None;
    ``gt_depth`` is HxW float32 metres, NaN where invalid, or None where the layout has none.
    """

    index: int
    stamp_ns: int
    image: np.ndarray
    camera: Camera
    gt_pose: np.ndarray | None = None
    gt_depth: np.ndarray | None = None

    def frame(self) -> Frame:
        """The pipeline's input type (stamp, image, camera)."""
        return Frame(int(self.stamp_ns), self.image, self.camera)


def parse_frames(frames, n: int, where: str = "the sequence") -> range:
    """Frame selection ``"A:B"`` or ``"A:B:S"`` (python slice semantics) over ``n`` frames."""
    if frames is None:
        return range(n)
    if isinstance(frames, slice):
        sl = frames
    elif isinstance(frames, range):
        sl = slice(frames.start, frames.stop, frames.step)
    elif isinstance(frames, str):
        text = frames.strip()
        parts = text.split(":") if text else [""]
        if not 1 < len(parts) <= 3:
            raise DatasetError(f"frame selection '{frames}' is not understood; expected 'A:B' "
                               "or 'A:B:S' (python slice, e.g. '0:100', '100:', ':-1', "
                               "'::2')", "frames")
        try:
            vals = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            raise DatasetError(f"frame selection '{frames}' has a non-integer part; expected "
                               "'A:B' or 'A:B:S' with integers (e.g. '0:100:2')",
                               "frames") from None
        if len(vals) == 3 and vals[2] is not None and vals[2] <= 0:
            raise DatasetError(f"frame selection '{frames}' has step {vals[2]}; expected a "
                               "positive step", "frames")
        sl = slice(*vals)
    else:
        raise DatasetError(f"frame selection must be a string 'A:B[:S]' or a slice, got "
                           f"{type(frames).__name__}", "frames")
    selected = range(n)[sl]
    if len(selected) == 0:
        raise DatasetError(f"frame selection '{frames}' selects no frame of the {n} in {where}; "
                           f"expected a range within 0:{n}", "frames")
    return selected


class Sequence:
    """A lazily loaded image sequence with camera, stamps and (optional) ground truth."""

    layout = "unknown"

    def __init__(self, path: Path, name: str, camera: Camera, stamps_ns, frames=None):
        self.path = Path(path)
        self.name = name
        try:
            self.camera = camera.validate()
        except VodeError as err:
            raise DatasetError(f"{self.path}: the camera intrinsics are unusable: {err}",
                               "intrinsics") from None
        self._stamps_all = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        self._selected = parse_frames(frames, len(self._stamps_all), str(self.path))
        self._gt_cache: np.ndarray | None = None
        self._gt_loaded = False

    # -- what a reader implements ----------------------------------------------------------------
    def _read_image(self, raw: int) -> np.ndarray:
        raise NotImplementedError

    def _read_depth(self, raw: int) -> np.ndarray | None:
        return None

    def _load_gt_poses(self) -> np.ndarray | None:
        """(n_all, 4, 4) camera-to-world poses, NaN where a frame has none; or None."""
        return None

    def _iter_images(self, raws: Iterable[int]) -> Iterator[np.ndarray]:
        """Images of ``raws`` (increasing); readers with sequential access override this."""
        for raw in raws:
            yield self._read_image(raw)

    # -- the public API --------------------------------------------------------------------------
    @property
    def indices(self) -> range:
        """Indices (in the underlying recording) of the selected frames."""
        return self._selected

    @property
    def stamps_ns(self) -> np.ndarray:
        """Stamps of the selected frames, int64 nanoseconds."""
        return self._stamps_all[np.asarray(self._selected, dtype=np.int64)]

    @property
    def has_ground_truth(self) -> bool:
        return self._all_gt() is not None

    def __len__(self) -> int:
        return len(self._selected)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} '{self.name}' layout={self.layout} frames={len(self)} "
                f"camera={self.camera.width}x{self.camera.height} fx={self.camera.fx:.1f}>")

    def __iter__(self) -> Iterator[SequenceFrame]:
        raws = list(self._selected)
        for raw, image in zip(raws, self._iter_images(raws), strict=True):
            yield self._make_frame(raw, image)

    def __getitem__(self, i: int) -> SequenceFrame:
        """The ``i``-th selected frame (random access; iterate for sequential reading)."""
        if not isinstance(i, (int, np.integer)):
            raise TypeError("a Sequence is indexed by an int position")
        raw = self._selected[int(i)]
        return self._make_frame(raw, self._read_image(raw))

    def ground_truth(self) -> tuple[np.ndarray, np.ndarray]:
        """(stamps_ns (N,), poses (N, 4, 4)) of the selected frames that have a gt pose."""
        gt = self._all_gt()
        if gt is None:
            return np.zeros(0, np.int64), np.zeros((0, 4, 4))
        sel = np.asarray(self._selected, dtype=np.int64)
        poses = gt[sel]
        ok = np.all(np.isfinite(poses.reshape(len(sel), -1)), axis=1)
        return self._stamps_all[sel][ok], poses[ok]

    # -- helpers ---------------------------------------------------------------------------------
    def _all_gt(self) -> np.ndarray | None:
        if not self._gt_loaded:
            self._gt_cache = self._load_gt_poses()
            self._gt_loaded = True
        return self._gt_cache

    def _make_frame(self, raw: int, image: np.ndarray) -> SequenceFrame:
        gt = self._all_gt()
        pose = None
        if gt is not None and np.all(np.isfinite(gt[raw])):
            pose = gt[raw].copy()
        return SequenceFrame(index=int(raw), stamp_ns=int(self._stamps_all[raw]), image=image,
                             camera=self.camera, gt_pose=pose, gt_depth=self._read_depth(raw))


# -- numbers and stamps --------------------------------------------------------------------------
def seconds_to_ns(text: str) -> int:
    """Exact conversion of a decimal seconds string (``1305031102.175304``) to nanoseconds."""
    try:
        return int((Decimal(text.strip()) * 1_000_000_000).to_integral_value())
    except InvalidOperation:
        raise ValueError(f"'{text}' is not a time in seconds") from None


def data_lines(path: Path) -> list[list[str]]:
    """Non-empty, non-comment lines of a text file split on whitespace and commas."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        raise DatasetError(f"could not read {path}: {err}", "missing") from None
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append([tok for tok in re.split(r"[\s,]+", line) if tok])
    return out


def read_tum_trajectory(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """TUM trajectory ``t tx ty tz qx qy qz qw`` -> (stamps_ns (N,), poses (N, 4, 4)), sorted."""
    stamps, rows = [], []
    for n, toks in enumerate(data_lines(path)):
        if len(toks) < 8:
            raise DatasetError(f"{path} line {n + 1} has {len(toks)} fields; expected the TUM "
                               "trajectory format 't tx ty tz qx qy qz qw'", "format")
        try:
            stamps.append(seconds_to_ns(toks[0]))
            rows.append([float(v) for v in toks[1:8]])
        except ValueError:
            raise DatasetError(f"{path} line {n + 1} is not numeric; expected the TUM "
                               "trajectory format 't tx ty tz qx qy qz qw'", "format") from None
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 4, 4))
    stamps_a = np.asarray(stamps, dtype=np.int64)
    vals = np.asarray(rows)
    poses = np.tile(np.eye(4), (len(vals), 1, 1))
    quat = vals[:, 3:7]
    norms = np.linalg.norm(quat, axis=1)
    if np.any(norms < 1e-6):
        raise DatasetError(f"{path} has a zero quaternion; expected unit quaternions "
                           "qx qy qz qw", "format")
    poses[:, :3, :3] = Rotation.from_quat(quat / norms[:, None]).as_matrix()
    poses[:, :3, 3] = vals[:, :3]
    order = np.argsort(stamps_a, kind="stable")
    return stamps_a[order], poses[order]


def associate_nearest(query_ns, ref_ns, max_dt_ns: int = MAX_GT_DT_NS) -> np.ndarray:
    """For each query stamp the index of the nearest reference stamp within ``max_dt_ns``, or -1.
    ``ref_ns`` must be sorted."""
    q = np.asarray(query_ns, dtype=np.int64)
    ref = np.asarray(ref_ns, dtype=np.int64)
    if len(ref) == 0:
        return np.full(len(q), -1, dtype=np.int64)
    hi = np.clip(np.searchsorted(ref, q), 0, len(ref) - 1)
    lo = np.clip(hi - 1, 0, len(ref) - 1)
    pick = np.where(np.abs(ref[lo] - q) <= np.abs(ref[hi] - q), lo, hi)
    return np.where(np.abs(ref[pick] - q) <= max_dt_ns, pick, -1)


def poses_at(query_ns, ref_ns, ref_poses, max_dt_ns: int = MAX_GT_DT_NS) -> np.ndarray:
    """Poses at the query stamps: interpolated (linear translation, slerp rotation) between the
    two reference samples around a query when the nearer is within ``max_dt_ns``, the nearest
    one at the ends, NaN where no sample is within ``max_dt_ns``. ``ref_ns`` must be sorted."""
    q = np.asarray(query_ns, dtype=np.int64)
    ref = np.asarray(ref_ns, dtype=np.int64)
    out = np.full((len(q), 4, 4), np.nan)
    near = associate_nearest(q, ref, max_dt_ns)
    ok = near >= 0
    if not np.any(ok):
        return out
    out[ok] = ref_poses[near[ok]]
    hi = np.searchsorted(ref, q)
    inner = ok & (hi > 0) & (hi < len(ref))
    inner &= (ref[np.clip(hi, 0, len(ref) - 1)] - ref[np.clip(hi - 1, 0, len(ref) - 1)]) \
        <= 2 * max_dt_ns
    idx = np.nonzero(inner)[0]
    if len(idx):
        i1 = hi[idx]
        i0 = i1 - 1
        span = (ref[i1] - ref[i0]).astype(float)
        alpha = np.where(span > 0, (q[idx] - ref[i0]) / np.where(span > 0, span, 1.0), 0.0)
        P0, P1 = ref_poses[i0], ref_poses[i1]
        R0 = Rotation.from_matrix(P0[:, :3, :3])
        R1 = Rotation.from_matrix(P1[:, :3, :3])
        rel = (R0.inv() * R1).as_rotvec()
        R = R0 * Rotation.from_rotvec(rel * alpha[:, None])
        res = np.tile(np.eye(4), (len(idx), 1, 1))
        res[:, :3, :3] = R.as_matrix()
        res[:, :3, 3] = P0[:, :3, 3] + alpha[:, None] * (P1[:, :3, 3] - P0[:, :3, 3])
        out[idx] = res
    return out


# -- images --------------------------------------------------------------------------------------
def read_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (grey replicated, 16-bit scaled by OpenCV)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        what = "does not exist" if not Path(path).exists() else \
            "could not be decoded (truncated or not an image?)"
        raise DatasetError(f"image {path} {what}; expected a readable PNG or JPEG file", "format")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_depth_png(path: Path, scale: float, invalid=(0,)) -> np.ndarray:
    """A uint16 depth PNG as float32 metres (value / scale), NaN where the value is invalid."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2 or raw.dtype != np.uint16:
        got = "an unreadable file" if raw is None else f"a {raw.dtype} image of shape {raw.shape}"
        raise DatasetError(f"depth image {path} is {got}; expected a single-channel uint16 PNG",
                           "format")
    depth = raw.astype(np.float32) / np.float32(scale)
    bad = np.isin(raw, np.asarray(invalid, dtype=np.uint16))
    depth[bad] = np.nan
    return depth


def image_files(folder: Path) -> list[Path]:
    """PNG/JPEG files of a folder, sorted by name."""
    exts = {".png", ".jpg", ".jpeg"}
    try:
        return sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in exts
                       and p.is_file()), key=lambda p: p.name)
    except OSError:
        return []


# -- intrinsics files ----------------------------------------------------------------------------
@dataclass
class Intrinsics:
    """Pinhole intrinsics with optional distortion as a file gives them (size may be unknown)."""

    K: np.ndarray
    dist: np.ndarray | None = None       # OpenCV order k1 k2 p1 p2 [k3 ...], or fisheye k1..k4
    width: int | None = None
    height: int | None = None
    model: str = "radtan"                # "radtan" (OpenCV plumb_bob) or "equidistant"


INTRINSICS_FORMATS = ("a text file with one line 'fx fy cx cy [width height]' (optionally a "
                      "second line 'k1 k2 p1 p2 [k3]'), or a 3x3 K matrix, or a YAML file with "
                      "fx/fy/cx/cy (plus width/height), a ROS camera_info YAML (camera_matrix), "
                      "or a Kalibr/EuRoC sensor.yaml (intrinsics, resolution)")


def _is_K(v) -> bool:
    return len(v) == 9 and v[1] == 0 and v[3] == 0 and v[6] == 0 and v[7] == 0 and v[8] == 1


def _k_from(fx, fy, cx, cy) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=float)


def read_intrinsics(path: Path) -> Intrinsics:
    """Read an intrinsics file (see ``INTRINSICS_FORMATS``)."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return _read_intrinsics_yaml(path)
    try:
        lines = [[float(t) for t in toks] for toks in data_lines(path)]
    except ValueError:
        raise DatasetError(f"intrinsics file {path} has non-numeric values; expected "
                           f"{INTRINSICS_FORMATS}", "intrinsics") from None
    flat = [v for line in lines for v in line]
    intr = None
    rest: list[list[float]] = []
    if len(lines) >= 3 and all(len(r) == 3 for r in lines[:3]) and _is_K(lines[0] + lines[1]
                                                                          + lines[2]):
        intr = Intrinsics(np.asarray(lines[0] + lines[1] + lines[2]).reshape(3, 3))
        rest = lines[3:]
    elif lines and len(lines[0]) == 9 and _is_K(lines[0]):
        intr = Intrinsics(np.asarray(lines[0]).reshape(3, 3))
        rest = lines[1:]
    elif lines and len(lines[0]) in (4, 6):
        fx, fy, cx, cy = lines[0][:4]
        intr = Intrinsics(_k_from(fx, fy, cx, cy))
        if len(lines[0]) == 6:
            intr.width, intr.height = int(lines[0][4]), int(lines[0][5])
        rest = lines[1:]
    elif lines and len(lines[0]) in (8, 9, 10, 11) and not _is_K(lines[0]):
        # TUM / ORB-SLAM style single line 'fx fy cx cy d0 d1 d2 d3 [d4]' (+ optional size)
        v = lines[0]
        intr = Intrinsics(_k_from(*v[:4]), dist=np.asarray(v[4:], float))
        rest = lines[1:]
    if intr is None:
        raise DatasetError(f"intrinsics file {path} holds {len(flat)} numbers in {len(lines)} "
                           f"lines, which is no known layout; expected {INTRINSICS_FORMATS}",
                           "intrinsics")
    for r in rest:
        if len(r) == 2 and intr.width is None:
            intr.width, intr.height = int(r[0]), int(r[1])
        elif len(r) in (4, 5, 8) and intr.dist is None:
            intr.dist = np.asarray(r, float)
    return intr


def _num(d: dict, *keys):
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def _matrix_data(v):
    if isinstance(v, dict):
        v = v.get("data")
    if v is None:
        return None
    return np.asarray(v, dtype=float).reshape(-1)


def load_yaml(path: Path) -> dict:
    """A YAML file, tolerating OpenCV's ``%YAML:1.0`` directive and ``!!opencv-matrix`` tags."""
    import yaml
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        raise DatasetError(f"could not read {path}: {err}", "missing") from None
    text = "\n".join(line for line in text.splitlines() if not line.startswith("%"))
    text = re.sub(r"!!opencv-matrix", "", text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DatasetError(f"{path} is not valid YAML ({err})", "format") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} is not a YAML mapping", "format")
    return data


def _read_intrinsics_yaml(path: Path) -> Intrinsics:
    d = load_yaml(path)
    flat = dict(d)
    for prefix in ("Camera.", "Camera1."):        # ORB-SLAM settings files
        for k, v in d.items():
            if isinstance(k, str) and k.startswith(prefix):
                flat.setdefault(k[len(prefix):], v)
    K = None
    dist = None
    width = _num(flat, "width", "image_width")
    height = _num(flat, "height", "image_height")
    model = "radtan"
    if all(k in flat for k in ("fx", "fy", "cx", "cy")):
        K = _k_from(float(flat["fx"]), float(flat["fy"]), float(flat["cx"]), float(flat["cy"]))
        ks = [flat.get(k) for k in ("k1", "k2", "p1", "p2", "k3")]
        if any(v is not None for v in ks[:4]):
            dist = np.asarray([float(v or 0.0) for v in ks], float)
    elif _num(flat, "camera_matrix", "K", "k") is not None:
        data = _matrix_data(_num(flat, "camera_matrix", "K", "k"))
        if data is None or data.size != 9:
            raise DatasetError(f"{path}: camera_matrix has {0 if data is None else data.size} "
                               "values; expected 9 (row-major 3x3)", "intrinsics")
        K = data.reshape(3, 3)
    elif "intrinsics" in flat:                         # Kalibr / EuRoC sensor.yaml
        vals = _matrix_data(flat["intrinsics"])
        if vals is None or vals.size != 4:
            raise DatasetError(f"{path}: 'intrinsics' should be [fu, fv, cu, cv]", "intrinsics")
        K = _k_from(*vals)
        res = flat.get("resolution")
        if res is not None and len(res) == 2:
            width, height = int(res[0]), int(res[1])
    if K is None:
        raise DatasetError(f"{path} has no camera intrinsics that vode understands; expected "
                           f"{INTRINSICS_FORMATS}", "intrinsics")
    if dist is None:
        raw = _num(flat, "distortion_coefficients", "D", "d", "dist")
        data = _matrix_data(raw)
        if data is not None and data.size:
            dist = data
    dm = str(_num(flat, "distortion_model") or "").lower()
    if dm in ("equidistant", "fisheye", "kannala_brandt"):
        model = "equidistant"
    return Intrinsics(np.asarray(K, float), dist, None if width is None else int(width),
                      None if height is None else int(height), model)


def find_intrinsics_file(candidates: Iterable[Path]) -> Path | None:
    for c in candidates:
        if c.is_file():
            return c
    return None


class Undistorter:
    """Undistortion maps computed once; the new pinhole camera keeps only valid pixels (alpha=0)."""

    def __init__(self, K: np.ndarray, dist: np.ndarray, width: int, height: int,
                 model: str = "radtan"):
        size = (int(width), int(height))
        K = np.asarray(K, float)
        dist = np.asarray(dist, float).reshape(-1)
        if model == "equidistant":
            D = np.zeros(4)
            D[:min(4, dist.size)] = dist[:4]
            newK = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
                K, D, size, np.eye(3), balance=0.0)
            self.map1, self.map2 = cv2.fisheye.initUndistortRectifyMap(
                K, D, np.eye(3), newK, size, cv2.CV_16SC2)
        else:
            newK, _ = cv2.getOptimalNewCameraMatrix(K, dist, size, 0.0, size)
            self.map1, self.map2 = cv2.initUndistortRectifyMap(K, dist, None, newK, size,
                                                               cv2.CV_16SC2)
        self.camera = Camera.from_K(newK, *size)

    def image(self, img: np.ndarray) -> np.ndarray:
        return cv2.remap(img, self.map1, self.map2, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT)

    def depth(self, depth: np.ndarray) -> np.ndarray:
        return cv2.remap(depth, self.map1, self.map2, cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))


def camera_and_undistorter(intr: Intrinsics, width: int, height: int,
                           source: str = "") -> tuple[Camera, Undistorter | None]:
    """The delivered camera for images of ``width`` x ``height`` and, when the intrinsics carry
    a non-zero distortion, the undistorter producing those images. Intrinsics given for another
    resolution are scaled to the image size."""
    K = np.asarray(intr.K, float)
    if intr.width and intr.height and (intr.width, intr.height) != (width, height):
        cam = Camera.from_K(K, intr.width, intr.height).scaled(width, height)
        K = cam.K
    cam = Camera.from_K(K, width, height)
    try:
        cam.validate()
    except VodeError as err:
        raise DatasetError(f"intrinsics from {source or 'the camera file'} are unusable: {err}",
                           "intrinsics") from None
    if intr.dist is not None and np.any(np.abs(np.asarray(intr.dist, float)) > 0):
        und = Undistorter(K, intr.dist, width, height, intr.model)
        return und.camera, und
    return cam, None


def finite_or_nan(T: np.ndarray) -> np.ndarray:
    return T if np.all(np.isfinite(T)) else np.full((4, 4), np.nan)


def fps_stamps(n: int, fps: float, start_ns: int = 0) -> np.ndarray:
    """Stamps of ``n`` frames at a constant rate."""
    if not (fps > 0 and math.isfinite(fps)):
        fps = 30.0
    return start_ns + np.round(np.arange(n) * (1e9 / fps)).astype(np.int64)
