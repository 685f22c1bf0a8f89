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
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from resnet_core import memory
from resnet_core.config import ConfigError, ModelConfig
from resnet_core.files import NotARegularFile, read_regular
from resnet_core.data.consts import CIFAR10_CLASSES, IMAGENET_MEAN, IMAGENET_STD
from resnet_core.nets.models import CifarResNet, build_model, legacy_preact_stem

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
    # A unique temporary name per writer: two processes saving one path never write into one file,
    # and a reader never sees a half-written checkpoint.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


MAX_CHECKPOINT_BYTES = 2 * 2**30   # ResNet-1202 at width 4 with momentum is about 1 GB


def _safe_load(source) -> object:
    if isinstance(source, (str, Path)):
        try:  # a regular file only: torch.load on a FIFO or a device would block or never end
            source = io.BytesIO(read_regular(source, MAX_CHECKPOINT_BYTES, "checkpoint file"))
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint not found: {source}") from None
        except NotARegularFile as e:
            raise CheckpointError(str(e)) from None
        except ValueError as e:
            raise CheckpointError(f"{e}: not a checkpoint of these models") from None
        except OSError as e:
            raise CheckpointError(f"cannot read {source}: {e.strerror or e}") from None
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
    try:
        meta = json.loads(obj["meta_json"])
        out = {"model": obj["state_dict"], "optimizer": state["optimizer"], "loader": state["loader"],
               "step": int(meta["step"]), "config": json.loads(obj["config_json"])}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path} is malformed ({_why(e)}); resume from another checkpoint") from None
    if not isinstance(out["model"], dict) or not isinstance(out["config"], dict) or out["step"] < 0:
        raise CheckpointError(f"{path} is malformed (no state dict, config or step); resume from another checkpoint")
    return out


def _why(e: BaseException) -> str:
    text = str(e).splitlines()[0][:160] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def check_architecture(cfg: ModelConfig, state_dict: dict, name: str, image_size: int = 32) -> None:
    """Before anything is built: the architecture ``cfg`` (declared by a file, or inferred from its key
    names) must hold exactly as many parameters as the file's tensors, and fit the memory budget.
    A file cannot make the loader allocate more than it carries."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{name}: no state_dict of tensors inside; is it a model checkpoint?")
    declared = memory.estimate(cfg, image_size).params
    held = sum(v.numel() for k, v in state_dict.items() if not str(k).endswith(_BUFFERS))
    if declared != held:
        raise CheckpointError(f"{name}: the checkpoint's weights do not fit {cfg.name} with {cfg.num_classes} "
                              f"classes ({declared:,} parameters; the file holds {held:,}): the file is "
                              "inconsistent or damaged, or of another architecture")
    try:
        memory.check_model(cfg, image_size, what=f"{name}: loading the checkpoint")
    except memory.MemoryBudgetError as e:
        raise CheckpointError(str(e)) from None


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
    width = stem.shape[0] / 16
    fc = state_dict.get("fc.weight")
    classes = int(fc.shape[0]) if isinstance(fc, torch.Tensor) and fc.ndim == 2 else 10
    try:
        return ModelConfig(depth=6 * n + 2, width=width, num_classes=classes)
    except ConfigError as e:
        raise CheckpointError(f"cannot infer the architecture: {e}") from None


def _load_into(model: torch.nn.Module, state_dict: dict, what: str) -> None:
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
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
        try:  # every field comes from the file: any malformed one is a CheckpointError, never a traceback
            run_cfg = json.loads(obj["config_json"])
            meta = json.loads(obj["meta_json"])
            cfg = model_cfg or ModelConfig.from_dict(run_cfg["model"])
            size = int((run_cfg.get("data") or {}).get("image_size", 32))  # a quick-scale run sees 16x16 inputs
            classes = [str(c) for c in meta["classes"]]
            mean, std = tuple(float(v) for v in meta["mean"]), tuple(float(v) for v in meta["std"])
            step = int(meta["step"])
            if len(mean) != 3 or len(std) != 3 or not 8 <= size <= 64:
                raise ValueError("mean, std or image size out of range")
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # ConfigError, JSONDecodeError too
            raise CheckpointError(f"{name}: malformed checkpoint ({_why(e)}); use another file") from None
        check_architecture(cfg, obj.get("state_dict"), name, size)
        model = build_model(cfg, legacy_preact_stem(cfg, obj["state_dict"]))  # pre-activation saved before the stem BN
        _load_into(model, obj["state_dict"], cfg.name)
        return LoadedModel(model.eval(), cfg, classes, mean, std, size, f"run checkpoint {name} (step {step})",
                           {"run_config": run_cfg, **meta})
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{name}: no state_dict of tensors inside; is it a model checkpoint?")
    state = akamaster_to_ours(state)
    cfg = model_cfg or infer_cifar_config(state)
    check_architecture(cfg, state, name)
    model = build_model(cfg)
    _load_into(model, state, cfg.name)
    meta = {k: v for k, v in obj.items() if k != "state_dict" and isinstance(v, (int, float, str))}
    # The akamaster files were trained on ImageNet-normalised inputs (their README, ../shared/weights).
    return LoadedModel(model.eval(), cfg, list(CIFAR10_CLASSES), IMAGENET_MEAN, IMAGENET_STD, 32,
                       f"community CIFAR-10 checkpoint {name} ({cfg.name})", meta)
