"""Procedural synthetic sequences with exact depth and poses, written in the TUM RGB-D layout.

A scene is a set of axis-aligned boxes: one the camera is inside (the room, corridor or street,
whose faces are walls, floor, ceiling; a face may be open to the sky) and solid ones standing in
it (cabinets, tables, parked cars). Every face carries a procedural texture (value noise,
checker, bricks, blobs) in metric surface coordinates, so a point has the same colour in every
view (no view-dependent shading), and depth is exact. Frames are rendered by casting one ray per
pixel against the boxes in numpy, and textures are sampled with trilinear mip-mapping so distant
and slanted surfaces do not alias.

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
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from vode_ros.camera import Camera
from vode_ros.datasets.base import DatasetError

SCENES = ("room", "corridor", "street")
TRAJECTORIES = ("straight", "turn", "loop", "rotation", "static", "handheld")
DEPTH_SCALE = 5000.0
TEX_SIZE = 512
MIP_LEVELS = 6
MAX_STEP_DEG = 0.9            # largest rotation between consecutive frames of any trajectory

# body (x forward, y left, z up) -> camera optical frame (z forward, x right, y down)
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


# -- textures ------------------------------------------------------------------------------------
def _tileable_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1] that tiles (``cells`` random values per side)."""
    g = rng.random((cells, cells)).astype(np.float32)
    pad = 3
    gp = np.pad(g, pad, mode="wrap")
    step = size / cells
    big = cv2.resize(gp, (int(round((cells + 2 * pad) * step)),) * 2,
                     interpolation=cv2.INTER_CUBIC)
    off = int(round(pad * step))
    return big[off:off + size, off:off + size]


def _fractal(rng, size: int, octaves=(4, 8, 16, 32, 64, 128)) -> np.ndarray:
    out = np.zeros((size, size), np.float32)
    total = 0.0
    for i, cells in enumerate(octaves):
        w = 0.9 ** i
        out += w * _tileable_noise(rng, size, cells)
        total += w
    out /= total
    lo, hi = np.percentile(out, (1, 99))
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0, 1)


def _palette(rng, n: int) -> np.ndarray:
    hues = rng.random(n)
    sats = rng.uniform(0.25, 0.8, n)
    vals = rng.uniform(0.35, 0.95, n)
    hsv = np.stack([hues * 179, sats * 255, vals * 255], 1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32)


def _mix(t: np.ndarray, c0, c1) -> np.ndarray:
    return c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]


def texture_noise(rng, size=TEX_SIZE) -> np.ndarray:
    c = _palette(rng, 3)
    a = _fractal(rng, size)
    b = _tileable_noise(rng, size, 6)
    return _mix(a, c[0], c[1]) * (1 - 0.5 * b[..., None]) + 0.5 * b[..., None] * c[2]


def texture_checker(rng, size=TEX_SIZE) -> np.ndarray:
    n = int(rng.choice([8, 16]))
    cell = size // n
    c = _palette(rng, 2)
    yy, xx = np.mgrid[0:size, 0:size]
    parity = ((yy // cell + xx // cell) % 2).astype(np.float32)
    jitter = rng.uniform(0.8, 1.2, (n, n)).astype(np.float32)
    jit = jitter[yy // cell, xx // cell]
    img = _mix(parity, c[0], c[1]) * jit[..., None]
    return img * (0.75 + 0.5 * _fractal(rng, size, (16, 32, 64, 128))[..., None])


def texture_bricks(rng, size=TEX_SIZE) -> np.ndarray:
    rows, cols = 16, 8
    bh, bw = size // rows, size // cols
    base = _palette(rng, 1)[0]
    mortar = np.array([200, 195, 185], np.float32) * rng.uniform(0.6, 1.0)
    yy, xx = np.mgrid[0:size, 0:size]
    row = yy // bh
    shift = (row % 2) * (bw // 2)
    col = ((xx + shift) // bw) % cols
    tint = rng.uniform(0.6, 1.3, (rows, cols, 3)).astype(np.float32)
    img = base[None, None, :] * tint[row, col]
    in_mortar = ((yy % bh) < 3) | (((xx + shift) % bw) < 3)
    img[in_mortar] = mortar
    return img * (0.7 + 0.6 * _fractal(rng, size, (32, 64, 128))[..., None])


def texture_blobs(rng, size=TEX_SIZE) -> np.ndarray:
    img = texture_noise(rng, size) * 0.6
    cols = _palette(rng, 12)
    canvas = np.ascontiguousarray(img)
    for _ in range(160):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(4, 28))
        col = tuple(float(v) for v in cols[rng.integers(0, len(cols))])
        for dx in (-size, 0, size):             # draw wrapped copies so the texture tiles
            for dy in (-size, 0, size):
                cv2.circle(canvas, (int(x + dx), int(y + dy)), r, col, -1, cv2.LINE_AA)
    return canvas * (0.8 + 0.4 * _fractal(rng, size, (32, 64, 128))[..., None])


def texture_sky(rng, width=2048, height=512) -> np.ndarray:
    """Clouds over a blue gradient, mapped by azimuth (x) and elevation (y)."""
    n = _fractal(rng, width, (8, 16, 32, 64, 128))[:height]
    clouds = np.clip((n - 0.45) * 2.5, 0, 1)
    grad = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    blue = np.array([70, 120, 210], np.float32) * (1 - grad[..., None]) + \
        np.array([170, 200, 235], np.float32) * grad[..., None]
    return blue * (1 - clouds[..., None]) + np.array([245, 245, 245], np.float32) * \
        clouds[..., None]


TEXTURE_KINDS = {"noise": texture_noise, "checker": texture_checker, "bricks": texture_bricks,
                 "blobs": texture_blobs}


def mip_pyramid(img: np.ndarray, levels: int = MIP_LEVELS) -> list[np.ndarray]:
    """Levels of a tiling texture (each half the size, filtered with wrap-around)."""
    out = [np.clip(img, 0, 255).astype(np.float32)]
    for _ in range(levels - 1):
        prev = out[-1]
        if min(prev.shape[:2]) < 4:
            break
        padded = np.pad(prev, ((4, 4), (4, 4), (0, 0)), mode="wrap")
        down = cv2.pyrDown(padded)
        out.append(np.ascontiguousarray(down[2:-2, 2:-2]))
    return out


def _bilinear_wrap(tex: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples (n, 3) at texel coordinates (texel centres at integers), wrapping."""
    h, w = tex.shape[:2]
    n = len(x)
    cols = 512
    rows = max(1, -(-n // cols))
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:n] = np.mod(x, w)
    my[:n] = np.mod(y, h)
    out = cv2.remap(tex, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_WRAP)
    return out.reshape(-1, 3)[:n]


def sample_mip(pyr: list[np.ndarray], x: np.ndarray, y: np.ndarray,
               level: np.ndarray) -> np.ndarray:
    """Trilinear samples of a mip pyramid at level-0 texel coordinates."""
    level = np.clip(level, 0.0, len(pyr) - 1.0)
    l0 = np.floor(level).astype(np.int64)
    frac = (level - l0).astype(np.float32)
    out = np.empty((len(x), 3), np.float32)
    for lv in range(int(l0.min()), int(l0.max()) + 1):
        m = np.nonzero(l0 == lv)[0] if l0.min() != l0.max() else slice(None)
        xs, ys = x[m], y[m]
        s = 2.0 ** lv
        a = _bilinear_wrap(pyr[lv], (xs + 0.5) / s - 0.5, (ys + 0.5) / s - 0.5)
        if lv + 1 < len(pyr):
            s1 = 2.0 ** (lv + 1)
            b = _bilinear_wrap(pyr[lv + 1], (xs + 0.5) / s1 - 0.5, (ys + 0.5) / s1 - 0.5)
            f = frac[m][:, None]
            a = a + (b - a) * f
        out[m] = a
    return out


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


# -- rendering -----------------------------------------------------------------------------------
def default_camera(width: int = 320, height: int = 240) -> Camera:
    """A Kinect-like field of view (fx = 525 at 640 pixels) at any resolution."""
    f = 525.0 * width / 640.0
    return Camera(f, f, width / 2.0 - 0.5, height / 2.0 - 0.5, int(width), int(height))


class Renderer:
    """Ray-casts a scene for one camera (pixel rays are computed once)."""

    def __init__(self, scene: Scene, camera: Camera):
        self.scene = scene
        self.camera = camera
        u, v = np.meshgrid(np.arange(camera.width, dtype=np.float64),
                           np.arange(camera.height, dtype=np.float64))
        # (3, n) rays with z = 1, so the ray parameter t of a hit is its z-depth
        self._rays = np.stack([(u.ravel() - camera.cx) / camera.fx,
                               (v.ravel() - camera.cy) / camera.fy, np.ones(u.size)])
        self._ray_norm = np.linalg.norm(self._rays, axis=0)
        self._f = 0.5 * (camera.fx + camera.fy)

    def _in_view(self, box: Box, R: np.ndarray, o: np.ndarray) -> bool:
        """False when the box is surely outside the view (all corners behind or to one side)."""
        corners = np.array([[x, y, z] for x in (box.lo[0], box.hi[0])
                            for y in (box.lo[1], box.hi[1]) for z in (box.lo[2], box.hi[2])])
        pc = (corners - o) @ R
        z = pc[:, 2]
        if np.all(z <= 1e-3):
            return False
        if np.any(z <= 1e-3):
            return True
        cam = self.camera
        u = cam.fx * pc[:, 0] / z + cam.cx
        v = cam.fy * pc[:, 1] / z + cam.cy
        return not (np.all(u < -1) or np.all(u > cam.width) or np.all(v < -1)
                    or np.all(v > cam.height))

    def render(self, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 RGB, HxW float32 z-depth in metres with NaN for the sky)."""
        cam = self.camera
        R, o = np.asarray(T_wc[:3, :3], float), np.asarray(T_wc[:3, 3], float)
        d = R @ self._rays
        d[np.abs(d) < 1e-12] = 1e-12
        inv = 1.0 / d
        pos = d > 0
        n = d.shape[1]
        t_best = np.full(n, np.inf)
        face = np.full(n, -1, dtype=np.int32)
        for b, box in enumerate(self.scene.boxes):
            if not box.inside and not self._in_view(box, R, o):
                continue
            base = 6 * b
            if box.inside:
                # leave the box through the face the ray meets first
                t = None
                for ax in range(3):
                    ta = np.where(pos[ax], (box.hi[ax] - o[ax]) * inv[ax],
                                  (box.lo[ax] - o[ax]) * inv[ax])
                    fa = np.where(pos[ax], base + 2 * ax + 1, base + 2 * ax).astype(np.int32)
                    if t is None:
                        t, fid = ta, fa
                    else:
                        closer = ta < t
                        t = np.where(closer, ta, t)
                        fid = np.where(closer, fa, fid)
                open_ = np.asarray([box.textures[i] < 0 for i in range(6)])
                if open_.any():
                    t = np.where(open_[fid - base], np.inf, t)
                hit = t < t_best
            else:
                # slab test: enter through the face of the last slab entered
                t = t_far = None
                for ax in range(3):
                    t1 = (box.lo[ax] - o[ax]) * inv[ax]
                    t2 = (box.hi[ax] - o[ax]) * inv[ax]
                    near = np.where(pos[ax], t1, t2)
                    far = np.where(pos[ax], t2, t1)
                    fa = np.where(pos[ax], base + 2 * ax, base + 2 * ax + 1).astype(np.int32)
                    if t is None:
                        t, t_far, fid = near, far, fa
                    else:
                        later = near > t
                        t = np.where(later, near, t)
                        fid = np.where(later, fa, fid)
                        t_far = np.minimum(t_far, far)
                hit = (t <= t_far) & (t > 1e-6) & (t < t_best)
            t_best = np.where(hit, t, t_best)
            face = np.where(hit, fid, face)

        rgb = np.zeros((n, 3), np.float32)
        order = np.argsort(face, kind="stable")
        sorted_faces = face[order]
        starts = np.flatnonzero(np.r_[True, sorted_faces[1:] != sorted_faces[:-1]])
        ends = np.r_[starts[1:], n]
        uv_axes = ((1, 2), (0, 2), (0, 1))
        for s0, s1 in zip(starts, ends):
            f_id = int(sorted_faces[s0])
            if f_id < 0:
                continue
            m = order[s0:s1]
            box = self.scene.boxes[f_id // 6]
            fi = f_id % 6
            axis = fi // 2
            a0, a1 = uv_axes[axis]
            tpm = box.texels_per_m[fi]
            tm = t_best[m]
            x = (o[a0] + tm * d[a0, m] + box.offsets[fi, 0]) * tpm
            y = (o[a1] + tm * d[a1, m] + box.offsets[fi, 1]) * tpm
            norm = self._ray_norm[m]
            cos_inc = np.maximum(np.abs(d[axis, m]) / norm, 0.25)
            # texels under one pixel: z / (f |ray|) metres across the ray, / cos(incidence)
            level = np.log2(np.maximum(tm / (self._f * norm * cos_inc) * tpm, 1.0))
            rgb[m] = sample_mip(self.scene.textures[box.textures[fi]], x, y, level) \
                * box.shade[fi]
        sky = face < 0
        if np.any(sky) and self.scene.sky is not None:
            ds = d[:, sky] / self._ray_norm[sky]
            pyr = self.scene.sky
            h, w = pyr[0].shape[:2]
            az = np.arctan2(ds[1], ds[0])
            el = np.arcsin(np.clip(ds[2], -1, 1))
            x = (az / (2 * np.pi) + 0.5) * w
            y = (1.0 - np.clip(el, 0, np.pi / 2) / (np.pi / 2)) * (h - 1)
            level = np.full(len(x), max(0.0, math.log2((w / (2 * np.pi)) / self._f)))
            rgb[sky] = sample_mip(pyr, x, y, level)
        depth = np.where(face >= 0, t_best, np.nan).astype(np.float32)
        img = np.clip(rgb + 0.5, 0, 255).astype(np.uint8).reshape(cam.height, cam.width, 3)
        return img, depth.reshape(cam.height, cam.width)


def render(scene: Scene, camera: Camera, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Render one view (see ``Renderer.render``); build a ``Renderer`` to render many."""
    return Renderer(scene, camera).render(T_wc)


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


def generate_sequence(out_dir, scene: str = "room", trajectory: str = "straight",
                      n_frames: int = 60, width: int = 320, height: int = 240, fps: float = 30,
                      seed: int = 0, dark_frames=None, noise_std: float = 1.0,
                      progress: bool = False) -> Path:
    """Render a synthetic sequence into ``out_dir`` (the TUM RGB-D layout) and return its path.

    ``dark_frames``: frames rendered black (the pose and depth stay exact), as ``(start, stop)``,
    ``"A:B"``, a range or a list of indices. ``noise_std``: Gaussian sensor noise in grey levels.
    Deterministic for a given ``seed``.
    """
    if scene not in SCENES:
        raise DatasetError(f"synthetic scene '{scene}' is unknown; expected one of "
                           f"{', '.join(SCENES)}", "synth")
    if width < 16 or height < 16:
        raise DatasetError(f"image size {width}x{height} is too small; expected at least 16x16",
                           "synth")
    if not fps > 0:
        raise DatasetError(f"fps must be positive, got {fps}", "synth")
    if trajectory not in TRAJECTORIES:
        raise DatasetError(f"trajectory '{trajectory}' is unknown; expected one of "
                           f"{', '.join(TRAJECTORIES)}", "synth")
    if int(n_frames) < 1:
        raise DatasetError(f"n_frames must be at least 1, got {n_frames}", "synth")
    dark = _parse_dark(dark_frames, int(n_frames))
    out = Path(out_dir)
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    sc = make_scene(scene, seed)
    poses = make_trajectory(sc, trajectory, n_frames, seed)
    camera = default_camera(width, height)
    renderer = Renderer(sc, camera)
    rng = np.random.default_rng([seed, 11])
    t0_ns = 1_000_000_000
    rgb_lines = ["# color images", "# synthetic sequence written by vode_ros.datasets.synth",
                 "# timestamp filename"]
    depth_lines = ["# depth maps (uint16, 5000 per metre, 0 = invalid)", "# synthetic",
                   "# timestamp filename"]
    gt_lines = ["# ground truth trajectory: camera optical frame in the world (z up)",
                "# synthetic, exact", "# timestamp tx ty tz qx qy qz qw"]
    frames = range(len(poses))
    if progress:
        from tqdm import tqdm
        frames = tqdm(frames, desc=f"synth {scene}/{trajectory}", unit="frame")
    for i in frames:
        T = poses[i]
        img, depth = renderer.render(T)
        if i in dark:
            img = np.zeros_like(img)
        if noise_std > 0:
            noise = rng.normal(0.0, noise_std, img.shape).astype(np.float32)
            img = np.clip(img.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8)
        stamp = _fmt_stamp(t0_ns + int(round(i * 1e9 / fps)))
        d16 = np.where(np.isfinite(depth) & (depth * DEPTH_SCALE < 65535),
                       np.round(np.nan_to_num(depth) * DEPTH_SCALE), 0).astype(np.uint16)
        cv2.imwrite(str(out / "rgb" / f"{stamp}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / "depth" / f"{stamp}.png"), d16)
        rgb_lines.append(f"{stamp} rgb/{stamp}.png")
        depth_lines.append(f"{stamp} depth/{stamp}.png")
        q = Rotation.from_matrix(T[:3, :3]).as_quat()
        gt_lines.append(f"{stamp} " + " ".join(f"{v:.9f}" for v in (*T[:3, 3], *q)))
    (out / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (out / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (out / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
    (out / "camera.txt").write_text(f"{camera.fx!r} {camera.fy!r} {camera.cx!r} {camera.cy!r} "
                                    f"{camera.width} {camera.height}\n")
    (out / "synth.json").write_text(json.dumps({
        "generator": "vode_ros.datasets.synth", "scene": scene, "trajectory": trajectory,
        "n_frames": len(poses), "width": width, "height": height, "fps": fps, "seed": seed,
        "dark_frames": sorted(dark), "noise_std": noise_std}, indent=1) + "\n")
    return out
