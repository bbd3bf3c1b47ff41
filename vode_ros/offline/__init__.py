"""The offline door: ``vode process`` and ``vode eval``, the pipeline the node runs, over a
recorded sequence.

Both build the pipeline with ``build_odometry(cfg)`` and call ``VisualOdometry.process`` on every
frame, exactly as the ROS node does; there is no second, simplified path. A frame the pipeline
refuses (``InputError``, including a model output that is not finite) is skipped and counted.
The run (``runner.process_sequence``) returns a ``RunRecord`` (``record``); the files are written
from it (``outputs``, ``reports``), and ``vode eval`` evaluates it against the sequence's ground
truth (``vode_ros.evaluation.evaluate``). ``runner.run`` is the whole command: open, build, run,
write, commit.

Outputs (DIR = ``--out``):

- ``trajectory.txt``: TUM ``t tx ty tz qx qy qz qw``, one line per processed frame, the input's
  own stamps (ns precision); the pose is ``Estimate.camera_pose``, the camera optical frame in the
  odometry frame, so it compares directly with a dataset's camera ground truth;
- ``depth/<index>.png``: every Nth frame (``save_depth``; 0 = none), 16-bit PNG at the depth's
  resolution (``depth.resolution``), value = depth x 1000, 0 = invalid, saturating at 65535, in
  the odometry's unit: millimetres when the odometry is metric, else thousandths of the
  trajectory's unit (multiply by the scale ratio from ``vode eval`` to get millimetres);
- ``run.json``: input, layout, frames processed/skipped (by kind), scale kind and source (with
  ``--wheel-odom FILE.tum`` or a bag's Odometry topic, the wheel odometry's), model files with
  their contract metadata, execution provider, pose backend counts, tracking-lost count and
  reasons, the configuration used;
- ``timing.json``: per-stage p50/p99/mean milliseconds from ``Estimate.timings_ms``, total wall
  time and frames per second;
- ``vode eval`` adds ``metrics.json`` and ``trajectory.png``, ``errors.png``, ``depth.png``;
- ``--out-bag OUT.mcap``: what vode_node would publish for these frames, as a ROS 2 bag
  (``vode_ros.bags.odometry.OdometryBag``: /odom, /tf, /tf_static, /depth/image +
  /depth/camera_info every ``save_depth``-th frame, /path, /diagnostics), written atomically and
  moved into place when the run succeeds (replacing an older bag there).

With ``loop_closure.enabled`` (``--set loop_closure.enabled=true``) the loop-closure back-end
(``vode_ros.loop_closure``) runs beside the odometry, fed by ``LoopClosure.add`` after every
``process`` and flushed at the end: ``trajectory.txt`` stays the odometry, and
``trajectory_map.txt`` is the loop-corrected trajectory in the map frame (each frame corrected by
its latest keyframe's Sim(3) correction); run.json gets ``loop_closure`` (keyframes, loops
accepted/rejected, the accepted loops), timing.json the ``loop_closure_add`` stage, and
metrics.json ``ate_rmse_m_map`` beside ``ate_rmse_m``.

Outputs are written into ``DIR/.partial-<pid>-<token>/`` and moved into DIR only when the run has
succeeded (``run.json`` last: a DIR with ``run.json`` is complete). A failed or interrupted run
removes its partial folder and leaves a previous complete run in DIR untouched.
"""
from vode_ros.offline.record import RunRecord
from vode_ros.offline.runner import RunOptions, process_frames, process_sequence, run

__all__ = ["RunOptions", "RunRecord", "process_frames", "process_sequence", "run"]
