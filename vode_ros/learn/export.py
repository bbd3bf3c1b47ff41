"""Export a training checkpoint to ONNX models of the vode model contract.

``export_checkpoint`` writes ``depth.onnx`` and ``pose.onnx`` (static batch 1, self-contained: no
external data file), describes each in ``metadata_props`` through
:meth:`vode_ros.inference.ModelSpec.to_metadata`, checks ONNX Runtime against PyTorch on random
inputs, optionally writes FP16 copies (float32 input and output, so the contract holds), proves
that :class:`vode_ros.inference.OnnxModel` accepts every file and reports sizes, parity and CPU
latency. A file is only replaced once its checks have passed.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from vode_ros.errors import VodeError
from vode_ros.inference import ModelSpec, OnnxModel
from vode_ros.learn.checkpoint import trained_weights
from vode_ros.learn.networks import (
    DepthExport,
    build_networks,
    check_config,
    count_parameters,
    make_config,
)

OPSET = 17
INIT_SEED = 0
INIT_TRAINED_ON = f"untrained (initialised, seed {INIT_SEED})"
FP16_TOLERANCE = 2e-2
INPUT_NAMES = {"depth": "image", "pose": "image_pair"}
OUTPUT_NAMES = {"depth": "disparity", "pose": "axisangle_translation"}


class ExportError(VodeError):
    """A checkpoint cannot be exported, or its export disagrees with PyTorch."""


# -- checkpoint ------------------------------------------------------------------------------------
def _train_config(ckpt: dict) -> dict:
    """The training options a `vode train` checkpoint stored (JSON text), {} where it has none."""
    try:
        config = json.loads(ckpt.get("train_config") or "{}")
    except (TypeError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def trained_size(ckpt: dict) -> tuple[int, int] | None:
    """(height, width) of the images a `vode train` checkpoint was trained on, None when it does
    not say."""
    try:
        data = _train_config(ckpt).get("data") or {}
        h, w = data.get("height"), data.get("width")
        return (int(h), int(w)) if h and w else None
    except (TypeError, ValueError, AttributeError):
        return None


def load_checkpoint(checkpoint, model_config: dict | None = None, input_size=None):
    """``(depth_net, pose_net, config, info)`` from a checkpoint path or ``'init'``.

    ``model_config`` overrides keys of the configuration (for 'init': of the default 'cpu'
    variant); ``input_size=(h, w)`` overrides the input size (the networks are fully
    convolutional, so trained weights export at any size that is a multiple of 32); without
    it a checkpoint exports at the size it was trained at (``trained_size``)."""
    overrides = dict(model_config or {})
    if input_size is not None:
        h, w = (int(v) for v in input_size)
        overrides.update(input_height=h, input_width=w)
    if str(checkpoint) == "init":
        try:
            config = make_config(overrides.pop("variant", "cpu"), **overrides)
        except ValueError as exc:
            raise ExportError(f"bad model configuration: {exc}") from None
        depth, pose = build_networks(config, seed=INIT_SEED)
        return depth, pose, config, {"trained_on": INIT_TRAINED_ON, "train_steps": 0,
                                     "checkpoint": "init"}
    path = Path(checkpoint)
    if not path.is_file():
        raise ExportError(f"checkpoint '{path}' does not exist; expected a file written by "
                          "`vode train` or 'init' for freshly initialised networks")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ExportError(f"checkpoint '{path}' cannot be read by torch.load "
                          f"({str(exc).splitlines()[0][:200]}); expected a file written by "
                          "`vode train`") from None
    missing = [k for k in ("depth", "pose", "model_config") if not isinstance(ckpt, dict)
               or k not in ckpt]
    if missing:
        raise ExportError(f"checkpoint '{path}' lacks {', '.join(missing)}; expected a dict with "
                          "'depth' and 'pose' state dicts and a 'model_config' dict")
    if input_size is None:         # by default the size the weights were trained at
        size = trained_size(ckpt)
        if size is not None:
            overrides.update(input_height=size[0], input_width=size[1])
    try:
        config = check_config({**ckpt["model_config"], **overrides})
    except ValueError as exc:
        raise ExportError(f"checkpoint '{path}': bad model_config: {exc}") from None
    depth, pose = build_networks(config)
    for name, net in (("depth", depth), ("pose", pose)):
        try:
            net.load_state_dict(trained_weights(ckpt, name))
        except RuntimeError as exc:
            raise ExportError(f"checkpoint '{path}': the {name} state dict does not fit the "
                              f"network its model_config builds: {str(exc)[:400]}") from None
    step = ckpt.get("step")
    info = {"trained_on": str(ckpt.get("trained_on") or "unknown") +
            (f"; exported: {_averaged_kind(ckpt)}" if ckpt.get("depth_ema") else ""),
            "train_steps": int(step) if step is not None else "unknown",
            "checkpoint": str(path)}
    return depth, pose, config, info


def model_spec(kind: str, config: dict, info: dict, parameters: int) -> ModelSpec:
    """The contract description of one exported network."""
    h, w = config["input_height"], config["input_width"]
    extra = {"vode.trained_on": info["trained_on"],
             "vode.train_steps": info["train_steps"],
             "vode.input_size": f"{h}x{w} (height x width)",
             "vode.architecture": ("DepthNet: residual encoder + U-Net decoder, sigmoid disparity"
                                   if kind == "depth" else
                                   "PoseNet: strided residual encoder, mean-pooled 6-DoF head"),
             "vode.variant": config.get("variant", "custom"),
             "vode.parameters": parameters,
             "vode.model_config": json.dumps(config, sort_keys=True),
             "vode.exported_by": "vode export (vode_ros.learn.export)"}
    if kind == "depth" and info.get("flip_average"):
        extra["vode.flip_average"] = "true (mean of the image's and its mirror's disparity)"
    common = dict(kind=kind, input_height=h, input_width=w, mean=tuple(config["mean"]),
                  std=tuple(config["std"]), scale=config["scale"], extra=extra)
    if kind == "depth":
        return ModelSpec(output="disparity", min_depth=float(config["min_depth"]),
                         max_depth=float(config["max_depth"]), **common)
    return ModelSpec(pose="axisangle_translation", pose_direction="current_in_previous", **common)


# -- ONNX ------------------------------------------------------------------------------------------
def _export_onnx(net: torch.nn.Module, example: torch.Tensor, path: Path, kind: str) -> str:
    """torch -> ONNX (static shapes); returns the exporter that worked.

    The TorchScript-based exporter is tried first: it is fast and its graphs (batch norm folded,
    plain Conv/Relu/Resize nodes) convert cleanly to FP16; the dynamo exporter is the fallback
    for torch versions without it. Exporter chatter goes to stderr so stdout stays JSON."""
    errors = []
    for dynamo in (False, True):
        try:
            with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kwargs = dict(input_names=[INPUT_NAMES[kind]], output_names=[OUTPUT_NAMES[kind]],
                              opset_version=OPSET if not dynamo else max(OPSET, 18),
                              dynamo=dynamo)
                if dynamo:
                    program = torch.onnx.export(net, (example,), **kwargs)
                    program.save(str(path), external_data=False)
                else:
                    torch.onnx.export(net, (example,), str(path), do_constant_folding=True,
                                      **kwargs)
            return "dynamo" if dynamo else "torchscript"
        except Exception as exc:  # noqa: BLE001 - try the other exporter
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: "
                          f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}")
    raise ExportError(f"torch.onnx.export failed for the {kind} network: {'; '.join(errors)}")


def _finish_onnx(path: Path, spec: ModelSpec, doc: str) -> None:
    """Write the contract metadata and save as one self-contained file."""
    import onnx

    model = onnx.load(str(path), load_external_data=True)
    del model.metadata_props[:]
    for key, value in spec.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "vode_ros"
    model.doc_string = doc
    onnx.checker.check_model(model)
    for stale in path.parent.glob(path.name + ".data"):
        stale.unlink()
    onnx.save_model(model, str(path), save_as_external_data=False)


def _to_fp16(src: Path, dst: Path) -> None:
    """FP16 weights and activations; the graph input and output stay float32 (the contract)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(model, keep_io_types=True)
    _sort_nodes(half.graph)  # the converter appends its input Casts at the end of the graph
    onnx.checker.check_model(half)
    onnx.save_model(half, str(dst), save_as_external_data=False)


def _sort_nodes(graph) -> None:
    """Order ``graph.node`` topologically (stable: the given order wherever it is valid)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ExportError("FP16 conversion produced a graph with a cycle or a missing input")
        pending = rest
    nodes = [type(n)() for n in ordered]
    for copy, node in zip(nodes, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _session(path: Path):
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _random_inputs(channels: int, h: int, w: int, n: int, seed: int) -> list[np.ndarray]:
    """Normalised-image-like inputs: smooth random images, scaled as the runtime normalises."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.uniform(0.0, 1.0, (1, channels, max(2, h // 8), max(2, w // 8)))
        img = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(h, w),
                                              mode="bilinear", align_corners=False).numpy()
        img = img + rng.normal(0.0, 0.05, img.shape)
        out.append(((img - 0.45) / 0.225).astype(np.float32))
    return out


def _parity(session, net: torch.nn.Module, inputs) -> float:
    name = session.get_inputs()[0].name
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        got = session.run(None, {name: x})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - ref))))
    return worst


def latency_ms_p50(session, runs: int = 50, warmup: int = 10) -> float:
    """Median wall time of one run (ms) with the session's own threading, after a warm-up."""
    inp = session.get_inputs()[0]
    x = np.random.default_rng(0).normal(0, 1, [int(d) for d in inp.shape]).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {inp.name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {inp.name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    return round(float(np.median(times)), 3)


def _check_contract(path: Path, kind: str, spec: ModelSpec) -> None:
    """The runtime's own loader accepts the file and reads back the spec that was written."""
    model = OnnxModel(path, kind, providers=["CPUExecutionProvider"])
    got = model.spec
    if (got.input_height, got.input_width, got.mean, got.std, got.scale) != (
            spec.input_height, spec.input_width, tuple(map(float, spec.mean)),
            tuple(map(float, spec.std)), spec.scale):
        raise ExportError(f"{path}: OnnxModel read back {got} but {spec} was written")
    out = model(model.zeros())
    if not np.all(np.isfinite(out)):
        raise ExportError(f"{path}: non-finite output on a zero input")


# -- the command -----------------------------------------------------------------------------------
def export_checkpoint(checkpoint, out_dir, fp16: bool = False, tolerance: float = 1e-3,
                      input_size=None, model_config: dict | None = None,
                      fp16_tolerance: float = FP16_TOLERANCE, parity_samples: int = 3,
                      latency_runs: int = 50, flip_average: bool = False) -> dict:
    """Export ``checkpoint`` (a `vode train` checkpoint or ``'init'``) to ``out_dir``.

    Writes ``depth.onnx`` and ``pose.onnx`` (and ``depth_fp16.onnx``, ``pose_fp16.onnx`` with
    ``fp16``). Raises :class:`ExportError` when ONNX Runtime differs from PyTorch by more than
    ``tolerance`` (``fp16_tolerance`` for the FP16 files). ``input_size=(h, w)`` and
    ``model_config`` override the checkpoint's configuration. ``latency_runs=0`` skips timing.
    ``flip_average``: the depth model averages the image's and its mirror image's disparity
    (twice the depth network's cost).
    Returns a JSON-ready report."""
    depth, pose, config, info = load_checkpoint(checkpoint, model_config, input_size)
    h, w = config["input_height"], config["input_width"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if flip_average:
        info = dict(info, flip_average=True)
    nets = {"depth": (DepthExport(depth, flip_average).eval(), 3), "pose": (pose.eval(), 6)}
    report = {"checkpoint": info["checkpoint"], "out_dir": str(out), "input_size": [h, w],
              "trained_on": info["trained_on"], "train_steps": info["train_steps"],
              "opset": OPSET, "tolerance": tolerance, "model_config": config, "models": {}}
    with tempfile.TemporaryDirectory(dir=out, prefix=".vode-export-") as tmp:
        staged = []  # (temporary, final): replaced only once every check has passed
        for i, (kind, (net, channels)) in enumerate(nets.items()):
            entry, files = _export_one(kind, net, channels, config, info, Path(tmp), out, i,
                                       fp16, tolerance, fp16_tolerance, parity_samples,
                                       latency_runs)
            report["models"][kind] = entry
            staged += files
        for tmp_path, final in staged:
            os.replace(tmp_path, final)
    return report


def _export_one(kind, net, channels, config, info, tmp: Path, out: Path, seed: int, fp16: bool,
                tolerance: float, fp16_tolerance: float, parity_samples: int,
                latency_runs: int):
    h, w = config["input_height"], config["input_width"]
    params = count_parameters(net)
    spec = model_spec(kind, config, info, params)
    example = torch.zeros(1, channels, h, w)
    inputs = _random_inputs(channels, h, w, parity_samples, seed=seed)
    final = out / f"{kind}.onnx"
    tmp_path = tmp / final.name
    exporter = _export_onnx(net, example, tmp_path, kind)
    doc = f"vode {kind} model ({spec.extra['vode.architecture']}); trained on {info['trained_on']}"
    _finish_onnx(tmp_path, spec, doc)
    session = _session(tmp_path)
    diff = _parity(session, net, inputs)
    if not diff <= tolerance:
        raise ExportError(f"{kind} model: ONNX Runtime differs from PyTorch by {diff:.3g} (max "
                          f"abs), more than the tolerance {tolerance:g}; the files in {out} were "
                          "left unchanged")
    _check_contract(tmp_path, kind, spec)
    entry = {"path": str(final), "bytes": tmp_path.stat().st_size, "parameters": params,
             "exporter": exporter, "parity_max_abs_diff": diff,
             "input_shape": [1, channels, h, w],
             "output_shape": [1, 1, h, w] if kind == "depth" else [1, 6]}
    if latency_runs:
        entry["latency_ms_p50"] = latency_ms_p50(session, latency_runs)
    files = [(tmp_path, final)]
    if fp16:
        half_final = out / f"{kind}_fp16.onnx"
        half_tmp = tmp / half_final.name
        _to_fp16(tmp_path, half_tmp)
        half_session = _session(half_tmp)
        half_diff = _parity(half_session, net, inputs)
        if not half_diff <= fp16_tolerance:
            raise ExportError(f"{kind} FP16 model: ONNX Runtime differs from PyTorch by "
                              f"{half_diff:.3g} (max abs), more than the FP16 tolerance "
                              f"{fp16_tolerance:g}; the files in {out} were left unchanged")
        _check_contract(half_tmp, kind, spec)
        entry["fp16"] = {"path": str(half_final), "bytes": half_tmp.stat().st_size,
                         "parity_max_abs_diff": half_diff, "tolerance": fp16_tolerance}
        if latency_runs:
            entry["fp16"]["latency_ms_p50_cpu"] = latency_ms_p50(half_session, latency_runs)
        files.append((half_tmp, half_final))
    return entry, files


def _averaged_kind(ckpt: dict) -> str:
    """What a checkpoint's averaged weights (``depth_ema``) are, for the model's trained_on."""
    train = _train_config(ckpt).get("train") or {}
    if train.get("average_from"):
        return f"the average of weight snapshots every {train.get('average_every')} steps " \
               f"from step {train['average_from']}"
    return "moving-average weights"
