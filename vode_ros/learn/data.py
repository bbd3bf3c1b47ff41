"""Training samples for self-supervised depth and pose from any recording ``open_sequence`` reads.

A sample is a frame triplet ``(t - s, t, t + s)`` (``s``: the source's stride) resized to the
network size, with the intrinsics rescaled to match. Only images and intrinsics are read: ground
truth never reaches training; only synthetic sequences give their exact depth
(``SourceSpec.depth``) to the supervised losses, and a recording its odometry's map points
(``SourceSpec.map_points``, sparse depth in the odometry's unit).

* Frames are decoded once, resized, and cached in memory as uint8 (a 600-frame sequence at
  192x256 is 88 MB).
* Triplets whose target barely differs from a neighbour (mean absolute difference of 32x24 grey
  thumbnails under ``min_motion`` grey levels) are skipped: a static camera teaches nothing and
  collapses depth.
* Source frames by parallax (optional, ``min_parallax_px`` > 0 and a source's ``max_stride``):
  for each target, each source is the nearest frame, ``stride`` to ``max_stride`` frames away,
  whose *rotation-compensated* parallax reaches ``min_parallax_px`` (pixels at the network size;
  features tracked by LK, the pure-rotation model of ``vode_ros.multiview`` fitted, the 75 %
  quantile of what it leaves). A slow hand-held camera then gets the baseline depth needs, and a
  camera that only turns (whose depth the photometric loss cannot see: any depth warps a pure
  rotation right) is skipped instead of teaching far-away depth.
* Aspect ratio: a recording whose aspect ratio differs from the network's by more than
  ``ASPECT_TOLERANCE`` (KITTI's 3.3:1 for a 4:3 network) is not squashed: it is resized to the
  network's height (width for a taller one) and each sample is a window of the network's size,
  the same for the three frames, with the principal point moved to match (drawn at random in
  training, the centre otherwise). Squashed images teach the depth network shapes no camera
  sees (measured: dropping the squashed KITTI frames improved 7-Scenes held-out abs_rel by 0.01).
* Poses from geometry (optional, a source's ``poses``): a TUM trajectory of the recording's
  camera (``vode process`` writes one: the odometry's essential-matrix poses from features
  tracked at full resolution) gives each triplet its two relative poses, matched to the frames
  by stamp; the trainer warps with them (translation times a learned per-trajectory scale)
  instead of the pose network's. Measured on 7-Scenes: the network's relative rotations at
  96x128 are off by ~0.4 deg (GT, evaluation only), the size of the parallax of far surfaces.
* Augmentation (training only): the same colour jitter (brightness, contrast, saturation, hue) on
  the three frames, fed to the networks while the losses use the unjittered images (Monodepth2);
  a horizontal flip of all three frames with ``cx -> W - 1 - cx``, so the flipped triplet is a
  consistent mirrored world for both networks.
* Sampling is deterministic: epoch ``e``'s order is a permutation drawn from ``(seed, e)`` and a
  sample's augmentation from ``(seed, e, position)``, so a resumed run sees exactly the samples
  and augmentations of an uninterrupted one. Sources weigh by repetition (``weight``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from vode_ros.datasets import open_sequence
from vode_ros.progress import progress_bar


@dataclass
class SourceSpec:
    """One recording to train on. ``frames``: 'A:B' (or 'A:B:S') over its frames; ``stride``:
    frame offset of the two source frames; ``weight``: how many times per epoch its triplets are
    drawn (fractions draw a random subset); ``stream``: KITTI/EuRoC camera."""

    path: str
    frames: str | None = None
    stride: int = 1
    weight: float = 1.0
    stream: str | None = None
    name: str | None = None
    layout: str | None = None
    image_topic: str | None = None   # ROS 2 bags with several image topics
    # optional rectified stereo partner (same frames): its stream and the baseline in metres,
    # positive when the partner camera lies along +x (to the right) of the trained camera
    stereo_stream: str | None = None
    baseline_m: float | None = None
    # with data.min_parallax_px > 0: the farthest source frame tried (None: ``stride`` only)
    max_stride: int | None = None
    # a TUM trajectory of this recording's camera (optical frame, the frames' own stamps; e.g.
    # ``vode process REC --out DIR`` writes DIR/trajectory.txt): the warps of its triplets then use
    # these relative poses, their translation times a learned per-recording scale, instead of the
    # pose network's (pose from geometry, depth from the photometric loss)
    poses: str | None = None
    # exact depth for the supervised losses: only a synthetic sequence's (its folder holds the
    # generator's synth.json); a real recording's depth is ground truth, for evaluation only
    depth: bool = False
    # the odometry's map points of this recording (``map_points.npz``, as `vode process` writes
    # with map points on; ``vode_ros.offline.map_points``): sparse depth in the odometry's unit
    # for the scale-invariant loss (``train.silog`` with ``train.silog_lambda`` 1), geometry the
    # images themselves give, not ground truth
    map_points: str | None = None

    @classmethod
    def from_any(cls, item) -> "SourceSpec":
        if isinstance(item, SourceSpec):
            return item
        if isinstance(item, (str, Path)):
            return cls(str(item))
        unknown = set(item) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown data source keys {sorted(unknown)}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        return cls(**item)


def sparse_depth(points, src_w: int, src_h: int, width: int, height: int) -> np.ndarray:
    """A depth image ``[height, width]`` float16 (0: none) of map points ``(px, depth)`` given in
    a ``src_w`` x ``src_h`` image (each at its nearest pixel; the nearest point where two meet)."""
    out = np.zeros((height, width), np.float32)
    if points is None or not len(points[1]):
        return out.astype(np.float16)
    px, z = points
    x = np.rint((px[:, 0] + 0.5) * width / src_w - 0.5).astype(int)
    y = np.rint((px[:, 1] + 0.5) * height / src_h - 0.5).astype(int)
    ok = (x >= 0) & (x < width) & (y >= 0) & (y < height) & np.isfinite(z) & (z > 0)
    order = np.argsort(-z[ok])                    # far first: the nearest is written last
    out[y[ok][order], x[ok][order]] = z[ok][order]
    return out.astype(np.float16)


def scale_intrinsics(fx, fy, cx, cy, src_w, src_h, dst_w, dst_h):
    """Intrinsics of an image resized from ``src`` to ``dst`` (pixel-centre convention)."""
    sx, sy = dst_w / src_w, dst_h / src_h
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


def k_matrix(fx, fy, cx, cy) -> np.ndarray:
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float32)


@dataclass
class CachedSequence:
    """A recording's frames resized to the network size (uint8 ``[N, H, W, 3]``)."""

    name: str
    images: np.ndarray
    K: np.ndarray
    thumbs: np.ndarray
    indices: list = field(default_factory=list)
    stereo: np.ndarray | None = None     # the stereo partner's frames, same size
    baseline_m: float = 0.0
    greys: np.ndarray | None = None      # grey frames for parallax (at most PARALLAX_WIDTH wide)
    K_grey: np.ndarray | None = None     # their intrinsics
    poses: np.ndarray | None = None      # [N, 4, 4] camera-to-world from ``SourceSpec.poses``,
                                         # NaN for frames the trajectory lacks
    depth: np.ndarray | None = None      # [N, H, W] float16 metres (0: invalid) of a synthetic
                                         # sequence, ``SourceSpec.depth``

    def __len__(self):
        return len(self.images)


def open_spec(spec: SourceSpec):
    """``open_sequence`` for a data source (bag-only options passed only when set)."""
    kwargs = {"image_topic": spec.image_topic} if spec.image_topic else {}
    return open_sequence(spec.path, spec.frames, layout=spec.layout, stream=spec.stream, **kwargs)


ASPECT_TOLERANCE = 1.1
MIN_DEPTH_PIXELS = 10      # a sample's depth counts for the supervised losses from this many


def cached_size(src_w: int, src_h: int, height: int, width: int) -> tuple[int, int]:
    """(w, h) a ``src_w`` x ``src_h`` recording is cached at for a ``height`` x ``width``
    network: the network size, or the aspect-preserving size that covers it when the aspect
    ratios differ by more than ``ASPECT_TOLERANCE`` (samples are then windows of it)."""
    src, net = src_w / src_h, width / height
    if src > net * ASPECT_TOLERANCE:
        return max(width, int(round(height * src))), height
    if src < net / ASPECT_TOLERANCE:
        return width, max(height, int(round(width / src)))
    return width, height


def load_sequence(spec: SourceSpec, height: int, width: int, progress: bool = False,
                  parallax_greys: bool = False) -> CachedSequence:
    """Decode and resize every frame of ``spec`` (images and intrinsics only), to the network
    size or, for another aspect ratio, to the size that covers it (``cached_size``);
    ``parallax_greys`` also keeps grey frames at most ``PARALLAX_WIDTH`` wide for ``parallax``
    (only sources choosing frames by parallax need them)."""
    seq = open_spec(spec)
    cam = seq.camera
    if spec.depth and not (Path(spec.path) / "synth.json").is_file():
        raise ValueError(f"{spec.path}: depth is read only from synthetic sequences (a folder "
                         "with synth.json, as vode synth writes); a recording's depth is ground "
                         "truth, for evaluation only")
    if spec.depth and spec.map_points:
        raise ValueError(f"{spec.path}: a source takes either its exact depth (depth: true) or "
                         "the odometry's map points (map_points), not both")
    map_points = None
    if spec.map_points:
        from vode_ros.offline.map_points import read_map_points
        map_points = read_map_points(spec.map_points)
    width, height = cached_size(cam.width, cam.height, height, width)
    depths = []
    fx, fy, cx, cy = scale_intrinsics(cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height,
                                      width, height)
    images, thumbs, indices, greys, stamps = [], [], [], [], []
    gw = min(PARALLAX_WIDTH, cam.width)
    gh = max(16, int(round(cam.height * gw / cam.width)))
    frames = seq
    if progress:
        frames = progress_bar(len(seq), f"loading {spec.name or Path(spec.path).name}",
                              iterable=seq, leave=False)
    for f in frames:
        img = f.image
        if img.shape[0] != cam.height or img.shape[1] != cam.width:
            raise ValueError(f"{spec.path}: frame {f.index} is {img.shape[1]}x{img.shape[0]} but "
                             f"the camera says {cam.width}x{cam.height}")
        images.append(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA))
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        thumbs.append(cv2.resize(grey, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float32))
        if parallax_greys:
            greys.append(cv2.resize(grey, (gw, gh), interpolation=cv2.INTER_AREA))
        indices.append(int(f.index))
        stamps.append(int(f.stamp_ns))
        if spec.depth:
            d = f.gt_depth if f.gt_depth is not None else np.full(img.shape[:2], np.nan)
            d = cv2.resize(np.nan_to_num(d.astype(np.float32), nan=0.0), (width, height),
                           interpolation=cv2.INTER_NEAREST)
            depths.append(d.astype(np.float16))
        elif map_points is not None:
            depths.append(sparse_depth(map_points.get(int(f.stamp_ns)), cam.width, cam.height,
                                       width, height))
    name = spec.name or Path(spec.path).name
    out = CachedSequence(name, np.stack(images), k_matrix(fx, fy, cx, cy), np.stack(thumbs),
                         indices)
    if spec.poses:
        out.poses = trajectory_at(spec.poses, np.asarray(stamps, np.int64), spec.path)
    if spec.depth or map_points is not None:
        out.depth = np.stack(depths)
    if parallax_greys:
        out.greys = np.stack(greys)
        out.K_grey = k_matrix(*scale_intrinsics(cam.fx, cam.fy, cam.cx, cam.cy, cam.width,
                                                cam.height, gw, gh))
    if spec.stereo_stream:
        if not spec.baseline_m:
            raise ValueError(f"{spec.path}: stereo_stream '{spec.stereo_stream}' needs baseline_m "
                             "(metres, positive when the partner camera is to the right)")
        other = open_sequence(spec.path, spec.frames, layout=spec.layout,
                              stream=spec.stereo_stream)
        if len(other) != len(seq):
            raise ValueError(f"{spec.path}: stereo stream '{spec.stereo_stream}' has {len(other)} "
                             f"frames, the trained stream {len(seq)}")
        out.stereo = np.stack([cv2.resize(f.image, (width, height), interpolation=cv2.INTER_AREA)
                               for f in other])
        out.baseline_m = float(spec.baseline_m)
    return out


POSE_STAMP_TOLERANCE_NS = 1_000_000


def trajectory_at(path, stamps_ns: np.ndarray, recording: str = "") -> np.ndarray:
    """Camera-to-world poses ``[N, 4, 4]`` of a TUM trajectory file at the frames' stamps (the
    pose whose stamp is within 1 ms; NaN where there is none). Raises ``ValueError`` when the
    file is unreadable or matches no frame at all (wrong recording or frame range)."""
    from vode_ros.evaluation.trajectory import TrajectoryFileError, read_tum
    if not Path(path).is_file():
        raise ValueError(f"{recording}: poses file '{path}' does not exist; expected a TUM "
                         "trajectory of this recording (e.g. DIR/trajectory.txt of "
                         "'vode process RECORDING --out DIR')")
    try:
        t, P = read_tum(path)
    except TrajectoryFileError as exc:
        raise ValueError(f"{recording}: {exc}") from None
    out = np.full((len(stamps_ns), 4, 4), np.nan)
    if len(t):
        order = np.argsort(t)
        t, P = t[order], P[order]
        j = np.searchsorted(t, stamps_ns)
        lo = np.clip(j - 1, 0, len(t) - 1)
        hi = np.clip(j, 0, len(t) - 1)
        near = np.where(np.abs(t[lo] - stamps_ns) <= np.abs(t[hi] - stamps_ns), lo, hi)
        ok = (np.abs(t[near] - stamps_ns) <= POSE_STAMP_TOLERANCE_NS) & \
            np.isfinite(P[near]).all(axis=(1, 2))
        out[ok] = P[near[ok]]
    if not np.isfinite(out).all(axis=(1, 2)).any():
        raise ValueError(f"{recording}: no frame's stamp matches a pose of '{path}' (within "
                         "1 ms); expected the trajectory of this recording and frame range")
    return out


def trajectory_warning(path) -> str | None:
    """A warning for a ``vode process`` trajectory whose run (``run.json`` beside it) lost
    tracking: monocular scale restarts there, and the one scale learned per trajectory would be
    wrong on one side. None when the run did not lose tracking or there is no ``run.json``."""
    import json
    run = Path(path).with_name("run.json")
    try:
        lost = int(json.loads(run.read_text())["tracking"]["lost_frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if lost <= 0:
        return None
    return (f"{path}: its odometry run lost tracking on {lost} frame(s) ({run}); its scale may "
            "jump there, and one learned scale per trajectory cannot follow: train on the parts "
            "between the losses ('vode process --frames A:B' for each, one trajectory each)")


MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])


def relative_pose(poses: np.ndarray, source: int, target: int, flipped: bool = False
                  ) -> np.ndarray | None:
    """``T_source_target`` (a target-camera point in the source camera) from camera-to-world
    ``poses``; mirrored (``M T M``, ``M = diag(-1, 1, 1)``) for a horizontally flipped sample;
    None when either pose is missing."""
    T = np.linalg.inv(poses[source]) @ poses[target]
    if not np.isfinite(T).all():
        return None
    return MIRROR @ T @ MIRROR if flipped else T


def motion(thumbs: np.ndarray, a: int, b: int) -> float:
    """Mean absolute grey-level difference between two frames' thumbnails."""
    return float(np.abs(thumbs[a] - thumbs[b]).mean())


def triplets(seq: CachedSequence, stride: int, min_motion: float) -> list[tuple[int, int, int]]:
    """``(t - s, t, t + s)`` local indices whose target differs from both neighbours."""
    out = []
    for t in range(stride, len(seq) - stride):
        a, b = t - stride, t + stride
        if min(motion(seq.thumbs, t, a), motion(seq.thumbs, t, b)) >= min_motion:
            out.append((a, t, b))
    return out


PARALLAX_WIDTH = 320


def parallax(seq: CachedSequence, i: int, j: int, cache: dict | None = None) -> float:
    """Rotation-compensated parallax from frame ``i`` to frame ``j`` of ``seq``, in pixels of the
    network-size image: features tracked by LK (forward-backward checked), then
    ``vode_ros.multiview.rotation_parallax`` (the pure-rotation model and the 75 % quantile of
    the image motion it does not explain). 0 when too few features track (no evidence of parallax)."""
    from vode_ros.flow import detect_features, track_lk
    from vode_ros.multiview import rotation_parallax
    key = (i, j)
    if cache is not None and key in cache:
        return cache[key]
    g0, g1, K = seq.greys[i], seq.greys[j], seq.K_grey
    value = 0.0
    p0 = detect_features(g0, 200, 6.0)
    if len(p0) >= 20:
        tr = track_lk(g0, g1, p0)
        if tr.ok.sum() >= 20:
            R, _, px = rotation_parallax(p0[tr.ok], tr.p1[tr.ok], K, 2.0 / K[0, 0], 0.75)
            if R is not None:
                value = px * seq.images.shape[2] / g0.shape[1]
    if cache is not None:
        cache[key] = value
    return value


def parallax_triplets(seq: CachedSequence, stride: int, max_stride: int, min_motion: float,
                      min_parallax: float) -> list[tuple[int, int, int]]:
    """``(t - s0, t, t + s1)``: for each target, on each side the nearest frame ``stride`` to
    ``max_stride`` away whose parallax (``parallax``) reaches ``min_parallax`` and whose
    thumbnail differs by ``min_motion``; targets with no such frame on a side are skipped."""
    cache: dict = {}
    out = []
    n = len(seq)

    def pick(t: int, sign: int):
        for s in range(stride, max_stride + 1):
            j = t + sign * s
            if not 0 <= j < n:
                return None
            if motion(seq.thumbs, t, j) >= min_motion and \
                    parallax(seq, t, j, cache) >= min_parallax:
                return j
        return None

    for t in range(n):
        a = pick(t, -1)
        b = pick(t, +1) if a is not None else None
        if a is not None and b is not None:
            out.append((a, t, b))
    return out


# -- augmentation ----------------------------------------------------------------------------------
def _grey(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def color_jitter(frames: np.ndarray, rng: np.random.Generator, brightness=0.2, contrast=0.2,
                 saturation=0.2, hue=0.1) -> np.ndarray:
    """The same random brightness/contrast/saturation/hue change on every frame
    (``[N, H, W, 3]`` float32 in [0, 1]); the four are applied in random order."""
    b = rng.uniform(1 - brightness, 1 + brightness)
    c = rng.uniform(1 - contrast, 1 + contrast)
    s = rng.uniform(1 - saturation, 1 + saturation)
    h = rng.uniform(-hue, hue)
    out = frames.astype(np.float32, copy=True)
    for op in rng.permutation(4):
        if op == 0:
            out = out * b
        elif op == 1:
            mean = _grey(out).mean(axis=(1, 2), keepdims=True)[..., None]
            out = (out - mean) * c + mean
        elif op == 2:
            g = _grey(out)[..., None]
            out = (out - g) * s + g
        else:
            out = _rotate_hue(out, h)
        out = np.clip(out, 0.0, 1.0)
    return out


def _rotate_hue(rgb: np.ndarray, turns: float) -> np.ndarray:
    """Hue rotation by ``turns`` of a full turn, as a rotation about the grey axis of RGB."""
    a = 2 * math.pi * turns
    cos, sin = math.cos(a), math.sin(a)
    k = 1.0 / 3.0
    sq = math.sqrt(k)
    m = np.array([[cos + (1 - cos) * k, k * (1 - cos) - sq * sin, k * (1 - cos) + sq * sin],
                  [k * (1 - cos) + sq * sin, cos + k * (1 - cos), k * (1 - cos) - sq * sin],
                  [k * (1 - cos) - sq * sin, k * (1 - cos) + sq * sin, cos + k * (1 - cos)]],
                 dtype=np.float32)
    return rgb @ m.T


def flip_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """Intrinsics of a horizontally flipped image (``u -> W - 1 - u``)."""
    K = K.copy()
    K[0, 2] = width - 1 - K[0, 2]
    return K


# -- the dataset -----------------------------------------------------------------------------------
class TripletDataset:
    """Frame triplets from several recordings; ``sample(i, rng)`` returns one training sample:

    ``images`` ``[3, 3, H, W]`` float32 in [0, 1] (source -s, target, source +s), ``aug`` the
    same after colour jitter (what the networks see), ``depth_gt`` ``[1, H, W]`` (a synthetic
    sequence's exact depth of the target, 0 elsewhere) with ``has_depth``, ``K`` and ``inv_K``
    ``[3, 3]``, ``source``
    (which recording), ``flipped``, and ``T_known`` ``[2, 4, 4]`` (``T_source_target`` of the
    two sources from the recording's ``poses`` trajectory) with ``has_pose`` (False: identity
    placeholders, the pose network decides)."""

    def __init__(self, sources, height: int, width: int, min_motion: float = 1.0,
                 augment: bool = True, flip_prob: float = 0.5, jitter: dict | None = None,
                 progress: bool = False, cache: dict | None = None,
                 min_parallax_px: float = 0.0):
        self.height, self.width = int(height), int(width)
        self.augment, self.flip_prob = augment, float(flip_prob)
        self.jitter = {**dict(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
                       **(jitter or {})}      # the given strengths replace the defaults
        self.specs = [SourceSpec.from_any(s) for s in sources]
        self.sequences: list[CachedSequence] = []
        self.items: list[tuple[int, int, int, int]] = []  # (sequence, a, t, b)
        self.weights: list[float] = []
        self.skipped = {}
        cache = {} if cache is None else cache
        for k, spec in enumerate(self.specs):
            by_parallax = bool(min_parallax_px > 0 and spec.max_stride)
            key = (spec.path, spec.frames, spec.stream, self.height, self.width, by_parallax,
                   bool(spec.depth), spec.map_points)
            if key not in cache:
                cache[key] = load_sequence(spec, self.height, self.width, progress, by_parallax)
            seq = cache[key]
            self.sequences.append(seq)
            if by_parallax:
                if int(spec.max_stride) < int(spec.stride):
                    raise ValueError(f"{spec.path}: max_stride {spec.max_stride} is below "
                                     f"stride {spec.stride}")
                trip = parallax_triplets(seq, int(spec.stride), int(spec.max_stride),
                                         float(min_motion), float(min_parallax_px))
                self.skipped[seq.name] = len(seq) - len(trip)
            else:
                trip = triplets(seq, int(spec.stride), float(min_motion))
                self.skipped[seq.name] = max(0, len(seq) - 2 * int(spec.stride)) - len(trip)
            for a, t, b in trip:
                self.items.append((k, a, t, b))
                self.weights.append(float(spec.weight))

    def __len__(self):
        return len(self.items)

    def describe(self) -> str:
        parts = []
        for k, (spec, seq) in enumerate(zip(self.specs, self.sequences, strict=True)):
            n = sum(1 for it in self.items if it[0] == k)
            stride = f"{spec.stride}" if not spec.max_stride else \
                f"{spec.stride}-{spec.max_stride} by parallax"
            posed = f", poses from {spec.poses}" if spec.poses else ""
            parts.append(f"{seq.name}[{spec.frames or ':'}] stride {stride} "
                         f"({n} triplets, weight {spec.weight:g}{posed})")
        return "; ".join(parts)

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        """The sample order of ``epoch``: each item ``floor(w)`` times, plus once with
        probability ``w - floor(w)``, shuffled; deterministic in ``(seed, epoch)``."""
        rng = np.random.default_rng([int(seed), int(epoch), 17])
        w = np.asarray(self.weights, dtype=np.float64)
        reps = np.floor(w).astype(int) + (rng.random(len(w)) < (w - np.floor(w)))
        order = np.repeat(np.arange(len(w)), reps)
        return rng.permutation(order)

    def window(self, seq: CachedSequence, rng: np.random.Generator | None) -> tuple[int, int]:
        """(x0, y0) of the network-size window of a sample of ``seq``: (0, 0) when it is
        cached at the network size, else random in training, the centre otherwise."""
        h, w = seq.images.shape[1:3]
        if (h, w) == (self.height, self.width):
            return 0, 0
        if self.augment and rng is not None:
            return (int(rng.integers(0, w - self.width + 1)),
                    int(rng.integers(0, h - self.height + 1)))
        return (w - self.width) // 2, (h - self.height) // 2

    def sample(self, i: int, rng: np.random.Generator | None = None) -> dict:
        k, a, t, b = self.items[int(i)]
        seq = self.sequences[k]
        x0, y0 = self.window(seq, rng)
        win = (slice(y0, y0 + self.height), slice(x0, x0 + self.width))
        frames = seq.images[[a, t, b]][:, win[0], win[1]].astype(np.float32) / 255.0
        K = seq.K.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        flipped = False
        aug = frames
        stereo = seq.stereo[t][win].astype(np.float32) / 255.0 if seq.stereo is not None \
            else None
        baseline = seq.baseline_m
        depth = seq.depth[t][win].astype(np.float32) if seq.depth is not None else None
        if self.augment and rng is not None:
            if rng.random() < self.flip_prob:
                frames = frames[:, :, ::-1].copy()
                if depth is not None:
                    depth = depth[:, ::-1].copy()
                K = flip_intrinsics(K, self.width)
                flipped = True
                if stereo is not None:  # mirrored, the partner camera sits on the other side
                    stereo, baseline = stereo[:, ::-1].copy(), -baseline
            aug = color_jitter(frames, rng, **self.jitter) if rng.random() < 0.5 else frames
        to_t = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # noqa
        T_known = np.tile(np.eye(4), (2, 1, 1))
        has_pose = False
        if seq.poses is not None:
            Ts = [relative_pose(seq.poses, src, t, flipped) for src in (a, b)]
            if all(T is not None for T in Ts):
                T_known, has_pose = np.stack(Ts), True
        return {"images": to_t(frames), "aug": to_t(aug), "K": torch.from_numpy(K),
                "T_known": torch.from_numpy(T_known.astype(np.float32)), "has_pose": has_pose,
                "inv_K": torch.from_numpy(np.linalg.inv(K).astype(np.float32)),
                "source": k, "flipped": flipped,
                "stereo": None if stereo is None else
                torch.from_numpy(np.ascontiguousarray(stereo.transpose(2, 0, 1))),
                "baseline_m": float(baseline),
                "depth_gt": torch.from_numpy(np.ascontiguousarray(
                    (depth if depth is not None else np.zeros(frames.shape[1:3], np.float32)
                     )[None])),
                # a frame the map saw too little of has no depth to teach
                "has_depth": depth is not None and np.count_nonzero(depth) >= MIN_DEPTH_PIXELS}

    def batch(self, indices, rngs=None) -> dict:
        samples = [self.sample(i, None if rngs is None else r)
                   for i, r in zip(indices, rngs or [None] * len(indices), strict=True)]
        out = {key: torch.stack([s[key] for s in samples]) for key in ("images", "aug", "K",
                                                                       "inv_K", "T_known")}
        out["has_pose"] = torch.tensor([s["has_pose"] for s in samples])
        out["source"] = torch.tensor([s["source"] for s in samples])
        out["flipped"] = torch.tensor([s["flipped"] for s in samples])
        if any(s["has_depth"] for s in samples):
            out["depth_gt"] = torch.stack([s["depth_gt"] for s in samples])
            out["has_depth"] = torch.tensor([s["has_depth"] for s in samples])
        if any(s["stereo"] is not None for s in samples):
            if not all(s["stereo"] is not None for s in samples):
                raise ValueError("a batch mixes stereo and monocular samples; train stereo "
                                 "sources in a separate run or give every source a partner")
            out["stereo"] = torch.stack([s["stereo"] for s in samples])
            out["baseline_m"] = torch.tensor([s["baseline_m"] for s in samples])
        return out


def sample_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The augmentation generator of the sample at ``position`` of ``epoch``."""
    return np.random.default_rng([int(seed), int(epoch), int(position), 23])
