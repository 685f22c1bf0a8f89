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

import threading
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from captum.attr import (DeepLift, GuidedBackprop, GuidedGradCam, IntegratedGradients, LayerAttribution,
                         LayerGradCam, NoiseTunnel, Occlusion, Saliency)


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


