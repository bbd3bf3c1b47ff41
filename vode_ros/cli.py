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
    from vode_ros.config_files import load_config
    return load_config(args.config, args.set)


# -- vode config ---------------------------------------------------------------------------------
def _add_config(sub):
    p = sub.add_parser("config", help="print the node parameter file generated from the schema")
    p.add_argument("--markdown", action="store_true", help="print the parameter page (docs/parameters.md)")
    _config_args(p)
    p.set_defaults(func=_run_config)


def _run_config(args):
    from vode_ros.config_files import dump_parameter_yaml, parameter_page_markdown
    cfg = _load(args)
    sys.stdout.write(parameter_page_markdown(cfg) if args.markdown else dump_parameter_yaml(cfg))
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
    p.add_argument("--flip-average", action="store_true",
                   help="depth model averages the image's and its mirror image's disparity "
                   "(Monodepth2's test-time flip; twice the depth network's cost)")
    p.add_argument("--input-size", metavar="HxW", default=None,
                   help="input size of the exported models, e.g. 96x128 (multiples of 32; "
                   "default: the size the checkpoint was trained at)")
    p.set_defaults(func=_run_export)


def _run_export(args):
    from vode_ros.learn.export import ExportError, export_checkpoint
    size = None
    if args.input_size:
        try:
            size = tuple(int(v) for v in args.input_size.lower().split("x"))
            if len(size) != 2:
                raise ValueError
        except ValueError:
            raise ExportError(f"--input-size '{args.input_size}': expected HEIGHTxWIDTH, "
                              "e.g. 96x128") from None
    report = export_checkpoint(args.checkpoint, args.out, fp16=args.fp16,
                               tolerance=args.tolerance, input_size=size,
                               flip_average=args.flip_average)
    print(json.dumps(report, indent=2))
    return 0


# -- vode train ----------------------------------------------------------------------------------
def _add_train(sub):
    p = sub.add_parser("train", help="self-supervised training of the depth and pose networks "
                       "(images only; tqdm, TensorBoard, checkpoints, resume; torchrun for DDP)")
    p.add_argument("--config", help="training YAML (see config/train/); required to train")
    p.add_argument("--options-markdown", action="store_true",
                   help="print the table of training options (docs/training.md) and exit")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT (default: <out_dir>/last.pt)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. train.max_steps=100 (YAML value)")
    p.add_argument("--steps", type=int, default=None,
                   help="stop this run after N more steps (the schedule keeps max_steps)")
    p.set_defaults(func=_run_train)


def _run_train(args):
    import yaml

    if args.options_markdown:
        from vode_ros.learn.options import options_markdown
        sys.stdout.write(options_markdown())
        return 0
    if not args.config:
        print("vode train: --config is required (a training YAML such as "
              "config/train/my_robot_bag.yaml)", file=sys.stderr)
        return 2
    from vode_ros.learn.trainer import train
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"vode train: --set expects KEY=VALUE, got '{item}'", file=sys.stderr)
            return 2
        overrides[key.strip()] = yaml.safe_load(value)
    summary = train(args.config, resume=args.resume, overrides=overrides, max_steps=args.steps,
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2,
                     default=str))
    return 0


# -- vode demo -----------------------------------------------------------------------------------
def _add_demo(sub):
    p = sub.add_parser("demo", help="the bag workflow end to end: sequence -> camera bag -> "
                       "bag play -> the real node (own process, sim time, over DDS) -> bag "
                       "record -> evaluation against ground truth (report and plots)")
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


# -- vode process / vode eval --------------------------------------------------------------------
def _run_args(p) -> None:
    p.add_argument("input", help="a sequence: any layout the dataset readers open (TUM, EuRoC, "
                   "KITTI, 7-Scenes, image folder, video, ROS 2 bag)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (written "
                   "atomically: a failed run leaves no complete-looking output)")
    p.add_argument("--frames", default=None, metavar="A:B", help="frame range (python slice)")
    p.add_argument("--save-depth", type=int, default=1, metavar="N",
                   help="write every Nth depth map as DIR/depth/<index>.png (0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out-bag", default=None, metavar="OUT.mcap",
                   help="also write what vode_node would publish (odom, /tf, /tf_static, "
                   "depth/image + depth/camera_info every --save-depth frames, path, "
                   "/diagnostics) into a ROS 2 bag: OUT.mcap, OUT.db3 or a rosbag2 folder")
    p.add_argument("--wheel-odom", default=None, metavar="FILE.tum|TOPIC",
                   help="wheel odometry, a TUM trajectory in metres (or, for a bag INPUT, its "
                   "nav_msgs/Odometry topic): the metric scale from the distance it travelled "
                   "(sets pose.scale_source=wheel_odom; its heading is not used)")
    p.add_argument("--map-points", action="store_true",
                   help="also write DIR/map_points.npz: the map points each frame sees (their "
                   "pixels and depths in the odometry's unit), what a data source's map_points "
                   "gives `vode train` as sparse depth")
    _config_args(p)


def _run_options(args):
    from vode_ros.offline import RunOptions
    return RunOptions(frames=args.frames, save_depth=args.save_depth, quiet=args.quiet,
                      config_file=args.config, overrides=list(args.set), out_bag=args.out_bag,
                      wheel_odom=args.wheel_odom, map_points=args.map_points)


def _add_process(sub):
    p = sub.add_parser("process", help="run the pipeline over a sequence: trajectory (TUM), "
                       "depth PNGs, run.json, timing.json")
    _run_args(p)
    p.set_defaults(func=_run_process)


def _run_process(args):
    from vode_ros.offline import run
    try:
        info = run(args.input, args.out, _load(args), _run_options(args))
    except KeyboardInterrupt:
        print("vode process: interrupted; no output was committed", file=sys.stderr)
        return 130
    print(f"vode process: {info['frames_processed']} frames ({info['frames_skipped']} skipped, "
          f"{info['tracking']['lost_frames']} tracking lost) -> {info['out']}")
    return 0


def _add_eval(sub):
    p = sub.add_parser("eval", help="process a sequence and evaluate it against its ground "
                       "truth: metrics.json (ATE, RPE, drift, depth) and PNG plots")
    _run_args(p)
    p.add_argument("--min-depth", type=float, default=None,
                   help="depth evaluation range, lower bound in metres (default 0.1; KITTI 1e-3)")
    p.add_argument("--max-depth", type=float, default=None,
                   help="depth evaluation range, upper bound in metres (default 10; KITTI 80)")
    p.add_argument("--depth-scaling", choices=("auto", "median", "global", "none"),
                   default="auto", help="auto: per-image median for relative-scale models, none "
                   "for metric ones; global: one median ratio for the whole sequence")
    p.add_argument("--align", choices=("auto", "sim3", "se3"), default="auto",
                   help="trajectory alignment (auto: Sim(3) for relative scale, SE(3) for metric; "
                   "a metric run aligned by SE(3) also reports the Sim(3) ATE, "
                   "ate_rmse_m_sim3, and its path length ratio)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=_run_eval)


def _run_eval(args):
    from vode_ros.evaluation.evaluate import EvalOptions
    from vode_ros.offline import run
    ev = EvalOptions(min_depth=args.min_depth, max_depth=args.max_depth,
                     depth_scaling=args.depth_scaling, align=args.align,
                     plots=not args.no_plots)
    try:
        info = run(args.input, args.out, _load(args), _run_options(args), ev)
    except KeyboardInterrupt:
        print("vode eval: interrupted; no output was committed", file=sys.stderr)
        return 130
    m = info["metrics"]
    keys = ("ate_rmse_m", "scale_ratio", "t_err_pct", "r_err_deg_per_100m", "fps")
    summary = {k: m.get(k) for k in keys}
    summary.update({k: m[k] for k in ("ate_rmse_m_sim3", "path_length_ratio") if k in m})
    summary["rpe_trans_m"] = m.get("rpe_trans_m")
    summary["rpe_rot_deg"] = m.get("rpe_rot_deg")
    if m.get("depth", {}).get("n_images"):
        summary["depth"] = {k: m["depth"].get(k) for k in ("abs_rel", "rmse", "a1", "n_images")}
        summary["depth_constant_baseline"] = {k: m["depth_constant_baseline"].get(k)
                                              for k in ("abs_rel", "a1")}
    print(json.dumps(summary, indent=2))
    print(f"vode eval: metrics and plots in {info['out']}", file=sys.stderr)
    return 0


# -- vode bag ------------------------------------------------------------------------------------
def _add_bag(sub):
    p = sub.add_parser("bag", help="ROS 2 bags without rosbag2: from a dataset, play, record, "
                       "info")
    bag = p.add_subparsers(dest="bag_command", required=True)

    q = bag.add_parser("from-dataset", help="write a sequence (any layout `vode process` reads) "
                       "as a camera bag: /camera/image_raw (or .../compressed), "
                       "/camera/camera_info, ground truth as /tf world -> camera_gt")
    q.add_argument("input", help="a sequence: TUM, EuRoC, KITTI, 7-Scenes, image folder, video, "
                   "ROS 2 bag")
    q.add_argument("out", help="OUT.mcap or OUT.db3 (one file) or a folder name (rosbag2 folder "
                   "with metadata.yaml)")
    q.add_argument("--frames", default=None, metavar="A:B", help="frame range (python slice)")
    q.add_argument("--storage", choices=("mcap", "sqlite3"), default=None,
                   help="storage (default: from the suffix, else mcap)")
    q.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage "
                   "(JPEG) on /camera/image_raw/compressed instead of raw rgb8")
    q.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality of --compressed")
    q.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_run_bag_from_dataset)

    q = bag.add_parser("play", help="publish a bag's messages with their timing (and /clock) "
                       "on the ROS 2 graph")
    q.add_argument("bag", help="a .mcap / .db3 file or a rosbag2 folder")
    q.add_argument("--rate", type=float, default=1.0, help="speed factor (2: twice as fast)")
    q.add_argument("--loop", action="store_true", help="start again at the end (calls "
                   ".../vode_node/reset services before each restart, see --no-reset)")
    q.add_argument("--no-reset", action="store_true", help="with --loop: do not call "
                   "vode_node's ~/reset before a restart")
    q.add_argument("--topics", nargs="+", default=None, metavar="TOPIC",
                   help="play only these topics (default: all)")
    q.add_argument("--start-delay", type=float, default=0.0, metavar="S",
                   help="seconds between creating the publishers and the first message")
    q.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                   help="first wait (at most S seconds) for a subscriber on each image topic")
    q.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    q.add_argument("--clock-hz", type=float, default=100.0,
                   help="/clock rate between messages (0: only at each message)")
    q.set_defaults(func=_run_bag_play)

    q = bag.add_parser("record", help="record topics of the ROS 2 graph into a bag (raw CDR, "
                       "receive times)")
    q.add_argument("out", help="OUT.mcap or OUT.db3 (one file) or a folder name")
    what = q.add_mutually_exclusive_group(required=True)
    what.add_argument("--topics", nargs="+", metavar="TOPIC", help="topics to record "
                      "(subscribed when they appear in the graph)")
    what.add_argument("--all", action="store_true", help="every topic of the graph")
    q.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: at Ctrl-C / SIGTERM)")
    q.add_argument("--storage", choices=("mcap", "sqlite3"), default=None,
                   help="storage (default: from the suffix, else mcap)")
    q.add_argument("--every", action="append", default=[], metavar="TOPIC=N",
                   help="keep every Nth message of TOPIC (repeatable), e.g. depth/image=10")
    q.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    q.set_defaults(func=_run_bag_record)

    q = bag.add_parser("info", help="topics, types, message counts and duration of a bag")
    q.add_argument("bag", help="a .mcap / .db3 file or a rosbag2 folder")
    q.set_defaults(func=_run_bag_info)


def _run_bag_from_dataset(args):
    from vode_ros.bags.from_dataset import dataset_to_bag
    info = dataset_to_bag(args.input, args.out, frames=args.frames, storage=args.storage,
                          compressed=args.compressed, overwrite=args.overwrite,
                          jpeg_quality=args.jpeg_quality, quiet=args.quiet)
    print(json.dumps(info, indent=2))
    return 0


def _run_bag_play(args):
    from vode_ros.ros.bag import play_bag
    stats = play_bag(args.bag, rate=args.rate, topics=args.topics, loop=args.loop,
                     start_delay=args.start_delay, clock=not args.no_clock,
                     clock_hz=args.clock_hz, reset_on_loop=not args.no_reset,
                     wait_for_subscribers=args.wait_for_subscribers)
    print(json.dumps(stats, indent=2))
    return 130 if stats.get("interrupted") else 0


def _run_bag_record(args):
    from vode_ros.ros.bag import record_bag
    every = {}
    for item in args.every:
        topic, sep, n = item.rpartition("=")
        if not sep or not topic or not n.isdigit() or int(n) < 1:
            raise VodeError(f"--every '{item}' is not TOPIC=N with N >= 1")
        every[topic] = int(n)
    summary = record_bag(args.out, None if args.all else args.topics, duration=args.duration,
                         storage=args.storage, overwrite=args.overwrite, every=every)
    print(json.dumps(summary, indent=2))
    return 0


def _run_bag_info(args):
    from vode_ros.bags.reader import bag_info
    print(json.dumps(bag_info(args.bag), indent=2))
    return 0


COMMANDS = [_add_config, _add_bench, _add_export, _add_train, _add_demo, _add_process, _add_eval,
            _add_bag]


# -- vode synth ----------------------------------------------------------------------------------
def _add_synth(sub):
    p = sub.add_parser("synth", help="render a synthetic sequence with exact depth and poses "
                       "(TUM RGB-D layout, optionally also a ROS 2 bag)")
    p.add_argument("out", help="output folder")
    p.add_argument("--scene", default="room",
                   help="room, corridor or street (fixed layouts), or a place drawn for the "
                   "seed: home, office, kitchen, hallway, town, field")
    p.add_argument("--trajectory", default=None,
                   help="fixed layouts: straight (default), turn, loop, rotation, static or "
                   "handheld (fast turns); places: handheld (default), vehicle or drone")
    p.add_argument("--frames", type=int, default=60, help="number of frames")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dark", default=None, metavar="A:B", help="frames rendered black")
    p.add_argument("--textures", nargs="+", default=None, metavar="SOURCE",
                   help="texture sources of a place: procedural, packaged (scikit-image's "
                   "photographs, where installed) or recordings to crop (default: procedural "
                   "packaged)")
    p.add_argument("--fov", type=float, default=None, metavar="DEG",
                   help="horizontal field of view (default: Kinect-like, 62 degrees)")
    p.add_argument("--look", nargs="?", const=True, default=False, choices=["metered"],
                   help="a random camera look: exposure, gamma, white balance, vignetting, "
                   "blur, noise, grey sensor; '--look metered': with an auto-exposure that "
                   "brings every image to a mean level drawn for the sequence")
    p.add_argument("--supersample", type=int, default=1, metavar="N",
                   help="render images at N times the size and average down")
    p.add_argument("--course", default="stadium", choices=["stadium", "ellipse"],
                   help="a place's course: 'stadium' (bends no tighter than the place allows, "
                   "slowed for) or 'ellipse' (earlier versions' course, whose ends turn a "
                   "robot 20-60 degrees a frame in a long place)")
    p.add_argument("--bag", default=None, metavar="OUT.mcap",
                   help="also write the sequence as a ROS 2 bag")
    p.set_defaults(func=_run_synth)


def _run_synth(args):
    from vode_ros.datasets.synth import PLACES, generate_sequence
    trajectory = args.trajectory or ("handheld" if args.scene in PLACES else "straight")
    path = generate_sequence(args.out, scene=args.scene, trajectory=trajectory,
                             n_frames=args.frames, width=args.width, height=args.height,
                             fps=args.fps, seed=args.seed, dark_frames=args.dark,
                             progress=sys.stderr.isatty(), textures=args.textures,
                             fov_deg=args.fov, look=args.look, supersample=args.supersample,
                             course=args.course)
    print(f"wrote {path} (TUM RGB-D layout: rgb/, depth/, groundtruth.txt, camera.txt)")
    if args.bag:
        from vode_ros.bags.from_dataset import dataset_to_bag
        info = dataset_to_bag(path, args.bag, quiet=True)
        print(f"wrote {info.get('path', args.bag)}")
    return 0


COMMANDS.append(_add_synth)


# -- vode adapt ----------------------------------------------------------------------------------
def _add_adapt(sub):
    p = sub.add_parser("adapt", help="fit the depth and pose networks to your own recording "
                       "(self-supervised, poses from the odometry): DIR/depth.onnx, "
                       "DIR/pose.onnx; run it again with the same --out to resume")
    p.add_argument("input", help="a recording: anything `vode process` reads (image folder, "
                   "video, ROS 2 bag, dataset layouts)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (also the "
                   "resume state)")
    p.add_argument("--minutes", type=float, default=None, metavar="M",
                   help="time budget of the whole command (default 15: two minutes of video "
                   "in under 20 minutes on 2 CPU cores)")
    p.add_argument("--frames", default=None, metavar="A:B", help="frame range (python slice)")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="last fraction of the frames held out to judge the models (0.2)")
    p.add_argument("--steps", type=int, default=None, help="at most N training steps")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of training (2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--map-depth-weight", type=float, default=None, metavar="W",
                   help="weight of a depth loss against the odometry's map points (scale-"
                   "invariant log loss; default 0: the photometric loss only)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _config_args(p)
    p.set_defaults(func=_run_adapt)


def _run_adapt(args):
    from vode_ros.learn.adapt import adapt
    try:
        report = adapt(args.input, args.out, args.minutes, frames=args.frames,
                       holdout=args.holdout, config_file=args.config, overrides=args.set,
                       max_steps=args.steps, threads=args.threads, seed=args.seed,
                       map_depth_weight=args.map_depth_weight, quiet=args.quiet,
                       say=lambda m: print(m, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print("vode adapt: interrupted; run the same command again to resume",
              file=sys.stderr)
        return 130
    print(json.dumps(report, indent=2, default=str))
    return 0


COMMANDS.append(_add_adapt)


# -- vode model ----------------------------------------------------------------------------------
def _add_model(sub):
    p = sub.add_parser("model", help="an ONNX model's contract metadata: describe it, or stamp "
                       "it onto a model exported elsewhere")
    verbs = p.add_subparsers(dest="verb", required=True)
    q = verbs.add_parser("describe", help="print what a model declares and whether it honours "
                         "the contract; with --set and --out, write a copy with that metadata")
    q.add_argument("model", help="ONNX file")
    q.add_argument("--set", action="append", default=[], metavar="vode.KEY=VALUE",
                   help="set one metadata entry (repeatable; an empty value removes it); "
                   "needs --out")
    q.add_argument("--out", help="where to write the stamped model (may be the input)")
    q.set_defaults(func=_run_model_describe)


def _run_model_describe(args) -> int:
    from vode_ros.model_file import describe, parse_assignments, stamp
    if args.set and not args.out:
        raise VodeError("--set needs --out (the file to write; it may be the input itself)")
    info = stamp(args.model, parse_assignments(args.set), args.out) if args.set else \
        describe(args.model)
    print(json.dumps(info, indent=2))
    return 0 if info["contract"] == "ok" else 1


COMMANDS.append(_add_model)


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
