"""The shipped networks read back from their ONNX files into PyTorch (fine-tuning without a
training checkpoint): outputs equal ONNX Runtime's, batch norm restandardised without changing
the function, clear errors for a file that does not fit, and `init_from: models/depth.onnx` in a
training run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from vode_ros.learn import onnx_weights as W  # noqa: E402
from vode_ros.learn.networks import DepthExport, make_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


def _image(h, w, channels, seed):
    """A smooth image-like normalised input (not the inputs `verify` itself uses)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (1, channels, h // 16, w // 16)).astype(np.float32)
    img = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(h, w),
                                          mode="bilinear", align_corners=False)
    return ((img - 0.45) / 0.225).numpy()


def _ort(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    return W.networks_from_onnx(MODELS / "depth.onnx")


def test_shipped_models_load_into_torch_and_match_onnx_runtime(shipped):
    nets, reports, config = shipped
    assert set(nets) == {"depth", "pose"}
    # the configuration is the depth network's, at its file's input size
    meta = {k: W.read_metadata(MODELS / f"{k}.onnx") for k in ("depth", "pose")}
    size = {k: (int(m["vode.input_height"]), int(m["vode.input_width"])) for k, m in meta.items()}
    assert (config["input_height"], config["input_width"]) == size["depth"]
    # folded batch norms are matched by order, plain convolutions by their torch names
    assert reports["depth"]["matched_by_name"] > 0 and reports["depth"]["matched_by_order"] > 0
    assert reports["depth"]["not_in_file"] == ["decoder.dispconv.1", "decoder.dispconv.2",
                                               "decoder.dispconv.3"]
    assert reports["pose"]["not_in_file"] == []
    for kind, channels, (h, w) in (("depth", 3, size["depth"]), ("pose", 6, size["pose"])):
        x = _image(h, w, channels, seed=11)
        net = nets[kind].eval()
        with torch.no_grad():
            got = (DepthExport(net) if kind == "depth" else net)(torch.from_numpy(x)).numpy()
        ref = _ort(MODELS / f"{kind}.onnx", x)
        assert got.shape == ref.shape
        assert np.max(np.abs(got - ref)) < 1e-4, kind
        assert np.std(ref) > 0          # not a trivially constant output


def test_restandardised_batch_norm_keeps_the_function_and_fits_training_mode(shipped):
    import copy
    nets, _, _ = shipped
    net = copy.deepcopy(nets["depth"])
    x = torch.from_numpy(np.concatenate([_image(96, 128, 3, seed=s) for s in range(6)]))
    with torch.no_grad():
        net.eval()
        before = net(x, scales=(0,))[0]
        raw = copy.deepcopy(net).train()   # (a training-mode pass updates running statistics)
        raw_train = raw(x, scales=(0,))[0]           # identity batch norms, batch statistics
    assert W.restandardize_batchnorm(net, x) == 15
    assert W.verify(net, MODELS / "depth.onnx", "depth") < 1e-4
    with torch.no_grad():
        net.train()
        after_train = net(x, scales=(0,))[0]
    assert float((raw_train - before).abs().mean()) > 1e-2       # what would have gone wrong
    assert float((after_train - before).abs().max()) < 1e-4      # what restandardising fixes


def test_a_file_that_does_not_fit_is_a_clear_error(tmp_path):
    import onnx
    with pytest.raises(W.OnnxWeightsError, match="differ from the file's"):
        W.networks_from_onnx(MODELS / "pose.onnx", make_config("gpu"))
    m = onnx.load(str(MODELS / "pose.onnx"))
    del m.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(m, str(bare))
    with pytest.raises(W.OnnxWeightsError, match="vode.kind"):
        W.networks_from_onnx(bare)
    # a file whose metadata names another architecture than its graph
    m = onnx.load(str(MODELS / "pose.onnx"))
    for p in m.metadata_props:
        if p.key == "vode.model_config":
            cfg = json.loads(p.value)
            cfg["pose_blocks"] = [0, 1, 1, 1, 0]
            p.value = json.dumps(cfg)
    lying = tmp_path / "pose.onnx"
    onnx.save(m, str(lying))
    with pytest.raises(W.OnnxWeightsError, match="convolutions"):
        W.networks_from_onnx([lying])
    with pytest.raises(W.OnnxWeightsError, match="does not exist"):
        W.onnx_files([tmp_path / "none.onnx"])


def test_training_starts_from_the_shipped_onnx_models(tmp_path):
    from vode_ros.datasets import generate_sequence
    from vode_ros.learn.options import load_options
    from vode_ros.learn.trainer import Trainer

    seq = generate_sequence(tmp_path / "room", scene="room", trajectory="straight", n_frames=12,
                            width=128, height=96, seed=3)
    cfg = json.loads(W.read_metadata(MODELS / "depth.onnx")["vode.model_config"])
    options = load_options({
        "out_dir": str(tmp_path / "run"),
        "model": {"variant": "cpu", "min_depth": cfg["min_depth"],
                  "max_depth": cfg["max_depth"]},
        "data": {"height": 96, "width": 128, "train": [{"path": str(seq), "stride": 1}]},
        "train": {"batch_size": 2, "max_steps": 1, "num_threads": 1, "num_scales": 1,
                  "init_from": str(MODELS / "depth.onnx")},
        "log": {"progress": False}})
    messages = []
    trainer = Trainer(options, say=messages.append)
    assert any("init_from depth from" in m and "pose from" in m for m in messages)
    # the trainer's networks compute what the files compute (evaluation mode)
    for kind, net, channels in (("depth", trainer.depth_net, 3), ("pose", trainer.pose_net, 6)):
        meta = W.read_metadata(MODELS / f"{kind}.onnx")      # each file at its own input size
        x = _image(int(meta["vode.input_height"]), int(meta["vode.input_width"]), channels, seed=5)
        net.eval()
        with torch.no_grad():
            got = (DepthExport(net) if kind == "depth" else net)(torch.from_numpy(x)).numpy()
        assert np.max(np.abs(got - _ort(MODELS / f"{kind}.onnx", x))) < 1e-4, kind
        net.train()
    # the steps of the longer-trained file (the depth network's)
    assert trainer.progress["base_steps"] == max(
        int(W.read_metadata(MODELS / f"{k}.onnx")["vode.train_steps"]) for k in ("depth", "pose"))
    summary = trainer.run()
    assert summary["step"] == 1 and np.isfinite(summary["last_loss"])
    assert "then fine-tuned" in summary["trained_on"]


def test_an_untrained_export_whose_equal_tensors_are_shared_reads_back(tmp_path):
    """An untrained network's folded batch norms all carry zero biases; the exporter keeps one
    copy and hands it to the other convolutions through Identity nodes."""
    import onnx

    from vode_ros.learn.export import export_checkpoint
    torch.manual_seed(0)
    export_checkpoint("init", tmp_path, latency_runs=0, parity_samples=1)
    graph = onnx.load(str(tmp_path / "depth.onnx")).graph
    inits = {t.name for t in graph.initializer}
    assert any(n.op_type == "Conv" and n.input[2] not in inits for n in graph.node
               if len(n.input) > 2)     # the case: a bias that is an Identity's output
    nets, reports, _ = W.networks_from_onnx(tmp_path)
    assert set(nets) == {"depth", "pose"}
    assert reports["depth"]["max_abs_diff"] < 1e-4 and reports["pose"]["max_abs_diff"] < 1e-4
