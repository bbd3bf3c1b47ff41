"""The synthetic sequence generator: exact geometry, trajectories, determinism, TUM output."""
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vode_ros.datasets import DatasetError, open_sequence, synth, synth_textures


def _bilinear(img, x, y):
    return synth_textures._bilinear_wrap(np.ascontiguousarray(img, dtype=np.float32), x, y)


def _reproject(a, b, camera):
    """Backproject frame a with its depth, move it to frame b with the gt poses, reproject.

    Returns (fraction of a's pixels landing in b and visible there, median relative depth error
    of the visible ones, median colour difference of the visible ones)."""
    H, W = a.gt_depth.shape
    v, u = np.mgrid[0:H, 0:W]
    z = a.gt_depth
    ok = np.isfinite(z)
    X = np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z], -1)[ok]
    T = np.linalg.inv(b.gt_pose) @ a.gt_pose
    Y = X @ T[:3, :3].T + T[:3, 3]
    ub = camera.fx * Y[:, 0] / Y[:, 2] + camera.cx
    vb = camera.fy * Y[:, 1] / Y[:, 2] + camera.cy
    ui, vi = np.round(ub).astype(int), np.round(vb).astype(int)
    inside = (ui >= 1) & (ui < W - 1) & (vi >= 1) & (vi < H - 1) & (Y[:, 2] > 0)
    zb = b.gt_depth[vi[inside], ui[inside]]
    rel = np.abs(zb - Y[inside, 2]) / Y[inside, 2]
    visible = rel < 0.02                      # not occluded in b
    cb = _bilinear(b.image, ub[inside][visible], vb[inside][visible])
    ca = a.image[ok][inside][visible].astype(np.float32)
    return visible.mean(), float(np.median(rel)), float(np.median(np.abs(cb - ca)))


@pytest.fixture(scope="module")
def room_loop(tmp_path_factory):
    path = synth.generate_sequence(tmp_path_factory.mktemp("synth") / "room_loop", scene="room",
                                   trajectory="loop", n_frames=24, seed=3, dark_frames=(10, 13))
    return open_sequence(path)


def test_written_layout_is_tum_and_complete(room_loop):
    p = room_loop.path
    for name in ("rgb.txt", "depth.txt", "groundtruth.txt", "camera.txt", "synth.json"):
        assert (p / name).is_file(), name
    assert room_loop.layout == "tum"
    assert len(room_loop) == 24
    assert len(list((p / "rgb").glob("*.png"))) == 24
    assert len(list((p / "depth").glob("*.png"))) == 24
    cam = room_loop.camera
    assert (cam.width, cam.height) == (320, 240)
    assert cam.fx == pytest.approx(262.5) and cam.cy == pytest.approx(119.5)
    stamps = room_loop.stamps_ns
    assert np.all(np.diff(stamps) > 0)
    assert np.allclose(np.diff(stamps), 1e9 / 30, atol=2e3)


def test_depth_and_poses_agree_with_the_images(room_loop):
    frames = list(room_loop)
    errors = {}
    for i, j in ((0, 3), (4, 9), (15, 22)):
        vis, rel, colour = _reproject(frames[i], frames[j], room_loop.camera)
        assert vis > 0.9, (i, j, vis)
        assert rel < 2e-3, (i, j, rel)          # depth is exact up to pixel rounding
        assert colour < 3.0, (i, j, colour)     # the same surface point has the same colour
        errors[(i, j)] = colour
    # a wrong pose (5 cm off) breaks the agreement: the test can tell
    wrong = frames[4]
    wrong_pose = wrong.gt_pose.copy()
    wrong_pose[:3, 3] += [0.0, 0.05, 0.0]
    shifted = type(wrong)(wrong.index, wrong.stamp_ns, wrong.image, wrong.camera, wrong_pose,
                          wrong.gt_depth)
    _, rel_bad, colour_bad = _reproject(shifted, frames[9], room_loop.camera)
    assert colour_bad > 3 * errors[(4, 9)], (colour_bad, errors[(4, 9)])


def test_dark_frames_are_black_and_keep_ground_truth(room_loop):
    frames = list(room_loop)
    for f in frames:
        assert f.gt_pose is not None and f.gt_depth is not None
        dark = 10 <= f.index < 13
        assert (f.image.mean() < 2.0) == dark, (f.index, f.image.mean())
        if not dark:
            assert f.image.std() > 20                       # textured everywhere
    assert np.nanmin(frames[0].gt_depth) > 0.5


def _steps(poses):
    rel = [np.linalg.inv(poses[i]) @ poses[i + 1] for i in range(len(poses) - 1)]
    trans = np.array([np.linalg.norm(r[:3, 3]) for r in rel])
    rot = np.array([np.degrees(Rotation.from_matrix(r[:3, :3]).magnitude()) for r in rel])
    return trans, rot


@pytest.mark.parametrize("scene", synth.SCENES)
def test_trajectories_follow_their_definition(scene):
    sc = synth.make_scene(scene, seed=0)
    n = 60
    speeds = {"room": 0.03, "corridor": 0.045, "street": 0.12}
    for name in synth.TRAJECTORIES:
        P = synth.make_trajectory(sc, name, n, seed=0)
        assert P.shape == (n, 4, 4)
        assert np.allclose(P[:, :3, :3] @ P[:, :3, :3].transpose(0, 2, 1), np.eye(3), atol=1e-9)
        trans, rot = _steps(P)
        assert rot.max() <= (17.0 if name == "handheld" else 1.0), (scene, name, rot.max())
        assert trans.max() <= speeds[scene], (scene, name, trans.max())
        pos = P[:, :3, 3]
        if name == "static":
            assert np.allclose(P, P[0])
        elif name == "rotation":
            assert np.abs(pos - pos[0]).max() < 1e-12
            assert rot.sum() > 20
        elif name == "loop":
            assert np.linalg.norm(pos[-1] - pos[0]) < 1e-9
            assert np.allclose(P[-1], P[0], atol=1e-9)
            assert np.linalg.norm(pos - pos[0], axis=1).max() > 0.2
        elif name == "straight":
            assert np.linalg.norm(pos[-1] - pos[0]) > 0.8 * trans.sum()
            heading = (pos[-1] - pos[0]) / np.linalg.norm(pos[-1] - pos[0])
            assert heading @ P[0, :3, 2] > 0.98           # moves along the optical axis
        elif name == "turn":
            yaw_change = np.degrees(Rotation.from_matrix(
                P[0, :3, :3].T @ P[-1, :3, :3]).magnitude())
            assert yaw_change > 15
        # the camera stays inside the scene and out of the solid boxes
        outer = sc.boxes[0]
        assert np.all(pos > outer.lo + 0.3) and np.all(pos < outer.hi - 0.3)
        for box in sc.boxes[1:]:
            assert not np.any(np.all((pos > box.lo - 0.2) & (pos < box.hi + 0.2), axis=1))


def test_rendering_is_fast_and_deterministic():
    sc = synth.make_scene("room", seed=5)
    cam = synth.default_camera(320, 240)
    r = synth.Renderer(sc, cam)
    P = synth.make_trajectory(sc, "turn", 10, seed=5)
    r.render(P[0])
    times = []
    for T in P[:5]:
        t0 = time.perf_counter()
        img, depth = r.render(T)
        times.append(time.perf_counter() - t0)
    per_frame = min(times)          # best of 5: the machine may be busy with other work
    assert per_frame < 0.1, f"{per_frame * 1000:.0f} ms per 320x240 frame"
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    assert depth.shape == (240, 320) and depth.dtype == np.float32
    img2, depth2 = synth.Renderer(synth.make_scene("room", seed=5), cam).render(P[4])
    assert np.array_equal(img, img2) and np.array_equal(depth, depth2)
    img3, _ = synth.Renderer(synth.make_scene("room", seed=6), cam).render(P[4])
    assert not np.array_equal(img, img3)


def test_generate_is_deterministic(tmp_path):
    a = synth.generate_sequence(tmp_path / "a", "corridor", "straight", n_frames=3, width=96,
                                height=72, seed=9)
    b = synth.generate_sequence(tmp_path / "b", "corridor", "straight", n_frames=3, width=96,
                                height=72, seed=9)
    for name in ("rgb.txt", "groundtruth.txt", "camera.txt"):
        assert (a / name).read_text() == (b / name).read_text()
    fa, fb = list(open_sequence(a)), list(open_sequence(b))
    for x, y in zip(fa, fb, strict=True):
        assert np.array_equal(x.image, y.image)
        assert np.array_equal(x.gt_depth, y.gt_depth, equal_nan=True)


def test_street_has_sky_without_depth(tmp_path):
    path = synth.generate_sequence(tmp_path / "street", "street", "straight", n_frames=2,
                                   width=160, height=120)
    f = open_sequence(path)[0]
    invalid = ~np.isfinite(f.gt_depth)
    assert 0.0 < invalid.mean() < 0.5               # sky (and far street) have no depth
    top = invalid[:10].mean()
    assert top > invalid[-10:].mean()               # the sky is at the top
    finite = f.gt_depth[~invalid]
    assert finite.min() > 1.0 and finite.max() < 13.2


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="scene 'moon' is unknown"):
        synth.generate_sequence(tmp_path / "x", scene="moon")
    with pytest.raises(DatasetError, match="trajectory 'zigzag' is unknown.*straight"):
        synth.generate_sequence(tmp_path / "x", trajectory="zigzag", n_frames=2)
    with pytest.raises(DatasetError, match="dark_frames"):
        synth.generate_sequence(tmp_path / "x", n_frames=2, dark_frames="1-3")
