"""The unrolled ensemble (Veit et al. 2016): a net of n residual blocks is a sum of 2ⁿ paths.

Unrolling x_{l+1} = x_l + F(x_l) gives 2ⁿ paths from input to output, one for each choice of branch or
shortcut at every block; a path through k branches has length k, and the number of paths of length k is
C(n, k): lengths follow Binomial(n, 1/2). In the backward pass the same holds exactly: with the ReLU masks
of one forward pass fixed, the input gradient is the sum over all paths of the product of the chosen
Jacobians (J_F at a branch, S at a shortcut). Veit et al. measure the gradient each length carries by
sampling: backpropagate through the branch of k randomly chosen blocks and the shortcut of all others,
many draws per k (their Fig. 6). Long paths are many but carry vanishing gradient; short ones carry much
but are few: the product shows that nearly all the gradient comes from paths far shorter than the net.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .base import Analysis, AnalysisContext, AnalysisError, int_setting, macs_of


def length_distribution(n: int) -> list[float]:
    """P(length = k) for k = 0..n: the fraction of the 2ⁿ paths that pass through k branches, exactly."""
    total = 2 ** n
    return [math.comb(n, k) / total for k in range(n + 1)]


class BlockGraphs:
    """One forward pass with each block's graph kept separately, so that a backward vector can be sent
    through any block's branch or shortcut alone, as often as needed."""

    def __init__(self, blocks: list[nn.Module], h0: torch.Tensor, head_loss):
        self.blocks = blocks
        self.parts = []
        h = h0.detach()
        with torch.enable_grad():
            for b in blocks:
                if getattr(b, "shortcut", None) is None:
                    raise AnalysisError("paths exist only in residual nets: this block has no shortcut")
                x = h.detach().requires_grad_(True)
                f = b.branch(x)
                s = b.shortcut(x)
                z = f + s
                out = b.relu_out(z)
                self.parts.append((x, f, s, z, out))
                h = out
            hL = h.detach().requires_grad_(True)
            loss = head_loss(hL)
            (self.grad_out,) = torch.autograd.grad(loss, hL)

    def backward(self, through_branch: set[int] | None) -> torch.Tensor:
        """The gradient at the first block's input along the paths that take the branch exactly at the
        blocks in ``through_branch`` (one path), or, for ``None``, along all paths (the full gradient)."""
        v = self.grad_out
        for i in range(len(self.parts) - 1, -1, -1):
            x, f, s, z, out = self.parts[i]
            u = v if out is z else torch.autograd.grad(out, z, v, retain_graph=True)[0]
            take_branch = through_branch is None or i in through_branch
            take_short = through_branch is None or i not in through_branch
            g = torch.zeros_like(x) if not (take_branch and take_short) else None
            if take_branch:
                gb = torch.autograd.grad(f, x, u, retain_graph=True)[0]
                g = gb if g is None else g + gb
            if take_short:
                gs = u if isinstance(self.blocks[i].shortcut, nn.Identity) else \
                    torch.autograd.grad(s, x, u, retain_graph=True)[0]
                g = gs if g is None else g + gs
            v = g
        return v


def gradient_by_length(model, x: torch.Tensor, y: torch.Tensor, lengths: list[int], draws: int, seed: int,
                       report=None) -> dict:
    """Mean and std over ``draws`` random choices of blocks of the input-gradient norm carried by a path
    of each length, and the full gradient's norm for comparison."""
    blocks = model.blocks()

    def head_loss(h):
        return F.cross_entropy(model.fc(model.pool(model.head_act(h)).flatten(1)), y)

    with torch.no_grad():
        h0 = model.stem(x)
    graphs = BlockGraphs(blocks, h0, head_loss)
    rng = random.Random(seed)
    n = len(blocks)
    mean, std = [], []
    for j, k in enumerate(lengths):
        norms = []
        for _ in range(draws):
            chosen = set(rng.sample(range(n), k))
            norms.append(torch.linalg.vector_norm(graphs.backward(chosen), dtype=torch.float64))
        t = torch.stack(norms)
        mean.append(t.mean())
        std.append(t.std() if draws > 1 else torch.zeros((), dtype=torch.float64))
        if report is not None:
            report((j + 1) / len(lengths), f"paths of length {k}")
    full = torch.linalg.vector_norm(graphs.backward(None), dtype=torch.float64)
    values = torch.stack([*mean, *std, full]).tolist()
    m = len(lengths)
    return {"mean": values[:m], "std": values[m:2 * m], "full": values[-1]}


def run(ctx: AnalysisContext, s: dict) -> dict:
    cfg = ctx.model_config()
    if not cfg.residual:
        raise AnalysisError("a plain net has one path only: the paths analysis needs a residual net")
    n = 3 * cfg.n
    dist = length_distribution(n)
    out = {"blocks": n, "model": cfg.name, "length_distribution": dist}
    # where the paths are: the central interval around n/2 holding 95% of them
    lo = hi = n // 2
    while sum(dist[lo:hi + 1]) < 0.95:
        lo, hi = max(0, lo - 1), min(n, hi + 1)
    out["paths_95_range"] = [lo, hi]
    if not s["measure"]:
        return out
    lengths = s["lengths"] if s["lengths"] is not None else list(range(n + 1))
    if any(not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= n for k in lengths):
        raise AnalysisError(f"lengths must be integers from 0 to {n} (the number of blocks)")
    trained = ctx.trained_available
    if trained:
        model = ctx.trained().model.eval()
    else:
        model = ctx.fresh_model(cfg, s["seed"]).train()  # at init, BN normalises with batch statistics
    x, y = ctx.images(s["batch_size"], split="test" if trained else "train")
    r = gradient_by_length(model, x, y, lengths, s["draws"], s["seed"], report=ctx.report)
    total = [math.comb(n, k) * g for k, g in zip(lengths, r["mean"])]  # paths of that length x gradient each
    z = sum(total) or 1.0
    share = [t / z for t in total]
    out.update(lengths=lengths, gradient_by_length=r["mean"], gradient_std_by_length=r["std"],
               total_gradient_by_length=total, gradient_share_by_length=share, full_gradient_norm=r["full"],
               trained=trained, draws=s["draws"], batch_size=int(x.shape[0]))
    if s["lengths"] is None:
        # the central interval of lengths holding 90% of the gradient (Veit et al.: 5-17 of 54 blocks)
        order = sorted(range(len(share)), key=lambda i: -share[i])
        acc, keep = 0.0, []
        for i in order:
            keep.append(lengths[i])
            acc += share[i]
            if acc >= 0.9:
                break
        out["gradient_90_range"] = [min(keep), max(keep)]
    return out


def _check(s: dict) -> None:
    int_setting(s, "draws", 1, 10_000)
    int_setting(s, "batch_size", 1, 1024)
    int_setting(s, "seed", 0, 2**31 - 1)
    if not isinstance(s["measure"], bool):
        raise AnalysisError("measure must be true or false")
    if s["lengths"] is not None and not isinstance(s["lengths"], list):
        raise AnalysisError("lengths must be a list of integers")


def _cost(ctx: AnalysisContext, s: dict):
    cfg = ctx.model_config()
    if not s["measure"]:
        return 0, "exact counts only"
    n = 3 * cfg.n
    lengths = s["lengths"] if s["lengths"] is not None else list(range(n + 1))
    # each draw of length k backpropagates through k branches: k/n of a backward (two forwards' worth)
    per_block = macs_of(cfg) / max(n, 1) * s["batch_size"]
    macs = macs_of(cfg) * s["batch_size"] * 3 + sum(2 * k * per_block for k in lengths) * s["draws"]
    return macs, f"{len(lengths)} lengths x {s['draws']} draws x {s['batch_size']} images, a partial backward each"


ANALYSIS = register(Analysis(
    name="paths",
    title="The unrolled ensemble: paths and the gradient they carry",
    caption=(
        "Veit et al. (2016) unroll a residual net: with n blocks there are 2ⁿ paths from input to output, one "
        "for each choice of taking a block's branch or skipping it, and their lengths follow a binomial "
        "distribution centred on n/2. Sending the gradient back through the branches of k random blocks "
        "and the shortcuts of all others measures what a single path of length k carries: it falls "
        "geometrically with k. Multiply the two and look where the product peaks: almost all of the gradient "
        "comes from short paths (5 to 17 blocks of 54 in the paper), so a deep residual net trains like an "
        "ensemble of much shallower nets."),
    needs="either",
    defaults={"draws": 4, "batch_size": 8, "lengths": None, "seed": 0, "measure": True},
    fn=run, cost=_cost, check=_check,
))
