"""Evaluation of a loaded checkpoint on a test set, optionally with the training probes, so a
pretrained net can be analysed like a live one."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from resnet_core.nets.checkpoints import LoadedModel
from resnet_core.config import ConfigError, DataConfig
from resnet_core.data import iter_test_batches, load_dataset, load_folder
from resnet_core.training.probes import std_from_moments, probes
from resnet_core.device import resolve_device


def default_data_config(loaded: LoadedModel) -> DataConfig:
    """The data a checkpoint was trained on: a run's own data config, else CIFAR-10 in ./data."""
    run_cfg = loaded.meta.get("run_config")
    if run_cfg:
        return DataConfig.from_dict(run_cfg["data"])
    return DataConfig(name="cifar10", path="data")


@torch.no_grad()
def evaluate_checkpoint(loaded: LoadedModel, data_cfg: DataConfig | None = None, *, batch_size: int = 256,
                        limit: int | None = None, device: str = "auto", with_probes: bool = False) -> dict:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive number of test images; got {limit!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 8192:
        raise ConfigError(f"batch size must be from 1 to 8192; got {batch_size!r}")
    dev = resolve_device(device)
    data_cfg = data_cfg or default_data_config(loaded)
    if data_cfg.name == "folder":
        # A folder given to evaluate is all test data: every image, not the 20% training would hold out.
        ds = load_folder(data_cfg.path, size=data_cfg.image_size, whole=True)
    else:
        ds = load_dataset(data_cfg)
    n_out = loaded.model.fc.out_features
    if n_out != len(ds.classes):
        raise ValueError(f"the model predicts {n_out} classes but {data_cfg.name} has {len(ds.classes)}")
    # The checkpoint's own input normalisation, not the data set's statistics.
    ds = dataclasses.replace(ds, mean=tuple(loaded.mean), std=tuple(loaded.std))
    model = loaded.model.to(dev).eval()
    max_batches = None if limit is None else max(1, -(-limit // batch_size))
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev)
    n = 0
    sums = None
    batches = 0
    moments, counts = None, None
    with probes(model) as ps:
        ps.armed = with_probes
        for x, y in iter_test_batches(ds, batch_size, dev, limit=max_batches):
            if limit is not None and n + len(y) > limit:
                x, y = x[: limit - n], y[: limit - n]
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
            if with_probes:
                stats = torch.cat(ps.device_stats(with_grads=False))
                sums = stats if sums is None else sums + stats
                m = ps.response_moments()
                moments = m if moments is None else moments + m
                c = ps.response_counts()
                counts = c if counts is None else [a + b for a, b in zip(counts, c)]
                batches += 1
    out = {"checkpoint": loaded.source, "model": loaded.model_cfg.name if loaded.model_cfg else None,
           "dataset": data_cfg.name, "images": n, "accuracy": (correct / max(n, 1)).item(),
           "loss": (loss_sum / max(n, 1)).item()}
    out.update(published_errors(loaded, data_cfg, n))
    if with_probes and batches:
        # Means over batches of the per-batch statistics (each batch measured as in training).
        split = ps.split((sums / batches).tolist(), with_grads=False)
        out["probes"] = {"blocks": ps.layout.blocks, "stages": ps.layout.stages,
                         "branch_response_std": split["branch_std"], "branch_ratio": split["branch_ratio"],
                         "activation_mean": split["act_mean"], "activation_std": split["act_std"],
                         "dead_relu_fraction": split["dead_relu"],
                         # He et al. 2015, Fig. 7: the std of every BN output that follows a 3x3 conv, over all
                         # elements of the layer's output across every image measured, in eval mode
                         "layer_response_names": list(ps.layout.responses),
                         "layer_response_std": std_from_moments(moments, counts)}
    return out


def published_errors(loaded: LoadedModel, data_cfg: DataConfig, images: int) -> dict:
    """The errors to compare with, in percent: a community checkpoint's published one and the paper's
    (Table 6) for its depth; for a run's checkpoint the paper's figure when the run is the paper's
    experiment. Only on CIFAR-10's whole test set: on other images those figures compare nothing."""
    from resnet_core.experiments.published import paper_reference

    if data_cfg.name != "cifar10" or images < 10_000:
        return {}
    if loaded.meta.get("community"):
        return {"published_test_error": loaded.meta.get("published_test_error"),
                "paper_test_error": loaded.meta.get("paper_test_error")}
    run_cfg = loaded.meta.get("run_config")
    ref = paper_reference(run_cfg) if run_cfg else None
    return {} if ref is None else {"paper_test_error": ref.error}


def reference_line(loaded: LoadedModel, out: dict) -> str | None:
    """``measured 8.31% test error on 10,000 CIFAR-10 test images; published 8.27% (...); paper 8.75% (...)``,
    or None when there is nothing published to set beside the measurement."""
    from resnet_core.nets.community import CATALOGUE
    from resnet_core.experiments.published import paper_reference

    measured = f"measured {100 * (1 - out['accuracy']):.2f}% test error on {out['images']:,} {out['dataset']} images"
    name = loaded.meta.get("community")
    if name:
        ckpt = CATALOGUE[name]
        if "published_test_error" not in out:
            return (f"{measured}; the published {ckpt.published.error:.2f}% (and the paper's "
                    f"{ckpt.paper.error:.2f}%) are for CIFAR-10's 10,000 test images")
        return f"{name}: {measured}; published {ckpt.published.text()}; paper {ckpt.paper.text()}"
    if "paper_test_error" not in out:  # set only for a run of the paper's experiment, on the whole test set
        return None
    return f"{measured}; paper {paper_reference(loaded.meta['run_config']).text()}"
