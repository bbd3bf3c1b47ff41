"""PyTorch networks read back from exported ONNX models (``models/depth.onnx``, ``models/pose.onnx``).

Only the ONNX files are shipped, so fine-tuning (``train.init_from``, ``vode adapt``) starts from
their initializers. What `vode export` (:mod:`vode_ros.learn.export`) did to the weights:

* Batch norm was folded into the convolution before it (TorchScript exporter, constant folding):
  the file holds each ``Conv2d + BatchNorm2d`` pair as one convolution with a bias, under a
  generated name (``onnx::Conv_217``); convolutions without batch norm (the depth decoder, the
  pose head's last layer) keep their PyTorch names (``net.decoder.upconv0.0.0.weight``; the
  depth model's prefix ``net.`` is its export wrapper's).
* Only what the exported graph computes is there: the depth decoder's full-resolution
  disparity head, not the heads of scales 1/2 .. 1/8 (those stay freshly initialised; train
  with ``train.num_scales: 1`` from such a start).
* Equal tensors are stored once: where two convolutions' folded weights or biases are the same
  (the zero biases of an untrained network's batch norms), the others read it through an
  Identity node, which the reading follows back to the initializer.

Matching: the convolutions of the ONNX graph (its node order, which is the traced execution
order) against the PyTorch convolutions in the order a forward pass calls them; a named
initializer must carry the name of its PyTorch parameter, every pair must have the same shape.
A folded pair is loaded as the convolution's weight with an identity batch norm that carries
the bias (``running_mean 0``, ``running_var 1 - eps``, ``weight 1``): exactly the exported
function in evaluation mode. :func:`restandardize_batchnorm` then gives each batch norm the
statistics of real images (the same function in evaluation mode, and batch statistics close to
the running ones in training mode, so that fine-tuning starts where the file is).

Every load is verified: PyTorch and ONNX Runtime on the same inputs (:func:`verify`); a file
that does not fit raises :class:`OnnxWeightsError` naming what differs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vode_ros.errors import VodeError
from vode_ros.learn.networks import DepthExport, DepthNet, PoseNet, check_config

KINDS = ("depth", "pose")
TOLERANCE = 1e-4


class OnnxWeightsError(VodeError):
    """An ONNX model's weights cannot be read back into the PyTorch network."""


def is_onnx_source(path) -> bool:
    """Whether ``path`` names ONNX models to start from: an ``.onnx`` file, a list of them, or a
    folder holding ``depth.onnx`` / ``pose.onnx`` (and no training checkpoint)."""
    if isinstance(path, (list, tuple)):
        return bool(path) and all(str(p).endswith(".onnx") for p in path)
    p = Path(str(path))
    if p.suffix == ".onnx":
        return True
    return p.is_dir() and any((p / f"{k}.onnx").is_file() for k in KINDS)


def onnx_files(source) -> dict:
    """``{kind: path}`` of the models ``source`` names: each file's kind is read from its
    ``vode.kind`` metadata; a single file brings the other kind's file of the same folder
    (``models/depth.onnx`` also reads ``models/pose.onnx`` where it exists)."""
    if isinstance(source, (list, tuple)):
        paths = [Path(str(p)) for p in source]
    else:
        p = Path(str(source))
        paths = [p / f"{k}.onnx" for k in KINDS] if p.is_dir() else [p]
        if not p.is_dir():
            paths += [p.parent / f"{k}.onnx" for k in KINDS if p.parent / f"{k}.onnx" != p]
        paths = [q for q in paths if q.is_file() or q == p]
    out: dict = {}
    for p in paths:
        if not p.is_file():
            raise OnnxWeightsError(f"'{p}' does not exist; expected an ONNX model written by "
                                   "`vode export` (such as models/depth.onnx)")
        kind = read_metadata(p).get("vode.kind")
        if kind not in KINDS:
            raise OnnxWeightsError(f"'{p}' declares vode.kind={kind!r}; expected 'depth' or "
                                   "'pose' (a model written by `vode export`)")
        out.setdefault(kind, p)
    return out


def read_metadata(path) -> dict:
    """A model file's contract metadata (:func:`vode_ros.model_file.read_metadata`)."""
    from vode_ros.errors import ModelError
    from vode_ros.model_file import read_metadata as file_metadata
    try:
        return file_metadata(path)
    except ModelError as exc:
        raise OnnxWeightsError(str(exc)) from None


def model_config_of(path) -> dict:
    """The network configuration an exported model was built from (its ``vode.model_config``)."""
    meta = read_metadata(path)
    text = meta.get("vode.model_config")
    if not text:
        raise OnnxWeightsError(f"'{path}' has no vode.model_config metadata: the PyTorch network "
                               "it was exported from is unknown (only models written by "
                               "`vode export` can be fine-tuned)")
    try:
        return check_config(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise OnnxWeightsError(f"'{path}': bad vode.model_config: {exc}") from None


def _onnx_convs(path) -> list[tuple[str, np.ndarray, str | None, np.ndarray | None]]:
    """``(weight name, weight, bias name, bias)`` of every Conv node, in graph order."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    # The exporter keeps one copy of equal tensors (the zero biases of an untrained network's
    # batch norms) and hands it on to the other convolutions through Identity nodes.
    aliases = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}

    def value(name):
        seen = set()
        while name in aliases and name not in seen:
            seen.add(name)
            name = aliases[name]
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        raise OnnxWeightsError(f"'{path}': convolution input '{name}' is neither an "
                               "initializer nor a constant; the graph computes its weights")

    convs = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        w_name = node.input[1]
        b_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        convs.append((w_name, value(w_name), b_name, value(b_name) if b_name else None))
    return convs


def _torch_convs(net: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Conv2d]]:
    """The network's convolutions in the order one forward pass calls them."""
    names = {m: n for n, m in net.named_modules()}
    order: list = []
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod) if mod not in order
                                     else None)
             for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net(example)
    finally:
        for h in hooks:
            h.remove()
    return [(names[m], m) for m in order]


def _batchnorm_after(net: nn.Module) -> dict:
    """``{conv: batch norm}`` for each convolution a batch norm follows in a Sequential."""
    out = {}
    for mod in net.modules():
        if isinstance(mod, nn.Sequential):
            kids = list(mod.children())
            for a, b in zip(kids[:-1], kids[1:], strict=True):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    out[a] = b
    return out


def _exported(net: nn.Module, kind: str, flip_average: bool = False) -> nn.Module:
    return DepthExport(net, flip_average) if kind == "depth" else net


def load_into(net: nn.Module, path, kind: str) -> dict:
    """Load the ONNX model ``path`` (of ``kind``) into ``net`` (a DepthNet or PoseNet of the
    model's configuration). Returns how the convolutions were matched and what the file lacks."""
    meta = read_metadata(path)
    flip = str(meta.get("vode.flip_average", "")).startswith("true")
    cfg = net.config
    channels = 3 if kind == "depth" else 6
    example = torch.zeros(1, channels, cfg["input_height"], cfg["input_width"])
    was = net.training
    net.eval()
    wrapper = _exported(net, kind, flip)
    prefix = "net." if kind == "depth" else ""
    convs_t = _torch_convs(wrapper, example)
    convs_o = _onnx_convs(path)
    if len(convs_t) != len(convs_o):
        raise OnnxWeightsError(f"'{path}' has {len(convs_o)} convolutions, the {kind} network of "
                               f"its vode.model_config runs {len(convs_t)}: not a graph "
                               "`vode export` wrote from this network")
    bn_of = _batchnorm_after(net)
    by_name = by_order = 0
    with torch.no_grad():
        for k, ((t_name, conv), (w_name, w, _b_name, b)) in enumerate(
                zip(convs_t, convs_o, strict=True)):
            if tuple(conv.weight.shape) != tuple(w.shape):
                raise OnnxWeightsError(
                    f"'{path}': convolution {k} ({t_name}) has weight shape "
                    f"{tuple(conv.weight.shape)} in PyTorch and {tuple(w.shape)} in the file "
                    f"('{w_name}')")
            named = not w_name.startswith("onnx::") and "::" not in w_name
            if named:
                want = t_name + ".weight"
                if w_name not in (want, prefix + want, "net." + want):
                    raise OnnxWeightsError(f"'{path}': convolution {k} is '{w_name}' in the file "
                                           f"but '{want}' in the forward order of PyTorch")
                by_name += 1
            else:
                by_order += 1
            conv.weight.copy_(torch.from_numpy(np.array(w, dtype=np.float32)))
            bias = torch.zeros(w.shape[0]) if b is None else torch.from_numpy(np.array(b, np.float32))
            bn = bn_of.get(conv)
            if bn is not None:              # folded: identity batch norm carrying the bias
                if conv.bias is not None:
                    conv.bias.zero_()
                bn.weight.fill_(1.0)
                bn.bias.copy_(bias)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            elif conv.bias is not None:
                conv.bias.copy_(bias)
            elif b is not None and np.any(b != 0):
                raise OnnxWeightsError(f"'{path}': convolution {k} ({t_name}) has a bias in the "
                                       "file but neither a bias nor a batch norm in PyTorch")
    used = {m for _, m in convs_t}
    missing = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m not in used]
    net.train(was)
    return {"path": str(path), "matched_by_name": by_name, "matched_by_order": by_order,
            "not_in_file": missing, "flip_average": flip}


def _inputs(channels: int, h: int, w: int, n: int, seed: int) -> list[np.ndarray]:
    from vode_ros.learn.export import _random_inputs
    return _random_inputs(channels, h, w, n, seed)


def verify(net: nn.Module, path, kind: str, samples: int = 2, tolerance: float = TOLERANCE,
           flip_average: bool = False) -> float:
    """Largest absolute difference between ``net`` (evaluation mode) and ONNX Runtime running
    ``path`` on the same inputs; raises :class:`OnnxWeightsError` above ``tolerance``."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [int(d) for d in inp.shape]
    was = net.training
    net.eval()
    wrapper = _exported(net, kind, flip_average)
    worst = 0.0
    for x in _inputs(shape[1], shape[2], shape[3], samples, seed=7):
        with torch.no_grad():
            ref = wrapper(torch.from_numpy(x)).numpy()
        got = session.run(None, {inp.name: x})[0]
        if got.shape != ref.shape:
            raise OnnxWeightsError(f"'{path}': ONNX output shape {got.shape}, PyTorch "
                                   f"{ref.shape}")
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - ref))))
    net.train(was)
    if not worst <= tolerance:
        raise OnnxWeightsError(f"'{path}': the {kind} network read back from it differs from "
                               f"ONNX Runtime by {worst:.3g} (max abs), more than {tolerance:g}; "
                               "the file's graph is not the network its metadata describes")
    return worst


def networks_from_onnx(source, config: dict | None = None) -> tuple[dict, dict, dict]:
    """``(nets, reports, config)``: ``{kind: network}`` read from the models ``source`` names
    (:func:`onnx_files`), each verified against ONNX Runtime, their configuration and one
    report per network. ``config`` (a training run's) must build the same networks; its input
    size may differ (weights do not depend on it)."""
    files = onnx_files(source)
    if not files:
        raise OnnxWeightsError(f"'{source}' holds no depth.onnx or pose.onnx")
    configs = {k: model_config_of(p) for k, p in files.items()}
    base = configs.get("depth") or configs["pose"]
    if config is not None:
        _check_same(config, base, files)
    nets, reports = {}, {}
    for kind, path in files.items():
        cfg = configs[kind]
        net = DepthNet(cfg) if kind == "depth" else PoseNet(cfg)
        rep = load_into(net, path, kind)
        rep["max_abs_diff"] = verify(net, path, kind, flip_average=rep["flip_average"])
        meta = read_metadata(path)
        rep["trained_on"] = meta.get("vode.trained_on", "unknown")
        rep["train_steps"] = meta.get("vode.train_steps", "unknown")
        nets[kind], reports[kind] = net, rep
    return nets, reports, base


ARCH_KEYS = ("depth_encoder_widths", "depth_encoder_blocks", "depth_decoder_widths",
             "pose_widths", "pose_blocks", "width_mult", "pose_scale", "mean", "std")
RANGE_KEYS = ("min_depth", "max_depth")


def _check_same(config: dict, file_config: dict, files: dict) -> None:
    config = check_config(config)
    bad = [k for k in ARCH_KEYS + RANGE_KEYS
           if json.dumps(config.get(k)) != json.dumps(file_config.get(k))]
    if bad:
        diffs = "; ".join(f"{k}: {config.get(k)} here, {file_config.get(k)} in the file"
                          for k in bad)
        raise OnnxWeightsError(f"{', '.join(map(str, files.values()))}: the networks of this "
                               f"configuration differ from the file's ({diffs}); set the model "
                               "section to the file's vode.model_config")


@torch.no_grad()
def restandardize_batchnorm(net: nn.Module, inputs: torch.Tensor) -> int:
    """Give every batch norm of ``net`` the statistics of its input on ``inputs`` (normalised
    images ``[N, C, H, W]``) without changing the function it computes in evaluation mode
    (``weight`` and ``bias`` absorb the change). A network read back from ONNX has identity
    batch norms, which batch statistics in training mode would undo; after this, training-mode
    batch norm starts close to the file's function. Returns how many were set."""
    stats: dict = {}
    bns = {conv: bn for conv, bn in _batchnorm_after(net).items()}
    hooks = []
    for conv in bns:
        def hook(mod, _inp, out):
            y = out.detach().double()
            stats[mod] = (y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False))
        hooks.append(conv.register_forward_hook(hook))
    was = net.training
    net.eval()
    try:
        net(inputs)
    finally:
        for h in hooks:
            h.remove()
        net.train(was)
    for conv, bn in bns.items():
        if conv not in stats:
            continue
        mu, var = stats[conv]
        a = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        c = bn.bias.double() - bn.running_mean.double() * a
        std = torch.sqrt(var + bn.eps)
        bn.running_mean.copy_(mu.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.to(bn.running_var.dtype))
        bn.weight.copy_((a * std).to(bn.weight.dtype))
        bn.bias.copy_((c + a * mu).to(bn.bias.dtype))
    return len(stats)
