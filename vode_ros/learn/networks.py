"""Depth and pose networks for self-supervised monocular training (Monodepth2 family), sized for
real time on a small CPU.

Both networks take *normalised* images, ``(rgb / 255 - mean) / std`` with the ``mean``/``std`` of
their configuration: the ONNX model contract leaves normalisation to the runtime, so the exported
graph starts at the first convolution. :func:`normalize` does the same for training batches.

* :class:`DepthNet`: a residual encoder (5 stride-2 stages, 1/2 .. 1/32) and a decoder that upsamples
  (nearest, x2), concatenates the encoder's skip features and predicts a sigmoid disparity at four
  scales (1, 1/2, 1/4, 1/8 of the input). The exported graph computes only the full-resolution
  scale: ``[B, 1, H, W]`` in [0, 1], mapped to depth by the runtime as
  ``1 / (1/max_depth + (1/min_depth - 1/max_depth) * disp)`` (:func:`disparity_to_depth`).
* :class:`PoseNet`: the previous and the current frame stacked channel-wise (``[B, 6, H, W]``), a
  strided residual encoder, a 1x1 convolution to 6 channels and a spatial mean:
  ``(rx, ry, rz, tx, ty, tz)``, a rotation vector (radians) then a translation, the pose of the
  current camera in the previous camera's optical frame (``X_prev = T X_cur``). The raw output is
  multiplied by ``pose_scale`` (0.01) so that a fresh network predicts poses near identity.

Networks are rebuilt from a plain configuration dict (:func:`make_config`), which checkpoints store
under ``model_config``.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

# Variants: "cpu" runs depth + pose at >= 30 frames/s on two CPU cores with ONNX Runtime; "gpu" is a
# wider network at a larger input for machines with an accelerator.
VARIANTS = {
    "cpu": {
        "input_height": 192,
        "input_width": 256,
        "depth_encoder_widths": [16, 32, 64, 128, 192],
        "depth_encoder_blocks": [1, 1, 2, 1],
        "depth_decoder_widths": [12, 16, 32, 64, 96],
        "pose_widths": [16, 32, 64, 128, 192],
        "pose_blocks": [0, 1, 1, 1, 1],
    },
    "gpu": {
        "input_height": 288,
        "input_width": 384,
        "depth_encoder_widths": [32, 64, 128, 256, 512],
        "depth_encoder_blocks": [2, 2, 2, 2],
        "depth_decoder_widths": [16, 32, 64, 128, 256],
        "pose_widths": [32, 64, 128, 256, 256],
        "pose_blocks": [0, 1, 1, 1, 1],
    },
}

COMMON = {
    "mean": [0.45, 0.45, 0.45],
    "std": [0.225, 0.225, 0.225],
    "min_depth": 0.1,
    "max_depth": 100.0,
    "scale": "relative",
    "num_scales": 4,
    "pose_scale": 0.01,
    "width_mult": 1.0,
}


def make_config(variant: str = "cpu", **overrides) -> dict:
    """The model configuration of ``variant`` ('cpu' or 'gpu') with ``overrides`` applied.

    ``width_mult`` scales every channel width (rounded to a multiple of 4, at least 4)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown network variant {variant!r}; expected one of {list(VARIANTS)}")
    cfg = copy.deepcopy(COMMON)
    cfg.update(copy.deepcopy(VARIANTS[variant]))
    cfg["variant"] = variant
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown model_config keys {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(copy.deepcopy(overrides))
    return check_config(cfg)


def check_config(cfg: dict) -> dict:
    """Fill defaults missing from an older checkpoint's config and check the values."""
    variant = cfg.get("variant", "cpu")
    if variant not in VARIANTS:
        raise ValueError(f"unknown network variant {variant!r}; expected one of {list(VARIANTS)}")
    full = copy.deepcopy(COMMON)
    full.update(copy.deepcopy(VARIANTS[variant]))
    full.update(copy.deepcopy(cfg))
    h, w = int(full["input_height"]), int(full["input_width"])
    if h % 32 or w % 32 or h < 32 or w < 32:
        raise ValueError(f"input size must be positive multiples of 32 (five stride-2 stages), "
                         f"got {h}x{w}")
    if not 0 < float(full["min_depth"]) < float(full["max_depth"]):
        raise ValueError(f"expected 0 < min_depth < max_depth, got {full['min_depth']} and "
                         f"{full['max_depth']}")
    if len(full["depth_encoder_widths"]) != 5 or len(full["depth_decoder_widths"]) != 5:
        raise ValueError("depth_encoder_widths and depth_decoder_widths need 5 entries each")
    if len(full["depth_encoder_blocks"]) != 4:
        raise ValueError("depth_encoder_blocks needs 4 entries (stages 1/4 .. 1/32)")
    if len(full["pose_widths"]) != len(full["pose_blocks"]):
        raise ValueError("pose_widths and pose_blocks need the same length")
    if not 1 <= int(full["num_scales"]) <= 4:
        raise ValueError(f"num_scales must lie in [1, 4], got {full['num_scales']}")
    full["input_height"], full["input_width"] = h, w
    return full


def _width(c: int, mult: float) -> int:
    return max(4, int(round(c * mult / 4.0)) * 4)


def normalize(rgb01: torch.Tensor, config: dict) -> torch.Tensor:
    """Images in [0, 1] (``[B, 3k, H, W]``) to the networks' input ``(x - mean) / std``."""
    c = rgb01.shape[1]
    mean = torch.tensor(config["mean"], dtype=rgb01.dtype, device=rgb01.device).repeat(c // 3)
    std = torch.tensor(config["std"], dtype=rgb01.dtype, device=rgb01.device).repeat(c // 3)
    return (rgb01 - mean.view(1, c, 1, 1)) / std.view(1, c, 1, 1)


def disparity_to_depth(disp: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Sigmoid disparity to depth, linear in inverse depth (the runtime's mapping)."""
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    return 1.0 / (min_disp + (max_disp - min_disp) * disp)


# -- building blocks -------------------------------------------------------------------------------
class ConvBNReLU(nn.Sequential):
    """3x3 (or k x k) convolution, batch norm (folded into the convolution on export), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, kernel: int = 3, relu: bool = True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                  nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or strided 1x1) shortcut (He et al. 2016)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBNReLU(cin, cout, stride)
        self.conv2 = ConvBNReLU(cout, cout, relu=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = ConvBNReLU(cin, cout, stride, kernel=1, relu=False)
        nn.init.zeros_(self.conv2[1].weight)  # each block starts as (near) identity

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(self.conv1(x)) + skip)


class ConvELU(nn.Sequential):
    """Decoder convolution: 3x3, bias, ELU (as Monodepth2's decoder)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, 1, 1), nn.ELU(inplace=True))


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


# -- depth -----------------------------------------------------------------------------------------
class DepthEncoder(nn.Module):
    """Stem (stride 2) then four residual stages of stride 2: features at 1/2, 1/4, .. 1/32."""

    def __init__(self, widths, blocks, in_channels: int = 3):
        super().__init__()
        self.widths = list(widths)
        self.stem = ConvBNReLU(in_channels, widths[0], stride=2)
        stages = []
        for i, n in enumerate(blocks):
            cin, cout = widths[i], widths[i + 1]
            layers = [ResidualBlock(cin, cout, stride=2)]
            layers += [ResidualBlock(cout, cout) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


class DepthDecoder(nn.Module):
    """U-Net decoder: from 1/32 to full resolution; sigmoid disparity at scales 0..num_scales-1
    (scale s has 1/2**s of the input resolution)."""

    def __init__(self, enc_widths, dec_widths, num_scales: int = 4):
        super().__init__()
        self.num_scales = num_scales
        self.upconv0 = nn.ModuleList()
        self.upconv1 = nn.ModuleList()
        for i in range(4, -1, -1):
            cin = enc_widths[-1] if i == 4 else dec_widths[i + 1]
            self.upconv0.append(ConvELU(cin, dec_widths[i]))
            cskip = enc_widths[i - 1] if i > 0 else 0
            self.upconv1.append(ConvELU(dec_widths[i] + cskip, dec_widths[i]))
        self.dispconv = nn.ModuleList(nn.Conv2d(dec_widths[s], 1, 3, 1, 1)
                                      for s in range(num_scales))

    def forward(self, feats, scales=None):
        scales = range(self.num_scales) if scales is None else scales
        out = {}
        x = feats[-1]
        for j, i in enumerate(range(4, -1, -1)):
            x = _upsample2(self.upconv0[j](x))
            if i > 0:
                x = torch.cat([x, feats[i - 1]], dim=1)
            x = self.upconv1[j](x)
            if i in scales:
                out[i] = torch.sigmoid(self.dispconv[i](x))
        return [out[s] for s in scales]


class DepthNet(nn.Module):
    """Normalised image ``[B, 3, H, W]`` to sigmoid disparities.

    ``forward(x)`` returns the list of disparities at scales 0..num_scales-1 (``[B, 1, H/2**s,
    W/2**s]``); ``forward(x, scales=(0,))`` only the full-resolution one (what is exported)."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = check_config(config)
        m = float(self.config["width_mult"])
        enc = [_width(c, m) for c in self.config["depth_encoder_widths"]]
        dec = [_width(c, m) for c in self.config["depth_decoder_widths"]]
        self.encoder = DepthEncoder(enc, self.config["depth_encoder_blocks"])
        self.decoder = DepthDecoder(enc, dec, int(self.config["num_scales"]))

    def forward(self, x, scales=None):
        return self.decoder(self.encoder(x), scales)


class PoseNet(nn.Module):
    """Two normalised frames ``[B, 6, H, W]`` (previous, then current) to ``[B, 6]``:
    ``(rx, ry, rz, tx, ty, tz)``, the current camera's pose in the previous camera's frame."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = check_config(config)
        m = float(self.config["width_mult"])
        widths = [_width(c, m) for c in self.config["pose_widths"]]
        layers, cin = [], 6
        for cout, n in zip(widths, self.config["pose_blocks"], strict=True):
            layers.append(ConvBNReLU(cin, cout, stride=2))
            layers += [ResidualBlock(cout, cout) for _ in range(n)]
            cin = cout
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Sequential(ConvBNReLU(cin, cin, kernel=1), nn.Conv2d(cin, 6, 1))
        self.pose_scale = float(self.config["pose_scale"])

    def forward(self, pair):
        x = self.head(self.encoder(pair))
        return self.pose_scale * x.mean(dim=(2, 3))


class DepthExport(nn.Module):
    """What is exported of a DepthNet: the full-resolution disparity only. ``flip_average``: the
    mean of the disparities of the image and of its mirror image (mirrored back), the test-time
    flip of Monodepth2's post-processing (the network runs twice, in one batch): it evens out
    the left/right bias of occlusion-shaped errors."""

    def __init__(self, net: DepthNet, flip_average: bool = False):
        super().__init__()
        self.net = net
        self.flip_average = bool(flip_average)

    def forward(self, x):
        if not self.flip_average:
            return self.net(x, scales=(0,))[0]
        d = self.net(torch.cat([x, torch.flip(x, dims=[3])], 0), scales=(0,))[0]
        return 0.5 * (d[:1] + torch.flip(d[1:], dims=[3]))


def build_networks(config: dict | None = None, seed: int | None = None):
    """``(DepthNet, PoseNet)`` for ``config`` (default: the 'cpu' variant); ``seed`` fixes the
    initialisation."""
    config = make_config() if config is None else check_config(config)
    if seed is not None:
        torch.manual_seed(seed)
    return DepthNet(config), PoseNet(config)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
