"""Attribution maps through Captum, behind one registry, and checks that the maps mean something.

``METHODS`` maps a name to an ``AttributionMethod``: one function with one signature,
``fn(model, x, target, *, layer, settings, run) -> (B, H, W) float32 tensor``, plus its label,
whether it needs a layer, whether its map is signed, and default settings. Adding a method is adding
one function and one registry entry. ``attribute`` is the public entry point.

Channel aggregation (the maps are per pixel, the inputs have 3 channels):
* gradient maps (Saliency, SmoothGrad, Guided Backprop, Guided Grad-CAM) are unsigned: the maximum
  absolute value over channels (Simonyan et al. 2014, §3.1);
* attribution maps with a completeness property (Integrated Gradients, DeepLift, Occlusion) are
  signed: the sum over channels, positive = evidence for the target;
* Grad-CAM is one channel already, ReLU'd (Selvaraju et al. 2017, eq. 2), upsampled bilinearly.

Baselines: zeros in normalised space, i.e. the data set's mean colour (IG, DeepLift, Occlusion and
the deletion curve all use it), so a baseline pixel carries no colour information.

Long methods (IG, SmoothGrad, Occlusion, deletion/insertion) run in chunks: Captum's own
``internal_batch_size`` / ``nt_samples_batch_size`` / ``perturbations_per_eval``, sized by a pixel
budget so memory stays bounded. A forward pre-hook counts the examples of each chunk, reports the
fraction done and raises ``Cancelled`` between chunks when the cancel event is set; it adds no
forward pass, so the cost over calling Captum directly is the hook call and the aggregation.
"""
from __future__ import annotations

import copy
import io
import math
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import (DeepLift, GuidedBackprop, GuidedGradCam, IntegratedGradients, LayerAttribution,
                         LayerGradCam, NoiseTunnel, Occlusion, Saliency)
from PIL import Image

from .checkpoints import LoadedModel

# Images per chunk x pixels per image: 16 ImageNet crops (16 x 224 x 224 = 0.8 M pixels), or every
# step at once for a 32x32 image. Bounds activation memory of IG/SmoothGrad/Occlusion batches.
PIXEL_BUDGET = 16 * 224 * 224
RANDOMISATION_THRESHOLD = 0.5   # rank correlation above this: the map barely depends on the top layers

# Captum announces, on every call, that it set requires_grad on the input and hooks on the ReLUs: both
# expected here, and the noise would hide real warnings in the CLI and the server log.
warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")
warnings.filterwarnings("ignore", message=r"Setting forward, backward hooks and attributes on non-linear")


class AttributionError(ValueError):
    """An attribution request that cannot be served; the message says what to change."""


class Cancelled(RuntimeError):
    """Raised between chunks when the caller's cancel event is set."""


def chunk_size(x: torch.Tensor, total: int) -> int:
    """Examples per forward pass for ``total`` perturbed copies of ``x`` (B, C, H, W)."""
    per_example = x.shape[0] * x.shape[2] * x.shape[3]
    return int(max(1, min(total, PIXEL_BUDGET // max(1, per_example))))


class _Run:
    """Progress and cancellation for one attribution: a forward pre-hook counts examples."""

    def __init__(self, progress: Callable[[float], None] | None, cancel: threading.Event | None):
        self.progress, self.cancel = progress, cancel
        self.expected, self.seen = 0, 0

    @contextmanager
    def track(self, model: nn.Module, expected_examples: int):
        if self.progress is None and self.cancel is None:
            yield
            return
        self.expected, self.seen = max(1, expected_examples), 0

        def hook(module, args):
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled("cancelled")
            self.seen += int(args[0].shape[0])
            if self.progress is not None:
                self.progress(min(1.0, self.seen / self.expected))

        handle = model.register_forward_pre_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled")


@dataclass(frozen=True)
class AttributionMethod:
    name: str
    label: str
    fn: Callable
    needs_layer: bool = False
    signed: bool = False
    long_running: bool = False
    defaults: dict = field(default_factory=dict)
    help: str = ""


def _abs_max(a: torch.Tensor) -> torch.Tensor:
    return a.abs().amax(dim=1)  # (B, C, H, W) -> (B, H, W)


def _channel_sum(a: torch.Tensor) -> torch.Tensor:
    return a.sum(dim=1)  # (B, C, H, W) -> (B, H, W)


def resolve_layer(model: nn.Module, layer: str | None) -> nn.Module:
    names = layer_choices(model)
    name = layer or default_layer(model)
    modules = dict(model.named_modules())
    if name == "stem" and "stem" not in modules and "maxpool" in modules:
        name = "maxpool"
    if name not in modules:
        raise AttributionError(f"no layer {name!r} in this model: choose one of {', '.join(names)}")
    return modules[name]


def layer_choices(model: nn.Module) -> list[str]:
    """Grad-CAM layers by the model's own names: "stem" and the blocks ("layer3.2", ...)."""
    infos = getattr(model, "feature_info", None)
    if infos:
        return [f.name for f in infos]
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def default_layer(model: nn.Module) -> str:
    return layer_choices(model)[-1]  # the last block: the coarsest, most class-specific map


# --- methods: fn(model, x, target, *, layer, settings, run) -> (B, H, W) ---------------------------------

def saliency(model, x, target, *, layer, settings, run):
    return _abs_max(Saliency(model).attribute(x, target=target, abs=True))


def integrated_gradients(model, x, target, *, layer, settings, run):
    n_steps = int(settings["n_steps"])
    batch = int(settings.get("internal_batch_size") or chunk_size(x, n_steps))
    with run.track(model, n_steps * x.shape[0]):
        a = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                 n_steps=n_steps, internal_batch_size=batch)
    return _channel_sum(a)


def smoothgrad(model, x, target, *, layer, settings, run):
    n = int(settings["nt_samples"])
    batch = int(settings.get("nt_samples_batch_size") or chunk_size(x, n))
    # Smilkov et al. 2017: noise of 10-20% of the input range; here 15% of this input's range.
    stdev = float(settings["noise_level"]) * float(x.max() - x.min())
    with run.track(model, n * x.shape[0]):
        a = NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=n,
                                                   nt_samples_batch_size=batch, stdevs=max(stdev, 1e-6),
                                                   target=target, abs=False)
    return _abs_max(a)  # the mean gradient's magnitude, as in the paper


def gradcam(model, x, target, *, layer, settings, run):
    cam = LayerGradCam(model, resolve_layer(model, layer)).attribute(x, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")  # (B, 1, H, W)
    return cam[:, 0]


def guided_gradcam(model, x, target, *, layer, settings, run):
    a = GuidedGradCam(model, resolve_layer(model, layer)).attribute(x, target=target, interpolate_mode="bilinear")
    return _abs_max(a)


def guided_backprop(model, x, target, *, layer, settings, run):
    return _abs_max(GuidedBackprop(model).attribute(x, target=target))


def deeplift(model, x, target, *, layer, settings, run):
    return _channel_sum(DeepLift(model).attribute(x, baselines=torch.zeros_like(x), target=target))


def occlusion_window(size: int) -> tuple[int, int]:
    """(window, stride) in pixels: 1/8 of the side with half-window stride (4 and 2 at 32 px, 28 and 14 at 224)."""
    window = max(2, round(size / 8))
    return window, max(1, window // 2)


def occlusion(model, x, target, *, layer, settings, run):
    h, w = x.shape[2:]
    window = int(settings.get("window") or occlusion_window(min(h, w))[0])
    stride = int(settings.get("stride") or max(1, window // 2))
    n_windows = ((h - window) // stride + 1) * ((w - window) // stride + 1)
    per_eval = chunk_size(x, n_windows)
    with run.track(model, (n_windows + 1) * x.shape[0]):  # Captum evaluates the unperturbed input once
        a = Occlusion(model).attribute(x, sliding_window_shapes=(x.shape[1], window, window),
                                       strides=(x.shape[1], stride, stride), baselines=0.0, target=target,
                                       perturbations_per_eval=per_eval)
    return _channel_sum(a)


METHODS: dict[str, AttributionMethod] = {m.name: m for m in [
    AttributionMethod("saliency", "Saliency", saliency,
                      help="|d score / d pixel|, max over colour channels (Simonyan et al. 2014)"),
    AttributionMethod("ig", "Integrated Gradients", integrated_gradients, signed=True, long_running=True,
                      defaults={"n_steps": 50, "internal_batch_size": None},
                      help="gradients averaged along the path from the mean-colour image (Sundararajan et al. 2017)"),
    AttributionMethod("smoothgrad", "SmoothGrad", smoothgrad, long_running=True,
                      defaults={"nt_samples": 20, "noise_level": 0.15, "nt_samples_batch_size": None},
                      help="saliency averaged over noisy copies (Smilkov et al. 2017)"),
    AttributionMethod("gradcam", "Grad-CAM", gradcam, needs_layer=True,
                      help="channel-weighted activations of a layer, upsampled (Selvaraju et al. 2017)"),
    AttributionMethod("guided_gradcam", "Guided Grad-CAM", guided_gradcam, needs_layer=True,
                      help="Guided Backprop times Grad-CAM (Selvaraju et al. 2017)"),
    AttributionMethod("guided_backprop", "Guided Backprop", guided_backprop,
                      help="gradients with negative ReLU gradients zeroed (Springenberg et al. 2015)"),
    AttributionMethod("deeplift", "DeepLift", deeplift, signed=True,
                      help="contributions relative to the mean-colour image (Shrikumar et al. 2017)"),
    AttributionMethod("occlusion", "Occlusion", occlusion, signed=True, long_running=True,
                      defaults={"window": None, "stride": None},
                      help="score drop when a square patch is set to the mean colour (Zeiler & Fergus 2014)"),
]}


def method_settings(method: str, settings: dict | None = None) -> dict:
    m = get_method(method)
    unknown = set(settings or {}) - set(m.defaults)
    if unknown:
        raise AttributionError(f"{m.label} has no setting(s) {', '.join(sorted(unknown))}; "
                               f"it takes {', '.join(m.defaults) or 'none'}")
    return {**m.defaults, **(settings or {})}


def get_method(name: str) -> AttributionMethod:
    if name not in METHODS:
        raise AttributionError(f"unknown method {name!r}: use one of {', '.join(METHODS)}")
    return METHODS[name]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def attribute(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor, method: str, *,
              layer: str | None = None, settings: dict | None = None,
              progress: Callable[[float], None] | None = None,
              cancel: threading.Event | None = None) -> np.ndarray:
    """The map of ``method`` for ``x`` (B, 3, H, W) and ``target``: float32 (H, W) for one image, else (B, H, W)."""
    m = get_method(method)
    cfg = method_settings(method, settings)
    run = _Run(progress, cancel)
    run.check()
    x = x.to(_device(model))
    if isinstance(target, torch.Tensor):
        target = target.to(x.device)
    if m.needs_layer:
        resolve_layer(model, layer)  # a clear message before Captum sees the name
    out = m.fn(model, x, target, layer=layer, settings=cfg, run=run)
    if progress is not None:
        progress(1.0)
    maps = out.detach().float().cpu().numpy()
    return maps[0] if maps.shape[0] == 1 else maps


MODEL_SPECS = "run:RUN_ID, ckpt:PATH or imagenet:resnet18|resnet34|resnet50"


def load_model(spec: str, *, runs_dir=None, device: str | torch.device = "cpu") -> LoadedModel:
    """A model by spec: ``run:RUN_ID`` (a stored run's last checkpoint, its own config), ``ckpt:PATH``
    (ours or a community CIFAR-10 file; architecture inferred from the weights) or
    ``imagenet:ARCH``. Raises ``ModelError`` or ``CheckpointError`` with a message for a person."""
    from .checkpoints import load_checkpoint
    from .imagenet import ModelError, load_imagenet

    kind, _, value = spec.partition(":")
    if not value:
        raise ModelError(f"model {spec!r} is not a model spec: use {MODEL_SPECS}")
    if kind == "run":
        from .runs import RunStore, validate_run_id
        try:
            validate_run_id(value)
        except ValueError as e:
            raise ModelError(str(e)) from None
        store = RunStore(runs_dir)
        if not (store.root / value).is_dir():
            raise ModelError(f"no run {value!r} in {store.root}: list them with `python -m resnet_core runs`")
        path = store.checkpoint_path(value)
        if path is None:
            raise ModelError(f"run {value!r} has no checkpoint yet (runs/<id>/checkpoints/last.pt is written "
                             "when training ends): wait for it or pick another run")
        loaded = load_checkpoint(path)
        loaded.source = f"run {value}"
    elif kind == "ckpt":
        loaded = load_checkpoint(value)
    elif kind == "imagenet":
        loaded = load_imagenet(value)
    else:
        raise ModelError(f"unknown model kind {kind!r}: use {MODEL_SPECS}")
    loaded.model.to(device)
    return loaded


@torch.no_grad()
def predict(loaded: LoadedModel, x: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
    """The top-k classes of one image with softmax probabilities."""
    probs = F.softmax(loaded.model(x.to(_device(loaded.model))).float(), dim=1)[0]
    p, idx = probs.topk(min(k, probs.numel()))
    return [(loaded.classes[i] if i < len(loaded.classes) else str(i), float(v)) for v, i in zip(p.tolist(), idx.tolist())]


@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    return F.softmax(model(x.to(_device(model))).float(), dim=1).cpu().numpy()


# --- sanity checks -----------------------------------------------------------------------------------

def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (a Grad-CAM map is mostly zeros after its ReLU)."""
    flat = a.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_vals = flat[order]
    boundaries = np.flatnonzero(np.diff(sorted_vals)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [flat.size]))
    avg = (starts + ends - 1) / 2.0
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def top_layers(model: nn.Module) -> list[str]:
    """The classifier and the last stage: what the top-layer randomisation re-initialises."""
    stages = [n for n, _ in model.named_children() if n.startswith("layer")]
    head = "fc" if hasattr(model, "fc") else list(dict(model.named_children()))[-1]
    return [head] + stages[-1:]


def cascade_steps(model: nn.Module) -> list[list[str]]:
    """Cascading randomisation (Adebayo et al. 2018, §4): the head, then each block from the top down."""
    blocks = [f.name for f in getattr(model, "feature_info", []) if f.kind == "block"]
    head = top_layers(model)[0]
    return [[head] + blocks[len(blocks) - i:] for i in range(len(blocks) + 1)]


def reinitialise(model: nn.Module, names: list[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with the named submodules' parameters (and BN statistics) re-drawn."""
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in names:
            if name not in modules:
                raise AttributionError(f"no layer {name!r} to re-initialise")
            for sub in modules[name].modules():
                if hasattr(sub, "reset_parameters"):
                    sub.reset_parameters()
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.reset_running_stats()
    return clone.eval()


@dataclass
class RandomisationResult:
    method: str
    steps: list[list[str]]          # re-initialised modules at each step
    rank_correlation: list[float]   # Spearman of |map| original vs randomised, per step
    threshold: float
    original: np.ndarray
    randomised: list[np.ndarray]

    @property
    def flagged(self) -> bool:
        """True when the map of the most randomised model still ranks pixels like the original."""
        return self.rank_correlation[-1] > self.threshold


def model_randomisation_check(model: nn.Module, x: torch.Tensor, target: int, method: str, *,
                              layer: str | None = None, settings: dict | None = None,
                              steps: list[list[str]] | None = None, threshold: float = RANDOMISATION_THRESHOLD,
                              original: np.ndarray | None = None, seed: int = 0,
                              progress: Callable[[float], None] | None = None,
                              cancel: threading.Event | None = None) -> RandomisationResult:
    """Adebayo et al. 2018: re-run ``method`` with the top layers re-initialised (or a cascade of
    steps) and compare with the Spearman rank correlation of the absolute maps. A map that barely
    changes when the weights it should explain are destroyed is flagged."""
    steps = steps or [top_layers(model)]
    total = len(steps) + (original is None)
    done = 0

    def sub(f):
        if progress is not None:
            progress((done + f) / total)

    if original is None:
        original = attribute(model, x, target, method, layer=layer, settings=settings, progress=sub, cancel=cancel)
        done += 1
    maps, corr = [], []
    for names in steps:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        random_model = reinitialise(model, names, seed)
        m = attribute(random_model, x, target, method, layer=layer, settings=settings, progress=sub, cancel=cancel)
        maps.append(m)
        corr.append(spearman(np.abs(original), np.abs(m)))
        done += 1
    return RandomisationResult(method, steps, corr, threshold, original, maps)


@dataclass
class FaithfulnessResult:
    fractions: np.ndarray          # share of pixels removed (deletion) or inserted (insertion), 0..1
    deletion: np.ndarray           # target probability along the deletion curve
    insertion: np.ndarray
    deletion_auc: float            # lower is better: removing the top pixels first kills the score
    insertion_auc: float           # higher is better
    random_deletion_auc: float | None = None   # the same with a random pixel order, for reference
    random_insertion_auc: float | None = None


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with sigma = side/16 (RISE, Petsiuk et al. 2018, blurs 224 px with sigma 5...)."""
    sigma = max(1.0, x.shape[-1] / 16)
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = (k / k.sum())
    c = x.shape[1]
    xp = F.pad(x, (r, r, r, r), mode="replicate")
    xp = F.conv2d(xp, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(xp, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _curve(model, start: torch.Tensor, end: torch.Tensor, order: torch.Tensor, target: int, fractions: np.ndarray,
           run: _Run) -> np.ndarray:
    """Probability of ``target`` as pixels of ``end`` replace those of ``start`` in ``order``. (1, C, H, W) inputs."""
    h, w = start.shape[2:]
    n_pixels = h * w
    counts = [int(round(f * n_pixels)) for f in fractions]
    batch = chunk_size(start, len(counts))
    rank = torch.empty(n_pixels, dtype=torch.long, device=start.device)
    rank[order] = torch.arange(n_pixels, device=start.device)  # rank of each pixel in the order
    out = []
    for i in range(0, len(counts), batch):
        run.check()
        ks = torch.tensor(counts[i:i + batch], device=start.device)
        mask = (rank.view(1, n_pixels) < ks.view(-1, 1)).view(-1, 1, h, w).to(start.dtype)  # (b, 1, H, W)
        imgs = start * (1 - mask) + end * mask                                             # (b, C, H, W)
        with torch.no_grad():
            p = F.softmax(model(imgs).float(), dim=1)[:, target]
        out.append(p.cpu().numpy())
        if run.progress is not None:
            run.seen += len(ks)
            run.progress(min(1.0, run.seen / run.expected))
    return np.concatenate(out)


def _auc(fractions: np.ndarray, curve: np.ndarray) -> float:
    return float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(fractions)))


def deletion_insertion(model: nn.Module, x: torch.Tensor, target: int, attr_map: np.ndarray, *,
                       steps: int = 32, with_random: bool = True, seed: int = 0,
                       progress: Callable[[float], None] | None = None,
                       cancel: threading.Event | None = None) -> FaithfulnessResult:
    """Petsiuk et al. 2018 (RISE): deletion sets pixels to the mean colour (zero in normalised space)
    in decreasing attribution order; insertion starts from a blurred copy and puts the original pixels
    back in that order. Curves of the target probability; AUC by the trapezoid rule over 0..1."""
    x = x[:1].to(_device(model))
    h, w = x.shape[2:]
    if attr_map.shape != (h, w):
        raise AttributionError(f"the map is {attr_map.shape}, the image {h}x{w}")
    fractions = np.linspace(0.0, 1.0, steps + 1)
    run = _Run(progress, cancel)
    run.expected, run.seen = len(fractions) * (4 if with_random else 2), 0
    scores = torch.from_numpy(np.ascontiguousarray(attr_map, dtype=np.float32)).flatten().to(x.device)
    order = torch.argsort(scores, descending=True, stable=True)
    baseline, blurred = torch.zeros_like(x), _blur(x)
    deletion = _curve(model, x, baseline, order, target, fractions, run)
    insertion = _curve(model, blurred, x, order, target, fractions, run)
    result = FaithfulnessResult(fractions, deletion, insertion, _auc(fractions, deletion), _auc(fractions, insertion))
    if with_random:
        g = torch.Generator().manual_seed(seed)
        random_order = torch.randperm(h * w, generator=g).to(x.device)
        result.random_deletion_auc = _auc(fractions, _curve(model, x, baseline, random_order, target, fractions, run))
        result.random_insertion_auc = _auc(fractions, _curve(model, blurred, x, random_order, target, fractions, run))
    return result


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> float:
    """Zhang et al. 2016 without tolerance (the images are 32 px): the share of images whose map
    maximum lies inside the object mask. A constant map points nowhere and counts as a miss."""
    maps, masks = np.asarray(maps), np.asarray(masks, dtype=bool)
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    idx = flat.argmax(axis=1)
    informative = flat.max(axis=1) > flat.min(axis=1)
    hits = masks.reshape(n, -1)[np.arange(n), idx] & informative
    return float(hits.mean())


def mass_inside(maps: np.ndarray, masks: np.ndarray) -> float:
    """Mean share of the positive attribution mass that falls inside the mask (0 for an all-negative map)."""
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=bool)
    pos = np.clip(maps, 0, None).reshape(maps.shape[0], -1)
    total = pos.sum(axis=1)
    inside = (pos * masks.reshape(masks.shape[0], -1)).sum(axis=1)
    share = np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
    return float(share.mean())


@dataclass
class ShapesScore:
    method: str
    pointing: float      # share of images whose map maximum is on the object
    mass_inside: float   # mean share of positive attribution on the object
    chance: float        # mean share of the image the object covers: a random map's expected scores
    n_images: int
    seconds: float


def shapes_evaluation(loaded: LoadedModel, methods: list[str], *, n_images: int = 32, seed: int = 0,
                      layer: str | None = None, settings: dict[str, dict] | None = None,
                      progress: Callable[[float], None] | None = None,
                      cancel: threading.Event | None = None) -> list[ShapesScore]:
    """Pointing game and mass inside the mask over ``n_images`` of the embedded shapes test set.

    The target is the true class when the model was trained on the shapes (its classes are the shape
    names), else its own prediction. Images are resized to the model's input size."""
    from .config import DataConfig
    from .data import SHAPE_CLASSES, load_dataset, normalize

    ds = load_dataset(DataConfig(name="synthetic", n_train=10, n_test=max(10, n_images), seed=seed))
    x_u8, y, masks = ds.test_x[:n_images], ds.test_y[:n_images], ds.test_masks[:n_images]
    x = normalize(x_u8, loaded.mean, loaded.std).float()
    size = loaded.input_size
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        masks = F.interpolate(masks[:, None].float(), size=(size, size), mode="nearest")[:, 0] > 0.5
    x = x.to(_device(loaded.model))
    if list(loaded.classes) == list(SHAPE_CLASSES):
        target = y.to(x.device)
    else:
        with torch.no_grad():
            target = loaded.model(x).argmax(dim=1)
    masks_np = masks.cpu().numpy()
    chance = float(masks_np.reshape(len(masks_np), -1).mean())
    scores = []
    for i, name in enumerate(methods):
        t0 = time.perf_counter()
        sub = None if progress is None else (lambda f, i=i: progress((i + f) / len(methods)))
        maps = attribute(loaded.model, x, target, name, layer=layer, settings=(settings or {}).get(name),
                         progress=sub, cancel=cancel)
        maps = maps.reshape(len(x), size, size)
        scores.append(ShapesScore(name, pointing_game(maps, masks_np), mass_inside(maps, masks_np), chance,
                                  len(x), time.perf_counter() - t0))
    return scores


# --- rendering -----------------------------------------------------------------------------------------

# Anchors of a perceptually ordered dark-to-bright heat scale (close to matplotlib's "inferno").
_HEAT = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64)
# Blue (negative) - white - red (positive) for signed maps.
_DIVERGING = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]],
                      dtype=np.float64)


def _colormap(v: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    pos = np.clip(v, 0, 1) * (len(anchors) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(anchors) - 2)
    t = (pos - lo)[..., None]
    return anchors[lo] * (1 - t) + anchors[lo + 1] * t  # (H, W, 3) 0..255


def normalise_map(attr_map: np.ndarray, signed: bool, percentile: float = 99.0) -> np.ndarray:
    """To 0..1 for display, clipped at the 99th percentile of |map| so one spiky gradient does not
    wash out the rest (signed maps: 0.5 is zero)."""
    a = np.nan_to_num(np.asarray(attr_map, dtype=np.float64))
    scale = np.percentile(np.abs(a), percentile) or np.abs(a).max() or 1.0
    if signed:
        return np.clip(a / scale, -1, 1) / 2 + 0.5
    return np.clip(np.abs(a) / scale, 0, 1)


def overlay(view: Image.Image, attr_map: np.ndarray, *, alpha: float = 0.5, signed: bool = False,
            display_size: int = 256) -> Image.Image:
    """The map over the image the model saw, both scaled to ``display_size`` (nearest for a 32 px image)."""
    base = view.convert("RGB").resize((display_size, display_size),
                                      Image.Resampling.NEAREST if view.width < 64 else Image.Resampling.BILINEAR)
    norm = normalise_map(attr_map, signed)
    heat = Image.fromarray(_colormap(norm, _DIVERGING if signed else _HEAT).astype(np.uint8), "RGB")
    heat = heat.resize((display_size, display_size), Image.Resampling.BILINEAR)
    return Image.blend(base, heat, float(np.clip(alpha, 0.0, 1.0)))


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
