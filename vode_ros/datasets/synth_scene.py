"""The synthetic worlds (``synth``): scenes of axis-aligned boxes and camera trajectories in them.

A scene is a set of axis-aligned boxes: one the camera is inside (the room, corridor or street,
whose faces are walls, floor, ceiling; a face may be open to the sky) and solid ones standing in
it (cabinets, tables, parked cars). Every face carries one of the scene's procedural textures
(``synth_textures``). Scenes and trajectories are deterministic for a seed.

World frame: x forward at the start, y left, z up (metres). Poses are camera-to-world of the
camera optical frame (z forward, x right, y down).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from vode_ros.datasets.base import DatasetError
from vode_ros.datasets.synth_textures import TEXTURE_KINDS, mip_pyramid, texture_sky

SCENES = ("room", "corridor", "street")
TRAJECTORIES = ("straight", "turn", "loop", "rotation", "static", "handheld")
MAX_STEP_DEG = 0.9            # largest rotation between consecutive frames of any trajectory

# body (x forward, y left, z up) -> camera optical frame (z forward, x right, y down)
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


# -- scenes --------------------------------------------------------------------------------------
@dataclass
class Box:
    """An axis-aligned box. ``inside``: the camera is inside it (walls face inwards).

    Faces are ordered -x, +x, -y, +y, -z, +z; ``textures[f]`` indexes the scene's textures, -1
    leaves the face open (sky)."""

    lo: np.ndarray
    hi: np.ndarray
    inside: bool
    textures: list[int]
    shade: list[float]
    offsets: np.ndarray                # (6, 2) texture offsets in metres
    texels_per_m: list[float]


@dataclass
class Scene:
    name: str
    boxes: list[Box]
    textures: list[list[np.ndarray]]   # mip pyramids
    sky: list[np.ndarray] | None
    start: np.ndarray                  # start position (x, y, z)
    start_yaw: float                   # radians
    start_pitch: float                 # radians, positive looks up
    speed: float                       # metres per frame
    max_length: float                  # metres along a straight/turn trajectory
    turn_deg: float                    # total heading change of 'turn'
    loop_radius: float                 # metres
    info: dict = field(default_factory=dict)


def _box(rng, lo, hi, inside, tex_ids, tpm=(256.0,), open_faces=()) -> Box:
    texs = [int(tex_ids[rng.integers(0, len(tex_ids))]) for _ in range(6)]
    for f in open_faces:
        texs[f] = -1
    return Box(np.asarray(lo, float), np.asarray(hi, float), inside, texs,
               [float(v) for v in rng.uniform(0.75, 1.05, 6)], rng.uniform(0, 10, (6, 2)),
               [float(tpm[rng.integers(0, len(tpm))]) for _ in range(6)])


def make_scene(name: str = "room", seed: int = 0) -> Scene:
    """A scene by name (``room``, ``corridor``, ``street``), deterministic for ``seed``."""
    if name not in SCENES:
        raise DatasetError(f"synthetic scene '{name}' is unknown; expected one of "
                           f"{', '.join(SCENES)}", "synth")
    rng = np.random.default_rng([seed, SCENES.index(name)])
    kinds = list(TEXTURE_KINDS)
    textures = []
    for i in range(8):
        img = TEXTURE_KINDS[kinds[i % len(kinds)]](rng)
        textures.append(mip_pyramid(img))
    all_tex = list(range(len(textures)))
    j = lambda s: rng.uniform(-s, s)  # noqa: E731 - small placement jitter
    boxes = []
    sky = None
    if name == "room":
        boxes.append(_box(rng, (-3.0, -2.5, 0.0), (3.0, 2.5, 2.7), True, all_tex, (192.0, 256.0)))
        boxes.append(_box(rng, (2.3 + j(.1), -2.0 + j(.2), 0), (3.0, -0.6 + j(.2), 1.9 + j(.1)),
                          False, all_tex))       # cabinet at the far wall
        boxes.append(_box(rng, (0.4 + j(.2), 1.3 + j(.1), 0), (1.6 + j(.2), 2.3, 0.75 + j(.05)),
                          False, all_tex))       # table on the left
        boxes.append(_box(rng, (1.4 + j(.1), -0.5 + j(.1), 0), (1.9 + j(.1), 0.2 + j(.1),
                                                                 0.45 + j(.05)),
                          False, all_tex))       # crate on the floor ahead
        boxes.append(_box(rng, (-2.9, 1.6 + j(.2), 0.9), (-2.6, 2.4, 2.2), False, all_tex))
        boxes.append(_box(rng, (-1.5 + j(.2), -2.5, 0), (-0.9 + j(.2), -2.1, 2.7), False,
                          all_tex))              # pillar at the right wall
        return Scene(name, boxes, textures, None, np.array([-1.2, -0.3, 1.4]), 0.0,
                     math.radians(-6), 0.02, 2.2, 90.0, 0.6)
    if name == "corridor":
        boxes.append(_box(rng, (-4.0, -1.5, 0.0), (9.0, 1.5, 2.6), True, all_tex,
                          (192.0, 256.0)))
        x = -3.0
        side = 1
        while x < 8.0:
            x += rng.uniform(1.2, 2.5)
            y0, y1 = (1.15, 1.5) if side > 0 else (-1.5, -1.15)
            boxes.append(_box(rng, (x, y0, 0.0), (x + rng.uniform(0.4, 0.9), y1,
                                                  rng.uniform(0.8, 2.2)), False, all_tex))
            side = -side
        return Scene(name, boxes, textures, None, np.array([-2.5, 0.0, 1.5]), 0.0,
                     math.radians(-3), 0.03, 6.0, 20.0, 0.35)
    # street: road, two facades, a building closing the street; open to the sky
    sky = mip_pyramid(texture_sky(rng))
    boxes.append(_box(rng, (-15.0, -7.0, 0.0), (14.0, 7.0, 8.0), True, all_tex, (96.0, 128.0),
                      open_faces=(5,)))
    x = -12.0
    while x < 12.0:
        for side in (-1, 1):
            if rng.random() < 0.6:
                y0, y1 = (4.2, 5.9) if side > 0 else (-5.9, -4.2)
                boxes.append(_box(rng, (x, y0, 0.0), (x + rng.uniform(3.5, 4.5), y1,
                                                      rng.uniform(1.3, 1.8)), False, all_tex,
                                  (128.0,)))
        x += rng.uniform(5.0, 7.0)
    return Scene(name, boxes, textures, sky, np.array([-8.0, -1.5, 1.6]), 0.0,
                 math.radians(-2), 0.08, 12.0, 30.0, 2.5)


# -- trajectories --------------------------------------------------------------------------------
def _pose(pos, yaw, pitch, roll=0.0) -> np.ndarray:
    R_wb = Rotation.from_euler("ZYX", [yaw, -pitch, roll]).as_matrix()
    T = np.eye(4)
    T[:3, :3] = R_wb @ R_BODY_OPTICAL
    T[:3, 3] = pos
    return T


def make_trajectory(scene: Scene, trajectory: str = "straight", n_frames: int = 60,
                    seed: int = 0) -> np.ndarray:
    """(n_frames, 4, 4) camera-to-world poses (optical frame) of a trajectory in ``scene``.

    ``straight``: forward at the scene's walking/driving speed with a slight hand-held sway;
    ``turn``: forward while turning left (up to 90 degrees in the room, 20 in the corridor,
    30 in the street);
    ``loop``: a closed loop whose last pose equals the first, looking around a little;
    ``rotation``: pure rotation in place (yaw with a little pitch), zero translation;
    ``static``: one pose repeated;
    ``handheld``: a slow walk swaying like a hand-held camera, with bursts of fast turning
    (``handheld_yaw``: three frames at 12-17 degrees each, out and back).
    Steps stay below ``MAX_STEP_DEG`` of rotation (but the hand-held bursts) and
    ~``scene.speed`` metres per frame."""
    if trajectory not in TRAJECTORIES:
        raise DatasetError(f"trajectory '{trajectory}' is unknown; expected one of "
                           f"{', '.join(TRAJECTORIES)}", "synth")
    if n_frames < 1:
        raise DatasetError(f"n_frames must be at least 1, got {n_frames}", "synth")
    n = int(n_frames)
    k = np.arange(n, dtype=float)
    span = max(n - 1, 1)
    phase = k / span                                # 0..1, periodic jitter closes loops
    rng = np.random.default_rng([seed, 7, TRAJECTORIES.index(trajectory)])

    def wobble(amp, harmonics=(2, 3, 5)):
        out = np.zeros(n)
        for h in harmonics:
            out += amp / len(harmonics) * np.sin(2 * np.pi * h * phase + rng.uniform(0, 2 * np.pi))
        return out

    p0 = scene.start.copy()
    yaw0, pitch0 = scene.start_yaw, scene.start_pitch
    pos = np.tile(p0, (n, 1))
    yaw = np.full(n, yaw0)
    pitch = np.full(n, pitch0)
    roll = np.zeros(n)
    if trajectory == "static":
        pass
    elif trajectory == "rotation":
        rate = math.radians(min(0.8, 360.0 / span))
        yaw = yaw0 + rate * k
        pitch = pitch0 + math.radians(3.0) * np.sin(2 * np.pi * phase)
        if scene.name == "room":
            pos = np.tile(np.array([0.0, 0.0, 1.4]), (n, 1))
    elif trajectory == "straight":
        step = min(scene.speed, scene.max_length / span)
        heading = np.array([math.cos(yaw0), math.sin(yaw0), 0.0])
        left = np.array([-math.sin(yaw0), math.cos(yaw0), 0.0])
        pos = p0 + step * k[:, None] * heading + wobble(3 * step)[:, None] * left
        pos[:, 2] += wobble(step)
        yaw = yaw0 + np.radians(wobble(1.5))
        pitch = pitch0 + np.radians(wobble(1.0))
        roll = np.radians(wobble(1.0))
    elif trajectory == "turn":
        total = math.radians(scene.turn_deg)
        rate = min(math.radians(MAX_STEP_DEG * 0.9), total / span)
        step = min(scene.speed * 0.75, scene.max_length * 0.6 / span)
        yaw = yaw0 + rate * k
        mid = yaw0 + rate * (k[:-1] + 0.5)
        steps = step * np.stack([np.cos(mid), np.sin(mid), np.zeros(n - 1)], 1)
        pos = p0 + np.vstack([np.zeros((1, 3)), np.cumsum(steps, 0)])
        pos[:, 2] += wobble(step)
        pitch = pitch0 + np.radians(wobble(1.0))
        roll = np.radians(wobble(0.8))
    elif trajectory == "loop":
        radius = min(scene.loop_radius, scene.speed * span / (2 * np.pi))
        ang = 2 * np.pi * phase
        # start on the circle at angle -pi/2 (the circle lies ahead-left of the start)
        centre = p0 + np.array([0.0, radius, 0.0])
        pos = centre + radius * np.stack([np.sin(ang), -np.cos(ang), np.zeros(n)], 1)
        pos[:, 2] += 0.15 * radius * np.sin(2 * ang)
        amp = math.radians(min(20.0, MAX_STEP_DEG * 0.8 * span / (2 * np.pi)))
        yaw = yaw0 + amp * np.sin(ang)
        pitch = pitch0 + 0.3 * amp * np.sin(2 * ang)
    elif trajectory == "handheld":
        step = min(0.5 * scene.speed, scene.max_length / span)
        heading = np.array([math.cos(yaw0), math.sin(yaw0), 0.0])
        left = np.array([-math.sin(yaw0), math.cos(yaw0), 0.0])
        pos = p0 + step * k[:, None] * heading + wobble(3 * step)[:, None] * left
        pos[:, 2] += wobble(step)
        yaw = yaw0 + handheld_yaw(n, rng) + np.radians(wobble(1.5))
        pitch = pitch0 + np.radians(wobble(2.0))
        roll = np.radians(wobble(1.5))
    return np.stack([_pose(pos[i], yaw[i], pitch[i], roll[i]) for i in range(n)])


def handheld_yaw(n: int, rng: np.random.Generator, period: int = 24, burst: int = 3,
                 rate_deg: tuple[float, float] = (12.0, 17.0)) -> np.ndarray:
    """Yaw (radians) of a hand-held camera that now and then turns fast: every ``period``
    frames (from frame ``period // 2``) a burst of ``burst`` frames turning ``rate_deg``
    degrees each, alternately away and back (so the camera returns to the places it saw)."""
    rates = np.zeros(n)
    sign = 1.0
    for start in range(period // 2, n - burst, period):
        rates[start + 1:start + 1 + burst] = sign * np.radians(rng.uniform(*rate_deg, burst))
        sign = -sign
    return np.cumsum(rates)
