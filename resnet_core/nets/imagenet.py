"""ImageNet ResNet-18/34/50 with torchvision's pretrained weights, made safe for every attribution method.

Weights come from torchvision's weights enum (URL, preprocessing, category names), are downloaded once
into torch hub's cache (``torch.hub.get_dir()/checkpoints/<file>``, where torchvision itself keeps
them) and always loaded with ``torch.load(weights_only=True)``. Offline without the cached file, the
error names the file, the URL and the full path to place it at.

torchvision's blocks call one inplace ``self.relu`` two or three times and add the shortcut in place
(``out += identity``). Captum's DeepLift and Guided Backprop attach their rules to ReLU modules, so a
module reused within a block gets the wrong rule (captum issues 378, 480). ``make_attribution_safe``
swaps each block for a subclass with distinct non-inplace ReLUs and an out-of-place addition; it has
the same parameters and state-dict keys, and the same outputs.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models import resnet as tv_resnet

from resnet_core.download import DownloadError, download
from resnet_core.nets.checkpoints import LoadedModel
from resnet_core.nets.models import FeatureInfo

ARCHS = {
    "resnet18": (tv_resnet.resnet18, tv_resnet.ResNet18_Weights.IMAGENET1K_V1, "ResNet-18"),
    "resnet34": (tv_resnet.resnet34, tv_resnet.ResNet34_Weights.IMAGENET1K_V1, "ResNet-34"),
    "resnet50": (tv_resnet.resnet50, tv_resnet.ResNet50_Weights.IMAGENET1K_V1, "ResNet-50"),
}


class ModelError(RuntimeError):
    """A model that cannot be provided; the message says why and what to do."""


class AttributionBasicBlock(tv_resnet.BasicBlock):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu_out(out + identity)


class AttributionBottleneck(tv_resnet.Bottleneck):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu_out(out + identity)


def make_attribution_safe(model: tv_resnet.ResNet) -> tv_resnet.ResNet:
    """In place: distinct non-inplace ReLU modules per use, out-of-place residual addition."""
    swaps = {tv_resnet.BasicBlock: AttributionBasicBlock, tv_resnet.Bottleneck: AttributionBottleneck}
    for m in list(model.modules()):
        cls = swaps.get(type(m))
        if cls is None:
            continue
        m.__class__ = cls  # same attributes and parameters; only forward differs
        del m.relu
        m.relu1, m.relu_out = nn.ReLU(), nn.ReLU()
        if cls is AttributionBottleneck:
            m.relu2 = nn.ReLU()
    model.relu = nn.ReLU()  # the stem's, used once, but inplace
    # Grad-CAM layer choices by block name, like CifarResNet.feature_info.
    infos = [FeatureInfo("maxpool", model.bn1.num_features, 4, "stem")]
    for i in range(1, 5):
        stage = getattr(model, f"layer{i}")
        for j, block in enumerate(stage):
            channels = (block.conv3 if hasattr(block, "conv3") else block.conv2).out_channels
            infos.append(FeatureInfo(f"layer{i}.{j}", channels, 2 ** (i + 1), "block"))
    model.feature_info = infos
    return model


def cache_path(arch: str) -> Path:
    _, weights, _ = ARCHS[arch]
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _offline_message(arch: str, reason: str) -> str:
    _, weights, label = ARCHS[arch]
    path = cache_path(arch)
    return (f"cannot download the {label} ImageNet weights ({reason}): download {path.name} from "
            f"{weights.url} and place it at {path}")


def ensure_weights(arch: str) -> Path:
    """The cached weights file, downloaded on first use; ``ModelError`` when that is impossible."""
    if arch not in ARCHS:
        raise ModelError(f"unknown ImageNet model {arch!r}: use one of {', '.join(ARCHS)}")
    path = cache_path(arch)
    if path.is_file():
        return path
    _, weights, _ = ARCHS[arch]
    m = torch.hub.HASH_REGEX.search(path.name)  # torchvision's files carry a sha256 prefix: resnet18-f37072fd.pth
    try:
        download(weights.url, path, sha256_prefix=m.group(1) if m else None)
    except DownloadError as e:
        raise ModelError(_offline_message(arch, str(e))) from None
    except OSError as e:  # the cache directory unwritable, the disk full
        raise ModelError(_offline_message(arch, f"{e.strerror or e}: {e.filename or path.parent}")) from None
    return path


def load_imagenet(arch: str = "resnet18", *, weights_file: str | Path | None = None) -> LoadedModel:
    """torchvision's ResNet-``arch`` with IMAGENET1K_V1 weights, attribution-safe, in eval mode."""
    if arch not in ARCHS:
        raise ModelError(f"unknown ImageNet model {arch!r}: use one of {', '.join(ARCHS)}")
    build, weights, label = ARCHS[arch]
    path = Path(weights_file) if weights_file is not None else ensure_weights(arch)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file raises many types
        raise ModelError(f"{path} is not a usable weights file ({type(e).__name__}): delete it and let it "
                         f"download again, or place the file from {weights.url} there") from None
    model = build(weights=None)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = " ".join(ln.strip() for ln in str(e).splitlines()[1:3])[:300]
        raise ModelError(f"{path.name} does not fit torchvision's {label}: {first}") from None
    make_attribution_safe(model).eval()
    return LoadedModel(model, None, list(weights.meta["categories"]), tuple(weights.transforms().mean),
                       tuple(weights.transforms().std), weights.transforms().crop_size[0],
                       f"torchvision {label} ({weights.name})", {"arch": arch, "weights": str(path)})
