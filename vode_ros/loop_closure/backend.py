"""The loop-closure back-end: keyframes, place recognition, verification, pose graph, map->odom.

``LoopClosure.add(estimate, image)`` is called after every ``VisualOdometry.process`` (by the
node's worker and by ``vode process``). It is cheap: it decides whether the frame is a keyframe
(``keyframes.keyframe_due``: rotation, translation against the scene depth, or time since the
last keyframe) and, if so, puts it on a bounded queue (a full queue drops the keyframe and counts
it; the odometry never waits). Everything else runs in the back-end's own thread, at a lower
scheduling priority:

1. ORB features (``features``), their depth (``depth_source``: the predicted depth sampled at
   the keypoints, or depths triangulated from neighbouring keyframes and the odometry between
   them, in the odometry's units), and a bag-of-binary-words vector (``vocabulary``);
2. an odometry edge to the previous keyframe of the session in the Sim(3) pose graph;
3. place recognition (``place_recognition``): DBoW2-style L1 scores against keyframes older than
   ``min_gap_keyframes``, above ``min_score`` and ``min_score_ratio`` x the score with the
   previous keyframe, best per neighbourhood, kept when consistent over ``consistency``
   consecutive keyframes;
4. geometric verification (``verification.verify``: PnP RANSAC on points lifted with the
   stored depth) and a plausibility check against the odometry (``corrections``: the correction
   a loop asks for must fit the drift the odometry could have made);
5. the loop edge goes into the graph, which is optimised (gtsam, robust kernel; loops left
   inconsistent are switched off), and the corrected keyframe poses and ``map_to_odom`` are
   published for readers (a short lock, never held during computation).

Frames and poses: keyframe poses are camera optical frames. ``map_to_odom`` is the rigid
transform ``C_k O_k^-1`` at the newest keyframe k (C: corrected camera pose in the map, rigid
part; O: odometry camera pose), so that ``map_to_odom @ odom_pose`` is the corrected pose of the
current frame; the odometry itself never jumps (REP-105). A keyframe's correction is a
similarity (scale drift is corrected too): ``correct`` applies, per frame, the correction of the
latest keyframe at or before it (``C_k O_k^-1 O_f``, the relative motion scaled by the
keyframe's scale correction).

This module holds the queue, the thread and the state they share; the keyframe map file is
``map_file``.

Sessions: the first session is anchored (map = odom at its first keyframe). ``reset`` (the
odometry restarted) begins a new session. ``load`` replaces the state by a saved keyframe map
whose keyframes stay fixed; the live session that follows is not anchored until a loop to the map
is verified (relocalisation): until then ``map_to_odom`` is identity and ``relocalised`` False.
"""
from __future__ import annotations

import collections
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vode_ros.errors import VodeError
from vode_ros.loop_closure import corrections, map_file, sim3
from vode_ros.loop_closure.corrections import ANCHOR_SIGMA, WEAK_SIGMA
from vode_ros.loop_closure.features import OrbExtractor
from vode_ros.loop_closure.keyframes import (
    Keyframe,
    LoopEvent,
    keyframe_due,
    sample_at,
    session_keyframes,
)
from vode_ros.loop_closure.place_recognition import TemporalConsistency, candidates
from vode_ros.loop_closure.pose_graph import Edge, PoseGraph
from vode_ros.loop_closure.triangulation import merge_depths, triangulate_pair
from vode_ros.loop_closure.verification import VerificationParams, verify
from vode_ros.loop_closure.vocabulary import BinaryVocabulary, BowDatabase


@dataclass
class _Pending:
    stamp_ns: int
    odom_pose: np.ndarray
    image: np.ndarray
    depth: np.ndarray | None
    camera: object
    scale: str
    lost_before: bool
    session: int


def _lower_priority(kind: str) -> None:
    """Lower the calling thread's scheduling priority (Linux: a thread id is a valid pid for
    the scheduler calls); elsewhere, or when refused, nothing changes."""
    tid = threading.get_native_id()
    try:
        if kind == "idle" and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        elif kind in ("idle", "low") and hasattr(os, "setpriority"):
            os.setpriority(os.PRIO_PROCESS, tid, 10)
    except (OSError, AttributeError):
        pass


class LoopClosure:
    """The back-end. ``cfg`` is ``VodeConfig.loop_closure`` (or any object with its fields)."""

    def __init__(self, cfg, vocabulary: BinaryVocabulary | None = None, start: bool = True,
                 blocking: bool = False):
        self.cfg = cfg
        self.blocking = blocking          # offline runs: add() waits until a keyframe is done
        if vocabulary is None:
            from vode_ros.pipeline import resolve_path
            vocabulary = BinaryVocabulary.load(resolve_path(cfg.vocabulary))
        self.vocab = vocabulary
        self.orb = OrbExtractor(cfg.orb_features, cfg.max_pixels)
        self.verification = VerificationParams(
            min_inliers=cfg.min_inliers, min_inlier_ratio=cfg.min_inlier_ratio,
            pnp_threshold_px=cfg.pnp_threshold_px, max_rotation_deg=cfg.max_rotation_deg,
            max_baseline_ratio=cfg.max_baseline_ratio)
        # front (add) state: only touched by the thread that calls add()/reset()
        self._last_kf: tuple[int, np.ndarray] | None = None
        self._lost_pending = False
        self._session = 0
        # queue between add() and the back-end thread
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self._cv = threading.Condition()
        self._pending = 0
        self._stop = threading.Event()
        # back-end state (keyframes, graph): the back-end thread, save and load
        self._state = threading.RLock()
        self._clear_state()
        # outputs for readers (short lock)
        self._out = threading.Lock()
        self._map_to_odom = np.eye(4)
        self._kf_stamps = np.zeros(0, np.int64)
        self._kf_poses = np.zeros((0, 4, 4))
        self._loop_positions: list[tuple[np.ndarray, np.ndarray]] = []
        self._summary: dict = {"keyframes": 0, "loops_active": 0, "scene_depth": None}
        self._min_session = 0
        self.events: collections.deque = collections.deque(maxlen=200)
        self.version = 0
        self.stats = collections.Counter()
        self.last_error = ""
        self.scene_depth: float | None = None
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    def _clear_state(self) -> None:
        self.keyframes: list[Keyframe] = []
        self._by_id: dict[int, Keyframe] = {}
        self._db = BowDatabase(len(self.vocab))        # row n: self.keyframes[n]
        self.graph = PoseGraph(self.cfg.robust_kernel, self.cfg.robust_kernel_width)
        self._map_edges: list[Edge] = []          # edges of a loaded map (between fixed nodes)
        self._next_id = 0
        self._session_last: dict[int, Keyframe] = {}
        self._anchored: set[int] = set()
        self._consistency = TemporalConsistency(self.cfg.consistency_window,
                                                self.cfg.consistency)
        self._edge_lengths: collections.deque = collections.deque(maxlen=50)
        self._depths: collections.deque = collections.deque(maxlen=10)
        self._fixed_sessions: set[int] = set()
        self._live_last: Keyframe | None = None         # newest keyframe processed live

    # ============================================================================================
    # the odometry side (cheap)
    # ============================================================================================
    def add(self, estimate, image: np.ndarray) -> bool:
        """Offer a frame; returns True when it was queued as a keyframe. Never waits for the
        back-end (unless constructed ``blocking``, for offline runs). ``image`` and
        ``estimate.depth`` are kept by reference: the caller must not modify them afterwards."""
        if self._stop.is_set():
            return False
        if estimate.tracking == "LOST":
            self._lost_pending = True
            return False
        pose = np.asarray(estimate.camera_pose, float)
        if self._last_kf is not None and estimate.stamp_ns < self._last_kf[0]:
            self.reset()                 # time went back: a replay restarted, odometry too
        if self._last_kf is not None:
            dt = (estimate.stamp_ns - self._last_kf[0]) * 1e-9
            if not keyframe_due(self.cfg, dt, self._last_kf[1], pose, self.scene_depth):
                return False
        self._last_kf = (int(estimate.stamp_ns), pose.copy())
        item = _Pending(int(estimate.stamp_ns), pose.copy(), image, estimate.depth,
                        estimate.camera, getattr(estimate, "scale", "relative"),
                        self._lost_pending, self._session)
        self._lost_pending = False
        with self._cv:
            self._pending += 1
        try:
            if self.blocking:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                else:
                    raise queue.Full
            else:
                self._queue.put_nowait(item)
        except queue.Full:
            with self._cv:
                self._pending -= 1
                self._cv.notify_all()
            self.stats["keyframes_dropped"] += 1
            return False
        if self.blocking:
            # offline: the next keyframe decision uses the scene depth this keyframe gives, so
            # the result does not depend on thread timing
            self.flush()
        return True

    def reset(self) -> None:
        """The odometry restarted (a new odom origin): the next keyframe begins a new session."""
        self._session += 1
        self._last_kf = None
        self._lost_pending = False

    # ============================================================================================
    # the thread
    # ============================================================================================
    def start(self) -> None:
        """Start the thread. gtsam is imported here first, in the caller's thread (about 1 s,
        and over 10 s on a loaded machine): imported inside the thread, a stop that came
        during the import waited for it past any shutdown deadline, and an interpreter that
        exited meanwhile aborted."""
        if self._thread is None:
            try:
                import gtsam  # noqa: F401 - here, not at the first loop
            except ImportError:
                pass
            self._thread = threading.Thread(target=self._run, name="vode_loop_closure",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        _lower_priority(getattr(self.cfg, "thread_priority", "normal"))
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                if not self._stop.is_set() and item.session >= self._min_session:
                    self._process(item)
            except Exception as exc:  # noqa: BLE001 - one keyframe must not end the back-end
                self.stats["errors"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                with self._cv:
                    self._pending -= 1
                    self._cv.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued keyframe is processed (offline runs: deterministic results).
        Returns False on timeout or when the thread is not running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._pending > 0:
                if self._thread is None or not self._thread.is_alive():
                    return False
                left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread (queued keyframes are dropped); True when it ended in time."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            return not t.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def queue_length(self) -> int:
        return self._pending

    # ============================================================================================
    # outputs (thread-safe, cheap)
    # ============================================================================================
    def map_to_odom(self) -> np.ndarray:
        with self._out:
            return self._map_to_odom.copy()

    def corrected_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """(stamps_ns (N,), poses (N, 4, 4)): every keyframe (a loaded map's too), camera
        optical frame in the map (rigid part of the correction)."""
        with self._out:
            return self._kf_stamps.copy(), self._kf_poses.copy()

    def loop_edges(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Active loops as pairs of keyframe positions in the map."""
        with self._out:
            return list(self._loop_positions)

    @property
    def relocalised(self) -> bool:
        """False between loading a map and the first verified loop to it."""
        last = self._live_last
        return not self._fixed_sessions or (last is not None and last.session in self._anchored)

    def summary(self) -> dict:
        """Counters for diagnostics and run reports (never waits for the back-end)."""
        with self._out:
            out = dict(self._summary)
        out.update({"loops_accepted": int(self.stats["loops_accepted"]),
                    "loops_rejected": int(self.stats["loops_rejected"]),
                    "loops_switched_off": int(self.stats["loops_switched_off"]),
                    "keyframes_dropped": int(self.stats["keyframes_dropped"]),
                    "queue": self._pending, "errors": int(self.stats["errors"]),
                    "optimisations": int(self.stats["optimisations"]),
                    "optimisation_ms_last": round(float(self.stats.get("optimisation_ms", 0)),
                                                  2),
                    "relocalised": self.relocalised})
        return out

    def correct(self, stamps_ns, odom_poses) -> np.ndarray:
        """Map poses of frames of the live session: each frame gets the correction of the
        latest keyframe at or before it (the first keyframe's before that)."""
        stamps_ns = np.asarray(stamps_ns, np.int64)
        odom_poses = np.asarray(odom_poses, float)
        with self._state:
            session = max((k.session for k in self.keyframes if not k.fixed), default=None)
            live = [k for k in self.keyframes if k.session == session and not k.fixed]
            if not live:
                return odom_poses.copy()
            ks = np.array([k.stamp_ns for k in live])
            corr = [self.graph.nodes[k.id] @ np.linalg.inv(k.odom_pose) for k in live]
        return corrections.correct_frames(ks, corr, stamps_ns, odom_poses)

    # ============================================================================================
    # the back-end's work
    # ============================================================================================
    def _process(self, item: _Pending) -> None:
        c = self.cfg
        feats = self.orb.extract(item.image, item.camera)
        n = len(feats)
        depth = np.full(n, np.nan, np.float32)
        parallax = np.full(n, np.nan, np.float32)
        source = c.depth_source
        if source == "auto":
            source = "predicted" if item.scale == "metric" and item.depth is not None \
                else "triangulated"
        if source == "predicted" and item.depth is not None and n:
            depth = sample_at(item.depth, feats.keypoints, feats.camera.width,
                              feats.camera.height)
        bow = self.vocab.transform_sparse(feats.descriptors)
        with self._state:
            kf = Keyframe(self._next_id, item.session, item.stamp_ns, item.odom_pose, feats,
                          depth, parallax, bow, item.lost_before)
            self._next_id += 1
            self._insert(kf)
            if source == "triangulated":
                self._triangulate(kf)
            valid = kf.depth[np.isfinite(kf.depth)]
            if len(valid) >= 10:
                self._depths.append(float(np.median(valid)))
                self.scene_depth = float(np.median(self._depths))
            accepted = self._detect_and_close(kf)
            self._publish(full=accepted)
        self.stats["keyframes"] += 1

    def _insert(self, kf: Keyframe) -> None:
        prev = self._session_last.get(kf.session)
        if prev is not None:
            rel = np.linalg.inv(prev.odom_pose) @ kf.odom_pose
            self.graph.add_node(kf.id, self.graph.nodes[prev.id] @ rel)
            length = float(np.linalg.norm(rel[:3, 3]))
            kf.path = prev.path + length
            typical = float(np.median(self._edge_lengths)) if self._edge_lengths else length
            self._edge_lengths.append(length)
            sig = corrections.odometry_sigmas(self.cfg, length, typical, kf.lost_before)
            self.graph.add_edge(Edge(prev.id, kf.id, rel, sig, "odometry",
                                     info={"lost": kf.lost_before}))
        else:
            if self.keyframes:
                # a session after a reset (start where the robot last was in the map) or after
                # a map load (unknown until relocalised): held by a weak prior only
                last = self.keyframes[-1]
                init = kf.odom_pose.copy() if self._fixed_sessions else \
                    sim3.rigid(self.graph.nodes[last.id])
                self.graph.add_node(kf.id, init)
                self.graph.add_prior(kf.id, init, np.full(7, WEAK_SIGMA))
                if not self._fixed_sessions:
                    self._anchored.add(kf.session)   # tied to the map by the reset pose
            else:
                self.graph.add_node(kf.id, kf.odom_pose)
                self.graph.add_prior(kf.id, kf.odom_pose, np.full(7, ANCHOR_SIGMA))
                self._anchored.add(kf.session)
        self._session_last[kf.session] = kf
        self._live_last = kf
        self.keyframes.append(kf)
        self._by_id[kf.id] = kf
        self._db.add(*kf.bow)

    def _session_keyframes(self, session: int, before: int, count: int) -> list[Keyframe]:
        return session_keyframes(self.keyframes, session, before, count)

    def _triangulate(self, kf: Keyframe) -> None:
        c = self.cfg
        for nb in self._session_keyframes(kf.session, kf.id, c.triangulation_neighbours):
            T_nb_kf = np.linalg.inv(nb.odom_pose) @ kf.odom_pose
            ia, da, ib, db, par = triangulate_pair(nb.features, kf.features, T_nb_kf,
                                                   c.min_parallax_deg, c.pnp_threshold_px)
            if len(ia):
                merge_depths(nb.depth, nb.parallax, ia, da.astype(np.float32),
                             par.astype(np.float32))
                merge_depths(kf.depth, kf.parallax, ib, db.astype(np.float32),
                             par.astype(np.float32))

    # -- place recognition -----------------------------------------------------------------------
    def _candidates(self, kf: Keyframe) -> list[tuple[int, float]]:
        """Consistent loop candidates of ``kf`` (see ``place_recognition``), best first."""
        prev = self._session_keyframes(kf.session, kf.id, 1)
        prev_kf = prev[0] if prev else None
        cands = candidates(self.cfg, kf, self.keyframes, self._db, self._by_id, prev_kf)
        return self._consistency.filter(kf, prev_kf, cands, self._by_id)

    def _detect_and_close(self, kf: Keyframe) -> bool:
        cands = self._candidates(kf)
        for kid, score in cands[: self.cfg.max_verifications]:
            cand = self._by_id[kid]
            verdict = verify(kf.features, kf.depth, cand.features, cand.depth,
                             self.verification)
            if not verdict.ok:
                self._event(kf, cand, False, f"verification: {verdict.reason}", verdict.inliers,
                            score)
                continue
            ok, why = self._add_loop(cand, kf, verdict.measurement.similarity,
                                     verdict.measurement.median_depth,
                                     np.isfinite(verdict.measurement.scale_spread))
            self._event(kf, cand, ok, why if not ok else f"{verdict.reason}; {why}",
                        verdict.inliers, score)
            if ok:
                return True
        return False

    def _event(self, kf, cand, accepted: bool, reason: str, inliers: int = 0,
               score: float = 0.0) -> None:
        self.stats["loops_accepted" if accepted else "loops_rejected"] += 1
        self.events.append(LoopEvent(kf.stamp_ns, accepted, kf.id, cand.id, reason, inliers,
                                     score))

    # -- the graph -------------------------------------------------------------------------------
    def _add_loop(self, cand: Keyframe, kf: Keyframe, S_c_q: np.ndarray, median_depth: float,
                  has_scale: bool) -> tuple[bool, str]:
        """Check a verified loop against the graph, add it, optimise. (accepted, why)."""
        c = self.cfg
        g = self.graph
        connected = self._connected(cand.session, kf.session)
        if connected:
            pred = sim3.inverse(g.nodes[cand.id]) @ g.nodes[kf.id]
            why = corrections.implausible_loop(c, pred, S_c_q,
                                               corrections.path_length(self.keyframes, cand, kf),
                                               median_depth)
            if why:
                return False, why
        else:
            # relocalisation in a loaded map (or across sessions): move the query's session
            # rigidly onto the map before optimising
            new_q = g.nodes[cand.id] @ S_c_q
            corrections.move_session(g, self.keyframes, kf.session,
                                     new_q @ sim3.inverse(g.nodes[kf.id]))
        sig = corrections.loop_sigmas(c, S_c_q, median_depth, has_scale)
        edge = g.add_edge(Edge(cand.id, kf.id, S_c_q, sig, "loop",
                               info={"stamp_ns": kf.stamp_ns}))
        res = g.optimize(c.max_loop_chi2)
        self.stats["optimisations"] += 1
        self.stats["optimisation_ms"] = res.ms
        for e in res.switched_off:
            if e is not edge:
                self.stats["loops_switched_off"] += 1
                self.events.append(LoopEvent(e.info.get("stamp_ns", 0), False, e.j, e.i,
                                             f"switched off: inconsistent with the graph after "
                                             f"a later loop (chi2 {e.chi2:.1f} > "
                                             f"{c.max_loop_chi2})"))
        if edge in res.switched_off:
            return False, (f"inconsistent with the graph: chi2 {edge.chi2:.1f} > "
                           f"loop_closure.max_loop_chi2 {c.max_loop_chi2}")
        if not connected:
            self._anchored.add(kf.session)
        return True, f"pose graph optimised in {res.ms:.0f} ms ({res.iterations} iterations)"

    def _connected(self, a: int, b: int) -> bool:
        """Whether two sessions are tied together: the same one, or both anchored in the map
        (a session after a reset counts as tied loosely, through the pose where it began)."""
        return a == b or (a in self._anchored and b in self._anchored)

    def _publish(self, full: bool) -> None:
        """Refresh the readers' copies (the caller holds ``_state``)."""
        stamps = np.array([k.stamp_ns for k in self.keyframes], np.int64)
        poses = corrections.rigid_poses(
            np.array([self.graph.nodes[k.id] for k in self.keyframes]).reshape(-1, 4, 4))
        last = self._live_last
        m2o = np.eye(4)
        if last is not None and (last.session in self._anchored or not self._fixed_sessions):
            m2o = corrections.map_to_odom(self.graph.nodes[last.id], last.odom_pose)
        loops = [(sim3.rigid(self.graph.nodes[e.i])[:3, 3], sim3.rigid(self.graph.nodes[e.j])
                  [:3, 3]) for e in self.graph.loops(active_only=True)]
        loop_edges = self.graph.loops()
        summary = {"keyframes": len(self.keyframes),
                   "loops_active": sum(1 for e in loop_edges if e.active),
                   "scene_depth": self.scene_depth}
        with self._out:
            self._kf_stamps, self._kf_poses = stamps, poses
            self._map_to_odom = m2o
            self._loop_positions = loops
            self._summary = summary
            self.version += 1

    # ============================================================================================
    # the keyframe map file
    # ============================================================================================
    def save(self, path) -> dict:
        """Write the keyframe map (npz, ``map_file``) atomically; returns a summary."""
        path = Path(os.path.expanduser(str(path)))
        with self._state:
            kfs = list(self.keyframes)
            if not kfs:
                raise VodeError("no keyframes to save yet: the map is empty")
            edges = list(self._map_edges) + list(self.graph.edges)
            arrays = map_file.map_arrays(kfs, [self.graph.nodes[k.id] for k in kfs], edges,
                                         self.vocab.info)
        map_file.write_map(path, arrays)
        return {"file": str(path), "keyframes": len(kfs),
                "loops": int(sum(1 for e in edges if e.kind == "loop"))}

    def load(self, path) -> dict:
        """Replace the state by a saved keyframe map; its keyframes stay where they were saved.
        The next keyframes form a live session that relocalises on its first verified loop."""
        path = Path(os.path.expanduser(str(path)))
        d = map_file.read_map(path)
        with self._state:
            self._clear_state()
            keyframes = map_file.map_keyframes(d, self.vocab)
            for kf, pose in zip(keyframes, d["kf_map_pose"], strict=True):
                self.keyframes.append(kf)
                self._by_id[kf.id] = kf
                self._db.add(*kf.bow)
                self.graph.add_node(kf.id, pose)
                self.graph.add_prior(kf.id, pose, np.full(7, ANCHOR_SIGMA))
                self._anchored.add(kf.session)
                self._fixed_sessions.add(kf.session)
            self._map_edges.extend(map_file.map_edges(d))
            self._next_id = int(d["kf_id"].max()) + 1 if len(d["kf_id"]) else 0
            top = int(d["kf_session"].max()) if len(d["kf_session"]) else -1
            self._session = max(self._session, top) + 1     # the live session is new
            self._min_session = self._session               # queued older keyframes: dropped
            self._last_kf = None
            self._publish(full=True)
        return {"file": str(path), "keyframes": len(self.keyframes),
                "loops": int(sum(1 for e in self._map_edges if e.kind == "loop"))}
