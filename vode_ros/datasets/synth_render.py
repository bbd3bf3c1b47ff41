"""Rendering of the synthetic worlds (``synth``): one ray per pixel cast against the boxes.

Textures are sampled trilinearly at the level of detail one pixel covers, with no
view-dependent shading, so a point has the same colour in every view; depth is the exact
z-depth of the nearest hit (NaN where the ray meets the sky).
"""
from __future__ import annotations

import math

import numpy as np

from vode_ros.camera import Camera
from vode_ros.datasets.synth_scene import Box, Scene
from vode_ros.datasets.synth_textures import sample_mip


def default_camera(width: int = 320, height: int = 240, fov_deg: float | None = None) -> Camera:
    """A Kinect-like field of view (fx = 525 at 640 pixels) at any resolution, or a horizontal
    field of view of ``fov_deg`` degrees."""
    f = 525.0 * width / 640.0 if fov_deg is None else \
        (width / 2.0) / math.tan(math.radians(float(fov_deg)) / 2.0)
    return Camera(f, f, width / 2.0 - 0.5, height / 2.0 - 0.5, int(width), int(height))


class Renderer:
    """Ray-casts a scene for one camera (pixel rays are computed once)."""

    def __init__(self, scene: Scene, camera: Camera):
        self.scene = scene
        self.camera = camera
        u, v = np.meshgrid(np.arange(camera.width, dtype=np.float64),
                           np.arange(camera.height, dtype=np.float64))
        # (3, n) rays with z = 1, so the ray parameter t of a hit is its z-depth
        self._rays = np.stack([(u.ravel() - camera.cx) / camera.fx,
                               (v.ravel() - camera.cy) / camera.fy, np.ones(u.size)])
        self._ray_norm = np.linalg.norm(self._rays, axis=0)
        self._f = 0.5 * (camera.fx + camera.fy)

    def _in_view(self, box: Box, R: np.ndarray, o: np.ndarray) -> bool:
        """False when the box is surely outside the view (all corners behind or to one side)."""
        corners = np.array([[x, y, z] for x in (box.lo[0], box.hi[0])
                            for y in (box.lo[1], box.hi[1]) for z in (box.lo[2], box.hi[2])])
        pc = (corners - o) @ R
        z = pc[:, 2]
        if np.all(z <= 1e-3):
            return False
        if np.any(z <= 1e-3):
            return True
        cam = self.camera
        u = cam.fx * pc[:, 0] / z + cam.cx
        v = cam.fy * pc[:, 1] / z + cam.cy
        return not (np.all(u < -1) or np.all(u > cam.width) or np.all(v < -1)
                    or np.all(v > cam.height))

    def render(self, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 RGB, HxW float32 z-depth in metres with NaN for the sky)."""
        cam = self.camera
        R, o = np.asarray(T_wc[:3, :3], float), np.asarray(T_wc[:3, 3], float)
        d = R @ self._rays
        d[np.abs(d) < 1e-12] = 1e-12
        t_best, face = self._cast(R, o, d)
        rgb = self._shade(o, d, t_best, face)
        sky = face < 0
        if np.any(sky) and self.scene.sky is not None:
            rgb[sky] = self._sky(d[:, sky] / self._ray_norm[sky])
        depth = np.where(face >= 0, t_best, np.nan).astype(np.float32)
        img = np.clip(rgb + 0.5, 0, 255).astype(np.uint8).reshape(cam.height, cam.width, 3)
        return img, depth.reshape(cam.height, cam.width)

    def depth(self, T_wc: np.ndarray) -> np.ndarray:
        """HxW float32 z-depth in metres (NaN for the sky), without shading."""
        R, o = np.asarray(T_wc[:3, :3], float), np.asarray(T_wc[:3, 3], float)
        d = R @ self._rays
        d[np.abs(d) < 1e-12] = 1e-12
        t_best, face = self._cast(R, o, d)
        depth = np.where(face >= 0, t_best, np.nan).astype(np.float32)
        return depth.reshape(self.camera.height, self.camera.width)

    def _cast(self, R: np.ndarray, o: np.ndarray, d: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Per ray (columns of ``d``, from ``o``): the ray parameter of the nearest hit (its
        z-depth; inf: none) and the face hit (6 x box index + face index; -1: none, the sky)."""
        inv = 1.0 / d
        pos = d > 0
        n = d.shape[1]
        t_best = np.full(n, np.inf)
        face = np.full(n, -1, dtype=np.int32)
        for b, box in enumerate(self.scene.boxes):
            if not box.inside and not self._in_view(box, R, o):
                continue
            base = 6 * b
            if box.inside:
                # leave the box through the face the ray meets first
                t = None
                for ax in range(3):
                    ta = np.where(pos[ax], (box.hi[ax] - o[ax]) * inv[ax],
                                  (box.lo[ax] - o[ax]) * inv[ax])
                    fa = np.where(pos[ax], base + 2 * ax + 1, base + 2 * ax).astype(np.int32)
                    if t is None:
                        t, fid = ta, fa
                    else:
                        closer = ta < t
                        t = np.where(closer, ta, t)
                        fid = np.where(closer, fa, fid)
                open_ = np.asarray([box.textures[i] < 0 for i in range(6)])
                if open_.any():
                    t = np.where(open_[fid - base], np.inf, t)
                hit = t < t_best
            else:
                # slab test: enter through the face of the last slab entered
                t = t_far = None
                for ax in range(3):
                    t1 = (box.lo[ax] - o[ax]) * inv[ax]
                    t2 = (box.hi[ax] - o[ax]) * inv[ax]
                    near = np.where(pos[ax], t1, t2)
                    far = np.where(pos[ax], t2, t1)
                    fa = np.where(pos[ax], base + 2 * ax, base + 2 * ax + 1).astype(np.int32)
                    if t is None:
                        t, t_far, fid = near, far, fa
                    else:
                        later = near > t
                        t = np.where(later, near, t)
                        fid = np.where(later, fa, fid)
                        t_far = np.minimum(t_far, far)
                hit = (t <= t_far) & (t > 1e-6) & (t < t_best)
            t_best = np.where(hit, t, t_best)
            face = np.where(hit, fid, face)
        return t_best, face

    def _shade(self, o: np.ndarray, d: np.ndarray, t_best: np.ndarray,
               face: np.ndarray) -> np.ndarray:
        """(n, 3) float colours of the rays' hits, face by face (zeros where none)."""
        n = d.shape[1]
        rgb = np.zeros((n, 3), np.float32)
        order = np.argsort(face, kind="stable")
        sorted_faces = face[order]
        starts = np.flatnonzero(np.r_[True, sorted_faces[1:] != sorted_faces[:-1]])
        ends = np.r_[starts[1:], n]
        uv_axes = ((1, 2), (0, 2), (0, 1))
        for s0, s1 in zip(starts, ends, strict=True):
            f_id = int(sorted_faces[s0])
            if f_id < 0:
                continue
            m = order[s0:s1]
            box = self.scene.boxes[f_id // 6]
            fi = f_id % 6
            axis = fi // 2
            a0, a1 = uv_axes[axis]
            tpm = box.texels_per_m[fi]
            tm = t_best[m]
            x = (o[a0] + tm * d[a0, m] + box.offsets[fi, 0]) * tpm
            y = (o[a1] + tm * d[a1, m] + box.offsets[fi, 1]) * tpm
            norm = self._ray_norm[m]
            cos_inc = np.maximum(np.abs(d[axis, m]) / norm, 0.25)
            # texels under one pixel: z / (f |ray|) metres across the ray, / cos(incidence)
            level = np.log2(np.maximum(tm / (self._f * norm * cos_inc) * tpm, 1.0))
            rgb[m] = sample_mip(self.scene.textures[box.textures[fi]], x, y, level) \
                * box.shade[fi]
            light = self.scene.info.get("light") if self.scene.info else None
            if light:
                normal = np.zeros(3)
                normal[axis] = (1.0 if fi % 2 == 0 else -1.0) * (1.0 if box.inside else -1.0)
                hits = o[:, None] + tm[None, :] * d[:, m]
                rgb[m] *= lighting(light, normal, hits)[:, None]
        return rgb

    def _sky(self, ds: np.ndarray) -> np.ndarray:
        """(n, 3) float colours of the sky along unit directions ``ds`` (3, n): azimuth and
        elevation index the sky texture."""
        pyr = self.scene.sky
        h, w = pyr[0].shape[:2]
        az = np.arctan2(ds[1], ds[0])
        el = np.arcsin(np.clip(ds[2], -1, 1))
        x = (az / (2 * np.pi) + 0.5) * w
        y = (1.0 - np.clip(el, 0, np.pi / 2) / (np.pi / 2)) * (h - 1)
        level = np.full(len(x), max(0.0, math.log2((w / (2 * np.pi)) / self._f)))
        return sample_mip(pyr, x, y, level)


def lighting(light: dict, normal: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Lambertian light (no shadows, the same from every view) on points (3, n) of a surface
    with ``normal``: ambient, a directional sun and point lamps ``(position, gain, radius)``
    whose light falls off as 1 / (1 + (distance / radius)^2)."""
    out = np.full(points.shape[1], float(light["ambient"]), np.float32)
    out += float(light["sun_gain"]) * max(0.0, float(normal @ np.asarray(light["sun"])))
    for pos, gain, radius in light.get("lamps", ()):
        v = np.asarray(pos, float)[:, None] - points
        dist = np.linalg.norm(v, axis=0) + 1e-6
        cos = np.maximum(normal @ v / dist, 0.0)
        out += (gain * cos / (1.0 + (dist / radius) ** 2)).astype(np.float32)
    return out


def render(scene: Scene, camera: Camera, T_wc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Render one view (see ``Renderer.render``); build a ``Renderer`` to render many."""
    return Renderer(scene, camera).render(T_wc)
