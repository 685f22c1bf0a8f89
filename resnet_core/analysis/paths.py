"""The unrolled ensemble (Veit et al. 2016): a net of n residual blocks is a sum of 2ⁿ paths.

Unrolling x_{l+1} = x_l + F(x_l) gives 2ⁿ paths from input to output, one for each choice of branch or
shortcut at every block; a path through k branches has length k, and the number of paths of length k is
C(n, k): lengths follow Binomial(n, 1/2). In the backward pass the same holds exactly: with the ReLU masks
of one forward pass fixed, the input gradient is the sum over all paths of the product of the chosen
Jacobians (J_F at a branch, S at a shortcut).

The paper's method (§5, Fig. 6): a trained ResNet-110 (54 blocks); feed a training batch forward, then in
the backward pass go through the branch of k randomly sampled blocks and the shortcut of all others, and
record the norm of the gradient reaching the input; about 1,000 such measurements per k, over training
batches. Multiplied by the number of paths of each length, most of the gradient comes from paths of 5-17
blocks. Here: ``draws`` per length (8 by default, the paper's 1,000 with ``draws=1000``) shared out over
``batches`` (2) random training batches of ``batch_size`` images; where a length has no more paths than draws,
every path of it is measured, exactly. The share a length delivers is
``gradient_energy_share_by_length`` = C(n, k)·E‖g_k‖² / ‖g‖² (with the full gradient's norm beside it).
Were path gradients orthogonal these would add up to 1; ``gradient_energy_share_total`` says how far
they do (measured: 0.87 for a ResNet-20 at initialisation, 0.07 for the trained akamaster ResNet-56,
whose path gradients reinforce each other), where C(n, k)·E‖g_k‖ summed over k far exceeds ‖g‖. ``gradient_share_by_length`` keeps the
older norm-weighted share.

Departures: 8 images per batch and 32 draws over 4 batches by default (the page's one-minute budget on
a 2-core CPU: 16 draws over 4 batches took 15 s for a ResNet-110 at initialisation and 4.3 s for the
akamaster ResNet-56, bench/why_defaults.py; 1,000 draws of a ResNet-110 take about 15 minutes there); a net at initialisation is measured in training mode (BN with batch
statistics), a trained one in eval mode.
"""
from __future__ import annotations

import itertools
import math
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

from resnet_core.analysis import register
from resnet_core.analysis.base import Analysis, AnalysisContext, AnalysisError, int_setting, macs_of


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


def _subsets(n: int, k: int, draws: int, rng: random.Random) -> list[set[int]]:
    """``draws`` random k-subsets of the n blocks, or every one of them when there are no more than ``draws``
    (then the mean over them is exact, not sampled)."""
    if math.comb(n, k) <= draws:
        return [set(c) for c in itertools.combinations(range(n), k)]
    return [set(rng.sample(range(n), k)) for _ in range(draws)]


def gradient_by_length(model, batches: list[tuple[torch.Tensor, torch.Tensor]], lengths: list[int], draws: int,
                       seed: int, report=None) -> dict:
    """Veit et al.'s measurement over ``batches`` (the draws shared out among them, each batch's forward
    pass done once): per length k, the mean and std of the input-gradient norm ‖g_k‖ one path of that
    length carries, and the mean of ‖g_k‖² / ‖g‖² with g the same batch's full gradient. Returns also the
    full gradient's norm and squared norm, averaged over the batches."""
    blocks = model.blocks()
    rng = random.Random(seed)
    n = len(blocks)
    norms = {k: [] for k in lengths}
    energy = {k: [] for k in lengths}
    full, full_sq = [], []
    per_batch = [draws // len(batches) + (1 if j < draws % len(batches) else 0) for j in range(len(batches))]
    done, total = 0, len(batches) * len(lengths)
    for (x, y), d in zip(batches, per_batch):
        def head_loss(h, y=y):
            return F.cross_entropy(model.fc(model.pool(model.head_act(h)).flatten(1)), y)

        with torch.no_grad():
            h0 = model.stem(x)
        graphs = BlockGraphs(blocks, h0, head_loss)
        g_sq = torch.linalg.vector_norm(graphs.backward(None), dtype=torch.float64) ** 2
        full_sq.append(g_sq)
        full.append(g_sq.sqrt())
        for k in lengths:
            for chosen in (_subsets(n, k, max(d, 1), rng) if d > 0 else []):
                gk = torch.linalg.vector_norm(graphs.backward(chosen), dtype=torch.float64)
                norms[k].append(gk)
                energy[k].append(gk ** 2 / g_sq.clamp_min(1e-300))
            done += 1
            if report is not None:
                report(done / total, f"paths of length {k}")
    z = torch.zeros((), dtype=torch.float64)
    mean = [torch.stack(norms[k]).mean() for k in lengths]
    std = [torch.stack(norms[k]).std() if len(norms[k]) > 1 else z.to(mean[0].device) for k in lengths]
    en = [torch.stack(energy[k]).mean() for k in lengths]
    values = torch.stack([*mean, *std, *en, torch.stack(full).mean(), torch.stack(full_sq).mean()]).tolist()
    m = len(lengths)
    return {"mean": values[:m], "std": values[m:2 * m], "energy": values[2 * m:3 * m], "full": values[-2],
            "full_sq": values[-1], "draws": [len(norms[k]) for k in lengths]}


def random_batches(ctx: AnalysisContext, n_batches: int, batch_size: int, seed: int):
    """``n_batches`` random batches of training images (no augmentation), drawn with ``seed``."""
    from resnet_core.data import normalize

    ds = ctx.dataset()
    xs, ys = ds.train_x, ds.train_y
    if xs.shape[0] < 1:
        raise AnalysisError(f"the data set {ds.name} has no training images")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        idx = torch.randperm(xs.shape[0], generator=gen)[:batch_size]
        out.append((normalize(xs[idx].to(ctx.device), ds.mean, ds.std), ys[idx].to(ctx.device)))
    return out


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
    batches = random_batches(ctx, min(s["batches"], s["draws"]), s["batch_size"], s["seed"])
    r = gradient_by_length(model, batches, lengths, s["draws"], s["seed"], report=ctx.report)
    total = [math.comb(n, k) * g for k, g in zip(lengths, r["mean"])]  # paths of that length x gradient each
    z = sum(total) or 1.0
    share = [t / z for t in total]
    # the energy share: C(n, k) E‖g_k‖² / ‖g‖². These add up to 1 only if path gradients are orthogonal (their
    # sum is reported); norms multiplied by counts do not divide ‖g‖ at all: Σ C(n,k) E‖g_k‖ far exceeds it.
    energy = [math.comb(n, k) * e for k, e in zip(lengths, r["energy"])]
    out.update(lengths=lengths, gradient_by_length=r["mean"], gradient_std_by_length=r["std"],
               total_gradient_by_length=total, gradient_share_by_length=share,
               gradient_energy_share_by_length=energy, gradient_energy_share_total=sum(energy),
               full_gradient_norm=r["full"], full_gradient_sq_norm=r["full_sq"],
               draws_by_length=r["draws"], trained=trained, draws=s["draws"], batches=len(batches),
               batch_size=int(batches[0][0].shape[0]))
    if s["lengths"] is None:
        # the central interval of lengths holding 90% of the gradient's energy (Veit et al.: 5-17 of 54 blocks)
        order = sorted(range(len(energy)), key=lambda i: -energy[i])
        target = 0.9 * sum(energy)
        acc, keep = 0.0, []
        for i in order:
            keep.append(lengths[i])
            acc += energy[i]
            if acc >= target:
                break
        out["gradient_90_range"] = [min(keep), max(keep)]
    return out


def _check(s: dict) -> None:
    int_setting(s, "draws", 1, 10_000)
    int_setting(s, "batches", 1, 10_000)
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
    batches = min(s["batches"], s["draws"])
    macs = (macs_of(cfg) * s["batch_size"] * 3 * batches
            + sum(2 * k * per_block * min(s["draws"], math.comb(n, k)) for k in lengths))
    return macs, (f"{len(lengths)} lengths x {s['draws']} draws over {batches} batches of {s['batch_size']} "
                  "training images, a partial backward each")


ANALYSIS = register(Analysis(
    name="paths",
    title="The unrolled ensemble: paths and the gradient they carry",
    caption=(
        "Veit et al. (2016) unroll a residual net: with n blocks there are 2ⁿ paths from input to output, one "
        "for each choice of taking a block's branch or skipping it, and their lengths follow a binomial "
        "distribution centred on n/2. Sending the gradient back through the branches of k random blocks "
        "and the shortcuts of all others, on random training batches, measures what a single path of length "
        "k carries: it falls geometrically with k. Each length's part is C(n,k)·E‖g_k‖² / ‖g‖²; these add to "
        "1 only where path gradients are orthogonal (their sum is shown: near 1 at initialisation, far below "
        "in a trained net, whose paths reinforce each other), so read where they peak. In the paper most of "
        "the gradient comes from paths of 5 to 17 of ResNet-110's 54 blocks; a few draws on a few small "
        "batches give the shape, the paper's 1,000 draws make it smooth."),
    needs="either",
    defaults={"draws": 32, "batches": 4, "batch_size": 8, "lengths": None, "seed": 0, "measure": True},
    fn=run, cost=_cost, check=_check, paper={"draws": 1000},
))
