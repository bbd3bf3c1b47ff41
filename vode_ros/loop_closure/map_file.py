"""The keyframe map file: keyframes (features, depths, poses) and pose-graph edges in one npz.

Written atomically (a reader never sees half a map). Keyframes of a map are read back ``fixed``:
optimisation does not move them. Bag-of-words vectors are not stored: they are recomputed on
reading, with the vocabulary in use (``meta`` names the one the map was built with).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from vode_ros.camera import Camera
from vode_ros.errors import VodeError
from vode_ros.files import atomic_path
from vode_ros.loop_closure.features import Features
from vode_ros.loop_closure.keyframes import Keyframe
from vode_ros.loop_closure.pose_graph import Edge
from vode_ros.loop_closure.vocabulary import BinaryVocabulary

MAP_FORMAT = "vode_keyframe_map/1"


def map_arrays(keyframes: list[Keyframe], map_poses: list[np.ndarray], edges: list[Edge],
               vocabulary_info: str) -> dict[str, np.ndarray]:
    """The arrays of the file: keyframes with their poses in the map, and the graph's edges."""
    kfs = keyframes
    cams = [k.features.camera for k in kfs]
    return {
        "format": np.array(MAP_FORMAT),
        "meta": np.array(json.dumps({"vocabulary": vocabulary_info,
                                     "saved_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime())})),
        "kf_id": np.array([k.id for k in kfs], np.int64),
        "kf_session": np.array([k.session for k in kfs], np.int64),
        "kf_stamp_ns": np.array([k.stamp_ns for k in kfs], np.int64),
        "kf_odom_pose": np.array([k.odom_pose for k in kfs]),
        "kf_map_pose": np.array(map_poses),
        "kf_camera": np.array([[c.fx, c.fy, c.cx, c.cy, c.width, c.height] for c in cams],
                              float),
        "kf_count": np.array([len(k.features) for k in kfs], np.int64),
        "keypoints": np.concatenate([k.features.keypoints for k in kfs]),
        "descriptors": np.concatenate([k.features.descriptors for k in kfs]),
        "octaves": np.concatenate([k.features.octaves for k in kfs]),
        "depth": np.concatenate([k.depth for k in kfs]),
        "parallax": np.concatenate([k.parallax for k in kfs]),
        "edge_ij": np.array([[e.i, e.j] for e in edges], np.int64).reshape(-1, 2),
        "edge_kind": np.array([e.kind for e in edges], dtype="U8"),
        "edge_measurement": np.array([e.measurement for e in edges]).reshape(-1, 4, 4),
        "edge_sigmas": np.array([e.sigmas for e in edges]).reshape(-1, 7),
        "edge_active": np.array([e.active for e in edges], bool),
    }


def write_map(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays (``map_arrays``) to ``path`` atomically, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def read_map(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a keyframe map file; VodeError when it is missing or not a map."""
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise VodeError(f"keyframe map '{path}' does not exist; save one first "
                        "(~/save_map)") from None
    except (OSError, ValueError) as exc:
        raise VodeError(f"'{path}' is not a keyframe map: {exc}") from None
    with z:
        if "format" not in z or str(z["format"]) != MAP_FORMAT:
            raise VodeError(f"'{path}' is not a vode keyframe map (expected format "
                            f"{MAP_FORMAT})")
        return {k: z[k] for k in z.files}


def map_keyframes(d: dict[str, np.ndarray], vocab: BinaryVocabulary) -> list[Keyframe]:
    """The keyframes of a map's arrays (``fixed``), their bag of words from ``vocab``."""
    offsets = np.r_[0, np.cumsum(d["kf_count"])]
    out = []
    for n, kid in enumerate(d["kf_id"]):
        a, b = offsets[n], offsets[n + 1]
        fx, fy, cx, cy, w, h = d["kf_camera"][n]
        feats = Features(d["keypoints"][a:b].astype(np.float32),
                         np.ascontiguousarray(d["descriptors"][a:b], np.uint8),
                         Camera(fx, fy, cx, cy, int(w), int(h)),
                         d["octaves"][a:b].astype(np.int16))
        out.append(Keyframe(int(kid), int(d["kf_session"][n]), int(d["kf_stamp_ns"][n]),
                            d["kf_odom_pose"][n].copy(), feats,
                            d["depth"][a:b].astype(np.float32).copy(),
                            d["parallax"][a:b].astype(np.float32).copy(),
                            vocab.transform_sparse(feats.descriptors), fixed=True))
    return out


def map_edges(d: dict[str, np.ndarray]) -> list[Edge]:
    """The pose-graph edges of a map's arrays."""
    return [Edge(int(i), int(j), M, sig, str(kind), bool(act))
            for (i, j), kind, M, sig, act in zip(d["edge_ij"], d["edge_kind"],
                                                 d["edge_measurement"], d["edge_sigmas"],
                                                 d["edge_active"], strict=True)]
