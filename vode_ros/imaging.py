"""Raw image buffers (as sensor_msgs/Image carries them) to RGB arrays, without ROS.

cv_bridge is the usual tool, but no working build is on PyPI, so the node falls back to this
conversion. It handles what cameras publish for colour and grey images; everything else gets an
InputError naming the supported encodings.
"""
from __future__ import annotations

import cv2
import numpy as np

from vode_ros.errors import InputError

# encoding -> (channels, numpy dtype)
ENCODINGS = {
    "rgb8": (3, np.uint8),
    "bgr8": (3, np.uint8),
    "rgba8": (4, np.uint8),
    "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8),
    "8UC1": (1, np.uint8),
    "8UC3": (3, np.uint8),
    "mono16": (1, np.uint16),
    "16UC1": (1, np.uint16),
}


def raw_to_rgb(data, encoding: str, width: int, height: int, step: int,
               is_bigendian: bool = False) -> np.ndarray:
    """Convert a raw buffer to an HxWx3 uint8 RGB array (mono16 is scaled by its maximum)."""
    if encoding not in ENCODINGS:
        raise InputError("encoding", f"unsupported image encoding '{encoding}'; expected one of "
                         f"{', '.join(ENCODINGS)}")
    if width <= 0 or height <= 0:
        raise InputError("zero_size", f"image has zero size ({width}x{height}); expected a "
                         "non-empty image")
    channels, dtype = ENCODINGS[encoding]
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    buf = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.view(np.uint8)
    if step < row_bytes:
        raise InputError("step", f"image step {step} is shorter than a {encoding} row of width "
                         f"{width} ({row_bytes} bytes)")
    if len(buf) != step * height:
        raise InputError("size", f"image data is {len(buf)} bytes but step x height is "
                         f"{step} x {height} = {step * height}")
    rows = np.frombuffer(buf, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    pixels = rows.view(np.dtype(dtype).newbyteorder(">" if is_bigendian else "<")) \
        if itemsize > 1 else rows
    img = pixels.reshape(height, width, channels)
    if dtype == np.uint16:
        img = img.astype(np.float32)
        peak = float(img.max())
        img = (img * (255.0 / peak) if peak > 0 else img).astype(np.uint8)
    if encoding in ("rgb8", "8UC3"):
        return np.ascontiguousarray(img) if encoding == "rgb8" else \
            cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB)
    if encoding == "bgr8":
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB)
    if encoding == "rgba8":
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGBA2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2RGB)


def decode_compressed(data, fmt: str = "") -> np.ndarray:
    """Decode a CompressedImage payload (jpeg, png, ...) to HxWx3 uint8 RGB."""
    arr = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if arr.size == 0:
        raise InputError("compressed", "compressed image is empty; expected JPEG or PNG bytes")
    img = cv2.imdecode(arr, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError("compressed", f"could not decode compressed image (format '{fmt}'); "
                         "expected JPEG or PNG bytes")
    if img.dtype == np.uint16:
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(1, int(img.max())))
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def rgb_to_raw(image: np.ndarray, encoding: str = "rgb8") -> tuple[bytes, int]:
    """The inverse for tests and publishers: (data, step) of an RGB image in ``encoding``."""
    conv = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
            "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY}
    out: np.ndarray
    if encoding == "mono16":
        out = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    elif encoding in conv:
        code = conv[encoding]
        out = image if code is None else cv2.cvtColor(image, code)
    else:
        raise InputError("encoding", f"cannot write encoding '{encoding}'")
    out = np.ascontiguousarray(out)
    return out.tobytes(), out.strides[0]
