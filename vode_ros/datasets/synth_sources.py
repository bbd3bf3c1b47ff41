"""Where the synthetic worlds' textures come from (``synth``): procedural patterns, photographs
that Python packages ship, and crops of the frames of real recordings.

A texture source is named in a list (``generate_sequence(textures=...)``, ``data.synthetic`` of
a training YAML):

* ``"procedural"``: value noise, checkers, bricks and blobs (``synth_textures``);
* ``"packaged"``: the photographs of ``skimage.data`` where scikit-image is installed (none
  otherwise: the source then adds nothing);
* a recording (a path, or ``{path: ..., frames: 'A:B', stream: ...}``): random crops of its
  frames, anything ``open_sequence`` reads.

Only the sources listed are read, so a model meant never to have seen a place lists none of its
recordings. A crop does not tile by itself: it is mirrored into a 2x2 block that does (the
faces carry textures with wrap-around), and a grey recording's crop is tinted with a random
colour. Everything is deterministic for the generator ``rng``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vode_ros.datasets.base import DatasetError
from vode_ros.datasets.synth_textures import TEX_SIZE, TEXTURE_KINDS

DEFAULT_TEXTURES = ("procedural", "packaged")
FRAMES_PER_RECORDING = 24           # frames of a recording kept to crop from (spread over it)
PACKAGED_IMAGES = ("astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins",
                   "grass", "gravel", "moon", "page", "retina", "rocket", "text",
                   "immunohistochemistry")

_FRAME_CACHE: dict = {}


def _recording_frames(src) -> list[np.ndarray]:
    """Up to ``FRAMES_PER_RECORDING`` frames (RGB uint8) spread over a recording, read once per
    process."""
    if isinstance(src, (str, Path)):
        src = {"path": str(src)}
    key = (src["path"], src.get("frames"), src.get("stream"))
    if key not in _FRAME_CACHE:
        from vode_ros.datasets import open_sequence
        seq = open_sequence(src["path"], src.get("frames"), stream=src.get("stream"))
        n = len(seq)
        if n == 0:
            raise DatasetError(f"texture source {src['path']} has no frames", "synth")
        picks = sorted(set(np.linspace(0, n - 1, min(n, FRAMES_PER_RECORDING)).astype(int)))
        frames = []
        for i in picks:
            img = seq[int(i)].image
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
            frames.append(np.ascontiguousarray(img))
        _FRAME_CACHE[key] = frames
    return _FRAME_CACHE[key]


def _packaged_images() -> list[np.ndarray]:
    """The photographs scikit-image ships (RGB uint8), or none without it."""
    if "packaged" not in _FRAME_CACHE:
        out = []
        try:
            from skimage import data as skdata
        except ImportError:
            skdata = None
        for name in PACKAGED_IMAGES if skdata is not None else ():
            try:
                img = np.asarray(getattr(skdata, name)())
            except Exception:       # noqa: BLE001 - an image its version lacks or cannot read
                continue
            if img.ndim == 2:
                img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_GRAY2RGB)
            if img.ndim != 3 or min(img.shape[:2]) < 64:
                continue
            out.append(np.ascontiguousarray(img[..., :3].astype(np.uint8)))
        _FRAME_CACHE["packaged"] = out
    return _FRAME_CACHE["packaged"]


def mirror_tile(img: np.ndarray, size: int = TEX_SIZE) -> np.ndarray:
    """A crop made seamless: itself, mirrored left-right, top-bottom and both, in a 2x2 block
    (periodic), resized to ``size`` x ``size``, float32."""
    top = np.concatenate([img, img[:, ::-1]], 1)
    block = np.concatenate([top, top[::-1]], 0)
    return cv2.resize(block.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)


def _is_grey(img: np.ndarray) -> bool:
    return bool(np.abs(img[..., 0].astype(np.int16) - img[..., 1]).mean() < 2.0)


def crop_texture(img: np.ndarray, rng: np.random.Generator, size: int = TEX_SIZE) -> np.ndarray:
    """A random square crop (1/8 to 1/2 of the shorter side, at least 32 px) of ``img``, tiled
    (:func:`mirror_tile`), tinted when the image is grey, float32 RGB 0-255."""
    h, w = img.shape[:2]
    side = int(rng.uniform(0.125, 0.5) * min(h, w))
    side = max(32, min(side, h, w))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    tex = mirror_tile(img[y0:y0 + side, x0:x0 + side], size)
    if _is_grey(img):
        tint = rng.uniform(0.55, 1.25, 3).astype(np.float32)
        tex = tex * tint[None, None, :]
    else:
        tex = tex * rng.uniform(0.8, 1.15, 3).astype(np.float32)[None, None, :]
    contrast = rng.uniform(0.7, 1.4)
    mean = tex.mean()
    return np.clip(mean + (tex - mean) * contrast, 0, 255).astype(np.float32)


def check_sources(sources) -> list:
    """The list of texture sources, each checked to be one of the kinds above."""
    if sources is None:
        return list(DEFAULT_TEXTURES)
    if isinstance(sources, (str, Path, dict)):
        sources = [sources]
    out = []
    for s in sources:
        if isinstance(s, dict):
            if "path" not in s:
                raise DatasetError(f"texture source {s!r} has no path; expected "
                                   "{path: RECORDING, frames: 'A:B'}", "synth")
            out.append(dict(s))
        elif isinstance(s, (str, Path)):
            out.append(str(s))
        else:
            raise DatasetError(f"texture source {s!r} is not understood; expected 'procedural', "
                               "'packaged' or a recording's path", "synth")
    if not out:
        raise DatasetError("no texture source; expected 'procedural', 'packaged' or recordings",
                           "synth")
    return out


def source_images(sources) -> list[np.ndarray]:
    """The photographs (recordings' frames and packaged images) of ``sources``."""
    images = []
    for s in check_sources(sources):
        if s == "procedural":
            continue
        if s == "packaged":
            images.extend(_packaged_images())
        else:
            images.extend(_recording_frames(s))
    return images


def make_textures(rng: np.random.Generator, n: int, sources, photo_share: float = 0.6
                  ) -> list[np.ndarray]:
    """``n`` tiling textures (float32 RGB 0-255, ``TEX_SIZE`` square) from ``sources``: crops of
    their photographs for about ``photo_share`` of them where there are any, procedural ones
    for the rest (all procedural where no source gives a photograph and 'procedural' is not
    listed either)."""
    sources = check_sources(sources)
    photos = source_images(sources)
    procedural = "procedural" in sources or not photos
    kinds = list(TEXTURE_KINDS)
    out = []
    for _ in range(n):
        use_photo = bool(photos) and (not procedural or rng.random() < photo_share)
        if use_photo:
            out.append(crop_texture(photos[int(rng.integers(0, len(photos)))], rng))
        else:
            out.append(TEXTURE_KINDS[kinds[int(rng.integers(0, len(kinds)))]](rng))
    return out
