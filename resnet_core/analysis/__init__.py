"""Why residual connections work, measured: one module per analysis behind one small registry.

``ANALYSES`` maps a name to an ``Analysis``: one function ``fn(ctx, settings) -> dict`` of plain data,
its title, the caption the page shows, what model it needs and its default settings. ``run_analysis``
is the entry point the CLI (``python -m resnet_core analyze``) and the dashboard's worker both call;
``estimate_cost`` is what the page shows before Start.

    gradient_flow.py   gradient norms by block at initialisation, the shortcut/branch split, depth sweeps
    shattering.py      gradient correlation along a line of inputs (Balduzzi et al. 2017)
    paths.py           the unrolled ensemble: path lengths and the gradient they carry (Veit et al. 2016)
    lesion.py          deleting and reordering blocks, x_L = x_l + sum F (Veit et al. 2016)
    landscape.py       init -> trained interpolation (Goodfellow et al. 2015), filter-normalised 2-D
                       surfaces (Li et al. 2018)
    responses.py       the std of every BN output after a 3x3 conv of a trained net (He et al. 2015, Fig. 7)
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

import dataclasses

from resnet_core.config import ConfigError, DataConfig, ModelConfig
from resnet_core import history
from resnet_core.analysis.base import (Analysis, AnalysisContext, AnalysisError, Cancelled, ModelSource, PeakMemory, cache_path,
                   forward_rate, known_rate, merge_settings, read_cache, setting_used, write_cache)

ANALYSES: dict[str, Analysis] = {}


def register(analysis: Analysis) -> Analysis:
    ANALYSES[analysis.name] = analysis
    return analysis


# Each module registers its analysis on import. Every one is imported by name, so that a missing or
# broken module fails here, loudly, instead of quietly removing its analysis (and its page's tests).
from resnet_core.analysis import gradient_flow, landscape, lesion, paths, responses, shattering  # noqa: E402,F401

NEEDS = ("config", "trained", "either")


def get_analysis(name: str) -> Analysis:
    if name not in ANALYSES:
        raise AnalysisError(f"unknown analysis {name!r}: use one of {', '.join(ANALYSES)}")
    return ANALYSES[name]


def _user_error(e: Exception) -> AnalysisError:
    return AnalysisError(str(e).splitlines()[0] if str(e) else type(e).__name__)


def _context(analysis: Analysis, source: ModelSource, data, device, runs_dir, progress, cancel) -> AnalysisContext:
    from resnet_core.device import resolve_device

    if not isinstance(source, ModelSource):
        raise AnalysisError("the model source must be a ModelSource (a config, a run id or a checkpoint)")
    if analysis.needs == "trained" and source.config is not None:
        raise AnalysisError(f"{analysis.title} needs a trained model: choose a stored run or a checkpoint")
    if data is not None and not isinstance(data, DataConfig):
        raise AnalysisError("data must be a DataConfig")
    try:
        dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    except RuntimeError as e:
        raise _user_error(e) from None
    return AnalysisContext(source, data, dev, Path(runs_dir) if runs_dir is not None else None, progress, cancel)


# Analyses that take gradients hold a training step's activations; the others run without autograd.
BACKWARD = ("gradient-flow", "shattering", "paths")


def check_memory(analysis: Analysis, ctx: AnalysisContext, settings: dict) -> None:
    """Refuses, before any model is built, an analysis whose nets (the source's, and every depth of a
    sweep) would not fit the memory budget at the analysis's batch size."""
    from resnet_core import memory

    source = ctx.source
    if source.config is not None:
        cfg = source.config
    elif source.run_id is not None:
        try:
            cfg = ModelConfig.from_dict(ctx.run_info().config["model"])
        except (ConfigError, KeyError, TypeError):
            return  # reported, with its reason, where the analysis reads it
    else:
        cfg = ctx.trained().model_cfg  # the loader checked the file's architecture and its memory
        if cfg is None:
            return
    size = ctx.data_config.image_size if ctx.data_config is not None else 32
    cfgs = [cfg]
    for d in settings.get("depths") or []:
        try:
            cfgs.append(dataclasses.replace(cfg, depth=int(d)))
        except (ConfigError, TypeError, ValueError):
            continue  # an invalid depth is refused by the analysis's own check
    batch = settings.get("batch_size")
    batch = batch if isinstance(batch, int) and not isinstance(batch, bool) and batch > 0 else 32
    for c in cfgs:
        est = memory.estimate(c, size)
        needed = est.training_bytes(batch) if analysis.name in BACKWARD else est.inference_bytes(batch)
        try:
            memory.check(needed, f"the {analysis.title} analysis of {c.name} at batch {batch}", str(ctx.device),
                         "use a smaller batch, fewer or shallower depths, or a smaller model")
        except memory.MemoryBudgetError as e:
            raise AnalysisError(str(e)) from None


def run_analysis(name: str, source: ModelSource, *, data: DataConfig | None = None, settings: dict | None = None,
                 device="cpu", runs_dir=None, progress: Callable[[float, str], None] | None = None,
                 cancel: threading.Event | None = None, use_cache: bool = True) -> dict:
    """Runs one analysis and returns its plain-data result (JSON-serialisable). Raises ``AnalysisError``
    with a message for a person for any bad request (model, data, settings), ``Cancelled`` when
    ``cancel`` is set. A run-backed result is cached in the run's directory and returned from there."""
    from resnet_core.nets.checkpoints import CheckpointError
    from resnet_core.data import DataError

    analysis = get_analysis(name)
    merged = merge_settings(analysis, settings)
    ctx = _context(analysis, source, data, device, runs_dir, progress, cancel)
    try:
        check_memory(analysis, ctx, merged)
        path = cache_path(ctx, name, merged)
        if use_cache:
            cached = read_cache(path)
            if cached is not None:
                cached["cached"] = True
                if progress is not None:
                    progress(1.0, "loaded from the run's cache")
                return cached
        ctx.report(0.0, "starting")
        t0 = time.perf_counter()
        with PeakMemory(ctx.device) as mem:
            result = analysis.fn(ctx, merged)
        seconds = time.perf_counter() - t0
    except DataError as e:
        hint = (" Or analyse it on other images: the shapes set (--dataset synthetic) or a folder."
                if data is None and source.checkpoint is not None else "")
        raise AnalysisError(f"{_user_error(e)}{hint}") from None
    except (ConfigError, CheckpointError, FileNotFoundError) as e:
        raise _user_error(e) from None
    result = {"analysis": name, "settings": merged, "setting_used": setting_used(analysis, merged),
              "paper_settings": dict(analysis.paper or {}), "source": source.describe(),
              "data": ctx.resolved_data_config().to_dict(), "device": str(ctx.device),
              **result, "seconds": round(seconds, 4)}
    result.setdefault("peak_memory_mb", round(mem.mb, 1))
    result["cached"] = False
    write_cache(path, result)
    _learn(analysis, ctx, merged, seconds)
    if progress is not None:
        progress(1.0, "done")
    return result


def _rate_size(ctx: AnalysisContext) -> tuple[float, int, str]:
    """(width, input size, the model's key in the estimates' history) of the analysed net."""
    from resnet_core.nets.checkpoints import CheckpointError
    from resnet_core.data import DataError

    try:
        cfg, size = ctx.model_config(), ctx.resolved_data_config().image_size
    except (ConfigError, CheckpointError, DataError, FileNotFoundError, AnalysisError):
        return 1.0, 32, "unknown"
    return cfg.width, size, f"{cfg.name} {size}px {'trained' if ctx.trained_available else 'init'}"


def _learn(analysis: Analysis, ctx: AnalysisContext, settings: dict, seconds: float) -> None:
    """Keeps how long the analysis took against its cost model, when this process has the rate already
    (the page and ``analyze --estimate`` measure it; a bare ``analyze`` is not slowed to learn)."""
    if analysis.cost is None:
        return
    width, size, model = _rate_size(ctx)
    rate = known_rate(ctx.device, width, size)
    if rate is None:
        return
    try:
        macs, _ = analysis.cost(ctx, settings)
        history.record("analysis", analysis.name, model, ctx.device.type, macs / rate, seconds)
    except Exception:  # noqa: BLE001 - learning must never fail an analysis that succeeded
        return


def estimate_cost(name: str, source: ModelSource, settings: dict | None = None,
                  data: DataConfig | None = None, device="cpu", runs_dir=None) -> dict:
    """{"seconds": float, "detail": "441 grid points x 500 images x 1 forward", "basis": "..."}: the
    analysis's forward-pass multiply-adds over this device's measured ResNet-20 forward rate at the analysed
    net's width and input size (a backward counts as two forwards), times what this analysis took here
    against that count in its last runs (``resnet_core/history.py``)."""
    from resnet_core.nets.checkpoints import CheckpointError
    from resnet_core.data import DataError

    analysis = get_analysis(name)
    merged = merge_settings(analysis, settings)
    ctx = _context(analysis, source, data, device, runs_dir, None, None)
    if analysis.cost is None:
        return {"seconds": 0.0, "detail": "a moment", "basis": "no cost model"}
    try:
        macs, detail = analysis.cost(ctx, merged)
    except (ConfigError, CheckpointError, DataError, FileNotFoundError) as e:
        raise _user_error(e) from None
    width, size, model = _rate_size(ctx)
    rate = forward_rate(ctx.device, width, size)
    seconds, learned = history.predict("analysis", name, model, ctx.device.type, macs / rate)
    basis = f"{rate / 1e9:.0f} GMAC/s measured here ({ctx.device.type}), {learned}"
    # Three significant digits, not two decimals: a tiny net's estimate is milliseconds, and a
    # rounded 0.0 would read as "free" and hide that a sweep costs more than one net.
    return {"seconds": float(f"{seconds:.3g}"), "detail": detail, "basis": basis}


__all__ = ["ANALYSES", "Analysis", "AnalysisContext", "AnalysisError", "Cancelled", "ModelSource", "NEEDS",
           "estimate_cost", "get_analysis", "register", "run_analysis"]
