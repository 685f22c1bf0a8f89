"""Shattered gradients (Balduzzi et al. 2017): how the input-gradient changes between nearby inputs.

The paper's method (§2, Figs. 1-3): inputs along a 1-D line, the gradient of the output with respect to
the input at each of 256 points, and the autocorrelation of that gradient along the line: white noise
(autocorrelation gone at lag 1, a flat power spectrum) for deep plain nets, brown noise (slowly decaying
autocorrelation, power falling as 1/f²) for residual nets. Here the line runs between two test images,
x(t) = (1 - t)·a + t·b, and the gradient of one class's logit, g(t) = ∂f_c/∂x at x(t), is taken at every
point. Every input coordinate (pixel and channel) gives one series g_d(t) along the line; the statistic
``autocorrelation_along_line`` is its centred autocorrelation by lag, averaged over coordinates, and
``power_spectrum`` its mean power by frequency, with the fitted log-log ``spectrum_slope`` (about 0 for
white noise, -2 for brown). The earlier statistic stays as a second, named view:
``cross_pixel_correlation``, the Pearson correlation across coordinates of the whole gradient maps at
t_i and t_{i+k}, averaged over i.

Departures: the paper's line is in a 1-D input space of small fully connected nets (and a CIFAR-10 line
for its ResNets); here a line between two 3,072-dimensional images, each coordinate a series. The gradient
of one input must not depend on the others, so BatchNorm runs in eval mode: a trained net with its own
running statistics; a net at initialisation with statistics measured first on a batch of training images
(a cumulative average in training mode), the normalisation its first steps would see.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from resnet_core.analysis import register
from resnet_core.analysis.base import Analysis, AnalysisContext, AnalysisError, depths_setting, int_setting, macs_of


def calibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 128) -> nn.Module:
    """Sets every BN layer's running statistics to those of ``x`` (cumulative average); leaves eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch counts equally
    model.train()
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            model(x[i:i + batch_size])
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return model.eval()


def gradient_line(model: nn.Module, a: torch.Tensor, b: torch.Tensor, target: int, points: int,
                  chunk: int = 64, report=None) -> torch.Tensor:
    """(points, D) gradients of logit ``target`` w.r.t. the input along the line from ``a`` to ``b`` (3, H, W)."""
    t = torch.linspace(0, 1, points, device=a.device, dtype=a.dtype).view(-1, 1, 1, 1)
    line = (1 - t) * a.unsqueeze(0) + t * b.unsqueeze(0)                    # (P, 3, H, W)
    grads = []
    for i in range(0, points, chunk):
        x = line[i:i + chunk].detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(model(x)[:, target].sum(), x)
        grads.append(g.reshape(g.shape[0], -1))
        if report is not None:
            report(min(1.0, (i + chunk) / points))
    return torch.cat(grads)                                                  # (P, D)


def autocorrelation(g: torch.Tensor, max_lag: int) -> torch.Tensor:
    """Mean Pearson correlation over the D coordinates of rows i and i + k, for k = 0..max_lag: (max_lag+1,)."""
    g = g.to(torch.float64)
    c = g - g.mean(1, keepdim=True)
    c = c / torch.linalg.vector_norm(c, dim=1, keepdim=True).clamp_min(1e-300)
    out = [(c[: c.shape[0] - k] * c[k:]).sum(1).mean() for k in range(max_lag + 1)]
    return torch.stack(out)


def line_autocorrelation(g: torch.Tensor, max_lag: int) -> torch.Tensor:
    """Balduzzi et al.'s statistic: each coordinate's gradient as a series along the line, centred over the
    line, its autocorrelation R_d(k) = Σ_t c_d(t) c_d(t+k) / Σ_t c_d(t)² (the usual biased estimator),
    averaged over the coordinates whose series is not constant. (max_lag + 1,); 1 at lag 0."""
    c = g.to(torch.float64)
    c = c - c.mean(0, keepdim=True)                          # (P, D): centred along the line
    energy = (c * c).sum(0)                                  # (D,)
    live = energy > 0
    if not bool(live.any()):
        return torch.zeros(max_lag + 1, dtype=torch.float64, device=g.device)
    c, energy = c[:, live], energy[live]
    p = c.shape[0]
    out = [((c[: p - k] * c[k:]).sum(0) / energy).mean() for k in range(max_lag + 1)]
    return torch.stack(out)


def power_spectrum(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mean over coordinates of each centred series' power |FFT|² along the line, normalised to sum 1,
    its frequencies (cycles per step, DC left out) and the slope of ln power against ln frequency:
    about 0 for white noise, about -2 for brown noise (a random walk)."""
    c = g.to(torch.float64)
    c = c - c.mean(0, keepdim=True)
    power = (torch.fft.rfft(c, dim=0).abs() ** 2).mean(1)[1:]            # (P//2,), DC dropped
    freq = torch.fft.rfftfreq(c.shape[0], dtype=torch.float64).to(c.device)[1:]
    power = power / power.sum().clamp_min(1e-300)
    lf, lp = torch.log(freq), torch.log(power.clamp_min(1e-300))
    slope = ((lf - lf.mean()) * (lp - lp.mean())).sum() / ((lf - lf.mean()) ** 2).sum().clamp_min(1e-300)
    return freq, power, slope


def shattering(model: nn.Module, a, b, target: int, points: int, max_lag: int, report=None) -> dict:
    g = gradient_line(model, a, b, target, points, report=report)
    lag = min(max_lag, points - 1)
    along = line_autocorrelation(g, lag)
    freq, power, slope = power_spectrum(g)
    ac = autocorrelation(g, lag)
    centre = (a.shape[1] // 2) * a.shape[2] + a.shape[2] // 2              # channel 0, centre pixel
    direction = (b - a).reshape(-1).to(g.dtype)
    values = torch.cat([ac, g[:, centre], g @ direction]).tolist()
    k = ac.shape[0]
    line = torch.cat([along, freq, power, slope.reshape(1)]).tolist()
    nf = freq.shape[0]
    return {"autocorrelation_along_line": line[:k], "line_neighbour_correlation": line[1] if k > 1 else 1.0,
            "spectrum_frequency": line[k:k + nf], "power_spectrum": line[k + nf:k + 2 * nf],
            "spectrum_slope": line[-1],
            # the second, named view: the Pearson correlation across pixels of two whole gradient maps k apart
            "cross_pixel_correlation": values[:k], "neighbour_correlation": values[1] if k > 1 else 1.0,
            "trace": values[k:k + points], "directional_derivative": values[k + points:]}


def run(ctx: AnalysisContext, s: dict) -> dict:
    cfg = ctx.model_config()
    x, _ = ctx.images(max(s["pair"]) + 1, split="test")
    if x.shape[0] <= max(s["pair"]):
        raise AnalysisError(f"pair must index test images below {x.shape[0]}")
    a, b = x[s["pair"][0]], x[s["pair"][1]]
    if not 0 <= s["class_index"] < cfg.num_classes:
        raise AnalysisError(f"class_index must be from 0 to {cfg.num_classes - 1}")
    calib, _ = ctx.images(s["calibration_images"], split="train")
    models = []  # (label, depth, residual, trained, model)
    if ctx.trained_available:
        models.append(("trained", cfg.depth, cfg.residual, True, ctx.trained().model.eval()))
        models.append(("at initialisation", cfg.depth, cfg.residual, False, None))
    depths = depths_setting(s, block=cfg.block) or ([cfg.depth] if not ctx.trained_available else [])
    for d in depths:
        for residual in ([cfg.residual, not cfg.residual] if s["twin"] else [cfg.residual]):
            models.append(("at initialisation", d, residual, False, None))
    results = []
    for j, (label, d, residual, trained, model) in enumerate(models):
        c = dataclasses.replace(cfg, depth=d, residual=residual)
        if model is None:
            model = calibrate_bn(ctx.fresh_model(c, s["seed"]), calib)
        r = shattering(model, a, b, s["class_index"], s["points"], s["max_lag"],
                       report=lambda f, j=j: ctx.report((j + f) / len(models), f"{c.name} {label}"))
        results.append({"model": c.name, "depth": d, "residual": residual, "trained": trained, "label": label, **r})
    return {"t": torch.linspace(0, 1, s["points"]).tolist(), "models": results, "class_index": s["class_index"],
            "calibration_images_used": int(calib.shape[0]),
            "pair": s["pair"], "points": s["points"]}


def _check(s: dict) -> None:
    int_setting(s, "points", 2, 4096)
    int_setting(s, "max_lag", 1, 4096)
    int_setting(s, "class_index", 0, 100_000)
    int_setting(s, "seed", 0, 2**31 - 1)
    int_setting(s, "calibration_images", 1, 100_000)
    if not isinstance(s["twin"], bool):
        raise AnalysisError("twin must be true or false")
    p = s["pair"]
    if not isinstance(p, list) or len(p) != 2 or any(not isinstance(i, int) or i < 0 for i in p) or p[0] == p[1]:
        raise AnalysisError("pair must be two different test image indices, e.g. [0, 1]")
    depths_setting(s)


def _cost(ctx: AnalysisContext, s: dict):
    cfg = ctx.model_config()
    depths = depths_setting(s, block=cfg.block) or ([cfg.depth] if not ctx.trained_available else [])
    archs = 2 if s["twin"] else 1
    macs = sum(macs_of(dataclasses.replace(cfg, depth=d)) * (3 * s["points"] + s["calibration_images"]) * archs
               for d in depths)
    n = len(depths) * archs
    if ctx.trained_available:
        macs += macs_of(cfg) * (6 * s["points"] + s["calibration_images"])
        n += 2
    return macs, f"{n} nets x {s['points']} inputs x (1 forward + 1 backward)"


ANALYSIS = register(Analysis(
    name="shattering",
    title="Shattered gradients",
    caption=(
        "Balduzzi et al. (2017) follow the gradient of a net's output with respect to its input along a "
        "line of inputs and treat it as a signal: in a deep plain net it is like white noise (its "
        "autocorrelation along the line is gone after one step, its power spectrum is flat), the gradients "
        "are 'shattered'; in a residual net it is like brown noise (the autocorrelation decays slowly, the "
        "power falls with frequency). Here the line runs between two test images; each pixel's gradient is "
        "a series along it, and the chart shows their autocorrelation by lag, averaged over pixels, and "
        "their power spectrum (the fitted slope: about 0 for white, -2 for brown noise). The correlation "
        "across pixels between whole gradient maps is a second view, not the paper's statistic."),
    needs="either",
    defaults={"points": 256, "depths": None, "twin": True, "class_index": 0, "pair": [0, 1], "max_lag": 32,
              "seed": 0, "calibration_images": 256},
    fn=run, cost=_cost, check=_check, paper={"points": 256},
))
