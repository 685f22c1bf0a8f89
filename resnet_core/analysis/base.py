"""What every analysis shares: the request types, the context an analysis runs in, the registry entry,
the on-disk cache in a run's directory, and the cost model behind the estimate shown before Start.

An analysis is one function ``fn(ctx, settings) -> dict`` of plain, JSON-serialisable data. The context
resolves the model source (a config built fresh at initialisation, a stored run, or a checkpoint file),
the data and the device, and carries progress and cancellation: ``ctx.report(fraction, message)`` is
called between units of work and raises ``Cancelled`` when the caller's event is set.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from resnet_core.config import ConfigError, DataConfig, ModelConfig


class AnalysisError(ValueError):
    """A request that cannot be served; the message says what to change."""


class Cancelled(RuntimeError):
    """Raised between units of work when the caller's cancel event is set."""


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from: exactly one of a config (fresh nets at initialisation), a stored
    run (its last checkpoint, its own model and data configs) or a checkpoint file (ours or akamaster)."""

    config: ModelConfig | None = None
    run_id: str | None = None
    checkpoint: str | None = None

    def __post_init__(self):
        given = [k for k in ("config", "run_id", "checkpoint") if getattr(self, k) is not None]
        if len(given) != 1:
            raise AnalysisError("give exactly one model source: a model config, a run id or a checkpoint path"
                                + (f" (got {', '.join(given)})" if given else ""))

    def describe(self) -> str:
        if self.config is not None:
            return f"{self.config.name} at initialisation"
        if self.run_id is not None:
            return f"run {self.run_id}"
        return f"checkpoint {Path(self.checkpoint).name}"


@dataclass(frozen=True)
class Analysis:
    name: str            # "gradient-flow", "shattering", "paths", "lesion", "interpolate", "landscape"
    title: str
    caption: str         # one paragraph: what the paper claims, what to look for (shown on the page)
    needs: str           # "config" | "trained" | "either"
    defaults: dict       # default settings (JSON-able)
    fn: Callable         # fn(ctx: AnalysisContext, settings: dict) -> dict of plain data
    # cost(ctx, settings) -> (forward-pass multiply-adds, "441 grid points x 500 images x 1 forward")
    cost: Callable | None = None
    check: Callable | None = None   # check(settings) -> None; raises AnalysisError for a bad value
    # the paper's own setting where the default is smaller (images, draws, grid): one flag (``--paper``) or
    # one click away; every result says which was used (``setting_used``)
    paper: dict | None = None


def setting_used(analysis: Analysis, settings: dict) -> str:
    """"the paper's" or what was reduced, e.g. "reduced: images 1000 (the paper's 10000)"."""
    paper = analysis.paper or {}
    smaller = [f"{k} {settings.get(k)} (the paper's {v})" for k, v in paper.items() if settings.get(k) != v]
    return "the paper's" if not smaller else "reduced: " + ", ".join(smaller)


# ----------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------

def merge_settings(analysis: Analysis, settings: dict | None) -> dict:
    unknown = set(settings or {}) - set(analysis.defaults)
    if unknown:
        raise AnalysisError(f"{analysis.title} has no setting(s) {', '.join(sorted(unknown))}; "
                            f"it takes {', '.join(sorted(analysis.defaults)) or 'none'}")
    merged = {**analysis.defaults, **{k: v for k, v in (settings or {}).items() if v is not None}}
    if analysis.check is not None:
        analysis.check(merged)
    return json.loads(json.dumps(merged))  # tuples -> lists: the settings as the cache and the result see them


def int_setting(settings: dict, name: str, lo: int, hi: int) -> int:
    v = settings[name]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise AnalysisError(f"{name} must be an integer from {lo} to {hi}; got {v!r}")
    return v


def float_setting(settings: dict, name: str, lo: float, hi: float) -> float:
    v = settings[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise AnalysisError(f"{name} must be a number from {lo:g} to {hi:g}; got {v!r}")
    return float(v)


def depths_setting(settings: dict, name: str = "depths", block: str = "basic") -> list[int]:
    depths = settings.get(name)
    if depths is None:
        return []
    if isinstance(depths, str):
        try:
            depths = [int(d) for d in depths.replace(" ", "").split(",") if d]
        except ValueError:
            raise AnalysisError(f"{name} must be comma-separated integers, e.g. 8,20,56; got {depths!r}") from None
    if not isinstance(depths, (list, tuple)) or not depths:
        raise AnalysisError(f"{name} must be a list of depths, e.g. [8, 20, 56]")
    out = []
    for d in depths:
        try:
            ModelConfig(depth=d, block=block)
        except ConfigError as e:
            raise AnalysisError(str(e)) from None
        out.append(int(d))
    return out


# ----------------------------------------------------------------------------------------------------
# The context an analysis runs in
# ----------------------------------------------------------------------------------------------------

@dataclass
class AnalysisContext:
    source: ModelSource
    data_config: DataConfig | None
    device: torch.device
    runs_dir: Path | None = None
    progress: Callable[[float, str], None] | None = None
    cancel: threading.Event | None = None
    _cache: dict = field(default_factory=dict)

    # --- progress and cancellation ----------------------------------------------------------------
    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled")

    def report(self, fraction: float, message: str = "") -> None:
        self.check()
        if self.progress is not None:
            self.progress(max(0.0, min(1.0, float(fraction))), message)

    # --- the model ------------------------------------------------------------------------------
    @property
    def trained_available(self) -> bool:
        return self.source.config is None

    def run_info(self):
        from resnet_core.training.runs import RunStore

        if "run_info" not in self._cache:
            store = RunStore(self.runs_dir)
            try:
                info = store.get(self.source.run_id)
            except (FileNotFoundError, ValueError) as e:
                raise AnalysisError(str(e)) from None
            if not info.config:
                raise AnalysisError(f"run {self.source.run_id} is {info.status}: its config cannot be read")
            self._cache["run_info"] = info
            self._cache["run_store"] = store
        return self._cache["run_info"]

    def checkpoint_path(self) -> Path | None:
        if self.source.checkpoint is not None:
            return Path(self.source.checkpoint)
        if self.source.run_id is not None:
            self.run_info()
            return self._cache["run_store"].checkpoint_path(self.source.run_id)
        return None

    def trained(self):
        """The trained model as a ``LoadedModel`` (in eval mode, on the device)."""
        from resnet_core.nets.checkpoints import load_checkpoint

        if "trained" not in self._cache:
            if self.source.config is not None:
                raise AnalysisError("this analysis needs a trained model: choose a stored run or a checkpoint")
            path = self.checkpoint_path()
            if path is None:
                raise AnalysisError(f"run {self.source.run_id} has no checkpoint yet: wait until it saves one "
                                    "(at the end, or every --checkpoint-every steps)")
            loaded = load_checkpoint(path)
            loaded.model.to(self.device).eval()
            self._cache["trained"] = loaded
        return self._cache["trained"]

    def model_config(self) -> ModelConfig:
        """The architecture: the config given, a run's own, or the one a checkpoint carries."""
        if self.source.config is not None:
            cfg = self.source.config
            n_classes = len(self.dataset().classes)
            return cfg if cfg.num_classes == n_classes else dataclasses.replace(cfg, num_classes=n_classes)
        if self.source.run_id is not None:
            try:
                return ModelConfig.from_dict(self.run_info().config["model"])
            except (ConfigError, KeyError, TypeError) as e:
                raise AnalysisError(f"run {self.source.run_id} has an unreadable model config: {e}") from None
        cfg = self.trained().model_cfg
        if cfg is None:
            raise AnalysisError("this checkpoint is not a CIFAR ResNet: the analyses need one")
        return cfg

    def seed(self) -> int:
        if self.source.run_id is not None:
            return int(self.run_info().config.get("train", {}).get("seed", 0))
        return 0

    def fresh_model(self, cfg: ModelConfig | None = None, seed: int | None = None) -> torch.nn.Module:
        """A net at initialisation, drawn exactly as ``train`` draws it for that seed (global RNG under the
        trainer's lock), without disturbing the caller's global RNG state."""
        from resnet_core.nets.models import build_model
        from resnet_core.device import MODEL_INIT_LOCK

        cfg = cfg or self.model_config()
        seed = self.seed() if seed is None else seed
        with MODEL_INIT_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(cfg)
        return model.to(self.device)

    def initial_model(self, saved_only: bool = False) -> tuple[torch.nn.Module, str]:
        """The trained model's weights at step 0: a run's saved ``checkpoints/init.pt`` when present, else
        redrawn from the run's seed, else, for a community checkpoint, a fresh draw with seed 0. With
        ``saved_only`` only the saved weights count (a redraw is a net at initialisation, not necessarily
        this net's own start): without them it raises ``AnalysisError`` saying so."""
        from resnet_core.nets.checkpoints import CheckpointError, load_checkpoint

        if self.source.run_id is not None:
            init = self.run_info().path / "checkpoints" / "init.pt"
            if init.is_file():
                try:
                    return load_checkpoint(init).model.to(self.device), "saved at step 0 (checkpoints/init.pt)"
                except CheckpointError:
                    if saved_only:
                        raise AnalysisError(f"run {self.source.run_id}'s checkpoints/init.pt cannot be read: "
                                            "train the run again to get its initial weights") from None
            if saved_only:
                raise AnalysisError(f"run {self.source.run_id} saved no initial weights (checkpoints/init.pt; "
                                    "runs trained before runs saved them lack it): train it again to draw the "
                                    "line from its real initial weights")
            return self.fresh_model(), f"redrawn from the run's seed {self.seed()} (the run saved no init.pt)"
        if self.source.checkpoint is not None:
            path = Path(self.source.checkpoint)
            sibling = path.parent / "init.pt"
            if path.parent.name == "checkpoints" and sibling.is_file() and sibling != path:
                return load_checkpoint(sibling).model.to(self.device), f"saved at step 0 ({sibling})"
            if saved_only:
                raise AnalysisError(f"{path.name} carries no initial weights (no init.pt beside it): choose a "
                                    "stored run trained here, which saves them")
            return (self.fresh_model(self.trained().model_cfg, 0),
                    "a fresh draw with seed 0 (the checkpoint carries no initial weights)")
        return self.fresh_model(), "a fresh draw"

    # --- the data -------------------------------------------------------------------------------
    def resolved_data_config(self) -> DataConfig:
        if self.data_config is not None:
            return self.data_config
        if self.source.run_id is not None:
            try:
                return DataConfig.from_dict(self.run_info().config["data"])
            except (ConfigError, KeyError, TypeError) as e:
                raise AnalysisError(f"run {self.source.run_id} has an unreadable data config: {e}") from None
        if self.source.checkpoint is not None:
            from resnet_core.training.evaluate import default_data_config

            return default_data_config(self.trained())
        return DataConfig()

    def dataset(self):
        """The data set, normalised as the model expects (a checkpoint's own mean and std)."""
        if "dataset" not in self._cache:
            cfg = self.resolved_data_config()
            # A folder the user points an analysis at is scored whole, every image (as ``evaluate`` does); the
            # 80/20 split stays for training, and for a run's own folder, whose held-out 20% is its test set.
            ds = _load_dataset_cached(cfg, whole=self.data_config is not None and cfg.name == "folder")
            if self.source.config is None:
                loaded = self.trained()
                n_out = loaded.model.fc.out_features
                if n_out != len(ds.classes):
                    raise AnalysisError(f"the model predicts {n_out} classes but the data set "
                                        f"{ds.name} has {len(ds.classes)}: choose the data it was trained on")
                ds = dataclasses.replace(ds, mean=tuple(loaded.mean), std=tuple(loaded.std))
            self._cache["dataset"] = ds
        return self._cache["dataset"]

    def images(self, n: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` images of a split (a fixed subset), normalised, no augmentation: (n, 3, H, W), (n,)."""
        from resnet_core.data import normalize

        ds = self.dataset()
        xs, ys = (ds.test_x, ds.test_y) if split == "test" else (ds.train_x, ds.train_y)
        n = min(int(n), int(xs.shape[0]))
        if n < 1:
            raise AnalysisError(f"the data set {ds.name} has no {split} images")
        x = normalize(xs[:n].to(self.device), ds.mean, ds.std)
        return x, ys[:n].to(self.device)


@functools.lru_cache(maxsize=2)  # a run's analyses one after another reuse its data; CIFAR-10 is ~180 MB
def _load_dataset_cached(cfg: DataConfig, whole: bool = False):
    from resnet_core.data import load_dataset, load_folder

    if whole:  # every image in both splits: the test split is the whole folder
        return load_folder(cfg.path, size=cfg.image_size, whole=True)
    return load_dataset(cfg)


# ----------------------------------------------------------------------------------------------------
# Memory, cost
# ----------------------------------------------------------------------------------------------------

class PeakMemory:
    """Peak memory of a block of work, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` over the block (tensors only, exact). CPU: the growth of the
    process's peak resident set (``ru_maxrss``) over the block. The kernel keeps one high-water mark per
    process, so in a long-lived process that already used more (the dashboard) the growth reads 0: the
    figure is exact only in a fresh process, which is how bench/analysis_speed.py measures it.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.mb = 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            self.mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._base) / 1024
        return False


_RATE_LOCK = threading.Lock()
_RATES: dict[tuple[str, float, int], float] = {}


def forward_rate(device: torch.device, width: float = 1.0, image_size: int = 32) -> float:
    """Multiply-adds per second of a ResNet-20 forward pass (batch 256, the analyses' own batches are
    250-500) at ``width`` and ``image_size`` on ``device``, measured once per process and size: the unit
    of every cost estimate. Size and batch matter: on the 2-core CPU a 16x16 half-width net ran at
    30 GMAC/s at batch 32 and 45 at 256, a 32x32 full-width ResNet-56 at 88 at batch 128 and 120 at
    250 (per-layer overhead, not arithmetic, sets small nets' time), so one rate from a big net at batch
    32 made the quick runs' estimates 2-2.5x short (bench/why_defaults.py). On the CPU it is timed
    in channels_last, the layout the analyses run in there (oneDNN's NHWC kernels ran the 32x32 pass at
    46 against 27-30 GMAC/s for NCHW). The median of five passes counts, so one pass slowed by other work
    does not set the rate for the whole process, nor one fast pass (on the 2-core VM one process's passes
    ran at 75 or at 120 GMAC/s from one moment to the next). What an analysis's own mix of batches and
    passes makes of this rate is learned from its runs here (``resnet_core/history.py``)."""
    from resnet_core.nets.models import count_macs

    key = (str(device), float(width), int(image_size))
    with _RATE_LOCK:
        if key not in _RATES:
            model, x = _rate_net(device, width, image_size)
            with torch.no_grad():
                seconds = _median_seconds(lambda: model(x), device)
            _RATES[key] = count_macs(model, (image_size, image_size)) * 256 / max(seconds, 1e-6)
        return _RATES[key]


def _rate_net(device: torch.device, width: float, image_size: int):
    """The ResNet-20 and the batch of 256 images the rates are timed on, in the layout the analyses
    run in on ``device``."""
    from resnet_core.nets.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(ModelConfig(depth=20, width=width)).to(device).eval()
    x = torch.randn(256, 3, image_size, image_size, device=device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def _median_seconds(fn, device: torch.device, passes: int = 5) -> float:
    """The median wall time of ``passes`` calls of ``fn``, after two calls that warm the allocator and
    the kernel selection (the first passes run slower)."""
    fn()
    fn()
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[passes // 2]


_PROBED: dict[tuple[str, float, int], float] = {}


def probed_factor(device: torch.device, width: float = 1.0, image_size: int = 32) -> float:
    """How many plain forward passes one pass with the training probes armed costs on ``device``
    (``resnet_core.training.probes``: the moments of every 3x3 conv's BN output, every block's branch
    and input, every stage's output, each a reduction over a layer's activations in a hook): the median
    of five probed passes of ``forward_rate``'s ResNet-20 over its plain pass, measured once per process
    and size (1.57 for 32x32 on the 2-core CPU, in 0.9 s). The Fig. 7 responses run this way; counted as
    plain passes, their estimate for the community ResNet-56 was 30% short there (bench/why_defaults.py)."""
    from resnet_core.analysis.responses import layer_responses
    from resnet_core.nets.models import count_macs

    key = (str(device), float(width), int(image_size))
    rate = forward_rate(device, width, image_size)
    with _RATE_LOCK:
        if key not in _PROBED:
            model, x = _rate_net(device, width, image_size)
            plain = count_macs(model, (image_size, image_size)) * x.shape[0] / rate
            probed = _median_seconds(lambda: layer_responses(model, x, x.shape[0]), device)
            _PROBED[key] = max(1.0, probed / max(plain, 1e-9))
        return _PROBED[key]


def known_rate(device: torch.device, width: float = 1.0, image_size: int = 32) -> float | None:
    """``forward_rate`` if this process has measured it already, else None (nothing is timed)."""
    with _RATE_LOCK:
        return _RATES.get((str(device), float(width), int(image_size)))


@functools.lru_cache(maxsize=64)
def macs_of(cfg: ModelConfig, image_size: int = 32) -> int:
    """Multiply-adds of one forward pass of one image, counted from the config (no model is built)."""
    from resnet_core.memory import estimate

    return estimate(cfg, image_size).macs


# ----------------------------------------------------------------------------------------------------
# The cache in a run's directory
# ----------------------------------------------------------------------------------------------------

def cache_path(ctx: AnalysisContext, name: str, settings: dict) -> Path | None:
    """runs/<id>/analysis/<name>-<hash>.json, the hash over the settings, the data config and the
    checkpoint file's size and modification time (a run that saves a newer checkpoint is analysed anew)."""
    if ctx.source.run_id is None:
        return None
    info = ctx.run_info()
    ckpt = ctx.checkpoint_path()
    stamp = None
    if ckpt is not None and ckpt.is_file():
        st = ckpt.stat()
        stamp = [st.st_size, st.st_mtime_ns]
    key = json.dumps({"settings": settings, "data": ctx.resolved_data_config().to_dict(), "checkpoint": stamp},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return info.path / "analysis" / f"{name}-{digest}.json"


def read_cache(path: Path | None) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a damaged cache entry is recomputed


def write_cache(path: Path | None, result: dict) -> None:
    if path is None:
        return
    try:
        # Not parents=True: a run deleted while its analysis computed stays deleted (recreating its
        # folder would bring it back as a damaged run).
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only run directory still gets its result, only not cached
