"""tools/device_check.sh, the GPU machine's check, in its dry mode on this machine: one JSON
document on stdout with every section, GPU providers that cannot run reported as unavailable
(with the reason) rather than failing, the CPU provider and PyTorch eager benched."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("device_check", REPO / "tools" /
                                                  "device_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dry_run_prints_one_json_document_and_degrades_without_a_gpu(tmp_path, capfd, recwarn):
    import torch
    dc = _module()
    assert dc.main(["--dry-run", "--out", str(tmp_path)]) == 0
    out = capfd.readouterr().out
    doc = json.loads(out)                                  # stdout holds the JSON alone
    assert json.loads((tmp_path / "device_check.json").read_text()) == doc
    assert doc["training"]["checkpoint"] == "init"
    for kind in ("depth", "pose"):
        m = doc["export"]["models"][kind]
        assert m["parity_max_abs_diff"] < 1e-3 and Path(m["path"]).is_file()
    cpu = doc["onnxruntime"]["CPUExecutionProvider"]
    assert cpu["available"] and cpu["end_to_end"]["fps"] > 0
    assert cpu["depth_model"]["ms_p50"] > 0 and cpu["pose_model_fp16"]["ms_p50"] > 0
    for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        entry = doc["onnxruntime"][provider]
        assert isinstance(entry["available"], bool)
        if not entry["available"]:
            assert provider in entry["reason"] or "onnxruntime" in entry["reason"]
        else:
            assert entry["end_to_end"]["provider"] == provider
    assert doc["torch_eager"]["cpu"]["depth_fp32_ms_p50"] > 0
    if not torch.cuda.is_available():
        assert doc["torch_eager"]["cuda"] == {"available": False,
                                              "reason": "torch sees no CUDA device"}
        assert doc["training"]["skipped"]
    # the CPU provider benched on its own is asked for once (ONNX Runtime warns of a duplicate)
    assert not [w for w in recwarn if "Duplicate provider" in str(w.message)]


def test_a_session_lists_the_cpu_fallback_once():
    dc = _module()
    assert dc.with_cpu_fallback("CPUExecutionProvider") == ["CPUExecutionProvider"]
    assert dc.with_cpu_fallback("CUDAExecutionProvider") == ["CUDAExecutionProvider",
                                                             "CPUExecutionProvider"]


def test_the_shell_script_rejects_a_bad_budget():
    res = subprocess.run([str(REPO / "tools" / "device_check.sh"), "--minutes", "-1"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--minutes" in res.stderr
