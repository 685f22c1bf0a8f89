"""CIFAR-style ResNets and their plain twins (He et al. 2015 §4.2; He et al. 2016 for pre-activation).

torchvision's vocabulary (BasicBlock, Bottleneck with ``expansion``, ``_make_layer``) with the switches
torchvision hard-codes made configurable: residual or plain, shortcut option A/B/C, post- or
pre-activation, BatchNorm on or off. Every block keeps its residual branch ``F`` and its shortcut as
separate submodules and owns non-inplace ReLU modules, so probes and Captum (DeepLift, Guided
Backprop: captum issues 378, 480) see every path.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from resnet_core.config import STAGE_WIDTHS, ModelConfig  # noqa: F401  (STAGE_WIDTHS re-exported: widths at width 1)


def _norm(channels: int, batchnorm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batchnorm else nn.Identity()


def _conv(cin: int, cout: int, k: int, stride: int, batchnorm: bool) -> nn.Conv2d:
    # Without BN the conv needs its own bias; with BN the bias would be cancelled by the BN mean.
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=not batchnorm)


class ZeroPadShortcut(nn.Module):
    """Option A: parameter-free identity, subsampled by ``stride`` and zero-padded in channels.

    The padding is split evenly before and after the existing channels, as in the widely used
    CIFAR implementation whose checkpoints we load (akamaster/pytorch_resnet_cifar10).
    """

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride, self.pad_before, self.pad_after = stride, (cout - cin) // 2, cout - cin - (cout - cin) // 2

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_before or self.pad_after:
            x = F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))
        return x


class Projection(nn.Sequential):
    """Options B and C: 1x1 convolution (+BN) to the block's output shape."""

    def __init__(self, cin: int, cout: int, stride: int, batchnorm: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, stride=stride, bias=not batchnorm)
        self.bn = _norm(cout, batchnorm)


def make_shortcut(cin: int, cout: int, stride: int, option: str, batchnorm: bool) -> nn.Module:
    changes_shape = stride != 1 or cin != cout
    if option == "C" or (option == "B" and changes_shape):
        return Projection(cin, cout, stride, batchnorm)
    if changes_shape:
        return ZeroPadShortcut(cin, cout, stride)
    return nn.Identity()


class _Block(nn.Module):
    """out = post(F(x) + shortcut(x)); a plain block drops the addition and has no shortcut."""

    expansion = 1

    def __init__(self, branch: nn.Sequential, shortcut: nn.Module | None, preact: bool):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.residual = shortcut is not None
        # Post-activation (2015) applies ReLU after the addition; pre-activation (2016) keeps the sum clean.
        self.relu_out = nn.Identity() if preact else nn.ReLU()

    def forward(self, x):
        out = self.branch(x)  # F(x): the residual branch response (Fig. 7 of the 2015 paper)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu_out(out)

    def zero_init_last(self) -> None:
        # Goyal et al. 2017: each block starts as the identity, which helps very deep nets.
        # Post-activation branches end in their last BN; pre-activation branches end in a conv.
        last = self.branch[-1]
        if isinstance(last, (nn.BatchNorm2d, nn.Conv2d)):
            nn.init.zeros_(last.weight)


def _branch(convs: list[tuple[int, int, int, int]], preact: bool, batchnorm: bool) -> nn.Sequential:
    """A residual branch from its convolutions ``(in, out, kernel, stride)``, named as torchvision names
    them (conv1, bn1, relu1, ...): post-activation conv-BN-ReLU with no ReLU after the last BN (it comes
    after the addition); pre-activation BN-ReLU-conv (He et al. 2016, Fig. 4e)."""
    branch = nn.Sequential()
    for i, (cin, cout, k, stride) in enumerate(convs, start=1):
        if preact:
            branch.add_module(f"bn{i}", _norm(cin, batchnorm))
            branch.add_module(f"relu{i}", nn.ReLU())
            branch.add_module(f"conv{i}", _conv(cin, cout, k, stride, batchnorm))
        else:
            branch.add_module(f"conv{i}", _conv(cin, cout, k, stride, batchnorm))
            branch.add_module(f"bn{i}", _norm(cout, batchnorm))
            if i < len(convs):
                branch.add_module(f"relu{i}", nn.ReLU())
    return branch


class BasicBlock(_Block):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, *, residual: bool, shortcut: str,
                 preact: bool, batchnorm: bool):
        cout = planes * self.expansion
        branch = _branch([(cin, planes, 3, stride), (planes, cout, 3, 1)], preact, batchnorm)
        sc = make_shortcut(cin, cout, stride, shortcut, batchnorm) if residual else None
        super().__init__(branch, sc, preact)


class Bottleneck(_Block):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, *, residual: bool, shortcut: str,
                 preact: bool, batchnorm: bool):
        cout = planes * self.expansion
        branch = _branch([(cin, planes, 1, 1), (planes, planes, 3, stride), (planes, cout, 1, 1)], preact,
                         batchnorm)
        sc = make_shortcut(cin, cout, stride, shortcut, batchnorm) if residual else None
        super().__init__(branch, sc, preact)


@dataclass(frozen=True)
class FeatureInfo:
    """A stable layer address shared by probes, feature-map pickers, Grad-CAM and chart axes."""

    name: str      # module path, e.g. "layer2.0"
    channels: int
    stride: int    # total downsampling relative to the input
    kind: str      # stem, block, head


class CifarResNet(nn.Module):
    """3x3 stem, three stages (16/32/64 x width), n blocks each, global average pool, linear head."""

    def __init__(self, cfg: ModelConfig, legacy_preact_stem: bool = False):
        super().__init__()
        self.cfg = cfg
        block = BasicBlock if cfg.block == "basic" else Bottleneck
        n, widths = cfg.n, cfg.stage_widths   # 16/32/64 x width, rounded (width may be fractional)
        self.stem = nn.Sequential()
        self.stem.add_module("conv", _conv(3, widths[0], 3, 1, cfg.batchnorm))
        # Pre-activation (He et al. 2016, their CIFAR code): BN-ReLU after the stem, before the first unit
        # splits into branch and shortcut, so the first shortcut carries an activated input, not the raw
        # convolution; that first unit then has no BN-ReLU of its own. ``legacy_preact_stem`` builds the
        # earlier layout (stem conv only, BN-ReLU inside the first branch) for checkpoints saved with it.
        preact_stem = cfg.preact and not legacy_preact_stem
        if not cfg.preact or preact_stem:
            self.stem.add_module("bn", _norm(widths[0], cfg.batchnorm))
            self.stem.add_module("relu", nn.ReLU())
        self._cin = widths[0]
        infos = [FeatureInfo("stem", self._cin, 1, "stem")]
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            name = f"layer{i + 1}"
            self.add_module(name, self._make_layer(block, planes, n, stride))
            for j in range(n):
                infos.append(FeatureInfo(f"{name}.{j}", planes * block.expansion, 2 ** i, "block"))
        if preact_stem:
            first = self.layer1[0].branch
            first.bn1, first.relu1 = nn.Identity(), nn.Identity()   # the stem's BN-ReLU took their place
        # Pre-activation nets end in BN-ReLU before pooling (He et al. 2016, Fig. 1b / appendix).
        self.head_act = nn.Sequential()
        if cfg.preact:
            self.head_act.add_module("bn", _norm(self._cin, cfg.batchnorm))
            self.head_act.add_module("relu", nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self._cin, cfg.num_classes)
        self.feature_info = infos
        self._init_weights(cfg.init)
        if cfg.zero_init_last:
            for b in self.blocks():
                b.zero_init_last()

    def _make_layer(self, block, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self._cin, planes, s, residual=self.cfg.residual, shortcut=self.cfg.shortcut,
                                preact=self.cfg.preact, batchnorm=self.cfg.batchnorm))
            self._cin = planes * block.expansion
        return nn.Sequential(*layers)

    def _init_weights(self, init: str) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                if init == "kaiming":  # He et al. 2015b, as the paper uses (fan_in, ReLU gain)
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                elif init == "xavier":
                    nn.init.xavier_normal_(m.weight)
                else:
                    nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.stem(x)        # (B, 16w, 32, 32)
        x = self.layer1(x)      # (B, 16w*e, 32, 32)
        x = self.layer2(x)      # (B, 32w*e, 16, 16)
        x = self.layer3(x)      # (B, 64w*e, 8, 8)
        x = self.head_act(x)
        x = self.pool(x).flatten(1)  # (B, 64w*e)
        return self.fc(x)

    def stages(self) -> list[tuple[str, nn.Sequential]]:
        return [("layer1", self.layer1), ("layer2", self.layer2), ("layer3", self.layer3)]

    def blocks(self) -> list[_Block]:
        return [b for _, stage in self.stages() for b in stage]

    def named_blocks(self) -> list[tuple[str, _Block]]:
        return [(f"{s}.{j}", b) for s, stage in self.stages() for j, b in enumerate(stage)]

    def weight_layers(self) -> list[tuple[str, nn.Module]]:
        """Every conv and linear layer in network order (input to output), by module path."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self.weight_layers()]


def build_model(cfg: ModelConfig, legacy_preact_stem: bool = False) -> CifarResNet:
    return CifarResNet(cfg, legacy_preact_stem)


def legacy_preact_stem(cfg: ModelConfig, state_dict: dict) -> bool:
    """Whether ``state_dict`` holds a pre-activation net of the earlier layout (no BN after the stem, the first
    block's own bn1): such checkpoints load into ``build_model(cfg, legacy_preact_stem=True)``."""
    return bool(cfg.preact and cfg.batchnorm and "stem.bn.weight" not in state_dict
                and "layer1.0.branch.bn1.weight" in state_dict)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int] = (32, 32)) -> int:
    """Multiply-adds of one forward pass of one image: convolutions and linear layers (torch's FLOP
    counter counts two FLOPs per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters())
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, *input_size, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
