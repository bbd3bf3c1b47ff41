"""Dataset readers on the real recordings in ../shared/data (skipped where that folder is absent).

Uses the ``shared_data`` fixture of conftest.py, which skips with the reason when the folder is
missing."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vode_ros.datasets import detect_layout, open_sequence
from vode_ros.datasets.base import data_lines


def _check_frame(f, seq):
    assert f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
    assert f.image.shape[:2] == (seq.camera.height, seq.camera.width)
    f.frame().validate()


def test_7scenes_redkitchen(shared_data):
    path = shared_data / "7scenes-redkitchen"
    assert detect_layout(path) == "7scenes"
    seq = open_sequence(path)
    assert len(seq) == 600
    cam = seq.camera
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (585, 585, 320, 240, 640,
                                                                       480)
    assert np.all(np.diff(seq.stamps_ns) > 0)
    assert seq.stamps_ns[30] == 1_000_000_000                       # 30 Hz
    stamps, poses = seq.ground_truth()
    assert len(stamps) == 600
    expected0 = np.loadtxt(path / "frame-000000.pose.txt")
    assert np.allclose(poses[0], expected0)
    assert poses[0][0, 3] == pytest.approx(-0.34045634)
    f0, f1, f5 = seq[0], seq[1], seq[5]
    for f in (f0, f1, f5):
        _check_frame(f, seq)
    assert f1.gt_depth is None                                       # depth every 5th frame
    for f in (f0, f5):
        d = f.gt_depth
        assert d.dtype == np.float32 and d.shape == (480, 640)
        valid = d[np.isfinite(d)]
        assert valid.size > 0.5 * d.size
        assert 0.3 < valid.min() and valid.max() < 5.0
        assert 0.5 < np.median(valid) < 4.0
    # poses move smoothly: a hand-held camera at 30 Hz
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 0.1


@pytest.mark.parametrize("seq_id, fx, cx, size", [
    ("06", 707.0912, 601.8873, (1226, 370)),
    ("01", 718.856, 607.1928, (1241, 376)),
])
def test_kitti_odometry(shared_data, seq_id, fx, cx, size):
    path = shared_data / "kitti-odometry" / "sequences" / seq_id
    assert detect_layout(path) == "kitti"
    seq = open_sequence(path)
    assert len(seq) == 51 and seq.stream == "image_0"
    assert seq.camera.fx == pytest.approx(fx) and seq.camera.cx == pytest.approx(cx)
    assert (seq.camera.width, seq.camera.height) == size
    stamps = seq.stamps_ns
    assert stamps[0] == 0 and np.all(np.diff(stamps) > 0)
    assert np.allclose(np.diff(stamps), 1.03e8, rtol=0.05)          # ~10 Hz
    st, poses = seq.ground_truth()
    assert len(st) == 51
    assert np.allclose(poses[0], np.eye(4), atol=1e-6)
    row1 = np.array([float(v) for v in
                     data_lines(shared_data / "kitti-odometry" / "poses" / f"{seq_id}.txt")[1]])
    assert np.allclose(poses[1][:3].ravel(), row1)
    assert poses[50][2, 3] > 10                                      # driving forward (+z)
    f = seq[10]
    _check_frame(f, seq)
    assert np.array_equal(f.image[..., 0], f.image[..., 1])        # grey camera
    assert f.gt_depth is None
    part = open_sequence(path, frames="40:")
    assert len(part) == 11 and part[0].index == 40


def test_euroc_v1_01_static(shared_data):
    path = shared_data / "euroc-V1_01_easy-static"
    assert detect_layout(path) == "euroc"
    seq = open_sequence(path)
    assert len(seq) == 95
    stamps = seq.stamps_ns
    assert stamps[0] == 1403715273262142976
    assert np.all(np.diff(stamps) > 0)
    assert np.allclose(np.diff(stamps), 5e7, atol=1e3)               # 20 Hz
    cam = seq.camera
    assert (cam.width, cam.height) == (752, 480)
    # undistorted: OpenCV's optimal new camera (alpha = 0) of fu, fv = 458.654, 457.296
    assert 300 < cam.fx < 458.654 and 300 < cam.fy < 457.296
    assert abs(cam.cx - 376) < 30 and abs(cam.cy - 240) < 30
    st, poses = seq.ground_truth()
    assert len(st) == 95
    assert np.allclose(poses[0][:3, 3], [0.863343, 2.246097, 0.924452], atol=1e-5)
    q = Rotation.from_matrix(poses[0][:3, :3]).as_quat()
    q_file = np.array([0.656894944, -0.507216933, 0.353731615, -0.431386092])
    assert min(np.abs(q - q_file).max(), np.abs(q + q_file).max()) < 1e-6
    assert np.linalg.norm(poses[:, :3, 3] - poses[0][:3, 3], axis=1).max() < 0.003
    f = seq[0]
    _check_frame(f, seq)
    assert f.image[5:-5, 5:-5].min() < f.image.max()
    assert (f.image[5:-5, 5:-5] == 0).mean() < 0.01                  # alpha = 0: no black border
