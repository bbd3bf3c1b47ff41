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

from vode_ros.scale.status import ScaleStatus

SOURCE = "ground"
CORRIDOR = 1.0            # half-width of the road region, camera heights either side
MAX_AHEAD = 12.0          # the road region ends this many camera heights ahead
PIXEL_STEP = 3            # every PIXEL_STEP-th pixel of the region, in both directions
MAX_TILT_DEG = 3.0        # the road's normal within this of the configured down axis
TRUNCATE = 25.0           # grey-level residuals are truncated here (occluders, glare)
MIN_PIXELS = 500          # fewer valid road pixels: no measurement
MIN_SENSITIVITY_PX = 1.0  # a 25 % height change must move the road by at least this much


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
    from scipy.spatial.transform import Rotation
    n = Rotation.from_euler("xz", [pitch, roll]).apply(normal)
    return n / np.linalg.norm(n)


class RoadAlignment:
    """The photometric cost of a road plane between two keyframes' grey images."""

    def __init__(self, grey0: np.ndarray, grey1: np.ndarray, K: np.ndarray,
                 T_1_0: np.ndarray, px0: np.ndarray):
        self.g0 = grey0.astype(np.float32)
        self.g1 = grey1.astype(np.float32)
        self.K, self.Ki = K, np.linalg.inv(K)
        self.R, self.t = T_1_0[:3, :3], T_1_0[:3, 3]
        self.px0 = px0
        self.x0 = np.c_[px0, np.ones(len(px0))]
        self.ref = cv2.remap(self.g0, px0[:, :1].astype(np.float32).T,
                             px0[:, 1:].astype(np.float32).T, cv2.INTER_NEAREST)[0]

    def warp(self, d: float, n: np.ndarray) -> np.ndarray:
        """Pixels in image 1 of the road pixels of image 0 for the plane (n, d)."""
        H = self.K @ (self.R + np.outer(self.t, n) / d) @ self.Ki
        p = self.x0 @ H.T
        with np.errstate(divide="ignore", invalid="ignore"):
            return p[:, :2] / p[:, 2:3]

    def cost(self, d: float, n: np.ndarray) -> tuple[float, int]:
        """Mean truncated absolute grey-level difference (the mean difference removed) and the
        number of pixels that land inside image 1."""
        p = self.warp(d, n)
        h, w = self.g1.shape[:2]
        inside = np.isfinite(p).all(1) & (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & \
            (p[:, 1] >= 0) & (p[:, 1] <= h - 1)
        if inside.sum() < MIN_PIXELS:
            return float("inf"), int(inside.sum())
        q = p[inside].astype(np.float32)
        val = cv2.remap(self.g1, q[:, :1].T, q[:, 1:].T, cv2.INTER_LINEAR)[0]
        r = val - self.ref[inside]
        r = np.abs(r - np.median(r))
        return float(np.minimum(r, TRUNCATE).mean()), int(inside.sum())

    def sensitivity_px(self, d: float, n: np.ndarray) -> float:
        """Median image distance between the warps of heights d and 1.25 d."""
        a, b = self.warp(d, n), self.warp(1.25 * d, n)
        e = np.linalg.norm(a - b, axis=1)
        return float(np.nanmedian(e)) if np.isfinite(e).any() else 0.0


def measure_height(align: RoadAlignment, down: np.ndarray, guess: float,
                   tilt: tuple[float, float] = (0.0, 0.0), spread: float = 3.0
                   ) -> GroundMeasurement | None:
    """The camera height (odometry unit) and road tilt (pitch, roll from ``down``, radians)
    whose road warp matches best: a coarse search over a factor ``spread`` either side of
    ``guess``
    at ``tilt``, then height and tilt together (Nelder-Mead; the tilt within
    ``MAX_TILT_DEG``: height and pitch trade off, so both are fitted). None where the road does
    not constrain the height."""
    from scipy.optimize import minimize
    n_start = _tilted(down, *tilt)
    if align.sensitivity_px(guess, n_start) < MIN_SENSITIVITY_PX:
        return None
    n_coarse = int(np.ceil(np.log(spread) / 0.1)) * 2 + 1        # steps of ~10 %
    heights = guess * np.exp(np.linspace(-np.log(spread), np.log(spread), n_coarse))
    costs = np.array([align.cost(d, n_start)[0] for d in heights])
    k = int(np.argmin(costs))
    if not np.isfinite(costs[k]) or k in (0, len(heights) - 1):
        return None
    limit = np.radians(MAX_TILT_DEG)

    def objective(x):
        if abs(x[1]) > limit or abs(x[2]) > limit:
            return 1e9
        c = align.cost(float(np.exp(x[0])), _tilted(down, x[1], x[2]))[0]
        return c if np.isfinite(c) else 1e9

    x0 = np.array([np.log(heights[k]), *tilt])
    simplex = x0 + np.vstack([np.zeros(3), np.diag([0.1, np.radians(0.5), np.radians(0.5)])])
    res = minimize(objective, x0, method="Nelder-Mead",
                   options={"initial_simplex": simplex, "xatol": 2e-3, "fatol": 1e-3,
                            "maxfev": 60})
    d, n = float(np.exp(res.x[0])), _tilted(down, res.x[1], res.x[2])
    c0, pixels = align.cost(d, n)
    away = 0.5 * (align.cost(d / 1.25, n)[0] + align.cost(d * 1.25, n)[0])
    if not (np.isfinite(c0) and np.isfinite(away)) or c0 <= 0 or c0 >= 1e9:
        return None
    # a 25 % height error must cost at least 10 % more for full confidence
    confidence = float(np.clip((away - c0) / c0 / 0.1, 0.0, 1.0))
    return GroundMeasurement(d, n, confidence, pixels, (float(res.x[1]), float(res.x[2])))


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The weighted median, interpolated between the middle values (equal weights: the
    median)."""
    order = np.argsort(values)
    v, w = values[order], weights[order]
    c = np.cumsum(w) - 0.5 * w                 # the centre of each value's weight
    return float(np.interp(0.5 * w.sum(), c, v))


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
        self.last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None   # grey, K, T_w_cam
        self.logs: deque[tuple[float, float]] = deque(maxlen=self.window)    # (log ratio, conf)
        self.tilts: deque[tuple[float, float]] = deque(maxlen=self.window)   # of the mount
        self.status = ScaleStatus(SOURCE)
        self.last_measurement: GroundMeasurement | None = None

    def keyframe(self, grey: np.ndarray, K: np.ndarray, T_w_cam: np.ndarray, stamp_ns: int,
                 guess: float | None = None) -> float:
        """A new keyframe (its grey working image, intrinsics and pose in the tracker's world):
        measure the height against the previous keyframe and return the map's rescale factor.
        ``guess``: the height in the map's unit where no measurement was made yet."""
        prev, self.last = self.last, (grey, K.copy(), T_w_cam.copy())
        if prev is None or prev[0].shape != grey.shape or not np.allclose(prev[1], K):
            return 1.0
        if self.status.updates == 0 and not (guess and guess > 0):
            return 1.0
        est = self.height_m if self.status.updates else guess
        T_1_0 = np.linalg.inv(T_w_cam) @ prev[2]
        px = road_pixels(K, (grey.shape[1], grey.shape[0]), self.down, self.forward)
        if len(px) < MIN_PIXELS:
            return 1.0
        # the first search is wide (the map's unit is arbitrary), later ones around metres
        m = measure_height(RoadAlignment(prev[0], grey, K, T_1_0, px), self.down, est,
                           self.tilt(), spread=1.5 if self.status.updates else 3.0)
        self.last_measurement = m
        if m is not None and m.confidence >= self.min_confidence:
            self.tilts.append(m.tilt)
        if m is None or m.confidence < self.min_confidence:
            self.status.confidence *= 0.5 if self.status.updates else 1.0
            return 1.0
        return self._filter(float(np.log(self.height_m / m.height)), m.confidence, stamp_ns)

    def tilt(self) -> tuple[float, float]:
        """The camera's tilt over the road (pitch, roll from the configured down axis): the
        median of the recent measurements (a mount is fixed; the road's tilt under the vehicle
        changes slowly)."""
        if not self.tilts:
            return (0.0, 0.0)
        t = np.array(self.tilts)
        return (float(np.median(t[:, 0])), float(np.median(t[:, 1])))

    def _filter(self, log_ratio: float, confidence: float, stamp_ns: int) -> float:
        """The robust temporal filter: the confidence-weighted median of the recent
        measurements (each in the map's current unit) is the correction applied."""
        self.logs.append((log_ratio, confidence))
        corr = weighted_median(np.array([a for a, _ in self.logs]),
                               np.array([c for _, c in self.logs]))
        self.logs = deque(((a - corr, c) for a, c in self.logs), maxlen=self.window)
        f = float(np.exp(corr))
        self.status.update(1.0, confidence, stamp_ns)     # the map itself is rescaled: metres
        return f

    def restart(self, grey: np.ndarray, K: np.ndarray, T_w_cam: np.ndarray) -> None:
        """The tracker restarted at this frame: the next keyframe is measured against it."""
        self.last = (grey, K.copy(), T_w_cam.copy())
