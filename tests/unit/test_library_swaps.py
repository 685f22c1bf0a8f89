"""Library calls that replaced hand-written pieces give the same output as before: each test keeps the
old implementation as a reference and compares (exactly, or within a stated tolerance where the
library differs on purpose)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from resnet_core.attribution import checks, render
from resnet_core.config import ModelConfig
from resnet_core.data.images import normalize_image
from resnet_core.figures.training import mosaic
from resnet_core.nets.models import build_model, count_macs


# --- colour maps (render.overlay) ----------------------------------------------------------------------

OLD_HEAT = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                     [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64)
OLD_DIVERGING = np.array([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]],
                         dtype=np.float64)


def _old_colours(v: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    pos = np.clip(v, 0, 1) * (len(anchors) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(anchors) - 2)
    t = (pos - lo)[..., None]
    return (anchors[lo] * (1 - t) + anchors[lo + 1] * t).astype(np.uint8)


@pytest.mark.parametrize("signed, anchors", [(False, OLD_HEAT), (True, OLD_DIVERGING)])
def test_overlay_colours_stay_within_24_levels_of_the_old_hand_made_scales(signed, anchors):
    """Catches a wrong colour map name, a reversed scale or a signed map drawn on the heat scale: the
    matplotlib maps (inferno; RdBu_r without its darkest tenth at each end) differ from the old
    anchors by at most 24 of 255 levels (measured: 23 and 24)."""
    side = 64  # the overlay is drawn at 64 px, so no resize blurs the comparison
    ramp = np.linspace(-1 if signed else 0, 1, side * side).reshape(side, side)
    view = Image.new("RGB", (side, side))
    got = np.asarray(render.overlay(view, ramp, alpha=1.0, signed=signed, display_size=side), dtype=int)
    want = _old_colours(render.normalise_map(ramp, signed), anchors).astype(int)
    assert np.abs(got - want).max() <= 24
    assert np.abs(got - want).mean() <= 6


# --- blur before insertion (checks._blur) --------------------------------------------------------------

def _old_blur(x: torch.Tensor) -> torch.Tensor:
    sigma = max(1.0, x.shape[-1] / 16)
    r = int(math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    xp = F.pad(x, (r, r, r, r), mode="replicate")
    xp = F.conv2d(xp, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(xp, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


@pytest.mark.parametrize("side", [2, 8, 32, 64])
def test_blur_matches_the_old_separable_gaussian(side):
    """Catches a kernel size or sigma that does not follow side/16 (a kernel twice as wide changes
    every pixel), a blur that shifts the image, a border reflected instead of replicated (which moves
    the insertion curve's start), and a failure on images smaller than the kernel."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, side, side)
    got = checks._blur(x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, _old_blur(x), atol=1e-5, rtol=0)


# --- area under the deletion/insertion curve (checks._auc) ---------------------------------------------

def test_auc_is_the_trapezoid_rule():
    """Catches a left or right Riemann sum in place of the trapezoids, or swapped arguments."""
    assert checks._auc(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5)
    assert checks._auc(np.array([0.0, 0.25, 1.0]), np.array([0.0, 1.0, 1.0])) == pytest.approx(0.875)
    rng = np.random.default_rng(0)
    fractions, curve = np.linspace(0, 1, 33), rng.random(33)
    old = float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(fractions)))
    assert checks._auc(fractions, curve) == pytest.approx(old, rel=1e-12)


# --- feature-map mosaic (figures.training.mosaic) ------------------------------------------------------

def _old_mosaic(maps: np.ndarray, cols: int, normalise: bool = True) -> np.ndarray:
    maps = np.asarray(maps, dtype=np.float32)
    c, h, w = maps.shape
    rows = math.ceil(c / cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan, dtype=np.float32)
    for i in range(c):
        m = maps[i]
        if normalise:
            lo, hi = float(m.min()), float(m.max())
            m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        r, k = divmod(i, cols)
        out[r * (h + 1):r * (h + 1) + h, k * (w + 1):k * (w + 1) + w] = m
    return out


@pytest.mark.parametrize("c, cols", [(5, 4), (8, 8), (1, 1), (3, 4), (1, 4), (16, 4)])
@pytest.mark.parametrize("normalise", [True, False])
def test_mosaic_same_as_before(c, cols, normalise):
    """Catches an outer border the pages do not expect (make_grid pads outside too), gaps that are not
    NaN, a strip narrower than ``cols`` when there are fewer channels, and normalisation over all
    channels at once instead of per channel."""
    rng = np.random.default_rng(c * 10 + cols)
    maps = rng.normal(size=(c, 5, 7)).astype(np.float32) * np.arange(1, c + 1, dtype=np.float32)[:, None, None]
    if c > 2:
        maps[2] = 3.0  # a constant channel: zeros when normalised
    np.testing.assert_allclose(mosaic(maps, cols, normalise), _old_mosaic(maps, cols, normalise),
                               rtol=0, atol=1e-6, equal_nan=True)


# --- multiply-adds (nets.models.count_macs) ------------------------------------------------------------

def _old_count_macs(model: nn.Module, input_size: tuple[int, int]) -> int:
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, *input_size))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("cfg, size", [
    (ModelConfig(depth=20), 32),
    (ModelConfig(depth=8, residual=False), 32),
    (ModelConfig(depth=11, block="bottleneck"), 32),
    (ModelConfig(depth=8, preact=True), 16),
    (ModelConfig(depth=8, shortcut="B"), 32),
    (ModelConfig(depth=8, shortcut="C", width=0.5, num_classes=100), 24),
])
def test_count_macs_same_as_the_old_hook_counter(cfg, size):
    """Catches counting FLOPs (twice the multiply-adds), missing the projection shortcuts or the final
    linear layer, and a count that ignores the input size."""
    assert count_macs(build_model(cfg), (size, size)) == _old_count_macs(build_model(cfg), (size, size))


def test_count_macs_leaves_the_model_as_it_was():
    """Catches a counter that leaves hooks behind or the model in eval mode."""
    model = build_model(ModelConfig(depth=8)).train()
    count_macs(model)
    assert model.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


# --- upload normalisation (data.images.normalize_image) ------------------------------------------------

def test_normalize_image_same_as_before():
    """Catches mean and std swapped, a missing /255, and channels in the wrong order."""
    rng = np.random.default_rng(0)
    view = Image.fromarray(rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8), "RGB")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = torch.from_numpy(np.asarray(view, dtype=np.float32).copy()).permute(2, 0, 1).div_(255.0)
    want = ((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)).unsqueeze(0)
    got = normalize_image(view, mean, std)
    assert got.shape == (1, 3, 9, 11) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
