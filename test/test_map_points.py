"""The odometry's map points as sparse depth (``vode_ros.offline.map_points``), what `vode
adapt` teaches the depth network with: recorded from a run, in the input image's pixels, one
scale away from the exact depth of a synthetic sequence, rasterised for training."""
from __future__ import annotations

import numpy as np
import pytest

from vode_ros.config_files import load_config
from vode_ros.datasets import generate_sequence, open_sequence
from vode_ros.errors import VodeError
from vode_ros.offline import RunOptions, run
from vode_ros.offline.map_points import FILE_NAME, read_map_points


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    root = tmp_path_factory.mktemp("map_points")
    seq = generate_sequence(root / "walk", scene="room", trajectory="handheld", n_frames=40,
                            width=320, height=240, seed=3)
    out = root / "run"
    run(str(seq), out, load_config(None, ["models.providers=[CPUExecutionProvider]",
                                          "pose.scale_source=triangulation"]),
        RunOptions(quiet=True, save_depth=0, map_points=True))
    return seq, out / FILE_NAME


def test_map_points_are_the_scenes_depth_up_to_one_scale(walk):
    seq_path, path = walk
    points = read_map_points(path)
    frames = {f.stamp_ns: f for f in open_sequence(str(seq_path))}
    with_points = [s for s, (_, z) in points.items() if len(z) >= 30]
    assert len(with_points) >= 20, "the map should cover most of the walk"
    ratios = []
    for stamp in with_points:
        px, z = points[stamp]
        gt = frames[stamp].gt_depth
        h, w = gt.shape
        assert np.all((px[:, 0] > -1) & (px[:, 0] < w) & (px[:, 1] > -1) & (px[:, 1] < h))
        d = gt[np.clip(np.rint(px[:, 1]).astype(int), 0, h - 1),
               np.clip(np.rint(px[:, 0]).astype(int), 0, w - 1)]
        ok = np.isfinite(d) & (d > 0)
        ratios.append(np.median(d[ok] / z[ok]))
        # within a frame the points' depths follow the scene's (one factor, small spread)
        r = np.log(d[ok] / z[ok])
        assert np.median(np.abs(r - np.median(r))) < 0.05
    ratios = np.asarray(ratios)
    # and the factor holds along the walk (the map's unit drifts little over 40 frames)
    assert ratios.std() / ratios.mean() < 0.1, ratios


def test_process_writes_map_points_when_asked(walk, tmp_path):
    """`vode process --map-points` writes the file a training source's map_points reads (the
    same points as the run of the fixture); without the flag there is none."""
    from vode_ros.cli import main
    seq_path, path = walk
    common = ["process", str(seq_path), "--save-depth", "0", "--quiet",
              "--set", "models.providers=[CPUExecutionProvider]",
              "--set", "pose.scale_source=triangulation"]
    assert main(common + ["--out", str(tmp_path / "with"), "--map-points"]) == 0
    assert main(common + ["--out", str(tmp_path / "without")]) == 0
    points, expected = read_map_points(tmp_path / "with" / FILE_NAME), read_map_points(path)
    assert points.keys() == expected.keys() and sum(len(z) >= 30 for _, z in points.values()) >= 20
    for stamp, (px, z) in expected.items():
        np.testing.assert_allclose(points[stamp][0], px, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(points[stamp][1], z, rtol=1e-4)
    assert not (tmp_path / "without" / FILE_NAME).exists()


def _learn_data():
    pytest.importorskip("torch")              # training's data module needs torch
    from vode_ros.learn import data
    return data


def test_sparse_depth_places_points_at_their_pixels():
    sparse_depth = _learn_data().sparse_depth
    px = np.array([[0.0, 0.0], [319.0, 239.0], [160.0, 120.0], [160.2, 119.9], [-5.0, 3.0]])
    z = np.array([1.0, 2.0, 3.0, 1.5, 9.0])
    img = sparse_depth((px, z), 320, 240, 160, 120)
    assert img.shape == (120, 160) and img.dtype == np.float16
    assert img[0, 0] == 1.0 and img[119, 159] == 2.0
    assert img[60, 80] == 1.5                          # the nearer of two points wins
    assert np.count_nonzero(img) == 3                  # the one outside the image is dropped
    assert not sparse_depth(None, 320, 240, 160, 120).any()


def test_training_reads_map_points_as_sparse_depth(walk, tmp_path):
    data = _learn_data()
    SourceSpec, load_sequence = data.SourceSpec, data.load_sequence
    seq_path, path = walk
    cached = load_sequence(SourceSpec(str(seq_path), map_points=str(path)), 96, 128)
    assert cached.depth is not None and cached.depth.shape[1:] == (96, 128)
    assert (cached.depth > 0).sum(axis=(1, 2)).max() >= 30
    with pytest.raises(ValueError, match="not both"):
        load_sequence(SourceSpec(str(seq_path), map_points=str(path), depth=True), 96, 128)
    bad = tmp_path / "bad.npz"
    np.savez(bad, stamps_ns=np.zeros(2, np.int64), offsets=np.zeros(2, np.int64),
             px=np.zeros((0, 2)), depth=np.zeros(0))
    with pytest.raises(VodeError, match="inconsistent"):
        read_map_points(bad)
    with pytest.raises(VodeError, match="not a map points file"):
        read_map_points(tmp_path / "missing.npz")
