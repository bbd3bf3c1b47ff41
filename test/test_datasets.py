"""Dataset readers on small samples written here (from synthetic frames) in each layout."""
import shutil

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vode_ros.camera import Camera, Frame
from vode_ros.datasets import (
    LAYOUTS,
    DatasetError,
    detect_layout,
    open_sequence,
    parse_frames,
    synth,
)
from vode_ros.datasets.base import poses_at, read_intrinsics, seconds_to_ns
from vode_ros.errors import VodeError

N = 12


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A small synthetic TUM sequence and its frames in memory (images, depth, poses)."""
    path = synth.generate_sequence(tmp_path_factory.mktemp("tum") / "rgbd_synth", scene="room",
                                   trajectory="straight", n_frames=N, width=160, height=120,
                                   seed=1)
    seq = open_sequence(path)
    return path, seq, list(seq)


def _write_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _tum_line(t_s, T):
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    return f"{t_s:.6f} " + " ".join(f"{v:.9f}" for v in (*T[:3, 3], *q))


# -- frame selection and helpers -----------------------------------------------------------------
def test_parse_frames():
    assert list(parse_frames(None, 5)) == [0, 1, 2, 3, 4]
    assert list(parse_frames("1:4", 10)) == [1, 2, 3]
    assert list(parse_frames("::3", 10)) == [0, 3, 6, 9]
    assert list(parse_frames("-2:", 10)) == [8, 9]
    assert list(parse_frames("5:100", 8)) == [5, 6, 7]
    assert list(parse_frames(slice(2, 4), 10)) == [2, 3]
    for bad, match in (("3", "expected 'A:B'"), ("a:b", "non-integer"), ("::0", "step"),
                       ("20:30", "selects no frame")):
        with pytest.raises(DatasetError, match=match):
            parse_frames(bad, 10)


def test_seconds_to_ns_is_exact():
    assert seconds_to_ns("1305031102.175304") == 1305031102175304000
    assert seconds_to_ns("1403715273.262142976") == 1403715273262142976
    assert seconds_to_ns("0.1") == 100_000_000


def test_poses_at_interpolates_and_refuses_far_samples():
    T0, T1 = np.eye(4), np.eye(4)
    T1[:3, :3] = Rotation.from_euler("z", 10, degrees=True).as_matrix()
    T1[:3, 3] = [1.0, 0, 0]
    ref = np.array([0, 10_000_000], dtype=np.int64)
    out = poses_at([5_000_000, 10_000_000, 60_000_000], ref, np.stack([T0, T1]))
    assert np.allclose(out[0, :3, 3], [0.5, 0, 0])
    assert np.degrees(Rotation.from_matrix(out[0, :3, :3]).magnitude()) == pytest.approx(5)
    assert np.allclose(out[1], T1)
    assert np.all(np.isnan(out[2]))                  # 50 ms from the last sample


def test_intrinsics_file_formats(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("500 501 320 240\n")
    i = read_intrinsics(f)
    assert i.K[0, 0] == 500 and i.K[1, 1] == 501 and i.width is None and i.dist is None
    f.write_text("500 500 320 240 640 480\n-0.1 0.01 0 0\n")
    i = read_intrinsics(f)
    assert (i.width, i.height) == (640, 480) and np.allclose(i.dist, [-0.1, 0.01, 0, 0])
    f.write_text("585 0 320\n0 585 240\n0 0 1\n")
    assert read_intrinsics(f).K[0, 2] == 320
    y = tmp_path / "c.yaml"
    y.write_text("image_width: 640\nimage_height: 480\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
                 "  data: [400, 0, 300, 0, 410, 200, 0, 0, 1]\ndistortion_model: plumb_bob\n"
                 "distortion_coefficients:\n  data: [0, 0, 0, 0, 0]\n")
    i = read_intrinsics(y)
    assert i.K[1, 1] == 410 and i.width == 640
    y.write_text("%YAML:1.0\nCamera.fx: 300.0\nCamera.fy: 301.0\nCamera.cx: 160\n"
                 "Camera.cy: 120\nCamera.width: 320\nCamera.height: 240\n")
    i = read_intrinsics(y)
    assert i.K[0, 0] == 300 and i.height == 240
    f.write_text("1 2 3\n")
    with pytest.raises(DatasetError, match="fx fy cx cy"):
        read_intrinsics(f)


# -- TUM (the generator's output) ----------------------------------------------------------------
def test_tum_reader(sample):
    path, seq, frames = sample
    assert detect_layout(path) == "tum"
    assert seq.layout == "tum" and seq.name == "rgbd_synth" and len(seq) == N
    assert seq.camera == Camera(131.25, 131.25, 79.5, 59.5, 160, 120)
    f = frames[0]
    assert f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8
    assert f.gt_depth.dtype == np.float32 and f.gt_depth.shape == (120, 160)
    assert 0.5 < np.nanmin(f.gt_depth) and np.nanmax(f.gt_depth) < 10
    assert isinstance(f.frame(), Frame) and f.frame().validate().stamp_ns == f.stamp_ns
    stamps, poses = seq.ground_truth()
    assert len(stamps) == N and np.array_equal(stamps, seq.stamps_ns)
    assert np.allclose(poses[0], synth.make_trajectory(synth.make_scene("room", 1), "straight",
                                                       N, seed=1)[0], atol=1e-6)
    assert np.allclose(frames[5].gt_pose, poses[5])


def test_frames_selection_is_lazy_and_sliced(sample, monkeypatch):
    path, _, frames = sample
    seq = open_sequence(path, frames="2:10:3")
    assert len(seq) == 3 and list(seq.indices) == [2, 5, 8]
    reads = []
    orig = type(seq)._read_image
    monkeypatch.setattr(type(seq), "_read_image", lambda s, raw: reads.append(raw)
                        or orig(s, raw))
    it = iter(seq)
    first = next(it)
    assert reads == [2] and first.index == 2
    assert np.array_equal(first.image, frames[2].image)
    assert [f.index for f in it] == [5, 8]
    st, poses = seq.ground_truth()
    assert np.array_equal(st, seq.stamps_ns) and len(poses) == 3
    assert seq[1].index == 5


def test_tum_freiburg_intrinsics_by_folder_name(sample, tmp_path):
    path, _, _ = sample
    for key, fx, distorted in (("freiburg3", 535.4, False), ("freiburg1", 517.3, True)):
        dst = tmp_path / f"rgbd_dataset_{key}_xyz"
        shutil.copytree(path, dst)
        (dst / "camera.txt").unlink()
        seq = open_sequence(dst)
        # the 160x120 sample gets the 640x480 calibration scaled by 1/4
        if distorted:
            assert seq.camera.fx != pytest.approx(fx / 4)
            assert "freiburg1" in seq.intrinsics_source
            f = seq[0]
            assert f.image.shape == (120, 160, 3) and f.gt_depth.shape == (120, 160)
        else:
            assert seq.camera.fx == pytest.approx(fx / 4)
    dst = tmp_path / "some_tum"
    shutil.copytree(path, dst)
    (dst / "camera.txt").unlink()
    assert open_sequence(dst).camera.fx == pytest.approx(525.0 / 4)


# -- KITTI ---------------------------------------------------------------------------------------
def _write_kitti(root, frames, with_colour=False):
    seq_dir = root / "sequences" / "04"
    K = np.array([[131.25, 0, 79.5], [0, 131.25, 59.5], [0, 0, 1]])
    P0 = np.hstack([K, np.zeros((3, 1))])
    P2 = np.hstack([K, (K @ np.array([0.06, -0.001, 0.002]))[:, None]])
    lines = [f"P{i}: " + " ".join(f"{v:.12e}" for v in P.ravel())
             for i, P in enumerate((P0, P0, P2, P2))]
    seq_dir.mkdir(parents=True)
    (seq_dir / "calib.txt").write_text("\n".join(lines) + "\n")
    (seq_dir / "times.txt").write_text("".join(f"{i * 0.1035:e}\n" for i in range(len(frames))))
    for i, f in enumerate(frames):
        grey = cv2.cvtColor(f.image, cv2.COLOR_RGB2GRAY)
        (seq_dir / "image_0").mkdir(exist_ok=True)
        cv2.imwrite(str(seq_dir / "image_0" / f"{i:06d}.png"), grey)
        if with_colour:
            _write_png(seq_dir / "image_2" / f"{i:06d}.png", f.image)
    base = np.linalg.inv(frames[0].gt_pose)
    poses = [base @ f.gt_pose for f in frames]
    (root / "poses").mkdir()
    (root / "poses" / "04.txt").write_text("".join(
        " ".join(f"{v:e}" for v in T[:3].ravel()) + "\n" for T in poses))
    return seq_dir, np.stack(poses)


def test_kitti_reader(sample, tmp_path):
    _, _, frames = sample
    seq_dir, poses = _write_kitti(tmp_path, frames, with_colour=True)
    assert detect_layout(seq_dir) == "kitti"
    seq = open_sequence(seq_dir, stream="image_0")
    assert seq.layout == "kitti" and len(seq) == N
    assert (seq.camera.fx, seq.camera.cx, seq.camera.width) == (131.25, 79.5, 160)
    f = seq[3]
    assert f.image.shape == (120, 160, 3) and f.gt_depth is None
    assert np.array_equal(f.image[..., 0], f.image[..., 1])          # grey as 3 channels
    assert f.stamp_ns == 3 * 103_500_000
    assert np.allclose(f.gt_pose, poses[3], atol=1e-5)
    st, gt = seq.ground_truth()
    assert len(st) == N and np.allclose(gt[0], np.eye(4), atol=1e-6)
    # the colour camera is the default and its pose is shifted by its baseline
    colour = open_sequence(seq_dir)
    assert colour.stream == "image_2"
    offset = np.eye(4)
    offset[:3, 3] = [-0.06, 0.001, -0.002]
    assert np.allclose(colour[2].gt_pose, poses[2] @ offset, atol=1e-5)
    assert not np.array_equal(colour[2].image[..., 0], colour[2].image[..., 2])
    # an image_N folder is accepted as the path too
    assert open_sequence(seq_dir / "image_0").stream == "image_0"


# -- EuRoC ---------------------------------------------------------------------------------------
def _distorted_view(scene, pose, K, dist, size):
    """What a camera with distortion ``dist`` sees: render a wide pinhole view and warp it."""
    w, h = size
    wide = Camera(K[0, 0] * 0.8, K[1, 1] * 0.8, 1.5 * w - 0.5, 1.5 * h - 0.5, 3 * w, 3 * h)
    img, _ = synth.Renderer(scene, wide).render(pose)
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    pts = np.stack([u.ravel(), v.ravel()], 1)[:, None, :].astype(np.float64)
    und = cv2.undistortPoints(pts, K, dist).reshape(-1, 2)
    mx = (wide.fx * und[:, 0] + wide.cx).reshape(h, w).astype(np.float32)
    my = (wide.fy * und[:, 1] + wide.cy).reshape(h, w).astype(np.float32)
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR)


def _write_euroc(root, frames, scene, gt="state"):
    cam = root / "mav0" / "cam0"
    (cam / "data").mkdir(parents=True)
    K = np.array([[140.0, 0, 81.0], [0, 139.0, 58.0], [0, 0, 1]])
    dist = np.array([-0.25, 0.06, 0.0004, -0.0003])
    T_BS = np.eye(4)
    T_BS[:3, :3] = Rotation.from_euler("xyz", [2, -91, 1], degrees=True).as_matrix()
    T_BS[:3, 3] = [-0.02, -0.06, 0.01]
    t0 = 1403715273262142976
    stamps = [t0 + i * 50_000_000 for i in range(len(frames))]
    rows = ["#timestamp [ns],filename"]
    for s, f in zip(stamps, frames, strict=True):
        img = _distorted_view(scene, f.gt_pose, K, dist, (160, 120))
        cv2.imwrite(str(cam / "data" / f"{s}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
        rows.append(f"{s},{s}.png")
    (cam / "data.csv").write_text("\n".join(rows) + "\n")
    (cam / "sensor.yaml").write_text(
        "%YAML:1.0\nsensor_type: camera\nT_BS:\n  cols: 4\n  rows: 4\n  data: ["
        + ", ".join(f"{v:.12f}" for v in T_BS.ravel()) + "]\nrate_hz: 20\n"
        "resolution: [160, 120]\ncamera_model: pinhole\n"
        f"intrinsics: [{K[0, 0]}, {K[1, 1]}, {K[0, 2]}, {K[1, 2]}] #fu, fv, cu, cv\n"
        "distortion_model: radial-tangential\n"
        f"distortion_coefficients: [{', '.join(str(v) for v in dist)}]\n")
    if gt == "state":
        d = root / "mav0" / "state_groundtruth_estimate0"
        d.mkdir()
        lines = ["#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], "
                 "q_RS_y [], q_RS_z [], v_RS_R_x [m s^-1]"]
        # body poses at 200 Hz around the image stamps (the camera is still between images)
        for s, f in zip(stamps, frames, strict=True):
            T_WB = f.gt_pose @ np.linalg.inv(T_BS)
            q = Rotation.from_matrix(T_WB[:3, :3]).as_quat()
            for k in range(-2, 3):
                lines.append(f"{s + k * 5_000_000}," + ",".join(
                    f"{v:.9f}" for v in (*T_WB[:3, 3], q[3], q[0], q[1], q[2])) + ",0")
        (d / "data.csv").write_text("\n".join(lines) + "\n")
    else:
        (root / "groundtruth_cam0_tum.txt").write_text("# cam0\n" + "".join(
            _tum_line(s / 1e9, f.gt_pose) + "\n" for s, f in zip(stamps, frames, strict=True)))
    return stamps, K, dist


@pytest.mark.parametrize("gt", ["state", "tum"])
def test_euroc_reader_undistorts_and_converts_ground_truth(sample, tmp_path, gt):
    _, _, frames = sample
    scene = synth.make_scene("room", 1)
    root = tmp_path / "V1_synth"
    stamps, K, dist = _write_euroc(root, frames[:6], scene, gt)
    assert detect_layout(root) == "euroc" and detect_layout(root / "mav0") == "euroc"
    seq = open_sequence(root)
    assert seq.layout == "euroc" and len(seq) == 6
    assert list(seq.stamps_ns) == stamps
    newK, _ = cv2.getOptimalNewCameraMatrix(K, dist, (160, 120), 0.0, (160, 120))
    assert np.allclose(seq.camera.K, newK)
    for i in (0, 5):
        f = seq[i]
        assert np.allclose(f.gt_pose, frames[i].gt_pose, atol=1e-6)
        # the undistorted image is what a pinhole camera seq.camera sees from that pose
        expected, _ = synth.Renderer(scene, seq.camera).render(frames[i].gt_pose)
        grey = cv2.cvtColor(expected, cv2.COLOR_RGB2GRAY).astype(float)
        diff = np.abs(f.image[..., 0].astype(float) - grey)[4:-4, 4:-4]
        assert np.median(diff) < 6, np.median(diff)
    assert open_sequence(root / "mav0", frames="1:3").stamps_ns[0] == stamps[1]


# -- 7-Scenes ------------------------------------------------------------------------------------
def _write_7scenes(seq_dir, frames, with_k=True):
    seq_dir.mkdir(parents=True)
    if with_k:
        (seq_dir / "camera-intrinsics.txt").write_text(
            "1.3125e+02 0 7.95e+01\n0 1.3125e+02 5.95e+01\n0 0 1\n")
    for i, f in enumerate(frames):
        stem = seq_dir / f"frame-{i:06d}"
        _write_png(stem.with_name(stem.name + ".color.png"), f.image)
        np.savetxt(stem.with_name(stem.name + ".pose.txt"), f.gt_pose)
        if i % 5 == 0:
            mm = np.round(np.nan_to_num(f.gt_depth) * 1000).astype(np.uint16)
            mm[:2, :2] = 65535
            cv2.imwrite(str(stem.with_name(stem.name + ".depth.png")), mm)


def test_7scenes_reader(sample, tmp_path):
    _, _, frames = sample
    seq_dir = tmp_path / "kitchen" / "seq-01"
    _write_7scenes(seq_dir, frames)
    assert detect_layout(seq_dir) == "7scenes"
    seq = open_sequence(seq_dir)
    assert seq.layout == "7scenes" and len(seq) == N and seq.name == "kitchen_seq-01"
    assert seq.camera == Camera(131.25, 131.25, 79.5, 59.5, 160, 120)
    assert seq[3].stamp_ns == 100_000_000                       # 30 Hz
    got = list(seq)
    assert [f.gt_depth is not None for f in got] == [i % 5 == 0 for i in range(N)]
    d = got[5].gt_depth
    assert np.isnan(d[0, 0]) and np.isnan(d[1, 1])              # 65535 is invalid
    assert np.allclose(d[2:, 2:], frames[5].gt_depth[2:, 2:], atol=6e-4)
    assert np.allclose(got[7].gt_pose, frames[7].gt_pose)
    assert np.array_equal(got[7].image, frames[7].image)
    (seq_dir / "camera-intrinsics.txt").unlink()
    assert open_sequence(seq_dir).camera.fx == 585.0


# -- image folder --------------------------------------------------------------------------------
def test_folder_reader(sample, tmp_path):
    _, _, frames = sample
    d = tmp_path / "my_images"
    for i, f in enumerate(frames[:5]):
        _write_png(d / f"img_{i:03d}.png", f.image)
    with pytest.raises(DatasetError, match="expected intrinsics.txt with 'fx fy cx cy'"):
        open_sequence(d)
    (d / "intrinsics.txt").write_text("131.25 131.25 79.5 59.5\n")
    assert detect_layout(d) == "folder"
    seq = open_sequence(d)
    assert seq.layout == "folder" and len(seq) == 5 and seq.camera.cx == 79.5
    assert list(seq.stamps_ns) == [round(i * 1e9 / 30) for i in range(5)]
    assert np.array_equal(seq[4].image, frames[4].image) and seq[4].gt_pose is None
    assert seq.ground_truth()[0].size == 0
    (d / "times.txt").write_text("".join(f"{10 + 0.05 * i:.3f}\n" for i in range(5)))
    assert open_sequence(d).stamps_ns[1] == 10_050_000_000
    (d / "times.txt").write_text("1.0\n")
    with pytest.raises(DatasetError, match="1 stamps for 5 images"):
        open_sequence(d)


# -- video ---------------------------------------------------------------------------------------
def test_video_reader(sample, tmp_path):
    _, _, frames = sample
    path = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (160, 120))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
    writer.release()
    assert detect_layout(path) == "video"
    with pytest.raises(DatasetError, match="walk.avi.intrinsics.txt"):
        open_sequence(path)
    (tmp_path / "walk.avi.intrinsics.txt").write_text("262.5 262.5 159.5 119.5 320 240\n")
    seq = open_sequence(path)
    assert seq.layout == "video" and len(seq) == N
    assert seq.camera.fx == pytest.approx(131.25) and seq.camera.cx == pytest.approx(79.75)
    assert seq.stamps_ns[2] == 80_000_000                       # 25 fps
    got = list(open_sequence(path, frames="1::4"))
    assert [f.index for f in got] == [1, 5, 9]
    for f in got:
        assert np.abs(f.image.astype(float) - frames[f.index].image).mean() < 12
    assert np.array_equal(seq[5].image, got[1].image)


# -- errors --------------------------------------------------------------------------------------
def test_missing_and_unknown_inputs(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as err:
        open_sequence(tmp_path / "nope")
    assert isinstance(err.value, VodeError) and err.value.kind == "missing"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("hello")
    with pytest.raises(DatasetError) as err:
        open_sequence(empty)
    msg = str(err.value)
    assert "no layout vode understands" in msg
    for name in LAYOUTS:
        assert f"{name}:" in msg
    odd = tmp_path / "data.bin"
    odd.write_bytes(b"\0" * 10)
    with pytest.raises(DatasetError, match="Layouts understood"):
        open_sequence(odd)
    with pytest.raises(DatasetError, match="layout 'xyz' is unknown"):
        open_sequence(empty, layout="xyz")


def test_corrupt_files_raise_dataset_errors(sample, tmp_path):
    path, _, _ = sample
    dst = tmp_path / "broken_tum"
    shutil.copytree(path, dst)
    first = sorted((dst / "rgb").glob("*.png"))[0]
    first.write_bytes(first.read_bytes()[:100])
    with pytest.raises(DatasetError, match="could not be decoded"):
        open_sequence(dst)
    (dst / "rgb.txt").write_text("# nothing\n")
    with pytest.raises(DatasetError, match="lists no image"):
        open_sequence(dst)
    video = tmp_path / "bad.mp4"
    video.write_bytes(b"not a video at all" * 10)
    (tmp_path / "bad.mp4.intrinsics.txt").write_text("100 100 50 50\n")
    with pytest.raises(DatasetError, match="video"):
        open_sequence(video)
    with pytest.raises(DatasetError, match="apply to ROS 2 bags"):
        open_sequence(path, image_topic="/cam")
