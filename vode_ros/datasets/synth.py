"""Procedural synthetic sequences with exact depth and poses, written in the TUM RGB-D layout.

A scene is a set of axis-aligned boxes (``synth_scene``): one the camera is inside (the room,
corridor or street) and solid ones standing in it. Every face carries a procedural texture
(``synth_textures``) in metric surface coordinates, so a point has the same colour in every view
(no view-dependent shading), and depth is exact. Frames are rendered by casting one ray per pixel
against the boxes in numpy (``synth_render``), and textures are sampled with trilinear
mip-mapping so distant and slanted surfaces do not alias. This module writes sequences and is
where the public names of the three are imported from.

World frame: x forward at the start, y left, z up (metres). Poses are camera-to-world of the
camera optical frame (z forward, x right, y down). Depth is z-depth in metres; the sky and depths
beyond 13.1 m (the uint16 PNG limit at 5000 units per metre) are stored as 0 = invalid.

    from vode_ros.datasets.synth import generate_sequence
    path = generate_sequence("/tmp/room_loop", scene="room", trajectory="loop", n_frames=120)
    seq = open_sequence(path)             # read back by the TUM reader
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from vode_ros.camera import Camera
from vode_ros.datasets.base import DatasetError
from vode_ros.datasets.synth_places import PLACES, ROBOT_PATHS, make_place, robot_path
from vode_ros.datasets.synth_render import Renderer, default_camera, render
from vode_ros.datasets.synth_scene import (
    MAX_STEP_DEG,
    R_BODY_OPTICAL,
    SCENES,
    TRAJECTORIES,
    Box,
    Scene,
    make_scene,
    make_trajectory,
)
from vode_ros.progress import progress_bar

__all__ = ["DEPTH_SCALE", "MAX_STEP_DEG", "PLACES", "R_BODY_OPTICAL", "ROBOT_PATHS", "SCENES",
           "TRAJECTORIES", "Box", "Renderer", "Scene", "default_camera", "generate_sequence",
           "make_place", "make_scene", "make_trajectory", "render", "robot_path"]

DEPTH_SCALE = 5000.0


# -- writing -------------------------------------------------------------------------------------
def _parse_dark(dark_frames, n: int) -> set[int]:
    if dark_frames is None:
        return set()
    if isinstance(dark_frames, str):
        parts = dark_frames.split(":")
        if len(parts) != 2:
            raise DatasetError(f"dark_frames '{dark_frames}' is not understood; expected "
                               "'A:B' (frames A..B-1 black), a (start, stop) pair or a list",
                               "synth")
        a, b = (int(p) if p.strip() else None for p in parts)
        return set(range(n)[slice(a, b)])
    if isinstance(dark_frames, (range, slice)):
        sl = dark_frames if isinstance(dark_frames, slice) else \
            slice(dark_frames.start, dark_frames.stop, dark_frames.step)
        return set(range(n)[sl])
    vals = list(dark_frames)
    if len(vals) == 2 and isinstance(dark_frames, tuple):
        return set(range(n)[slice(int(vals[0]), int(vals[1]))])
    return {int(v) for v in vals if 0 <= int(v) < n}


def _fmt_stamp(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"[:-3]   # microseconds, as TUM


def _check_arguments(scene: str, trajectory: str, n_frames: int, width: int, height: int,
                     fps: float) -> None:
    if scene not in SCENES + PLACES:
        raise DatasetError(f"synthetic scene '{scene}' is unknown; expected one of "
                           f"{', '.join(SCENES + PLACES)}", "synth")
    if width < 16 or height < 16:
        raise DatasetError(f"image size {width}x{height} is too small; expected at least 16x16",
                           "synth")
    if not fps > 0:
        raise DatasetError(f"fps must be positive, got {fps}", "synth")
    known = ROBOT_PATHS if scene in PLACES else TRAJECTORIES
    if trajectory not in known:
        raise DatasetError(f"trajectory '{trajectory}' is unknown for scene '{scene}'; expected "
                           f"one of {', '.join(known)}", "synth")
    if int(n_frames) < 1:
        raise DatasetError(f"n_frames must be at least 1, got {n_frames}", "synth")


def _sensor_image(img: np.ndarray, dark: bool, noise_std: float,
                  rng: np.random.Generator) -> np.ndarray:
    """The rendered image as the sensor gives it: black when ``dark``, Gaussian noise added."""
    if dark:
        img = np.zeros_like(img)
    if noise_std > 0:
        noise = rng.normal(0.0, noise_std, img.shape).astype(np.float32)
        img = np.clip(img.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8)
    return img


def random_look(rng: np.random.Generator, metered: bool = False) -> dict:
    """A camera's look drawn at random: exposure, gamma, white balance, vignetting, defocus
    blur, sensor noise, and whether the sensor is grey. ``metered``: an auto-exposure brings
    each image's mean to a level drawn in 0.35-0.6 of full scale (as a real camera meters its
    scene, so that dim places are not rendered dim), ``exposure`` then a compensation of
    0.85-1.2; otherwise ``exposure`` is a fixed gain of 0.6-1.5 on the rendered radiance."""
    look = {"exposure": float(rng.uniform(0.6, 1.5)), "gamma": float(rng.uniform(0.8, 1.25)),
            "white": [float(v) for v in rng.uniform(0.88, 1.12, 3)],
            "vignetting": float(rng.uniform(0.0, 0.35)), "blur": float(rng.uniform(0.0, 1.0)),
            "noise": float(rng.uniform(0.5, 4.0)), "grey": bool(rng.random() < 0.3),
            "drift": float(rng.uniform(0.0, 0.06))}
    if metered:    # drawn after the others, so that those are the same as look: true's
        look["level"] = float(rng.uniform(0.35, 0.6))
        look["exposure"] = float(rng.uniform(0.85, 1.2))
    return look


def _auto_exposure(x: np.ndarray, look: dict, state: dict | None) -> float:
    """The gain of a camera's auto-exposure: it brings the image's mean (after gamma) to
    ``look["level"]`` of full scale, as real cameras meter a scene whatever its brightness,
    and follows a change of the scene over a few frames (``state`` carries its last gain)."""
    mean = float(np.mean(x))
    if mean <= 1e-6:
        return 1.0 if state is None else float(state.get("gain", 1.0))
    wanted = float(look["level"]) ** (1.0 / float(look["gamma"])) / mean
    wanted = min(max(wanted, 0.25), 8.0)
    if state is None:
        return wanted
    last = state.get("gain")
    gain = wanted if last is None else float(last) * (wanted / float(last)) ** 0.3
    state["gain"] = gain
    return gain


def apply_look(img: np.ndarray, look: dict, frame: int, rng: np.random.Generator,
               state: dict | None = None) -> np.ndarray:
    """An RGB uint8 image as the camera of ``look`` (:func:`random_look`) gives it at
    ``frame`` (the exposure drifts slowly over the frames). A look with a ``level`` meters
    the image with an auto-exposure (``state``: a dict kept across one sequence's frames);
    ``exposure`` then compensates it; without ``level``, ``exposure`` is a fixed gain."""
    x = img.astype(np.float32) / 255.0
    h, w = x.shape[:2]
    gain = float(look["exposure"] * (1.0 + look["drift"] * math.sin(frame / 23.0)))
    if "level" in look:
        gain *= _auto_exposure(x, look, state)
    x = x * gain * np.asarray(look["white"], np.float32)[None, None, :]
    if look["vignetting"] > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        x = x * (1.0 - float(look["vignetting"]) * r2 / 2.0)[..., None]
    x = (np.clip(x, 0, 1) ** float(look["gamma"])).astype(np.float32)
    if look["blur"] > 0.05:
        x = cv2.GaussianBlur(x, (0, 0), float(look["blur"]))
    if look["grey"]:
        x = np.repeat(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    out = x * 255.0 + rng.normal(0.0, look["noise"], x.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _depth_png(depth: np.ndarray) -> np.ndarray:
    """z-depth in metres as TUM's uint16 (``DEPTH_SCALE`` per metre, 0: invalid or too far)."""
    return np.where(np.isfinite(depth) & (depth * DEPTH_SCALE < 65535),
                    np.round(np.nan_to_num(depth) * DEPTH_SCALE), 0).astype(np.uint16)


def _write_index(out: Path, lines: dict[str, list[str]], camera: Camera, meta: dict) -> None:
    """The text files beside the images: rgb.txt, depth.txt, groundtruth.txt, camera.txt and
    synth.json (what was generated)."""
    for name, text in lines.items():
        (out / name).write_text("\n".join(text) + "\n")
    (out / "camera.txt").write_text(f"{camera.fx!r} {camera.fy!r} {camera.cx!r} {camera.cy!r} "
                                    f"{camera.width} {camera.height}\n")
    (out / "synth.json").write_text(json.dumps(meta, indent=1) + "\n")


def generate_sequence(out_dir, scene: str = "room", trajectory: str = "straight",
                      n_frames: int = 60, width: int = 320, height: int = 240, fps: float = 30,
                      seed: int = 0, dark_frames=None, noise_std: float = 1.0,
                      progress: bool = False, textures=None, fov_deg=None,
                      look: bool | str | dict = False, supersample: int = 1,
                      course: str = "stadium") -> Path:
    """Render a synthetic sequence into ``out_dir`` (the TUM RGB-D layout) and return its path.

    ``scene``: one of ``SCENES`` (fixed layouts, with ``TRAJECTORIES``) or of ``PLACES`` (drawn
    for the seed, with ``ROBOT_PATHS``). ``dark_frames``: frames rendered black (the pose and
    depth stay exact), as ``(start, stop)``, ``"A:B"``, a range or a list of indices.
    ``noise_std``: Gaussian sensor noise in grey levels. ``textures``: the places' texture
    sources (``synth_sources``). ``fov_deg``: horizontal field of view (None: Kinect-like; a
    pair: drawn in that range). ``look``: True draws the camera's exposure, gamma, white
    balance, vignetting, blur, noise and colour (``random_look``; a dict gives them);
    ``"metered"`` draws them with an auto-exposure that meters every image.
    ``supersample``: images rendered at this factor and averaged down (depth is cast through
    the pixel centres at the output size). ``course``: a place's course, ``stadium`` or
    ``ellipse`` (``synth_places.robot_path``). Deterministic for a given ``seed``.
    """
    _check_arguments(scene, trajectory, n_frames, width, height, fps)
    dark = _parse_dark(dark_frames, int(n_frames))
    out = Path(out_dir)
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    if scene in PLACES:
        sc = make_place(scene, seed, textures)
        poses = robot_path(sc, trajectory, n_frames, seed, course)
    else:
        sc = make_scene(scene, seed)
        poses = make_trajectory(sc, trajectory, n_frames, seed)
    lens_rng = np.random.default_rng([seed, 29])
    if isinstance(fov_deg, (list, tuple)):
        fov_deg = float(lens_rng.uniform(*fov_deg))
    camera = default_camera(width, height, fov_deg)
    ss = max(1, int(supersample))
    renderer = Renderer(sc, camera)
    hi_renderer = None
    if ss > 1:
        hi_renderer = Renderer(sc, Camera(camera.fx * ss, camera.fy * ss,
                                          (camera.cx + 0.5) * ss - 0.5,
                                          (camera.cy + 0.5) * ss - 0.5, width * ss,
                                          height * ss))
    rng = np.random.default_rng([seed, 11])
    if look not in (True, False, None, "metered") and not isinstance(look, dict):
        raise DatasetError(f"look must be true, false, 'metered' or a mapping of a look's "
                           f"values, got {look!r}", "synth")
    if look is True or look == "metered":
        look = random_look(lens_rng, metered=look == "metered")
    exposure_state: dict = {}
    t0_ns = 1_000_000_000
    rgb_lines = ["# color images", "# synthetic sequence written by vode_ros.datasets.synth",
                 "# timestamp filename"]
    depth_lines = ["# depth maps (uint16, 5000 per metre, 0 = invalid)", "# synthetic",
                   "# timestamp filename"]
    gt_lines = ["# ground truth trajectory: camera optical frame in the world (z up)",
                "# synthetic, exact", "# timestamp tx ty tz qx qy qz qw"]
    with progress_bar(len(poses), f"synth {scene}/{trajectory}", quiet=not progress) as bar:
        for i, T in enumerate(poses):
            if hi_renderer is None:
                img, depth = renderer.render(T)
            else:
                big, _ = hi_renderer.render(T)
                img = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA)
                depth = renderer.depth(T)
            if look:
                img = apply_look(img, look, i, rng, exposure_state)
                img = _sensor_image(img, i in dark, 0.0, rng)
            else:
                img = _sensor_image(img, i in dark, noise_std, rng)
            stamp = _fmt_stamp(t0_ns + int(round(i * 1e9 / fps)))
            cv2.imwrite(str(out / "rgb" / f"{stamp}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(out / "depth" / f"{stamp}.png"), _depth_png(depth))
            rgb_lines.append(f"{stamp} rgb/{stamp}.png")
            depth_lines.append(f"{stamp} depth/{stamp}.png")
            q = Rotation.from_matrix(T[:3, :3]).as_quat()
            gt_lines.append(f"{stamp} " + " ".join(f"{v:.9f}" for v in (*T[:3, 3], *q)))
            bar.update(1)
    _write_index(out, {"rgb.txt": rgb_lines, "depth.txt": depth_lines,
                       "groundtruth.txt": gt_lines}, camera, {
        "generator": "vode_ros.datasets.synth", "scene": scene, "trajectory": trajectory,
        "n_frames": len(poses), "width": width, "height": height, "fps": fps, "seed": seed,
        "dark_frames": sorted(dark), "noise_std": noise_std, "fov_deg": fov_deg,
        "look": look or None, "supersample": ss,
        "textures": None if scene not in PLACES else [str(t) for t in (textures or ["default"])],
        "course": course if scene in PLACES else None})
    return out
