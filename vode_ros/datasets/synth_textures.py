"""Procedural textures for the synthetic worlds (``synth``), and their trilinear mip-mapped
sampling.

Every texture tiles (value noise, checker, bricks, blobs, a sky), so a face of any size carries
it in metric surface coordinates; ``mip_pyramid`` filters it with wrap-around and
``sample_mip`` samples between two levels, so that distant and slanted surfaces do not alias.
"""
from __future__ import annotations

import cv2
import numpy as np

TEX_SIZE = 512
MIP_LEVELS = 6


def _tileable_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1] that tiles (``cells`` random values per side)."""
    g = rng.random((cells, cells)).astype(np.float32)
    pad = 3
    gp = np.pad(g, pad, mode="wrap")
    step = size / cells
    big = cv2.resize(gp, (int(round((cells + 2 * pad) * step)),) * 2,
                     interpolation=cv2.INTER_CUBIC)
    off = int(round(pad * step))
    return big[off:off + size, off:off + size]


def _fractal(rng, size: int, octaves=(4, 8, 16, 32, 64, 128)) -> np.ndarray:
    out = np.zeros((size, size), np.float32)
    total = 0.0
    for i, cells in enumerate(octaves):
        w = 0.9 ** i
        out += w * _tileable_noise(rng, size, cells)
        total += w
    out /= total
    lo, hi = np.percentile(out, (1, 99))
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0, 1)


def _palette(rng, n: int) -> np.ndarray:
    hues = rng.random(n)
    sats = rng.uniform(0.25, 0.8, n)
    vals = rng.uniform(0.35, 0.95, n)
    hsv = np.stack([hues * 179, sats * 255, vals * 255], 1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32)


def _mix(t: np.ndarray, c0, c1) -> np.ndarray:
    return c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]


def texture_noise(rng, size=TEX_SIZE) -> np.ndarray:
    c = _palette(rng, 3)
    a = _fractal(rng, size)
    b = _tileable_noise(rng, size, 6)
    return _mix(a, c[0], c[1]) * (1 - 0.5 * b[..., None]) + 0.5 * b[..., None] * c[2]


def texture_checker(rng, size=TEX_SIZE) -> np.ndarray:
    n = int(rng.choice([8, 16]))
    cell = size // n
    c = _palette(rng, 2)
    yy, xx = np.mgrid[0:size, 0:size]
    parity = ((yy // cell + xx // cell) % 2).astype(np.float32)
    jitter = rng.uniform(0.8, 1.2, (n, n)).astype(np.float32)
    jit = jitter[yy // cell, xx // cell]
    img = _mix(parity, c[0], c[1]) * jit[..., None]
    return img * (0.75 + 0.5 * _fractal(rng, size, (16, 32, 64, 128))[..., None])


def texture_bricks(rng, size=TEX_SIZE) -> np.ndarray:
    rows, cols = 16, 8
    bh, bw = size // rows, size // cols
    base = _palette(rng, 1)[0]
    mortar = np.array([200, 195, 185], np.float32) * rng.uniform(0.6, 1.0)
    yy, xx = np.mgrid[0:size, 0:size]
    row = yy // bh
    shift = (row % 2) * (bw // 2)
    col = ((xx + shift) // bw) % cols
    tint = rng.uniform(0.6, 1.3, (rows, cols, 3)).astype(np.float32)
    img = base[None, None, :] * tint[row, col]
    in_mortar = ((yy % bh) < 3) | (((xx + shift) % bw) < 3)
    img[in_mortar] = mortar
    return img * (0.7 + 0.6 * _fractal(rng, size, (32, 64, 128))[..., None])


def texture_blobs(rng, size=TEX_SIZE) -> np.ndarray:
    img = texture_noise(rng, size) * 0.6
    cols = _palette(rng, 12)
    canvas = np.ascontiguousarray(img)
    for _ in range(160):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(4, 28))
        col = tuple(float(v) for v in cols[rng.integers(0, len(cols))])
        for dx in (-size, 0, size):             # draw wrapped copies so the texture tiles
            for dy in (-size, 0, size):
                cv2.circle(canvas, (int(x + dx), int(y + dy)), r, col, -1, cv2.LINE_AA)
    return canvas * (0.8 + 0.4 * _fractal(rng, size, (32, 64, 128))[..., None])


def texture_sky(rng, width=2048, height=512) -> np.ndarray:
    """Clouds over a blue gradient, mapped by azimuth (x) and elevation (y)."""
    n = _fractal(rng, width, (8, 16, 32, 64, 128))[:height]
    clouds = np.clip((n - 0.45) * 2.5, 0, 1)
    grad = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    blue = np.array([70, 120, 210], np.float32) * (1 - grad[..., None]) + \
        np.array([170, 200, 235], np.float32) * grad[..., None]
    return blue * (1 - clouds[..., None]) + np.array([245, 245, 245], np.float32) * \
        clouds[..., None]


TEXTURE_KINDS = {"noise": texture_noise, "checker": texture_checker, "bricks": texture_bricks,
                 "blobs": texture_blobs}


def mip_pyramid(img: np.ndarray, levels: int = MIP_LEVELS) -> list[np.ndarray]:
    """Levels of a tiling texture (each half the size, filtered with wrap-around)."""
    out = [np.clip(img, 0, 255).astype(np.float32)]
    for _ in range(levels - 1):
        prev = out[-1]
        if min(prev.shape[:2]) < 4:
            break
        padded = np.pad(prev, ((4, 4), (4, 4), (0, 0)), mode="wrap")
        down = cv2.pyrDown(padded)
        out.append(np.ascontiguousarray(down[2:-2, 2:-2]))
    return out


def _bilinear_wrap(tex: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples (n, 3) at texel coordinates (texel centres at integers), wrapping."""
    h, w = tex.shape[:2]
    n = len(x)
    cols = 512
    rows = max(1, -(-n // cols))
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:n] = np.mod(x, w)
    my[:n] = np.mod(y, h)
    out = cv2.remap(tex, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_WRAP)
    return out.reshape(-1, 3)[:n]


def sample_mip(pyr: list[np.ndarray], x: np.ndarray, y: np.ndarray,
               level: np.ndarray) -> np.ndarray:
    """Trilinear samples of a mip pyramid at level-0 texel coordinates."""
    level = np.clip(level, 0.0, len(pyr) - 1.0)
    l0 = np.floor(level).astype(np.int64)
    frac = (level - l0).astype(np.float32)
    out = np.empty((len(x), 3), np.float32)
    for lv in range(int(l0.min()), int(l0.max()) + 1):
        m = np.nonzero(l0 == lv)[0] if l0.min() != l0.max() else slice(None)
        xs, ys = x[m], y[m]
        s = 2.0 ** lv
        a = _bilinear_wrap(pyr[lv], (xs + 0.5) / s - 0.5, (ys + 0.5) / s - 0.5)
        if lv + 1 < len(pyr):
            s1 = 2.0 ** (lv + 1)
            b = _bilinear_wrap(pyr[lv + 1], (xs + 0.5) / s1 - 0.5, (ys + 0.5) / s1 - 0.5)
            f = frac[m][:, None]
            a = a + (b - a) * f
        out[m] = a
    return out
