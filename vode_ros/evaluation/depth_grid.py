"""The frames of a sequence shown in ``depth.png``: up to ``GRID_SAMPLES`` spread over the run,
preferring frames with ground-truth depth, kept as thumbnails while the run goes."""
from __future__ import annotations

import numpy as np

GRID_SAMPLES = 4


def thumbnail(image: np.ndarray, max_width: int = 320) -> np.ndarray:
    import cv2
    h, w = image.shape[:2]
    if w <= max_width:
        return image.copy()
    s = max_width / w
    interp = cv2.INTER_AREA if image.ndim == 3 else cv2.INTER_NEAREST
    return cv2.resize(image, (max_width, max(1, round(h * s))), interpolation=interp)


class DepthGrid:
    """Keeps up to ``n`` frames spread over the sequence for the depth grid. For each target
    position it takes the first frame at or after it that has ground-truth depth; failing that
    (none before the next target), the latest one with ground-truth depth since the previous
    sample, else the frame at the target."""

    def __init__(self, total: int, n: int = GRID_SAMPLES):
        n = max(1, min(n, total))
        self.targets = sorted(set(np.linspace(0, total - 1, n).round().astype(int).tolist()))
        self.k = 0
        self.fallback = None          # the frame at the target (no ground-truth depth)
        self.recent_gt = None         # the latest frame with ground-truth depth, not yet used
        self.samples: list[dict] = []

    @staticmethod
    def _sample(index, image, pred, gt) -> dict:
        gt = None if gt is None else thumbnail(gt)
        pred = thumbnail(pred)
        if gt is not None and pred.shape != gt.shape:     # depth at its working resolution
            import cv2
            pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_NEAREST)
        return {"index": index, "image": thumbnail(image), "pred": pred, "gt": gt}

    def offer(self, position: int, index: int, image, pred, gt) -> None:
        while self.k + 1 < len(self.targets) and position >= self.targets[self.k + 1]:
            self._settle()                        # the next target is reached: settle this one
        if self.k >= len(self.targets):
            return
        if position < self.targets[self.k] or (self.fallback is not None and gt is None):
            if gt is not None:
                self.recent_gt = (index, image, pred, gt)
            return
        if gt is not None:
            self._take(self._sample(index, image, pred, gt))
        else:
            self.fallback = self._sample(index, image, pred, None)

    def _take(self, sample: dict) -> None:
        self.samples.append(sample)
        self.fallback = self.recent_gt = None
        self.k += 1

    def _settle(self) -> None:
        if self.recent_gt is not None:
            self._take(self._sample(*self.recent_gt))
        elif self.fallback is not None:
            self._take(self.fallback)
        else:
            self.k += 1

    def result(self) -> list[dict]:
        if self.k < len(self.targets):
            self._settle()
        return sorted(self.samples, key=lambda smp: smp["index"])


def scale_for_display(samples: list[dict], depth_range: tuple[float, float],
                      depth_scaling: str, metric: bool) -> list[dict]:
    """Samples as ``plots.plot_depth_grid`` shows them: a relative-scale prediction beside
    ground truth median-scaled to it (unless ``depth_scaling`` is none), and a unit note."""
    from vode_ros.evaluation.metrics import valid_depth_mask
    for smp in samples:
        if smp["gt"] is not None and depth_scaling != "none":
            mask = valid_depth_mask(smp["gt"], smp["pred"], *depth_range)
            if mask.any():
                r = float(np.median(smp["gt"][mask]) / np.median(smp["pred"][mask]))
                smp["pred"] = smp["pred"] * r
                smp["pred_note"] = f"(median-scaled x{r:.3g}) [m]"
        else:
            smp.setdefault("pred_note", "[m]" if metric else "[model units]")
    return samples
