"""A preset's chart as files: ``<preset>-<scale>.html`` (Plotly, self-contained) and ``.png`` (matplotlib).

A format whose library is missing is left out with a note: the runs and the verdict are already kept.
"""
from __future__ import annotations

from pathlib import Path

from resnet_core.experiments.curves import ema

# Smoothing of the figure's training-error curves (the summaries use curves.tail_mean, not this).
FIGURE_SMOOTHING = 0.9


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


__all__ = ["write_figures"]
