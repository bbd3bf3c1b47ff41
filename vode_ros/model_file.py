"""Reading and stamping the contract metadata of an ONNX model file (``vode model describe``).

A model exported elsewhere (a published depth network, say) plugs into the pipeline once its
``metadata_props`` describe it: ``stamp`` writes those entries, checked against the contract
before the file is written, and ``describe`` says what a file declares and whether the runtime
will accept it. Both read the file with the ``onnx`` package; no inference session is made.
"""
from __future__ import annotations

from pathlib import Path

from vode_ros.errors import ModelError
from vode_ros.files import atomic_path
from vode_ros.inference import parse_metadata

PREFIX = "vode."


def _load(path: str | Path):
    import onnx
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file '{path}' does not exist; expected an ONNX model")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises protobuf and OS errors alike
        raise ModelError(f"model file '{path}' is not a readable ONNX model "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                         ) from None


def _tensors(values) -> list[dict]:
    out = []
    for v in values:
        dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        out.append({"name": v.name, "shape": dims})
    return out


def read_metadata(path: str | Path) -> dict[str, str]:
    """A model file's ``metadata_props`` as a dict (ModelError for an unreadable file)."""
    return {p.key: p.value for p in _load(path).metadata_props}


def describe(path: str | Path) -> dict:
    """What ``path`` declares: its metadata, inputs, outputs, and whether it honours the contract
    (``contract: ok`` with the parsed spec, or ``contract: broken`` with the reason)."""
    model = _load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    info: dict = {"path": str(path), "metadata": meta,
                  "inputs": _tensors(model.graph.input), "outputs": _tensors(model.graph.output),
                  "opset": [{"domain": o.domain or "ai.onnx", "version": o.version}
                            for o in model.opset_import]}
    try:
        spec = parse_metadata(meta, f"model file '{path}'")
    except ModelError as exc:
        info.update(contract="broken", reason=str(exc))
    else:
        info.update(contract="ok", kind=spec.kind, scale=spec.scale,
                    input_size=[spec.input_height, spec.input_width])
    return info


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``vode.key=value`` strings as a dict (the ``vode.`` prefix may be left out)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ModelError(f"--set {item!r}: expected KEY=VALUE, e.g. vode.scale=relative")
        out[key if key.startswith(PREFIX) else PREFIX + key] = value.strip()
    return out


def stamp(path: str | Path, values: dict[str, str], out: str | Path) -> dict:
    """Write ``path`` to ``out`` with ``values`` set in its metadata_props (an empty value removes
    the key). The result must honour the contract, or nothing is written (ModelError)."""
    model = _load(path)
    meta = {p.key: p.value for p in model.metadata_props}
    for key, value in values.items():
        if value == "":
            meta.pop(key, None)
        else:
            meta[key] = value
    parse_metadata(meta, f"model '{path}' with the stamped metadata")
    del model.metadata_props[:]
    for key in sorted(meta):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, meta[key]
    import onnx
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return describe(out)
