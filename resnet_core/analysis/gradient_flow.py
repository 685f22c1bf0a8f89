"""Gradient flow at initialisation, block by block, up to 1,202 layers.

The papers' methods. He et al. (2016, §3, eq. 4-5): for identity shortcuts with nothing after the addition
(pre-activation), x_L = x_l + Σ F(x_i), so ∂E/∂x_l = ∂E/∂x_L (1 + ∂ΣF/∂x_l); the "+1" carries the gradient
between any two blocks. In a post-activation block, x_{l+1} = ReLU(F(x_l) + S(x_l)), the ReLU after the sum
masks the shortcut's gradient as well (``output_relu_pass``: ‖u‖/‖v‖ with v the gradient of the block's
output and u the same past the ReLU; 1 for pre-activation). Yang et al. (2019, "A mean field theory of
batch normalization") predict that a plain net with BN at initialisation has gradients growing by about
1.21x per layer backwards; their quantity is per element, so this module reports the RMS of each block's
input-gradient (``rms_input_grad``), the growth per weight layer fitted within each stage
(``per_layer_rate_by_stage``: a least-squares line of ln RMS over the gradients that have the stage's shape)
and the first block's RMS over the output's (``ratio_per_element``), beside the raw norms and ``ratio``.

A block's input-gradient is g = Sᵀu + J_Fᵀu: its shortcut part and its branch part. The two are nearly
orthogonal at initialisation, so their norms do not divide g; the split reported is the projection
(energy) share ⟨J_Fᵀu, g⟩/‖g‖² (``branch_energy_share``; the shortcut's is 1 minus it) with the cosine
between the parts (``branch_shortcut_cosine``). The old norm share ‖J_Fᵀu‖/(‖Sᵀu‖ + ‖J_Fᵀu‖) stays as
``branch_share`` for scripts that read it.

Departures: one batch (32 images by default, 8 per net in a depth sweep) of training images without
augmentation, where the mean field theory is an expectation; BN in training mode as in a first training
step. With ``plus_one`` (on by default) a residual net is measured twice: as configured and with the
other activation order, and the result's ``plus_one`` holds both side by side.

Bounded memory: the forward pass runs block by block on detached inputs and keeps each block's input;
it keeps the block's graph too while a budget lasts (1 GiB), and beyond it the backward pass recomputes
the block from its stored input. That is activation checkpointing at the granularity of one block:
memory is the budget plus the stored inputs (a 1,202-layer net at batch 32 stores ~0.6 GB of them),
for the price of a second forward pass of the blocks past the budget. The backward pass goes one block
at a time with ``torch.autograd.grad``. BatchNorm stays in training mode, as in the first training step,
and a recomputation normalises with the same batch statistics, so the gradients are exact.
"""
from __future__ import annotations

import dataclasses
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from resnet_core.analysis import register
from resnet_core.analysis.base import Analysis, AnalysisContext, AnalysisError, PeakMemory, depths_setting, int_setting, macs_of

SWEEP_DEPTHS = (8, 20, 56, 110, 218, 434, 1202)
# Block graphs kept from the forward pass up to this many bytes; the blocks beyond are recomputed from their
# stored input. 1 GiB keeps every graph of ResNet-1202 at batch 4 and of ResNet-110 at batch 64.
GRAPH_BUDGET_BYTES = 2**30
GRAPH_TENSORS_PER_BLOCK = 8


def block_forward(block: nn.Module, x_in: torch.Tensor) -> tuple:
    """One block on a detached copy of its input with the graph kept: (x, F(x), S(x) or None, sum, output)."""
    x = x_in.detach().requires_grad_(True)
    shortcut = getattr(block, "shortcut", None)
    with torch.enable_grad():
        f = block.branch(x)                                        # F(x)
        s = shortcut(x) if shortcut is not None else None          # S(x)
        z = f + s if s is not None else f                          # pre-activation sum
        out = block.relu_out(z)
    return x, f, s, z, out


def block_backward(block: nn.Module, x_in: torch.Tensor | None, v: torch.Tensor, parts: tuple | None = None) -> dict:
    """Backpropagates the gradient ``v`` of the block's output to its input through one block, from the
    graph ``parts`` of ``block_forward`` or recomputed from its stored input ``x_in``. Returns the input
    gradient, the shortcut part Sᵀu and the branch part J_Fᵀu of it (u: v past the output ReLU), and the
    gradient of every parameter of the block."""
    x, f, s, z, out = parts if parts is not None else block_forward(block, x_in)
    branch_params = [p for p in block.branch.parameters() if p.requires_grad]
    shortcut = getattr(block, "shortcut", None)
    short_params = [p for p in shortcut.parameters() if p.requires_grad] if shortcut is not None else []
    with torch.enable_grad():
        u = v if out is z else torch.autograd.grad(out, z, v, retain_graph=True)[0]   # v past the output ReLU
        g = torch.autograd.grad(f, [x, *branch_params], u, retain_graph=s is not None, allow_unused=True)
        branch_x, grads = g[0], list(g[1:])
        if s is None:
            short_x = None
        elif isinstance(shortcut, nn.Identity):
            short_x = u
        else:
            gs = torch.autograd.grad(s, [x, *short_params], u, allow_unused=True)
            short_x, grads = gs[0], grads + list(gs[1:])
    grad_x = branch_x if short_x is None else branch_x + short_x
    params = branch_params + short_params
    return {"grad_x": grad_x.detach(), "branch_x": branch_x.detach(), "u": u.detach(),
            "short_x": None if short_x is None else short_x.detach(),
            "param_grads": {p: (g.detach() if g is not None else torch.zeros_like(p)) for p, g in zip(params, grads)}}


def _log_norm(t: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.linalg.vector_norm(t, dtype=torch.float64))


def _dots(g: torch.Tensor, b: torch.Tensor, s: torch.Tensor | None, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(⟨b, g⟩, ⟨g, g⟩, ⟨b, s⟩, ‖b‖², ‖s‖², ‖u‖², ‖v‖²) in float64 on the device: scale-free ratios of them
    give the energy shares, the cosine and the fraction of the gradient that passes the output ReLU."""
    d = lambda p, q: (p.to(torch.float64) * q.to(torch.float64)).sum()
    z = torch.zeros((), dtype=torch.float64, device=g.device)
    return torch.stack([d(b, g), d(g, g), d(b, s) if s is not None else z, d(b, b),
                        d(s, s) if s is not None else z, d(u, u), d(v, v)])


def flow_through_blocks(blocks: list[nn.Module], h0: torch.Tensor, head_loss, head_params=(), progress=None,
                        graph_budget_bytes: int = GRAPH_BUDGET_BYTES) -> dict:
    """Forward through ``blocks`` keeping their inputs (and their graphs while ``graph_budget_bytes`` lasts),
    then backward one block at a time.

    ``head_loss(h_L) -> scalar loss`` maps the last block's output to the loss; ``head_params`` are its
    parameters. Returns, as float64 tensors of natural logarithms: per block the input-gradient norm, its
    shortcut and branch parts and the output std; per parameter its gradient norm; the norm at the last
    block's output. Plus the (rescaled) gradient at ``h0`` and the log of its scale.

    Logarithms because a plain net's gradient grows ~1.2x per layer backwards (Yang et al. 2019): over
    1,202 layers that is ~1e95, far past float32's 3e38. The backward vector is rescaled to unit norm after
    every block (backpropagation is linear in it) and the scale is carried separately in float64.
    """
    inputs, graphs, out_log_std = [], [], []
    h = h0.detach()
    kept = 0
    for b in blocks:
        inputs.append(h)
        # A block's graph holds ~8 tensors of its input's size: keep it while that fits the budget (no
        # recomputation in the backward pass), beyond it keep the input only.
        cost = GRAPH_TENSORS_PER_BLOCK * h.numel() * h.element_size()
        if kept + cost <= graph_budget_bytes:
            graphs.append(block_forward(b, h))
            kept += cost
            h = graphs[-1][4].detach()
        else:
            graphs.append(None)
            with torch.no_grad():
                h = b(h)
        out_log_std.append(torch.log(h.float().std().to(torch.float64)))
    stored_bytes = sum(t.numel() * t.element_size() for t in inputs) + kept
    hL = h.detach().requires_grad_(True)
    head_params = list(head_params)
    with torch.enable_grad():
        loss = head_loss(hL)
        g = torch.autograd.grad(loss, [hL, *head_params], allow_unused=True)
    param_log: dict = {p: _log_norm(gp) for p, gp in zip(head_params, g[1:]) if gp is not None}
    v = g[0]
    out_numel = v.numel()
    out_log = _log_norm(v)
    log_scale = torch.zeros((), dtype=torch.float64, device=v.device)   # true gradient = v * exp(log_scale)
    n = len(blocks)
    in_log, short_log, branch_log = [None] * n, [None] * n, [None] * n
    dots, numels = [None] * n, [0] * n
    tiny = torch.finfo(v.dtype).tiny
    for i in range(n - 1, -1, -1):
        r = block_backward(blocks[i], inputs[i], v, graphs[i])
        numels[i] = r["grad_x"].numel()
        dots[i] = _dots(r["grad_x"], r["branch_x"], r["short_x"], r["u"], v)
        in_log[i] = log_scale + _log_norm(r["grad_x"])
        branch_log[i] = log_scale + _log_norm(r["branch_x"])
        short_log[i] = (log_scale + _log_norm(r["short_x"]) if r["short_x"] is not None
                        else torch.full((), -torch.inf, dtype=torch.float64, device=v.device))
        for p, gp in r["param_grads"].items():
            param_log[p] = log_scale + _log_norm(gp)
        norm = torch.linalg.vector_norm(r["grad_x"]).clamp_min(tiny)
        v = r["grad_x"] / norm
        log_scale = log_scale + torch.log(norm.to(torch.float64))
        inputs[i] = graphs[i] = None  # free as we go
        if progress is not None:
            progress((n - i) / n)
    return {"loss": loss.detach(), "output_numel": out_numel, "input_grad_log": in_log, "shortcut_grad_log": short_log,
            "branch_grad_log": branch_log, "dots": dots, "input_numel": numels, "output_log_std": out_log_std, "param_grad_log": param_log,
            "grad_h0": v, "grad_h0_log_scale": log_scale, "output_grad_log": out_log, "stored_bytes": stored_bytes}


def _exp(values: list[float]) -> list[float]:
    return [math.exp(v) if v < 709 else float("inf") for v in values]


def gradient_flow(model, x: torch.Tensor, y: torch.Tensor, progress=None,
                  graph_budget_bytes: int = GRAPH_BUDGET_BYTES) -> dict:
    """One forward and one backward pass of a CifarResNet on (x, y) in training mode: everything by block."""
    model.train()
    blocks = model.blocks()
    names = [n for n, _ in model.named_blocks()]
    head_params = [p for m in (model.head_act, model.fc) for p in m.parameters()]

    def head_loss(h):
        logits = model.fc(model.pool(model.head_act(h)).flatten(1))
        return F.cross_entropy(logits if logits.dtype == torch.float64 else logits.float(), y)

    with torch.no_grad():
        stem_out = model.stem(x)
    r = flow_through_blocks(blocks, stem_out, head_loss, head_params, progress, graph_budget_bytes)
    with torch.enable_grad():  # the stem, recomputed like a block: the gradient at the image, stem weights
        xi = x.detach().requires_grad_(True)
        stem_params = list(model.stem.parameters())
        sg = torch.autograd.grad(model.stem(xi), [xi, *stem_params], r["grad_h0"])
    pl = dict(r["param_grad_log"])
    pl.update({p: r["grad_h0_log_scale"] + _log_norm(g) for p, g in zip(stem_params, sg[1:])})
    layers = model.weight_layers()
    n, k = len(blocks), len(layers)
    logs = torch.stack([*r["input_grad_log"], *r["shortcut_grad_log"], *r["branch_grad_log"],
                        *r["output_log_std"], *[pl[m.weight] for _, m in layers],
                        r["grad_h0_log_scale"] + _log_norm(sg[0]), r["output_grad_log"],
                        torch.log(stem_out.to(torch.float64).std()),
                        *torch.stack(r["dots"]).reshape(-1)]).tolist()  # one device->host copy
    in_l, sh_l, br_l = logs[:n], logs[n:2 * n], logs[2 * n:3 * n]
    image_l, out_l, stem_l = logs[4 * n + k:4 * n + k + 3]
    dots = [logs[4 * n + k + 3 + 7 * i:4 * n + k + 3 + 7 * (i + 1)] for i in range(n)]
    # branch share of norms ‖J_Fᵀu‖ / (‖Sᵀu‖ + ‖J_Fᵀu‖), kept for old scripts: 1 for a plain block. The two
    # parts are nearly orthogonal, so norms do not divide the gradient; the energy share below does.
    share = [1.0 / (1.0 + math.exp(s - b)) if b > -math.inf else 0.0 for s, b in zip(sh_l, br_l)]
    # energy (projection) share ⟨J_Fᵀu, g⟩ / ‖g‖²: branch and shortcut shares add to exactly 1 (g = Sᵀu + J_Fᵀu)
    energy = [bg / gg if gg > 0 else float("nan") for bg, gg, *_ in dots]
    residual = model.cfg.residual
    cosine = [(bs / math.sqrt(bb * ss) if bb > 0 and ss > 0 else None) if residual else None
              for _, _, bs, bb, ss, _, _ in dots]
    relu_pass = [math.sqrt(uu / vv) if vv > 0 else None for *_, uu, vv in dots]
    # per element (RMS): a stage-1 tensor has 4x the elements of a stage-3 one, which alone doubles a raw ratio
    rms = [math.exp(l - 0.5 * math.log(m)) for l, m in zip(in_l, r["input_numel"])]
    out_rms = math.exp(out_l - 0.5 * math.log(r["output_numel"]))
    rates = per_layer_rate_by_stage(model, rms, out_rms, [*r["input_numel"], r["output_numel"]])
    return {"blocks": names, "input_grad_norm": _exp(in_l), "shortcut_grad_norm": _exp(sh_l),
            "branch_grad_norm": _exp(br_l), "branch_share": share, "branch_energy_share": energy,
            "branch_shortcut_cosine": cosine, "output_relu_pass": relu_pass,
            "rms_input_grad": rms, "output_rms_grad": out_rms, "per_layer_rate_by_stage": rates,
            "ratio_per_element": rms[0] / out_rms if out_rms > 0 else float("inf"),
            "activation_std": _exp(logs[3 * n:4 * n]),
            "stem_std": math.exp(stem_l), "layers": [name for name, _ in layers],
            "weight_grad_norm": _exp(logs[4 * n:4 * n + k]), "image_grad_norm": _exp([image_l])[0],
            "output_grad_norm": math.exp(out_l), "ratio": _exp([in_l[0] - in_l[-1]])[0],
            "log10_ratio": (in_l[0] - in_l[-1]) / math.log(10), "loss": float(r["loss"]),
            "stored_activation_mb": round(r["stored_bytes"] / 2**20, 1)}


def fit_rate(positions: list[float], rms: list[float]) -> float | None:
    """Growth factor per weight layer from output to input: exp(-slope) of the least-squares line of
    ln(rms) against the layer position (input to output); None with fewer than two points."""
    pts = [(p, math.log(v)) for p, v in zip(positions, rms) if v is not None and v > 0 and math.isfinite(v)]
    if len(pts) < 2:
        return None
    mp = sum(p for p, _ in pts) / len(pts)
    ml = sum(l for _, l in pts) / len(pts)
    var = sum((p - mp) ** 2 for p, _ in pts)
    slope = sum((p - mp) * (l - ml) for p, l in pts) / var
    return math.exp(-slope)


def per_layer_rate_by_stage(model, rms: list[float], out_rms: float, numels: list[int]) -> list[dict]:
    """Per stage, the per-element gradient's growth per weight layer (backwards), fitted over the
    gradients that have the stage's shape: the inputs of its blocks (not a first block that changes the
    shape) and the stage's output (the next stage's first input, or the last block's output gradient);
    ``numels`` gives the size of each of those n + 1 tensors. Yang et al. (2019) predict ~1.21x per
    layer for a plain net with BN at initialisation."""
    per_block = 3 if model.cfg.block == "bottleneck" else 2
    names = [n for n, _ in model.named_blocks()]
    stage_of = [n.split(".")[0] for n in names]
    values = list(rms) + [out_rms]     # gradient at the input of block i, i = 0..n (n: the output)
    out = []
    for s, stage in model.stages():
        idx = [i for i, st in enumerate(stage_of) if st == s]
        first = idx[0]
        pts = [i for i in idx if numels[i] == numels[idx[-1] + 1]] + [idx[-1] + 1]
        out.append({"stage": s, "layers": (len(pts) - 1) * per_block,
                    "rate": fit_rate([i * per_block for i in pts], [values[i] for i in pts]),
                    "first_block": names[first]})
    return out


# ----------------------------------------------------------------------------------------------------
# The registered analysis
# ----------------------------------------------------------------------------------------------------

def _one(ctx: AnalysisContext, cfg, x, y, seed: int, progress=None) -> dict:
    with PeakMemory(ctx.device) as mem:
        t0 = time.perf_counter()
        model = ctx.fresh_model(cfg, seed)
        if ctx.device.type == "cpu":
            # NHWC: oneDNN's fast convolution kernels (bench/train_overhead.py measures 4x per step)
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        out = gradient_flow(model, x, y, progress)
        seconds = time.perf_counter() - t0
        del model
    out.update(model=cfg.name, depth=cfg.depth, residual=cfg.residual, seconds=round(seconds, 4),
               peak_memory_mb=round(mem.mb, 1))
    return out


def run(ctx: AnalysisContext, settings: dict) -> dict:
    cfg = ctx.model_config()
    seed = settings["seed"] if settings["seed"] is not None else ctx.seed()
    depths = depths_setting(settings, block=cfg.block)
    x, y = ctx.images(settings["batch_size"], split="train")
    total = 1 + (1 if settings["plus_one"] and cfg.residual else 0) + (len(depths) * (2 if settings["twin"] else 1) if depths else 0)
    done = [0]

    def sub(frac):
        ctx.report((done[0] + frac) / total, f"{done[0] + 1} of {total} nets")

    result = _one(ctx, cfg, x, y, seed, sub)
    done[0] += 1
    if settings["plus_one"] and cfg.residual:
        # He et al. 2016's "+1" holds where nothing follows the addition: the pre-activation net. Its
        # post-activation twin beside it, with the share of the gradient its output ReLU lets through.
        twin = _one(ctx, dataclasses.replace(cfg, preact=not cfg.preact), x, y, seed, sub)
        done[0] += 1
        pre, post = (result, twin) if cfg.preact else (twin, result)
        keep = ("model", "blocks", "input_grad_norm", "rms_input_grad", "output_relu_pass", "branch_energy_share",
                "branch_shortcut_cosine", "per_layer_rate_by_stage", "ratio_per_element")
        result["plus_one"] = {"pre-activation": {k: pre[k] for k in keep},
                              "post-activation": {k: post[k] for k in keep}}
    result["config"] = cfg.to_dict()
    result["batch_size"] = int(x.shape[0])
    if depths:
        xs, ys = x[: settings["sweep_batch_size"]], y[: settings["sweep_batch_size"]]
        sweep = []
        t0 = time.perf_counter()
        for d in depths:
            for residual in ([cfg.residual, not cfg.residual] if settings["twin"] else [cfg.residual]):
                c = dataclasses.replace(cfg, depth=d, residual=residual)
                r = _one(ctx, c, xs, ys, seed, sub)
                done[0] += 1
                sweep.append({k: r[k] for k in ("model", "depth", "residual", "blocks", "input_grad_norm",
                                                "rms_input_grad", "branch_share", "branch_energy_share",
                                                "branch_shortcut_cosine", "per_layer_rate_by_stage",
                                                "ratio_per_element", "activation_std", "ratio", "seconds",
                                                "peak_memory_mb", "stored_activation_mb")})
        result["sweep"] = sweep
        result["sweep_seconds"] = round(time.perf_counter() - t0, 4)
        result["sweep_batch_size"] = int(xs.shape[0])
    return result


def _check(s: dict) -> None:
    int_setting(s, "batch_size", 1, 1024)
    int_setting(s, "sweep_batch_size", 1, 1024)
    if s["seed"] is not None:
        int_setting(s, "seed", 0, 2**31 - 1)
    for name in ("twin", "plus_one"):
        if not isinstance(s[name], bool):
            raise AnalysisError(f"{name} must be true or false")
    depths_setting(s)


def _cost(ctx: AnalysisContext, s: dict):
    cfg = ctx.model_config()
    size = ctx.resolved_data_config().image_size
    # forward without a graph, recomputed forward, backward (two forwards' worth)
    nets = 2 if s["plus_one"] and cfg.residual else 1
    macs = macs_of(cfg, size) * s["batch_size"] * 4 * nets
    detail = (f"{cfg.name} x {s['batch_size']} images x (2 forwards + 1 backward)"
              + ("; its pre/post-activation twin for the '+1' view the same" if nets == 2 else ""))
    depths = depths_setting(s, block=cfg.block)
    if depths:
        archs = 2 if s["twin"] else 1
        for d in depths:
            macs += macs_of(dataclasses.replace(cfg, depth=d), size) * s["sweep_batch_size"] * 4 * archs
        detail += f"; sweep of {len(depths) * archs} nets (depths {', '.join(map(str, depths))}) x {s['sweep_batch_size']} images"
    return macs, detail


ANALYSIS = register(Analysis(
    name="gradient-flow",
    title="Gradient flow at initialisation",
    caption=(
        "He et al. (2016, eq. 5) show that with identity shortcuts and nothing after the addition "
        "(pre-activation), ∂E/∂x_l = ∂E/∂x_L (1 + ∂ΣF/∂x_l): a '+1' that carries the gradient from any "
        "block straight to any earlier one. One forward and one backward pass at initialisation measure "
        "the gradient arriving at each block's input, from the output (right) to the input (left), per "
        "element (RMS: stages differ in size) beside the raw norm. It is not flat: every branch adds its "
        "own term, so a residual net's gradient still grows towards the input, by far less than its plain "
        "twin's (Yang et al. 2019 predict about 1.21x per layer for the plain net; the fitted rate per layer "
        "within each stage is shown). In a post-activation net the ReLU after the addition masks the "
        "shortcut's gradient too (the share it lets through is shown), which is why the '+1' view runs the "
        "pre-activation net. The branch's energy share is its projection on the gradient, ⟨J_Fᵀu, g⟩/‖g‖²; "
        "with the shortcut's it adds to 1, and the cosine between the two parts says how far they align."),
    needs="config",
    defaults={"batch_size": 32, "depths": None, "twin": True, "sweep_batch_size": 8, "seed": None,
              "plus_one": True},
    fn=run, cost=_cost, check=_check,
))
