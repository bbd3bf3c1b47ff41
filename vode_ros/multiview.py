"""Two-view and multi-view geometry of a calibrated camera: viewing rays, the pure-rotation
model and the parallax it leaves, the essential matrix, PnP, triangulation (two views and many),
translation for a known rotation, robust scale ratios and the ground plane.

Plain functions on numpy arrays and OpenCV: pixels are ``(N, 2)`` ``(x, y)``, points ``(N, 3)``
in a camera's optical frame, ``K`` the 3x3 intrinsic matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vode_ros.geometry import make_transform, skew, transform_points


def normalise(px: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels to normalised image coordinates (the first two components of ``K^-1 [x y 1]``)."""
    px = np.asarray(px, np.float64)
    return np.stack([(px[:, 0] - K[0, 2]) / K[0, 0], (px[:, 1] - K[1, 2]) / K[1, 1]], 1)


def bearings(px: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Unit viewing rays of pixels in the camera optical frame."""
    x = normalise(px, K)
    b = np.c_[x, np.ones(len(x))]
    return b / np.linalg.norm(b, axis=1, keepdims=True)


def project(X: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels of points (N, 3) in the camera optical frame."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([K[0, 0] * X[:, 0] / X[:, 2] + K[0, 2],
                         K[1, 1] * X[:, 1] / X[:, 2] + K[1, 2]], 1)


def kabsch_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation ``R`` minimising ``sum |b_i - R a_i|^2`` (Kabsch; no translation or scale);
    ``a``, ``b`` are (..., N, 3), batched over leading axes."""
    H = np.swapaxes(a, -1, -2) @ b
    U, _, Vt = np.linalg.svd(H)
    V, Ut = np.swapaxes(Vt, -1, -2), np.swapaxes(U, -1, -2)
    D = np.zeros(H.shape)
    D[..., 0, 0] = 1.0
    D[..., 1, 1] = 1.0
    D[..., 2, 2] = np.sign(np.linalg.det(V @ Ut))
    return V @ D @ Ut


def rotation_only(b0: np.ndarray, b1: np.ndarray, threshold_rad: float, iterations: int = 32,
                  seed: int = 0) -> tuple[np.ndarray | None, np.ndarray]:
    """Rotation ``R_1_0`` (``b1 ~ R b0``) of the pure-rotation model fitted to unit rays: RANSAC
    over 2-ray samples, refined on the inliers. Returns (R or None, inlier mask)."""
    n = len(b0)
    if n < 3:
        return None, np.zeros(n, bool)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, (iterations, 2))
    Rs = kabsch_rotation(b0[idx], b1[idx])                  # (iterations, 3, 3)
    cos = np.sum((Rs @ b0.T) * b1.T, axis=1)                # (iterations, n): b1 . R b0
    cos_thr = np.cos(threshold_rad)
    inl = cos[int(np.argmax((cos > cos_thr).sum(1)))] > cos_thr
    for _ in range(2):
        if inl.sum() < 3:
            return None, inl
        R = kabsch_rotation(b0[inl], b1[inl])
        inl = np.sum((b0 @ R.T) * b1, 1) > cos_thr
    return R, inl


def rotation_parallax(px0: np.ndarray, px1: np.ndarray, K: np.ndarray, threshold_rad: float,
                      quantile: float = 0.75) -> tuple[np.ndarray | None, np.ndarray, float]:
    """The pure-rotation model (``rotation_only``) fitted to matched pixels, and the parallax it
    leaves: the ``quantile`` of the image motion it does not explain (pixels; what translation
    shows). Returns (R or None, inlier mask, parallax; NaN without a model)."""
    b0 = bearings(px0, K)
    R, inl = rotation_only(b0, bearings(px1, K), threshold_rad)
    if R is None:
        return None, inl, float("nan")
    residual = np.linalg.norm(px1 - project(b0 @ R.T, K), axis=1)
    return R, inl, float(np.quantile(residual, quantile))


@dataclass
class TwoView:
    """Relative pose from the essential matrix: ``X1 = R X0 + t`` with ``|t| = 1``."""

    R: np.ndarray
    t: np.ndarray
    inliers: np.ndarray        # bool (N,): essential-matrix inliers passing the cheirality check
    n_inliers: int
    X0: np.ndarray | None = None      # the inliers triangulated (``triangulate``): points in
    z1: np.ndarray | None = None      # camera 0, depths in camera 1, parallax angles (degrees)
    angle: np.ndarray | None = None


ESSENTIAL_METHODS = {"accurate": cv2.USAC_ACCURATE, "magsac": cv2.USAC_MAGSAC,
                     "ransac": cv2.RANSAC}
CHEIRALITY_SAMPLE = 64         # inliers recoverPose judges the four decompositions on


def essential_pose(p0: np.ndarray, p1: np.ndarray, K: np.ndarray, threshold_px: float = 1.0,
                   prob: float = 0.999, method: str = "accurate") -> TwoView | None:
    """Essential matrix by a robust estimator (``method``: OpenCV USAC_ACCURATE, i.e. USAC with
    graph-cut local optimisation; USAC MAGSAC++; or classic RANSAC on the five-point solver),
    then the rotation and unit translation with the cheirality check. None when no model is
    found.

    ``recoverPose`` picks the decomposition of E on at most ``CHEIRALITY_SAMPLE`` inliers
    spread through the list (its cost grows with every point it is given, masked or not; a few
    dozen points settle which of the four solutions is in front of both cameras); every inlier
    is then triangulated with that pose and kept only in front of both cameras."""
    if len(p0) < 8:
        return None
    a, b = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    try:
        E, mask = cv2.findEssentialMat(a, b, K, method=ESSENTIAL_METHODS[method], prob=prob,
                                       threshold=threshold_px, maxIters=1000)
    except cv2.error:
        return None
    if E is None or mask is None or E.shape != (3, 3) or not np.all(np.isfinite(E)):
        return None
    idx = np.flatnonzero(mask.reshape(-1) > 0)
    if len(idx) < 5:
        return None
    pick = idx[np.linspace(0, len(idx) - 1, min(len(idx), CHEIRALITY_SAMPLE)).astype(int)]
    try:
        _, R, t, _ = cv2.recoverPose(E, a[pick], b[pick], K)
    except cv2.error:
        return None
    t = t.reshape(3)
    if not np.isfinite(t).all() or np.linalg.norm(t) < 1e-9:
        return None
    t = t / np.linalg.norm(t)
    X0, z1, ang = triangulate(R, t, normalise(a[idx], K), normalise(b[idx], K))
    front = np.isfinite(X0).all(1) & (X0[:, 2] > 0) & (z1 > 0)
    inl = np.zeros(len(a), bool)
    inl[idx[front]] = True
    return TwoView(R, t, inl, int(inl.sum()), X0[front], z1[front], ang[front])


def triangulate(R: np.ndarray, t: np.ndarray, x0: np.ndarray, x1: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points seen at normalised coordinates ``x0`` (camera 0) and ``x1`` (camera 1, with
    ``X1 = R X0 + t``): (points in camera 0 (N, 3), depth in camera 1 (N,), parallax angle in
    degrees (N,)). Linear triangulation (DLT)."""
    t = np.asarray(t, float).reshape(3)
    P0 = np.hstack([np.eye(3), np.zeros((3, 1))])
    P1 = np.hstack([R, t.reshape(3, 1)])
    Xh = cv2.triangulatePoints(P0, P1, np.asarray(x0, np.float64).T, np.asarray(x1, np.float64).T)
    with np.errstate(divide="ignore", invalid="ignore"):
        X = (Xh[:3] / Xh[3]).T
        r1 = X - (-R.T @ t)                               # ray from camera 1's centre
        cosang = np.sum(X * r1, 1) / (np.linalg.norm(X, axis=1) * np.linalg.norm(r1, axis=1))
    angle = np.degrees(np.arccos(np.clip(cosang, -1.0, 1.0)))
    return X, (X @ R.T + t)[:, 2], angle


def triangulate_multiview(R_wc: np.ndarray, c_w: np.ndarray, bearing: np.ndarray,
                          sigma_rad: float, iterations: int = 1
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Points from every keyframe that saw them, the poses held: least squares on
    ``[b]x (X - c) = 0`` (each point on each of its rays), weighted to angular errors and
    Huber-reweighted (``sigma_rad``).

    ``R_wc`` (W, 3, 3), ``c_w`` (W, 3): keyframe rotations and centres; ``bearing`` (N, W, 3):
    unit rays in each keyframe's camera frame, NaN where not seen. Returns (points (N, 3), NaN
    where fewer than two rays, behind a camera or inconsistent; widest parallax angle in
    degrees (N,))."""
    N = bearing.shape[0]
    X = np.full((N, 3), np.nan)
    ang = np.zeros(N)
    valid = np.isfinite(bearing[..., 0])
    use = valid.sum(1) >= 2
    if not use.any():
        return X, ang
    v = valid[use].astype(float)
    b = np.where(valid[..., None], bearing, 0.0)[use]                    # (n, W, 3)
    bw = (R_wc[None] @ b[..., None])[..., 0]                            # rays in the world
    bw /= np.maximum(np.linalg.norm(bw, axis=2, keepdims=True), 1e-12)
    # sum_k w_k [b_k]x^T [b_k]x (X - c_k) = 0 with [b]x^T [b]x = I - b b^T (unit b):
    # A = sum_k w_k I - sum_k w_k b_k b_k^T,  rhs = sum_k w_k (c_k - b_k (b_k . c_k))
    bc = np.sum(bw * c_w[None], axis=2)                                 # (n, W)
    eye = np.eye(3)
    w = v.copy()
    rho = np.ones_like(v)
    for _ in range(iterations + 1):
        q = w / rho ** 2                                                # (n, W)
        qb = bw * q[..., None]
        A = q.sum(1)[:, None, None] * eye - np.swapaxes(qb, 1, 2) @ bw + 1e-12 * eye
        rhs = q @ c_w - np.sum(qb * bc[..., None], axis=1)
        Xu = np.linalg.solve(A, rhs[..., None])[..., 0]
        d = Xu[:, None, :] - c_w[None]
        rho = np.maximum(np.linalg.norm(d, axis=2), 1e-12)
        along = np.sum(d * bw, axis=2)
        res = np.sqrt(np.maximum(1.0 - (along / rho) ** 2, 0.0))          # sin of the ray error
        w = v * np.minimum(1.0, 2.0 * sigma_rad / np.maximum(res, 1e-12))
    dn = d / rho[..., None]
    cosm = dn @ np.swapaxes(dn, 1, 2)                                   # (n, W, W)
    cosm = np.where(v[:, :, None] * v[:, None, :] > 0, cosm, 1.0)
    front = np.all((along > 0) | (v == 0), 1)
    ok = front & (np.where(v > 0, res, 0.0).max(1) < 4.0 * sigma_rad)
    rows = np.flatnonzero(use)
    X[rows[ok]] = Xu[ok]
    ang[rows] = np.degrees(np.arccos(np.clip(cosm.min((1, 2)), -1.0, 1.0)))
    return X, ang


def pnp_pose(X: np.ndarray, px: np.ndarray, K: np.ndarray, threshold_px: float = 2.0,
             iterations: int = 100) -> tuple[np.ndarray | None, np.ndarray]:
    """Pose ``T_cam_obj`` (``x = R X + t``) from 3D points ``X`` and their pixels ``px``:
    EPnP in RANSAC, then Levenberg-Marquardt on the inliers. Returns (T or None, inliers)."""
    n = len(X)
    none = np.zeros(n, bool)
    if n < 6:
        return None, none
    obj = np.ascontiguousarray(X, np.float64).reshape(-1, 1, 3)
    img = np.ascontiguousarray(px, np.float64).reshape(-1, 1, 2)
    try:
        ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, K, None, iterationsCount=iterations,
                                                 reprojectionError=threshold_px,
                                                 confidence=0.99, flags=cv2.SOLVEPNP_EPNP)
        if not ok or inl is None or len(inl) < 6:
            return None, none
        mask = np.zeros(n, bool)
        mask[inl.reshape(-1)] = True
        rvec, tvec = cv2.solvePnPRefineLM(obj[mask], img[mask], K, None, rvec, tvec)
    except cv2.error:
        return None, none
    R = cv2.Rodrigues(rvec)[0]
    T = make_transform(R, tvec.reshape(3))
    if not np.all(np.isfinite(T)):
        return None, none
    Xc = transform_points(T, obj.reshape(-1, 3))
    err = np.linalg.norm(project(Xc, K) - img.reshape(-1, 2), axis=1)
    return T, (err < threshold_px) & (Xc[:, 2] > 0)


def _translation_fit(R: np.ndarray, X: np.ndarray, x: np.ndarray, huber: float,
                     iterations: int):
    """The Huber-reweighted fit of ``translation_given_rotation``: (t, normal matrix, weights,
    image errors), or None where it fails."""
    n = len(X)
    if n < 3:
        return None
    RX = X @ R.T
    u, v = x[:, 0], x[:, 1]
    A = np.zeros((2 * n, 3))
    A[0::2] = np.c_[np.ones(n), np.zeros(n), -u]
    A[1::2] = np.c_[np.zeros(n), np.ones(n), -v]
    b = np.empty(2 * n)
    b[0::2] = u * RX[:, 2] - RX[:, 0]
    b[1::2] = v * RX[:, 2] - RX[:, 1]
    z = np.maximum(RX[:, 2], 1e-9)
    w = np.ones(n)
    t = N = e = None
    for _ in range(iterations):
        wr = np.repeat(w / z ** 2, 2)                          # row weights (squared)
        N = A.T @ (A * wr[:, None])
        if abs(np.linalg.det(N)) < 1e-300:
            return None
        t = np.linalg.solve(N, A.T @ (b * wr))                # weighted normal equations
        z = np.maximum(RX[:, 2] + t[2], 1e-9)
        e = np.linalg.norm((A @ t - b).reshape(n, 2) / z[:, None], axis=1)
        w = np.minimum(1.0, huber / np.maximum(e, 1e-12))
    return t, N, w, e


def translation_given_rotation(R: np.ndarray, X: np.ndarray, x: np.ndarray, huber: float,
                               iterations: int = 4) -> np.ndarray | None:
    """Translation ``t`` of ``x ~ R X + t`` for a known rotation, points ``X`` (N, 3) and their
    normalised image coordinates ``x`` (N, 2): linear least squares on ``x × (R X + t) = 0``,
    rows divided by depth so that residuals are image errors, Huber-reweighted (``huber`` in
    normalised units). None where it fails."""
    fit = _translation_fit(R, X, x, huber, iterations)
    return None if fit is None else fit[0]


def translation_with_covariance(R: np.ndarray, X: np.ndarray, x: np.ndarray, huber: float,
                                iterations: int = 4
                                ) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """``translation_given_rotation`` and the translation's 3x3 covariance, from the normal
    equations and the weighted residuals' variance; (None, None) where it fails."""
    fit = _translation_fit(R, X, x, huber, iterations)
    if fit is None:
        return None, None
    t, N, w, e = fit
    sigma2 = float(np.sum(w * e ** 2)) / max(2 * len(X) - 3, 1)   # per image coordinate
    return t, sigma2 * np.linalg.inv(N)


def median_scale(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Robust ratio ``s`` with ``reference ~ s * estimate``: the median of the ratios (NaN when
    no pair is positive and finite)."""
    ok = np.isfinite(reference) & np.isfinite(estimate) & (reference > 0) & (estimate > 0)
    if not ok.any():
        return float("nan")
    return float(np.exp(np.median(np.log(reference[ok]) - np.log(estimate[ok]))))


def fit_ground_plane(X: np.ndarray, threshold: float = 0.03, iterations: int = 100,
                     max_tilt_deg: float = 25.0, min_below_deg: float = 5.0, seed: int = 0
                     ) -> tuple[float, np.ndarray] | None:
    """The ground plane under the camera from points in the camera optical frame (y down):
    RANSAC over the points seen at least ``min_below_deg`` below the optical axis, for a plane
    whose normal is within ``max_tilt_deg`` of the camera's y axis, refined by least squares on
    its inliers. ``threshold`` is relative to those points' median distance. Returns (height of
    the camera above the plane, unit normal) or None."""
    X = np.asarray(X, float)
    ok = np.isfinite(X).all(1) & (X[:, 2] > 0)
    below = X[ok & (X[:, 1] > np.tan(np.radians(min_below_deg)) * X[:, 2])]
    if len(below) < 10:
        return None
    tol = threshold * float(np.median(np.linalg.norm(below, axis=1)))
    rng = np.random.default_rng(seed)
    cos_tilt = np.cos(np.radians(max_tilt_deg))
    best, best_n = None, 0
    for _ in range(iterations):
        a, b, c = below[rng.choice(len(below), 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-12:
            continue
        n = n / norm * (1.0 if n[1] >= 0 else -1.0)
        if n[1] < cos_tilt:
            continue
        count = int((np.abs((below - a) @ n) < tol).sum())
        if count > best_n:
            best, best_n = (n, a), count
    if best is None or best_n < max(8, len(below) // 4):
        return None
    n, a = best
    inl = below[np.abs((below - a) @ n) < tol]
    centre = inl.mean(0)
    n = np.linalg.svd(inl - centre)[2][-1]
    n = n if n[1] > 0 else -n
    height = float(n @ centre)               # distance from the camera centre to the plane
    return (height, n) if height > 0 and n[1] >= cos_tilt else None


def refine_pose(T_cur_w: np.ndarray, Xw: np.ndarray, px_map: np.ndarray, T_kf_w: np.ndarray,
                px_kf: np.ndarray, px_cur: np.ndarray, K: np.ndarray, huber_px: float,
                epipolar_weight: float = 1.0, max_evaluations: int = 20,
                epipolar_gate_px: float | None = None) -> np.ndarray | None:
    """One frame's pose refined on two kinds of evidence at once: the reprojection of the map
    points ``Xw`` it sees at ``px_map``, which fix the position in the map's scale, and the
    Sampson (first-order epipolar) distance of the tracks followed from the keyframe
    (``px_kf`` -> ``px_cur``), which constrain the rotation and the direction of motion without
    needing a map point. Robust (Huber at ``huber_px`` pixels), Levenberg-Marquardt-like trust
    region from ``T_cur_w`` (scipy ``least_squares``; no library refines a pose on both terms).
    Residuals beyond 3 kernel widths (epipolar: beyond ``epipolar_gate_px``, by default the
    same) at the start pose, then at the first solution, are left out: the epipolar term of a
    short baseline is weak, and a wrong track a few pixels off its line would pull it.
    ``epipolar_weight`` 0 leaves the epipolar term out and refines on the map points alone, by
    OpenCV (``_refine_on_map``).
    Returns the refined ``T_cur_w`` or None where it did not converge to a finite pose."""
    if epipolar_weight <= 0:      # the map's reprojection alone: OpenCV's Levenberg-Marquardt
        return _refine_on_map(T_cur_w, Xw, px_map, K, huber_px, max_evaluations)
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    R0, t0 = T_cur_w[:3, :3], T_cur_w[:3, 3]
    Xw = np.asarray(Xw, np.float64)
    u = np.asarray(px_map, np.float64)
    Kinv = np.linalg.inv(K)
    h0 = np.c_[np.asarray(px_kf, np.float64), np.ones(len(px_kf))]
    h1 = np.c_[np.asarray(px_cur, np.float64), np.ones(len(px_cur))]
    R_kf, t_kf = T_kf_w[:3, :3], T_kf_w[:3, 3]
    w = float(np.sqrt(epipolar_weight))

    def pose(p):
        R = Rotation.from_rotvec(p[:3]).as_matrix() @ R0
        return R, t0 + p[3:]

    def residuals(p):
        R, t = pose(p)
        Xc = Xw @ R.T + t
        z = np.maximum(Xc[:, 2], 1e-6)
        r_map = np.stack([K[0, 0] * Xc[:, 0] / z + K[0, 2] - u[:, 0],
                          K[1, 1] * Xc[:, 1] / z + K[1, 2] - u[:, 1]], 1).ravel()
        if not len(h0):
            return r_map
        R_ck = R @ R_kf.T                         # keyframe -> current
        t_ck = t - R_ck @ t_kf
        n = np.linalg.norm(t_ck)
        if n < 1e-12:
            return np.r_[r_map, np.zeros(len(h0))]
        F = Kinv.T @ skew(t_ck / n) @ R_ck @ Kinv
        Fx0 = h0 @ F.T
        Ftx1 = h1 @ F
        num = np.sum(h1 * Fx0, 1)
        den = np.sqrt(Fx0[:, 0] ** 2 + Fx0[:, 1] ** 2 + Ftx1[:, 0] ** 2 + Ftx1[:, 1] ** 2)
        return np.r_[r_map, w * num / np.maximum(den, 1e-12)]

    def gate(x):                  # what lies within 3 x the kernel's width at ``x``
        r = np.abs(residuals(x))
        if not np.all(np.isfinite(r)):
            return None
        m = 2 * len(u)
        r[:m] = np.repeat(np.hypot(r[:m:2], r[1:m:2]), 2)
        keep = r <= 3.0 * huber_px
        if epipolar_gate_px is not None:
            keep[m:] = r[m:] <= epipolar_gate_px * w
        return keep

    x = np.zeros(6)
    for _ in range(2):            # from the start pose's inliers, then the first solution's
        keep = gate(x)
        if keep is None or keep[:2 * len(u)].sum() < 12:
            return None
        try:
            sol = least_squares(lambda p, k=keep: residuals(p)[k], x, loss="huber",
                                f_scale=huber_px, method="trf", max_nfev=max_evaluations,
                                x_scale="jac")
        except (ValueError, np.linalg.LinAlgError):
            return None
        if not np.all(np.isfinite(sol.x)):
            return None
        x = sol.x
    R, t = pose(x)
    return make_transform(R, t)


def _refine_on_map(T_cur_w: np.ndarray, Xw: np.ndarray, px: np.ndarray, K: np.ndarray,
                   gate_px: float, max_iterations: int) -> np.ndarray | None:
    """``refine_pose`` without the epipolar term: the reprojection of the map points within
    3 x ``gate_px`` of the start pose, then within 1.5 x of the first solution, minimised by
    OpenCV's ``solvePnPRefineLM`` (at most ``max_iterations`` each time; a hard gate instead of
    the Huber kernel, ten times faster than ``least_squares`` with it). None with fewer than 6
    such points or a non-finite result."""
    X = np.ascontiguousarray(Xw, np.float64).reshape(-1, 3)
    u = np.ascontiguousarray(px, np.float64).reshape(-1, 2)
    rvec = cv2.Rodrigues(np.ascontiguousarray(T_cur_w[:3, :3], np.float64))[0]
    tvec = np.asarray(T_cur_w[:3, 3], np.float64).reshape(3, 1).copy()
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, max(int(max_iterations), 1), 1e-10)
    for k in (3.0, 1.5):          # from the start pose's inliers, then the first solution's
        proj = cv2.projectPoints(X, rvec, tvec, K, None)[0].reshape(-1, 2)
        Xc = X @ cv2.Rodrigues(rvec)[0].T + tvec.ravel()
        keep = (Xc[:, 2] > 0) & (np.linalg.norm(proj - u, axis=1) <= k * gate_px)
        if keep.sum() < 6:
            return None
        try:
            got = cv2.solvePnPRefineLM(X[keep], u[keep], K, None, rvec, tvec, crit)
        except cv2.error:
            return None
        rvec, tvec = np.asarray(got[0], np.float64), np.asarray(got[1], np.float64)
        if not (np.all(np.isfinite(rvec)) and np.all(np.isfinite(tvec))):
            return None
    return make_transform(cv2.Rodrigues(rvec)[0], tvec.ravel())
