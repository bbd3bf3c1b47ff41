"""The options of ``vode train``: one dataclass per section of a training YAML, every default here.

A training YAML (``config/train/*.yaml``) is a mapping of sections::

    name: my_robot
    out_dir: runs/my_robot
    model: {variant: cpu, max_depth: 10.0}
    data:  {height: 96, width: 128, train: [...], val: [...]}
    train: {batch_size: 6, lr: 1.0e-4, ...}
    log:   {every: 25, ...}
    eval:  {every_steps: 250, ...}

:func:`load_options` reads it into :class:`TrainOptions` (keys it does not name keep their
defaults, an unknown key is an error naming the known ones), applies ``section.key`` overrides
(``vode train --set``) and checks the rules the descriptions state. Values are kept as written
(YAML types). The fields follow the schema style of :mod:`vode_ros.config` (description and rules
in each field's metadata); :func:`options_markdown` turns them into the options table of
docs/training.md (a test keeps the two in sync).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from vode_ros.config_values import param as _p
from vode_ros.errors import VodeError


class TrainError(VodeError):
    """A training configuration or checkpoint is unusable."""


def _mapping(description: str):
    """An option whose value is a free mapping (default: empty)."""
    return field(default_factory=dict, metadata=_p(None, description).metadata)


@dataclass
class ModelOptions:
    """``model:``: the networks (:func:`vode_ros.learn.networks.make_config`); every key but
    ``variant`` defaults to the variant's value (null)."""
    variant: str = _p("cpu", "Network family (vode_ros.learn.networks.VARIANTS): 'cpu', sized for "
                      "real time on a small CPU, or 'gpu', wider and at a larger input.",
                      choices=("cpu", "gpu"))
    input_height: int | None = _p(None, "Network input height (pixels, a multiple of 32); the "
                                  "training size is data.height.")
    input_width: int | None = _p(None, "Network input width (pixels, a multiple of 32); the "
                                 "training size is data.width.")
    depth_encoder_widths: list | None = _p(None, "Channels of the depth encoder's five stride-2 "
                                           "stages.")
    depth_encoder_blocks: list | None = _p(None, "Residual blocks of the depth encoder's stages "
                                           "1/4 .. 1/32 (four entries).")
    depth_decoder_widths: list | None = _p(None, "Channels of the depth decoder's five stages.")
    pose_widths: list | None = _p(None, "Channels of the pose encoder's stride-2 stages.")
    pose_blocks: list | None = _p(None, "Residual blocks after each pose encoder stage (as many "
                                  "entries as model.pose_widths).")
    mean: list | None = _p(None, "Per-channel mean of the input normalisation "
                           "(rgb / 255 - mean) / std.")
    std: list | None = _p(None, "Per-channel standard deviation of the input normalisation.")
    min_depth: float | None = _p(None, "Depth at disparity 1, the nearest the depth network can "
                                 "predict (model units; metres for a metric model).")
    max_depth: float | None = _p(None, "Depth at disparity 0, the farthest the depth network can "
                                 "predict; above model.min_depth.")
    scale: str | None = _p(None, "Scale the exported depth model declares: 'relative' (up to a "
                           "factor) or 'metric'.")
    num_scales: int | None = _p(None, "Disparity scales the depth decoder outputs (1 to 4: full, "
                                "1/2, 1/4, 1/8 resolution).")
    pose_scale: float | None = _p(None, "Factor on the pose network's raw output, small so that a "
                                  "fresh network predicts poses near identity.")
    width_mult: float | None = _p(None, "Factor on every channel width (rounded to a multiple of "
                                  "4, at least 4).")

    def config(self) -> dict:
        """The networks' configuration (``model_config`` of a checkpoint)."""
        from vode_ros.learn.networks import make_config
        given = {k: v for k, v in self.to_dict().items() if k != "variant"}
        return make_config(self.variant, **given)

    def to_dict(self) -> dict:
        """``variant`` and the keys that are set (the others are the variant's)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if v is not None or k == "variant"}


@dataclass
class DataOptions:
    """``data:``: what the networks learn from."""
    height: int | None = _p(None, "Training image height (pixels, a multiple of 32); null: "
                            "model.input_height. Recordings are resized to it and their "
                            "intrinsics rescaled.")
    width: int | None = _p(None, "Training image width (pixels, a multiple of 32); null: "
                           "model.input_width. A recording of another aspect ratio is resized to "
                           "the height and sampled through a window of this width (random in "
                           "training, centred when held out), not squashed.")
    min_motion: float = _p(1.0, "A triplet whose target differs from a source frame by less "
                           "than this (mean absolute grey level of 32x24 thumbnails, 0-255) is "
                           "skipped as motionless.", low=0.0)
    min_parallax_px: float = _p(0.0, "> 0: sources with a max_stride take as each source frame "
                                "the nearest one (stride to max_stride frames away) whose "
                                "rotation-compensated parallax reaches this (pixels at the "
                                "training size); a target without one is skipped. 0: fixed "
                                "strides.", low=0.0)
    flip_prob: float = _p(0.5, "Probability that a training triplet is mirrored left-right "
                          "(all three frames, the intrinsics and trajectory poses with them).",
                          low=0.0, high=1.0)
    jitter: dict = _mapping("Colour-jitter strengths replacing those of "
                            "vode_ros.learn.data.color_jitter (keys brightness, contrast, "
                            "saturation, hue); the same jitter on the three frames, seen by the "
                            "networks only (the losses use the unjittered images).")
    train: list = _p([], "Training recordings, each a path or a mapping of "
                     "vode_ros.learn.data.SourceSpec: path (anything vode process reads), "
                     "frames ('A:B'), stride (source frames t-s, t+s), weight (draws per epoch), "
                     "stream, image_topic, stereo_stream with baseline_m, max_stride, poses (a "
                     "TUM trajectory of the recording's camera: its triplets are warped with "
                     "those poses), map_points (the odometry's map_points.npz: sparse depth for "
                     "train.silog). data.train or data.synthetic must list one.")
    val: list = _p([], "Held-out recordings (as data.train), evaluated during training: the "
                   "photometric loss, and depth abs_rel / a1 where they have ground-truth depth. "
                   "Without them no evaluation runs and no best.pt is written.")
    synthetic: list = _p([], "Synthetic sequences trained on beside data.train, rendered once "
                         "under out_dir/synth: vode_ros.datasets.generate_sequence arguments "
                         "(scene, trajectory, n_frames, width, height, seed, textures, fov_deg, "
                         "look (true, or 'metered': with an auto-exposure), supersample, "
                         "course (a place's: 'stadium', default, or 'ellipse')) plus "
                         "stride, weight, frames, poses (true: warp with "
                         "their exact poses) and count (N sequences, seeds seed..seed+N-1, "
                         "scenes and trajectories cycling through the lists 'scenes' and "
                         "'trajectories'; vode_ros.learn.synthetic). Their exact depth is read "
                         "where train.silog or train.grad_match is above 0.")


@dataclass
class LearningOptions:
    """``train:``: the losses, the optimisation and where it runs."""
    batch_size: int = _p(6, "Triplets per step on each process (with DistributedDataParallel "
                         "the step averages world size x this).", low=1)
    lr: float = _p(1e-4, "Adam learning rate (the depth network's is this times "
                   "train.depth_lr_factor).", low=0.0)
    lr_decay_at: float | None = _p(0.75, "Fraction of train.max_steps from which the learning "
                                   "rate is a tenth; null or 0: no decay.")
    weight_decay: float = _p(0.0, "Adam weight decay of the networks' parameters.", low=0.0)
    max_steps: int = _p(20000, "Steps of the run; the learning-rate schedule follows it "
                        "(vode train --steps N stops earlier without changing it).", low=0)
    smoothness: float = _p(1e-3, "Weight of the edge-aware disparity smoothness; scale s is "
                           "weighted by this / 2^s.", low=0.0)
    num_scales: int = _p(4, "Disparity scales in the loss (full, 1/2, 1/4, 1/8 resolution); "
                         "the loss is their mean.", low=1, high=4)
    automask: bool = _p(True, "Auto-masking (Monodepth2): a pixel whose unwarped source matches "
                        "the target at least as well as the warped ones is left out of the "
                        "photometric loss.")
    min_reprojection: bool = _p(True, "Per-pixel minimum of the sources' photometric errors "
                                "(Monodepth2; a pixel occluded in one source is judged by the "
                                "other); false: their mean.")
    scale_mode: str = _p("upsample", "'upsample': every scale's disparity is upsampled to the "
                         "input size and judged there (Monodepth2); 'native': each scale is "
                         "judged at its own resolution (cheaper on a CPU).",
                         choices=("upsample", "native"))
    amp: bool = _p(True, "Mixed precision (float16 autocast with gradient scaling); on CUDA "
                   "only.")
    grad_clip: float | None = _p(10.0, "Largest norm of all gradients together (clipped to it); "
                                 "null or 0: no clipping.")
    ema_decay: float = _p(0.0, "In [0, 1). > 0 keeps an exponential moving average of the "
                          "weights, w_avg <- d w_avg + (1 - d) w after every step; evaluation, "
                          "best.pt selection, checkpoints (depth_ema, pose_ema) and export use "
                          "it.")
    average_from: int = _p(0, ">= 0. > 0: from this step on, a snapshot of the weights "
                           "(BatchNorm statistics included) every train.average_every steps "
                           "joins an equal-weight average (stochastic weight averaging); "
                           "evaluation, best.pt selection, checkpoints (depth_ema, pose_ema) "
                           "and export use it once it holds a snapshot. Not with ema_decay.")
    average_every: int = _p(250, "> 0. Steps between the snapshots of train.average_from.")
    num_threads: int | None = _p(2, "CPU threads of torch (torch.set_num_threads); null or 0: "
                                 "torch's default.")
    device: str = _p("auto", "'auto': this process's GPU (LOCAL_RANK) when torch sees one, else "
                     "the CPU; 'cpu'; 'cuda' (an error without a GPU).",
                     choices=("auto", "cpu", "cuda"))
    init_from: str | None = _p(None, "Checkpoint whose network weights (its moving average where "
                               "it kept one) start this run: a second stage, another size. Its "
                               "optimiser and progress are not used; its steps count in the "
                               "new checkpoints' step. Or exported models: an ONNX file "
                               "(models/depth.onnx, with the pose.onnx beside it), a list of "
                               "them or their folder, read back from their initializers "
                               "(vode_ros.learn.onnx_weights).")
    pose_scale_lr: float = _p(1e-3, "Learning rate of the log translation scale learned for each "
                              "poses trajectory (one per trajectory file).", low=0.0)
    pose_distill: float = _p(0.0, "> 0: on samples whose source has poses, the pose network also "
                             "learns the trajectory's relative poses "
                             "(vode_ros.learn.losses.pose_fit, translation in the learned "
                             "scale), weighted by this.", low=0.0)
    depth_lr_factor: float = _p(1.0, "The depth network's learning rate over train.lr; 0 freezes "
                                "it (no gradients, batch-norm statistics kept).", low=0.0)
    silog: float = _p(0.0, "Weight of the scale-invariant log loss (Eigen et al. 2014, "
                      "vode_ros.learn.losses.silog) on the samples with depth (the synthetic "
                      "sequences' exact depth, a recording's map_points), every disparity scale "
                      "upsampled; 0: off.", low=0.0)
    silog_lambda: float = _p(1.0, "The SILog loss's lambda: 1 ignores a global factor on the "
                             "predicted depth (relative depth), below 1 also asks for the "
                             "scale.", low=0.0, high=1.0)
    grad_match: float = _p(0.0, "Weight of the multi-scale gradient matching of log depth "
                           "(MegaDepth, MiDaS; vode_ros.learn.losses.gradient_matching) on the "
                           "samples with exact depth, at the full-resolution disparity; 0: off.",
                           low=0.0)
    grad_match_scales: int = _p(4, "Levels of the gradient matching loss (each half the "
                                "resolution of the last).", low=1, high=6)


@dataclass
class LogOptions:
    """``log:``: progress, TensorBoard and checkpoints."""
    every: int = _p(25, "Steps between training scalars (TensorBoard train/*, log.jsonl).",
                    low=1)
    image_every: int = _p(500, "Steps between TensorBoard sample images (target, disparity, "
                          "warped source, automask); 0: none.", low=0)
    checkpoint_minutes: float = _p(5.0, "Minutes between writes of last.pt within an epoch; it "
                                   "is also written at the end of each epoch and of the run.",
                                   low=0.0)
    keep_every: int = _p(0, "Also keep step-N.pt every this many steps; 0: never.", low=0)
    progress: bool = _p(True, "Progress bars (steps, recordings loading) on a terminal.")


@dataclass
class EvalOptions:
    """``eval:``: the held-out evaluation (data.val) and what picks best.pt."""
    every_steps: int = _p(0, "Steps between held-out evaluations; 0: at the end of each epoch.",
                          low=0)
    at_start: bool = _p(False, "Also evaluate before the first step (a fine-tuning run's "
                        "baseline; best.pt may then hold the starting weights).")
    batch_size: int = _p(8, "Held-out triplets per forward pass.", low=1)
    depth_range: list = _p([0.1, 10.0], "Ground-truth depths outside (low, high) are ignored in "
                           "abs_rel / a1, and the median-scaled predictions are clipped to it.")
    select_by: str = _p("photometric", "What picks best.pt: the lowest held-out photometric "
                        "loss, or the lowest held-out pose fit ('pose_fit': the pose network "
                        "against the trajectory; needs train.pose_distill > 0 and held-out "
                        "sources with poses that the training also reads; "
                        "'photometric+silog': the photometric loss plus train.silog times the "
                        "held-out SILog, for held-out sources with depth or map points).",
                        choices=("photometric", "pose_fit", "photometric+silog"))


@dataclass
class TrainOptions:
    """Everything ``vode train`` reads from its YAML."""
    name: str = _p("vode", "Name of the run (stored with the options in its checkpoints).")
    out_dir: str = _p("runs/vode", "Folder of the run: last.pt, best.pt, step-N.pt, "
                      "summary.json, log.jsonl, tb/ (TensorBoard), synth/.")
    seed: int = _p(0, "Seeds the initial weights, the epoch order and each sample's "
                   "augmentation (a resumed run draws the batches an uninterrupted one would).")
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    train: LearningOptions = field(default_factory=LearningOptions)
    log: LogOptions = field(default_factory=LogOptions)
    eval: EvalOptions = field(default_factory=EvalOptions)

    @property
    def model_config(self) -> dict:
        """The networks' configuration built from the model section."""
        return self.model.config()

    def training_size(self) -> tuple[int, int]:
        """``(height, width)`` of the training images."""
        mc = self.model_config
        return int(self.data.height or mc["input_height"]), int(self.data.width or
                                                                 mc["input_width"])

    def parameters(self) -> Iterator[tuple[str, Any, dict]]:
        """``(name, value, metadata)`` of every option: ``key`` at the top, ``section.key``
        below."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                for g in dataclasses.fields(value):
                    yield f"{f.name}.{g.name}", getattr(value, g.name), dict(g.metadata)
            else:
                yield f.name, value, dict(f.metadata)

    def set(self, key: str, value: Any) -> None:
        """Set the option ``key`` (``seed``, ``train.lr``, ``data.jitter.hue``)."""
        node: Any = self
        parts = key.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if dataclasses.is_dataclass(node):
                names = [f.name for f in dataclasses.fields(node)]
                if part not in names:
                    raise TrainError(f"unknown training option '{key}'; known: "
                                     f"{', '.join(n for n, _, _ in self.parameters())}")
                if last:
                    current = getattr(node, part)
                    if dataclasses.is_dataclass(current):
                        _assign(current, value, f"{part}.")
                    else:
                        setattr(node, part, copy.deepcopy(value))
                    return
                node = getattr(node, part)
            elif isinstance(node, dict) and part in node:
                if last:
                    node[part] = copy.deepcopy(value)
                    return
                node = node[part]
            else:
                raise TrainError(f"unknown training option '{key}'")

    def to_dict(self) -> dict:
        """The options as a plain mapping, with ``model_config`` (what checkpoints store)."""
        out = dataclasses.asdict(self)
        out["model"] = self.model.to_dict()
        out["model_config"] = self.model_config
        return out

    def check(self) -> None:
        """The rules the descriptions state, checked together; a :class:`TrainError` says which
        one a value breaks."""
        for name, value, meta in self.parameters():
            _check_value(name, value, meta)
        try:
            self.model.config()
        except ValueError as exc:
            raise TrainError(f"bad model section: {exc}") from None
        if not self.data.train and not self.data.synthetic:
            raise TrainError("data.train lists no recording; expected entries such as "
                             "{path: ../shared/data/7scenes-redkitchen, frames: '0:480', "
                             "stride: 2}")
        h, w = self.training_size()
        if h % 32 or w % 32:
            raise TrainError(f"training size {h}x{w} must be multiples of 32")
        ema = float(self.train.ema_decay or 0.0)
        if not 0.0 <= ema < 1.0:
            raise TrainError(f"train.ema_decay must be in [0, 1), got {ema}")
        if int(self.train.average_from or 0) < 0 or int(self.train.average_every or 0) < 1:
            raise TrainError("train.average_from must be >= 0 and train.average_every >= 1, "
                             f"got {self.train.average_from} and {self.train.average_every}")
        if int(self.train.average_from or 0) > 0 and ema > 0:
            raise TrainError("train.average_from and train.ema_decay both average the weights: "
                             "set one of them")
        if self.eval.select_by == "pose_fit" and not float(self.train.pose_distill or 0.0) > 0:
            raise TrainError("eval.select_by: pose_fit needs train.pose_distill > 0")


def _check_value(name: str, value: Any, meta: dict) -> None:
    if value is None:
        return
    choices, low, high = meta.get("choices"), meta.get("low"), meta.get("high")
    if choices and value not in choices:
        raise TrainError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    if low is None and high is None:
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TrainError(f"{name} must be a number, got {value!r}") from None
    if low is not None and number < low:
        raise TrainError(f"{name} must be >= {low}, got {value}")
    if high is not None and number > high:
        raise TrainError(f"{name} must be <= {high}, got {value}")


def _assign(obj, values, where: str = "") -> None:
    """Set the fields of the dataclass ``obj`` from the mapping ``values``; sections merge."""
    if values is None:
        return
    if not isinstance(values, dict):
        raise TrainError(f"training option '{where.rstrip('.') or 'file'}' must be a mapping of "
                         f"options, got {values!r}")
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        if key not in names:
            raise TrainError(f"unknown training option '{where}{key}'; known: {sorted(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _assign(current, value, f"{where}{key}.")
        else:
            setattr(obj, key, copy.deepcopy(value))


def _read(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise TrainError(f"training config '{p}' does not exist; expected a YAML file such as "
                         "config/train/7scenes.yaml")
    try:
        return yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TrainError(f"training config '{p}' is not valid YAML: {exc}") from None


def load_options(source=None, overrides: dict | None = None) -> TrainOptions:
    """The options of a training YAML file (a path), a mapping of the same form or a
    :class:`TrainOptions` (copied), then ``overrides`` (``{"train.max_steps": 10}``), checked."""
    if isinstance(source, TrainOptions):
        options = copy.deepcopy(source)
    else:
        options = TrainOptions()
        _assign(options, source if isinstance(source, dict) or source is None
                else _read(source))
    for key, value in (overrides or {}).items():
        options.set(key, value)
    options.check()
    return options


def _shown(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().replace("\n...", "")


def options_markdown(options: TrainOptions | None = None) -> str:
    """The table of every training option (the section of docs/training.md between its
    ``training-options`` markers)."""
    options = options or TrainOptions()
    rows = ["| option | default | range | description |", "|---|---|---|---|"]
    for name, value, meta in options.parameters():
        if meta.get("choices"):
            rng = ", ".join(f"`{c}`" for c in meta["choices"])
        elif meta.get("low") is not None or meta.get("high") is not None:
            low, high = meta.get("low"), meta.get("high")
            rng = f"[{low}, {high}]" if high is not None else f">= {low}"
        else:
            rng = ""
        # a model key left null takes the variant's value (vode_ros.learn.networks.VARIANTS)
        default = "the variant's" if value is None and name.startswith("model.") \
            else f"`{_shown(value)}`"
        rows.append(f"| `{name}` | {default} | {rng} | {meta['description']} |")
    return "\n".join(rows) + "\n"
