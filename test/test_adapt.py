"""`vode adapt` end to end on a short synthetic recording: the odometry, a few fine-tuning steps
from the shipped ONNX models, held-out losses before and after, contract-valid ONNX files, and
a resume that continues instead of starting over."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vode_ros.cli import main  # noqa: E402
from vode_ros.inference import OnnxModel  # noqa: E402
from vode_ros.learn.adapt import AdaptError, split_frames  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    from vode_ros.datasets import generate_sequence
    # 320x240: the walk gives the odometry enough parallax for a map in the held-out frames
    return generate_sequence(tmp_path_factory.mktemp("adapt") / "walk", scene="room",
                             trajectory="handheld", n_frames=36, width=320, height=240, seed=3)


def test_split_holds_out_the_last_frames():
    assert split_frames(100, None, 0.2) == ("0:80:1", "80:100:1")
    assert split_frames(1000, "100:600:2", 0.2) == ("100:499:2", "500:599:2")
    with pytest.raises(AdaptError, match="too few"):
        split_frames(12, None, 0.2)
    with pytest.raises(AdaptError, match="holdout"):
        split_frames(100, None, 1.5)


def test_adapt_writes_contract_models_and_resumes(recording, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)          # models.depth / models.pose default to models/*.onnx
    out = tmp_path / "fit"
    args = [
        "adapt", str(recording), "--out", str(out), "--threads", "1", "--quiet", "--minutes",
        "5", "--map-depth-weight", "0.5"]
    assert main(args + ["--steps", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 2 and first["train_frames"] == "0:29:1"
    assert first["heldout_frames"] == "29:36:1"
    for key in ("heldout_photometric_before", "heldout_photometric_after",
                "heldout_map_depth_silog_before", "heldout_map_depth_silog_after"):
        assert np.isfinite(first[key]) and first[key] > 0, key
    # depth is judged (and taught) against the odometry's map points too
    assert first["criterion"] == "photometric+silog"
    assert (out / "odometry" / "map_points.npz").is_file()
    shipped = {kind: OnnxModel(REPO / "models" / f"{kind}.onnx", kind,
                               providers=["CPUExecutionProvider"]).spec for kind in ("depth", "pose")}
    base = max(int(spec.extra["vode.train_steps"]) for spec in shipped.values())
    for kind in ("depth", "pose"):
        model = OnnxModel(out / f"{kind}.onnx", kind, providers=["CPUExecutionProvider"])
        assert np.all(np.isfinite(model(model.zeros())))
        adapted = first["models"][kind]["adapted"]
        steps = int(model.spec.extra["vode.train_steps"])
        # an accepted network is exported at the training size (the shipped depth network's)
        # and counts the shipped steps and the new ones; a rejected one is the starting model
        start = shipped["depth" if adapted else kind]
        assert (model.spec.input_height, model.spec.input_width) == \
            (start.input_height, start.input_width)
        assert steps == (base + 2 if adapted else int(shipped[kind].extra["vode.train_steps"])), \
            (kind, steps)
    state = json.loads((out / "adapt_state.json").read_text())
    assert state["step"] == 2 and state["train_seconds"] > 0
    # the same command again continues from the checkpoint (odometry kept, steps counted on)
    assert main(args + ["--steps", "4"]) == 0
    captured = capsys.readouterr()
    second = json.loads(captured.out)
    assert "resumed from" in captured.err and "odometry: kept" in captured.err
    assert second["steps"] == 4
    assert second["heldout_photometric_before"] == pytest.approx(
        first["heldout_photometric_before"])
    # another adaptation in the same folder is refused, naming why
    assert main(args + ["--holdout", "0.3"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_adapt_without_a_map_is_photometric_only(tmp_path, capsys, monkeypatch):
    """A walk too slow at 160x120 for the odometry to triangulate anything: the adaptation
    says so and is judged by the photometric loss alone."""
    from vode_ros.datasets import generate_sequence
    monkeypatch.chdir(REPO)
    rec = generate_sequence(tmp_path / "slow", scene="room", trajectory="handheld",
                            n_frames=36, width=160, height=120, seed=4)
    assert main(["adapt", str(rec), "--out", str(tmp_path / "fit"), "--threads", "1",
                 "--quiet", "--steps", "1", "--map-depth-weight", "0.5"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "photometric loss alone" in captured.err
    assert report["criterion"] == "photometric"
    assert report["heldout_map_depth_silog_before"] is None
