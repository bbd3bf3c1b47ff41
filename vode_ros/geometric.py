"""Geometric and hybrid pose: two-view geometry on tracked features, scale from the map or from
learned depth (the TrianFlow / DF-VO recipe on a keyframe tracker).

The geometry, one small function per idea:

- ``rotation_only``: the rotation of a camera that only rotated, fitted to viewing rays (so the
  translation shows as residual parallax instead of being absorbed, as a homography would);
  ``rotation_parallax``: that parallax, in pixels;
- ``essential_pose``: essential matrix with a robust estimator (OpenCV USAC, graph-cut local
  optimisation by default; MAGSAC++ or RANSAC selectable), then rotation and the *direction* of
  translation with the cheirality check (``recoverPose``);
- ``triangulate``: points from two views of known relative pose, with their parallax angles;
- ``triangulate_multiview``: points from all the keyframes that saw them (poses held);
- ``pnp_pose``: pose from 3D points and their pixels (EPnP in RANSAC, then Levenberg-Marquardt);
- ``translation_given_rotation``: translation from 3D points and pixels when the rotation is known
  (linear least squares);
- ``median_scale``: a robust ratio between two sets of depths;
- ``fit_ground_plane``: the ground plane under the camera (RANSAC), for scale from a known camera
  height.

``GeometricPose`` keeps a keyframe, features tracked from it (``vode_ros.flow``) and, for the
features it could triangulate, their 3D positions (the *map*, in the backend's own world frame).
Each frame:

1. features are tracked from the last frame (pyramidal LK from a constant-velocity prediction,
   forward-backward checked);
2. when the features have not moved from the keyframe (median displacement below
   ``pose.static_parallax_px``) the camera is static: identity;
3. the rotation-only model gives the rotation-compensated *parallax* (a high quantile over the
   features: near features show translation first);
4. with parallax above ``pose.essential_parallax_px`` the pose comes from the essential matrix
   keyframe -> current, its translation scaled (below); with less parallax from PnP on the map
   (better conditioned there); with neither a map nor parallax (start, pure rotation) from the
   rotation-only model, the position held: pure rotation never makes translation;
5. with parallax above ``pose.keyframe_parallax_px`` (or too few tracks left) the frame becomes a
   keyframe: every track seen by at least two of the last ``pose.window_keyframes`` keyframes is
   triangulated from all of them, features are topped up, spread over the image;
6. the step returned is the motion since the previous frame the odometry accumulated.

Scale of an essential-matrix translation (``pose.scale_source``):

- ``triangulation`` (monocular scale propagation, needs no learned depth): the features the
  new two-view triangulation shares with the map fix it; two estimates of the same ratio are
  combined by their geometric mean: the median ratio of the map's depths to the new triangulated
  depths, and the length along the essential direction of the translation that best places the
  map points on their current pixels (``translation_given_rotation``). With no shared points (a
  new start) the new points keep the previous map's median depth, and the first map takes the
  median learned depth at its first keyframe: translations come in the depth model's units.
  Relative scale, consistent along the trajectory up to the slow drift of monocular propagation;
- ``depth``: the median ratio of the learned depth at the keyframe to the triangulated depths
  (DF-VO), so translation has the depth's scale, frame after frame (metres for a metric model);
  new features also get map points lifted with the learned depth, for PnP;
- ``ground``: ``pose.camera_height_m`` over the height of a ground plane fitted to the
  triangulated points (metres); where no ground is found, as ``triangulation``;
- ``auto``: ``depth`` when the depth model's metadata says it was trained (``vode.train_steps``
  > 0 or no such key), else ``triangulation``.

``pose.fixed_scale`` > 0 multiplies translations by a known factor (metres per unit).

``HybridPose`` runs ``GeometricPose`` and, where geometry cannot answer (too few tracked features,
no rotation model, a textureless or dark frame), the pose network; the network's translation is
brought to the map's units by the recent geometric speed. The fallback and its reason show in
``PoseResult.backend`` (``network (fallback: <reason>)``, so in diagnostics and in the backend
counts of `vode process`) and ``reason``, and the step's covariance is inflated. Where the pose
model was trained (``pose.network_guess``), the network's rotation also predicts where the
features move, as LK's initial flow. Low parallax and pure rotation are no reason to fall back:
geometry answers them exactly (rotation, no translation), better than a network can.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from vode_ros.camera import Camera
from vode_ros.errors import ModelOutputError
from vode_ros.flow import (detect_features, rotation_flow_guess, select_correspondences,
                           track_dis, track_lk, working_grey)
from vode_ros.geometry import invert, make_transform
from vode_ros.pose import FrameData, PoseResult

CACHE_KEY = "vode.geometric"

# why geometry gives up on a frame (number-free: they name fallbacks in backend counts)
TOO_FEW_FEATURES = "too few tracked features"
NO_ROTATION = "no motion model fits the tracks"
TEXTURELESS = "textureless or dark frame"


# -- small geometry ------------------------------------------------------------------------------
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


def transform_points(T: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``T`` applied to points (N, 3)."""
    return X @ T[:3, :3].T + T[:3, 3]


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


def translation_given_rotation(R: np.ndarray, X: np.ndarray, x: np.ndarray, huber: float,
                               iterations: int = 4) -> np.ndarray | None:
    """Translation ``t`` of ``x ~ R X + t`` for a known rotation, points ``X`` (N, 3) and their
    normalised image coordinates ``x`` (N, 2): linear least squares on ``x × (R X + t) = 0``,
    rows divided by depth so that residuals are image errors, Huber-reweighted (``huber`` in
    normalised units)."""
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
    t = None
    for _ in range(iterations):
        wr = np.repeat(w / z ** 2, 2)                          # row weights (squared)
        N = A.T @ (A * wr[:, None])
        if abs(np.linalg.det(N)) < 1e-300:
            return None
        t = np.linalg.solve(N, A.T @ (b * wr))                # weighted normal equations
        z = np.maximum(RX[:, 2] + t[2], 1e-9)
        e = np.linalg.norm((A @ t - b).reshape(n, 2) / z[:, None], axis=1)
        w = np.minimum(1.0, huber / np.maximum(e, 1e-12))
    return t


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


def sample_depth(depth: np.ndarray, px: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Learned depth (at the depth network's input size) at pixels ``px`` of an image of
    ``size`` = (w, h), nearest sample."""
    dh, dw = depth.shape[:2]
    w, h = size
    x = np.clip(np.round((px[:, 0] + 0.5) * dw / w - 0.5).astype(int), 0, dw - 1)
    y = np.clip(np.round((px[:, 1] + 0.5) * dh / h - 0.5).astype(int), 0, dh - 1)
    return depth[y, x].astype(np.float64)


def model_is_trained(spec) -> bool:
    """Whether a model's contract metadata says it was trained: ``vode.train_steps`` > 0, or no
    such key (a third-party export) unless ``vode.trained_on`` says 'untrained'."""
    extra = getattr(spec, "extra", None) or {}
    steps = extra.get("vode.train_steps")
    if steps is None:
        return not str(extra.get("vode.trained_on", "")).startswith("untrained")
    try:
        return int(float(steps)) > 0
    except ValueError:
        return False


# -- the backend's bookkeeping -------------------------------------------------------------------
@dataclass
class _View:
    """What the backend keeps of one frame (in ``FrameData.cache``)."""

    grey: np.ndarray
    camera: Camera
    world: np.ndarray | None = None          # pose of the frame in the backend's world


@dataclass
class _Keyframe:
    stamp_ns: int
    world: np.ndarray                        # T_world_keyframe
    size: tuple                              # working image (w, h)
    depth: np.ndarray | None                 # learned depth of the keyframe (network size)


@dataclass
class Step:
    """What one frame did inside GeometricPose (diagnostics and tests)."""

    method: str = ""              # static | rotation | pnp | essential
    keyframe: bool = False
    tracks: int = 0
    inliers: int = 0
    inlier_ratio: float = 0.0
    parallax_px: float = 0.0
    scale_method: str = ""
    note: str = ""


class GeometryFailure(Exception):
    """Geometry cannot answer for this frame; ``category`` is a short, number-free reason."""

    def __init__(self, category: str, detail: str = ""):
        super().__init__(f"{category} ({detail})" if detail else category)
        self.category = category


_TRACK_ARRAYS = ("px", "px_kf", "vel", "Xw", "obs")
GROUND_GAIN = 0.1             # fraction (log scale) of the ground-height correction per keyframe


# -- the backends --------------------------------------------------------------------------------
class GeometricPose:
    """Keyframe-based monocular geometry (see the module docstring)."""

    name = "geometric"

    def __init__(self, pose_cfg, flow_cfg, depth_spec=None, model=None):
        self.cfg = pose_cfg
        self.flow = flow_cfg
        self.depth_metric = bool(getattr(depth_spec, "metric", False))
        self.depth_trained = depth_spec is not None and model_is_trained(depth_spec)
        # the pose network is not used by geometry; it is kept so that what reports the pose
        # model (node diagnostics, run.json) works whatever the backend
        self.model = model
        src = pose_cfg.scale_source
        if src == "auto":
            src = "depth" if self.depth_trained else "triangulation"
        if src == "ground" and pose_cfg.camera_height_m <= 0:
            raise ValueError("pose.scale_source 'ground' needs pose.camera_height_m > 0 (the "
                             "camera's height above the ground, metres)")
        self.scale_source = src
        self.reset()

    @property
    def metric(self) -> bool:
        """Whether translations come out in metres."""
        if self.cfg.fixed_scale > 0 or self.scale_source == "ground":
            return True
        return self.scale_source == "depth" and self.depth_metric

    def reset(self) -> None:
        self.kf: _Keyframe | None = None
        self.K: np.ndarray | None = None
        self.last: _View | None = None
        self.last_stamp: int | None = None
        self.T_w_last = np.eye(4)
        self.win: list = []                       # keyframe poses of the window, oldest first
        self._set_tracks(np.zeros((0, 2), np.float32))
        self.map_median_depth: float | None = None
        self.speeds: deque = deque(maxlen=10)     # recent geometric speeds (units per second)
        self.prior_R: np.ndarray | None = None    # R_cur_prev prior for the next frame (hybrid)
        self.ground_ratio: float | None = None    # known / fitted camera height (ground scale)
        self.ground_fits = 0
        self.last_step = Step()

    # -- tracks: parallel arrays, one row per feature ---------------------------------------------
    def _set_tracks(self, pts: np.ndarray) -> None:
        n = len(pts)
        self.px = pts.astype(np.float32).copy()                  # in the last frame
        self.px_kf = self.px.copy()                              # in the keyframe
        self.vel = np.full((n, 2), np.nan, np.float32)           # last image motion (NaN: new)
        self.Xw = np.full((n, 3), np.nan)                        # map point, NaN: none
        self.obs = np.full((n, max(self.cfg.window_keyframes, 2), 3), np.nan)  # rays per kf
        if n and self.win:
            self.obs[:, len(self.win) - 1] = bearings(self.px, self.K)

    def _append_tracks(self, pts: np.ndarray) -> None:
        old = {k: getattr(self, k) for k in _TRACK_ARRAYS}
        self._set_tracks(pts)
        for k in _TRACK_ARRAYS:
            setattr(self, k, np.concatenate([old[k], getattr(self, k)]))

    def _keep(self, mask: np.ndarray) -> None:
        for k in _TRACK_ARRAYS:
            setattr(self, k, getattr(self, k)[mask])

    # -- per-frame views -------------------------------------------------------------------------
    def view(self, frame: FrameData) -> _View:
        v = frame.cache.get(CACHE_KEY)
        if v is None:
            grey, cam = working_grey(frame.image, frame.camera, self.flow.max_pixels)
            v = _View(grey, cam)
            frame.cache[CACHE_KEY] = v
        return v

    # -- the estimate ----------------------------------------------------------------------------
    def estimate(self, prev: FrameData, cur: FrameData) -> PoseResult:
        t0 = time.perf_counter()
        vp, vc = self.view(prev), self.view(cur)
        timings = {"views": (time.perf_counter() - t0) * 1e3}
        try:
            T_w_cur, step = self._track(prev, cur, vp, vc, timings)
        except GeometryFailure as exc:
            self.prior_R = None
            self._restart(cur, vc, vp.world if vp.world is not None else np.eye(4))
            self.last_step = Step(note=exc.category)
            timings["total"] = (time.perf_counter() - t0) * 1e3
            return PoseResult(np.eye(4), ok=False, reason=f"geometric pose: {exc}",
                              sigma_scale=self.cfg.fallback_sigma_scale, backend=self.name,
                              timings_ms=timings)
        vc.world = T_w_cur
        T = invert(vp.world) @ T_w_cur
        dt = (cur.stamp_ns - prev.stamp_ns) * 1e-9
        if dt > 0:
            self.speeds.append(float(np.linalg.norm(T[:3, 3])) / dt)
        if self.cfg.fixed_scale > 0:
            T[:3, 3] *= self.cfg.fixed_scale
        self.last_step = step
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return PoseResult(T, ok=True, reason="", sigma_scale=self._sigma(step),
                          backend=f"{self.name} ({step.method})", timings_ms=timings)

    def _sigma(self, step: Step) -> float:
        """Standard-deviation factor of the step from its inlier statistics: 1 at
        ``pose.covariance_reference_inliers`` inliers, growing as 1/sqrt(inliers) and with the
        outlier fraction; three times larger where translation is unobserved (rotation only)."""
        if step.method == "static":
            return 0.5
        n = max(step.inliers, 1)
        s = np.sqrt(self.cfg.covariance_reference_inliers / n) / max(step.inlier_ratio, 0.2)
        if step.method == "rotation":
            s *= 3.0
        return float(np.clip(s, 0.3, self.cfg.fallback_sigma_scale))

    def rebase(self, prev: FrameData, cur: FrameData, T_prev_cur: np.ndarray) -> None:
        """Another estimator answered for ``cur`` after a geometric failure (which restarted the
        tracker at ``cur``): place ``cur`` at ``prev``'s pose composed with ``T_prev_cur``."""
        vp, vc = self.view(prev), self.view(cur)
        vc.world = (vp.world if vp.world is not None else np.eye(4)) @ T_prev_cur
        if self.kf is not None and self.kf.stamp_ns == cur.stamp_ns:
            self.kf.world = vc.world.copy()
            self.win = [vc.world.copy()]
            self.T_w_last = vc.world.copy()
            self.Xw[:] = np.nan
            if self.scale_source == "depth":
                self._lift_with_depth(cur, vc)

    def map_speed(self) -> float | None:
        """Median of the recent geometric speeds (map units per second), None before any."""
        return float(np.median(self.speeds)) if self.speeds else None

    # -- internals -------------------------------------------------------------------------------
    def _restart(self, frame: FrameData, view: _View, world: np.ndarray) -> None:
        """``frame`` becomes the keyframe with fresh features and no map (the map's median depth,
        if there was one, carries the scale to the next map)."""
        if view.world is None:
            view.world = world.copy()
        self.K = view.camera.K
        self.kf = _Keyframe(frame.stamp_ns, view.world.copy(),
                            (view.grey.shape[1], view.grey.shape[0]), frame.depth)
        self.win = [view.world.copy()]
        self._set_tracks(self._detect(view.grey, self.flow.max_features))
        if self.scale_source == "depth":
            self._lift_with_depth(frame, view)
        self.last, self.last_stamp = view, frame.stamp_ns
        self.T_w_last = view.world.copy()

    def _detect(self, grey: np.ndarray, count: int, existing=None) -> np.ndarray:
        f = self.flow
        return detect_features(grey, count, f.min_distance_px, existing=existing,
                               grid=(f.grid_cols, f.grid_rows), method=f.detector)

    def _lift_with_depth(self, frame: FrameData, view: _View) -> None:
        """Map points from the learned depth at the keyframe for the tracks without one (map
        units = depth units when the depth is the scale source)."""
        if frame.depth is None:
            return
        miss = ~np.isfinite(self.Xw[:, 2])
        if not miss.any():
            return
        d = sample_depth(frame.depth, self.px_kf[miss], self.kf.size)
        X = bearings(self.px_kf[miss], view.camera.K)
        X = X / X[:, 2:3] * d[:, None]
        X[~(np.isfinite(d) & (d > 0))] = np.nan
        self.Xw[miss] = transform_points(self.kf.world, X)

    def _track(self, prev, cur, vp: _View, vc: _View, timings: dict):
        f, c = self.flow, self.cfg
        if (self.kf is None or self.last is None or vp.world is None
                or vc.camera != self.last.camera or vc.grey.shape != self.last.grey.shape):
            self._restart(prev, vp, vp.world if vp.world is not None else np.eye(4))
        std = float(cv2.meanStdDev(vc.grey)[1][0, 0])
        if std < c.min_grey_std:
            raise GeometryFailure(TEXTURELESS, f"grey-level std {std:.1f} < pose.min_grey_std "
                                  f"{c.min_grey_std}")
        K = vc.camera.K
        w, h = vc.grey.shape[1], vc.grey.shape[0]
        # 1. track the features from the last frame
        t0 = time.perf_counter()
        guess = None
        if self.prior_R is not None and self.last_stamp == prev.stamp_ns and len(self.px):
            guess = rotation_flow_guess(self.px, K, self.prior_R)
        elif f.motion_prior and len(self.px):
            known = np.isfinite(self.vel[:, 0])
            if known.any():                  # constant image velocity; new tracks: the median
                guess = self.px + np.where(known[:, None], self.vel,
                                           np.median(self.vel[known], axis=0))
        self.prior_R = None
        if f.method == "lk":
            tr = track_lk(self.last.grey, vc.grey, self.px, f.lk_window, f.lk_levels,
                          f.fb_threshold_px, guess)
        else:
            tr = track_dis(self.last.grey, vc.grey, self.px, f.fb_threshold_px)
        self.vel = (tr.p1 - self.px).astype(np.float32)
        self.px = tr.p1
        self._keep(tr.ok)
        fb = tr.fb_error[tr.ok]
        self.last, self.last_stamp = vc, cur.stamp_ns
        timings["flow"] = (time.perf_counter() - t0) * 1e3
        n = len(self.px)
        if n < c.min_tracks:
            raise GeometryFailure(TOO_FEW_FEATURES, f"{n} < pose.min_tracks {c.min_tracks}")
        t1 = time.perf_counter()
        sel = select_correspondences(self.px_kf, self.px, fb, w, h, f.keep_fraction,
                                     f.max_correspondences, np.inf, (f.grid_cols, f.grid_rows))
        step = Step(tracks=n)
        # 2. static camera: the features have not moved since the keyframe
        if float(np.median(np.linalg.norm(self.px - self.px_kf, axis=1))) < c.static_parallax_px:
            step.method, step.inliers, step.inlier_ratio = "static", n, 1.0
            self.T_w_last = self.kf.world.copy()
            timings["pose"] = (time.perf_counter() - t1) * 1e3
            return self.kf.world.copy(), step
        # 3. the rotation-only model and the parallax it leaves
        f_px = 0.5 * (K[0, 0] + K[1, 1])
        R_rot, rot_inl, parallax = rotation_parallax(self.px_kf[sel], self.px[sel], K,
                                                     2.0 * c.ransac_threshold_px / f_px,
                                                     c.parallax_quantile)
        if R_rot is None:
            raise GeometryFailure(NO_ROTATION)
        step.parallax_px = parallax
        # 4. the pose: the essential matrix where the parallax allows, else PnP on the map
        T, drop = None, np.zeros(n, bool)
        mapped = sel[np.isfinite(self.Xw[sel, 2])]
        has_map = len(mapped) >= c.min_pnp_points
        if has_map:
            want_e = step.parallax_px >= c.essential_parallax_px
            want_kf = step.parallax_px >= c.keyframe_parallax_px
        else:                                      # no map yet: the first two-view estimate
            want_e = want_kf = step.parallax_px >= c.init_parallax_px
        if want_e:
            T, outliers = self._essential(sel, step, K)
            if T is not None:
                drop = outliers
        if T is None and has_map:
            T_cur_w, inl = pnp_pose(self.Xw[mapped], self.px[mapped], K, c.pnp_threshold_px)
            if T_cur_w is not None and inl.sum() >= c.min_pnp_points:
                T = invert(T_cur_w)
                step.method, step.inliers = "pnp", int(inl.sum())
                step.inlier_ratio = float(inl.mean())
                drop = np.zeros(n, bool)
                drop[mapped[~inl]] = True
        if T is None:                              # no map, little parallax: rotation only
            T = make_transform(self.kf.world[:3, :3] @ R_rot.T, self.T_w_last[:3, 3])
            step.method, step.inliers = "rotation", int(rot_inl.sum())
            step.inlier_ratio = float(rot_inl.mean())
            want_kf = False
        timings["pose"] = (time.perf_counter() - t1) * 1e3
        # 5. keyframe
        few = n < f.max_features * c.redetect_fraction
        if want_kf or few:
            t2 = time.perf_counter()
            self._keep(~drop)
            T = self._new_keyframe(cur, vc, T)
            step.keyframe = True
            timings["keyframe"] = (time.perf_counter() - t2) * 1e3
        self.T_w_last = T
        return T, step

    def _essential(self, sel: np.ndarray, step: Step, K: np.ndarray):
        """Essential matrix keyframe -> current on the selected tracks, the translation scaled.
        Returns (T_world_cur, outlier mask over the tracks) or (None, None) when the two views
        are degenerate (the reason goes into ``step.note``)."""
        c = self.cfg
        two = essential_pose(self.px_kf[sel], self.px[sel], K, c.ransac_threshold_px,
                             method=c.essential_method)
        if two is None or two.n_inliers < max(c.min_inliers, c.min_inlier_ratio * len(sel)):
            step.note = f"essential matrix: {0 if two is None else two.n_inliers} inliers of " \
                        f"{len(sel)}"
            return None, None
        idx = sel[two.inliers]
        X0 = two.X0           # finite and in front of both cameras (``essential_pose``)
        good = two.angle >= c.min_triangulation_angle_deg
        if good.sum() < c.min_inliers // 2:
            step.note = f"essential matrix: {int(good.sum())} points triangulate"
            return None, None
        s, how = self._scale(two, idx[good], X0[good], K)
        if not (np.isfinite(s) and s > 0):
            step.note = "essential matrix: no scale"
            return None, None
        outliers = np.zeros(len(self.px), bool)
        outliers[sel[~two.inliers]] = True
        step.method, step.scale_method = "essential", how
        step.inliers, step.inlier_ratio = two.n_inliers, two.n_inliers / max(len(sel), 1)
        return self.kf.world @ invert(make_transform(two.R, two.t * s)), outliers

    def _scale(self, two: TwoView, idx: np.ndarray, X0: np.ndarray, K: np.ndarray
               ) -> tuple[float, str]:
        """Length of the unit two-view translation whose inliers ``idx`` triangulated to ``X0``
        (keyframe frame): see the module docstring."""
        z = X0[:, 2]
        if self.scale_source == "depth" and self.kf.depth is not None:
            s = median_scale(sample_depth(self.kf.depth, self.px_kf[idx], self.kf.size), z)
            if np.isfinite(s):
                return s, "depth"
        shared = np.isfinite(self.Xw[idx, 2])
        if shared.sum() >= self.cfg.min_shared_points:
            Xk = transform_points(invert(self.kf.world), self.Xw[idx[shared]])
            s_depth = median_scale(Xk[:, 2], z[shared])
            t = translation_given_rotation(two.R, Xk, normalise(self.px[idx[shared]], K),
                                           1.0 / K[0, 0])
            s_map = float(t @ two.t) if t is not None else float("nan")
            if np.isfinite(s_depth) and np.isfinite(s_map) and s_map > 0:
                return float(np.sqrt(s_depth * s_map)), "shared points"
            if np.isfinite(s_depth):
                return s_depth, "shared points"
        # no map in common: keep the scene's median depth (first map: the learned depth's)
        target = self.map_median_depth
        if target is None and self.kf.depth is not None:
            d = sample_depth(self.kf.depth, self.px_kf[idx], self.kf.size)
            d = d[np.isfinite(d) & (d > 0)]
            target = float(np.median(d)) if len(d) else None
        return (target or 1.0) / float(np.median(z)), "median depth"

    def _ground_rescale(self, T_w_cur: np.ndarray) -> None:
        """Scale source 'ground': fit the ground plane to the map seen from the new keyframe and
        rescale the map and the window about the camera towards the known camera height: all
        the way at the first fit, 1/k of the way (log scale) at the k-th, at least
        ``GROUND_GAIN``. The current pose does not
        move; later steps come out in metres."""
        mapped = np.isfinite(self.Xw[:, 2])
        if mapped.sum() < 10:
            return
        g = fit_ground_plane(transform_points(invert(T_w_cur), self.Xw[mapped]))
        if g is None:
            return
        self.ground_fits += 1
        self.ground_ratio = float(self.cfg.camera_height_m / g[0])
        # the k-th fit moves the scale 1/k of the way (a running mean of the first fits), later
        # ones at least GROUND_GAIN of it (following drift; one noisy fit must not shake it)
        gain = max(1.0 / self.ground_fits, GROUND_GAIN)
        ratio = self.ground_ratio if self.ground_fits == 1 else \
            float(np.clip(self.ground_ratio, 0.5, 2.0))
        f = ratio ** gain
        c = T_w_cur[:3, 3]
        self.Xw = c + f * (self.Xw - c)
        for T in self.win:
            T[:3, 3] = c + f * (T[:3, 3] - c)
        if self.map_median_depth is not None:
            self.map_median_depth *= f

    def _new_keyframe(self, cur: FrameData, vc: _View, T_w_cur: np.ndarray) -> np.ndarray:
        """``cur`` becomes the keyframe: the window takes it, tracks seen from two keyframes of
        the window or more are triangulated from all of them, features are topped up."""
        c = self.cfg
        K = vc.camera.K
        if len(self.win) >= self.obs.shape[1]:          # slide: the oldest keyframe leaves
            self.win = self.win[1:]
            self.obs = np.concatenate([self.obs[:, 1:], np.full((len(self.obs), 1, 3), np.nan)],
                                      1)
        self.win.append(T_w_cur.copy())
        m = len(self.win)
        if len(self.px):
            self.obs[:, m - 1] = bearings(self.px, K)
            X, ang = triangulate_multiview(np.stack([T[:3, :3] for T in self.win]),
                                           np.stack([T[:3, 3] for T in self.win]),
                                           self.obs[:, :m], 1.0 / (0.5 * (K[0, 0] + K[1, 1])))
            good = np.isfinite(X[:, 2]) & (ang >= c.min_triangulation_angle_deg)
            self.Xw[good] = X[good]
            mapped = np.flatnonzero(np.isfinite(self.Xw[:, 2]))
            if len(mapped):            # a map point behind the camera or off its track is wrong
                Xc = transform_points(invert(T_w_cur), self.Xw[mapped])
                bad = (Xc[:, 2] <= 0) | (np.linalg.norm(project(Xc, K) - self.px[mapped], axis=1)
                                         > 3 * c.pnp_threshold_px)
                self.Xw[mapped[bad]] = np.nan
                if (~bad).sum() >= 10:
                    self.map_median_depth = float(np.median(Xc[~bad, 2]))
            if self.scale_source == "ground":
                self._ground_rescale(T_w_cur)
        self.px_kf = self.px.copy()
        self.kf = _Keyframe(cur.stamp_ns, T_w_cur.copy(), (vc.grey.shape[1], vc.grey.shape[0]),
                            cur.depth)
        missing = self.flow.max_features - len(self.px)
        if missing > 0.1 * self.flow.max_features:
            self._append_tracks(self._detect(vc.grey, missing, existing=self.px))
        if self.scale_source == "depth":
            self._lift_with_depth(cur, vc)
        return T_w_cur


class HybridPose:
    """Geometry first; the pose network as initial guess (where trained) and as fallback where
    geometry cannot answer (see the module docstring)."""

    name = "hybrid"

    def __init__(self, geometric: GeometricPose, network, use_guess: bool):
        self.geometric = geometric
        self.network = network
        self.model = network.model
        self.use_guess = use_guess

    @property
    def metric(self) -> bool:
        return self.geometric.metric

    @property
    def last_step(self) -> Step:
        return self.geometric.last_step

    def reset(self) -> None:
        self.geometric.reset()

    def estimate(self, prev: FrameData, cur: FrameData) -> PoseResult:
        net = None
        if self.use_guess:
            net = self._network(prev, cur)
            if net is not None:
                self.geometric.prior_R = net.T[:3, :3].T          # R_cur_prev
        geo = self.geometric.estimate(prev, cur)
        if net is not None:
            geo.timings_ms["model"] = net.timings_ms.get("model", 0.0)
        if geo.ok:
            return geo
        if net is None:
            net = self._network(prev, cur)
        if net is None:
            geo.reason += "; the pose network's output is not finite either"
            return geo
        T = net.T.copy()
        speed = self.geometric.map_speed()
        dt = (cur.stamp_ns - prev.stamp_ns) * 1e-9
        norm = float(np.linalg.norm(T[:3, 3]))
        if speed is not None and norm > 1e-12 and dt > 0:
            T[:3, 3] *= speed * dt / norm         # the network's direction, the map's speed
        self.geometric.rebase(prev, cur, T)
        category = self.geometric.last_step.note or "geometry failed"
        return PoseResult(T, ok=True, reason=f"fallback to the pose network: {geo.reason}",
                          sigma_scale=self.geometric.cfg.fallback_sigma_scale,
                          backend=f"network (fallback: {category})",
                          timings_ms={**geo.timings_ms, "model": net.timings_ms.get("model", 0)})

    def _network(self, prev: FrameData, cur: FrameData) -> PoseResult | None:
        try:
            return self.network.estimate(prev, cur)
        except ModelOutputError:
            return None
