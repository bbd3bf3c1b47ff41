#!/usr/bin/env python3
"""The check of a machine with a GPU, as one JSON document on stdout (tools/device_check.sh runs
it): train the GPU configuration for a time budget, export the networks, then on the same card
in the same run bench

* ONNX Runtime's CUDA and TensorRT execution providers: `vode bench` end to end (frames per
  second, the core pipeline without ROS) and model-only latency (FP32 and FP16 files);
* the same networks in PyTorch eager (FP32, and FP16 autocast) on the same card;
* the CPU provider beside them, for reference.

Where something is missing (no GPU that torch sees, an onnxruntime without the CUDA or TensorRT
provider, onnxruntime and onnxruntime-gpu both installed) its entry says ``"available": false``
and why, and the check goes on; the exit status is 0 unless the check itself fails (1) or an
argument is wrong (2). ``--dry-run``: no training (freshly initialised networks at a small
input size) and a short synthetic bench sequence: the whole path in seconds, on any machine.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
ORT_GPU_HINT = ("install onnxruntime-gpu in place of onnxruntime (never beside it: both ship the "
                "same module and the one imported last wins), e.g. in a venv of its own")


def _dist(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """What the machine offers: torch and CUDA, ONNX Runtime and its providers."""
    env = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        import torch
        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        env["cuda_available"] = bool(torch.cuda.is_available())
        if env["cuda_available"]:
            env["gpu"] = torch.cuda.get_device_name(0)
            env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory
                                          / 2 ** 30, 1)
    except ImportError:
        env.update(torch=None, cuda_available=False)
    dists = {n: _dist(n) for n in ("onnxruntime", "onnxruntime-gpu")}
    env["onnxruntime_dists"] = dists
    env["onnxruntime_conflict"] = bool(dists["onnxruntime"] and dists["onnxruntime-gpu"])
    try:
        import onnxruntime as ort
        env["onnxruntime"] = ort.__version__
        env["ort_providers"] = list(ort.get_available_providers())
    except ImportError:
        env.update(onnxruntime=None, ort_providers=[])
    return env


def _probe(provider: str) -> str | None:
    """None when ONNX Runtime really runs a session on ``provider`` (a listed provider may still
    lack its libraries: CUDA, cuDNN, TensorRT), else what it fell back to."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=with_cpu_fallback(provider))
    except Exception as exc:  # noqa: BLE001 - a provider that cannot start is the finding
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    used = session.get_providers()
    return None if provider in used else f"a session fell back to {used}"


def provider_status(provider: str, env: dict) -> dict:
    """``{"available": bool, "reason": ...}`` of one ONNX Runtime provider: listed by
    onnxruntime and able to run a session."""
    if provider in env["ort_providers"]:
        failed = _probe(provider)
        if failed:
            hint = " (its CUDA/cuDNN/TensorRT libraries are missing or do not match)" \
                if provider in GPU_PROVIDERS else ""
            return {"available": False, "reason": f"onnxruntime lists {provider} but "
                    f"cannot run it: {failed}{hint}"}
        if env["onnxruntime_conflict"]:
            return {"available": True, "warning": "onnxruntime and onnxruntime-gpu are both "
                    "installed; " + ORT_GPU_HINT}
        return {"available": True}
    if env.get("onnxruntime") is None:
        return {"available": False, "reason": "onnxruntime is not installed"}
    why = f"onnxruntime {env['onnxruntime']} offers only {env['ort_providers']}"
    if env["onnxruntime_conflict"]:
        why += "; onnxruntime and onnxruntime-gpu are both installed: " + ORT_GPU_HINT
    elif provider in GPU_PROVIDERS:
        why += "; " + ORT_GPU_HINT
        if provider == "TensorrtExecutionProvider":
            why += " with the TensorRT libraries"
    return {"available": False, "reason": why}


# -- the steps ------------------------------------------------------------------------------------
def train_step(config: str, minutes: float, out: Path, env: dict, dry_run: bool) -> dict:
    """Train ``config`` on the GPU for ``minutes``; the checkpoint to export (or 'init')."""
    if dry_run:
        return {"skipped": "dry run", "checkpoint": "init"}
    if not env["cuda_available"]:
        return {"skipped": "torch sees no CUDA device (no GPU, or a CPU-only torch build)",
                "checkpoint": "init"}
    from vode_ros.learn.adapt import TimedTrainer
    from vode_ros.learn.options import load_options

    options = load_options(config, {"out_dir": str(out / "train"), "train.device": "cuda",
                                    "log.progress": False, "eval.every_steps": 0})
    t0 = time.time()
    trainer = TimedTrainer(options, resume=True, say=lambda m: print(m, file=sys.stderr))
    summary = trainer.run_for(60.0 * minutes)
    best = out / "train" / "best.pt"
    ckpt = best if best.is_file() else out / "train" / "last.pt"
    last = summary["history"][-1] if summary["history"] else {}
    return {"config": config, "steps": summary["step"], "wall_s": round(time.time() - t0, 1),
            "seconds_per_step": summary["seconds_per_step"], "checkpoint": str(ckpt),
            "heldout": {k: v for k, v in last.items() if isinstance(v, (int, float))}}


def export_step(checkpoint: str, config: str, out: Path, dry_run: bool) -> dict:
    from vode_ros.learn.export import export_checkpoint
    from vode_ros.learn.options import load_options

    model_config = load_options(config).model_config
    size = (64, 96) if dry_run else None
    report = export_checkpoint(checkpoint, out / "models", fp16=True, latency_runs=0,
                               model_config=model_config, input_size=size,
                               parity_samples=1 if dry_run else 3)
    return {"input_size": report["input_size"],
            "models": {k: {"path": m["path"], "bytes": m["bytes"], "parameters": m["parameters"],
                           "parity_max_abs_diff": m["parity_max_abs_diff"],
                           "fp16_parity_max_abs_diff": m.get("fp16", {}).get(
                               "parity_max_abs_diff")}
                       for k, m in report["models"].items()}}


def with_cpu_fallback(provider: str) -> list[str]:
    """The session's providers: ``provider``, then the CPU as ONNX Runtime's fallback (once:
    the CPU provider measured on its own is not listed twice)."""
    return [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]


def model_latency(path: str, provider: str, runs: int) -> dict:
    """Median latency (ms) of one model on one provider; which provider really ran it."""
    import onnxruntime as ort

    from vode_ros.learn.export import latency_ms_p50
    ort.set_default_logger_severity(3)
    session = ort.InferenceSession(path, providers=with_cpu_fallback(provider))
    used = session.get_providers()[0]
    if used != provider:
        return {"available": False, "reason": f"{provider} fell back to {used} for {path}"}
    return {"ms_p50": latency_ms_p50(session, runs=runs, warmup=max(3, runs // 5))}


def bench_step(provider: str, models: dict, bench_input: str, frames: str | None,
               env: dict, runs: int) -> dict:
    status = provider_status(provider, env)
    if not status["available"]:
        return status
    out = dict(status)
    try:
        for kind, m in models.items():
            out[f"{kind}_model"] = model_latency(m["path"], provider, runs)
            fp16 = m["path"].replace(".onnx", "_fp16.onnx")
            if Path(fp16).is_file():
                out[f"{kind}_model_fp16"] = model_latency(fp16, provider, runs)
        from vode_ros.config_files import load_config
        from vode_ros.evaluation.bench import run_bench
        cfg = load_config(None, [f"models.depth={models['depth']['path']}",
                                 f"models.pose={models['pose']['path']}",
                                 f"models.providers=[{provider}]"])
        rep = run_bench(bench_input, cfg, frames=frames, warmup=3, use_ros=False)
        out["end_to_end"] = {"fps": rep["fps_end_to_end"], "frames": rep["frames_timed"],
                             "provider": rep["provider"],
                             "model_only_ms": rep["model_only_ms"],
                             "total_ms_p50": rep["stages"]["total"]["p50_ms"]}
    except Exception as exc:  # noqa: BLE001 - a provider that fails is a finding, not a crash
        out.update(available=False, reason=f"{type(exc).__name__}: {str(exc)[:300]}")
    return out


def torch_eager(checkpoint: str, config: str, size, device: str, runs: int) -> dict:
    """The networks in PyTorch eager on ``device`` (FP32; FP16 autocast on CUDA): median ms."""
    import torch

    from vode_ros.learn.export import load_checkpoint
    from vode_ros.learn.options import load_options
    if device == "cuda" and not torch.cuda.is_available():
        return {"available": False, "reason": "torch sees no CUDA device"}
    depth, pose, cfg, _ = load_checkpoint(checkpoint, load_options(config).model_config,
                                          tuple(size))
    h, w = cfg["input_height"], cfg["input_width"]
    out = {"available": True}
    for kind, net, c in (("depth", depth, 3), ("pose", pose, 6)):
        net = net.to(device).eval()
        x = torch.randn(1, c, h, w, device=device)
        modes = [("fp32", False)] + ([("fp16_autocast", True)] if device == "cuda" else [])
        for name, half in modes:
            times = []
            with torch.no_grad(), torch.autocast(device, dtype=torch.float16, enabled=half):
                for i in range(runs + max(3, runs // 5)):
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    net(x) if kind == "pose" else net(x, scales=(0,))
                    if device == "cuda":
                        torch.cuda.synchronize()
                    if i >= max(3, runs // 5):
                        times.append((time.perf_counter() - t0) * 1e3)
            out[f"{kind}_{name}_ms_p50"] = round(float(np.median(times)), 3)
    return out


def bench_sequence(out: Path, dry_run: bool) -> tuple[str, str | None]:
    """The recording the end-to-end bench runs on: 7-Scenes where ../shared/data has it
    (frames 0-299), else a rendered synthetic room."""
    real = REPO.parent / "shared" / "data" / "7scenes-redkitchen"
    if real.is_dir() and not dry_run:
        return str(real), "0:300"
    from vode_ros.datasets import generate_sequence
    path = out / "bench-room"
    if not (path / "rgb.txt").is_file():
        generate_sequence(path, scene="room", trajectory="loop",
                          n_frames=16 if dry_run else 200, width=160 if dry_run else 320,
                          height=120 if dry_run else 240, seed=1)
    return str(path), None


def run(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    doc = {"check": "vode device check", "dry_run": bool(args.dry_run),
           "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "environment": env,
           "providers": {p: provider_status(p, env) for p in GPU_PROVIDERS}}
    t0 = time.time()
    doc["training"] = train_step(args.config, args.minutes, out, env, args.dry_run)
    ckpt = doc["training"]["checkpoint"]
    doc["export"] = export_step(ckpt, args.config, out, args.dry_run)
    seq, frames = bench_sequence(out, args.dry_run)
    doc["bench_input"] = {"path": seq, "frames": frames}
    runs = 5 if args.dry_run else 100
    doc["onnxruntime"] = {p: bench_step(p, doc["export"]["models"], seq, frames, env, runs)
                          for p in (*GPU_PROVIDERS, "CPUExecutionProvider")}
    size = doc["export"]["input_size"]
    doc["torch_eager"] = {d: torch_eager(ckpt, args.config, size, d, runs)
                          for d in ("cuda", "cpu")}
    doc["wall_s"] = round(time.time() - t0, 1)
    return doc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training budget (5)")
    p.add_argument("--config", default=str(REPO / "config" / "train" / "gpu.yaml"))
    p.add_argument("--out", default=str(REPO / "runs" / "device_check"))
    p.add_argument("--dry-run", action="store_true", help="no training, small models, a short "
                   "synthetic bench: the whole path in seconds on any machine")
    args = p.parse_args(argv)
    if args.minutes < 0:
        print("device_check: --minutes must be >= 0", file=sys.stderr)
        return 2
    # stdout carries the JSON only: what libraries print (ONNX Runtime's provider errors, the
    # exporters) goes to stderr, at the file-descriptor level
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            doc = run(args)
        status = 0
    except Exception as exc:  # noqa: BLE001 - say what failed, as JSON too
        doc = {"check": "vode device check", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()[-2000:]}
        status = 1
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    text = json.dumps(doc, indent=2, default=str)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "device_check.json").write_text(text + "\n")
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
