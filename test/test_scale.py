"""Metric scale sources: wheel odometry (the distance travelled, robust to a stalled or slipping
wheel) and the camera height over the road; unit tests and synthetic sequences with exact ground
truth (vode_ros.datasets.synth)."""
from __future__ import annotations

import numpy as np
import pytest

import model_factory as mf
from vode_ros.camera import Frame
from vode_ros.config_files import load_config
from vode_ros.datasets import synth
from vode_ros.depth import DepthEstimator
from vode_ros.geometry import from_xyz_rpy, make_transform
from vode_ros.inference import OnnxModel
from vode_ros.odometry import VisualOdometry
from vode_ros.pipeline import build_pose_backend
from vode_ros.robust import weighted_median
from vode_ros.scale import ground as gm
from vode_ros.scale.wheel import WheelPath, WheelScale, read_wheel_tum

CAM = synth.default_camera(320, 240)
T0_NS, DT_NS = 1_000_000_000, 33_333_333
OPTICAL = from_xyz_rpy([0, 0, 0], [-np.pi / 2, 0, -np.pi / 2])


def forward(step: float) -> np.ndarray:
    return make_transform(np.eye(3), np.array([0.0, 0.0, step]))


# -- wheel odometry: unit tests ------------------------------------------------------------------
def test_wheel_path_interpolates_the_travelled_distance_only():
    path = WheelPath()
    # a turn: the distance is the path's length whatever the heading
    for i, xyz in enumerate([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]):
        assert path.add(T0_NS + i * 10**9, xyz)
    assert not path.add(T0_NS, (5, 5, 5))                  # not after the last sample
    assert not path.add(T0_NS + 9 * 10**9, (np.nan, 0, 0))
    assert path.distance_at(T0_NS + 1_500_000_000) == pytest.approx(1.5)
    assert path.distance_at(T0_NS + 3 * 10**9) == pytest.approx(3.0)
    assert path.distance_at(T0_NS - 1) is None and path.distance_at(T0_NS + 4 * 10**9) is None


def _drive(scale: WheelScale, units_per_m: float, steps: int, wheel=None, start: int = 0,
           step_m: float = 0.5) -> list[float]:
    """Steps of ``step_m`` metres (``units_per_m`` odometry units per metre) at 10 Hz; the
    wheels report ``wheel(i)`` metres for step i (default: the truth). Returns the factors."""
    factors = []
    for i in range(start, start + steps):
        t0, t1 = T0_NS + i * 10**8, T0_NS + (i + 1) * 10**8
        if i == start and scale.path.last_stamp_ns is None:
            scale.add_wheel(t0, (0.0, 0.0, 0.0))
        d = scale.path.distance_at(scale.path.last_stamp_ns)
        scale.add_wheel(t1, (d + (step_m if wheel is None else wheel(i)), 0.0, 0.0))
        factors.append(scale.factor_for(t0, t1, forward(step_m * units_per_m)))
    return factors


def test_wheel_scale_is_the_ratio_of_travelled_distances():
    scale = WheelScale()
    f = _drive(scale, units_per_m=0.25, steps=40)
    assert f[0] == pytest.approx(4.0, rel=1e-6) and f[-1] == pytest.approx(4.0, rel=1e-6)
    st = scale.status
    assert st.source == "wheel_odom" and st.confidence == pytest.approx(1.0)
    assert st.last_update_ns == T0_NS + 40 * 10**8 and st.updates == 40


def test_stalled_wheel_while_the_camera_moves_does_not_collapse_the_scale():
    scale = WheelScale()
    _drive(scale, 0.25, 40)
    # the wheel stops (slip, a stuck encoder) for 6 s while the camera moves on
    stalled = _drive(scale, 0.25, 60, wheel=lambda i: 0.0, start=40)
    assert min(stalled) == pytest.approx(4.0, rel=0.02)
    assert scale.status.confidence < 1.0
    # it moves again: the scale is measured again
    after = _drive(scale, 0.25, 40, start=100)
    assert after[-1] == pytest.approx(4.0, rel=1e-6) and scale.status.confidence == 1.0


def test_spinning_wheel_for_a_moment_is_left_out():
    scale = WheelScale()
    _drive(scale, 0.25, 40)
    spin = _drive(scale, 0.25, 5, wheel=lambda i: 1.5, start=40)    # three times the truth
    assert max(spin) < 4.0 * 1.5
    after = _drive(scale, 0.25, 20, start=45)
    assert after[-1] == pytest.approx(4.0, rel=0.01)


def test_wheel_scale_follows_a_drifting_unit():
    scale = WheelScale()
    _drive(scale, 0.25, 40)
    f = _drive(scale, 0.5, 40, start=40)                  # the odometry's unit halves
    assert f[-1] == pytest.approx(2.0, rel=1e-6)


def test_read_wheel_tum(tmp_path):
    p = tmp_path / "w.tum"
    p.write_text("# t x y z qx qy qz qw\n1.5 0 0 0 0 0 0 1\n\n2.0 1 0 0 0 0 0 1\n")
    samples = read_wheel_tum(p)
    assert [s for s, _ in samples] == [1_500_000_000, 2_000_000_000]
    p.write_text("1.0 0 0\n")
    with pytest.raises(Exception, match="expected 't x y z"):
        read_wheel_tum(p)


# -- the road: unit tests ------------------------------------------------------------------------
def test_road_region_is_below_the_horizon_and_ahead():
    K = CAM.K
    down, fwd = gm.down_axis(OPTICAL), OPTICAL[:3, :3].T @ np.array([1.0, 0, 0])
    np.testing.assert_allclose(down, [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(fwd, [0, 0, 1], atol=1e-12)
    px = gm.road_pixels(K, (CAM.width, CAM.height), down, fwd)
    assert len(px) > 0 and (px[:, 1] > K[1, 2]).all()
    # a pitched mount moves the horizon: the region follows the extrinsic
    pitched = from_xyz_rpy([0, 0, 0], [-np.pi / 2, 0, -np.pi / 2]) @ \
        make_transform(from_xyz_rpy([0, 0, 0], [0.1, 0, 0])[:3, :3], np.zeros(3))
    assert not np.allclose(gm.down_axis(pitched), down)


def test_dense_road_alignment_finds_the_camera_height():
    """A textured road rendered from a camera at 1.4 m; the motion between the two views in a
    unit where the height is 0.035 (40 units per metre)."""
    scene = synth.make_scene("street", seed=3)
    poses = synth.make_trajectory(scene, "straight", 12, seed=3)
    r = synth.Renderer(scene, CAM)
    a, b = (r.render(poses[i])[0].mean(2).astype(np.uint8) for i in (0, 10))
    T_1_0 = np.linalg.inv(poses[10]) @ poses[0]
    height = float(poses[0][2, 3])
    unit = 40.0
    T_1_0[:3, 3] /= unit
    down, fwd = gm.down_axis(OPTICAL), np.array([0.0, 0, 1])
    px = gm.road_pixels(CAM.K, (CAM.width, CAM.height), down, fwd)
    m = gm.measure_height(gm.RoadAlignment(a, b, CAM.K, T_1_0, px), down, 1.5 * height / unit)
    assert m is not None and m.confidence > 0.5
    assert m.height * unit == pytest.approx(height, rel=0.05)


class _ParabolicCost:
    """A road cost that is exactly a parabola in log height with its minimum at ``best``."""

    def __init__(self, best: float):
        self.best = best

    def costs(self, d, n):
        return 1.0 + (np.log(np.asarray(d, float) / self.best)) ** 2


@pytest.mark.parametrize("offset", [-0.4, -0.1, 0.0, 0.25, 0.45])
def test_road_height_is_refined_below_the_search_step(offset):
    """The height search steps 1 % in log; the parabola through the three costs about the best
    grid height finds a minimum between grid heights (the measurements were quantised to 1 %,
    which the scale filter's median then turned into jumps of 1-2 % on KITTI 06)."""
    best = 1.65 * np.exp(offset * gm.FINE_LOG_STEP)
    d = gm._parabolic_minimum(_ParabolicCost(best), 1.65, np.array([0.0, 1.0, 0.0]),
                              gm.FINE_LOG_STEP)
    assert d == pytest.approx(best, rel=1e-9)
    # not bracketed (a cost rising to one side only): the grid height is kept
    flat = type("Flat", (), {"costs": lambda self, d, n: np.array([1.0, 1.0, 1.0])})()
    assert gm._parabolic_minimum(flat, 1.65, np.zeros(3), gm.FINE_LOG_STEP) == 1.65


def test_ground_filter_is_a_median_and_holds_without_reliable_measurements():
    g = gm.GroundScale(1.5, OPTICAL, window=5)
    f = [g._filter([(np.log(x), 1.0)], i) for i, x in enumerate([1.0, 1.0, 1.3, 1.0, 1.0])]
    assert f[2] == pytest.approx(1.0)                      # one outlier does not move it
    assert g.status.updates == 5 and g.status.last_update_ns == 4
    assert weighted_median(np.array([0.0, 1.0]), np.ones(2)) == pytest.approx(0.5)


# -- synthetic sequences with exact ground truth -------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale_models")
    return {"depth": mf.make_depth_model(root / "d.onnx"),
            "pose": mf.make_pose_model(root / "p.onnx", (0, 0, 0, 0, 0, 0.05))}


@pytest.fixture(scope="module")
def street():
    scene = synth.make_scene("street", seed=1)
    poses = synth.make_trajectory(scene, "straight", 60, seed=1)
    r = synth.Renderer(scene, CAM)
    rng = np.random.default_rng(5)
    images = [np.clip(r.render(T)[0] + rng.normal(0, 1, (CAM.height, CAM.width, 3)) + 0.5,
                      0, 255).astype(np.uint8) for T in poses]
    return poses, images


def make_vo(models, overrides):
    cfg = load_config(None, ["pose.backend=geometric", *overrides])
    depth = DepthEstimator(OnnxModel(models["depth"], "depth"))
    return VisualOdometry(cfg, depth, build_pose_backend(cfg, depth,
                                                         OnnxModel(models["pose"], "pose")))


def stamp(i: int) -> int:
    return T0_NS + i * DT_NS


def chord_lengths(P, every: int = 10) -> np.ndarray:
    return np.linalg.norm(np.diff(np.asarray(P)[::every, :3, 3], axis=0), axis=1)


def wheel_positions(poses) -> np.ndarray:
    """What the wheels of the vehicle carrying the camera measure: its travel along the road
    (the camera's sway about it is not the vehicle's)."""
    p = np.asarray(poses)[:, :3, 3]
    direction = (p[-1] - p[0]) / np.linalg.norm(p[-1] - p[0])
    return np.outer((p - p[0]) @ direction, direction)


def test_wheel_odometry_puts_a_synthetic_drive_in_metres(models, street):
    poses, images = street
    vo = make_vo(models, ["pose.scale_source=wheel_odom"])
    assert vo.scale == "metric"
    for i, xyz in enumerate(wheel_positions(poses)):
        vo.add_wheel_odometry(stamp(i), xyz)
    ests = [vo.process(Frame(stamp(i), im, CAM)) for i, im in enumerate(images)]
    P = [e.camera_pose for e in ests]
    ratio = chord_lengths(P)[2:].sum() / chord_lengths(poses)[2:].sum()   # after the first map
    assert ratio == pytest.approx(1.0, abs=0.05)
    last = ests[-1]
    assert last.scale_status["source"] == "wheel_odom" and last.scale_status["confidence"] > 0.5
    assert last.scale_m_per_unit == pytest.approx(last.scale_status["m_per_unit"])
    assert last.scale_m_per_unit > 1.0                # the tracker's own unit is not metres


def test_wheel_that_stops_while_the_camera_moves_keeps_the_scale(models, street):
    poses, images = street
    vo = make_vo(models, ["pose.scale_source=wheel_odom"])
    wheel = wheel_positions(poses)
    for i in range(len(poses)):                    # the wheel stops at frame 35 (slip)
        vo.add_wheel_odometry(stamp(i), wheel[min(i, 35)])
    ests = [vo.process(Frame(stamp(i), im, CAM)) for i, im in enumerate(images)]
    f = np.array([e.scale_m_per_unit for e in ests[30:]])
    assert f.min() > 0.8 * f[0]
    P = [e.camera_pose for e in ests]
    assert chord_lengths(P[30:], 5).sum() == pytest.approx(chord_lengths(poses[30:], 5).sum(),
                                                           rel=0.15)


def test_ground_plane_puts_a_synthetic_drive_in_metres(models, street):
    poses, images = street
    height = float(poses[0][2, 3])
    vo = make_vo(models, ["pose.scale_source=ground", f"pose.camera_height_m={height}"])
    ests = [vo.process(Frame(stamp(i), im, CAM)) for i, im in enumerate(images)]
    P = [e.camera_pose for e in ests]
    ratio = chord_lengths(P)[2:].sum() / chord_lengths(poses)[2:].sum()
    assert ratio == pytest.approx(1.0, abs=0.25)
    st = ests[-1].scale_status
    assert st["source"] == "ground" and st["updates"] >= 2 and ests[-1].scale_m_per_unit == 1.0


def test_default_configuration_reports_no_measured_scale(models, street):
    poses, images = street
    vo = make_vo(models, [])
    est = [vo.process(Frame(stamp(i), im, CAM)) for i, im in enumerate(images[:3])][-1]
    assert est.scale == "relative" and est.scale_status is None and est.scale_m_per_unit == 1.0
    assert not vo.add_wheel_odometry(stamp(0), (0, 0, 0))


def test_offline_wheel_odometry_from_a_tum_file_or_a_bag_topic(models, tmp_path):
    from test_datasets_rosbag import write_bag
    from vode_ros.datasets import open_sequence
    from vode_ros.errors import VodeError
    from vode_ros.offline.runner import feed_wheel_odometry
    src = synth.generate_sequence(tmp_path / "s", scene="room", trajectory="straight",
                                  n_frames=6, width=96, height=72, seed=2)
    frames = list(open_sequence(src))
    bag = tmp_path / "b.mcap"
    write_bag(bag, frames, gt="odom")
    vo = make_vo(models, ["pose.scale_source=wheel_odom"])
    assert feed_wheel_odometry(vo, "/ground_truth/odom", bag) == len(frames)
    assert len(vo.metric_scale.path) == len(frames)
    tum = tmp_path / "w.tum"
    tum.write_text("".join(f"{f.stamp_ns * 1e-9:.9f} {i} 0 0 0 0 0 1\n"
                           for i, f in enumerate(frames)))
    vo = make_vo(models, ["pose.scale_source=wheel_odom"])
    assert feed_wheel_odometry(vo, str(tum), bag) == len(frames)
    with pytest.raises(VodeError, match="--wheel-odom /nothing"):
        feed_wheel_odometry(vo, "/nothing", bag)
