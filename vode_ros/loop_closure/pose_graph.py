"""A pose graph of keyframes on Sim(3), optimised with gtsam (Levenberg-Marquardt).

Nodes are keyframe poses (similarities from camera to map, ``sim3``). Edges are relative
measurements ``Z_ij ~ S_i^-1 S_j`` with standard deviations in gtsam's Sim(3) tangent order
(rotation rad x3, translation x3, log-scale): odometry edges between consecutive keyframes, loop
edges from verified revisits. Loop edges carry a robust kernel (Cauchy or Huber), so one wrong
loop that slipped through verification pulls on the graph with bounded force; after optimising,
a loop whose whitened residual still exceeds a chi-square bound is switched off and the graph
re-optimised (``optimize``'s ``max_loop_chi2``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from vode_ros.errors import VodeError
from vode_ros.loop_closure import sim3

KERNELS = ("cauchy", "huber", "none")


def _gtsam():
    try:
        import gtsam
    except ImportError as exc:          # pragma: no cover - gtsam is pinned in requirements
        raise VodeError(f"the loop-closure pose graph needs gtsam (pip install gtsam==4.3.0): "
                        f"{exc}") from None
    return gtsam


@dataclass
class Edge:
    i: int
    j: int
    measurement: np.ndarray          # 4x4 similarity: keyframe j in keyframe i
    sigmas: np.ndarray               # (7,): rotation (rad) x3, translation x3, log-scale
    kind: str = "odometry"           # odometry | loop
    active: bool = True
    chi2: float = 0.0                # whitened squared residual after the last optimisation
    info: dict = field(default_factory=dict)


@dataclass
class OptimizeResult:
    iterations: int
    error_before: float
    error_after: float
    ms: float
    switched_off: list             # loop edges switched off as inconsistent


class PoseGraph:
    def __init__(self, kernel: str = "cauchy", kernel_width: float = 1.0,
                 max_iterations: int = 100):
        if kernel not in KERNELS:
            raise VodeError(f"robust kernel '{kernel}' is unknown; expected one of "
                            f"{', '.join(KERNELS)}")
        self.kernel, self.kernel_width, self.max_iterations = kernel, kernel_width, max_iterations
        self.nodes: dict[int, np.ndarray] = {}
        self.priors: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.edges: list[Edge] = []

    # -- building --------------------------------------------------------------------------------
    def add_node(self, key: int, initial: np.ndarray) -> None:
        self.nodes[int(key)] = np.asarray(initial, float).copy()

    def add_prior(self, key: int, pose: np.ndarray, sigmas) -> None:
        self.priors[int(key)] = (np.asarray(pose, float).copy(), np.asarray(sigmas, float))

    def add_edge(self, edge: Edge) -> Edge:
        if edge.i not in self.nodes or edge.j not in self.nodes:
            raise KeyError(f"edge {edge.i}->{edge.j} names a node not in the graph")
        edge.sigmas = np.asarray(edge.sigmas, float).reshape(7)
        self.edges.append(edge)
        return edge

    def loops(self, active_only: bool = False) -> list[Edge]:
        return [e for e in self.edges if e.kind == "loop" and (e.active or not active_only)]

    # -- residuals -------------------------------------------------------------------------------
    def residual(self, edge: Edge, nodes: dict | None = None) -> np.ndarray:
        """Whitened tangent residual of an edge at ``nodes`` (default: the current estimate)."""
        gtsam = _gtsam()
        nodes = self.nodes if nodes is None else nodes
        pred = sim3.inverse(nodes[edge.i]) @ nodes[edge.j]
        err = gtsam.Similarity3.Logmap(sim3.to_gtsam(sim3.inverse(edge.measurement) @ pred))
        return np.asarray(err, float) / edge.sigmas

    def chi2(self, edge: Edge) -> float:
        return float(np.sum(self.residual(edge) ** 2))

    # -- optimisation ----------------------------------------------------------------------------
    def _noise(self, sigmas, robust: bool):
        gtsam = _gtsam()
        base = gtsam.noiseModel.Diagonal.Sigmas(np.asarray(sigmas, float))
        if not robust or self.kernel == "none":
            return base
        est = gtsam.noiseModel.mEstimator
        k = est.Cauchy.Create(self.kernel_width) if self.kernel == "cauchy" else \
            est.Huber.Create(self.kernel_width)
        return gtsam.noiseModel.Robust.Create(k, base)

    def _solve(self) -> tuple[int, float, float]:
        gtsam = _gtsam()
        graph = gtsam.NonlinearFactorGraph()
        values = gtsam.Values()
        for key, pose in self.nodes.items():
            values.insert(key, sim3.to_gtsam(pose))
        for key, (pose, sig) in self.priors.items():
            if key in self.nodes:
                graph.add(gtsam.PriorFactorSimilarity3(key, sim3.to_gtsam(pose),
                                                       self._noise(sig, False)))
        for e in self.edges:
            if e.active:
                graph.add(gtsam.BetweenFactorSimilarity3(
                    e.i, e.j, sim3.to_gtsam(e.measurement), self._noise(e.sigmas,
                                                                        e.kind == "loop")))
        params = gtsam.LevenbergMarquardtParams()
        params.setMaxIterations(self.max_iterations)
        params.setRelativeErrorTol(1e-7)
        params.setAbsoluteErrorTol(1e-9)
        opt = gtsam.LevenbergMarquardtOptimizer(graph, values, params)
        before = graph.error(values)
        result = opt.optimize()
        after = graph.error(result)
        for key in self.nodes:
            self.nodes[key] = sim3.from_gtsam(result.atSimilarity3(key))
        return int(opt.iterations()), float(before), float(after)

    def optimize(self, max_loop_chi2: float | None = None) -> OptimizeResult:
        """Optimise; then, while the worst active loop's chi-square exceeds ``max_loop_chi2``,
        switch it off and optimise again."""
        t0 = time.perf_counter()
        its, before, after = self._solve()
        switched = []
        while max_loop_chi2 is not None:
            active = self.loops(active_only=True)
            for e in self.edges:
                e.chi2 = self.chi2(e) if e.active else e.chi2
            worst = max(active, key=lambda e: e.chi2, default=None)
            if worst is None or worst.chi2 <= max_loop_chi2:
                break
            worst.active = False
            switched.append(worst)
            n, _, after = self._solve()
            its += n
        if max_loop_chi2 is None:
            for e in self.edges:
                if e.active:
                    e.chi2 = self.chi2(e)
        return OptimizeResult(its, before, after, (time.perf_counter() - t0) * 1e3, switched)
