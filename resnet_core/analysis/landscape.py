"""Loss along the line from the initial to the trained weights (Goodfellow et al. 2015) and loss surfaces
around the trained weights in two filter-normalised random directions (Li et al. 2018).

Filter normalisation (Li et al. 2018 §4, their ``net_plotter.py``): a random Gaussian direction has each
filter (each output channel of a convolution, each row of the linear layer) rescaled to the norm of the
matching filter of the weights, so that a step of 1 moves every filter by its own size and the scale
invariance of ReLU nets with BN cannot make one net look flatter than another. Biases and BN parameters get
a zero direction; BN running statistics stay those of the trained net, and the net is evaluated in eval
mode. The loss is the mean cross-entropy on a fixed subset of training images.

The papers' methods. Li et al. (2018, §4-6, Figs. 5-6): the whole CIFAR-10 training set, a 51x51 grid over
[-1, 1]², raw-loss contours at levels 0.1 to 10 (step 0.5, their ``plot_2D.py``) and surfaces of
ln(min(loss, 10) + 0.1); plain nets are nearly convex at 20 layers and chaotic from 56. Goodfellow et al.
(2015, §2): the loss along (1 - α)·θ_0 + α·θ_1 from the net's own initial weights θ_0; BN running
statistics here move with the weights (``bn: "interpolate"``, the default; held at the nearer end outside
[0, 1], where linear extrapolation makes variances negative), recomputing them at each α is
``bn: "recompute"``; runs without their saved initial weights (``checkpoints/init.pt``) are refused.

Departures: 500 training images and a 21x21 grid by default (the page's time budget on a 2-core CPU; the
paper's grid is ``points=51`` and its data ``images=50000``); log10 views of the loss stay as an option in
the charts; no claim of chaos is made for a net shallower than 56 layers or residual (``chaos_note``).

Every grid point is a forward pass of the whole subset: ``torch.func.functional_call`` evaluates the net
with the shifted weights without touching the model, and ``vmap`` over stacked weights evaluates several
grid points in one batched pass. Which is faster depends on the device: bench/analysis_speed.py measures
both side by side, and ``method: "auto"`` takes a fixed choice per device type (``AUTO_METHOD``: the
loop on a CPU, where that bench found it faster on a quiet machine; vmap on CUDA, not yet measured).
It is not timed at run time.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, vmap

from resnet_core.analysis import register
from resnet_core.analysis.base import Analysis, AnalysisContext, AnalysisError, float_setting, int_setting, macs_of

# Measured by bench/analysis_speed.py (16 grid points of a quick-scale ResNet-20 on 500 images, best of
# two interleaved rounds, 2-core x86-64 CPU): quiet, loop 0.48 s, vmap 4 points a pass 0.63 s, vmap 16
# a pass 1.42 s; loaded by other work, vmap x4 won (5.3 s against 7.9). The quiet figure decides. On
# CUDA, vmap is unmeasured (no GPU was at hand): batching grid points is what a GPU is good at.
AUTO_METHOD = {"cpu": "loop", "cuda": "vmap"}
# vmap multiplies the activations by the points per pass: images per pass are cut so that points x images
# x pixels stays under this (16 points x 256 images of 32x32: ~0.5 GB per activation tensor of ResNet-20)
VMAP_PIXEL_BUDGET = 16 * 256 * 32 * 32

# functorch falls back to a per-sample loop for as_strided_ (adaptive pooling of channels_last input) and
# says so on every call; the measured times above include that fallback.
warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented")


def _is_filter_param(p: torch.Tensor) -> bool:
    return p.dim() > 1  # conv kernels and linear weights; biases and BN weights/biases are 1-D


def filter_normalized_direction(params: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A random direction with each filter's norm equal to the matching weight filter's; zero for 1-D params."""
    out = {}
    for name, w in params.items():
        if not _is_filter_param(w):
            out[name] = torch.zeros_like(w)
            continue
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        w_norm = torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1)        # (filters,)
        d_norm = torch.linalg.vector_norm(d.reshape(d.shape[0], -1), dim=1)
        scale = w_norm / d_norm.clamp_min(1e-10)
        out[name] = d * scale.view(-1, *([1] * (w.dim() - 1)))
    return out


def _params_and_buffers(model: nn.Module):
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    return params, buffers


def evaluate_params(model: nn.Module, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int) -> torch.Tensor:
    """(loss sum, correct count) of the model with ``params`` over (x, y), as a (2,) float64 tensor."""
    acc = torch.zeros(2, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            logits = functional_call(model, (params, buffers), (x[i:i + batch_size],))
            yb = y[i:i + batch_size]
            acc[0] += F.cross_entropy(logits.float(), yb, reduction="sum")
            acc[1] += (logits.argmax(1) == yb).sum()
    return acc


def evaluate_params_batched(model: nn.Module, stacked: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor,
                            batch_size: int) -> torch.Tensor:
    """(G, 2) loss sums and correct counts for G stacked parameter sets in one vmapped pass per batch."""
    g = next(iter(stacked.values())).shape[0]
    acc = torch.zeros(g, 2, dtype=torch.float64, device=x.device)

    def one(p, xb):
        return functional_call(model, (p, buffers), (xb,))

    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            logits = vmap(one, in_dims=(0, None))(stacked, xb)                     # (G, B, classes)
            b = yb.shape[0]
            ce = F.cross_entropy(logits.float().reshape(g * b, -1), yb.repeat(g), reduction="none").view(g, b)
            acc[:, 0] += ce.sum(1)
            acc[:, 1] += (logits.argmax(2) == yb).sum(1)
    return acc


def loss_surface(model: nn.Module, d1: dict, d2: dict | None, xs: list[float], ys: list[float], x, y, *,
                 batch_size: int = 500, method: str = "loop", points_per_pass: int = 4, report=None,
                 evaluate=None) -> dict:
    """Loss and accuracy at θ + a·d1 + b·d2 for every (a, b) in xs × ys (row-major: one row per b).

    ``evaluate(params) -> (loss, accuracy)`` replaces the cross-entropy on (x, y) (the quadratic toy test).
    """
    params, buffers = _params_and_buffers(model)
    # the directions in the weights' own memory format (channels_last on the CPU: oneDNN's fast kernels)
    d1 = {k: torch.empty_like(w).copy_(d1[k]) for k, w in params.items()}
    d2 = {k: torch.empty_like(w).copy_(d2[k]) for k, w in params.items()} if d2 is not None else None
    grid = [(a, b) for b in ys for a in xs]
    n = len(x) if x is not None else 1
    losses, accs = [], []

    def shifted(a, b):
        return {k: w + a * d1[k] + (b * d2[k] if d2 is not None else 0) for k, w in params.items()}

    if method == "vmap" and evaluate is None:
        for start in range(0, len(grid), points_per_pass):
            chunk = grid[start:start + points_per_pass]
            ca = torch.tensor([a for a, _ in chunk], dtype=torch.float32, device=x.device)
            cb = torch.tensor([b for _, b in chunk], dtype=torch.float32, device=x.device)
            stacked = {}
            for k, w in params.items():
                shape = (len(chunk),) + (1,) * w.dim()
                v = w.unsqueeze(0) + ca.view(shape) * d1[k].unsqueeze(0)
                if d2 is not None:
                    v = v + cb.view(shape) * d2[k].unsqueeze(0)
                stacked[k] = v
            per_pass = max(1, min(batch_size, VMAP_PIXEL_BUDGET // (len(chunk) * x.shape[-1] * x.shape[-2])))
            r = evaluate_params_batched(model, stacked, buffers, x, y, per_pass).tolist()
            losses += [t[0] / n for t in r]
            accs += [t[1] / n for t in r]
            if report is not None:
                report(min(1.0, (start + len(chunk)) / len(grid)), f"{start + len(chunk)} of {len(grid)} points")
    elif method in ("loop", "vmap"):
        for j, (a, b) in enumerate(grid):
            if evaluate is not None:
                loss, acc = evaluate(shifted(a, b))
            else:
                loss, acc = (evaluate_params(model, shifted(a, b), buffers, x, y, batch_size) / n).tolist()
            losses.append(float(loss))
            accs.append(float(acc))
            if report is not None:
                report((j + 1) / len(grid), f"{j + 1} of {len(grid)} points")
    else:
        raise AnalysisError(f"method must be auto, loop or vmap; got {method!r}")
    w = len(xs)
    return {"loss": [losses[i:i + w] for i in range(0, len(losses), w)],
            "accuracy": [accs[i:i + w] for i in range(0, len(accs), w)]}


def linspace(lo: float, hi: float, points: int) -> list[float]:
    return [round(lo + (hi - lo) * i / (points - 1), 10) for i in range(points)] if points > 1 else [lo]


def _method(ctx: AnalysisContext, s: dict) -> str:
    return AUTO_METHOD.get(ctx.device.type, "loop") if s["method"] == "auto" else s["method"]


# ----------------------------------------------------------------------------------------------------
# 1-D: initial -> trained
# ----------------------------------------------------------------------------------------------------

def _recompute_bn(model: nn.Module, params: dict, buffers: dict, x: torch.Tensor, batch_size: int) -> dict:
    """BN running statistics of the net with ``params`` over ``x``: a cumulative average over the batches
    in training mode (torchvision's ``update_bn`` for SWA), returned as a new buffer dict."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return buffers
    fresh = {k: v.clone() for k, v in buffers.items()}
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            fresh[f"{name}.running_mean"].zero_()
            fresh[f"{name}.running_var"].fill_(1)
            fresh[f"{name}.num_batches_tracked"].zero_()
    momenta = [m.momentum for m in bns]
    was_training = model.training
    try:
        for m in bns:
            m.momentum = None  # cumulative moving average: every batch counts equally
        model.train()
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                functional_call(model, (params, fresh), (x[i:i + batch_size],))
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    return fresh


def interpolated_buffers(initial: dict, trained: dict, a: float) -> dict:
    """BN running statistics at α: (1 - α)·initial + α·trained on [0, 1], held at the nearer end beyond it.
    Extrapolated linearly they break: a running variance crosses zero before α = 0 wherever the trained
    one is over 3x the initial at α = -0.5 (measured: NaN losses for α up to -0.35 on trained ResNet-20s
    and plain-20s, even with the variance clamped at 0, since BN's eps alone then scales by 300)."""
    a = min(max(float(a), 0.0), 1.0)
    return {k: ((1 - a) * initial[k] + a * v) if v.is_floating_point() else v for k, v in trained.items()}


def interpolate(ctx: AnalysisContext, s: dict) -> dict:
    loaded = ctx.trained()
    trained = loaded.model.eval()
    initial, init_source = ctx.initial_model(saved_only=True)
    initial.eval()
    x, y = ctx.images(s["images"], split=s["split"])
    alphas = linspace(s["alpha_min"], s["alpha_max"], s["points"])
    t_params, t_buffers = _params_and_buffers(trained)
    i_params, i_buffers = _params_and_buffers(initial)
    n = x.shape[0]
    loss, acc = [], []
    for j, a in enumerate(alphas):
        params = {k: (1 - a) * i_params[k] + a * t_params[k] for k in t_params}
        if s["bn"] == "recompute":
            buffers = _recompute_bn(trained, params, t_buffers, x, s["batch_size"])
        else:  # interpolate the running statistics along with the weights
            buffers = interpolated_buffers(i_buffers, t_buffers, a)
        r = (evaluate_params(trained, params, buffers, x, y, s["batch_size"]) / n).tolist()
        loss.append(r[0])
        acc.append(r[1])
        ctx.report((j + 1) / len(alphas), f"alpha {a:+.2f}")
    return {"alphas": alphas, "loss": loss, "accuracy": acc, "images": int(n), "split": s["split"],
            "init_source": init_source, "bn": s["bn"],
            "model": loaded.model_cfg.name if loaded.model_cfg else loaded.source}


# ----------------------------------------------------------------------------------------------------
# 2-D: filter-normalised random directions
# ----------------------------------------------------------------------------------------------------

def landscape(ctx: AnalysisContext, s: dict) -> dict:
    loaded = ctx.trained()
    model = loaded.model.eval()
    x, y = ctx.images(s["images"], split="train")
    params, _ = _params_and_buffers(model)  # directions drawn in the default layout: device-independent
    if ctx.device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(s["seed"])
    d1 = filter_normalized_direction(params, gen)
    d2 = filter_normalized_direction(params, gen)
    xs = linspace(-s["span"], s["span"], s["points"])
    ys = linspace(-s["span"], s["span"], s["points"])
    method = _method(ctx, s)
    r = loss_surface(model, d1, d2, xs, ys, x, y, batch_size=s["batch_size"], method=method,
                     points_per_pass=s["points_per_pass"], report=ctx.report)
    import math

    # the paper's surface plots: ln(min(loss, 10) + 0.1) (Li et al. 2018, their plot_surface.py); contours
    # of the raw loss at levels 0.1 to 10 are drawn from ``loss`` itself
    clipped = [[math.log(min(v, 10.0) + 0.1) if math.isfinite(v) else math.log(10.1) for v in row] for row in r["loss"]]
    cfg = loaded.model_cfg
    if depth_supports_chaos(cfg):
        chaos_note = None
    elif cfg is not None and cfg.residual:
        chaos_note = ("Li et al. find residual nets' landscapes nearly convex at every depth they tried: no claim "
                      "of chaos is made for this net.")
    else:
        chaos_note = ("Li et al. find plain nets' landscapes still nearly convex at 20 layers; chaos appears from "
                      "about 56 layers (plain-56 trained on CIFAR-10), so no claim of chaos is made for this net.")
    return {"x": xs, "y": ys, **r, "loss_clipped_log": clipped, "contour_levels": CONTOUR_LEVELS,
            "chaos_note": chaos_note, "images": int(x.shape[0]), "method": method, "direction_seed": s["seed"],
            "model": loaded.model_cfg.name if loaded.model_cfg else loaded.source,
            "loss_min": min(min(row) for row in r["loss"]), "loss_max": max(max(row) for row in r["loss"])}


# raw-loss contour levels of Li et al.'s plot_2D.py (vmin 0.1, vmax 10, vlevel 0.5)
CONTOUR_LEVELS = [round(0.1 + 0.5 * i, 1) for i in range(20)]


def depth_supports_chaos(cfg) -> bool:
    """Whether a claim about chaotic landscapes can rest on this net: Li et al. (2018, Fig. 5) see it in plain
    nets from 56 layers on; at 20 they are still nearly convex, and residual nets stay convex."""
    return cfg is not None and not cfg.residual and cfg.depth >= 56


def _check_common(s: dict) -> None:
    int_setting(s, "images", 1, 1_000_000)
    int_setting(s, "batch_size", 1, 8192)
    int_setting(s, "points", 2, 201)


def _check_interpolate(s: dict) -> None:
    _check_common(s)
    float_setting(s, "alpha_min", -10, 10)
    float_setting(s, "alpha_max", -10, 10)
    if s["alpha_min"] >= s["alpha_max"]:
        raise AnalysisError("alpha_min must be below alpha_max")
    if s["bn"] not in ("recompute", "interpolate"):
        raise AnalysisError("bn must be recompute or interpolate")
    if s["split"] not in ("train", "test"):
        raise AnalysisError("split must be train or test")


def _check_landscape(s: dict) -> None:
    _check_common(s)
    float_setting(s, "span", 1e-6, 100)
    int_setting(s, "seed", 0, 2**31 - 1)
    int_setting(s, "points_per_pass", 1, 1024)
    if s["method"] not in ("auto", "loop", "vmap"):
        raise AnalysisError("method must be auto, loop or vmap")


def _images(ctx, s, split):
    ds = ctx.dataset()
    xs = ds.train_x if split == "train" else ds.test_x
    return min(s["images"], int(xs.shape[0])), int(xs.shape[-1])


def _cost_interpolate(ctx: AnalysisContext, s: dict):
    cfg = ctx.model_config()
    n, size = _images(ctx, s, s["split"])
    passes = 2 if s["bn"] == "recompute" else 1
    return (macs_of(cfg, size) * n * s["points"] * passes,
            f"{s['points']} points x {n} images x {passes} forward{'s' if passes > 1 else ''}")


def _cost_landscape(ctx: AnalysisContext, s: dict):
    cfg = ctx.model_config()
    n, size = _images(ctx, s, "train")
    g = s["points"] ** 2
    return macs_of(cfg, size) * n * g, f"{g} grid points x {n} images x 1 forward"


register(Analysis(
    name="interpolate",
    title="From initial to trained weights in a straight line",
    caption=(
        "Goodfellow et al. (2015) evaluate the loss on the straight line from a net's initial weights "
        "(alpha = 0) to its trained ones (alpha = 1), and a little beyond. For many nets the loss falls "
        "smoothly and monotonically along it: no barrier separates the start from the solution, even though "
        "training took a winding path. The line needs the run's own initial weights (checkpoints/init.pt); "
        "BN's running statistics are interpolated with the weights (recomputing them at each alpha is an "
        "option). Compare a residual net with its plain twin: look for bumps, plateaus and how sharply the "
        "loss rises past alpha = 1."),
    needs="trained",
    defaults={"points": 41, "alpha_min": -0.5, "alpha_max": 1.5, "images": 500, "batch_size": 500,
              "bn": "interpolate", "split": "train"},
    fn=interpolate, cost=_cost_interpolate, check=_check_interpolate, paper={"images": 50000},
))

ANALYSIS = register(Analysis(
    name="landscape",
    title="Loss landscape around the trained weights",
    caption=(
        "Li et al. (2018) draw the loss around a trained net along two random directions, each rescaled "
        "filter by filter to the size of the weights so that nets can be compared fairly: raw-loss contours "
        "at levels 0.1 to 10 and surfaces of ln(min(loss, 10) + 0.1). Their plain nets are still nearly "
        "convex at 20 layers and turn chaotic from about 56 (plain-56 and deeper, trained on CIFAR-10), while "
        "residual nets keep a wide convex basin at every depth. Compare surfaces on one colour scale: the "
        "width of the central basin, and, for a deep plain net only, ridges and pits around it."),
    needs="trained",
    defaults={"points": 21, "span": 1.0, "images": 500, "batch_size": 500, "seed": 0, "method": "auto",
              "points_per_pass": 4},
    fn=landscape, cost=_cost_landscape, check=_check_landscape, paper={"points": 51, "images": 50000},
))
