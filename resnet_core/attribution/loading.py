"""Models by spec (a stored run, a checkpoint file, torchvision ImageNet weights) and their predictions."""
from __future__ import annotations


import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from resnet_core.nets.checkpoints import LoadedModel

from resnet_core.attribution.methods import _device

MODEL_SPECS = ("run:RUN_ID, ckpt:PATH, cifar10:resnet20|resnet32|resnet44|resnet56|resnet110|resnet1202 "
               "(community checkpoints, downloaded on first use) or imagenet:resnet18|resnet34|resnet50")


def load_model(spec: str, *, runs_dir=None, device: str | torch.device = "cpu") -> LoadedModel:
    """A model by spec: ``run:RUN_ID`` (a stored run's last checkpoint, its own config), ``ckpt:PATH``
    (ours or a community CIFAR-10 file; architecture inferred from the weights), ``cifar10:resnetN`` (a
    community checkpoint by name, downloaded on first use) or ``imagenet:ARCH``. Raises ``ModelError`` or ``CheckpointError`` with a message for a person."""
    from resnet_core.nets.checkpoints import load_checkpoint
    from resnet_core.nets.imagenet import ModelError, load_imagenet

    kind, _, value = spec.partition(":")
    if not value:
        raise ModelError(f"model {spec!r} is not a model spec: use {MODEL_SPECS}")
    if kind == "run":
        from resnet_core.training.runs import RunStore, validate_run_id
        try:
            validate_run_id(value)
        except ValueError as e:
            raise ModelError(str(e)) from None
        store = RunStore(runs_dir)
        if not (store.root / value).is_dir():
            raise ModelError(f"no run {value!r} in {store.root}: list them with `python -m resnet_core runs`")
        path = store.checkpoint_path(value)
        if path is None:
            raise ModelError(f"run {value!r} has no checkpoint yet (runs/<id>/checkpoints/last.pt is written "
                             "when training ends): wait for it or pick another run")
        loaded = load_checkpoint(path)
        loaded.source = f"run {value}"
    elif kind == "ckpt":
        loaded = load_checkpoint(value)
    elif kind == "cifar10":
        from resnet_core.nets import community
        loaded = community.load(spec)
    elif kind == "imagenet":
        loaded = load_imagenet(value)
    else:
        raise ModelError(f"unknown model kind {kind!r}: use {MODEL_SPECS}")
    loaded.model.to(device)
    return loaded


@torch.no_grad()
def predict(loaded: LoadedModel, x: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
    """The top-k classes of one image with softmax probabilities."""
    probs = F.softmax(loaded.model(x.to(_device(loaded.model))).float(), dim=1)[0]
    p, idx = probs.topk(min(k, probs.numel()))
    return [(loaded.classes[i] if i < len(loaded.classes) else str(i), float(v)) for v, i in zip(p.tolist(), idx.tolist())]


@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    return F.softmax(model(x.to(_device(model))).float(), dim=1).cpu().numpy()

