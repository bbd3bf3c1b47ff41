"""ONNX Runtime sessions and the vode model contract.

A model describes itself in ONNX ``metadata_props``; the runtime configures itself from them and
refuses, with a message saying what was expected, a model that breaks the contract.

Contract version 1 (all values are strings, as ONNX stores them):

======================  =========================================================================
key                     meaning
======================  =========================================================================
vode.contract           ``1``
vode.kind               ``depth`` or ``pose``
vode.input_height       network input height in pixels (int)
vode.input_width        network input width in pixels (int)
vode.input_mean         3 comma-separated floats; the input is ``(rgb / 255 - mean) / std``
vode.input_std          3 comma-separated floats
vode.scale              ``relative`` (up to an unknown factor) or ``metric`` (metres)
vode.output             depth models: ``disparity`` (sigmoid in [0, 1], mapped to depth through
                        the depth range as ``1 / (1/max + (1/min - 1/max) * d)``), ``depth``, or
                        ``affine_inverse_depth``: inverse depth up to an unknown scale and shift,
                        ``a / z + b`` (what MiDaS and Depth Anything export; the odometry aligns
                        it to its map); its inverse is capped to the depth range
vode.min_depth          depth models: smallest depth the model predicts (> 0)
vode.max_depth          depth models: largest depth the model predicts (> min_depth)
vode.pose               pose models: ``axisangle_translation``: output ``(rx, ry, rz, tx, ty, tz)``,
                        a rotation vector (radians) then a translation
vode.pose_direction     pose models: ``current_in_previous``: the pose of the current camera in the
                        previous camera's optical frame (``X_prev = T X_cur``)
vode.trained_on         optional: what data trained it
vode.train_steps        optional: how many optimiser steps trained it
======================  =========================================================================

Tensors (batch 1, NCHW float32, RGB channel order):

* depth: input ``[1, 3, H, W]``; first output ``[1, 1, H, W]``.
* pose: input ``[1, 6, H, W]``: the previous frame's 3 channels, then the current frame's;
  first output ``[1, 6]`` (``[1, 1, 6]`` is accepted).
"""
from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Sequence

import numpy as np

from vode_ros.errors import ModelError

LOG = logging.getLogger(__name__)

CONTRACT_VERSION = "1"
KINDS = ("depth", "pose")
DEPTH_OUTPUTS = ("disparity", "depth", "affine_inverse_depth")
REQUIRED = ("vode.contract", "vode.kind", "vode.input_height", "vode.input_width",
            "vode.input_mean", "vode.input_std", "vode.scale")
REQUIRED_DEPTH = ("vode.output", "vode.min_depth", "vode.max_depth")
REQUIRED_POSE = ("vode.pose", "vode.pose_direction")


@dataclass(frozen=True)
class ModelSpec:
    """What a model file says of itself, checked against the contract."""

    kind: str
    input_height: int
    input_width: int
    mean: tuple
    std: tuple
    scale: str
    output: str = ""
    min_depth: float = 0.0
    max_depth: float = 0.0
    pose: str = ""
    pose_direction: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def metric(self) -> bool:
        return self.scale == "metric"

    @property
    def is_trained(self) -> bool:
        """Whether the contract metadata says the model was trained: ``vode.train_steps`` > 0,
        or no such key (a third-party export) unless ``vode.trained_on`` says 'untrained'."""
        steps = self.extra.get("vode.train_steps")
        if steps is None:
            return not str(self.extra.get("vode.trained_on", "")).startswith("untrained")
        try:
            return int(float(steps)) > 0
        except ValueError:
            return False

    def to_metadata(self) -> dict:
        """The metadata_props dictionary that describes this spec (used by the exporter)."""
        md = {"vode.contract": CONTRACT_VERSION, "vode.kind": self.kind,
              "vode.input_height": str(self.input_height),
              "vode.input_width": str(self.input_width),
              "vode.input_mean": ",".join(repr(float(v)) for v in self.mean),
              "vode.input_std": ",".join(repr(float(v)) for v in self.std),
              "vode.scale": self.scale}
        if self.kind == "depth":
            md.update({"vode.output": self.output, "vode.min_depth": repr(float(self.min_depth)),
                       "vode.max_depth": repr(float(self.max_depth))})
        else:
            md.update({"vode.pose": self.pose, "vode.pose_direction": self.pose_direction})
        md.update({k: str(v) for k, v in self.extra.items()})
        return md


def parse_metadata(meta: dict, source: str = "model", expect_kind: str | None = None) -> ModelSpec:
    """Check metadata_props against the contract and return the spec, or raise ModelError."""
    def need(keys: Iterable[str]) -> None:
        missing = [k for k in keys if k not in meta]
        if missing:
            raise ModelError(f"{source} breaks the vode model contract: metadata_props lacks "
                             f"{', '.join(missing)} (see the model contract in README); was it "
                             "exported with `vode export`?")

    need(REQUIRED)
    if meta["vode.contract"] != CONTRACT_VERSION:
        raise ModelError(f"{source}: model contract version {meta['vode.contract']!r} is not "
                         f"supported; expected {CONTRACT_VERSION!r}")
    kind = meta["vode.kind"]
    if kind not in KINDS:
        raise ModelError(f"{source}: vode.kind must be one of {KINDS}, got {kind!r}")
    if expect_kind and kind != expect_kind:
        raise ModelError(f"{source} is a {kind} model but a {expect_kind} model was expected; "
                         f"check models.{expect_kind}")

    def integer(key: str) -> int:
        try:
            v = int(meta[key])
        except ValueError:
            raise ModelError(f"{source}: {key} must be an integer, got {meta[key]!r}") from None
        if not 8 <= v <= 8192:
            raise ModelError(f"{source}: {key} must lie in [8, 8192], got {v}")
        return v

    def floats(key: str, n: int) -> tuple[float, ...]:
        try:
            v = tuple(float(x) for x in meta[key].split(","))
        except ValueError:
            v = ()
        if len(v) != n or not all(np.isfinite(v)):
            raise ModelError(f"{source}: {key} must be {n} comma-separated finite numbers, got "
                             f"{meta[key]!r}")
        return v

    mean, std = floats("vode.input_mean", 3), floats("vode.input_std", 3)
    if min(std) <= 0:
        raise ModelError(f"{source}: vode.input_std must be positive, got {std}")
    scale = meta["vode.scale"]
    if scale not in ("relative", "metric"):
        raise ModelError(f"{source}: vode.scale must be 'relative' or 'metric', got {scale!r}")
    known = set(REQUIRED) | set(REQUIRED_DEPTH) | set(REQUIRED_POSE)
    extra = {k: v for k, v in meta.items() if k not in known}
    common = dict(kind=kind, input_height=integer("vode.input_height"),
                  input_width=integer("vode.input_width"), mean=mean, std=std, scale=scale,
                  extra=extra)
    if kind == "depth":
        need(REQUIRED_DEPTH)
        output = meta["vode.output"]
        if output not in DEPTH_OUTPUTS:
            raise ModelError(f"{source}: vode.output must be one of {', '.join(DEPTH_OUTPUTS)},"
                             f" got {output!r}")
        lo, hi = floats("vode.min_depth", 1)[0], floats("vode.max_depth", 1)[0]
        if not 0 < lo < hi:
            raise ModelError(f"{source}: expected 0 < vode.min_depth < vode.max_depth, got "
                             f"{lo} and {hi}")
        return ModelSpec(output=output, min_depth=lo, max_depth=hi, **common)
    need(REQUIRED_POSE)
    if meta["vode.pose"] != "axisangle_translation":
        raise ModelError(f"{source}: vode.pose must be 'axisangle_translation', got "
                         f"{meta['vode.pose']!r}")
    if meta["vode.pose_direction"] != "current_in_previous":
        raise ModelError(f"{source}: vode.pose_direction must be 'current_in_previous', got "
                         f"{meta['vode.pose_direction']!r}")
    return ModelSpec(pose=meta["vode.pose"], pose_direction=meta["vode.pose_direction"], **common)


def _quiet_onnxruntime() -> ModuleType:
    import onnxruntime as ort
    # onnxruntime-gpu logs an error per missing CUDA library on CPU-only machines; we log the
    # provider that runs ourselves.
    ort.set_default_logger_severity(4)
    return ort


def _session_options(ort: ModuleType, intra_op_threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if intra_op_threads:
        opts.intra_op_num_threads = int(intra_op_threads)
    # Two sessions (depth, pose) and OpenCV take turns on few cores: idle ORT threads must
    # not spin-wait, or each steals the cores from the next stage (measured: a frame took
    # 24-84 ms with spinning, 16-22 ms without, on 2 loaded cores).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


class OnnxModel:
    """An ONNX Runtime session for one model of the contract.

    The session is created with the first provider of ``providers`` that loads the model and
    runs it once on zeros; the warm-up also checks the output shape against the contract.
    """

    def __init__(self, path: str | Path, expect_kind: str,
                 providers: Sequence[str] | None = None, intra_op_threads: int = 0):
        ort = _quiet_onnxruntime()
        self.path = Path(path)
        source = f"model file '{self.path}'"
        if not self.path.is_file():
            raise ModelError(f"{source} does not exist; expected an ONNX {expect_kind} model "
                             f"(set models.{expect_kind} to its path)")
        wanted = list(providers or ["CPUExecutionProvider"])
        available = ort.get_available_providers()
        candidates = [p for p in wanted if p in available]
        if "CPUExecutionProvider" not in candidates:
            candidates.append("CPUExecutionProvider")
        self.provider_errors: dict[str, str] = {}
        self.session = self._first_session(ort, _session_options(ort, intra_op_threads),
                                           candidates, source, expect_kind)
        self.provider: str = self.session.get_providers()[0]
        self.input_name: str = self.session.get_inputs()[0].name
        self.last_ms = 0.0
        LOG.info("%s model %s runs on %s", expect_kind, self.path, self.provider)

    def _first_session(self, ort: ModuleType, opts: Any, candidates: list[str], source: str,
                       expect_kind: str) -> Any:
        """The session of the first provider in ``candidates`` that loads the model and runs it
        on zeros (``self.spec`` read from the model and checked on the way); why each one
        before it failed goes into ``provider_errors``."""
        for provider in candidates:
            printed = io.StringIO()
            try:
                # ORT prints (not logs) "EP Error ... Falling back" when a GPU provider cannot
                # load; keep that text as the provider's reason instead of on stdout.
                with contextlib.redirect_stdout(printed):
                    session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                   providers=[provider])
            except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
                if _is_unreadable(exc):
                    raise ModelError(f"{source} is not a readable ONNX model ({_first_line(exc)});"
                                     f" expected an ONNX {expect_kind} model exported by "
                                     "`vode export` or honouring the model contract") from None
                self.provider_errors[provider] = _first_line(exc)
                continue
            if session.get_providers()[0] != provider:
                ep_error = [ln for ln in printed.getvalue().splitlines()
                            if ln.startswith("EP Error")]
                self.provider_errors[provider] = (ep_error[0][:300] if ep_error else
                                                  "provider did not load (missing libraries?)")
                continue
            self.spec = parse_metadata(session.get_modelmeta().custom_metadata_map, source,
                                       expect_kind)
            self._check_io(session, source)
            try:
                self._check_output(self._run(session, self.zeros()), source)
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever the provider raised running it
                self.provider_errors[provider] = _first_line(exc)
                continue
            return session
        raise ModelError(f"{source}: no execution provider could run it: "
                         f"{self.provider_errors}")

    # -- contract checks -------------------------------------------------------------------------
    @property
    def input_channels(self) -> int:
        return 3 if self.spec.kind == "depth" else 6

    def zeros(self) -> np.ndarray:
        return np.zeros((1, self.input_channels, self.spec.input_height, self.spec.input_width),
                        np.float32)

    def _check_io(self, session: Any, source: str) -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{source}: expected exactly one input, found {len(inputs)}")
        shape = inputs[0].shape
        want = [1, self.input_channels, self.spec.input_height, self.spec.input_width]
        if len(shape) != 4 or any(isinstance(s, int) and s != w for s, w in zip(shape, want, strict=True)):
            raise ModelError(f"{source}: input shape {shape} does not match the contract "
                             f"{want} (from vode.input_height/width)")
        if inputs[0].type != "tensor(float)":
            raise ModelError(f"{source}: input type must be tensor(float), got {inputs[0].type}")

    def _check_output(self, out: np.ndarray, source: str) -> None:
        want: tuple[int, ...]
        if self.spec.kind == "depth":
            want = (1, 1, self.spec.input_height, self.spec.input_width)
            ok = out.shape == want
        else:
            want = (1, 6)
            ok = out.shape in ((1, 6), (1, 1, 6))
        if not ok:
            raise ModelError(f"{source}: output shape {out.shape} does not match the contract "
                             f"{want} for a {self.spec.kind} model")

    # -- running ---------------------------------------------------------------------------------
    def _run(self, session: Any, tensor: np.ndarray) -> np.ndarray:
        name = session.get_inputs()[0].name
        return session.run(None, {name: tensor})[0]

    def __call__(self, tensor: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.session.run(None, {self.input_name: tensor})[0]
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return out


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _is_unreadable(exc: Exception) -> bool:
    text = str(exc)
    return any(s in text for s in ("INVALID_PROTOBUF", "Protobuf parsing failed",
                                   "INVALID_GRAPH", "Load model from", "No graph was found"))


def to_tensor(image_rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """HxWx3 uint8 RGB to the model's ``[1, 3, h, w]`` float32 input (resize, scale, normalise)."""
    import cv2

    h, w = spec.input_height, spec.input_width
    if image_rgb.shape[:2] != (h, w):
        shrink = image_rgb.shape[0] > h
        image_rgb = cv2.resize(image_rgb, (w, h),
                               interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    # (rgb / 255 - mean) / std as one multiply-add per channel, written into the NCHW buffer
    std = np.asarray(spec.std, np.float32)
    gain = 1.0 / (255.0 * std)
    offset = -np.asarray(spec.mean, np.float32) / std
    out = np.empty((1, 3, h, w), np.float32)
    for c in range(3):
        np.multiply(image_rgb[:, :, c], gain[c], out=out[0, c], casting="unsafe")
        out[0, c] += offset[c]
    return out
