"""EuRoC MAV / ASL layout: ``mav0/cam0/{data.csv, data/<stamp>.png, sensor.yaml}``.

``data.csv`` lists ``timestamp [ns],filename``. ``sensor.yaml`` gives the pinhole ``intrinsics``
(fu, fv, cu, cv), ``distortion_model`` (radial-tangential or equidistant) with its
``distortion_coefficients``, ``resolution`` and ``T_BS`` (camera to body/IMU). Images are
undistorted once-computed maps; the reported camera is OpenCV's optimal new camera matrix with
alpha = 0 (only valid pixels).

Ground truth, first found:
1. a TUM trajectory beside ``mav0`` whose name has the stream and ``tum`` in it
   (``groundtruth_cam0_tum.txt``), or ``groundtruth*_tum.txt`` without ``body`` in the name:
   camera poses as they are;
2. ``mav0/state_groundtruth_estimate0/data.csv`` (body poses: ``t[ns], p xyz, q wxyz, ...``);
3. a TUM trajectory beside ``mav0`` with ``body`` in its name (body poses).
Body poses become camera poses with ``T_WC = T_WB @ T_BS``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from vode_ros.datasets.base import (
    MAX_GT_DT_NS,
    DatasetError,
    Sequence,
    camera_and_undistorter,
    data_lines,
    load_yaml,
    poses_at,
    read_intrinsics,
    read_rgb,
    read_tum_trajectory,
)


def mav0_of(path: Path) -> Path | None:
    if path.name == "mav0" and path.is_dir():
        return path
    if (path / "mav0").is_dir():
        return path / "mav0"
    return None


def looks_like(path: Path) -> bool:
    m = path.is_dir() and mav0_of(path)
    return bool(m) and any(m.glob("cam*/data.csv"))


def read_state_groundtruth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """EuRoC ``state_groundtruth_estimate0/data.csv``: body poses in the world."""
    stamps, rows = [], []
    for n, toks in enumerate(data_lines(path)):
        if len(toks) < 8:
            raise DatasetError(f"{path} line {n + 1} has {len(toks)} fields; expected "
                               "'timestamp, p_x, p_y, p_z, q_w, q_x, q_y, q_z, ...'", "format")
        stamps.append(int(toks[0]))
        rows.append([float(v) for v in toks[1:8]])
    stamps_a = np.asarray(stamps, dtype=np.int64)
    vals = np.asarray(rows).reshape(-1, 7)
    poses = np.tile(np.eye(4), (len(vals), 1, 1))
    if len(vals):
        quat_xyzw = vals[:, [4, 5, 6, 3]]
        poses[:, :3, :3] = Rotation.from_quat(quat_xyzw).as_matrix()
        poses[:, :3, 3] = vals[:, :3]
    order = np.argsort(stamps_a, kind="stable")
    return stamps_a[order], poses[order]


class EurocSequence(Sequence):
    layout = "euroc"

    def __init__(self, path: Path, frames=None, stream: str | None = None):
        path = Path(path)
        mav0 = mav0_of(path)
        if mav0 is None:
            raise DatasetError(f"{path} has no mav0/ folder; expected the EuRoC/ASL layout "
                               "mav0/cam0/data.csv", "layout")
        stream = stream or "cam0"
        cam_dir = mav0 / stream
        csv = cam_dir / "data.csv"
        if not csv.is_file():
            have = sorted(p.parent.name for p in mav0.glob("*/data.csv"))
            raise DatasetError(f"{csv} does not exist; streams with data.csv: {have}; expected "
                               f"mav0/{stream}/data.csv", "layout")
        stamps, files = [], []
        for n, toks in enumerate(data_lines(csv)):
            if len(toks) < 2:
                raise DatasetError(f"{csv} line {n + 1}: expected 'timestamp [ns],filename'",
                                   "format")
            try:
                stamps.append(int(toks[0]))
            except ValueError:
                raise DatasetError(f"{csv} line {n + 1}: '{toks[0]}' is not an integer "
                                   "timestamp in nanoseconds", "format") from None
            files.append(cam_dir / "data" / toks[1])
        if not files:
            raise DatasetError(f"{csv} lists no image", "format")
        stamps_a = np.asarray(stamps, dtype=np.int64)
        order = np.argsort(stamps_a, kind="stable")
        self._files = [files[i] for i in order]
        sensor = cam_dir / "sensor.yaml"
        if not sensor.is_file():
            raise DatasetError(f"{sensor} does not exist; expected the camera calibration "
                               "(intrinsics, distortion_coefficients, T_BS)", "intrinsics")
        intr = read_intrinsics(sensor)
        meta = load_yaml(sensor)
        tbs = meta.get("T_BS")
        data = tbs.get("data") if isinstance(tbs, dict) else tbs
        self.T_BS = np.asarray(data, float).reshape(4, 4) if data is not None else np.eye(4)
        first = read_rgb(self._files[0])
        h, w = first.shape[:2]
        camera, self._undistort = camera_and_undistorter(intr, w, h, str(sensor))
        self.mav0 = mav0
        self.stream = stream
        root = mav0.parent
        super().__init__(path, f"{root.name}_{stream}", camera, stamps_a[order], frames)

    def _read_image(self, raw: int) -> np.ndarray:
        img = read_rgb(self._files[raw])
        return self._undistort.image(img) if self._undistort is not None else img

    def gt_source(self) -> tuple[Path, str] | None:
        """The ground-truth file and its kind (``camera_tum``, ``body_csv``, ``body_tum``)."""
        root = self.mav0.parent
        tums = sorted(p for p in root.glob("*.txt") if "tum" in p.name.lower())
        for p in tums:
            if self.stream in p.name and "body" not in p.name.lower():
                return p, "camera_tum"
        for p in tums:
            if p.name.lower().startswith("groundtruth") and "body" not in p.name.lower() \
                    and not any(f"cam{i}" in p.name for i in range(4) if f"cam{i}" != self.stream):
                return p, "camera_tum"
        csv = self.mav0 / "state_groundtruth_estimate0" / "data.csv"
        if csv.is_file():
            return csv, "body_csv"
        for p in sorted(root.glob("*body*.txt")):
            return p, "body_tum"
        return None

    def _load_gt_poses(self) -> np.ndarray | None:
        src = self.gt_source()
        if src is None:
            return None
        f, kind = src
        if kind == "body_csv":
            ref_ns, poses = read_state_groundtruth(f)
        else:
            ref_ns, poses = read_tum_trajectory(f)
        if kind != "camera_tum":
            poses = poses @ self.T_BS
        if len(ref_ns) == 0:
            return None
        return poses_at(self._stamps_all, ref_ns, poses, MAX_GT_DT_NS)
