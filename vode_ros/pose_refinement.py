"""What the keyframe tracker does to a pose after finding it: the essential matrix's rotation
checked against constant velocity (PnP on the map answers where it agrees better), the answered
pose refined on its map points, and the keyframe window's local bundle adjustment. A part of
``GeometricPose`` (``vode_ros/tracker.py``), kept apart because it judges and refines poses
rather than finding them; it uses the tracker's state (configuration, motion prior, tracks,
keyframe, window, last pose)."""
from __future__ import annotations

import time

import numpy as np

from vode_ros.bundle_adjustment import bundle_adjust
from vode_ros.geometry import invert, rotation_angle_deg, transform_points
from vode_ros.multiview import refine_pose
from vode_ros.tracks import Step


class PoseRefinement:
    """Pose checks and refinement of ``GeometricPose`` (mixed into it; not used on its own)."""

    def _check_rotation(self, T: np.ndarray, outliers: np.ndarray, mapped: np.ndarray,
                        tested: int, step: Step, K: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, bool]:
        """An essential-matrix pose ``T`` whose rotation is further from constant velocity's
        prediction than ``pose.rotation_check_deg`` and four times the prediction's recent
        median error gives way to PnP on the map where PnP's rotation is at least twice as
        close, unless the map explains its tracks significantly worse than the essential
        matrix does (``_less_supported``: after a fast turn a map placed by a few uncertain
        steps can agree with a constant velocity that those same steps set, while the essential
        matrix of the frame's own tracks is right; ``tested``: the correspondences the
        essential matrix was fitted on). Returns (T_world_cur, outlier mask, whether PnP
        replaced it)."""
        gate = self.cfg.rotation_check_deg
        pred = self.motion.expected()
        if gate <= 0 or pred is None:
            return T, outliers, False
        deviation = self._deviation_deg(T, pred[0])
        if deviation <= max(gate, 4.0 * pred[1]):
            return T, outliers, False
        probe = Step()
        Tp, out_p = self._pnp(mapped, probe, K)
        if Tp is None or self._deviation_deg(Tp, pred[0]) >= 0.5 * deviation:
            return T, outliers, False
        if _less_supported(probe.inliers, len(mapped), step.inliers, tested):
            return T, outliers, False
        step.method, step.scale_method = probe.method, ""
        step.inliers, step.inlier_ratio = probe.inliers, probe.inlier_ratio
        step.note = "essential matrix's rotation against constant velocity: PnP"
        return Tp, out_p, True

    def _deviation_deg(self, T_w_cur: np.ndarray, R_pred: np.ndarray) -> float:
        """Degrees between the step's rotation with the frame at ``T_w_cur`` and the predicted
        ``R_pred`` (R_cur_prev)."""
        R_cur_prev = (invert(self.T_w_last) @ T_w_cur)[:3, :3].T
        return rotation_angle_deg(R_pred.T @ R_cur_prev)

    def _refine(self, T_w_cur: np.ndarray, sel: np.ndarray, outliers: np.ndarray,
                K: np.ndarray, has_map: bool) -> np.ndarray:
        """The frame's pose refined on its map points and the epipolar geometry of its tracks
        from the keyframe together (``multiview.refine_pose``), where it has a map."""
        c, tr = self.cfg, self.tracks
        if c.frame_refinement_evaluations <= 0 or not has_map:
            return T_w_cur
        keep = sel[~outliers[sel]]
        mapped = keep[np.isfinite(tr.Xw[keep, 2])]
        if len(mapped) < c.min_pnp_points:
            return T_w_cur
        t0 = time.perf_counter()
        T_cur_w = refine_pose(invert(T_w_cur), tr.Xw[mapped], tr.px[mapped],
                              invert(self.kf.world), tr.px_kf[keep], tr.px[keep], K,
                              c.pnp_threshold_px, c.frame_refinement_epipolar_weight,
                              c.frame_refinement_evaluations, 3.0 * c.ransac_threshold_px)
        self.refine_ms = (time.perf_counter() - t0) * 1e3
        if T_cur_w is None:
            return T_w_cur
        return invert(T_cur_w)

    def _bundle_adjust(self, K: np.ndarray, T_w_cur: np.ndarray) -> np.ndarray:
        """Local bundle adjustment of the window (``vode_ros.bundle_adjustment``): keyframe
        poses and map points refined together, the oldest keyframe and the scale held; map
        points it finds off their tracks leave the map. Returns the newest keyframe's pose."""
        c, tr = self.cfg, self.tracks
        if c.bundle_adjustment_iterations <= 0 or len(self.win) < 2 or \
                moving_ahead(self.win[0], T_w_cur, c.bundle_adjustment_forward_cos):
            return T_w_cur
        m = len(self.win)
        res = bundle_adjust(np.stack(self.win), tr.Xw, tr.obs[:, :m],
                            0.5 * (K[0, 0] + K[1, 1]), c.pnp_threshold_px,
                            c.bundle_adjustment_iterations, c.bundle_adjustment_max_ms,
                            fixed=self._ba_fixed(m))
        if res is None:
            return T_w_cur
        self.ba_ms = res.time_ms
        tr.Xw[res.adjusted] = self._keep_depth_scale(tr.Xw[res.adjusted],
                                                     res.points[res.adjusted], T_w_cur,
                                                     res.poses[-1])
        tr.Xw[res.rejected] = np.nan
        self.win = [T.copy() for T in res.poses]
        return res.poses[-1].copy()

    @staticmethod
    def _keep_depth_scale(X_before: np.ndarray, X_after: np.ndarray, T_before: np.ndarray,
                          T_after: np.ndarray) -> np.ndarray:
        """The adjusted points rescaled about the newest keyframe so that their depths there
        keep their median: the next keyframe's scale is measured on these depths, and an
        adjustment that moves the points ~0.1 % farther each time (KITTI 06) would otherwise
        pile up into scale drift (6 % over 50 keyframes)."""
        ok = np.isfinite(X_before[:, 2]) & np.isfinite(X_after[:, 2])
        if ok.sum() < 10:
            return X_after
        zb = transform_points(invert(T_before), X_before[ok])[:, 2]
        za = transform_points(invert(T_after), X_after[ok])[:, 2]
        pos = (zb > 0) & (za > 0)
        if pos.sum() < 10:
            return X_after
        f = float(np.exp(np.median(np.log(za[pos] / zb[pos]))))
        c = T_after[:3, 3]
        return c + (X_after - c) / f

    def _ba_fixed(self, m: int) -> np.ndarray:
        """The keyframes the adjustment holds: the oldest (the gauge), and the newest unless
        ``pose.bundle_adjustment_moves_newest``."""
        fixed = np.arange(m) == 0
        if not self.cfg.bundle_adjustment_moves_newest and m > 2:
            fixed[-1] = True
        return fixed


def moving_ahead(T_w_first: np.ndarray, T_w_last: np.ndarray, cos_limit: float) -> bool:
    """Whether the camera moved from ``T_w_first`` to ``T_w_last`` (T_world_camera) along its
    optical axis (ahead or back) within the angle whose cosine is ``cos_limit``, as seen from
    the last camera; False where it did not move."""
    d = T_w_last[:3, 3] - T_w_first[:3, 3]
    n = float(np.linalg.norm(d))
    if n <= 1e-12 or cos_limit >= 1.0:
        return False
    return abs(float(T_w_last[:3, 2] @ d)) / n > cos_limit


SUPPORT_SIGMAS = 2.0      # how many standard errors below the other's an inlier share may lie


def _less_supported(inliers_a: int, tested_a: float, inliers_b: int, tested_b: float,
                    sigmas: float = SUPPORT_SIGMAS) -> bool:
    """Whether model a's inlier share (``inliers_a`` of ``tested_a`` correspondences) is below
    model b's by more than ``sigmas`` standard errors of the difference of two binomial shares:
    a evidently fits its data worse than b fits its own."""
    if tested_a < 1 or tested_b < 1:
        return False
    pa, pb = inliers_a / tested_a, inliers_b / tested_b
    se = np.sqrt(pa * (1.0 - pa) / tested_a + pb * (1.0 - pb) / tested_b)
    return bool(pb - pa > sigmas * max(se, 1e-12))
