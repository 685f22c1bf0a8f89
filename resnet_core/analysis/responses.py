"""Layer responses (He et al. 2015, §4.2, Fig. 7): the std of each layer's response in a trained net.

The paper's method: for trained nets on the CIFAR-10 test set, the std of "the outputs of each 3x3
layer, after BN and before other nonlinearity (ReLU/addition)", one number per layer in network order,
and the same numbers sorted by magnitude; plain nets against residual ones of the same depth (ResNets
respond less: their branches are closer to zero), and deeper ResNets less than shallower ones.

Here: every BatchNorm that directly follows a 3x3 convolution (``probes.response_layers``: the stem's
and both of each basic post-activation block's), in eval mode (BN with its running statistics), the std
over all elements of the layer's output across every test image measured (the paper's 10,000 by
default, as many as the test set has: one forward pass each, about 20 s for the community ResNet-56 on
a 2-core CPU (bench/why_defaults.py); on a folder, every image). For a pre-activation net the second 3x3
conv of each block enters the addition with no BN after it: the paper's quantity is undefined there, and
only the stem's BN and the BN after each block's first 3x3 conv (bn2) are measured; for bottleneck nets, the BN after the middle 3x3
conv (the paper's Fig. 7 shows basic-block nets only). The result says which in ``note``.
"""
from __future__ import annotations

import torch

from resnet_core.analysis import register
from resnet_core.analysis.base import Analysis, AnalysisContext, int_setting, macs_of, probed_factor


def layer_responses(model, x: torch.Tensor, batch_size: int, report=None) -> dict:
    """Names and stds of every BN after a 3x3 conv over the images ``x``, in eval mode."""
    from resnet_core.training.probes import probes, std_from_moments

    model.eval()
    moments, counts = None, None
    n_chunks = -(-x.shape[0] // batch_size)
    with probes(model) as ps, torch.no_grad():
        ps.armed = True
        for c in range(n_chunks):
            model(x[c * batch_size:(c + 1) * batch_size])
            m = ps.response_moments()
            moments = m if moments is None else moments + m
            k = ps.response_counts()
            counts = k if counts is None else [a + b for a, b in zip(counts, k)]
            if report is not None:
                report((c + 1) / n_chunks, f"{min((c + 1) * batch_size, x.shape[0])} of {x.shape[0]} images")
        names = list(ps.layout.responses)
    return {"layer_response_names": names, "layer_response_std": std_from_moments(moments, counts)}


def _note(cfg) -> str:
    if cfg is None:
        return "not a CIFAR ResNet"
    if cfg.block == "bottleneck":
        return ("bottleneck blocks: the BN after each block's middle 3x3 conv (the paper's Fig. 7 shows "
                "basic-block nets only)")
    if cfg.preact:
        return ("pre-activation: each block's second 3x3 conv enters the addition without a BN after it, so "
                "the paper's quantity is undefined there; the stem's BN and the BN after each first 3x3 conv are "
                "measured")
    return "every 3x3 conv's BN output, as in the paper"


def run(ctx: AnalysisContext, s: dict) -> dict:
    loaded = ctx.trained()
    model = loaded.model.eval()
    x, _ = ctx.images(s["images"], split="test")
    out = layer_responses(model, x, s["batch_size"], ctx.report)
    out.update(model=loaded.model_cfg.name if loaded.model_cfg else loaded.source,
               residual=bool(loaded.model_cfg.residual) if loaded.model_cfg else None,
               note=_note(loaded.model_cfg), images=int(x.shape[0]), dataset=ctx.dataset().name,
               sorted_std=sorted(out["layer_response_std"], reverse=True))
    return out


def _check(s: dict) -> None:
    int_setting(s, "images", 1, 1_000_000)
    int_setting(s, "batch_size", 1, 4096)


def _cost(ctx: AnalysisContext, s: dict):
    cfg = ctx.model_config()
    ds = ctx.dataset()
    images = min(s["images"], int(ds.test_x.shape[0]))
    size = int(ds.test_x.shape[-1])
    probed = probed_factor(ctx.device, cfg.width, size)   # the hooks' reductions, in plain passes
    return (macs_of(cfg, size) * images * probed,
            f"1 forward pass with probes (x{probed:.2f} a plain one) x {images} test images ({cfg.name})")


ANALYSIS = register(Analysis(
    name="responses",
    title="Layer responses of trained nets (Fig. 7)",
    caption=(
        "He et al. (2015, Fig. 7) measure, in trained nets on test images, the std of every 3x3 layer's output "
        "after BN and before the ReLU or the addition: residual nets respond less than plain nets of the same "
        "depth (their branches stay near zero, close to the identity the shortcut provides), and deeper "
        "ResNets less than shallower ones. One number per layer in network order, and the same sorted by "
        "magnitude; BN in eval mode with its running statistics."),
    needs="trained",
    defaults={"images": 10000, "batch_size": 250},
    fn=run, cost=_cost, check=_check, paper={"images": 10000},
))
