"""The synthetic part of a training set (``data.synthetic``): which sequences, rendered once under
``out_dir/synth``, and how they enter training.

An entry is a ``vode_ros.datasets.generate_sequence`` call (scene, trajectory, n_frames, size,
seed, textures, fov_deg, look, supersample, course) plus the data-source keys stride, weight and
frames, and two of its own: ``poses: true`` warps its triplets with the exact poses it was rendered at
(its groundtruth.txt, as a geometric trajectory), and ``count: N`` stands for N sequences, seeds
``seed .. seed + N - 1``, the i-th of scene ``scenes[i % len(scenes)]`` and trajectory
``trajectories[(i // len(scenes)) % len(trajectories)]``, so one entry describes a world of
varied places. Their exact depth is read (``SourceSpec.depth``) when a supervised loss is on.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

SOURCE_KEYS = ("stride", "weight", "frames")


def expand(items: list) -> list[dict]:
    """The entries with every ``count`` spelt out (one ``generate_sequence`` entry each)."""
    out = []
    for item in items:
        item = dict(item)
        count = item.pop("count", None)
        scenes = item.pop("scenes", None)
        trajectories = item.pop("trajectories", None)
        if count is None:
            if scenes or trajectories:
                raise ValueError(f"synthetic entry {item}: 'scenes' and 'trajectories' go with "
                                 "'count'")
            out.append(item)
            continue
        scenes = list(scenes or [item.pop("scene", "room")])
        trajectories = list(trajectories or [item.pop("trajectory", "straight")])
        seed = int(item.pop("seed", 0))
        for i in range(int(count)):
            out.append({**item, "scene": scenes[i % len(scenes)],
                        "trajectory": trajectories[(i // len(scenes)) % len(trajectories)],
                        "seed": seed + i})
    return out


def _name(item: dict) -> str:
    simple = all(isinstance(v, (str, int, float, bool)) or v is None for v in item.values())
    if simple:       # (the folder names of earlier runs)
        return "synth-" + "-".join(f"{k}{v}" for k, v in sorted(item.items()))
    digest = hashlib.sha1(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()
    return (f"synth-{item.get('scene', 'room')}-{item.get('trajectory', 'straight')}-"
            f"seed{item.get('seed', 0)}-{digest[:10]}")


def synthetic_sources(items: list, out_dir: Path, depth: bool = False,
                      say=None) -> list[dict]:
    """Render the configured synthetic sequences once (under ``out_dir/synth``) and return them as
    data sources; ``depth``: they give their exact depth to the supervised losses."""
    from vode_ros.datasets import generate_sequence
    specs = []
    expanded = expand(items)
    for k, item in enumerate(expanded):
        src = {key: item.pop(key) for key in SOURCE_KEYS if key in item}
        posed = bool(item.pop("poses", False))
        name = _name(item)
        path = Path(out_dir) / "synth" / name
        if not (path / "rgb.txt").is_file():
            if say is not None:
                say(f"vode train: rendering synthetic sequence {k + 1}/{len(expanded)}: {name}")
            generate_sequence(path, **item)
        spec = {"path": str(path), "name": name, **src}
        if posed:
            spec["poses"] = str(path / "groundtruth.txt")
        if depth:
            spec["depth"] = True
        specs.append(spec)
    return specs
