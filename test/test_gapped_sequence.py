"""tools/gapped_sequence.py: a fast-motion test sequence cut from a recording (bursts of long
steps on real images), read back by vode with its ground truth."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vode_ros.datasets import open_sequence, synth

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))
from gapped_sequence import gapped_indices  # noqa: E402


def test_bursts_of_long_steps_in_each_period():
    idx = gapped_indices(100, 2, 10, 2, 5)
    assert np.diff(idx).tolist()[:10] == [2, 2, 2, 10, 10, 2, 2, 2, 10, 10]
    k = len(idx) - 1                              # the step that would come next
    assert idx[-1] < 100 <= idx[-1] + (10 if k % 5 >= 3 else 2)
    assert gapped_indices(10, 3, 30, 0, 4) == [0, 3, 6, 9]
    with pytest.raises(ValueError):
        gapped_indices(10, 0, 3, 1, 4)
    with pytest.raises(ValueError):
        gapped_indices(10, 1, 3, 5, 4)


def test_the_gapped_folder_reads_back_with_its_ground_truth(tmp_path):
    src = synth.generate_sequence(tmp_path / "src", scene="room", trajectory="handheld",
                                  n_frames=40, width=160, height=120, seed=3)
    out = tmp_path / "gapped"
    done = subprocess.run([sys.executable, str(TOOLS / "gapped_sequence.py"), str(src),
                           str(out), "--stride", "2", "--gap", "6", "--burst", "1",
                           "--every", "3"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    idx = gapped_indices(40, 2, 6, 1, 3)
    original, gapped = open_sequence(src), open_sequence(out)
    assert len(gapped) == len(idx)
    dt = np.diff(gapped.stamps_ns)
    assert np.allclose(dt, np.median(np.diff(original.stamps_ns)), atol=1000)   # restamped
    assert gapped.camera == original.camera
    for j in (0, 3, len(idx) - 1):
        a, b = original[idx[j]], gapped[j]
        np.testing.assert_allclose(b.gt_pose, a.gt_pose, atol=1e-5)
        assert np.abs(b.image.astype(int) - a.image.astype(int)).max() == 0
