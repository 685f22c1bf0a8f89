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
from resnet_core.curves import ema
from resnet_core.presets import PRESETS, get_preset, longest_first, new_group_id, preset_configs, run_summary, verdict

# Smoothing of the figure's training-error curves (the summaries use curves.tail_mean, not this).
FIGURE_SMOOTHING = 0.9


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
    from resnet_core.runs import RunStore, execute_run
    from resnet_core.train import resolve_device

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

    if gpus:  # one process per GPU, all into this store (resnet_core/distributed.py)
        from resnet_core.distributed import run_on_gpus

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
        result["figures"] = write_figures(result, curves, out)
    return result


# ----------------------------------------------------------------------------------------------------
# Figures: plotly for the HTML (interactive), matplotlib for the PNG (kaleido is not a dependency).
# A figure whose library is missing is left out with a note: the runs and the verdict are already kept.
# ----------------------------------------------------------------------------------------------------

def _series(result: dict, curves: dict[str, list[dict]]) -> tuple[str, str, list[dict]]:
    """(x title, y title, lines): each line {name, x, y, dash, group} in percent of training error."""
    if result["preset"] == "depth-sweep":
        lines = []
        by_arch: dict[tuple[str, int], list[tuple[int, float]]] = {}
        for r in result["runs"]:
            if r["final_train_error"] is not None:
                by_arch.setdefault((r["arch"], r["seed"]), []).append((r["depth"], 100 * r["final_train_error"]))
        for (arch, seed), pts in sorted(by_arch.items()):
            pts.sort()
            lines.append({"name": f"{arch} (seed {seed})", "x": [d for d, _ in pts], "y": [e for _, e in pts],
                          "dash": arch == "plain", "group": arch})
        return "depth (layers)", "final training error (%)", lines
    lines = []
    seeds = len({r["seed"] for r in result["runs"]})
    for r in result["runs"]:
        steps = [m for m in curves.get(r["run_id"], []) if m.get("type") == "step" and m.get("train_acc") is not None]
        err = ema([100 * (1 - m["train_acc"]) for m in steps], FIGURE_SMOOTHING)
        name = r["label"] if seeds == 1 else f"{r['label']} (seed {r['seed']})"
        # Fig. 6 colours by depth (plain dashed, residual solid, as in the paper); the others by run.
        colour = f"depth {r['depth']}" if result["preset"] == "fig6" else r["label"]
        lines.append({"name": name, "x": [m["step"] for m in steps], "y": [float(v) for v in err],
                      "dash": r["arch"] == "plain", "group": colour})
    return "step", f"training error (%), EMA {FIGURE_SMOOTHING}", lines


def _title(result: dict) -> str:
    """Two lines: what was run, then the verdict (wrapped to the chart's width)."""
    import textwrap

    verdict_line = textwrap.shorten(result["verdict"]["line"], 150, placeholder=" ...")
    return f"{result['title']} · {result['scale']} scale\n" + "\n".join(textwrap.wrap(verdict_line, 100))


def write_figures(result: dict, curves: dict[str, list[dict]], out: str | Path) -> dict[str, str]:
    """The preset's chart as ``<preset>-<scale>.html`` and ``.png`` in ``out``; returns their paths.

    A format whose plotting library is not installed is left out, and ``skipped`` says which and how to
    get it (the runs are in the run store and the verdict in the result either way)."""
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result['preset']}-{result['scale']}"
    xt, yt, lines = _series(result, curves)
    paths: dict[str, str] = {}
    skipped = []
    for fmt, writer in (("html", _write_html), ("png", _write_png)):
        path = out / f"{stem}.{fmt}"
        try:
            writer(path, _title(result), xt, yt, lines)
        except ModuleNotFoundError as e:
            lib = (e.name or "a plotting library").split(".")[0]
            skipped.append(f"{fmt}: {lib} is not installed (pip install {lib}, or make run sets it up)")
            continue
        paths[fmt] = str(path)
    if skipped:
        paths["skipped"] = "; ".join(skipped)
    return paths


def _colours(lines: list[dict]) -> dict[str, str]:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
               "#7f7f7f", "#bcbd22"]
    groups = list(dict.fromkeys(line["group"] for line in lines))
    return {g: palette[i % len(palette)] for i, g in enumerate(groups)}


def _write_html(path: Path, title: str, xt: str, yt: str, lines: list[dict]) -> None:
    import plotly.graph_objects as go

    colours = _colours(lines)
    fig = go.Figure()
    for line in lines:
        fig.add_trace(go.Scatter(x=line["x"], y=line["y"], name=line["name"],
                                 mode="lines+markers" if len(line["x"]) < 12 else "lines",
                                 line={"color": colours[line["group"]], "dash": "dash" if line["dash"] else "solid"}))
    fig.update_layout(title=title.replace("\n", "<br>"), xaxis_title=xt, yaxis_title=yt, template="plotly_white",
                      yaxis={"range": [0, 100]})
    # Self-contained (plotly.js inside): the file opens offline, where the runs were trained.
    fig.write_html(path, include_plotlyjs=True, full_html=True)


def _write_png(path: Path, title: str, xt: str, yt: str, lines: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    colours = _colours(lines)
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    try:
        for line in lines:
            ax.plot(line["x"], line["y"], label=line["name"], color=colours[line["group"]],
                    linestyle="--" if line["dash"] else "-", marker="o" if len(line["x"]) < 12 else None)
        ax.set_xlabel(xt)
        ax.set_ylabel(yt)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


__all__ = ["PRESETS", "reproduce", "reproduce_configs", "write_figures"]
