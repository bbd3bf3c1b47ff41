"""Varied places for the synthetic worlds (``synth``) and robot-like camera paths through them.

Each place kind is drawn at random for a seed: its size, its furniture or cars, their textures
(from the texture sources, ``synth_sources``) and its lighting. Everything is an axis-aligned
box, as in ``synth_scene``, so depth stays exact:

* ``home``: a room with tables (top and four legs), chairs, shelves, a sofa, crates;
* ``office``: rows of desks with monitors and chairs, cabinets, pillars;
* ``kitchen``: counters and wall cabinets along the walls, a fridge, a table;
* ``hallway``: a long corridor with door frames, benches, pillars and radiators;
* ``town``: a street open to the sky, facades of varied heights, parked cars, poles;
* ``field``: open ground to the horizon with sheds, rocks, trees and crates, under the sky.

Every place has a free zone (a rectangle on the floor that nothing stands in, away from the
walls): the paths stay in it. Paths (:func:`robot_path`) follow a closed curve around the free
zone (a stadium: two straights and two half circles) at the speed of the robot, slowing
for the bends:

* ``vehicle``: a ground robot or car, camera low indoors (0.25-0.7 m) or at 1.2-1.7 m on a road,
  looking where it goes, barely pitching or rolling;
* ``handheld``: a person walking, 1.2-1.7 m, looking around (along the course or, in most
  sequences, across the place), now and then turning fast (``synth_scene.handheld_yaw``),
  swaying;
* ``drone``: climbing and sinking, yawing to and fro about its course (or about the view across
  the place), looking down a little.
"""
from __future__ import annotations

import math

import numpy as np

from vode_ros.datasets.base import DatasetError
from vode_ros.datasets.synth_scene import Box, Scene, _pose, handheld_yaw
from vode_ros.datasets.synth_sources import make_textures
from vode_ros.datasets.synth_textures import mip_pyramid, texture_sky

PLACES = ("home", "office", "kitchen", "hallway", "town", "field")
ROBOT_PATHS = ("vehicle", "handheld", "drone")
N_TEXTURES = 12


class _Builder:
    """Collects the boxes of a place, each with textures drawn from the place's."""

    def __init__(self, rng: np.random.Generator, n_tex: int):
        self.rng, self.n_tex, self.boxes = rng, n_tex, []
        self.inner = 0.0          # radius around the free zone's centre the paths keep clear

    def add(self, lo, hi, inside=False, tpm=(192.0, 256.0), open_faces=(), tex=None):
        rng = self.rng
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        if np.any(hi - lo < 1e-3):
            return
        t = int(rng.integers(0, self.n_tex)) if tex is None else int(tex)
        # one texture for most faces of a piece (real furniture is of one material)
        texs = [t if rng.random() < 0.8 else int(rng.integers(0, self.n_tex)) for _ in range(6)]
        for f in open_faces:
            texs[f] = -1
        albedo = rng.uniform(0.7, 1.1)
        self.boxes.append(Box(lo, hi, inside, texs, [float(albedo)] * 6,
                              rng.uniform(0, 10, (6, 2)),
                              [float(tpm[int(rng.integers(0, len(tpm)))]) for _ in range(6)]))

    def table(self, x, y, w, d, h, top=0.04, leg=0.05):
        """A table with its top's corner at (x, y), ``w`` along x, ``d`` along y."""
        tex = int(self.rng.integers(0, self.n_tex))
        self.add((x, y, h - top), (x + w, y + d, h), tex=tex)
        for lx in (x, x + w - leg):
            for ly in (y, y + d - leg):
                self.add((lx, ly, 0.0), (lx + leg, ly + leg, h - top), tex=tex)

    def chair(self, x, y, s=0.45, back_side=0):
        tex = int(self.rng.integers(0, self.n_tex))
        self.add((x, y, 0.42), (x + s, y + s, 0.47), tex=tex)
        self.add((x + s / 2 - 0.03, y + s / 2 - 0.03, 0.0), (x + s / 2 + 0.03, y + s / 2 + 0.03,
                                                           0.42), tex=tex)
        if back_side == 0:
            self.add((x, y, 0.47), (x + 0.05, y + s, 0.9), tex=tex)
        else:
            self.add((x, y + s - 0.05, 0.47), (x + s, y + s, 0.9), tex=tex)


def _against_walls(b: _Builder, room_lo, room_hi, band: float, n: int, height=(0.4, 2.0)):
    """``n`` pieces of furniture standing against the walls, no deeper than ``band``."""
    rng = b.rng
    for _ in range(n):
        wall = int(rng.integers(0, 4))
        depth = rng.uniform(0.3, band)
        length = rng.uniform(0.5, 1.8)
        h = rng.uniform(*height)
        if wall < 2:      # walls at x = lo / hi, running along y
            y = rng.uniform(room_lo[1], room_hi[1] - length)
            x0 = room_lo[0] if wall == 0 else room_hi[0] - depth
            lo, hi = np.array([x0, y, 0]), np.array([x0 + depth, y + length, h])
        else:
            x = rng.uniform(room_lo[0], room_hi[0] - length)
            y0 = room_lo[1] if wall == 2 else room_hi[1] - depth
            lo, hi = np.array([x, y0, 0]), np.array([x + length, y0 + depth, h])
        b.add(lo, hi)
        if h < 1.3:
            _clutter(b, lo, hi, int(rng.integers(0, 4)))


def _clutter(b: _Builder, lo, hi, n: int):
    """``n`` small things (books, boxes, bottles) standing on the top of the box ``lo``-``hi``."""
    rng = b.rng
    for _ in range(n):
        sx, sy = rng.uniform(0.06, 0.35, 2)
        sx, sy = min(sx, hi[0] - lo[0]), min(sy, hi[1] - lo[1])
        x = rng.uniform(lo[0], hi[0] - sx)
        y = rng.uniform(lo[1], hi[1] - sy)
        b.add((x, y, hi[2]), (x + sx, y + sy, hi[2] + rng.uniform(0.04, 0.4)))


def _island(b: _Builder, lo, hi, margin: float, height=(0.4, 1.0)):
    """A table, crate stack or kitchen island in the middle of the free zone, which the paths
    go round; returns the radius the paths keep from the centre (0: none)."""
    rng = b.rng
    h_min = min(hi[0] - lo[0], hi[1] - lo[1]) / 2 - margin
    a = 0.3 * h_min - 0.15
    if a < 0.15 or rng.random() < 0.25:
        return 0.0
    c = (lo[:2] + hi[:2]) / 2
    ax, ay = a * rng.uniform(0.6, 1.0), a * rng.uniform(0.6, 1.0)
    top = rng.uniform(*height)
    if rng.random() < 0.5:
        b.table(c[0] - ax, c[1] - ay, 2 * ax, 2 * ay, top)
    else:
        b.add((c[0] - ax, c[1] - ay, 0), (c[0] + ax, c[1] + ay, top))
    _clutter(b, np.array([c[0] - ax, c[1] - ay, 0]), np.array([c[0] + ax, c[1] + ay, top]),
             int(rng.integers(1, 5)))
    return float(math.hypot(ax, ay) + 0.3)


def _room(b: _Builder, size_x, size_y, height, band):
    lo = np.array([-size_x / 2, -size_y / 2, 0.0])
    hi = np.array([size_x / 2, size_y / 2, height])
    b.add(lo, hi, inside=True)
    return lo, hi


def _home(b, rng):
    sx, sy, h = rng.uniform(4.0, 7.5), rng.uniform(3.5, 6.0), rng.uniform(2.4, 3.0)
    lo, hi = _room(b, sx, sy, h, 0.9)
    _against_walls(b, lo, hi, 0.7, int(rng.integers(3, 7)))
    # a table with chairs and a sofa in the wall band's corners
    cx, cy, w = lo[0] + 0.2, hi[1] - 1.1, rng.uniform(0.8, 1.4)
    b.table(cx, cy, w, 0.8, rng.uniform(0.7, 0.78))
    b.chair(cx + w + 0.1, cy + 0.15, back_side=0)
    b.add((hi[0] - 2.2, lo[1] + 0.05, 0), (hi[0] - 0.3, lo[1] + 0.9, 0.45))
    b.add((hi[0] - 2.2, lo[1] + 0.05, 0.45), (hi[0] - 0.3, lo[1] + 0.25, 0.85))
    b.add((lo[0] + 0.3, lo[1] + 0.2, 0), (lo[0] + 0.8, lo[1] + 0.7, rng.uniform(0.3, 0.6)))
    _clutter(b, np.array([cx, cy, 0]), np.array([cx + w, cy + 0.8, 0.72]), 3)
    b.inner = _island(b, lo, hi, 1.25)
    return lo, hi, 1.25, 0.03


def _office(b, rng):
    sx, sy, h = rng.uniform(7.0, 12.0), rng.uniform(5.0, 9.0), rng.uniform(2.6, 3.2)
    lo, hi = _room(b, sx, sy, h, 1.2)
    _against_walls(b, lo, hi, 0.5, int(rng.integers(3, 6)), (0.8, 2.0))
    # desks in two rows along the long walls, monitors on them, chairs in front
    for side in (-1, 1):
        x = lo[0] + 0.6
        while x < hi[0] - 1.8:
            w = rng.uniform(1.2, 1.6)
            y = hi[1] - 0.05 - 0.75 if side > 0 else lo[1] + 0.05
            b.table(x, y, w, 0.75, 0.74)
            mx = x + rng.uniform(0.2, w - 0.6)
            my = y + (0.55 if side > 0 else 0.15)
            b.add((mx, my, 0.74), (mx + 0.5, my + 0.04, 1.05))
            b.chair(x + 0.4, y - 0.5 if side > 0 else y + 0.8, back_side=1 if side > 0 else 0)
            x += w + rng.uniform(0.3, 1.2)
    if rng.random() < 0.7:
        px = rng.uniform(lo[0] + 2, hi[0] - 2)
        b.add((px, lo[1] + 1.0, 0), (px + 0.4, lo[1] + 1.4, h))
    b.inner = _island(b, lo, hi, 1.6, (0.7, 1.2))
    return lo, hi, 1.6, 0.035


def _kitchen(b, rng):
    sx, sy, h = rng.uniform(3.5, 6.0), rng.uniform(3.0, 5.0), rng.uniform(2.4, 2.8)
    lo, hi = _room(b, sx, sy, h, 0.9)
    counter = int(rng.integers(0, b.n_tex))
    wall_tex = int(rng.integers(0, b.n_tex))
    top = rng.uniform(0.86, 0.94)
    for wall in rng.permutation(4)[:int(rng.integers(2, 4))]:
        if wall < 2:
            x0 = lo[0] if wall == 0 else hi[0] - 0.6
            b.add((x0, lo[1] + 0.1, 0), (x0 + 0.6, hi[1] - 0.1, top), tex=counter)
            x1 = lo[0] if wall == 0 else hi[0] - 0.35
            b.add((x1, lo[1] + 0.3, 1.45), (x1 + 0.35, hi[1] - 0.3, 2.1), tex=wall_tex)
        else:
            y0 = lo[1] if wall == 2 else hi[1] - 0.6
            b.add((lo[0] + 0.1, y0, 0), (hi[0] - 0.1, y0 + 0.6, top), tex=counter)
            y1 = lo[1] if wall == 2 else hi[1] - 0.35
            b.add((lo[0] + 0.3, y1, 1.45), (hi[0] - 0.3, y1 + 0.35, 2.1), tex=wall_tex)
        # things on the counter
        for _ in range(int(rng.integers(1, 4))):
            s = rng.uniform(0.1, 0.3)
            if wall < 2:
                y = rng.uniform(lo[1] + 0.3, hi[1] - 0.6)
                xc = (lo[0] + 0.15) if wall == 0 else hi[0] - 0.45
                b.add((xc, y, top), (xc + s, y + s, top + rng.uniform(0.1, 0.35)))
            else:
                x = rng.uniform(lo[0] + 0.3, hi[0] - 0.6)
                yc = (lo[1] + 0.15) if wall == 2 else hi[1] - 0.45
                b.add((x, yc, top), (x + s, yc + s, top + rng.uniform(0.1, 0.35)))
    fx = rng.uniform(lo[0] + 0.7, hi[0] - 1.5)
    b.add((fx, hi[1] - 0.7, 0), (fx + 0.7, hi[1], 1.85))              # fridge
    b.inner = _island(b, lo, hi, 1.0, (0.85, 0.95))
    return lo, hi, 1.0, 0.025


def _hallway(b, rng):
    length, width, h = rng.uniform(12.0, 25.0), rng.uniform(1.8, 3.2), rng.uniform(2.4, 3.2)
    lo = np.array([-2.0, -width / 2, 0.0])
    hi = np.array([length, width / 2, h])
    b.add(lo, hi, inside=True)
    frame_tex = int(rng.integers(0, b.n_tex))
    x = lo[0] + 1.0
    while x < hi[0] - 1.5:
        x += rng.uniform(1.5, 4.0)
        side = 1 if rng.random() < 0.5 else -1
        y0 = hi[1] - 0.12 if side > 0 else lo[1]
        kind = rng.random()
        if kind < 0.5:     # a door frame: two jambs and a lintel standing off the wall
            w = rng.uniform(0.8, 1.1)
            b.add((x, y0, 0), (x + 0.08, y0 + 0.12, 2.1), tex=frame_tex)
            b.add((x + w, y0, 0), (x + w + 0.08, y0 + 0.12, 2.1), tex=frame_tex)
            b.add((x, y0, 2.1), (x + w + 0.08, y0 + 0.12, 2.2), tex=frame_tex)
        elif kind < 0.75:  # a bench or a radiator
            d = 0.35
            y0 = hi[1] - d if side > 0 else lo[1]
            b.add((x, y0, 0.1 if kind < 0.62 else 0.0), (x + rng.uniform(0.8, 1.6), y0 + d,
                                                          rng.uniform(0.45, 0.8)))
        else:              # a pillar
            d = 0.3
            y0 = hi[1] - d if side > 0 else lo[1]
            b.add((x, y0, 0), (x + 0.3, y0 + d, h))
    free = (lo[0] + 0.6, hi[0] - 0.8, lo[1] + 0.5, hi[1] - 0.5)
    return lo, hi, free, 0.04


def _town(b, rng):
    length, half = rng.uniform(40.0, 70.0), rng.uniform(8.0, 12.0)
    lo = np.array([-length / 2, -half, 0.0])
    hi = np.array([length / 2, half, 30.0])
    b.add(lo, hi, inside=True, tpm=(96.0, 128.0), open_faces=(5,))
    walk = rng.uniform(1.5, 2.5)                       # pavement width
    for side in (-1, 1):
        x = lo[0]
        while x < hi[0]:                               # facades standing out of the wall
            w = rng.uniform(5.0, 14.0)
            d = rng.uniform(0.2, 1.5)
            y0 = hi[1] - d if side > 0 else lo[1]
            b.add((x, y0, 0), (x + w, y0 + d, rng.uniform(6.0, 25.0)), tpm=(96.0, 128.0))
            x += w
        x = lo[0] + rng.uniform(1, 5)
        while x < hi[0] - 5:                           # parked cars: body and cabin
            if rng.random() < 0.7:
                cl, cw = rng.uniform(3.8, 4.8), rng.uniform(1.7, 1.95)
                yout = side * (half - 1.5 - walk)        # the car's kerb side
                y0, y1 = (yout - cw, yout) if side > 0 else (yout, yout + cw)
                tex = int(rng.integers(0, b.n_tex))
                b.add((x, y0, 0.15), (x + cl, y1, rng.uniform(0.8, 1.0)), tex=tex)
                b.add((x + 0.2 * cl, y0 + 0.1, 0.8), (x + 0.8 * cl, y1 - 0.1,
                                                     rng.uniform(1.35, 1.6)), tex=tex)
                x += cl
            x += rng.uniform(1.0, 6.0)
        x = lo[0] + rng.uniform(2, 8)
        while x < hi[0]:                               # poles on the pavement
            yp = side * (half - 1.5 - walk * 0.3)
            b.add((x, yp - 0.08, 0), (x + 0.16, yp + 0.08, rng.uniform(3.0, 6.0)))
            x += rng.uniform(8, 20)
    road = half - 1.5 - walk - 1.95 - 0.8
    free = (lo[0] + 4.0, hi[0] - 4.0, -road, road)
    return lo, hi, free, 0.15


def _field(b, rng):
    half = 45.0
    lo = np.array([-half, -half, 0.0])
    hi = np.array([half, half, 25.0])
    b.add(lo, hi, inside=True, tpm=(48.0, 96.0), open_faces=(5,))
    free = (-12.0, 12.0, -2.5, 2.5)
    for _ in range(int(rng.integers(25, 45))):
        x, y = rng.uniform(-25, 25), rng.uniform(-20, 20)
        if -19 < x < 14 and -8.5 < y < 3.5:      # (footprints reach 5 m along +x, +y)
            continue
        kind = rng.random()
        if kind < 0.3:      # a tree: trunk and crown
            tex = int(rng.integers(0, b.n_tex))
            b.add((x, y, 0), (x + 0.3, y + 0.3, 2.0))
            s = rng.uniform(1.5, 3.0)
            b.add((x - s / 2, y - s / 2, 2.0), (x + s / 2, y + s / 2, 2.0 + s), tex=tex)
        elif kind < 0.5:    # a shed
            b.add((x, y, 0), (x + rng.uniform(2, 5), y + rng.uniform(2, 4), rng.uniform(2, 3.5)))
        else:               # rocks and crates
            s = rng.uniform(0.3, 1.2)
            b.add((x, y, 0), (x + s * rng.uniform(0.7, 1.5), y + s, s * rng.uniform(0.4, 1.0)))
    return lo, hi, free, 0.12


_BUILDERS = {"home": _home, "office": _office, "kitchen": _kitchen, "hallway": _hallway,
             "town": _town, "field": _field}


def _lighting(rng, outdoor: bool, lo, hi) -> dict:
    """View-independent lighting: ambient, a directional sun or window, a lamp (indoors)."""
    el = math.radians(rng.uniform(20, 70))
    az = rng.uniform(0, 2 * math.pi)
    sun = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    if outdoor:
        return {"ambient": float(rng.uniform(0.5, 0.75)), "sun": sun,
                "sun_gain": float(rng.uniform(0.3, 0.6)), "lamps": []}
    lamps = []
    for _ in range(int(rng.integers(1, 3))):
        p = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1]), hi[2] - 0.3])
        lamps.append((p, float(rng.uniform(0.3, 0.7)), float(rng.uniform(2.0, 4.0))))
    return {"ambient": float(rng.uniform(0.45, 0.7)), "sun": sun,
            "sun_gain": float(rng.uniform(0.0, 0.25)), "lamps": lamps}


def make_place(kind: str, seed: int = 0, textures=None) -> Scene:
    """A place of ``kind`` (one of ``PLACES``) drawn for ``seed``, textured from the texture
    sources ``textures`` (``synth_sources.check_sources``; default procedural and packaged)."""
    if kind not in PLACES:
        raise DatasetError(f"place '{kind}' is unknown; expected one of {', '.join(PLACES)}",
                           "synth")
    rng = np.random.default_rng([seed, 101, PLACES.index(kind)])
    texs = [mip_pyramid(t) for t in make_textures(rng, N_TEXTURES, textures)]
    b = _Builder(rng, len(texs))
    lo, hi, free, speed = _BUILDERS[kind](b, rng)
    if not isinstance(free, tuple):
        margin = float(free)
        free = (lo[0] + margin, hi[0] - margin, lo[1] + margin, hi[1] - margin)
    outdoor = kind in ("town", "field")
    sky = mip_pyramid(texture_sky(rng)) if outdoor else None
    start = np.array([free[0] + 0.3, 0.5 * (free[2] + free[3]), 1.5])
    scene = Scene(kind, b.boxes, texs, sky, start, 0.0, math.radians(-5), speed,
                  max(1.0, free[1] - free[0] - 0.6), 30.0,
                  0.4 * min(free[1] - free[0], free[3] - free[2]))
    scene.info = {"free": tuple(float(v) for v in free), "ceiling": float(hi[2]),
                  "inner": float(b.inner),
                  "outdoor": outdoor, "light": _lighting(rng, outdoor, lo, hi)}
    return scene


# How fast a course may turn (degrees a frame at 30 frames/s, before a hand-held camera's own
# looking around) and how much the speed may change a frame (a share of the robot's speed): a
# car or robot slows for a bend, and a place's tight bends would otherwise turn it 20-40 degrees
# in a frame.
MAX_TURN_DEG = {"vehicle": 1.5, "handheld": 3.0, "drone": 2.0}
MAX_ACCEL = {"vehicle": 0.02, "handheld": 0.05, "drone": 0.03}
COURSE_SAMPLES = 4096
COURSES = ("stadium", "ellipse")


def _course(c: np.ndarray, r: np.ndarray):
    """A closed course round a free zone: a stadium (two straights joined by half circles)
    inside the rectangle ``c +- r``, its bends as wide as the rectangle's short side allows.
    Returns points (M, 2) spaced evenly along it, unit tangents (M, 2), the radius of curvature
    at each (inf on the straights) and the length of each of the M segments (the last closes
    the course)."""
    long_axis = 0 if r[0] >= r[1] else 1
    a, b = float(max(r)), float(min(r))
    straight = 2.0 * (a - b)
    total = 2.0 * straight + 2.0 * np.pi * b
    s = np.arange(COURSE_SAMPLES) * (total / COURSE_SAMPLES)
    p = np.zeros((len(s), 2))
    tng = np.zeros((len(s), 2))
    rad = np.full(len(s), np.inf)
    half = a - b
    legs = np.cumsum([straight, np.pi * b, straight, np.pi * b])
    for i, si in enumerate(s):
        if si < legs[0]:                      # along the long side, one way
            p[i], tng[i] = (-half + si, -b), (1.0, 0.0)
        elif si < legs[1]:                    # the half circle at the far end
            phi = -np.pi / 2 + (si - legs[0]) / b
            p[i], tng[i], rad[i] = (half + b * np.cos(phi), b * np.sin(phi)), \
                (-np.sin(phi), np.cos(phi)), b
        elif si < legs[2]:                    # back along the other long side
            p[i], tng[i] = (half - (si - legs[1]), b), (-1.0, 0.0)
        else:                                 # the half circle at the near end
            phi = np.pi / 2 + (si - legs[2]) / b
            p[i], tng[i], rad[i] = (-half + b * np.cos(phi), b * np.sin(phi)), \
                (-np.sin(phi), np.cos(phi)), b
    if long_axis == 1:
        p, tng = p[:, ::-1].copy(), tng[:, ::-1].copy()
        p[:, 0], tng[:, 0] = -p[:, 0], -tng[:, 0]     # a rotation by 90 degrees, not a mirror
    return c + p, tng, rad, np.full(len(s), total / len(s))


def _accel_limited(limit: np.ndarray, ds: np.ndarray, accel: float) -> np.ndarray:
    """The fastest speed profile round a closed course that keeps under ``limit`` and changes
    by at most ``accel`` a frame (``v dv = accel ds``: speeding up or slowing down evenly),
    both ways round."""
    v = limit.astype(float).copy()
    n = len(v)
    for _ in range(2):                        # twice round: the course is closed
        for i in range(n):                    # speeding up out of a bend
            j = (i - 1) % n
            v[i] = min(v[i], np.sqrt(v[j] ** 2 + 2.0 * accel * ds[j]))
        for i in range(n - 1, -1, -1):        # slowing down into one
            j = (i + 1) % n
            v[i] = min(v[i], np.sqrt(v[j] ** 2 + 2.0 * accel * ds[i]))
    return v


def _stadium_course(c, r, rng, direction, speed, k, kind):
    """Positions and course directions at frames ``k`` round the stadium (:func:`_course`): at
    most the robot's ``speed``, slower in the bends so that the course turns by at most
    ``MAX_TURN_DEG`` a frame, the speed changing by at most ``MAX_ACCEL`` a frame."""
    pts, tangent, radius, ds = _course(c, r)
    limit = np.minimum(speed, np.radians(MAX_TURN_DEG[kind]) * radius)
    v = _accel_limited(limit, ds, MAX_ACCEL[kind] * speed)
    t = np.r_[0, np.cumsum(ds / v)]                     # frames to each sample, once round
    at = (rng.uniform(0, t[-1]) + direction * k) % t[-1]
    j = np.clip(np.searchsorted(t, at, side="right") - 1, 0, len(pts) - 1)
    w = ((at - t[j]) / np.maximum(t[j + 1] - t[j], 1e-12))[:, None]
    nxt = (j + 1) % len(pts)
    return (1 - w) * pts[j] + w * pts[nxt], direction * ((1 - w) * tangent[j] + w * tangent[nxt])


def _ellipse_course(c, r, rng, direction, speed, k):
    """Positions and course directions at frames ``k`` round the ellipse of radii ``r`` at a
    constant ``speed`` (the course of earlier versions)."""
    phi = np.linspace(0, 2 * np.pi, 2049)
    pts = c + r * np.stack([np.cos(phi), np.sin(phi)], 1)
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    s = (rng.uniform(0, arc[-1]) + direction * speed * k) % arc[-1]
    ang = np.interp(s, arc, phi)
    xy = c + r * np.stack([np.cos(ang), np.sin(ang)], 1)
    return xy, direction * np.stack([-r[0] * np.sin(ang), r[1] * np.cos(ang)], 1)


def robot_path(scene: Scene, kind: str = "handheld", n_frames: int = 60, seed: int = 0,
               course: str = "stadium") -> np.ndarray:
    """(n_frames, 4, 4) camera-to-world poses (optical frame) of a robot of ``kind`` (one of
    ``ROBOT_PATHS``) going round the free zone of a place (``make_place``). ``course``:
    ``stadium`` (bends no tighter than the zone's short side, slowed for) or ``ellipse`` (the
    course of earlier versions at constant speed: in a long place its ends turn the robot by
    20-60 degrees a frame; kept to reproduce figures and tests made with it)."""
    if kind not in ROBOT_PATHS:
        raise DatasetError(f"path '{kind}' is unknown; expected one of "
                           f"{', '.join(ROBOT_PATHS)}", "synth")
    if "free" not in scene.info:
        raise DatasetError(f"scene '{scene.name}' has no free zone; robot paths need a place "
                           f"({', '.join(PLACES)})", "synth")
    if course not in COURSES:
        raise DatasetError(f"course '{course}' is unknown; expected one of "
                           f"{', '.join(COURSES)}", "synth")
    n = int(n_frames)
    if n < 1:
        raise DatasetError(f"n_frames must be at least 1, got {n_frames}", "synth")
    rng = np.random.default_rng([seed, 13, ROBOT_PATHS.index(kind)])
    x0, x1, y0, y1 = scene.info["free"]
    outdoor = bool(scene.info.get("outdoor"))
    c = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    half = np.array([(x1 - x0) / 2, (y1 - y0) / 2])
    r = np.maximum(half * rng.uniform(0.6, 0.95, 2), min(scene.info.get("inner", 0.0),
                                                        0.95 * half.min()))
    k = np.arange(n, dtype=float)
    speed = scene.speed * rng.uniform(0.7, 1.3) * (0.6 if kind == "handheld" else 1.0)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    if course == "ellipse":
        xy, tan = _ellipse_course(c, r, rng, direction, speed, k)
    else:
        xy, tan = _stadium_course(c, r, rng, direction, speed, k, kind)
    heading = np.unwrap(np.arctan2(tan[:, 1], tan[:, 0]))
    if kind != "vehicle" and rng.random() < 0.6:
        # look across the place (towards the far side of the free zone's centre) rather than
        # along the course: the view then spans the place's depth
        inward = np.arctan2(c[1] - xy[:, 1], c[0] - xy[:, 0])
        heading = np.unwrap(inward + np.angle(np.exp(1j * (heading - inward))) * 0.3)
    phase = k / max(n - 1, 1)

    def wobble(amp, harmonics=(1, 2, 3)):
        out = np.zeros(n)
        for h in harmonics:
            out += amp / len(harmonics) * np.sin(2 * np.pi * h * phase + rng.uniform(0, 6.3))
        return out

    ceiling = scene.info["ceiling"]
    if kind == "vehicle":
        z = np.full(n, rng.uniform(1.2, 1.7) if outdoor else rng.uniform(0.25, 0.7))
        yaw = heading + np.radians(wobble(3.0))
        pitch = np.radians(rng.uniform(-8, 3) + wobble(1.0))
        roll = np.radians(wobble(0.8))
    elif kind == "handheld":
        z = rng.uniform(1.2, 1.7) + wobble(0.05, (3, 5, 7))
        yaw = heading + np.radians(wobble(35.0, (1, 2))) + handheld_yaw(n, rng, period=40)
        pitch = np.radians(rng.uniform(-25, 5) + wobble(8.0, (1, 3)))
        roll = np.radians(wobble(4.0, (2, 5)))
    else:
        top = 8.0 if outdoor else ceiling - 0.4
        bottom = 2.0 if outdoor else 0.6
        mid, amp = (top + bottom) / 2, (top - bottom) / 2
        z = mid + amp * 0.9 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * phase +
                                     rng.uniform(0, 6.3))
        yaw = heading + np.radians(rng.uniform(-60, 60)) * np.sin(
            2 * np.pi * rng.uniform(0.3, 1.0) * phase) + np.radians(wobble(10.0))
        pitch = np.radians(rng.uniform(-35, -5) + wobble(5.0))
        roll = np.radians(wobble(3.0))
    z = np.broadcast_to(z, (n,))
    pitch = np.broadcast_to(pitch, (n,))
    return np.stack([_pose(np.array([xy[i, 0], xy[i, 1], z[i]]), yaw[i], pitch[i], roll[i])
                     for i in range(n)])
