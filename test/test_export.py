"""`vode export`: contract metadata, ONNX Runtime parity, FP16 copies, refusal of broken files."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from vode_ros.errors import ModelError  # noqa: E402
from vode_ros.inference import OnnxModel  # noqa: E402
from vode_ros.learn import networks as nw  # noqa: E402
from vode_ros.learn.export import INIT_TRAINED_ON, ExportError, export_checkpoint  # noqa: E402

SIZE = (64, 96)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("init")
    report = export_checkpoint("init", out, fp16=True, input_size=SIZE, latency_runs=3)
    return out, report


def test_init_export_report(exported):
    out, report = exported
    json.dumps(report)  # the CLI prints it as JSON
    assert report["input_size"] == list(SIZE)
    assert report["trained_on"] == INIT_TRAINED_ON
    for kind in ("depth", "pose"):
        entry = report["models"][kind]
        path = out / f"{kind}.onnx"
        assert entry["path"] == str(path) and path.stat().st_size == entry["bytes"]
        assert entry["parity_max_abs_diff"] <= report["tolerance"]
        assert entry["parameters"] > 0 and entry["latency_ms_p50"] > 0
        assert entry["fp16"]["parity_max_abs_diff"] <= entry["fp16"]["tolerance"]
        assert (out / f"{kind}_fp16.onnx").stat().st_size == entry["fp16"]["bytes"]
    # self-contained: no external data next to the models, no temporary leftovers
    assert sorted(p.name for p in out.iterdir()) == ["depth.onnx", "depth_fp16.onnx",
                                                     "pose.onnx", "pose_fp16.onnx"]


@pytest.mark.parametrize("kind", ["depth", "pose"])
@pytest.mark.parametrize("suffix", ["", "_fp16"])
def test_runtime_loads_exported_models(exported, kind, suffix):
    out, _ = exported
    model = OnnxModel(out / f"{kind}{suffix}.onnx", kind)
    spec = model.spec
    assert (spec.input_height, spec.input_width) == SIZE
    assert spec.mean == (0.45, 0.45, 0.45) and spec.std == (0.225, 0.225, 0.225)
    assert spec.scale == "relative"
    assert spec.extra["vode.trained_on"] == INIT_TRAINED_ON
    assert spec.extra["vode.train_steps"] == "0"
    assert json.loads(spec.extra["vode.model_config"])["input_height"] == SIZE[0]
    x = np.random.default_rng(0).normal(size=model.zeros().shape).astype(np.float32)
    y = model(x)
    assert y.dtype == np.float32
    if kind == "depth":
        assert (spec.output, spec.min_depth, spec.max_depth) == ("disparity", 0.1, 100.0)
        assert y.shape == (1, 1, *SIZE) and np.all((y > 0) & (y < 1))
    else:
        assert (spec.pose, spec.pose_direction) == ("axisangle_translation",
                                                   "current_in_previous")
        assert y.shape == (1, 6) and np.abs(y).max() < 0.05


@pytest.mark.parametrize("key", ["vode.min_depth", "vode.kind", "vode.input_std"])
def test_model_without_metadata_is_refused(exported, tmp_path, key):
    out, _ = exported
    model = onnx.load(str(out / "depth.onnx"))
    keep = [(p.key, p.value) for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    for k, v in keep:
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(ModelError, match=key):
        OnnxModel(broken, "depth")


def test_trained_checkpoint_round_trip(tmp_path):
    cfg = nw.make_config(input_height=SIZE[0], input_width=SIZE[1], width_mult=0.5)
    depth, pose = nw.build_networks(cfg, seed=3)
    with torch.no_grad():  # weights far from the initialisation, so parity means something
        for p in list(depth.parameters()) + list(pose.parameters()):
            p.add_(0.05 * torch.randn_like(p))
        for m in list(depth.modules()) + list(pose.modules()):
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"depth": depth.state_dict(), "pose": pose.state_dict(), "model_config": cfg,
                "step": 1234, "trained_on": "unit test"}, ckpt)
    report = export_checkpoint(ckpt, tmp_path / "out", latency_runs=0)
    assert report["train_steps"] == 1234 and report["trained_on"] == "unit test"
    model = OnnxModel(tmp_path / "out" / "pose.onnx", "pose")
    assert model.spec.extra["vode.train_steps"] == "1234"
    assert model.spec.extra["vode.trained_on"] == "unit test"
    x = np.random.default_rng(1).normal(size=(1, 6, *SIZE)).astype(np.float32)
    with torch.no_grad():
        ref = pose.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(model(x) - ref).max() < 1e-4
    assert np.abs(ref).max() > 1e-3  # the check is not vacuous


def test_failed_parity_leaves_existing_models(exported, tmp_path):
    out, _ = exported
    target = tmp_path / "models"
    target.mkdir()
    (target / "depth.onnx").write_bytes(b"previous")
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_checkpoint("init", target, tolerance=-1.0, input_size=SIZE, latency_runs=0)
    assert (target / "depth.onnx").read_bytes() == b"previous"
    assert sorted(p.name for p in target.iterdir()) == ["depth.onnx"]


def test_bad_checkpoints_are_explained(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_checkpoint(tmp_path / "missing.pt", tmp_path / "out")
    partial = tmp_path / "partial.pt"
    torch.save({"depth": {}}, partial)
    with pytest.raises(ExportError, match="pose, model_config"):
        export_checkpoint(partial, tmp_path / "out")
    with pytest.raises(ExportError, match="multiples of 32"):
        export_checkpoint("init", tmp_path / "out", input_size=(60, 80))


def test_flip_averaged_depth_export_is_the_mean_of_image_and_mirror(tmp_path):
    cfg = nw.make_config(input_height=SIZE[0], input_width=SIZE[1], width_mult=0.5)
    depth, pose = nw.build_networks(cfg, seed=4)
    with torch.no_grad():            # an asymmetric network: the mirror gives another answer
        for p in depth.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"depth": depth.state_dict(), "pose": pose.state_dict(), "model_config": cfg,
                "step": 10, "trained_on": "unit test"}, ckpt)
    report = export_checkpoint(ckpt, tmp_path / "out", latency_runs=0, flip_average=True)
    assert report["models"]["depth"]["parity_max_abs_diff"] <= 1e-4
    model = OnnxModel(tmp_path / "out" / "depth.onnx", "depth")
    assert model.spec.extra["vode.flip_average"].startswith("true")
    x = np.random.default_rng(2).normal(size=(1, 3, *SIZE)).astype(np.float32)
    with torch.no_grad():
        net = depth.eval()
        plain = net(torch.from_numpy(x), scales=(0,))[0].numpy()
        mirror = net(torch.from_numpy(x[..., ::-1].copy()), scales=(0,))[0].numpy()[..., ::-1]
    out = model(x)
    np.testing.assert_allclose(out, 0.5 * (plain + mirror), atol=1e-5)
    assert np.abs(plain - mirror).max() > 1e-3      # the average is not the plain output
    # the mirror image's answer is the answer mirrored
    np.testing.assert_allclose(model(x[..., ::-1].copy()), out[..., ::-1], atol=1e-5)
