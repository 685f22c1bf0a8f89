"""Typed, validated configuration: one dataclass per concern (model, data, training).

Every config validates itself on construction and raises ConfigError with a message that says
what is valid, round-trips through JSON (``to_dict`` / ``from_dict``), and is saved in every run
directory and checkpoint so a run is always analysed with the architecture it was trained with.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """An invalid setting; the message is meant for a person and says what is valid."""


BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B", "C")
INITS = ("kaiming", "xavier", "normal")
SCHEDULES = ("step", "cosine", "constant")
DATASETS = ("synthetic", "cifar10", "folder")
MAX_DEPTH = 1202
MAX_CLASSES = 100_000
MAX_STEPS = 100_000_000       # a year of steps on a fast GPU; more is a typo
MAX_EPOCHS = 1_000_000
MAX_SEED = 2**63 - 1          # what torch.manual_seed and numpy's generators accept         # ImageNet-21k has 21,841; a larger head is a typo or a hostile file
STAGE_WIDTHS = (16, 32, 64)   # channels of the three stages at width 1 (He et al. 2015 §4.2)
IMAGE_SIZES = (8, 64)         # smallest and largest input side: three stages halve it twice


def blocks_per_stage(depth: int, block: str) -> int:
    """n for depth = 6n+2 (basic, two convs a block) or 9n+2 (bottleneck, three convs a block)."""
    convs = 2 if block == "basic" else 3
    per_stage = 3 * convs
    if depth < per_stage + 2 or (depth - 2) % per_stage:
        raise ConfigError(
            f"depth {depth} is not valid for {block} blocks: use {per_stage}n+2, "
            f"e.g. {', '.join(str(d) for d in valid_depths(block)[:6])}"
        )
    return (depth - 2) // per_stage


def valid_depths(block: str, max_depth: int = MAX_DEPTH) -> list[int]:
    per_stage = 6 if block == "basic" else 9
    return list(range(per_stage + 2, max_depth + 1, per_stage))


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


class _JsonMixin:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass(frozen=True)
class ModelConfig(_JsonMixin):
    depth: int = 20
    residual: bool = True
    shortcut: str = "A"          # A: zero-pad identity, B: projection where shape changes, C: all projections
    block: str = "basic"         # basic (6n+2) or bottleneck (9n+2)
    preact: bool = False         # full pre-activation (He et al. 2016) instead of post-activation (2015)
    batchnorm: bool = True
    width: float = 1             # multiplier of the stage widths 16/32/64; fractional ones too (0.5: 8/16/32)
    init: str = "kaiming"        # kaiming (He), xavier, normal: N(0, 0.02)
    zero_init_last: bool = False  # zero the last BN gamma of every branch (Goyal et al. 2017)
    num_classes: int = 10

    def __post_init__(self):
        if not isinstance(self.depth, int) or isinstance(self.depth, bool):
            raise ConfigError(f"depth must be an integer; got {self.depth!r}")
        _choice("block", self.block, BLOCKS)
        _choice("shortcut", self.shortcut, SHORTCUTS)
        _choice("init", self.init, INITS)
        if self.depth > MAX_DEPTH:
            raise ConfigError(f"depth {self.depth} is too deep: at most {MAX_DEPTH}")
        blocks_per_stage(self.depth, self.block)
        w = self.width
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ConfigError(f"width must be a number, e.g. 1 or 0.5; got {w!r}")
        if isinstance(w, float) and w.is_integer():
            # 1.0 from the command line is the same net as 1: one spelling, one label, one config.json.
            object.__setattr__(self, "width", int(w))
        if not 0 < w <= 16 or min(self.stage_widths) < 1:
            raise ConfigError(f"width must be from {1 / STAGE_WIDTHS[0]:g} (one channel in the first stage) "
                              f"to 16; got {w!r}")
        c = self.num_classes
        if isinstance(c, bool) or not isinstance(c, int) or not 2 <= c <= MAX_CLASSES:
            raise ConfigError(f"num_classes must be an integer from 2 to {MAX_CLASSES:,}; got {c!r}")
        if self.zero_init_last and not self.batchnorm:
            raise ConfigError("zero_init_last needs BatchNorm (it zeroes the last BN of each branch)")

    @property
    def n(self) -> int:
        return blocks_per_stage(self.depth, self.block)

    @property
    def stage_widths(self) -> tuple[int, int, int]:
        """Channels of the three stages before the block expansion: 16/32/64 x width, rounded."""
        return tuple(max(0, round(c * self.width)) for c in STAGE_WIDTHS)

    @property
    def name(self) -> str:
        kind = ("preact-" if self.preact else "") + ("resnet" if self.residual else "plain")
        extra = "" if self.block == "basic" else "-bottleneck"
        width = "" if self.width == 1 else f" w{self.width:g}"
        return f"{kind}-{self.depth}{extra}{width}"


@dataclass(frozen=True)
class DataConfig(_JsonMixin):
    name: str = "synthetic"      # synthetic (embedded shapes), cifar10, folder
    path: str | None = None      # cifar10: directory holding/receiving cifar-10-batches-py; folder: image root
    download: bool = True        # cifar10: try torchvision's download when the files are missing
    augment: bool = True         # the paper's 4-pixel pad, random 32x32 crop, horizontal flip
    pca_color: bool = False      # AlexNet-style PCA colour augmentation (Krizhevsky et al. 2012)
    n_train: int = 10000         # synthetic only
    n_test: int = 2000           # synthetic only
    seed: int = 0                # synthetic only: the generated images
    image_size: int = 32         # input side in pixels; 16 makes every step ~4x cheaper (the quick scale)
    clutter: bool = True         # synthetic only: distractor strokes and full noise (False: fewer)
    large_objects: bool = False  # synthetic only: objects of radius 0.75-0.95 (not 0.55-0.8) of the half-width

    def __post_init__(self):
        _choice("dataset", self.name, DATASETS)
        lo, hi = IMAGE_SIZES
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or not lo <= self.image_size <= hi:
            raise ConfigError(f"image size must be an integer from {lo} to {hi} pixels (32 is CIFAR's); "
                              f"got {self.image_size!r}")
        if self.name == "folder" and not self.path:
            raise ConfigError("the folder data set needs a path: folder:PATH or --data-dir PATH")
        if self.n_train < 10 or self.n_test < 10:
            raise ConfigError("n_train and n_test must be at least 10")


@dataclass(frozen=True)
class TrainConfig(_JsonMixin):
    steps: int | None = 500       # optimizer steps; exactly one of steps/epochs
    epochs: float | None = None
    batch_size: int = 128
    lr: float = 0.1               # SGD learning rate per batch of batch_size (paper: 0.1 at 128)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"        # step: /10 at 50% and 75% of the run (paper: 32k, 48k of 64k)
    warmup_steps: int = 0         # linear warm-up from lr/10 (the paper warms ResNet-110 up at 0.01)
    seed: int = 0                 # model init and data order; twins with one seed see identical batches
    device: str = "auto"          # auto, cpu, cuda, cuda:N, mps
    amp: bool = True              # bf16 autocast on CUDA only
    channels_last: bool = True    # NHWC memory format on CPU and CUDA (faster kernels)
    eval_every: int = 100         # steps between test-set evaluations (0: only at the end)
    eval_batches: int = 8         # test batches per periodic evaluation (the final one uses all)
    log_every: int = 1            # steps between probe records
    feature_maps_every: int = 50  # steps between feature-map snapshots of the probe image (0: off)
    checkpoint_every: int = 0     # steps between checkpoints (0: only at the end)
    probes: bool = True

    def __post_init__(self):
        if (self.steps is None) == (self.epochs is None):
            raise ConfigError("give exactly one of steps or epochs")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ConfigError(f"steps must be a positive integer; got {self.steps!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, float))
                                        or not 0 < self.epochs <= MAX_EPOCHS):
            raise ConfigError(f"epochs must be a positive number up to {MAX_EPOCHS:,}; got {self.epochs!r}")
        if self.steps is not None and self.steps > MAX_STEPS:
            raise ConfigError(f"steps must be at most {MAX_STEPS:,}; got {self.steps!r}")
        if not 1 <= self.batch_size <= 8192:
            raise ConfigError(f"batch size must be from 1 to 8192; got {self.batch_size}")
        if not (self.lr > 0 and self.lr < 100):
            raise ConfigError(f"learning rate must be positive (the paper uses 0.1); got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1); got {self.momentum}")
        if not 0 <= self.weight_decay < 1:  # NaN fails both comparisons
            raise ConfigError(f"weight decay must be a number from 0 to below 1 (the paper uses 1e-4); "
                              f"got {self.weight_decay}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer from 0 to {MAX_SEED}; got {self.seed!r}")
        _choice("schedule", self.schedule, SCHEDULES)
        for name in ("warmup_steps", "eval_every", "eval_batches", "feature_maps_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be non-negative; got {getattr(self, name)}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be at least 1; got {self.log_every}")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps; got {dev!r}")

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, round(self.epochs * n_train / self.batch_size))


PROBE_SCOPES = ("global", "rank0-shard")


@dataclass(frozen=True)
class DistributedConfig(_JsonMixin):
    """How the run's processes split the work (torchrun, resnet_core/training/distributed.py); one process: the defaults."""
    world_size: int = 1           # processes (ranks); the batch size is the global batch, split over them
    backend: str = ""             # gloo (CPU) or nccl (CUDA); "" for one process
    sync_bn: bool = False         # SyncBatchNorm: BN statistics over the global batch (CUDA only), not per rank
    # global: every probe sees the whole batch (one process). rank0-shard: gradient norms are of the
    # all-reduced (global-batch) gradient; branch and activation statistics are of rank 0's shard.
    probes: str = "global"

    def __post_init__(self):
        if not isinstance(self.world_size, int) or self.world_size < 1:
            raise ConfigError(f"world_size must be a positive integer; got {self.world_size!r}")
        _choice("probes", self.probes, PROBE_SCOPES)


@dataclass(frozen=True)
class RunConfig(_JsonMixin):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = ""
    group: str = ""              # the preset run group this run belongs to ("" for a single run)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        unknown = set(d) - {"model", "data", "train", "name", "group", "distributed"}
        if unknown:
            raise ConfigError(f"unknown RunConfig field(s): {', '.join(sorted(unknown))}")
        return cls(
            model=ModelConfig.from_dict(d.get("model", {})),
            data=DataConfig.from_dict(d.get("data", {})),
            train=TrainConfig.from_dict(d.get("train", {})),
            name=d.get("name", ""),
            group=d.get("group", ""),   # absent from config.json files written before groups existed
            distributed=DistributedConfig.from_dict(d.get("distributed", {})),  # absent: one process
        )

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        size = "" if self.data.image_size == 32 else f" {self.data.image_size}px"
        synthetic = self.data.name == "synthetic"
        clean = "" if self.data.clutter or not synthetic else " clean"
        large = " large" if self.data.large_objects and synthetic else ""
        aug = "" if self.data.augment else " no-aug"
        return f"{self.model.name}{size}{clean}{large}{aug}"
