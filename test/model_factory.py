"""Small ONNX models built with onnx.helper, for tests that need a model with known behaviour
(a fixed motion, NaN output, a broken contract). They run in real ONNX Runtime sessions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vode_ros.inference import ModelSpec

MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)


def depth_spec(h=48, w=64, scale="relative", output="disparity") -> ModelSpec:
    return ModelSpec(kind="depth", input_height=h, input_width=w, mean=MEAN, std=STD,
                     scale=scale, output=output, min_depth=0.1, max_depth=100.0)


def pose_spec(h=48, w=64, scale="relative") -> ModelSpec:
    return ModelSpec(kind="pose", input_height=h, input_width=w, mean=MEAN, std=STD,
                     scale=scale, pose="axisangle_translation",
                     pose_direction="current_in_previous")


def _save(graph, path: Path, metadata: dict | None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def make_depth_model(path, h=48, w=64, *, nan=False, metadata="default", out_hw=None,
                     input_hw=None, **spec_kw) -> Path:
    """Disparity = sigmoid(mean over channels) (NaN everywhere when ``nan``)."""
    ih, iw = input_hw or (h, w)
    oh, ow = out_hw or (ih, iw)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, ih, iw])
    y = helper.make_tensor_value_info("disparity", TensorProto.FLOAT, [1, 1, oh, ow])
    nodes = [helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=1),
             helper.make_node("Sigmoid", ["m"], ["s"])]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axes")]
    last = "s"
    if nan:
        inits.append(numpy_helper.from_array(np.array([np.nan], np.float32), "nanv"))
        nodes.append(helper.make_node("Mul", [last, "nanv"], ["n"]))
        last = "n"
    if (oh, ow) != (ih, iw):
        inits.append(numpy_helper.from_array(np.array([1, 1, oh, ow], np.int64), "size"))
        nodes.append(helper.make_node("Resize", [last, "", "", "size"], ["r"], mode="linear"))
        last = "r"
    nodes.append(helper.make_node("Identity", [last], ["disparity"]))
    graph = helper.make_graph(nodes, "depth", [x], [y], inits)
    md = depth_spec(h, w, **spec_kw).to_metadata() if metadata == "default" else metadata
    return _save(graph, path, md)


def make_pose_model(path, motion=(0, 0, 0, 0, 0, 0.05), h=48, w=64, *, nan=False,
                    metadata="default", **spec_kw) -> Path:
    """Outputs ``motion`` (rx ry rz tx ty tz) whatever the input (NaN when ``nan``)."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 6, h, w])
    y = helper.make_tensor_value_info("pose", TensorProto.FLOAT, [1, 6])
    value = np.array([motion], np.float32) * (np.nan if nan else 1.0)
    inits = [numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
             numpy_helper.from_array(np.zeros((1, 6), np.float32), "zero"),
             numpy_helper.from_array(value.astype(np.float32), "motion")]
    nodes = [helper.make_node("ReduceMean", ["images", "axes"], ["m"], keepdims=0),  # [1]
             helper.make_node("Unsqueeze", ["m", "ax1"], ["m2"]),                     # [1,1]
             helper.make_node("Mul", ["m2", "zero"], ["z"]),                          # [1,6]
             helper.make_node("Add", ["z", "motion"], ["pose"])]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax1"))
    graph = helper.make_graph(nodes, "pose", [x], [y], inits)
    md = pose_spec(h, w, **spec_kw).to_metadata() if metadata == "default" else metadata
    return _save(graph, path, md)
