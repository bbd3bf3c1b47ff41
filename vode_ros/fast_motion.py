"""What the keyframe tracker does where Lucas-Kanade cannot follow the features (a turn or a
jump faster than the prediction) and after a loss: Lucas-Kanade started again from ORB matches
between the last frame and this one, and frames placed by ORB matches against the recent
keyframes (``vode_ros.wide_baseline``), in the map's frame and scale. A part of
``GeometricPose`` (``vode_ros/tracker.py``), kept apart because it is one idea; it uses the
tracker's state (configuration, tracks, keyframe memory, last frame and pose)."""
from __future__ import annotations

import numpy as np

from vode_ros.flow import Tracks as FlowTracks
from vode_ros.flow import track_lk
from vode_ros.pose import FrameData
from vode_ros.tracks import Step, View
from vode_ros.wide_baseline import Recovery, epipolar_distance

REMATCH_THRESHOLD_PX = 2.0    # ORB matches' distance from their epipolar lines (working image)


class FastMotion:
    """Recovery steps of ``GeometricPose`` (mixed into it; not used on its own)."""

    def _track_after_turn(self, vc: View, tr: FlowTracks) -> FlowTracks:
        """Lucas-Kanade lost most features (a motion faster than the prediction): ORB matches
        between the last frame and this one predict where the features went, and
        Lucas-Kanade starts again from there; its tracks off the matches' epipolar geometry
        are dropped, and the run with more survivors is kept."""
        f = self.flow
        tracks = self.tracks
        got = self.memory.matched_motion(self.last.grey, vc.grey, tracks.px,
                                         REMATCH_THRESHOLD_PX, self.cfg.min_tracks)
        if got is None:
            return tr
        guess, F = got
        again = track_lk(self.last.grey, vc.grey, tracks.px, f.lk_window, f.lk_levels,
                         f.fb_threshold_px, guess)
        # a track Lucas-Kanade settled off the matches' epipolar geometry is a wrong one
        again.ok &= epipolar_distance(F, tracks.px, again.p1) <= REMATCH_THRESHOLD_PX
        if again.ok.sum() <= tr.ok.sum():
            return tr
        self.rematched = True
        return again

    def _recover(self, cur: FrameData, vc: View, K: np.ndarray, lk_failed: bool
                 ) -> tuple[np.ndarray, Step] | None:
        """Place ``cur`` by ORB matches against the recent keyframes (``vode_ros.wide_baseline``)
        and restart the tracks there, in the map's frame and scale: where Lucas-Kanade lost the
        features, or it kept too few, or after a loss (then only a pose on the map counts).
        None where nothing verifies (tracking goes on as it can)."""
        if len(self.memory) == 0:
            return None
        relocalising = self.relocalise_left > 0
        if relocalising:
            self.relocalise_left -= 1
        # after a loss, the keyframes from before it (the new map's own would always verify
        # first and end the relocalisation at once, the old map forgotten); where Lucas-Kanade
        # failed too, the newer ones after them
        rec = self.memory.recover(vc.grey, K, self.T_w_last[:3, 3], self.cfg.pnp_threshold_px,
                                  self.cfg.min_pnp_points,
                                  before_ns=self.lost_at_ns if relocalising else None,
                                  then_newer=lk_failed)
        if rec is None or (rec.method != "pnp" and not lk_failed):
            return None
        self._adopt(cur, vc, rec)
        self.relocalise_left = 0
        step = Step(method=f"wide-baseline {rec.method}", keyframe=True, tracks=len(self.tracks),
                    inliers=rec.inliers, inlier_ratio=rec.inliers / max(rec.matches, 1),
                    note=f"matched to the keyframe of {rec.keyframe.stamp_ns} ns")
        self.T_w_last = rec.world.copy()
        return rec.world.copy(), step

    def _adopt(self, cur: FrameData, vc: View, rec: Recovery) -> None:
        """``cur``, placed by ``rec``, becomes the keyframe; its verified matches become tracks
        with their map points, fresh features top them up."""
        vc.world = rec.world.copy()
        self._restart(cur, vc, rec.world)
        if rec.method == "pnp":
            matched = self._new_tracks(rec.px)
            matched.Xw = rec.Xw.copy()
            fresh = self._detect(vc.grey, self.flow.max_features - len(matched), existing=rec.px)
            self.tracks = matched.extended(self._new_tracks(fresh))
            if self.cfg.relocalisation_keyframes > 0:       # the next fast frame matches it
                self.memory.add(cur.stamp_ns, vc.grey, rec.world, self.tracks.px,
                                self.tracks.Xw, self.cfg.min_pnp_points)
        self.kf_tracks = len(self.tracks)
