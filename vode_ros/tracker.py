"""The geometric pose backend: a keyframe tracker on features tracked from frame to frame, its
pose from the essential matrix, PnP on its map or the pure-rotation model, its scale from the map,
the learned depth or the ground (``pose.scale_source``). docs/design.md walks through it.
"""
from __future__ import annotations

import time
from collections import deque

import cv2
import numpy as np

from vode_ros.config import FlowConfig, PoseConfig
from vode_ros.fast_motion import FastMotion
from vode_ros.flow import (
    detect_features,
    pyramid_levels,
    rotation_flow_guess,
    select_correspondences,
    track_dis,
    track_lk,
    working_grey,
)
from vode_ros.geometry import invert, make_transform, transform_points
from vode_ros.inference import ModelSpec, OnnxModel
from vode_ros.map_scale import MapScale
from vode_ros.motion_prior import MotionPrior
from vode_ros.multiview import (
    TwoView,
    bearings,
    essential_pose,
    pnp_pose,
    project,
    rotation_parallax,
    triangulate_multiview,
)
from vode_ros.pose import FrameData, PoseResult
from vode_ros.pose_refinement import PoseRefinement
from vode_ros.scale.ground import GroundScale
from vode_ros.scale.status import ScaleStatus
from vode_ros.tracks import GeometryFailure, Keyframe, Step, Tracks, View
from vode_ros.wide_baseline import KeyframeMemory

__all__ = ["GeometricPose", "GeometryFailure", "Step"]

CACHE_KEY = "vode.geometric"

# why geometry gives up on a frame (number-free: they name fallbacks in backend counts)
TOO_FEW_FEATURES = "too few tracked features"
NO_ROTATION = "no motion model fits the tracks"
TEXTURELESS = "textureless or dark frame"


class GeometricPose(MapScale, PoseRefinement, FastMotion):
    """Keyframe-based monocular geometry: a ``PoseBackend``.

    It keeps a keyframe, the window of the last keyframes' poses (``win``), features tracked
    from the keyframe (``tracks``, ``vode_ros.flow``) and, for the features it could
    triangulate, their 3D positions (the *map*, in the backend's own world frame).
    """

    name = "geometric"

    def __init__(self, pose_cfg: PoseConfig, flow_cfg: FlowConfig,
                 depth_spec: ModelSpec | None = None, model: OnnxModel | None = None,
                 base_to_camera: np.ndarray | None = None, ground_window: int = 7,
                 ground_min_confidence: float = 0.3):
        self.cfg = pose_cfg
        self.flow = flow_cfg
        self.depth_metric = depth_spec is not None and depth_spec.metric
        self.depth_trained = depth_spec is not None and depth_spec.is_trained
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
        # scale source 'ground': the camera height over the road (the extrinsic gives "down")
        self.ground = GroundScale(pose_cfg.camera_height_m,
                                  np.eye(4) if base_to_camera is None else base_to_camera,
                                  ground_window, ground_min_confidence) \
            if src == "ground" else None
        self.reset()

    @property
    def scale_status(self) -> ScaleStatus | None:
        """The measured scale's status (scale source 'ground'), None otherwise."""
        return self.ground.status if self.ground is not None else None

    @property
    def metric(self) -> bool:
        """Whether translations come out in metres."""
        if self.cfg.fixed_scale > 0 or self.scale_source == "ground":
            return True
        return self.scale_source == "depth" and self.depth_metric

    def reset(self) -> None:
        self.kf: Keyframe | None = None
        self.K: np.ndarray | None = None
        self.last: View | None = None
        self.last_stamp: int | None = None
        self.T_w_last = np.eye(4)
        self.win: list[np.ndarray] = []           # keyframe poses of the window, oldest first
        self._set_tracks(np.zeros((0, 2), np.float32))
        self.kf_tracks = 0                        # tracks the keyframe started with
        self.map_median_depth: float | None = None
        # map depth over the learned depth at the recent keyframes with a map (map_scale.py)
        self.network_ratios: deque[float] = deque(maxlen=max(self.cfg.window_keyframes - 1, 1))
        self.speeds: deque[float] = deque(maxlen=10)  # recent geometric speeds (units per s)
        self.unlinked = False                     # this frame's step shared no map point
        self.prior_R: np.ndarray | None = None    # R_cur_prev prior for the next frame (hybrid)
        if self.ground is not None:
            self.ground.reset()
        self.motion = MotionPrior()
        self.last_step = Step()
        self.ba_ms: float | None = None           # the last bundle adjustment's time
        self.rematch_ms: float | None = None      # this frame's ORB rematch (None: not tried)
        self.rematched = False                    # this frame's tracks came from the rematch
        self.memory = KeyframeMemory(self.cfg.relocalisation_keyframes, self.cfg.orb_features,
                                     self.cfg.orb_ratio)
        self.relocalise_left = 0                  # frames left to relocalise after a loss
        self.lost_at_ns = 0                       # the frame where the last loss began
        self._answer: np.ndarray | None = None    # the refined pose answered for this frame
        self.refine_ms: float | None = None       # the frame refinement's time

    # -- tracks ----------------------------------------------------------------------------------
    def _set_tracks(self, pts: np.ndarray) -> None:
        self.tracks = self._new_tracks(pts)

    def _append_tracks(self, pts: np.ndarray) -> None:
        self.tracks = self.tracks.extended(self._new_tracks(pts))

    def _new_tracks(self, pts: np.ndarray) -> Tracks:
        """Tracks of features just detected (in the newest keyframe of the window, if any)."""
        tracks = Tracks.detected(pts, max(self.cfg.window_keyframes, 2))
        if len(tracks) and self.win:
            tracks.obs[:, len(self.win) - 1] = bearings(tracks.px, self.K)
        return tracks

    def _keep(self, mask: np.ndarray) -> None:
        self.tracks = self.tracks.kept(mask)

    # -- per-frame views -------------------------------------------------------------------------
    def view(self, frame: FrameData) -> View:
        v = frame.cache.get(CACHE_KEY)
        if v is None:
            grey, cam = working_grey(frame.image, frame.camera, self.flow.max_pixels)
            v = View(grey, cam)
            frame.cache[CACHE_KEY] = v
        return v

    # -- the estimate ----------------------------------------------------------------------------
    def estimate(self, prev: FrameData, cur: FrameData) -> PoseResult:
        t0 = time.perf_counter()
        vp, vc = self.view(prev), self.view(cur)
        timings = {"views": (time.perf_counter() - t0) * 1e3}
        one_step = self.last_stamp == prev.stamp_ns         # prev is the frame tracked last
        try:
            T_w_cur, step = self._track(prev, cur, vp, vc, timings)
        except GeometryFailure as exc:
            self.prior_R = None
            self._restart(cur, vc, vp.world if vp.world is not None else self.T_w_last)
            if self.relocalise_left == 0:         # a loss begins: what came before it counts
                self.lost_at_ns = cur.stamp_ns
            self.relocalise_left = self.cfg.relocalisation_frames
            self.last_step = Step(note=exc.category)
            timings["total"] = (time.perf_counter() - t0) * 1e3
            return PoseResult(np.eye(4), ok=False, reason=f"geometric pose: {exc}",
                              sigma_scale=self.cfg.fallback_sigma_scale, backend=self.name,
                              timings_ms=timings)
        vc.world = T_w_cur
        vc.out = self._answer if self._answer is not None else T_w_cur
        self._answer = None
        T_int = invert(vp.world) @ T_w_cur
        T = invert(vp.out if vp.out is not None else vp.world) @ vc.out
        self.motion.observe(T_int[:3, :3].T, consecutive=one_step)
        dt = (cur.stamp_ns - prev.stamp_ns) * 1e-9
        if dt > 0:
            self.speeds.append(float(np.linalg.norm(T_int[:3, 3])) / dt)
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
        if step.method in ("static", "restart"):
            return 0.5
        n = max(step.inliers, 1)
        s = np.sqrt(self.cfg.covariance_reference_inliers / n) / max(step.inlier_ratio, 0.2)
        if step.method.endswith("rotation"):
            s *= 3.0
        return float(np.clip(s, 0.3, self.cfg.fallback_sigma_scale))

    def rebase(self, prev: FrameData, cur: FrameData, T_prev_cur: np.ndarray) -> None:
        """Another estimator answered for ``cur`` after a geometric failure (which restarted the
        tracker at ``cur``): place ``cur`` at ``prev``'s pose composed with ``T_prev_cur``."""
        vp, vc = self.view(prev), self.view(cur)
        vc.world = (vp.world if vp.world is not None else np.eye(4)) @ T_prev_cur
        if vp.out is not None:                   # the answers go on from the last answer
            vc.out = vp.out @ T_prev_cur
        if self.kf is not None and self.kf.stamp_ns == cur.stamp_ns:
            self.kf.world = vc.world.copy()
            self.win = [vc.world.copy()]
            self.T_w_last = vc.world.copy()
            self.tracks.Xw[:] = np.nan
            self._lift_keyframe(cur, vc, restart=True)

    def map_points(self, stamp_ns: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]] | None:
        """The map points the frame ``stamp_ns`` sees, if it is the frame tracked last: (their
        pixels in the tracker's working image (N, 2), their depths along the optical axis in
        the map's unit (N,), the working image's (width, height)); None otherwise."""
        v = self.last
        if v is None or v.world is None or self.last_stamp != stamp_ns:
            return None
        tr = self.tracks
        mapped = np.flatnonzero(tr.triangulated)
        Xc = transform_points(invert(v.world), tr.Xw[mapped])
        front = np.isfinite(Xc).all(1) & (Xc[:, 2] > 0)
        return (tr.px[mapped[front]].astype(np.float64), Xc[front, 2],
                (v.grey.shape[1], v.grey.shape[0]))

    def map_speed(self) -> float | None:
        """Median of the recent geometric speeds (map units per second), None before any."""
        return float(np.median(self.speeds)) if self.speeds else None

    # -- one frame, step by step -----------------------------------------------------------------
    def _track(self, prev: FrameData, cur: FrameData, vp: View, vc: View,
               timings: dict[str, float]) -> tuple[np.ndarray, Step]:
        """Track ``cur`` from ``prev``: (T_world_cur, what the frame did), or GeometryFailure."""
        c = self.cfg
        self._answer, self.refine_ms = None, None
        self.rematch_ms, self.rematched = None, False
        self.unlinked = False
        if vc.grey.shape != vp.grey.shape or vc.camera != vp.camera:
            # another camera (a new image size or intrinsics): start again at ``cur``, the
            # pose held (no feature of the old images can be followed into the new ones)
            self.memory.clear()
            self._restart(cur, vc, vp.world if vp.world is not None else self.T_w_last)
            return vc.world.copy(), Step(method="restart", note="the camera changed")
        if self._needs_restart(vp, vc):
            self._restart(prev, vp, vp.world if vp.world is not None else self.T_w_last)
        self._check_texture(vc.grey)
        K = vc.camera.K
        t0 = time.perf_counter()
        n_before = len(self.tracks)
        fb = self._track_flow(prev, cur, vc)
        timings["flow"] = (time.perf_counter() - t0) * 1e3
        if self.rematch_ms is not None:                  # inside flow
            timings["rematch"] = self.rematch_ms
        n = len(self.tracks)
        if n < c.min_tracks or n < c.recover_survivor_fraction * n_before or \
                self.relocalise_left > 0:
            t0 = time.perf_counter()
            rec = self._recover(cur, vc, K, lk_failed=n < c.min_tracks)
            timings["wide_baseline"] = (time.perf_counter() - t0) * 1e3
            if rec is not None:
                return rec
        if n < c.min_tracks:
            raise GeometryFailure(TOO_FEW_FEATURES, f"{n} < pose.min_tracks {c.min_tracks}")
        t1 = time.perf_counter()
        sel = self._select_correspondences(fb, vc.grey)
        step = Step(tracks=n, note="Lucas-Kanade started again from ORB matches"
                    if self.rematched else "")
        if self._is_static():
            step.method, step.inliers, step.inlier_ratio = "static", n, 1.0
            self.T_w_last = self.kf.world.copy()
            timings["pose"] = (time.perf_counter() - t1) * 1e3
            return self.kf.world.copy(), step
        try:
            R_rot, rot_inl = self._rotation_model(sel, K, step)
        except GeometryFailure:            # the tracks followed no one motion: try matching
            rec = self._recover(cur, vc, K, lk_failed=True)
            if rec is None:
                raise
            return rec
        T, drop, want_kf = self._relative_pose(sel, K, R_rot, rot_inl, step)
        timings["pose"] = (time.perf_counter() - t1) * 1e3
        if self.refine_ms is not None:
            timings["frame_refinement"] = self.refine_ms
        if self._keyframe_due(want_kf, n):
            t2 = time.perf_counter()
            self._keep(~drop)
            self._answer = None                  # a keyframe answers its own pose (the map's)
            T = self._new_keyframe(cur, vc, T, placed=step.method != "rotation")
            step.keyframe = True
            timings["keyframe"] = (time.perf_counter() - t2) * 1e3
            if self.ba_ms is not None:
                timings["bundle_adjustment"] = self.ba_ms
        self.T_w_last = T
        return T, step

    def _needs_restart(self, vp: View, vc: View) -> bool:
        """No keyframe yet, or the previous frame unplaced, or the camera or image size changed."""
        return (self.kf is None or self.last is None or vp.world is None
                or vc.camera != self.last.camera or vc.grey.shape != self.last.grey.shape)

    def _check_texture(self, grey: np.ndarray) -> None:
        std = float(cv2.meanStdDev(grey)[1][0, 0])
        if std < self.cfg.min_grey_std:
            raise GeometryFailure(TEXTURELESS, f"grey-level std {std:.1f} < pose.min_grey_std "
                                  f"{self.cfg.min_grey_std}")

    def _flow_guess(self, prev: FrameData, K: np.ndarray) -> np.ndarray | None:
        """Where the features are expected in the new frame: moved by the rotation prior (the
        pose network's, hybrid) while it has predicted geometry's rotation better than
        constant velocity, else at constant image velocity (new tracks: the median)."""
        tr = self.tracks
        net = self.prior_R if self.last_stamp == prev.stamp_ns else None
        self.motion.predict(net)
        if net is not None and len(tr) and self.motion.trust_network():
            return rotation_flow_guess(tr.px, K, net)
        if self.flow.motion_prior and len(tr):
            known = np.isfinite(tr.vel[:, 0])
            if known.any():
                return tr.px + np.where(known[:, None], tr.vel, np.median(tr.vel[known], axis=0))
        return None

    def _track_flow(self, prev: FrameData, cur: FrameData, vc: View) -> np.ndarray:
        """Track the features from the last frame into ``cur`` (pyramidal LK from the predicted
        positions, or dense DIS flow), forward-backward checked, and drop the lost ones.
        Returns the forward-backward errors of the tracks kept."""
        f = self.flow
        guess = self._flow_guess(prev, vc.camera.K)
        self.prior_R = None
        tracks = self.tracks
        if f.method == "lk":
            levels = f.lk_levels
            if guess is not None and len(guess):
                motion = float(np.median(np.linalg.norm(guess - tracks.px, axis=1)))
                levels = pyramid_levels(motion, f.lk_window, f.lk_levels, f.lk_max_levels)
            tr = track_lk(self.last.grey, vc.grey, tracks.px, f.lk_window, levels,
                          f.fb_threshold_px, guess)
            if tr.ok.sum() < self.cfg.rematch_survivor_fraction * len(tracks):
                t0 = time.perf_counter()
                tr = self._track_after_turn(vc, tr)
                self.rematch_ms = (time.perf_counter() - t0) * 1e3
        else:
            tr = track_dis(self.last.grey, vc.grey, tracks.px, f.fb_threshold_px)
        tracks.vel = (tr.p1 - tracks.px).astype(np.float32)
        tracks.px = tr.p1
        self._keep(tr.ok)
        self.last, self.last_stamp = vc, cur.stamp_ns
        return tr.fb_error[tr.ok]

    def _select_correspondences(self, fb: np.ndarray, grey: np.ndarray) -> np.ndarray:
        """Indices of the keyframe -> current tracks the two-view geometry uses: the best
        forward-backward scores, a bounded sample spread over the image."""
        f = self.flow
        h, w = grey.shape[:2]
        return select_correspondences(self.tracks.px_kf, self.tracks.px, fb, w, h,
                                      f.keep_fraction, f.max_correspondences, np.inf,
                                      (f.grid_cols, f.grid_rows))

    def _is_static(self) -> bool:
        """The features have not moved since the keyframe (median displacement)."""
        moved = float(np.median(np.linalg.norm(self.tracks.px - self.tracks.px_kf, axis=1)))
        return moved < self.cfg.static_parallax_px

    def _rotation_model(self, sel: np.ndarray, K: np.ndarray, step: Step
                        ) -> tuple[np.ndarray, np.ndarray]:
        """The pure-rotation model keyframe -> current and the parallax it leaves (into
        ``step``). Returns (R_cur_kf, inlier mask over ``sel``)."""
        c = self.cfg
        f_px = 0.5 * (K[0, 0] + K[1, 1])
        tr = self.tracks
        R_rot, rot_inl, parallax = rotation_parallax(tr.px_kf[sel], tr.px[sel], K,
                                                     2.0 * c.ransac_threshold_px / f_px,
                                                     c.parallax_quantile)
        if R_rot is None:
            raise GeometryFailure(NO_ROTATION)
        step.parallax_px = parallax
        return R_rot, rot_inl

    def _relative_pose(self, sel: np.ndarray, K: np.ndarray, R_rot: np.ndarray,
                       rot_inl: np.ndarray, step: Step) -> tuple[np.ndarray, np.ndarray, bool]:
        """The pose of the current frame: the essential matrix where the parallax allows, else
        PnP on the map, else (no map, little parallax) the rotation-only model. Returns
        (T_world_cur, tracks to drop as outliers, whether the parallax calls for a keyframe)."""
        c = self.cfg
        mapped = sel[np.isfinite(self.tracks.Xw[sel, 2])]
        has_map = len(mapped) >= c.min_pnp_points
        if has_map:
            want_e = step.parallax_px >= c.essential_parallax_px
            want_kf = step.parallax_px >= c.keyframe_parallax_px
        else:                                      # no map yet: the first two-view estimate
            want_e = want_kf = step.parallax_px >= c.init_parallax_px
        two = essential_pose(self.tracks.px_kf[sel], self.tracks.px[sel], K,
                             c.ransac_threshold_px, method=c.essential_method) if want_e else None
        if want_e:
            T, outliers = self._essential(two, sel, step, K, c.min_inliers)
            if T is not None and has_map:
                T, outliers, replaced = self._check_rotation(T, outliers, mapped, len(sel),
                                                              step, K)
                want_kf = want_kf and not replaced  # a keyframe placed by PnP: error in the map
            if T is not None:
                self._answer = self._refine(T, sel, outliers, K, has_map)
                return T, outliers, want_kf
        if has_map:
            T, outliers = self._pnp(mapped, step, K)
            if T is not None:
                self._answer = self._refine(T, sel, outliers, K, has_map)
                return T, outliers, want_kf
        if want_e and has_map and 0 < c.min_inliers_moving < c.min_inliers:
            # the camera moved, and neither held with the inliers asked for: the essential
            # matrix on fewer beats the rotation-only pose, which holds the position
            T, outliers = self._essential(two, sel, step, K, c.min_inliers_moving)
            if T is not None:
                step.note = "essential matrix on few inliers"
                self._answer = self._refine(T, sel, outliers, K, has_map)
                return T, outliers, want_kf
        return self._rotation_pose(R_rot, rot_inl, step), np.zeros(len(self.tracks), bool), False

    def _essential(self, two: TwoView | None, sel: np.ndarray, step: Step, K: np.ndarray,
                   need: int) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        """The pose from the essential matrix ``two`` keyframe -> current on the selected tracks
        (``essential_pose``, found once per frame), at least ``need`` inliers, the translation
        scaled. Returns (T_world_cur, outlier mask over the tracks) or (None, None) when the two views
        are degenerate (the reason goes into ``step.note``)."""
        c = self.cfg
        if two is None or two.n_inliers < max(need, c.min_inlier_ratio * len(sel)):
            step.note = f"essential matrix: {0 if two is None else two.n_inliers} inliers of " \
                        f"{len(sel)}"
            return None, None
        idx = sel[two.inliers]
        X0 = two.X0           # finite and in front of both cameras (``essential_pose``)
        good = self._scale_points(two, idx, need)
        if good.sum() < need // 2:
            step.note = f"essential matrix: {int(good.sum())} points triangulate"
            return None, None
        s, how = self._scale(two, idx[good], X0[good], K)
        if not (np.isfinite(s) and s > 0):
            step.note = "essential matrix: no scale"
            return None, None
        outliers = np.zeros(len(self.tracks), bool)
        outliers[sel[~two.inliers]] = True
        step.method, step.scale_method = "essential", how
        step.inliers, step.inlier_ratio = two.n_inliers, two.n_inliers / max(len(sel), 1)
        return self.kf.world @ invert(make_transform(two.R, two.t * s)), outliers

    def _pnp(self, mapped: np.ndarray, step: Step, K: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        """PnP of the current frame on the map points of the tracks ``mapped``. Returns
        (T_world_cur, outlier mask over the tracks) or (None, None) with too few inliers."""
        c = self.cfg
        T_cur_w, inl = pnp_pose(self.tracks.Xw[mapped], self.tracks.px[mapped], K,
                                c.pnp_threshold_px)
        if T_cur_w is None or inl.sum() < c.min_pnp_points:
            return None, None
        step.method, step.inliers = "pnp", int(inl.sum())
        step.inlier_ratio = float(inl.mean())
        outliers = np.zeros(len(self.tracks), bool)
        outliers[mapped[~inl]] = True
        return invert(T_cur_w), outliers

    def _rotation_pose(self, R_rot: np.ndarray, rot_inl: np.ndarray, step: Step) -> np.ndarray:
        """The rotation-only pose: the keyframe's orientation turned by ``R_rot``, the position
        held (pure rotation never makes translation)."""
        step.method, step.inliers = "rotation", int(rot_inl.sum())
        step.inlier_ratio = float(rot_inl.mean())
        return make_transform(self.kf.world[:3, :3] @ R_rot.T, self.T_w_last[:3, 3])

    def _keyframe_due(self, want_kf: bool, n_tracks: int) -> bool:
        """A new keyframe where the parallax asks for one or too few tracks are left: fewer than
        ``pose.redetect_fraction`` of ``flow.max_features``; but before the map has started,
        a keyframe that began with fewer than that (a plain scene, a small image) counts its
        own tracks instead. Counted against ``flow.max_features`` alone such a keyframe made
        every frame a keyframe, the parallax from the keyframe never grew and the map never
        started: the position held for good (after a change to a 160x120 image, in a bare
        room)."""
        need = self.flow.max_features * self.cfg.redetect_fraction
        if self.kf_tracks < need and not np.isfinite(self.tracks.Xw[:, 2]).any():
            need = self.kf_tracks * self.cfg.redetect_fraction   # a keyframe short from the start
        return want_kf or n_tracks < need

    # -- scale -----------------------------------------------------------------------------------
    # -- keyframes and the map -------------------------------------------------------------------
    def _restart(self, frame: FrameData, view: View, world: np.ndarray) -> None:
        """``frame`` becomes the keyframe with fresh features and no map (the map's median depth,
        if there was one, carries the scale to the next map)."""
        if view.world is None:
            view.world = world.copy()
        self.K = view.camera.K
        self.kf = Keyframe(frame.stamp_ns, view.world.copy(),
                            (view.grey.shape[1], view.grey.shape[0]), frame.depth)
        self.win = [view.world.copy()]
        self._set_tracks(self._detect(view.grey, self.flow.max_features))
        self.kf_tracks = len(self.tracks)
        self._lift_keyframe(frame, view, restart=True)
        if self.ground is not None:
            self.ground.restart(view.grey, view.camera.K, view.world)
        self.last, self.last_stamp = view, frame.stamp_ns
        self.T_w_last = view.world.copy()

    def _detect(self, grey: np.ndarray, count: int, existing: np.ndarray | None = None
                ) -> np.ndarray:
        f = self.flow
        return detect_features(grey, count, f.min_distance_px, existing=existing,
                               grid=(f.grid_cols, f.grid_rows), method=f.detector)

    def _new_keyframe(self, cur: FrameData, vc: View, T_w_cur: np.ndarray,
                      placed: bool = True) -> np.ndarray:
        """``cur`` becomes the keyframe: the window takes it, tracks seen from two keyframes of
        the window or more are triangulated from all of them, features are topped up.

        A keyframe not ``placed`` (the rotation-only pose, made a keyframe because too few
        tracks are left: the orientation is measured, the position held where the camera
        may have moved) starts the window again at itself and triangulates nothing: rays
        from a held position against the earlier keyframes make points at any depth (after a
        fast turn the map's scale fell 3.6 times this way), while the map points it already
        has keep carrying the map's pose and scale to the next frames."""
        if not placed:
            self.tracks.slide_window(len(self.win))
            self.win = []
        elif self.unlinked and len(self.win) > 1:
            # this step shares no map point with the window: its keyframes' geometry is not
            # tied to the new one's, so the window starts again at the keyframe
            self.tracks.slide_window(len(self.win) - 1)
            self.win = self.win[-1:]
        if len(self.win) >= self.tracks.obs.shape[1]:      # slide: the oldest keyframe leaves
            self.win = self.win[1:]
            self.tracks.slide_window()
        self.win.append(T_w_cur.copy())
        self.tracks.obs[:, len(self.win) - 1] = bearings(self.tracks.px, vc.camera.K)
        self.ba_ms = None
        if placed and len(self.tracks):
            self._triangulate_window(vc.camera.K, T_w_cur)
            if self.ground is not None:
                T_w_cur = self._ground_rescale(vc, T_w_cur, cur.stamp_ns)
            T_w_cur = self._bundle_adjust(vc.camera.K, T_w_cur)
        self.tracks.px_kf = self.tracks.px.copy()
        self.kf = Keyframe(cur.stamp_ns, T_w_cur.copy(), (vc.grey.shape[1], vc.grey.shape[0]),
                            cur.depth)
        self._measure_map_per_network(self.kf)
        if self.cfg.relocalisation_keyframes > 0:
            self.memory.add(cur.stamp_ns, vc.grey, T_w_cur, self.tracks.px, self.tracks.Xw,
                            self.cfg.min_pnp_points)
        missing = self.flow.max_features - len(self.tracks)
        if missing > 0.1 * self.flow.max_features:
            self._append_tracks(self._detect(vc.grey, missing, existing=self.tracks.px))
        self._lift_keyframe(cur, vc)
        self.kf_tracks = len(self.tracks)
        return T_w_cur

    def _triangulate_window(self, K: np.ndarray, T_w_cur: np.ndarray) -> None:
        """Map points of the tracks from every keyframe of the window that saw them (the newest
        is ``T_w_cur``, its rays already stored); map points behind the new keyframe or off
        their track are dropped."""
        c, tr = self.cfg, self.tracks
        m = len(self.win)
        X, ang = triangulate_multiview(np.stack([T[:3, :3] for T in self.win]),
                                       np.stack([T[:3, 3] for T in self.win]),
                                       tr.obs[:, :m], 1.0 / (0.5 * (K[0, 0] + K[1, 1])))
        good = np.isfinite(X[:, 2]) & (ang >= c.min_triangulation_angle_deg)
        tr.Xw[good] = X[good]
        tr.lifted[good] = False
        mapped = np.flatnonzero(np.isfinite(tr.Xw[:, 2]))
        if len(mapped):                # a map point behind the camera or off its track is wrong
            Xc = transform_points(invert(T_w_cur), tr.Xw[mapped])
            bad = (Xc[:, 2] <= 0) | (np.linalg.norm(project(Xc, K) - tr.px[mapped], axis=1)
                                     > 3 * c.pnp_threshold_px)
            tr.Xw[mapped[bad]] = np.nan
            if (~bad).sum() >= 10:
                self.map_median_depth = float(np.median(Xc[~bad, 2]))
