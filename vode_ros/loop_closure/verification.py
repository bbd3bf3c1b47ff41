"""Geometric verification of a loop candidate, and the Sim(3) measurement it yields.

The candidate keyframe's keypoints that have a depth are lifted to 3-D in its camera frame; the
query keyframe's descriptors are matched to the candidate's (ratio test, one-to-one) and
``cv2.solvePnPRansac`` finds the candidate-to-query pose from the 3-D / 2-D matches, refined on
its inliers with ``cv2.solvePnPRefineLM``. A loop is verified when there are enough inliers, a
large enough inlier fraction, spread over the image, and a plausible relative pose (the two
cameras close compared with the depth of the scene they share, a bounded rotation).

The relative scale: the query's own depths at the inliers, against the depths the candidate's
points take in the query camera, give how many candidate units one query unit is (median ratio).
With depths in each keyframe's odometry units, that ratio is the scale drift between them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from vode_ros.loop_closure import sim3
from vode_ros.loop_closure.features import Features, match_descriptors


@dataclass
class VerificationParams:
    min_inliers: int = 30
    min_inlier_ratio: float = 0.3
    pnp_threshold_px: float = 3.0
    ransac_iterations: int = 300
    max_rotation_deg: float = 60.0
    max_baseline_ratio: float = 1.0     # |t| / median inlier depth
    min_spread: float = 0.15            # inlier bounding box / image diagonal
    match_ratio: float = 0.8
    min_scale_points: int = 20          # query depths needed to measure the relative scale


@dataclass
class LoopMeasurement:
    T_candidate_query: np.ndarray       # 4x4 rigid, query camera in candidate (candidate units)
    scale: float                        # candidate units per query unit
    scale_spread: float                 # robust spread of log depth ratios (nan: no depths)
    inliers: int
    matches: int
    median_depth: float                 # of the inliers in the candidate frame
    inlier_pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))

    @property
    def similarity(self) -> np.ndarray:
        """Sim(3) of the query keyframe in the candidate keyframe: query units -> candidate."""
        R, t = self.T_candidate_query[:3, :3], self.T_candidate_query[:3, 3]
        return sim3.sim3(R, t, self.scale)


@dataclass
class Verdict:
    ok: bool
    reason: str
    measurement: LoopMeasurement | None = None
    inliers: int = 0


def lift(keypoints: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """3-D points (N, 3) in the camera frame of pixels (N, 2) at z-depths (N,)."""
    x = (keypoints[:, 0] - K[0, 2]) / K[0, 0]
    y = (keypoints[:, 1] - K[1, 2]) / K[1, 1]
    return np.stack([x * depth, y * depth, depth], axis=1)


def verify(query: Features, query_depth: np.ndarray, candidate: Features,
           candidate_depth: np.ndarray, p: VerificationParams) -> Verdict:
    """Verify that ``query`` sees the place of ``candidate``; depths are per keypoint (NaN:
    none)."""
    matches = match_descriptors(query.descriptors, candidate.descriptors, p.match_ratio)
    if len(matches) < p.min_inliers:
        return Verdict(False, f"{len(matches)} descriptor matches < {p.min_inliers}")
    cd = candidate_depth[matches[:, 1]]
    has = np.isfinite(cd) & (cd > 0)
    if has.sum() < p.min_inliers:
        return Verdict(False, f"{int(has.sum())} matches with a candidate depth < "
                       f"{p.min_inliers}")
    m = matches[has]
    X = lift(candidate.keypoints[m[:, 1]], cd[has], candidate.camera.K).astype(np.float64)
    px = query.keypoints[m[:, 0]].astype(np.float64)
    K = query.camera.K
    ok, rvec, tvec, inl = cv2.solvePnPRansac(
        X, px, K, None, iterationsCount=p.ransac_iterations,
        reprojectionError=p.pnp_threshold_px, confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
    if not ok or inl is None or len(inl) < p.min_inliers:
        n = 0 if inl is None else len(inl)
        return Verdict(False, f"PnP: {n} inliers < {p.min_inliers}", inliers=n)
    inl = inl.reshape(-1)
    rvec, tvec = cv2.solvePnPRefineLM(X[inl], px[inl], K, None, rvec, tvec)
    # inliers again under the refined pose
    proj, _ = cv2.projectPoints(X, rvec, tvec, K, None)
    R = cv2.Rodrigues(rvec)[0]
    Xq = X @ R.T + tvec.reshape(1, 3)
    err = np.linalg.norm(proj.reshape(-1, 2) - px, axis=1)
    inl = np.where((err < p.pnp_threshold_px) & (Xq[:, 2] > 0))[0]
    n_in = len(inl)
    ratio = n_in / len(m)
    if n_in < p.min_inliers:
        return Verdict(False, f"PnP refined: {n_in} inliers < {p.min_inliers}", inliers=n_in)
    if ratio < p.min_inlier_ratio:
        return Verdict(False, f"PnP inlier ratio {ratio:.2f} < {p.min_inlier_ratio}",
                       inliers=n_in)
    q_px = px[inl]
    spread = np.linalg.norm(np.ptp(q_px, axis=0)) / np.hypot(query.camera.width,
                                                            query.camera.height)
    if spread < p.min_spread:
        return Verdict(False, f"inliers cover {spread:.2f} of the image diagonal < "
                       f"{p.min_spread}", inliers=n_in)
    T_q_c = np.eye(4)
    T_q_c[:3, :3], T_q_c[:3, 3] = R, tvec.reshape(3)
    T_c_q = np.linalg.inv(T_q_c)
    angle = sim3.rotation_deg(T_c_q)
    if angle > p.max_rotation_deg:
        return Verdict(False, f"relative rotation {angle:.1f} deg > {p.max_rotation_deg}",
                       inliers=n_in)
    med_depth = float(np.median(X[inl, 2]))
    baseline = float(np.linalg.norm(T_c_q[:3, 3]))
    if baseline > p.max_baseline_ratio * med_depth:
        return Verdict(False, f"baseline {baseline:.3g} > {p.max_baseline_ratio} x scene depth "
                       f"{med_depth:.3g}", inliers=n_in)
    # relative scale from the query's own depths at the inliers
    qd = query_depth[m[inl, 0]]
    ok_d = np.isfinite(qd) & (qd > 0)
    scale, spread_log = 1.0, float("nan")
    if ok_d.sum() >= p.min_scale_points:
        log_r = np.log(Xq[inl][ok_d, 2] / qd[ok_d])
        med = float(np.median(log_r))
        scale = float(np.exp(med))
        spread_log = float(1.4826 * np.median(np.abs(log_r - med)))
    meas = LoopMeasurement(T_c_q, scale, spread_log, n_in, len(matches), med_depth,
                           m[inl])
    return Verdict(True, f"{n_in} PnP inliers of {len(m)} matches ({ratio:.0%}), rotation "
                   f"{angle:.1f} deg, baseline {baseline / med_depth:.2f} x depth, scale "
                   f"{scale:.3f}", meas, n_in)
