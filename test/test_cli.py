"""The `vode` command: cheap to start, clear errors, and the synth subcommand."""
import json
import subprocess
import sys

import numpy as np


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vode_ros.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_help_imports_no_heavy_module(repo_root):
    code = ("import sys\nfrom vode_ros import cli\ntry:\n    cli.main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'rclpy', 'cv2', 'onnxruntime', 'matplotlib', 'evo')"
            " if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=repo_root)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_synth_writes_a_readable_sequence_and_bag(tmp_path):
    out = _run("synth", str(tmp_path / "s"), "--frames", "6", "--width", "160", "--height",
               "120", "--trajectory", "turn", "--bag", str(tmp_path / "s.mcap"))
    assert out.returncode == 0, out.stderr
    from vode_ros.datasets import open_sequence
    seq = open_sequence(tmp_path / "s")
    bag = open_sequence(tmp_path / "s.mcap")
    assert len(seq) == len(bag) == 6
    for a, b in zip(seq, bag, strict=True):
        assert a.stamp_ns == b.stamp_ns
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_allclose(a.gt_pose, b.gt_pose, atol=1e-9)


def test_unknown_scene_and_bad_override_are_clear_errors(tmp_path):
    out = _run("synth", str(tmp_path / "x"), "--scene", "moon")
    assert out.returncode == 2 and "room" in out.stderr and "moon" in out.stderr
    out = _run("config", "--set", "odometry.max_lost_frames=abc")
    assert out.returncode == 2 and "odometry.max_lost_frames" in out.stderr
    assert not (tmp_path / "x" / "rgb.txt").exists()


def test_config_prints_the_parameter_file():
    import yaml
    out = _run("config", "--set", "ros.publish_tf=false")
    data = yaml.safe_load(out.stdout)
    assert data["/**/vode_node"]["ros__parameters"]["ros"]["publish_tf"] is False
    assert json.dumps(data)
