"""Local bundle adjustment: the keyframe poses of a window and the map points they see, refined
together by robust (Huber) least squares on the reprojection errors.

The problem is sparse (each observation depends on one pose and one point): Levenberg-Marquardt
on the analytic Jacobian, each step solved by the Schur complement on the points (the reduced
system is as wide as six times the free keyframes), the Huber kernel by reweighting, then the
observations beyond three Huber thresholds dropped: a few milliseconds for a window of keyframes
and a few hundred points. The gauge is held as monocular odometry needs it: the keyframes marked
fixed (the oldest at least) do not move, and the map's scale is kept (with one keyframe fixed,
the solution is rescaled about it so that the oldest pair's distance is what it was). The
solver stops after ``max_iterations`` or when its time budget is spent, with the best solution
seen so far.

Written here rather than with gtsam (a dependency, used for the loop-closure pose graph): the
same problem in gtsam (``GenericProjectionFactorCal3_S2`` under a Huber kernel, held keyframes
as equality constraints, Levenberg-Marquardt, sequential Cholesky) reaches the same solution
(7-Scenes 0-599 ATE 0.0386 m against 0.0387 m with an ample budget) but takes 22-38 ms at the
median per 7-Scenes keyframe window against 4-5 ms here, on 2 cores: over the 15 ms budget,
where it stops short (7-Scenes 0.0518 m; 0.0497 m at 50 ms). docs/results.md, "Local bundle
adjustment".

Poses are ``T_world_camera`` (4x4); observations are unit rays in each keyframe's camera frame
(``(N, W, 3)``, NaN where a point is not seen: the tracker's ``Tracks.obs``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass
class BundleResult:
    """What one bundle adjustment did."""

    poses: np.ndarray             # (W, 4, 4) refined T_world_keyframe
    points: np.ndarray            # (N, 3) refined points, NaN: not adjusted or rejected
    adjusted: np.ndarray          # (N,) bool: the points that took part
    rejected: np.ndarray          # (N,) bool: points whose reprojection stays off (outliers)
    rms_before_px: float          # robust (inlier) reprojection RMS before and after
    rms_after_px: float
    evaluations: int
    time_ms: float


class _Problem:
    """Residuals of the window: parameters are, for each free keyframe, a rotation increment
    (rotation vector, right-multiplied) and its centre, then every point."""

    def __init__(self, T_wc: np.ndarray, X: np.ndarray, rays: np.ndarray, focal_px: float,
                 fixed: np.ndarray):
        self.R0 = T_wc[:, :3, :3].copy()
        self.c0 = T_wc[:, :3, 3].copy()
        self.W = len(T_wc)
        self.free = np.flatnonzero(~fixed)          # the keyframes that move
        self.nf = len(self.free)
        pi, kj = np.nonzero(np.isfinite(rays[..., 0]))
        self.pi, self.kj = pi, kj
        b = rays[pi, kj]
        self.target = b[:, :2] / b[:, 2:3]
        self.focal = focal_px
        self.X0 = X

    def pack(self) -> np.ndarray:
        return np.concatenate([np.zeros(6 * self.nf), self.X0.ravel()])

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = x[:6 * self.nf].reshape(-1, 6)
        R = self.R0.copy()
        c = self.c0.copy()
        if self.nf:
            R[self.free] = self.R0[self.free] @ Rotation.from_rotvec(p[:, :3]).as_matrix()
            c[self.free] = self.c0[self.free] + p[:, 3:]
        return R, c, x[6 * self.nf:].reshape(-1, 3)

    def linearise(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Residuals (n, 2) and their analytic derivatives per observation: (n, 2, 3) for its
        point, (n, 2, 6) for its keyframe (rotation increment to first order, then centre)."""
        R, c, X = self.unpack(x)
        Rk = R[self.kj]
        Xc = (np.swapaxes(Rk, 1, 2) @ (X[self.pi] - c[self.kj])[..., None])[..., 0]
        z = np.where(np.abs(Xc[:, 2]) > 1e-9, Xc[:, 2], 1e-9)
        res = self.focal * (Xc[:, :2] / z[:, None] - self.target)
        n = len(z)
        P = np.zeros((n, 2, 3))                                    # d projection / d Xc
        P[:, 0, 0] = P[:, 1, 1] = self.focal / z
        P[:, :, 2] = -self.focal * Xc[:, :2] / (z * z)[:, None]
        J_X = P @ np.swapaxes(Rk, 1, 2)                            # Xc = R^T (X - c)
        skew = np.zeros((n, 3, 3))                                 # d Xc / d increment = [Xc]x
        skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -Xc[:, 2], Xc[:, 1], -Xc[:, 0]
        skew[:, 1, 0], skew[:, 2, 0], skew[:, 2, 1] = Xc[:, 2], -Xc[:, 1], Xc[:, 0]
        return res, J_X, np.concatenate([P @ skew, -J_X], axis=2)


def _normal_step(prob: _Problem, res, J_X, J_P, w, damping: float) -> np.ndarray:
    """Levenberg-Marquardt step of the weighted problem by the Schur complement on the points
    (the poses' reduced system is 6 x free keyframes wide)."""
    npt, W, nf, free = len(prob.X0), prob.W, prob.nf, prob.free
    wJX, wJP = J_X * w[:, None, None], J_P * w[:, None, None]
    # each (point, keyframe) pair is seen at most once: dense grids, then sums along an axis
    grid = np.zeros((npt, W, 3, 3))
    grid[prob.pi, prob.kj] = np.swapaxes(wJX, 1, 2) @ J_X
    V = grid.sum(1)
    g = np.zeros((npt, W, 9))
    g[prob.pi, prob.kj, :3] = (np.swapaxes(wJX, 1, 2) @ res[..., None])[..., 0]
    g[prob.pi, prob.kj, 3:] = (np.swapaxes(wJP, 1, 2) @ res[..., None])[..., 0]
    gX, gP = g[..., :3].sum(1), g[..., 3:].sum(0)
    grid6 = np.zeros((npt, W, 6, 6))
    grid6[prob.pi, prob.kj] = np.swapaxes(wJP, 1, 2) @ J_P
    U = grid6.sum(0)
    F = np.zeros((npt, W, 6, 3))                                   # pose-point coupling
    F[prob.pi, prob.kj] = np.swapaxes(wJP, 1, 2) @ J_X
    V += damping * np.einsum("nii->ni", V)[..., None] * np.eye(3) + 1e-9 * np.eye(3)
    U += damping * np.einsum("nii->ni", U)[..., None] * np.eye(6)
    Vinv = np.linalg.inv(V)
    F = F[:, free].reshape(npt, 6 * nf, 3)                          # free keyframes only
    FV = F @ Vinv
    S = np.zeros((6 * nf, 6 * nf))
    for j in range(nf):
        S[6 * j:6 * j + 6, 6 * j:6 * j + 6] = U[free[j]]
    S -= np.tensordot(FV, F, axes=([0, 2], [0, 2]))
    rhs = gP[free].reshape(-1) - np.tensordot(FV, gX, axes=([0, 2], [0, 1]))
    dP = -np.linalg.solve(S + 1e-9 * np.eye(6 * nf), rhs) if nf else np.zeros(0)
    dX = -(Vinv @ (gX + np.tensordot(F, dP, axes=([1], [0])))[..., None])[..., 0]
    return np.concatenate([dP, dX.ravel()])


def _levenberg_marquardt(prob: _Problem, x: np.ndarray, lin: tuple, threshold_px: float,
                         bound_px: float, iterations: int, deadline: float):
    """Iterations of Huber-reweighted Levenberg-Marquardt, observations beyond ``bound_px``
    weighted 0. Returns (x, its linearisation, evaluations)."""
    cost, damping, n = _robust_cost(lin[0], threshold_px, bound_px), 1e-4, 0
    for _ in range(iterations):
        if time.perf_counter() > deadline:
            break
        w = _robust_weights(lin[0], threshold_px, bound_px)
        x_new = x + _normal_step(prob, *lin, w, damping)
        lin_new = prob.linearise(x_new)
        n += 1
        new_cost = _robust_cost(lin_new[0], threshold_px, bound_px)
        if new_cost < cost:
            done = cost - new_cost < 1e-4 * cost
            x, cost, lin, damping = x_new, new_cost, lin_new, max(damping / 3, 1e-7)
            if done:
                break
        else:
            damping *= 10.0
    return x, lin, n


OUTLIER_FACTOR = 3.0      # an observation this many Huber thresholds off is an outlier


def _robust_cost(res: np.ndarray, threshold_px: float, bound_px: float) -> float:
    """Huber cost of the reprojection errors, constant beyond ``bound_px``."""
    e = np.minimum(np.hypot(res[:, 0], res[:, 1]), bound_px)
    return float(np.sum(np.where(e <= threshold_px, 0.5 * e * e,
                                 threshold_px * (e - 0.5 * threshold_px))))


def _robust_weights(res: np.ndarray, threshold_px: float, bound_px: float) -> np.ndarray:
    """Huber weights of the observations (one per 2-D reprojection error), 0 beyond
    ``bound_px``."""
    e = np.hypot(res[:, 0], res[:, 1])
    w = np.minimum(1.0, threshold_px / np.maximum(e, 1e-12))
    return np.where(e < bound_px, w, 0.0)


def _rms_inliers(res: np.ndarray, threshold_px: float) -> float:
    e = np.hypot(res[0::2], res[1::2])
    e = e[e < OUTLIER_FACTOR * threshold_px]
    return float(np.sqrt(np.mean(e ** 2))) if len(e) else float("nan")


def bundle_adjust(T_wc: np.ndarray, X: np.ndarray, rays: np.ndarray, focal_px: float,
                  threshold_px: float = 2.0, max_iterations: int = 10,
                  max_ms: float = 30.0, fixed: np.ndarray | None = None
                  ) -> BundleResult | None:
    """Refine the window's keyframe poses ``T_wc`` (W, 4, 4) and the points ``X`` (N, 3; NaN:
    no point) seen along ``rays`` (N, W, 3). Points seen from two keyframes or more take part;
    the keyframes marked ``fixed`` (default: the oldest) stay put, and the oldest pair's
    distance is kept (the scale). Huber loss at ``threshold_px`` (pixels at ``focal_px``). None when there is too
    little to adjust."""
    t0 = time.perf_counter()
    T_wc = np.asarray(T_wc, float)
    W = len(T_wc)
    seen = np.isfinite(rays[..., 0]).sum(1) >= 2
    use = np.flatnonzero(seen & np.all(np.isfinite(X), axis=1))
    if W < 2 or len(use) < 10:
        return None
    if fixed is None:
        fixed = np.arange(W) == 0
    prob = _Problem(T_wc, X[use], rays[use], focal_px, np.asarray(fixed, bool))
    x0 = prob.pack()
    deadline = t0 + max_ms * 1e-3
    lin = prob.linearise(x0)
    r0 = lin[0].ravel()
    x, evals = x0, 1
    # Huber first; then observations beyond the outlier bound are dropped (ORB-SLAM's way)
    for bound in (np.inf, OUTLIER_FACTOR * threshold_px):
        x, lin, n = _levenberg_marquardt(prob, x, lin, threshold_px, bound,
                                         max(1, max_iterations // 2), deadline)
        evals += n
    res = lin[0]
    R, c, Xa = prob.unpack(x)
    r1 = res.ravel()
    ref = 1 if W > 2 else W - 1           # the scale: the oldest pair's baseline
    base = np.linalg.norm(prob.c0[ref] - prob.c0[0])
    now = np.linalg.norm(c[ref] - c[0])
    if prob.nf >= W - 1 and base > 1e-12 and now > 1e-12:   # one pose fixed: keep the scale
        s = base / now
        c = c[0] + s * (c - c[0])
        Xa = c[0] + s * (Xa - c[0])
    poses = T_wc.copy()
    poses[:, :3, :3], poses[:, :3, 3] = R, c
    err = np.hypot(r1[0::2], r1[1::2])
    bad_obs = err > OUTLIER_FACTOR * threshold_px
    bad_pt = np.zeros(len(use), bool)
    np.logical_or.at(bad_pt, prob.pi, bad_obs)
    points = np.full_like(np.asarray(X, float), np.nan)
    points[use] = Xa
    adjusted = np.zeros(len(X), bool)
    adjusted[use] = True
    rejected = np.zeros(len(X), bool)
    rejected[use[bad_pt]] = True
    return BundleResult(poses, points, adjusted, rejected, _rms_inliers(r0, threshold_px),
                        _rms_inliers(r1, threshold_px), evals,
                        (time.perf_counter() - t0) * 1e3)
