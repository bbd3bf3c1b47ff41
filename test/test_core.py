"""Core pipeline tests without ROS: configuration, image conversion, model contract, odometry."""
from __future__ import annotations

import numpy as np
import pytest

import model_factory as mf
from vode_ros.camera import Camera, Frame
from vode_ros.config import VodeConfig
from vode_ros.config_files import dump_parameter_yaml, load_config
from vode_ros.depth import DepthEstimator, disparity_to_depth
from vode_ros.errors import ConfigError, InputError, ModelError, ModelOutputError
from vode_ros.geometry import from_axis_angle_translation, from_xyz_rpy, invert, rotation_angle_deg
from vode_ros.imaging import ENCODINGS, decode_compressed, raw_to_rgb, rgb_to_raw
from vode_ros.inference import OnnxModel, parse_metadata
from vode_ros.odometry import LOST, TRACKING, VisualOdometry
from vode_ros.pipeline import build_pose_backend
from vode_ros.pose import NetworkPose, PoseBackend

CAM = Camera(100.0, 100.0, 64.0, 48.0, 128, 96)


def textured(seed=0, h=96, w=128):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_vo(tmp_path, motion=(0, 0, 0, 0, 0, 0.05), depth_nan=False, pose_nan=False,
            overrides=()):
    cfg = load_config(None, list(overrides))
    d = OnnxModel(mf.make_depth_model(tmp_path / "d.onnx", nan=depth_nan), "depth")
    p = OnnxModel(mf.make_pose_model(tmp_path / "p.onnx", motion, nan=pose_nan), "pose")
    depth = DepthEstimator(d)
    return VisualOdometry(cfg, depth, NetworkPose(p, depth.spec))


# -- configuration --------------------------------------------------------------------------------
def test_config_overrides_coerce_and_range_check():
    cfg = load_config(None, ["odometry.max_lost_frames=7", "ros.publish_tf=false",
                             "models.providers=[CPUExecutionProvider]"])
    assert cfg.odometry.max_lost_frames == 7 and cfg.ros.publish_tf is False
    assert cfg.models.providers == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match=r"must lie in"):
        load_config(None, ["odometry.max_rotation_per_frame_deg=500"])
    with pytest.raises(ConfigError, match="unknown configuration key"):
        load_config(None, ["odometry.nonsense=1"])
    with pytest.raises(ConfigError, match="expects a value like"):
        load_config(None, ["ros.publish_tf=maybe"])


def test_parameter_file_round_trips_and_shipped_file_is_in_sync(repo_root, tmp_path):
    text = dump_parameter_yaml()
    f = tmp_path / "p.yaml"
    f.write_text(text)
    assert load_config(f).to_dict() == VodeConfig().to_dict()
    shipped = (repo_root / "config" / "vode.yaml").read_text()
    assert shipped == text, "config/vode.yaml is stale: regenerate with `vode config > " \
                            "config/vode.yaml`"


def test_every_parameter_has_a_description():
    for name, _, meta in VodeConfig().parameters():
        assert len(meta["description"]) > 10, name


# -- image conversion -----------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_raw_to_rgb_round_trip(encoding):
    img = textured()
    data, step = rgb_to_raw(img, encoding)
    out = raw_to_rgb(data, encoding, img.shape[1], img.shape[0], step)
    assert out.shape == img.shape and out.dtype == np.uint8
    if encoding in ("rgb8", "bgr8", "rgba8", "bgra8"):
        np.testing.assert_array_equal(out, img)
    else:
        grey = out[:, :, 0].astype(int)
        ref = np.round(img @ [0.299, 0.587, 0.114]).astype(int)
        assert np.abs(grey - ref).max() <= 2 + (encoding == "mono16") * 3


def test_raw_to_rgb_row_padding_and_big_endian():
    img = textured(h=5, w=7)
    rows = np.zeros((5, 7 * 3 + 11), np.uint8)
    rows[:, :21] = img.reshape(5, 21)
    np.testing.assert_array_equal(raw_to_rgb(rows.tobytes(), "rgb8", 7, 5, 32), img)
    mono = (np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000)
    out = raw_to_rgb(mono.astype(">u2").tobytes(), "mono16", 7, 5, 14, is_bigendian=True)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


@pytest.mark.parametrize("args,match", [
    (("yuv422", 4, 4, 8), "unsupported image encoding 'yuv422'"),
    (("rgb8", 0, 4, 0), "zero size"),
    (("rgb8", 4, 4, 12), "step x height"),
    (("rgb8", 4, 4, 8), "shorter than"),
])
def test_raw_to_rgb_rejects_bad_input(args, match):
    data = bytes(4 * 4 * 3 + 1)
    with pytest.raises(InputError, match=match):
        raw_to_rgb(data, *args)


def test_supported_encodings_are_named_in_error():
    with pytest.raises(InputError) as err:
        raw_to_rgb(b"", "bayer_rggb8", 1, 1, 1)
    for enc in ENCODINGS:
        assert enc in str(err.value)


def test_decode_compressed():
    import cv2
    img = textured()
    ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(decode_compressed(png.tobytes(), "png"), img)
    with pytest.raises(InputError, match="could not decode"):
        decode_compressed(b"not an image", "jpeg")


# -- geometry and camera --------------------------------------------------------------------------
def test_optical_extrinsic_default_is_rep103():
    cfg = VodeConfig()
    T = from_xyz_rpy(cfg.camera.base_to_camera_xyz, cfg.camera.base_to_camera_rpy)
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)   # z forward
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, -1, 0], atol=1e-12)  # x right
    np.testing.assert_allclose(T[:3, :3] @ [0, 1, 0], [0, 0, -1], atol=1e-12)  # y down


def test_invert_and_axis_angle():
    T = from_axis_angle_translation([0.1, -0.2, 0.3, 1, 2, 3])
    np.testing.assert_allclose(T @ invert(T), np.eye(4), atol=1e-12)
    assert rotation_angle_deg(T) == pytest.approx(np.degrees(np.linalg.norm([0.1, 0.2, 0.3])))


@pytest.mark.parametrize("cam,match", [
    (Camera(0.0, 100.0, 64, 48, 128, 96), "focal lengths must be positive"),
    (Camera(float("nan"), 100.0, 64, 48, 128, 96), "finite"),
])
def test_camera_validation(cam, match):
    with pytest.raises(InputError, match=match):
        cam.validate()


def test_camera_scaling():
    c = CAM.scaled(64, 48)
    assert (c.fx, c.cx, c.cy, c.width) == (50.0, 32.0, 24.0, 64)


# -- model contract -------------------------------------------------------------------------------
def test_metadata_round_trip_and_refusals():
    spec = mf.depth_spec()
    assert parse_metadata(spec.to_metadata()) == spec
    md = spec.to_metadata()
    for key, value, match in [("vode.output", "inverse", "vode.output must be"),
                              ("vode.min_depth", "200", "min_depth < vode.max_depth"),
                              ("vode.contract", "9", "not supported"),
                              ("vode.input_mean", "1,2", "3 comma-separated")]:
        bad = dict(md, **{key: value})
        with pytest.raises(ModelError, match=match):
            parse_metadata(bad)
    with pytest.raises(ModelError, match="is a depth model but a pose model was expected"):
        parse_metadata(md, expect_kind="pose")


def test_model_file_faults_are_refused_clearly(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        OnnxModel(tmp_path / "missing.onnx", "depth")
    (tmp_path / "corrupt.onnx").write_bytes(b"\x00garbage" * 20)
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        OnnxModel(tmp_path / "corrupt.onnx", "depth")
    with pytest.raises(ModelError, match="output shape"):
        OnnxModel(mf.make_depth_model(tmp_path / "w.onnx", out_hw=(24, 32)), "depth")
    with pytest.raises(ModelError, match="input shape"):
        OnnxModel(mf.make_depth_model(tmp_path / "i.onnx", input_hw=(32, 32)), "depth")
    with pytest.raises(ModelError, match="lacks vode.contract"):
        OnnxModel(mf.make_depth_model(tmp_path / "m.onnx", metadata={}), "depth")


def test_provider_fallback_logs_which_runs(tmp_path):
    m = OnnxModel(mf.make_depth_model(tmp_path / "d.onnx"), "depth",
                  ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert m.provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                          "CPUExecutionProvider")
    if m.provider == "CPUExecutionProvider":  # no GPU here: the GPU providers were tried
        assert m.provider_errors


# -- depth ----------------------------------------------------------------------------------------
def test_disparity_to_depth_range():
    d = disparity_to_depth(np.array([0.0, 1.0]), 0.1, 100.0)
    np.testing.assert_allclose(d, [100.0, 0.1])


# -- odometry -------------------------------------------------------------------------------------
def test_constant_forward_motion_accumulates_in_base_link(tmp_path):
    vo = make_vo(tmp_path, motion=(0, 0, 0, 0, 0, 0.05))
    ests = [vo.process(Frame(i * 33_000_000, textured(i), CAM)) for i in range(5)]
    assert [e.tracking for e in ests] == [TRACKING] * 5
    # camera z forward (REP-103) is base_link x forward (REP-105)
    np.testing.assert_allclose(ests[-1].pose[:3, 3], [0.2, 0, 0], atol=1e-6)
    np.testing.assert_allclose(ests[-1].camera_pose[:3, 3], [0.2, 0, 0], atol=1e-6)
    assert ests[-1].twist[0] == pytest.approx(0.05 / 0.033, rel=1e-6)
    assert ests[-1].depth.shape == (96, 128) and np.isfinite(ests[-1].depth).all()
    cov = [np.trace(e.pose_covariance) for e in ests]
    assert all(b > a for a, b in zip(cov[1:-1], cov[2:], strict=True))   # uncertainty grows with distance


def test_stamps_going_backwards_are_refused_and_state_kept(tmp_path):
    vo = make_vo(tmp_path)
    vo.process(Frame(2_000, textured(0), CAM))
    vo.process(Frame(3_000, textured(1), CAM))
    before = vo.pose.copy()
    for stamp in (1_000, 3_000):
        with pytest.raises(InputError, match="not after the previous") as err:
            vo.process(Frame(stamp, textured(2), CAM))
        assert err.value.kind == "stamp"
    np.testing.assert_array_equal(vo.pose, before)
    assert vo.process(Frame(4_000, textured(3), CAM)).tracking == TRACKING


def test_nan_depth_output_skips_frame(tmp_path):
    vo = make_vo(tmp_path, depth_nan=True)
    with pytest.raises(ModelOutputError, match="non-finite"):
        vo.process(Frame(1, textured(0), CAM))
    assert vo.frames == 0


def test_nan_pose_output_holds_pose_and_inflates_covariance(tmp_path):
    vo = make_vo(tmp_path, pose_nan=True)
    first = vo.process(Frame(1, textured(0), CAM))
    lost = vo.process(Frame(2, textured(1), CAM))
    assert lost.tracking == LOST and "non-finite" in lost.reason
    np.testing.assert_array_equal(lost.pose, np.eye(4))
    assert np.isfinite(lost.pose_covariance).all()
    assert np.trace(lost.pose_covariance) > np.trace(first.pose_covariance)


def test_blank_frames_lose_tracking_then_recover(tmp_path):
    vo = make_vo(tmp_path, motion=(0, 0, 0, 0, 0, 0.05))
    out = [vo.process(Frame(1, textured(0), CAM))]
    blank = np.zeros((96, 128, 3), np.uint8)
    out += [vo.process(Frame(2 + i, blank, CAM)) for i in range(3)]
    assert [e.tracking for e in out[1:]] == [LOST] * 3
    assert "no texture" in out[1].reason
    np.testing.assert_array_equal(out[-1].pose, np.eye(4))
    back = vo.process(Frame(10, textured(5), CAM))
    assert back.tracking == TRACKING
    np.testing.assert_allclose(back.pose[:3, 3], [0.05, 0, 0], atol=1e-6)


def test_implausible_step_is_a_tracking_failure(tmp_path):
    vo = make_vo(tmp_path, motion=(0, 0, 0, 0, 0, 50.0))
    vo.process(Frame(1, textured(0), CAM))
    e = vo.process(Frame(2, textured(1), CAM))
    assert e.tracking == LOST and "max_translation_per_frame" in e.reason
    np.testing.assert_array_equal(e.pose, np.eye(4))


def test_lost_reference_is_reanchored_after_max_lost_frames(tmp_path):
    vo = make_vo(tmp_path, overrides=["odometry.max_lost_frames=2"])
    vo.process(Frame(1, textured(0), CAM))
    blank = np.zeros((96, 128, 3), np.uint8)
    vo.process(Frame(2, blank, CAM))
    assert vo.reference.stamp_ns == 1
    vo.process(Frame(3, blank, CAM))
    assert vo.reference.stamp_ns == 3


def test_reset_restarts_at_identity(tmp_path):
    vo = make_vo(tmp_path)
    for i in range(3):
        vo.process(Frame(i + 1, textured(i), CAM))
    vo.reset()
    e = vo.process(Frame(1, textured(0), CAM))
    np.testing.assert_array_equal(e.pose, np.eye(4))


@pytest.mark.parametrize("image,camera,match", [
    (np.zeros((0, 0, 3), np.uint8), CAM, "empty"),
    (np.zeros((96, 128), np.uint8), CAM, "HxWx3 uint8"),
    (textured(), Camera(100, 100, 64, 48, 64, 48), "camera_info is for 64x48"),
])
def test_frame_validation(tmp_path, image, camera, match):
    vo = make_vo(tmp_path)
    with pytest.raises(InputError, match=match):
        vo.process(Frame(1, image, camera))


@pytest.mark.parametrize("depth_scale, pose_scale, expected", [
    ("metric", "metric", "metric"), ("metric", "relative", "relative"),
    ("relative", "metric", "relative"), ("relative", "relative", "relative")])
def test_metric_scale_needs_both_models_metric(tmp_path, depth_scale, pose_scale, expected):
    """The network backend is metric only where the depth and the pose model both say so."""
    cfg = load_config(None, ["pose.backend=network"])
    d = OnnxModel(mf.make_depth_model(tmp_path / "d.onnx", scale=depth_scale), "depth")
    p = OnnxModel(mf.make_pose_model(tmp_path / "p.onnx", scale=pose_scale), "pose")
    depth = DepthEstimator(d)
    backend = build_pose_backend(cfg, depth, p)
    assert isinstance(backend, NetworkPose) and isinstance(backend, PoseBackend)
    assert backend.name == "network" and backend.model is p
    assert backend.metric is (expected == "metric")
    assert VisualOdometry(cfg, depth, backend).scale == expected


def test_large_frames_are_shrunk_once_for_both_networks_and_small_ones_not_at_all():
    """A 1920x1080 frame is halved once (an area average) and both networks' inputs are
    resampled from the half, close to resampling the full image directly; a 640x480 frame's
    inputs are exactly the direct ones (the tracker's figures do not move)."""
    import cv2

    from vode_ros.inference import ModelSpec, to_tensor
    from vode_ros.pose import FrameData

    def spec(h, w):
        return ModelSpec("depth", h, w, (0.45,) * 3, (0.225,) * 3, "relative")

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (68, 120, 3), dtype=np.uint8)
    hd = cv2.resize(coarse, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    cam = Camera(1700.0, 1700.0, 960.0, 540.0, 1920, 1080)
    frame = FrameData(0, hd, cam)
    for h, w in ((128, 160), (96, 128)):
        got = frame.tensor(spec(h, w))
        direct = to_tensor(hd, spec(h, w))
        assert got.shape == direct.shape == (1, 3, h, w)
        # normalised units: 1 / (255 * 0.225) per grey level; within about one level on average
        assert np.mean(np.abs(got - direct)) * 255 * 0.225 < 1.0
    shrunk = [k for k in frame.cache if isinstance(k, tuple) and k[0] == "shrunk"]
    assert shrunk == [("shrunk", 2)] and frame.cache[shrunk[0]].shape == (540, 960, 3)
    small = cv2.resize(hd, (640, 480), interpolation=cv2.INTER_AREA)
    f2 = FrameData(0, small, Camera(570.0, 570.0, 320.0, 240.0, 640, 480))
    for h, w in ((128, 160), (96, 128)):
        assert np.array_equal(f2.tensor(spec(h, w)), to_tensor(small, spec(h, w)))
    assert not any(isinstance(k, tuple) and k[0] == "shrunk" for k in f2.cache)
