"""Instrumentation of a CifarResNet during training: gradient norms, residual-branch responses,
activation statistics, feature maps.

All hooks go through one context manager that keeps the handles and removes them in ``finally``
without swallowing exceptions (the weakness of pytorch-grad-cam's ``ActivationsAndGradients``).
Statistics stay on the device as 0-d tensors and are copied to the host together, once per logged
step, by ``ProbeSet.collect``: no ``.item()`` per layer per step.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from resnet_core.nets.models import CifarResNet


def _sum_and_norm(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # bf16 activations under autocast are accumulated in fp32; float64 (tests) stays float64.
    acc = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.sum(dtype=acc), torch.linalg.vector_norm(t, dtype=acc)


def _std_from_sums(s1: torch.Tensor, l2_norm: torch.Tensor, n: int) -> torch.Tensor:
    """Sample std from the sum and the L2 norm of n values: one cheap pass each instead of torch.std's
    two (measured 10x faster on CPU for a (128, 16, 32, 32) activation). Combined in float64 so the
    difference of the two moments does not cancel catastrophically."""
    wide = torch.float32 if s1.device.type == "mps" else torch.float64  # MPS has no float64
    s1, s2 = s1.to(wide), l2_norm.to(wide) ** 2
    return ((s2 - s1 * s1 / n) / max(n - 1, 1)).clamp_min(0).sqrt().float()


def _batch_stats_mode(bn: nn.Module) -> bool:
    """Whether ``bn`` normalises with the batch's statistics and records them in its running variance."""
    return bool(bn.training and bn.track_running_stats and bn.running_var is not None
                and (bn.momentum is None or bn.momentum > 0))


@dataclass(frozen=True)
class ProbeLayout:
    """Names of everything the probes measure, in network order (input to output)."""

    layers: list[str]   # weight layers (conv, linear): gradient norms
    blocks: list[str]   # residual/plain blocks: branch response std and ||F(x)||/||x||
    stages: list[str]   # stages: activation mean/std, dead-ReLU fraction
    responses: list[str] = ()  # BN layers right after a 3x3 conv: their output std (He et al. 2015, Fig. 7)

    def to_dict(self) -> dict:
        return {"layers": self.layers, "blocks": self.blocks, "stages": self.stages,
                "layer_response_names": list(self.responses)}


def response_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every BatchNorm that directly follows a 3x3 convolution, in network order, by module path: the layers
    whose outputs He et al. (2015, §4.2, Fig. 7) measure, "after BN and before other nonlinearity". For a
    post-activation basic block: the stem's BN and each block's bn1 and bn2. For a pre-activation block
    only bn2 qualifies (the second 3x3 conv's output enters the addition with no BN after it: the paper's
    quantity is undefined there), and the stem's BN when the stem has one. For bottlenecks: the BN after the
    middle 3x3 conv (the paper's Fig. 7 plots its basic-block nets only)."""
    out = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Sequential):
            continue
        children = list(m.named_children())
        for (_, prev), (cname, child) in zip(children, children[1:]):
            if (isinstance(child, nn.BatchNorm2d) and isinstance(prev, nn.Conv2d)
                    and tuple(prev.kernel_size) == (3, 3)):
                out.append((f"{name}.{cname}" if name else cname, child))
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    return sorted(out, key=lambda t: order[t[0]])


def probe_layout(model: CifarResNet) -> ProbeLayout:
    return ProbeLayout(model.layer_names, [n for n, _ in model.named_blocks()], [n for n, _ in model.stages()],
                       [n for n, _ in response_layers(model)])


class ProbeSet:
    """Forward hooks that record, while ``armed``, per block the std of the branch response F(x)
    (after its last BN, before the addition: Fig. 7 of He et al. 2015) and ||F(x)||/||x|| with x the
    block's input, and per stage the output's mean and std and the fraction of dead ReLU channels
    (channels that are zero at every position of every image in the batch)."""

    def __init__(self, model: CifarResNet):
        self.model = model
        self.layout = probe_layout(model)
        self._weights = [m.weight for _, m in model.weight_layers()]
        self._handles: list = []
        self.armed = False
        n_blocks, n_stages = len(self.layout.blocks), len(self.layout.stages)
        self._block_in = [None] * n_blocks
        self._branch_std = [None] * n_blocks
        self._branch_ratio = [None] * n_blocks
        self._act_mean = [None] * n_stages
        self._act_std = [None] * n_stages
        self._dead = [[] for _ in range(n_stages)]
        self._responses = [m for _, m in response_layers(model)]
        self._resp = [None] * len(self._responses)   # (sum, L2 norm, count) of each response layer's output
        self._rv_before = None
        self._batch: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None   # (sum, sum of squares, counts)
        self._channels = [m.num_features for m in self._responses]
        self._channels_t = torch.tensor(self._channels, dtype=torch.long)
        self._layer_index = torch.repeat_interleave(torch.arange(len(self._channels)), self._channels_t)
        self._constants: dict[tuple, torch.Tensor] = {}

    # --- hook installation ---------------------------------------------------------------------
    def _register(self) -> None:
        for i, (_, block) in enumerate(self.model.named_blocks()):
            self._handles.append(block.register_forward_pre_hook(self._block_input_hook(i)))
            self._handles.append(block.branch.register_forward_hook(self._branch_hook(i)))
        if self._responses:
            self._handles.append(self.model.register_forward_pre_hook(self._snapshot_hook))
        for j, m in enumerate(self._responses):
            self._handles.append(m.register_forward_hook(self._response_hook(j)))
        for s, (_, stage) in enumerate(self.model.stages()):
            self._handles.append(stage.register_forward_hook(self._stage_hook(s)))
            for m in stage.modules():
                if isinstance(m, nn.ReLU):
                    self._handles.append(m.register_forward_hook(self._relu_hook(s)))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _block_input_hook(self, i):
        def hook(module, args):
            if self.armed:
                self._block_in[i] = _sum_and_norm(args[0].detach())[1]
        return hook

    def _branch_hook(self, i):
        def hook(module, args, out):
            if self.armed:
                f = out.detach()
                s1, norm = _sum_and_norm(f)
                self._branch_std[i] = _std_from_sums(s1, norm, f.numel())
                self._branch_ratio[i] = norm / self._block_in[i].clamp_min(1e-12)
        return hook

    def _snapshot_hook(self, module, args):
        # the running variances before this forward pass, all layers in one copy: their update by the pass
        # gives each channel's batch variance without another pass over the activations
        self._batch = None
        if self.armed and any(_batch_stats_mode(m) for m in self._responses):
            self._rv_before = torch.cat([m.running_var.detach() for m in self._responses])

    def _response_hook(self, j):
        def hook(module, args, out):
            if not self.armed:
                return
            if _batch_stats_mode(module) and self._rv_before is not None:
                self._resp[j] = ("batch", out.numel())     # computed for every layer at once in _batch_moments
            else:  # eval mode (running statistics): the output's own moments, one pass each
                s1, norm = _sum_and_norm(out.detach())
                self._resp[j] = (s1, norm, out.numel())
        return hook

    def _all_batch_mode(self) -> bool:
        return self._rv_before is not None and bool(self._resp) and all(
            isinstance(r, tuple) and r[0] == "batch" for r in self._resp)

    def _constant(self, values: list[float], dtype: torch.dtype, device: torch.device,
                  per_channel: bool = True) -> torch.Tensor:
        """A tensor of one value per response layer (repeated over that layer's channels when
        ``per_channel``), built once and kept on the device: no host->device copy, which is a sync on
        CUDA, on each logged step while the values stay the same."""
        key = (tuple(values), dtype, device, per_channel)
        if key not in self._constants:
            if len(self._constants) > 64:   # values that do change (a cumulative BN momentum): no hoard
                self._constants.clear()
            t = torch.tensor(values, dtype=dtype)
            self._constants[key] = (torch.repeat_interleave(t, self._channels_t) if per_channel else t).to(device)
        return self._constants[key]

    def _batch_moments(self) -> tuple[torch.Tensor, torch.Tensor, list[int]] | None:
        """Training mode: BN normalises each channel with the batch's own statistics, so its output has mean
        β_c and variance γ_c²·σ_c²/(σ_c² + eps) exactly; σ_c² (biased) comes from the running variance's
        update by this pass. O(channels) for all layers together, in a few vectorised ops: the sum and the
        sum of squares of each layer's output, (n_responses,) each in float64 (float32 on MPS), and the
        element counts; None when no layer was in that mode."""
        if self._rv_before is None:
            return self._batch   # this pass's, already computed, or None
        if not any(isinstance(r, tuple) and r[0] == "batch" for r in self._resp):
            return None
        mods = self._responses
        dev = self._rv_before.device
        acc = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
        after = torch.cat([m.running_var.detach() for m in mods]).to(acc)
        before = self._rv_before.to(acc)
        self._rv_before = None
        numel = [r[1] if isinstance(r, tuple) and r[0] == "batch" else 0 for r in self._resp]
        n = self._constant([max(k // c, 1) for k, c in zip(numel, self._channels)], acc, dev)
        mom = self._constant([m.momentum if m.momentum is not None else 1.0 / max(float(m.num_batches_tracked), 1.0)
                                 for m in mods], acc, dev)
        eps = self._constant([m.eps for m in mods], acc, dev)
        var = (((after - (1 - mom) * before) / mom) * (n - 1) / n).clamp_min(0)
        gamma = torch.cat([m.weight.detach() if m.weight is not None else torch.ones_like(m.running_var)
                           for m in mods]).to(acc)
        beta = torch.cat([m.bias.detach() if m.bias is not None else torch.zeros_like(m.running_var)
                          for m in mods]).to(acc)
        idx = self._constants.setdefault(("layer_index", dev), self._layer_index.to(dev))
        s1 = torch.zeros(len(mods), dtype=acc, device=dev).index_add_(0, idx, n * beta)
        s2 = torch.zeros(len(mods), dtype=acc, device=dev).index_add_(0, idx, n * (gamma * gamma * var / (var + eps)
                                                                                  + beta * beta))
        self._batch = (s1, s2, numel)
        return self._batch

    def _fill_batch_moments(self) -> None:
        batch = self._batch_moments()
        if batch is not None:
            s1, s2, _ = batch
            self._resp = [(s1[j], s2[j].sqrt(), r[1]) if isinstance(r, tuple) and r[0] == "batch" else r
                          for j, r in enumerate(self._resp)]

    def _response_std(self) -> torch.Tensor:
        """(n_responses,) float32: each response layer's output std in the armed forward pass. In training
        mode a handful of ops for all layers together; otherwise from each layer's own (sum, L2 norm)."""
        if self._all_batch_mode():
            s1, s2, numel = self._batch_moments()
            n = self._constant(numel, s1.dtype, s1.device, per_channel=False)
            return ((s2 - s1 * s1 / n) / (n - 1).clamp_min(1)).clamp_min(0).sqrt().float()
        self._fill_batch_moments()
        z = torch.zeros((), device=self._weights[0].device)
        resp = [_std_from_sums(r[0], r[1], r[2]) if r is not None else z for r in self._resp]
        return torch.stack(resp) if resp else z.new_zeros(0)

    def response_moments(self) -> torch.Tensor:
        """(2, n_responses) float64 on the device: the sum and the sum of squares of each response layer's
        output in the last armed forward pass, to be added up over batches (``std_from_moments``)."""
        self._fill_batch_moments()
        z = torch.zeros((), dtype=torch.float64, device=self._weights[0].device)
        rows = [torch.stack([r[0].double(), r[1].double() ** 2]) if r is not None else torch.stack([z, z])
                for r in self._resp]
        return torch.stack(rows, 1) if rows else z.new_zeros(2, 0)

    def response_counts(self) -> list[int]:
        self._fill_batch_moments()
        return [r[2] if r is not None else 0 for r in self._resp]

    def _stage_hook(self, s):
        def hook(module, args, out):
            if self.armed:
                a = out.detach()
                s1, norm = _sum_and_norm(a)
                self._act_mean[s] = s1 / a.numel()
                self._act_std[s] = _std_from_sums(s1, norm, a.numel())
        return hook

    def _relu_hook(self, s):
        def hook(module, args, out):
            if self.armed:
                # (B, C, H, W) -> (C,): a channel is dead when it is zero everywhere in the batch. ReLU
                # outputs are >= 0, so a zero sum means all zeros; a sum is ~25x faster than amax on CPU.
                dead = out.detach().sum(dim=(0, 2, 3)) == 0
                self._dead[s].append(dead.float().mean())
        return hook

    # --- collection ------------------------------------------------------------------------------
    def grad_norms(self) -> torch.Tensor:
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self._weights]
        return torch.stack(torch._foreach_norm(grads)).float()  # (n_layers,)

    def device_stats(self, with_grads: bool = True) -> list[torch.Tensor]:
        """The armed forward's statistics (and the gradient norms) as 1-d tensors on the device."""
        z = torch.zeros((), device=self._weights[0].device)
        pick = lambda xs: torch.stack([x if x is not None else z for x in xs]) if xs else z.new_zeros(0)
        dead = [torch.stack(d).mean() if d else z for d in self._dead]
        parts = [pick(self._branch_std), pick(self._branch_ratio), pick(self._act_mean),
                 pick(self._act_std), pick(dead), self._response_std()]
        if with_grads:
            parts.insert(0, self.grad_norms())
        for d in self._dead:
            d.clear()
        return parts

    def split(self, host: list[float], with_grads: bool = True) -> dict[str, list[float]]:
        """Inverse of the concatenation of ``device_stats`` after one host copy."""
        keys = (["grad_norm"] if with_grads else []) + ["branch_std", "branch_ratio", "act_mean", "act_std", "dead_relu",
                                                        "layer_response_std"]
        sizes = (([len(self.layout.layers)] if with_grads else []) + [len(self.layout.blocks)] * 2
                 + [len(self.layout.stages)] * 3 + [len(self.layout.responses)])
        out, i = {}, 0
        for k, n in zip(keys, sizes):
            out[k] = host[i:i + n]
            i += n
        return out


def std_from_moments(moments: torch.Tensor, counts: list[int]) -> list[float]:
    """Sample std per layer from summed (2, L) moments (sum, sum of squares) and element counts: the std
    over all elements of a layer's output across every image measured."""
    m = moments.double().cpu()
    out = []
    for j, n in enumerate(counts):
        s1, s2 = m[0, j].item(), m[1, j].item()
        out.append(max((s2 - s1 * s1 / n) / max(n - 1, 1), 0.0) ** 0.5 if n > 0 else float("nan"))
    return out


@contextmanager
def probes(model: CifarResNet):
    """Registers the probe hooks for the duration of the block and always removes them."""
    ps = ProbeSet(model)
    ps._register()
    try:
        yield ps
    finally:
        ps.remove()


@contextmanager
def captured(model: nn.Module, names: list[str]):
    """Captures the forward outputs of the named submodules into a dict; hooks always removed."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise KeyError(f"no such layer(s): {', '.join(missing)}; available: {', '.join(list(modules)[:20])} ...")
    store: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for n in names:
            handles.append(modules[n].register_forward_hook(
                lambda m, a, out, n=n: store.__setitem__(n, out.detach())))
        yield store
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def feature_maps(model: CifarResNet, image: torch.Tensor, max_channels: int = 8) -> dict[str, np.ndarray]:
    """Feature maps of one normalised image (1, 3, H, W): the stem and each stage output, and for each
    block its input x, its branch F(x) and the block output (F(x) + x, after the ReLU when
    post-activation). Keys: "stem", "layer1", "layer2.0/x", "layer2.0/F", "layer2.0/out", ...
    Values: float16 arrays (channels, H, W), the first ``max_channels`` channels."""
    was_training = model.training
    model.eval()
    block_names = [n for n, _ in model.named_blocks()]
    out: dict[str, np.ndarray] = {}
    inputs: dict[str, torch.Tensor] = {}
    blocks = dict(model.named_blocks())
    pre = [blocks[n].register_forward_pre_hook(lambda m, a, n=n: inputs.__setitem__(n, a[0].detach())) for n in block_names]
    try:
        names = ["stem"] + [s for s, _ in model.stages()] + block_names + [f"{n}.branch" for n in block_names]
        with captured(model, names) as store:
            model(image)
    finally:
        for h in pre:
            h.remove()
        model.train(was_training)
    # float16 halves the files; values beyond its range (a deep plain net's activations can pass 65504)
    # are clipped to it rather than stored as inf, which no colour scale can draw.
    f16_max = float(np.finfo(np.float16).max)
    pack = lambda t: t[0, :max_channels].float().clamp(-f16_max, f16_max).cpu().numpy().astype(np.float16)  # (C, H, W)
    for n in ["stem"] + [s for s, _ in model.stages()]:
        out[n] = pack(store[n])
    for n in block_names:
        out[f"{n}/x"] = pack(inputs[n])
        out[f"{n}/F"] = pack(store[f"{n}.branch"])
        out[f"{n}/out"] = pack(store[n])
    return out
