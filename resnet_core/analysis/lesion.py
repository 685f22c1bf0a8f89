"""Lesions (Veit et al. 2016): delete or reorder blocks of a trained net and watch the test error.

The paper's method (§4, Figs. 3 and 5): a trained ResNet-110 on the CIFAR-10 test set (10,000 images);
deleting one block at a time (Fig. 3), deleting k random blocks (Fig. 5a) and reordering by swapping k
randomly sampled pairs of blocks of the same dimensionality, plotted against Kendall's τ (Fig. 5b). If a
residual net is an ensemble of paths, removing one block removes only the paths through its branch and
the error barely moves; it grows smoothly with k; reordering hurts little. A plain net is a single path.

A deleted block becomes its shortcut: post(S(x)), i.e. the block with its branch output set to zero. A
block that changes the shape (a downsampling block) is marked; it is deleted only where its shortcut can
stand alone (every residual block: option A's zero-padded identity, or a projection), never in a plain
net, whose downsampling block has no other route. Reordering swaps random pairs of same-shape blocks of
one stage (never a downsampling block), measured by Kendall's τ against the original order.

The unrolled view x_L = x_l + Σ F(x_i) (He et al. 2016, eq. 4) is tested on one image by
``decomposition[stage].residual_error`` = ‖x_L - x_l - Σ F(x_i)‖ / ‖x_L‖ with the branches' own outputs:
zero up to float error for pre-activation identity shortcuts, not for post-activation nets, where the
ReLU after each addition changes what is added.

Departures: 1,000 test images and 2 draws per k by default (the page's one-minute budget on a 2-core
CPU: the community ResNet-56 took 16 s at 500 images, bench/why_defaults.py; the
paper's 10,000 images is ``images=10000``, and ``draws`` goes to 1,000); any depth, not only 110; on a
folder of images every image is scored.

Every variant starts from the cached input of its first changed block: the clean prefix is computed once
per chunk of images, which halves the cost of the single-block deletions on average.
"""
from __future__ import annotations

import random

import torch
import torch.nn as nn

from resnet_core.analysis import register
from resnet_core.analysis.base import Analysis, AnalysisContext, AnalysisError, int_setting, macs_of

KEEP, DELETE = "keep", "delete"


def downsampling_flags(model) -> list[bool]:
    """Per block, whether it changes the shape of its input (stride or channels)."""
    flags = []
    for b in model.blocks():
        conv1 = next(m for m in b.branch.modules() if isinstance(m, nn.Conv2d))
        convs = [m for m in b.branch.modules() if isinstance(m, nn.Conv2d)]
        stride = max(max(c.stride) for c in convs)
        flags.append(stride != 1 or conv1.in_channels != convs[-1].out_channels)
    return flags


def deletable(model) -> list[bool]:
    """A residual block can always become its shortcut; a plain block only where the shape is kept."""
    return [b.shortcut is not None or not down for b, down in zip(model.blocks(), downsampling_flags(model))]


def apply_block(block: nn.Module, x: torch.Tensor, deleted: bool) -> torch.Tensor:
    if not deleted:
        return block(x)
    if block.shortcut is None:  # a plain block that keeps the shape: deleting it passes x through
        return x
    return block.relu_out(block.shortcut(x))  # F(x) removed: post(S(x))


def head(model, h: torch.Tensor) -> torch.Tensor:
    return model.fc(model.pool(model.head_act(h)).flatten(1))


def forward_plan(model, h: torch.Tensor, order: list[int], deleted: set[int], start: int = 0) -> torch.Tensor:
    """Logits of the blocks applied in ``order`` (block indices by position), those in ``deleted`` replaced
    by their shortcut, starting at position ``start`` from ``h`` (the input of that position)."""
    blocks = model.blocks()
    for pos in range(start, len(order)):
        i = order[pos]
        h = apply_block(blocks[i], h, i in deleted)
    return head(model, h)


def kendall_tau(order: list[int]) -> float:
    """Kendall's τ between ``order`` and the identity: 1 - 4 x inversions / (n (n - 1))."""
    n = len(order)
    inversions = sum(1 for a in range(n) for b in range(a + 1, n) if order[a] > order[b])
    return 1.0 - 4.0 * inversions / (n * (n - 1)) if n > 1 else 1.0


def random_reorder(flags: list[bool], stage_of: list[int], swaps: int, rng: random.Random) -> list[int]:
    """``swaps`` swaps of random pairs of blocks of the same shape (Veit et al. 2016, §4.3, Fig. 5b: "swapping
    k randomly sampled pairs of building blocks with the same dimensionality"): two positions of one stage,
    neither holding a block that changes the shape. Each swap draws a fresh pair from the current order."""
    order = list(range(len(flags)))
    positions = [p for p in range(len(order)) if not flags[order[p]]]
    by_stage: dict[int, list[int]] = {}
    for p in positions:
        by_stage.setdefault(stage_of[p], []).append(p)
    pairs = [(a, b) for ps in by_stage.values() for i, a in enumerate(ps) for b in ps[i + 1:]]
    if not pairs:
        return order
    for _ in range(swaps):
        a, b = rng.choice(pairs)
        order[a], order[b] = order[b], order[a]
    return order


class _Variants:
    """Variants (block order, deleted set) evaluated together chunk by chunk from cached block inputs."""

    def __init__(self, n: int):
        self.n = n
        self.items: list[tuple[list[int], set[int]]] = []

    def add(self, order: list[int], deleted: set[int]) -> int:
        self.items.append((order, deleted))
        return len(self.items) - 1

    def first_change(self, k: int) -> int:
        order, deleted = self.items[k]
        for pos, i in enumerate(order):
            if i != pos or i in deleted:
                return pos
        return self.n

    def errors(self, model, x: torch.Tensor, y: torch.Tensor, chunk: int, report=None) -> tuple[float, list[float]]:
        """Base error and each variant's error, as fractions of the images."""
        blocks = model.blocks()
        wrong = torch.zeros(len(self.items) + 1, dtype=torch.long, device=x.device)
        starts = [self.first_change(k) for k in range(len(self.items))]
        n_chunks = -(-x.shape[0] // chunk)
        with torch.no_grad():
            for c in range(n_chunks):
                xc, yc = x[c * chunk:(c + 1) * chunk], y[c * chunk:(c + 1) * chunk]
                h = model.stem(xc)
                inputs = []
                for b in blocks:
                    inputs.append(h)
                    h = b(h)
                wrong[0] += (head(model, h).argmax(1) != yc).sum()
                for k, (order, deleted) in enumerate(self.items):
                    s = starts[k]
                    wrong[k + 1] += (forward_plan(model, inputs[s] if s < self.n else h, order, deleted, s)
                                     .argmax(1) != yc).sum()
                    if report is not None and k % 4 == 0:
                        report((c + (k + 1) / len(self.items)) / n_chunks, f"variant {k + 1} of {len(self.items)}")
        err = (wrong.double() / x.shape[0]).tolist()
        return err[0], err[1:]


def stage_decomposition(model, x: torch.Tensor) -> list[dict]:
    """For one image (1, 3, H, W): per stage, x_L = x_l + Σ c_i with x_l the stage input through the first
    block's shortcut and c_i = x_{i+1} - x_i each block's contribution; c_i = F(x_i) exactly in
    pre-activation nets, and where F(x_i) + x_i > 0 in post-activation ones (the ReLU after the sum). That
    sum holds for any net by construction (``reconstruction_error`` is float error only); the test of the
    unrolled view is ``residual_error`` = ‖x_L - S(x_in) - Σ F(x_i)‖ / ‖x_L‖ with the branches' own outputs
    (``branch_norm``: ‖F(x_i)‖).
    Norms and channel-mean maps (H, W); the maps add up like the tensors (the channel mean is linear)."""
    out = []
    with torch.no_grad():
        h = model.stem(x)
        for sname, stage in model.stages():
            blocks = list(stage)
            if blocks[0].shortcut is None:
                return []
            start = blocks[0].relu_out(blocks[0].shortcut(h))  # x_l: the stage input, shaped as the stage's
            prev, contributions, branch_norms = start, [], []
            unrolled = blocks[0].shortcut(h)   # x_l + Σ F(x_i): the stage input through the first shortcut
            for b in blocks:
                src = h if b is blocks[0] else prev
                f = b.branch(src)
                nxt = b(src)
                contributions.append(nxt - prev)
                branch_norms.append(torch.linalg.vector_norm(f))
                unrolled = unrolled + f
                prev = nxt
            recon = start + sum(contributions)
            maps = [t[0].mean(0) for t in (start, *contributions, prev)]
            norms = torch.stack([torch.linalg.vector_norm(start), *[torch.linalg.vector_norm(c) for c in contributions],
                                 torch.linalg.vector_norm(prev), *branch_norms,
                                 torch.linalg.vector_norm(prev - recon),
                                 torch.linalg.vector_norm(prev - unrolled)]).tolist()
            m = len(blocks)
            out.append({"stage": sname, "blocks": [f"{sname}.{j}" for j in range(m)], "input_norm": norms[0],
                        "contribution_norm": norms[1:m + 1], "output_norm": norms[m + 1],
                        "branch_norm": norms[m + 2:2 * m + 2], "reconstruction_error": norms[-2],
                        # the test of the unrolled view: ‖x_L - x_l - Σ F(x_i)‖ / ‖x_L‖, zero up to float error
                        # for pre-activation identity shortcuts, not for post-activation (the ReLU after the sum)
                        "residual_error": norms[-1] / norms[m + 1] if norms[m + 1] > 0 else 0.0,
                        "input_map": maps[0].tolist(), "contribution_maps": [mp.tolist() for mp in maps[1:-1]],
                        "output_map": maps[-1].tolist()})
            h = prev
    return out


def lesion_study(model, x: torch.Tensor, y: torch.Tensor, s: dict, report=None) -> dict:
    model.eval()
    names = [n for n, _ in model.named_blocks()]
    n = len(names)
    flags = downsampling_flags(model)
    can = deletable(model)
    stage_of = [int(name[len("layer")]) for name in names]
    rng = random.Random(s["seed"])
    v = _Variants(n)
    single_idx = {i: v.add(list(range(n)), {i}) for i in range(n) if can[i]}
    pool = [i for i in range(n) if can[i]]
    counts = s["counts"] if s["counts"] is not None else _default_counts(len(pool))
    if any(not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(pool) for k in counts):
        raise AnalysisError(f"counts must be integers from 1 to {len(pool)} (the blocks that can be deleted)")
    by_count_idx = [(k, [v.add(list(range(n)), set(rng.sample(pool, k))) for _ in range(s["draws"] if k < len(pool) else 1)])
                    for k in counts]
    reorder_idx = []
    if s["reorder"]:
        for swaps in s["swaps"]:
            for _ in range(s["draws"]):
                order = random_reorder(flags, stage_of, swaps, rng)
                reorder_idx.append((swaps, order, v.add(order, set())))
    base, errs = v.errors(model, x, y, s["batch_size"], report)
    single = [{"block": names[i], "downsampling": flags[i], "error": errs[single_idx[i]] if i in single_idx else None}
              for i in range(n)]
    by_count = []
    for k, idx in by_count_idx:
        e = torch.tensor([errs[j] for j in idx], dtype=torch.float64)
        by_count.append({"k": k, "error": e.mean().item(), "std": e.std().item() if len(idx) > 1 else 0.0,
                         "draws": len(idx)})
    reorder = [{"swaps": sw, "kendall_tau": kendall_tau(order), "error": errs[j]} for sw, order, j in reorder_idx]
    return {"blocks": names, "base_error": base, "single": single, "by_count": by_count, "reorder": reorder,
            "images": int(x.shape[0]), "residual": model.blocks()[0].shortcut is not None}


def _default_counts(pool: int) -> list[int]:
    # ten counts spread over 1..n (all of them for n <= 10): the curve's shape, at a tenth of the cost
    return sorted({max(1, round(i * pool / 10)) for i in range(1, 11)} | {1}) if pool > 10 else list(range(1, pool + 1))


def run(ctx: AnalysisContext, s: dict) -> dict:
    loaded = ctx.trained()
    model = loaded.model.eval()
    if ctx.device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    x, y = ctx.images(s["images"], split="test")
    if ctx.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    out = lesion_study(model, x, y, s, ctx.report)
    out["model"] = loaded.model_cfg.name if loaded.model_cfg else loaded.source
    out["dataset"] = ctx.dataset().name
    if s["decompose"] is not None:
        i = int(s["decompose"])
        if not 0 <= i < x.shape[0]:
            raise AnalysisError(f"decompose must be an image index from 0 to {x.shape[0] - 1}")
        out["decomposition"] = stage_decomposition(model, x[i:i + 1])
        out["decomposition_image"] = i
    return out


def _check(s: dict) -> None:
    int_setting(s, "images", 1, 1_000_000)
    int_setting(s, "batch_size", 1, 4096)
    int_setting(s, "draws", 1, 1000)
    int_setting(s, "seed", 0, 2**31 - 1)
    if not isinstance(s["reorder"], bool):
        raise AnalysisError("reorder must be true or false")
    if not isinstance(s["swaps"], list) or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in s["swaps"]):
        raise AnalysisError("swaps must be a list of positive integers")
    if s["counts"] is not None and not isinstance(s["counts"], list):
        raise AnalysisError("counts must be a list of integers")
    if s["decompose"] is not None:
        int_setting(s, "decompose", 0, 1_000_000)


def _cost(ctx: AnalysisContext, s: dict):
    cfg = ctx.model_config()
    n = 3 * cfg.n
    ds = ctx.dataset()
    images = min(s["images"], int(ds.test_x.shape[0]))
    counts = len(s["counts"]) if s["counts"] is not None else len(_default_counts(n))
    reorders = len(s["swaps"]) * s["draws"] if s["reorder"] else 0
    # single deletions start half-way on average; random deletions near the start, reorders mid-net
    forwards = 1 + n / 2 + counts * s["draws"] + reorders * 0.7
    size = int(ds.test_x.shape[-1])
    return macs_of(cfg, size) * images * forwards, f"{forwards:.0f} forward passes x {images} images ({cfg.name})"


ANALYSIS = register(Analysis(
    name="lesion",
    title="Lesions: delete and reorder blocks of a trained net",
    caption=(
        "Veit et al. (2016) delete single blocks from a trained residual net at test time: the error barely "
        "moves, except at the few blocks that change the resolution, and it grows smoothly, not abruptly, as "
        "more blocks go; swapping random pairs of same-shape blocks hurts little too (error against Kendall's "
        "τ). A plain net is one long path and removing any of its layers breaks it. Below, one test image's "
        "stage output beside its input and what each block adds: the residual error ‖x_L - x_l - ΣF(x_i)‖/‖x_L‖ "
        "says whether x_L = x_l + ΣF(x_i) holds with the branches' own outputs (it does, up to float error, "
        "only for pre-activation nets: in a post-activation net the ReLU after each sum changes what is added)."),
    needs="trained",
    defaults={"images": 1000, "batch_size": 250, "draws": 2, "counts": None, "reorder": True,
              "swaps": [1, 2, 4, 8, 16], "seed": 0, "decompose": 0},
    fn=run, cost=_cost, check=_check, paper={"images": 10000},
))
