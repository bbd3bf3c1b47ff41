"""PNG plots of an evaluation: trajectory vs ground truth, error over time, depth colour maps.

Drawn on matplotlib ``Figure`` objects rendered by the Agg canvas (no pyplot, no display, no global
backend switch), so they work on a headless robot or CI machine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

AXIS_NAMES = "xyz"


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def top_view_axes(gt_xyz: np.ndarray, est_xyz: np.ndarray) -> tuple[int, int]:
    """The two world axes along which the ground truth (or, if it does not move, the estimate)
    extends most: the plane a top view should show."""
    pts = gt_xyz if len(gt_xyz) and np.linalg.norm(np.ptp(gt_xyz, axis=0)) > 0.01 else est_xyz
    if len(pts) == 0:
        return 0, 1
    ext = np.ptp(pts, axis=0)
    a, b = sorted(np.argsort(ext)[::-1][:2])
    return int(a), int(b)


def plot_trajectory(path, gt_xyz: np.ndarray, est_xyz: np.ndarray, title: str = "",
                    subtitle: str = "", unit: str = "m") -> Path:
    """Top view of the aligned estimate over the ground truth (equal axis scale)."""
    a, b = top_view_axes(gt_xyz, est_xyz)
    fig = _figure(6.4, 5.6)
    ax = fig.add_subplot(1, 1, 1)
    if len(gt_xyz):
        ax.plot(gt_xyz[:, a], gt_xyz[:, b], "--", color="0.25", lw=1.6, label="ground truth")
        ax.plot(gt_xyz[0, a], gt_xyz[0, b], "o", color="0.25", ms=6)
    if len(est_xyz):
        ax.plot(est_xyz[:, a], est_xyz[:, b], "-", color="tab:blue", lw=1.4,
                label="estimate (aligned)")
        ax.plot(est_xyz[0, a], est_xyz[0, b], "o", color="tab:blue", ms=4, label="start")
    ax.set_xlabel(f"{AXIS_NAMES[a]} [{unit}]")
    ax.set_ylabel(f"{AXIS_NAMES[b]} [{unit}]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=9)
    return _save(fig, path)


def plot_errors(path, stamps_s: np.ndarray, ate: np.ndarray, rpe_stamps_s: np.ndarray,
                rpe_trans: np.ndarray, rpe_rot_deg: np.ndarray, unit: str = "m",
                title: str = "") -> Path:
    """Absolute error and per-frame relative errors against time."""
    fig = _figure(7.5, 6.4)
    axes = fig.subplots(3, 1, sharex=True)
    axes[0].plot(stamps_s, ate, color="tab:red", lw=1.2)
    axes[0].set_ylabel(f"ATE [{unit}]")
    if len(ate):
        axes[0].axhline(float(np.sqrt(np.mean(np.square(ate)))), color="0.3", ls=":", lw=1,
                        label="rmse")
        axes[0].legend(loc="upper left", fontsize=8)
    axes[1].plot(rpe_stamps_s, rpe_trans, color="tab:blue", lw=1.0)
    axes[1].set_ylabel(f"RPE trans / frame [{unit}]")
    axes[2].plot(rpe_stamps_s, rpe_rot_deg, color="tab:green", lw=1.0)
    axes[2].set_ylabel("RPE rot / frame [deg]")
    axes[2].set_xlabel("time since start [s]")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[0].set_title(title, fontsize=9)
    return _save(fig, path)


def plot_depth_grid(path, samples: list[dict], title: str = "") -> Path:
    """Rows of image | predicted depth | ground-truth depth (when any sample has one).

    A sample is ``{"index", "image" (HxWx3 uint8), "pred" (HxW), "gt" (HxW or None), "pred_note"}``;
    prediction and ground truth of a row share one colour scale."""
    import matplotlib

    has_gt = any(s.get("gt") is not None for s in samples)
    cols = 3 if has_gt else 2
    rows = max(1, len(samples))
    first = samples[0]["image"] if samples else np.zeros((48, 64, 3), np.uint8)
    aspect = first.shape[0] / max(first.shape[1], 1)
    fig = _figure(3.3 * cols, max(2.2, 3.3 * aspect * rows + 0.6))
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    cmap = matplotlib.colormaps["turbo"].with_extremes(bad="black")
    for r, s in enumerate(samples):
        pred = np.asarray(s["pred"], float)
        gt = s.get("gt")
        ref = gt if gt is not None and np.isfinite(gt).any() else pred
        finite = ref[np.isfinite(ref)]
        lo, hi = (np.percentile(finite, (2, 98)) if finite.size else (0.0, 1.0))
        if hi <= lo:
            hi = lo + 1e-3
        axes[r, 0].imshow(s["image"])
        axes[r, 0].set_title(f"frame {s['index']}", fontsize=8)
        im = axes[r, 1].imshow(np.ma.masked_invalid(pred), cmap=cmap, vmin=lo, vmax=hi)
        axes[r, 1].set_title(f"predicted depth {s.get('pred_note', '')}".strip(), fontsize=8)
        if has_gt:
            if gt is not None:
                axes[r, 2].imshow(np.ma.masked_invalid(np.asarray(gt, float)), cmap=cmap,
                                  vmin=lo, vmax=hi)
                axes[r, 2].set_title("ground-truth depth [m]", fontsize=8)
            else:
                axes[r, 2].text(0.5, 0.5, "no ground truth\nfor this frame", ha="center",
                                va="center", fontsize=8)
        fig.colorbar(im, ax=axes[r, cols - 1], shrink=0.8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    if not samples:
        axes[0, 0].text(0.5, 0.5, "no frame processed", ha="center", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
