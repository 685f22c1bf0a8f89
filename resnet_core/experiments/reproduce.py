"""Running a preset end to end: its runs into the run store (one group), their summaries, the
verdict, and the figure as PNG and HTML. The CLI's ``reproduce`` is a thin front end over
``reproduce()``; the dashboard trains the same ``presets.preset_configs`` in its worker and reads the
same ``presets.run_summary`` / ``presets.verdict``.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

from resnet_core.config import ConfigError, DataConfig, RunConfig
from resnet_core.experiments.presets import PRESETS, get_preset, new_group_id, preset_configs, verdict
from resnet_core.experiments.costmodel import longest_first
from resnet_core.experiments.verdicts import run_summary


def reproduce_configs(key: str, scale: str, *, dataset: DataConfig | None = None, seeds: int = 1,
                      device: str = "auto", steps: int | None = None, group: str = "",
                      first_seed: int = 0) -> list[RunConfig]:
    """Every run of preset ``key`` at ``scale`` for ``seeds`` seeds from ``first_seed``, seed by seed,
    all in ``group``."""
    if seeds < 1:
        raise ConfigError(f"seeds must be at least 1; got {seeds}")
    cfgs = []
    for seed in range(first_seed, first_seed + seeds):
        for c in preset_configs(key, scale, dataset=dataset, seed=seed, device=device, group=group):
            if steps is not None:
                # Only the length changes; a shorter run keeps the schedule's shape (drops at 50%/75%).
                c = dataclasses.replace(c, train=dataclasses.replace(
                    c.train, steps=steps, warmup_steps=min(c.train.warmup_steps, steps // 4)))
            cfgs.append(c)
    return cfgs


def reproduce(key: str, scale: str, *, dataset: DataConfig | None = None, seeds: int = 1, device: str = "auto",
              runs_dir: str | Path | None = None, out: str | Path | None = None, steps: int | None = None,
              parallel: int = 1, first_seed: int = 0,
              progress: Callable[[RunConfig, int, int], Callable[[dict], None] | None] | None = None,
              stop: threading.Event | None = None, gpus: list[str] | None = None) -> dict:
    """Train preset ``key``'s runs into the run store, ``parallel`` at a time, and judge them.

    ``progress(cfg, index, total)`` may return an event subscriber per run (the CLI's tqdm bar).
    Returns the JSON-ready result: preset, scale, group, seconds, runs (summaries with run_id and
    status, in the preset's order), verdict, figures (paths written into ``out``).
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from resnet_core.data import load_dataset
    from resnet_core.training.runs import RunStore, execute_run
    from resnet_core.device import resolve_device

    if not 1 <= parallel <= 16:
        raise ConfigError(f"parallel must be from 1 to 16; got {parallel}")
    preset = get_preset(key)
    group = new_group_id(key, scale)
    cfgs = reproduce_configs(key, scale, dataset=dataset, seeds=seeds, device=device, steps=steps, group=group,
                             first_seed=first_seed)
    t0 = time.perf_counter()
    ds = load_dataset(cfgs[0].data)  # every run of a preset trains on the same data config
    cfgs = [dataclasses.replace(c, model=dataclasses.replace(c.model, num_classes=len(ds.classes))) for c in cfgs]
    store = RunStore(runs_dir)

    def one(i: int) -> dict | None:
        if stop is not None and stop.is_set():
            return None
        writer = store.create(cfgs[i])
        subscriber = progress(cfgs[i], i, len(cfgs)) if progress else None
        execute_run(writer, stop=stop, on_event=subscriber, dataset=ds)
        summary = run_summary(cfgs[i], store.read_metrics(writer.run_id))
        info = store.get(writer.run_id)
        return {**summary, "run_id": writer.run_id, "status": info.status, "seconds": info.summary.get("seconds")}

    if gpus:  # one process per GPU, all into this store (resnet_core/training/distributed.py)
        from resnet_core.training.distributed import run_on_gpus

        ends = run_on_gpus(cfgs, gpus, store.root)
        runs = [{**run_summary(c, store.read_metrics(e["run_id"]) if e.get("run_id") else []),
                 "run_id": e.get("run_id"), "status": e["status"], "seconds": e.get("seconds")}
                for c, e in zip(cfgs, ends)]
        parallel = len(gpus)
    else:
        threads = torch.get_num_threads()
        if parallel > 1 and resolve_device(device).type == "cpu":
            # Small nets use two cores poorly within one step; two runs with a core each use them fully.
            # OpenMP teams are per calling thread, so each run would otherwise start its own full team.
            torch.set_num_threads(max(1, threads // parallel))
        try:
            order = longest_first(cfgs, resolve_device(device).type) if parallel > 1 else list(range(len(cfgs)))
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="reproduce") as pool:
                done = dict(zip(order, pool.map(one, order)))
            runs = [done[i] for i in range(len(cfgs)) if done[i] is not None]  # back in the preset's order
        finally:
            torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    result = {"preset": key, "title": preset.title, "scale": scale, "group": group, "seconds": round(seconds, 2),
              "parallel": parallel, "runs": runs, "verdict": verdict(key, runs)}
    if out is not None:
        curves = {r["run_id"]: store.read_metrics(r["run_id"]) for r in runs}
        from resnet_core.figures.preset_export import write_figures

        result["figures"] = write_figures(result, curves, out)
    return result


__all__ = ["PRESETS", "reproduce", "reproduce_configs"]
