"""How the keyframe tracker's map gets its scale: each new keyframe's step scaled through the
map points it shares with the window (or the learned depth, or the scene's median depth), the
first map lifted from the learned depth, and the ground's camera height measured on the road
(``pose.scale_source``). A part of ``GeometricPose`` (``vode_ros/tracker.py``), kept apart
because it is one idea; it uses the tracker's state (tracks, window, keyframe, configuration)."""
from __future__ import annotations

from collections import deque

import numpy as np

from vode_ros.depth import sample_depth
from vode_ros.geometry import invert, rotation_angle_deg, transform_points
from vode_ros.multiview import (
    TwoView,
    bearings,
    fit_ground_plane,
    median_scale,
    normalise,
    translation_with_covariance,
)
from vode_ros.pose import FrameData
from vode_ros.tracks import View


class MapScale:
    """Scale steps of ``GeometricPose`` (mixed into it; not used on its own)."""

    def _scale(self, two: TwoView, idx: np.ndarray, X0: np.ndarray, K: np.ndarray
               ) -> tuple[float, str]:
        """Length of the unit two-view translation whose inliers ``idx`` triangulated to ``X0``
        (keyframe frame), and how it was found: the learned depth (scale source 'depth'), the
        map points shared with the new triangulation (the depth ratio and the translation fit,
        by inverse variance: docs/design.md), or the scene's median depth."""
        z = X0[:, 2]
        tr, kf = self.tracks, self.kf
        if self.scale_source == "depth" and kf.depth is not None:
            s = median_scale(sample_depth(kf.depth, tr.px_kf[idx], kf.size), z)
            if np.isfinite(s):
                return s, "depth"
        shared = np.isfinite(tr.Xw[idx, 2])
        self.unlinked = shared.sum() < self.cfg.min_shared_points
        if not self.unlinked:
            Xk = transform_points(invert(kf.world), tr.Xw[idx[shared]])
            s_depth = median_scale(Xk[:, 2], z[shared])
            t, cov = translation_with_covariance(two.R, Xk, normalise(tr.px[idx[shared]], K),
                                                 1.0 / K[0, 0])
            s_map = float(t @ two.t) if t is not None else float("nan")
            if np.isfinite(s_depth) and np.isfinite(s_map) and s_map > 0:
                return self._believable(_combine(
                    s_depth, _log_ratio_sigma(Xk[:, 2], z[shared]), s_map,
                    float(np.sqrt(max(two.t @ cov @ two.t, 0.0))) / s_map), "shared points")
            if np.isfinite(s_depth):
                return self._believable(s_depth, "shared points")
        # no map in common: the learned depth at the keyframe, in the map's unit as the recent
        # keyframes with a map measured it (the network's depth holds from one view to the
        # next where the scene's median depth does not: a turn from a wall to a street)
        learned = sample_depth(kf.depth, tr.px_kf[idx], kf.size) if kf.depth is not None \
            else None
        if self.map_per_network is not None and learned is not None:
            ok = np.isfinite(learned) & (learned > 0) & (z > 0)
            if ok.sum() >= self.cfg.min_shared_points:
                return float(np.median(self.map_per_network * learned[ok] / z[ok])), \
                    "learned depth"
        # else keep the scene's median depth (first map: the learned depth's)
        target = self.map_median_depth
        if target is None and learned is not None:
            d = learned[np.isfinite(learned) & (learned > 0)]
            target = float(np.median(d)) if len(d) else None
        return (target or 1.0) / float(np.median(z)), "median depth"

    def _scale_points(self, two: TwoView, idx: np.ndarray, need: int) -> np.ndarray:
        """Which of the two-view inliers ``idx`` the step's scale is measured on: those with a
        parallax angle of at least ``pose.min_triangulation_angle_deg`` and, where at least
        ``need // 2`` of them (``pose.min_shared_points`` of those on the map) remain, of at
        least ``pose.triangulation_angle_per_turn`` times the rotation between the two views.
        A rotation's error grows with the turn (the camera model, rolling shutter, blur), and
        near the turn's own size it moves every depth of a low-parallax point, so the scale is
        measured on the points whose parallax is large against the turn; without enough of
        them it stays on every point (a step left unlinked from the map is worse)."""
        c = self.cfg
        good = two.angle >= c.min_triangulation_angle_deg
        if c.triangulation_angle_per_turn <= 0:
            return good
        turn_deg = rotation_angle_deg(two.R)
        strict = two.angle >= max(c.min_triangulation_angle_deg,
                                  c.triangulation_angle_per_turn * turn_deg)
        if strict.sum() >= need // 2 and \
                np.isfinite(self.tracks.Xw[idx[strict], 2]).sum() >= c.min_shared_points:
            return strict
        return good

    def _believable(self, s: float, how: str) -> tuple[float, str]:
        """The step's scale ``s`` found ``how``, unless the camera has been moving on each of
        the last five frames and ``s`` implies a speed more than ``pose.max_speed_change``
        times their median, or less than its inverse: then the recent speed carries the step
        (a burst's low-parallax points triangulated through a wrong rotation can make the
        shared-point scale a hundred times too large; a camera moving steadily does not
        change its speed so much between two keyframes)."""
        limit = self.cfg.max_speed_change
        recent = list(self.speeds)[-5:]
        if limit <= 0 or len(recent) < 5 or min(recent) <= 0 or self.last_stamp is None:
            return s, how
        dt = (self.last_stamp - self.kf.stamp_ns) * 1e-9
        expected = float(np.median(recent)) * dt
        if dt <= 0 or expected / limit <= s <= expected * limit:
            return s, how
        return expected, "recent speed"

    def _ground_rescale(self, vc: View, T_w_cur: np.ndarray, stamp_ns: int) -> np.ndarray:
        """Scale source 'ground': measure the camera height over the road between the last
        keyframes and this one (``vode_ros.scale.ground``) and rescale the map and the window by
        the filtered correction about the point it names (the first time the previous keyframe:
        the step that measured it comes out in metres; later the current camera: the pose does
        not jump). Returns the (rescaled) current pose."""
        first = self.ground.status.updates == 0
        f, c = self.ground.keyframe(vc.grey, vc.camera.K, T_w_cur, stamp_ns,
                                    guess=self._sparse_ground_height(T_w_cur) if first else None)
        if f == 1.0:
            return T_w_cur
        self.tracks.Xw = c + f * (self.tracks.Xw - c)
        for T in self.win:
            T[:3, 3] = c + f * (T[:3, 3] - c)
        if self.map_median_depth is not None:
            self.map_median_depth *= f
        self.network_ratios = deque((r * f for r in self.network_ratios),
                                    maxlen=self.network_ratios.maxlen)
        T_w_cur = T_w_cur.copy()
        T_w_cur[:3, 3] = c + f * (T_w_cur[:3, 3] - c)
        return T_w_cur

    def _measure_map_per_network(self, kf) -> None:
        """The map's depth over the learned depth at keyframe ``kf`` (median over its map
        points): the median over the recent keyframes that had enough map points carries the
        map's unit to a step that shares no map point (``map_per_network``; the network's own
        scale wanders from image to image, the median over several steadies it)."""
        if kf.depth is None:
            return
        tr = self.tracks
        mapped = np.flatnonzero(tr.triangulated)
        if len(mapped) < self.cfg.min_shared_points:
            return
        z = transform_points(invert(kf.world), tr.Xw[mapped])[:, 2]
        d = sample_depth(kf.depth, tr.px_kf[mapped], kf.size)
        ok = np.isfinite(d) & (d > 0) & (z > 0)
        if ok.sum() >= self.cfg.min_shared_points:
            self.network_ratios.append(float(np.median(z[ok] / d[ok])))

    @property
    def map_per_network(self) -> float | None:
        return float(np.median(self.network_ratios)) if self.network_ratios else None

    def _sparse_ground_height(self, T_w_cur: np.ndarray) -> float | None:
        """A first guess of the camera height in the map's unit: a plane through the map points
        below the camera (biased on roads; only the dense search's starting point)."""
        mapped = np.isfinite(self.tracks.Xw[:, 2])
        if mapped.sum() >= 10:
            g = fit_ground_plane(transform_points(invert(T_w_cur), self.tracks.Xw[mapped]))
            if g is not None:
                return float(g[0])
        return 0.1 * self.map_median_depth if self.map_median_depth else None

    def _lift_keyframe(self, frame: FrameData, view: View, restart: bool = False) -> None:
        """Map points from the learned depth for the new keyframe's tracks without one: always
        with the learned depth as the scale source (its unit is the map's); else
        (``pose.map_from_learned_depth``) after a restart, or where the keyframe has fewer
        than ``pose.min_pnp_points`` map points, in the map's unit through the map's depth
        over the learned depth at the recent keyframes (``map_per_network``; none before a
        map has measured it). Without them the rotation-only pose held the position through
        the frames after a fast turn while the camera moved on, and a map started again after
        a loss took its unit from the scene's median depth."""
        if self.scale_source == "depth":
            self._lift_with_depth(frame, view, 1.0)
        elif self.cfg.map_from_learned_depth and self.map_per_network is not None and (
                restart or np.isfinite(self.tracks.Xw[:, 2]).sum() < self.cfg.min_pnp_points):
            self._lift_with_depth(frame, view, self.map_per_network, need_structure=True)

    def _lift_with_depth(self, frame: FrameData, view: View, factor: float,
                         need_structure: bool = False) -> None:
        """Map points from the learned depth at the keyframe, times ``factor``, for the
        tracks without one. With ``need_structure`` (a triangulated map) they are marked
        ``lifted``, not the map's own measurement (``map_points`` leaves them out), and a depth
        that is the same at every track (no structure: a plane facing the camera, whatever
        the scene) lifts nothing."""
        if frame.depth is None:
            return
        tr = self.tracks
        miss = np.flatnonzero(~np.isfinite(tr.Xw[:, 2]))
        if not len(miss):
            return
        d = factor * sample_depth(frame.depth, tr.px_kf[miss], self.kf.size)
        ok = np.isfinite(d) & (d > 0)
        if need_structure and (ok.sum() < self.cfg.min_pnp_points or
                               np.ptp(np.log(d[ok])) < 1e-3):
            return
        X = bearings(tr.px_kf[miss], view.camera.K)
        X = X / X[:, 2:3] * d[:, None]
        X[~ok] = np.nan
        tr.Xw[miss] = transform_points(self.kf.world, X)
        if need_structure:                 # the map is triangulated: these points are not
            tr.lifted[miss] = ok


def _log_ratio_sigma(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Standard error of the median log ratio (MAD-based): the depth ratio's uncertainty."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(reference / estimate)
    r = r[np.isfinite(r)]
    if len(r) < 3:
        return float("inf")
    return float(1.4826 * np.median(np.abs(r - np.median(r))) * 1.2533 / np.sqrt(len(r)))


def _combine(s_a: float, sig_a: float, s_b: float, sig_b: float) -> float:
    """Two scale estimates (their relative standard errors) averaged in log scale by inverse
    variance."""
    wa = 1.0 / max(sig_a, 1e-6) ** 2
    wb = 1.0 / max(sig_b, 1e-6) ** 2
    if not np.isfinite(wa + wb) or wa + wb <= 0:
        return float(np.sqrt(s_a * s_b))
    return float(np.exp((wa * np.log(s_a) + wb * np.log(s_b)) / (wa + wb)))
