"""The run: ``VisualOdometry.process`` over every frame of a sequence, its ``RunRecord``, and the
outputs written from it (see ``vode_ros.offline`` for the files)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from vode_ros.config import VodeConfig
from vode_ros.errors import InputError, VodeError
from vode_ros.offline.outputs import AtomicOutput, DepthPngs, write_json
from vode_ros.offline.record import LoopClosureResult, RunRecord, model_info
from vode_ros.offline.reports import run_info, timing_report
from vode_ros.progress import progress_bar

MAX_WARNINGS_PER_KIND = 3

# Called with (position in the run, SequenceFrame, Estimate) for every processed frame.
FrameSink = Callable[[int, object, object], None]


@dataclass
class RunOptions:
    frames: str | None = None
    save_depth: int = 1
    quiet: bool = False
    config_file: str | None = None
    overrides: list = field(default_factory=list)
    out_bag: str | None = None           # also write the node's topics into this ROS 2 bag
    wheel_odom: str | None = None        # wheel odometry (TUM file or bag topic): wheel_odom scale
    map_points: bool = False             # also write map_points.npz (vode_ros.offline.map_points)


def run(input_path: str, out_dir, cfg: VodeConfig, options: RunOptions | None = None,
        evaluate=None) -> dict:
    """Process (and with ``evaluate``, an ``EvalOptions``, evaluate) a sequence; returns
    run.json's content (plus ``metrics`` when evaluating) and ``out``."""
    from vode_ros.bags.odometry import odometry_bag
    from vode_ros.datasets import open_sequence
    from vode_ros.loop_closure import loop_closure_for
    from vode_ros.pipeline import build_odometry

    opts = options or RunOptions()
    if opts.save_depth < 0:
        raise VodeError(f"--save-depth must be >= 0 (0 writes no depth), got {opts.save_depth}")
    command = "eval" if evaluate is not None else "process"
    seq = open_sequence(input_path, frames=opts.frames)
    if evaluate is not None:
        from vode_ros.evaluation.evaluate import require_ground_truth
        require_ground_truth(seq, input_path)
    if opts.wheel_odom:
        cfg.pose.scale_source = "wheel_odom"
    vo = build_odometry(cfg)                       # ModelError before anything is written
    if opts.wheel_odom:
        feed_wheel_odometry(vo, opts.wheel_odom, input_path)
    truth = None
    if evaluate is not None:
        from vode_ros.evaluation.evaluate import GroundTruthSamples
        truth = GroundTruthSamples(seq, evaluate, metric_depth=vo.depth.metric)
    started = datetime.now(timezone.utc)
    with AtomicOutput(out_dir) as out, odometry_bag(opts.out_bag, cfg, opts.save_depth) as bag, \
            loop_closure_for(cfg) as lc:
        depth_pngs = DepthPngs(out.path("depth"), opts.save_depth)
        writers = [depth_pngs.add] + ([lambda pos, f, est: bag.add(est, pos)] if bag else [])
        recorder = None
        if opts.map_points:
            from vode_ros.offline.map_points import MapPointsRecorder
            recorder = MapPointsRecorder(vo)
            writers.append(recorder.add)
        record = process_sequence(seq, vo, cfg, opts, command=command, input_path=input_path,
                                  started=started, writers=writers,
                                  observers=[truth.add] if truth else [], loop_closure=lc)
        write_trajectories(out, record)
        if recorder is not None:
            from vode_ros.offline.map_points import FILE_NAME
            recorder.save(out.path(FILE_NAME))
        write_json(out.path("timing.json"), timing_report(record))
        info = run_info(record, depth_pngs)
        metrics = None
        if truth is not None:
            from vode_ros.evaluation.evaluate import evaluate_run
            metrics = evaluate_run(record, truth, evaluate, out.path)
            info["metrics_file"] = "metrics.json"
        if bag is not None:
            info["out_bag"] = bag.commit({"frames_skipped": record.frames_skipped,
                                          "scale": record.scale, "provider": record.provider})
        info["outputs"] = out.names() + ["run.json"]
        write_json(out.path("run.json"), info)
        out.commit()
    result = dict(info)
    if metrics is not None:
        result["metrics"] = metrics
    result["out"] = str(out.out)
    return result


# -- the steps -----------------------------------------------------------------------------------
def feed_wheel_odometry(vo, source: str, input_path=None) -> int:
    """Every wheel odometry sample of ``source`` into ``vo``: a TUM file, or where no such file
    exists and the input is a ROS 2 bag, the nav_msgs/Odometry topic of that name in the bag.
    Returns how many."""
    from vode_ros.scale.wheel import read_wheel_tum
    if Path(source).is_file() or input_path is None:
        samples = read_wheel_tum(source)
    else:
        from vode_ros.bags.paths import BagError
        from vode_ros.bags.reader import read_odometry
        try:
            stamps, poses, _, _ = read_odometry(input_path, source)
        except BagError as exc:
            raise VodeError(f"--wheel-odom {source}: no such TUM file, and not a "
                            f"nav_msgs/Odometry topic of the bag '{input_path}' ({exc})") from None
        samples = list(zip(stamps.tolist(), poses[:, :3, 3], strict=True))
    if len(samples) < 2:
        raise VodeError(f"--wheel-odom {source}: at least 2 wheel odometry samples are "
                        f"needed, got {len(samples)}")
    for stamp_ns, xyz in samples:
        vo.add_wheel_odometry(int(stamp_ns), xyz)
    return len(samples)


def process_sequence(seq, vo, cfg: VodeConfig, opts: RunOptions, *, command: str = "process",
                     input_path=None, started: datetime | None = None,
                     writers: Iterable[FrameSink] = (), observers: Iterable[FrameSink] = (),
                     loop_closure=None) -> RunRecord:
    """The run itself: ``vo`` (built from ``cfg``) over every frame of ``seq``, with the frame
    sinks and loop closure of ``process_frames``; returns its record. Raises ``VodeError`` when
    no frame could be processed."""
    input_path = seq.path if input_path is None else input_path
    record = new_record(command, input_path, seq, vo, cfg, opts,
                        started or datetime.now(timezone.utc))
    process_frames(seq, vo, record, writers, observers, loop_closure, opts.quiet)
    check_processed(record, input_path, len(seq))
    if loop_closure is not None:
        record.loop_closure = finish_loop_closure(loop_closure, record)
    return record


def new_record(command: str, input_path, seq, vo, cfg: VodeConfig, opts: RunOptions,
               started: datetime) -> RunRecord:
    """The record of a run about to start: the input, the pipeline's models and settings."""
    depth_model = vo.depth.model
    return RunRecord(
        command=command, input=str(Path(input_path).expanduser().resolve()), layout=seq.layout,
        name=seq.name, frames_selection=opts.frames, frames_total=len(seq), camera=seq.camera,
        started_utc=started, scale=vo.scale, depth_metric=vo.depth.metric,
        models={"depth": model_info(depth_model), "pose": model_info(vo.pose_backend.model)},
        provider=depth_model.provider if depth_model is not None else None,
        pose_backend=vo.pose_backend.name, config=cfg, config_file=opts.config_file,
        overrides=list(opts.overrides))


def process_frames(seq, vo, record: RunRecord, writers: Iterable[FrameSink] = (),
                   observers: Iterable[FrameSink] = (), loop_closure=None,
                   quiet: bool = False) -> None:
    """``vo.process`` on every frame of ``seq``, in order, counted into ``record``. A frame the
    pipeline refuses (``InputError``) is skipped and counted by kind. Each estimate then goes to
    ``loop_closure`` (``LoopClosure.add``), to the ``writers`` (timed as ``write``) and to the
    ``observers`` (not timed)."""
    times = record.times
    t_wall = time.perf_counter()
    with progress_bar(len(seq), f"vode {record.command} {seq.name}", quiet) as bar:
        for position, (frame, read_ms) in enumerate(_timed(seq)):
            times.read.append(read_ms)
            est = _process(vo, frame, record, bar)
            if est is not None:
                _count(record, frame, est, loop_closure)
                t_w = time.perf_counter()
                for write in writers:
                    write(position, frame, est)
                times.write.append((time.perf_counter() - t_w) * 1e3)
                for observe in observers:
                    observe(position, frame, est)
            bar.update(1)
    times.wall_s = time.perf_counter() - t_wall


def _timed(seq) -> Iterator[tuple[object, float]]:
    """(frame, milliseconds it took to read) of every frame of ``seq``."""
    it = iter(seq)
    while True:
        t_read = time.perf_counter()
        try:
            frame = next(it)
        except StopIteration:
            return
        yield frame, (time.perf_counter() - t_read) * 1e3


def _process(vo, frame, record: RunRecord, bar):
    """The frame's ``Estimate``, or None when the pipeline refuses the frame."""
    t0 = time.perf_counter()
    try:
        est = vo.process(frame.frame())
    except InputError as exc:
        n = record.add_skip(exc.kind, str(exc))
        if n <= MAX_WARNINGS_PER_KIND:
            more = " (further ones counted silently)" if n == MAX_WARNINGS_PER_KIND else ""
            _warn(bar, f"frame {frame.index} skipped ({exc.kind}): {exc}{more}")
        return None
    record.times.process.append((time.perf_counter() - t0) * 1e3)
    return est


def _count(record: RunRecord, frame, est, loop_closure) -> None:
    for stage, ms in est.timings_ms.items():
        record.times.add_stage(stage, ms)
    if loop_closure is not None:
        t_lc = time.perf_counter()
        loop_closure.add(est, frame.image)
        record.times.add_stage("loop_closure_add", (time.perf_counter() - t_lc) * 1e3)
    record.add_estimate(est, frame.image)


def _warn(bar, message: str) -> None:
    text = f"warning: {message}"
    if not bar.disable:
        bar.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr)


def check_processed(record: RunRecord, input_path: str, n_frames: int) -> None:
    """Refuse a run without any processed frame; say how many were skipped."""
    n_done, n_skipped = record.frames_processed, record.frames_skipped
    if n_done == 0:
        raise VodeError(f"no frame of '{input_path}' could be processed ({n_skipped} skipped: "
                        f"{dict(record.skipped)}); first reason: "
                        f"{next(iter(record.skip_examples.values()), 'none')}")
    if n_skipped:
        print(f"vode {record.command}: skipped {n_skipped} of {n_frames} frames "
              f"({', '.join(f'{k}: {v}' for k, v in record.skipped.items())})", file=sys.stderr)


def finish_loop_closure(lc, record: RunRecord) -> LoopClosureResult:
    """Wait for the back-end, then correct the trajectory into the map frame."""
    lc.flush()
    map_poses = lc.correct(record.stamps_ns, record.poses)
    accepted = [{"stamp_ns": e.stamp_ns, "query": e.query, "candidate": e.candidate,
                 "reason": e.reason} for e in lc.events if e.accepted]
    return LoopClosureResult(map_poses, lc.summary(), accepted, lc.last_error)


def write_trajectories(out: AtomicOutput, record: RunRecord) -> None:
    """trajectory.txt (the odometry) and, with loop closure, trajectory_map.txt."""
    from vode_ros.evaluation.trajectory import write_tum
    write_tum(out.path("trajectory.txt"), record.stamps_ns, record.poses)
    if record.loop_closure is not None:
        write_tum(out.path("trajectory_map.txt"), record.stamps_ns,
                  np.asarray(record.loop_closure.map_poses))
