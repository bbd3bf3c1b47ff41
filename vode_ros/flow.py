"""Correspondences between two frames: sparse pyramidal Lucas-Kanade tracks or dense DIS flow,
each scored by forward-backward consistency, with the best-scoring fraction kept and a bounded
sample spread over the image.

Everything here works on a grey working image (``working_grey``): the frame reduced to about
``max_pixels`` pixels, with the camera scaled to match (``Camera.scaled``). Points are ``(N, 2)``
float32 pixel coordinates ``(x, y)`` of the working image.

Forward-backward consistency: a point ``p0`` tracked forward to ``p1`` and ``p1`` tracked back to
``p0'`` should land where it started; ``|p0 - p0'|`` (pixels) is the score, small is good
(Kalal et al., "Forward-Backward Error", ICPR 2010; the same check filters dense flow in DF-VO).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vode_ros.camera import Camera

LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)


# -- the working image ---------------------------------------------------------------------------
def working_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """(w, h) of the image reduced (never enlarged) to at most ``max_pixels`` pixels."""
    s = min(1.0, float(np.sqrt(max_pixels / float(width * height))))
    return max(16, int(round(width * s))), max(16, int(round(height * s)))


def working_grey(image: np.ndarray, camera: Camera, max_pixels: int) -> tuple[np.ndarray, Camera]:
    """The frame as a grey uint8 image of at most ``max_pixels`` pixels, and its camera."""
    h, w = image.shape[:2]
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    ww, wh = working_size(w, h, max_pixels)
    if (ww, wh) != (w, h):
        # area averaging where it shrinks a lot (against aliasing), bilinear (cheap) otherwise
        interp = cv2.INTER_AREA if ww < 0.5 * w else cv2.INTER_LINEAR
        grey = cv2.resize(grey, (ww, wh), interpolation=interp)
    return grey, camera.scaled(ww, wh)


# -- sparse features -----------------------------------------------------------------------------
_NEIGHBOURS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])


def _one_per_cell(pts: np.ndarray, score: np.ndarray, cell: float, shape: tuple,
                  occupied: np.ndarray | None = None) -> np.ndarray:
    """Indices of points at least ``cell`` apart, the best-scoring (lowest ``score``) kept: the
    best of each ``cell`` x ``cell`` square, then the weaker of two close neighbours dropped;
    squares next to an ``occupied`` point are skipped (a cheap minimum distance)."""
    h, w = shape
    gw, gh = int(w // cell) + 1, int(h // cell) + 1
    cx = np.clip((pts[:, 0] / cell).astype(int), 0, gw - 1)
    cy = np.clip((pts[:, 1] / cell).astype(int), 0, gh - 1)
    idx = np.arange(len(pts))
    if occupied is not None and len(occupied):
        grid = np.zeros((gh + 2, gw + 2), bool)
        ox = np.clip((occupied[:, 0] / cell).astype(int), 0, gw - 1) + 1
        oy = np.clip((occupied[:, 1] / cell).astype(int), 0, gh - 1) + 1
        grid[oy[None] + _NEIGHBOURS[:, :1], ox[None] + _NEIGHBOURS[:, 1:]] = True
        grid[oy, ox] = True
        idx = np.flatnonzero(~grid[cy + 1, cx + 1])
    ids = cy * gw + cx
    order = idx[np.lexsort((score[idx], ids[idx]))]
    if len(order) == 0:
        return order
    first = np.r_[True, ids[order][1:] != ids[order][:-1]]
    win = order[first]                                 # the best point of each square
    # of two winners of neighbouring squares closer than ``cell``, the weaker goes
    owner = np.full((gh + 2, gw + 2), -1)
    owner[cy[win] + 1, cx[win] + 1] = win
    other = owner[cy[win][None] + 1 + _NEIGHBOURS[:, :1],
                  cx[win][None] + 1 + _NEIGHBOURS[:, 1:]]           # (8, winners)
    has = other >= 0
    o = np.where(has, other, 0)
    d = pts[o] - pts[win][None]
    close = has & (d[..., 0] ** 2 + d[..., 1] ** 2 < cell * cell)
    stronger = (score[o] < score[win]) | ((score[o] == score[win]) & (o < win))
    return win[~np.any(close & stronger, axis=0)]


def detect_features(grey: np.ndarray, max_count: int, min_distance: float = 8.0,
                    existing: np.ndarray | None = None, grid: tuple[int, int] = (8, 6),
                    method: str = "fast", fast_threshold: int = 20) -> np.ndarray:
    """Up to ``max_count`` corners spread over the image, at least about ``min_distance`` from
    each other and from ``existing`` points.

    ``fast``: FAST corners (Rosten and Drummond), the threshold lowered where the image has
    little contrast; ``shi-tomasi``: ``goodFeaturesToTrack`` (dearer). Candidates keep the
    strongest per ``min_distance`` square, then are drawn round-robin from a ``grid`` of cells
    (strongest first in each) so that texture-rich regions do not take them all."""
    if max_count <= 0:
        return np.zeros((0, 2), np.float32)
    if method == "fast":
        pts, resp = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
        thr = fast_threshold
        while True:
            kps = cv2.FastFeatureDetector_create(thr, True).detect(grey)
            if kps:
                pts = cv2.KeyPoint_convert(kps).astype(np.float32).reshape(-1, 2)
                resp = np.fromiter((k.response for k in kps), np.float32, len(kps))
            if len(pts) >= 2 * max_count or thr <= 5:
                break
            thr = max(5, thr // 2)
        score = -resp
    else:
        corners = cv2.goodFeaturesToTrack(grey, maxCorners=max_count * 4, qualityLevel=0.005,
                                          minDistance=min_distance, blockSize=5)
        pts = np.zeros((0, 2), np.float32) if corners is None else \
            corners.reshape(-1, 2).astype(np.float32)
        score = np.arange(len(pts), dtype=np.float32)      # strongest first
    if len(pts) == 0:
        return pts
    keep = _one_per_cell(pts, score, min_distance, grey.shape, existing)
    pts, score = pts[keep], score[keep]
    keep = spread_sample(pts, score, max_count, grey.shape[1], grey.shape[0], grid)
    return pts[keep]


def spread_sample(pts: np.ndarray, score: np.ndarray, max_count: int, width: int, height: int,
                  grid: tuple[int, int] = (8, 6)) -> np.ndarray:
    """Indices of at most ``max_count`` points drawn round-robin over a ``grid`` of cells, the
    best (lowest ``score``) of each cell first: a bounded sample spread over the image."""
    n = len(pts)
    if n <= max_count:
        return np.arange(n)
    gx, gy = grid
    cx = np.clip((pts[:, 0] * gx / max(width, 1)).astype(int), 0, gx - 1)
    cy = np.clip((pts[:, 1] * gy / max(height, 1)).astype(int), 0, gy - 1)
    cell = cy * gx + cx
    order = np.lexsort((score, cell))             # by cell, best first within a cell
    cell_sorted = cell[order]
    starts = np.searchsorted(cell_sorted, cell_sorted, side="left")
    rank_in_cell = np.arange(n) - starts           # 0 for a cell's best point, 1 next, ...
    # round r takes every cell's r-th point; within a round the better points first
    key = rank_in_cell.astype(np.float64) * (score.max() - score.min() + 1.0) + \
        (score[order] - score.min())
    chosen = order[np.argsort(key, kind="stable")[:max_count]]
    return np.sort(chosen)


@dataclass
class Tracks:
    """Result of tracking points from one image to the next."""

    p1: np.ndarray          # (N, 2) positions in the second image
    fb_error: np.ndarray    # (N,) forward-backward error in pixels (inf where lost)
    ok: np.ndarray          # (N,) bool: found forward and backward, inside, consistent


def track_lk(grey0: np.ndarray, grey1: np.ndarray, p0: np.ndarray, window: int = 11,
             levels: int = 3, fb_threshold: float = 1.0, guess: np.ndarray | None = None
             ) -> Tracks:
    """Pyramidal Lucas-Kanade (Bouguet) from image 0 to image 1 and back. ``guess`` (optional,
    (N, 2)): predicted positions in image 1, LK's initial flow (from a motion prior)."""
    n = len(p0)
    if n == 0:
        z = np.zeros((0, 2), np.float32)
        return Tracks(z, np.zeros(0, np.float32), np.zeros(0, bool))
    p0 = np.ascontiguousarray(p0, np.float32).reshape(-1, 1, 2)
    flags = 0
    init = None
    if guess is not None:
        init = np.ascontiguousarray(guess, np.float32).reshape(-1, 1, 2).copy()
        flags = cv2.OPTFLOW_USE_INITIAL_FLOW
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(grey0, grey1, p0, init, winSize=(window, window),
                                          maxLevel=levels, criteria=LK_CRITERIA, flags=flags)
    p0b, st0, _ = cv2.calcOpticalFlowPyrLK(grey1, grey0, p1, p0.copy(), winSize=(window, window),
                                           maxLevel=levels, criteria=LK_CRITERIA,
                                           flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    p1 = p1.reshape(-1, 2)
    fb = np.linalg.norm(p0.reshape(-1, 2) - p0b.reshape(-1, 2), axis=1).astype(np.float32)
    h, w = grey1.shape[:2]
    inside = (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
    ok = (st1.reshape(-1) == 1) & (st0.reshape(-1) == 1) & inside & np.isfinite(fb)
    fb = np.where(ok, fb, np.inf).astype(np.float32)
    ok &= fb <= fb_threshold
    return Tracks(p1.astype(np.float32), fb, ok)


def pyramid_levels(motion_px: float, window: int, base: int, most: int) -> int:
    """Pyramid levels for Lucas-Kanade to follow ``motion_px`` of image motion: each level
    doubles the reach of a ``window``-pixel window (about half a window at the base); never
    fewer than ``base`` nor more than ``most``."""
    if not np.isfinite(motion_px) or motion_px <= 0:
        return base
    need = int(np.ceil(np.log2(1.0 + motion_px / (0.5 * window))))
    return int(np.clip(need, base, max(base, most)))


# -- selection ---------------------------------------------------------------------------------
def best_fraction(score: np.ndarray, keep_fraction: float, fb_threshold: float) -> np.ndarray:
    """Boolean mask of the points whose score is within the best ``keep_fraction`` and below
    ``fb_threshold``."""
    ok = np.isfinite(score) & (score <= fb_threshold)
    if not ok.any() or keep_fraction >= 1.0:
        return ok
    cut = np.quantile(score[ok], keep_fraction)
    return ok & (score <= cut)


def select_correspondences(p0: np.ndarray, p1: np.ndarray, score: np.ndarray, width: int,
                           height: int, keep_fraction: float = 0.8, max_count: int = 400,
                           fb_threshold: float = 1.0,
                           grid: tuple[int, int] = (8, 6)) -> np.ndarray:
    """Indices of the correspondences to use: the best-scoring ``keep_fraction`` (below
    ``fb_threshold``), then at most ``max_count`` of them spread over the image."""
    good = np.flatnonzero(best_fraction(score, keep_fraction, fb_threshold))
    if len(good) == 0:
        return good
    pick = spread_sample(p0[good], score[good], max_count, width, height, grid)
    return good[pick]


def rotation_flow_guess(p0: np.ndarray, K: np.ndarray, R_1_0: np.ndarray) -> np.ndarray:
    """Where points of image 0 move in image 1 under a rotation only (the infinite homography
    ``K R K^-1``): a depth-free initial flow for LK from a rotation prior."""
    H = K @ R_1_0 @ np.linalg.inv(K)
    q = cv2.perspectiveTransform(np.asarray(p0, np.float64).reshape(-1, 1, 2), H)
    return q.reshape(-1, 2).astype(np.float32)


def _sample_flow(flow: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Bilinear sample of a 2-channel flow field at ``pts`` (NaN outside)."""
    m = cv2.remap(flow, pts[:, 0].reshape(1, -1).astype(np.float32),
                  pts[:, 1].reshape(1, -1).astype(np.float32), cv2.INTER_LINEAR,
                  borderMode=cv2.BORDER_CONSTANT, borderValue=(np.nan, np.nan))
    return m.reshape(-1, 2)


def track_dis(grey0: np.ndarray, grey1: np.ndarray, p0: np.ndarray, fb_threshold: float = 1.0,
              preset: int = cv2.DISOPTICAL_FLOW_PRESET_FAST) -> Tracks:
    """Points of image 0 moved by dense DIS flow, with the forward-backward check: the same
    interface as ``track_lk`` (dearer: two dense flows per frame)."""
    if len(p0) == 0:
        z = np.zeros((0, 2), np.float32)
        return Tracks(z, np.zeros(0, np.float32), np.zeros(0, bool))
    dis = cv2.DISOpticalFlow_create(preset)
    fwd = dis.calc(grey0, grey1, None)
    bwd = dis.calc(grey1, grey0, None)
    p0 = np.asarray(p0, np.float32)
    f = _sample_flow(fwd, p0)
    p1 = p0 + f
    back = _sample_flow(bwd, p1)
    fb = np.linalg.norm(f + back, axis=1)
    h, w = grey1.shape[:2]
    inside = (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
    ok = inside & np.isfinite(fb)
    fb = np.where(ok, fb, np.inf).astype(np.float32)
    ok &= fb <= fb_threshold
    return Tracks(np.nan_to_num(p1).astype(np.float32), fb, ok)
