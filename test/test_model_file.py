"""vode model describe: what a model file declares, and stamping the contract onto a model
exported elsewhere (real ONNX files, loaded afterwards by a real ONNX Runtime session)."""
from __future__ import annotations

import json

import pytest

from model_factory import make_depth_model
from vode_ros.cli import main
from vode_ros.errors import ModelError
from vode_ros.inference import OnnxModel
from vode_ros.model_file import describe, parse_assignments, stamp

CONTRACT = {"vode.contract": "1", "vode.kind": "depth", "vode.input_height": "48",
            "vode.input_width": "64", "vode.input_mean": "0.45,0.45,0.45",
            "vode.input_std": "0.225,0.225,0.225", "vode.scale": "relative",
            "vode.output": "disparity", "vode.min_depth": "0.1", "vode.max_depth": "80"}


def test_shipped_models_honour_the_contract(repo_root):
    for name, kind in (("depth.onnx", "depth"), ("pose.onnx", "pose")):
        info = describe(repo_root / "models" / name)
        assert info["contract"] == "ok", info.get("reason")
        assert info["kind"] == kind
        assert info["inputs"][0]["shape"][2:] == info["input_size"]


def test_a_bare_export_is_described_as_broken_then_stamped(tmp_path, capsys):
    bare = make_depth_model(tmp_path / "bare.onnx", metadata={})
    assert main(["model", "describe", str(bare)]) == 1
    info = json.loads(capsys.readouterr().out)
    assert info["contract"] == "broken" and "vode.contract" in info["reason"]
    with pytest.raises(ModelError, match="lacks"):
        OnnxModel(bare, "depth")

    out = tmp_path / "stamped.onnx"
    args = ["model", "describe", str(bare), "--out", str(out)]
    for key, value in CONTRACT.items():
        args += ["--set", f"{key.removeprefix('vode.')}={value}"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["contract"] == "ok"
    model = OnnxModel(out, "depth")          # the runtime now accepts it, with what was stamped
    assert model.spec.max_depth == 80.0 and model.spec.input_width == 64


def test_a_stamp_that_breaks_the_contract_writes_nothing(tmp_path):
    good = make_depth_model(tmp_path / "good.onnx")
    out = tmp_path / "out.onnx"
    with pytest.raises(ModelError, match="vode.scale"):
        stamp(good, {"vode.scale": "furlongs"}, out)
    assert not out.exists()
    # an empty value removes a key; a required one makes the result break the contract
    with pytest.raises(ModelError, match="vode.output"):
        stamp(good, {"vode.output": ""}, out)
    assert not out.exists() and describe(good)["contract"] == "ok"


def test_bad_arguments_say_what_was_expected(tmp_path, capsys):
    with pytest.raises(ModelError, match="KEY=VALUE"):
        parse_assignments(["scale"])
    assert main(["model", "describe", str(tmp_path / "none.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["model", "describe", str(tmp_path / "junk.onnx")]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    assert main(["model", "describe", str(make_depth_model(tmp_path / "m.onnx")),
                 "--set", "scale=metric"]) == 2
    assert "--set needs --out" in capsys.readouterr().err
