"""What a training run writes as it goes: TensorBoard scalars and sample images under
``<out_dir>/tb`` and the same scalars as JSON lines in ``<out_dir>/log.jsonl`` (rank 0 only)."""
from __future__ import annotations

import json
from pathlib import Path


class Logger:
    """TensorBoard scalars/images and a JSON-lines log under ``out_dir`` (rank 0 only)."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.enabled = enabled
        self.writer = None
        self.jsonl = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(Path(out_dir) / "tb"))
            except Exception:  # noqa: BLE001 - tensorboard missing: keep the JSON log
                self.writer = None
            self.jsonl = open(Path(out_dir) / "log.jsonl", "a")

    def scalars(self, step: int, values: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items() if v is not None}
        if self.writer is not None:
            for k, v in clean.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, step)
        self.jsonl.write(json.dumps({"step": step, "kind": prefix, **clean}) + "\n")
        self.jsonl.flush()

    def images(self, step: int, batch: dict, out: dict) -> None:
        if not self.enabled or self.writer is None:
            return
        tgt = batch["images"][0, 1].detach().float().cpu().clamp(0, 1)
        disp = out["disp"][0].float().cpu()
        disp = (disp - disp.min()) / (disp.max() - disp.min() + 1e-7)
        self.writer.add_image("sample/target", tgt, step)
        self.writer.add_image("sample/disparity", disp, step)
        self.writer.add_image("sample/warped_prev", out["warped"][0][0].float().cpu().clamp(0, 1),
                              step)
        if out.get("mask") is not None:
            self.writer.add_image("sample/automask", out["mask"][0].float().cpu(), step)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()
