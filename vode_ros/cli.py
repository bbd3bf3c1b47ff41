"""The ``vode`` command: thin argument parsing; the work lives in the modules it calls (lazily, so
``vode --help`` stays cheap and a robot without torch can still run every non-training command).
"""
from __future__ import annotations

import argparse
import json
import sys

from vode_ros.errors import VodeError


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML configuration (a node parameter file or "
                   "{section: {key: value}})")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one configuration value (repeatable)")


def _load(args):
    from vode_ros.config import load_config
    return load_config(args.config, args.set)


# -- vode config ---------------------------------------------------------------------------------
def _add_config(sub):
    p = sub.add_parser("config", help="print the node parameter file generated from the schema")
    _config_args(p)
    p.set_defaults(func=_run_config)


def _run_config(args):
    from vode_ros.config import dump_parameter_yaml
    sys.stdout.write(dump_parameter_yaml(_load(args)))
    return 0


# -- vode bench ----------------------------------------------------------------------------------
def _add_bench(sub):
    p = sub.add_parser("bench", help="per-stage latency and end-to-end frames per second")
    p.add_argument("input", help="a sequence (any layout `vode process` reads)")
    p.add_argument("--frames", default=None, metavar="A:B", help="frame range (python slice)")
    p.add_argument("--warmup", type=int, default=5, help="frames run before timing starts")
    p.add_argument("--repeat", type=int, default=1, help="passes over the sequence")
    p.add_argument("--no-ros", action="store_true",
                   help="time the core pipeline only (no message conversion or publishing)")
    p.add_argument("--out", help="also write the JSON report to this file")
    _config_args(p)
    p.set_defaults(func=_run_bench)


def _run_bench(args):
    from vode_ros.evaluation.bench import run_bench
    report = run_bench(args.input, _load(args), frames=args.frames, warmup=args.warmup,
                       repeat=args.repeat, use_ros=not args.no_ros)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


# -- vode export ---------------------------------------------------------------------------------
def _add_export(sub):
    p = sub.add_parser("export", help="export a training checkpoint to ONNX models of the "
                       "vode model contract")
    p.add_argument("checkpoint", help="checkpoint written by `vode train` (or 'init' for "
                   "freshly initialised networks)")
    p.add_argument("--out", default="models", help="output folder (depth.onnx, pose.onnx)")
    p.add_argument("--fp16", action="store_true", help="also write FP16 models")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="largest ONNX Runtime vs PyTorch difference accepted")
    p.set_defaults(func=_run_export)


def _run_export(args):
    from vode_ros.learn.export import export_checkpoint
    report = export_checkpoint(args.checkpoint, args.out, fp16=args.fp16,
                               tolerance=args.tolerance)
    print(json.dumps(report, indent=2))
    return 0


# -- vode demo -----------------------------------------------------------------------------------
def _add_demo(sub):
    p = sub.add_parser("demo", help="run the real node (own process, over DDS) on a sequence and "
                       "show what it published")
    p.add_argument("inputs", nargs="*", help="sequences (default: a generated synthetic room, "
                   "plus 7-Scenes where ../shared/data has it)")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--frames", default=None, metavar="A:B", help="frame range of each input")
    p.add_argument("--rate", type=float, default=15.0, help="replay rate in frames per second")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="node parameter (repeatable), e.g. models.providers=[CPUExecutionProvider]")
    p.set_defaults(func=_run_demo)


def _run_demo(args):
    from vode_ros.ros.demo import run_demo
    reports = run_demo(args.inputs, args.out, frames=args.frames, rate_hz=args.rate,
                       extra_params=args.param)
    bad = [r["input"] for r in reports if not r["odom_received"] or not r["all_poses_finite"]]
    if bad:
        print(f"demo: the node published no usable odometry for {bad}", file=sys.stderr)
        return 1
    return 0


COMMANDS = [_add_config, _add_bench, _add_export, _add_demo]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="vode", description="vode_ros: monocular visual "
                                     "odometry and depth, offline tools")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except VodeError as exc:
        print(f"vode {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
