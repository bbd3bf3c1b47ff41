"""Metric scale from the camera's known height over the road.

At each keyframe, the road in front of the vehicle is aligned densely between the previous
keyframe and the new one: for a plane at distance ``d`` (the odometry's unit) below the camera,
with its normal near the camera's down axis, the tracker's motion between the two keyframes
predicts where every road pixel goes (the plane-induced homography ``K (R + t n^T / d) K^-1``);
the ``d`` (and the small tilt) whose warp matches the images best is the camera's height in the
odometry's unit, and ``camera_height_m / d`` its metres per unit.

Why dense and not a plane through the map points: on a road the tracked features sit on lane
marks and kerbs, lines that run towards the focus of expansion, along which a feature track
slides, and on parked cars and verges that are not the road; the map points below the camera
lie 10-20 % above the road. The region aligned is where the road is expected: below the horizon
of the configured camera extrinsic, within one camera height either side of the vehicle's path
and at most ``MAX_AHEAD`` heights ahead (scale-free: the bounds are in camera heights).

Each measurement gets a confidence from how sharply the alignment cost rises away from its
minimum; the scale follows the median of the recent confident measurements and holds between
them.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from vode_ros.robust import weighted_median
from vode_ros.scale.status import ScaleStatus

SOURCE = "ground"
CORRIDOR = 1.0            # half-width of the road region, camera heights either side
MAX_AHEAD = 12.0          # the road region ends this many camera heights ahead
PIXEL_STEP = 3            # every PIXEL_STEP-th pixel of the region, in both directions
MAX_TILT_DEG = 3.0        # the road's normal within this of the configured down axis
TRUNCATE = 25.0           # grey-level residuals are truncated here (occluders, glare)
MIN_PIXELS = 500          # fewer valid road pixels: no measurement
MIN_SENSITIVITY_PX = 1.0  # a 25 % height change must move the road by at least this much
FINE_LOG_STEP = 0.01      # the finest height step searched (log), refined below it by a parabola


@dataclass
class GroundMeasurement:
    height: float             # camera height over the road, the odometry's unit
    normal: np.ndarray        # unit normal of the road in the camera frame (pointing down)
    confidence: float         # 0-1: how sharply the alignment cost rises away from the minimum
    pixels: int
    tilt: tuple[float, float] = (0.0, 0.0)   # pitch, roll of the normal from "down" (radians)


def down_axis(base_to_camera: np.ndarray) -> np.ndarray:
    """The gravity direction (base_link -z) in the camera optical frame."""
    return base_to_camera[:3, :3].T @ np.array([0.0, 0.0, -1.0])


def road_pixels(K: np.ndarray, size: tuple[int, int], down: np.ndarray,
                forward: np.ndarray) -> np.ndarray:
    """(N, 2) pixels (every ``PIXEL_STEP``-th) where the road ahead is expected: rays that meet
    a plane below the camera with normal ``down`` within ``CORRIDOR`` heights of the path and at
    most ``MAX_AHEAD`` heights ahead (``forward``: the vehicle's forward axis in the camera)."""
    w, h = size
    u, v = np.meshgrid(np.arange(0, w, PIXEL_STEP, dtype=float),
                       np.arange(0, h, PIXEL_STEP, dtype=float))
    px = np.c_[u.ravel(), v.ravel()]
    rays = np.c_[px, np.ones(len(px))] @ np.linalg.inv(K).T
    fwd = forward - down * (forward @ down)
    fwd /= np.linalg.norm(fwd)
    lat = np.cross(down, fwd)
    below = rays @ down
    ok = (below > 1e-6) & (np.abs(rays @ lat) <= CORRIDOR * below) & \
        (rays @ fwd <= MAX_AHEAD * below) & (rays @ fwd > 0)
    return px[ok]


def _tilted(normal: np.ndarray, pitch: float, roll: float) -> np.ndarray:
    """``normal`` turned by ``pitch`` about the camera's x axis, then ``roll`` about its z."""
    cp, sp, cr, sr = np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    Rx = np.array([[1.0, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1.0]])
    n = Rz @ (Rx @ normal)
    return n / np.linalg.norm(n)


class RoadAlignment:
    """The photometric cost of road planes between two keyframes' grey images."""

    def __init__(self, grey0: np.ndarray, grey1: np.ndarray, K: np.ndarray,
                 T_1_0: np.ndarray, px0: np.ndarray):
        self.g1 = grey1.astype(np.float32)
        self.K, self.Ki = K, np.linalg.inv(K)
        self.R, self.t = T_1_0[:3, :3], T_1_0[:3, 3]
        self.x = px0[:, 0].astype(np.float32)
        self.y = px0[:, 1].astype(np.float32)
        g0 = grey0.astype(np.float32)
        q = px0.astype(np.float32)
        self.ref = cv2.remap(g0, q[None, :, 0], q[None, :, 1], cv2.INTER_NEAREST)[0]

    def warp(self, d, n) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (u, v), each (M, N) float32, in image 1 of the road pixels of image 0 for the
        planes at heights ``d`` (M,) with normals ``n`` (M, 3)."""
        d, n = np.atleast_1d(np.asarray(d, float)), np.atleast_2d(n)
        H = (self.K @ (self.R[None] + self.t[None, :, None] * (n / d[:, None])[:, None, :])
             @ self.Ki).astype(np.float32)
        x, y = self.x, self.y            # elementwise: no threaded BLAS call on a busy machine
        r = [H[:, k, 0:1] * x + H[:, k, 1:2] * y + H[:, k, 2:3] for k in range(3)]
        with np.errstate(divide="ignore", invalid="ignore"):
            return r[0] / r[2], r[1] / r[2]

    def costs(self, d, n) -> np.ndarray:
        """Mean truncated absolute grey-level difference (the mean difference removed) of each
        plane, inf where fewer than ``MIN_PIXELS`` land inside image 1."""
        u, v = self.warp(d, n)
        h, w = self.g1.shape[:2]
        inside = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u <= w - 1) & (v >= 0) & \
            (v <= h - 1)
        u[~inside] = 0
        v[~inside] = 0
        val = cv2.remap(self.g1, u, v, cv2.INTER_LINEAR)
        r = np.where(inside, val - self.ref[None], 0.0)
        count = inside.sum(1)
        r = np.abs(r - (r.sum(1) / np.maximum(count, 1))[:, None])
        c = np.where(inside, np.minimum(r, TRUNCATE), 0.0).sum(1) / np.maximum(count, 1)
        return np.where(count >= MIN_PIXELS, c, np.inf)

    def sensitivity_px(self, d: float, n: np.ndarray) -> float:
        """Median image distance between the warps of heights d and 1.25 d."""
        u, v = self.warp([d, 1.25 * d], np.stack([n, n]))
        e = np.hypot(u[0] - u[1], v[0] - v[1])
        return float(np.nanmedian(e)) if np.isfinite(e).any() else 0.0


def measure_height(align: RoadAlignment, down: np.ndarray, guess: float,
                   prior: tuple[float, float] | None = None, spread: float = 3.0
                   ) -> GroundMeasurement | None:
    """The camera height (odometry unit) and road tilt (pitch, roll from ``down``, radians)
    whose road warp matches best: heights over a factor ``spread`` either side of ``guess`` at
    the ``prior`` tilt (the recent measurements'), then height and pitch together, roll, and
    both again finely (height and pitch trade off, so both are fitted; the tilt stays within
    ``MAX_TILT_DEG``). None where the road does not constrain the height."""
    tilt = (0.0, 0.0) if prior is None else prior
    n0 = _tilted(down, *tilt)
    if align.sensitivity_px(guess, n0) < MIN_SENSITIVITY_PX:
        return None
    half = np.log(spread)
    heights = guess * np.exp(np.linspace(-half, half, int(np.ceil(half / 0.1)) * 2 + 1))
    costs = align.costs(heights, np.repeat(n0[None], len(heights), 0))
    k = int(np.argmin(costs))
    if not np.isfinite(costs[k]) or k in (0, len(heights) - 1):
        return None
    d, (pitch, roll) = float(heights[k]), tilt
    limit = np.radians(MAX_TILT_DEG)
    # the tilt is searched over the whole range without a prior, near the prior with one
    reach = limit if prior is None else np.radians(1.5)
    coarse = np.radians(0.5) * np.arange(-int(round(reach / np.radians(0.5))),
                                         int(round(reach / np.radians(0.5))) + 1)
    fine = np.radians(0.25) * np.arange(-2, 3)
    for d_rel, pitches, rolls in (
            (np.exp(np.linspace(-0.1, 0.1, 9)), pitch + coarse, [None]),
            (np.ones(1), [None], roll + coarse),
            (np.exp(FINE_LOG_STEP * np.arange(-3, 4)), pitch + fine, [None]),
            (np.ones(1), [None], roll + fine)):
        grid = [(d * x, pitch if a is None else a, roll if b is None else b)
                for x in d_rel for a in (pitches if pitches[0] is not None else [None])
                for b in (rolls if rolls[0] is not None else [None])]
        grid = [g for g in grid if abs(g[1]) <= limit and abs(g[2]) <= limit]
        c = align.costs(np.array([g[0] for g in grid]),
                        np.stack([_tilted(down, g[1], g[2]) for g in grid]))
        d, pitch, roll = grid[int(np.argmin(c))]
    n = _tilted(down, pitch, roll)
    d = _parabolic_minimum(align, d, n, FINE_LOG_STEP)
    c0, away_lo, away_hi = align.costs(np.array([d, d / 1.25, d * 1.25]), np.stack([n, n, n]))
    away = 0.5 * (away_lo + away_hi)
    if not (np.isfinite(c0) and np.isfinite(away)) or c0 <= 0:
        return None
    # a 25 % height error must cost at least 10 % more for full confidence
    confidence = float(np.clip((away - c0) / c0 / 0.1, 0.0, 1.0))
    return GroundMeasurement(float(d), n, confidence, int(len(align.x)),
                             (float(pitch), float(roll)))


def _parabolic_minimum(align: RoadAlignment, d: float, n: np.ndarray, step: float) -> float:
    """The height below the search grid's step: the minimum of the parabola through the costs
    at ``d`` and one ``step`` (log) either side; ``d`` where they do not bracket a minimum."""
    c = align.costs(d * np.exp(step * np.array([-1.0, 0.0, 1.0])), np.stack([n, n, n]))
    curvature = c[0] - 2.0 * c[1] + c[2]
    if not np.all(np.isfinite(c)) or curvature <= 0:
        return d
    offset = float(np.clip(0.5 * (c[0] - c[2]) / curvature, -1.0, 1.0))
    return float(d * np.exp(offset * step))


class GroundScale:
    """The ground-plane scale across keyframes: ``keyframe`` at each new keyframe returns the
    factor by which the tracker rescales its map (1.0: hold)."""

    def __init__(self, camera_height_m: float, base_to_camera: np.ndarray, window: int = 7,
                 min_confidence: float = 0.3):
        self.height_m = float(camera_height_m)
        self.down = down_axis(base_to_camera)
        self.forward = base_to_camera[:3, :3].T @ np.array([1.0, 0.0, 0.0])
        self.window = int(window)
        self.min_confidence = float(min_confidence)
        self.reset()

    def reset(self) -> None:
        # the last keyframe (grey, K, T_w_cam): the next one is measured against it (measuring
        # against the one before as well doubles the time and did not help on KITTI 01)
        self.last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.logs: deque[tuple[float, float]] = deque(maxlen=self.window)    # (log ratio, conf)
        self.tilts: deque[tuple[float, float]] = deque(maxlen=self.window)   # of the mount
        self.status = ScaleStatus(SOURCE)
        self.last_measurement: GroundMeasurement | None = None

    def keyframe(self, grey: np.ndarray, K: np.ndarray, T_w_cam: np.ndarray, stamp_ns: int,
                 guess: float | None = None) -> tuple[float, np.ndarray]:
        """A new keyframe (its grey working image, intrinsics and pose in the tracker's world):
        measure the height against the previous keyframe and return the map's rescale factor
        (1.0: hold) and the point to rescale about (the previous keyframe the first time: the
        step that measured it comes out in metres; later the camera: the pose does not jump).
        ``guess``: the height in the map's unit where no measurement was made yet."""
        first = self.status.updates == 0
        prev, self.last = self.last, (grey, K.copy(), T_w_cam.copy())
        if prev is None or prev[0].shape != grey.shape or not np.allclose(prev[1], K):
            return 1.0, T_w_cam[:3, 3].copy()
        centre = (prev[2] if first else T_w_cam)[:3, 3].copy()
        start = guess if first else self.height_m
        px = road_pixels(K, (grey.shape[1], grey.shape[0]), self.down, self.forward)
        if start is None or start <= 0 or len(px) < MIN_PIXELS:
            return 1.0, centre
        # the first search is wide (the map's unit is arbitrary), later ones around metres
        align = RoadAlignment(prev[0], grey, K, np.linalg.inv(T_w_cam) @ prev[2], px)
        m = measure_height(align, self.down, start, self.tilt(), spread=3.0 if first else 1.5)
        if first and m is not None:
            # no tilt prior yet: height and tilt trade off, and the search from an untilted
            # road stops short of both; search once more about the measurement's own height
            # and tilt, as every later measurement starts from the recent tilt
            m = measure_height(align, self.down, m.height, m.tilt, spread=1.5) or m
        self.last_measurement = m
        if m is None or m.confidence < self.min_confidence:
            self.status.confidence *= 1.0 if first else 0.5
            return 1.0, centre
        self.tilts.append(m.tilt)
        f = self._filter([(float(np.log(self.height_m / m.height)), m.confidence)], stamp_ns)
        self.last = (grey, K.copy(), _rescaled(T_w_cam, centre, f))
        return f, centre

    def tilt(self) -> tuple[float, float] | None:
        """The camera's tilt over the road (pitch, roll from the configured down axis): the
        median of the recent measurements (a mount is fixed; the road's tilt under the vehicle
        changes slowly); None before the first."""
        if not self.tilts:
            return None
        t = np.array(self.tilts)
        return (float(np.median(t[:, 0])), float(np.median(t[:, 1])))

    def _filter(self, measured: list[tuple[float, float]], stamp_ns: int) -> float:
        """The robust temporal filter: the confidence-weighted median of the recent
        measurements ((log ratio, confidence), each in the map's current unit) is the
        correction applied."""
        self.logs.extend(measured)
        confidence = max(c for _, c in measured)
        corr = weighted_median(np.array([a for a, _ in self.logs]),
                               np.array([c for _, c in self.logs]))
        self.logs = deque(((a - corr, c) for a, c in self.logs), maxlen=self.window)
        f = float(np.exp(corr))
        self.status.update(1.0, confidence, stamp_ns)     # the map itself is rescaled: metres
        return f

    def restart(self, grey: np.ndarray, K: np.ndarray, T_w_cam: np.ndarray) -> None:
        """The tracker restarted at this frame: the next keyframe is measured against it."""
        self.last = (grey, K.copy(), T_w_cam.copy())


def _rescaled(T: np.ndarray, centre: np.ndarray, f: float) -> np.ndarray:
    out = T.copy()
    out[:3, 3] = centre + f * (T[:3, 3] - centre)
    return out
