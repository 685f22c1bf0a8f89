"""Saving and loading checkpoints, ours and the community CIFAR-10 ones, always with the safe loader.

A checkpoint a user supplies is untrusted: every load goes through ``torch.load(weights_only=True)``,
which refuses pickles that carry code. Our own checkpoints store the run's config as a JSON string so
that they, too, load with the safe loader and rebuild the exact architecture they were trained with.
"""
from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import ConfigError, ModelConfig
from .data_consts import CIFAR10_CLASSES, IMAGENET_MEAN, IMAGENET_STD
from .models import CifarResNet, build_model, legacy_preact_stem

FORMAT = "resnet-lab/1"


class CheckpointError(RuntimeError):
    """A file that cannot be used as a checkpoint; the message says why and what to do."""


@dataclass
class LoadedModel:
    model: torch.nn.Module
    model_cfg: ModelConfig | None     # None for models not built from a ModelConfig (ImageNet)
    classes: list[str]
    mean: tuple[float, float, float]  # input normalisation on a 0..1 scale
    std: tuple[float, float, float]
    input_size: int                   # square input side in pixels
    source: str                       # human-readable origin
    meta: dict = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: CifarResNet, run_config: dict, *, step: int,
                    classes: list[str], mean, std, extra: dict | None = None,
                    train_state: dict | None = None) -> Path:
    """``train_state`` (optimizer and loader state dicts: tensors, numbers, lists) makes the
    checkpoint resumable (``load_train_state``); readers of the weights ignore it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config_json": json.dumps(run_config),
        "meta_json": json.dumps({"step": step, "classes": list(classes), "mean": list(mean),
                                 "std": list(std), **(extra or {})}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a reader never sees a half-written checkpoint
    return path


def _safe_load(source) -> object:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {source}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{source} is a directory; give the checkpoint file inside it") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        text = str(e)
        # Every error of the weights-only unpickler mentions weights_only; only these name a global
        # (a callable or class) that the file wanted to run, which is what makes it dangerous.
        if "GLOBAL" in text or "Unsupported global" in text:
            raise CheckpointError(
                "refused: the file is a pickle that would run code when loaded. Only plain weight "
                "files (tensors, numbers, strings, dicts) are accepted"
            ) from None
        detail = "" if "weights_only" in text else f" ({type(e).__name__}: {text.splitlines()[0][:200] if text else ''})"
        raise CheckpointError(f"not a PyTorch checkpoint{detail}: give a .pt/.pth/.th file of weights") from None


def load_train_state(path: str | Path) -> dict:
    """What a resumed run continues from: ``model`` (state dict), ``optimizer``, ``loader``, ``step``
    and the run ``config`` (dict); refuses checkpoints saved without a training state."""
    obj = _safe_load(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of a run here, so there is nothing to resume")
    state = obj.get("train_state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds weights only (saved before runs could be resumed); "
                              "start a new run instead")
    meta = json.loads(obj["meta_json"])
    return {"model": obj["state_dict"], "optimizer": state["optimizer"], "loader": state["loader"],
            "step": int(meta["step"]), "config": json.loads(obj["config_json"])}


_AKAMASTER_BLOCK = re.compile(r"^layer([123])\.(\d+)\.(conv|bn)([12])\.(.+)$")


def akamaster_to_ours(state_dict: dict) -> dict:
    """Maps akamaster/pytorch_resnet_cifar10 keys to ours: conv1 -> stem.conv, layerS.i.convK ->
    layerS.i.branch.convK, linear -> fc; drops the DataParallel ``module.`` prefix."""
    out = {}
    for key, value in state_dict.items():
        k = key[len("module."):] if key.startswith("module.") else key
        if k.startswith("conv1."):
            k = "stem.conv." + k[len("conv1."):]
        elif k.startswith("bn1."):
            k = "stem.bn." + k[len("bn1."):]
        elif k.startswith("linear."):
            k = "fc." + k[len("linear."):]
        else:
            m = _AKAMASTER_BLOCK.match(k)
            if m:
                s, i, kind, j, rest = m.groups()
                k = f"layer{s}.{i}.branch.{kind}{j}.{rest}"
        out[k] = value
    return out


def infer_cifar_config(state_dict: dict) -> ModelConfig:
    """ResNet-(6n+2) with option A from a state dict's block count and stem width."""
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"^layer1\.(\d+)\.", k))}
    if not blocks:
        raise CheckpointError("the state dict has no layer1 blocks: not a CIFAR ResNet checkpoint")
    n = max(blocks) + 1
    stem = state_dict.get("stem.conv.weight")
    if stem is None or stem.ndim != 4:
        raise CheckpointError("the state dict has no 3x3 stem convolution: not a CIFAR ResNet checkpoint")
    width = stem.shape[0] // 16
    classes = state_dict["fc.weight"].shape[0] if "fc.weight" in state_dict else 10
    try:
        return ModelConfig(depth=6 * n + 2, width=max(1, width), num_classes=classes)
    except ConfigError as e:
        raise CheckpointError(f"cannot infer the architecture: {e}") from None


def _load_into(model: torch.nn.Module, state_dict: dict, what: str) -> None:
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        first = [ln.strip() for ln in str(e).splitlines() if ln.strip()][1:3]
        raise CheckpointError(f"the checkpoint's weights do not fit {what}: {' '.join(first)[:300]}") from None


def load_checkpoint(source: str | Path | bytes | io.BytesIO, model_cfg: ModelConfig | None = None) -> LoadedModel:
    """Loads one of our checkpoints or an akamaster CIFAR-10 one; the architecture comes from the
    file (our config, or the block count of a community file) unless ``model_cfg`` is given."""
    name = str(source) if isinstance(source, (str, Path)) else "uploaded file"
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    obj = _safe_load(source)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{name}: expected a dict of weights, found {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        run_cfg = json.loads(obj["config_json"])
        meta = json.loads(obj["meta_json"])
        cfg = model_cfg or ModelConfig.from_dict(run_cfg["model"])
        model = build_model(cfg, legacy_preact_stem(cfg, obj["state_dict"]))  # pre-activation saved before the stem BN
        _load_into(model, obj["state_dict"], cfg.name)
        size = int((run_cfg.get("data") or {}).get("image_size", 32))  # a quick-scale run sees 16x16 inputs
        return LoadedModel(model.eval(), cfg, meta["classes"], tuple(meta["mean"]), tuple(meta["std"]),
                           size, f"run checkpoint {name} (step {meta['step']})", {"run_config": run_cfg, **meta})
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{name}: no state_dict of tensors inside; is it a model checkpoint?")
    state = akamaster_to_ours(state)
    cfg = model_cfg or infer_cifar_config(state)
    model = build_model(cfg)
    _load_into(model, state, cfg.name)
    meta = {k: v for k, v in obj.items() if k != "state_dict" and isinstance(v, (int, float, str))}
    # The akamaster files were trained on ImageNet-normalised inputs (their README, ../shared/weights).
    return LoadedModel(model.eval(), cfg, list(CIFAR10_CLASSES), IMAGENET_MEAN, IMAGENET_STD, 32,
                       f"community CIFAR-10 checkpoint {name} ({cfg.name})", meta)
