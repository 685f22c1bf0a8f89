"""Plotly figures from run data: pure functions, no Streamlit, every axis titled with its unit.

Long runs are decimated before drawing (bin means for curves, bin-mean columns for heatmaps) so a
figure stays a few hundred points wide whatever the run length: the browser redraws them while runs train.

Redrawing is what a live page costs (bench/dashboard_overhead.py): margins are therefore fixed and
sized for our labels, with Plotly's axis ``automargin`` off, which otherwise measures every tick label
and may lay a chart out twice per redraw (about a fifth of a redraw's time in a profile of the page).
``uirevision`` keeps a user's zoom and legend clicks across those redraws.

Curves over training time take ``smoothing`` (TensorBoard's debiased EMA weight, 0 = raw) and
``x_axis`` (step, epoch or wall time). Smoothing runs on the full per-step series *before*
decimation: the EMA of the real values, whose bin means then differ from the full smoothed curve
by less than one bin of lag; smoothing the bin means instead would change what a weight means with
the run's length. The raw curve is drawn faint behind the smoothed one, in the same colour (in a
run longer than MAX_POINTS records it is bin means too, as the unsmoothed curve always was).
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from resnet_core.experiments.curves import ema

from resnet_core.training.series import RunSeries

MAX_POINTS = 400        # points per curve after decimation
MAX_HEATMAP_COLS = 160  # step columns of a heatmap after decimation
PALETTE = qualitative.Plotly
STAGE_DASH = ("solid", "dash", "dot", "dashdot")
LAYOUT = dict(margin=dict(l=70, r=20, t=40, b=50), height=330, legend=dict(orientation="h", y=-0.25),
              hovermode="closest", template="plotly_white")
HALF_WIDTH_PX, FULL_WIDTH_PX = 400, 800     # about how wide a chart is drawn, for the legend's rows
LEGEND_ROW_PX = 22      # one row of a horizontal legend at Plotly's 12 px font
AXIS_TITLE_PX = 50      # the bottom margin the x-axis ticks and title need (LAYOUT's)
HEATMAP_LEFT = 190      # room for "12: layer2.2.branch.conv2" at 9 px plus the axis title
RAW_OPACITY = 0.25      # the unsmoothed curve behind a smoothed one (TensorBoard draws it the same way)
# The x-axis choices of every curve over training time: the record field each reads and its title.
X_AXES = {"step": ("step", "training step (optimizer updates)"),
          "epoch": ("epoch", "epoch (passes over the training set)"),
          "time": ("t", "wall time since the run started (s)")}


# --- helpers ------------------------------------------------------------------------------------
def decimate(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Bin means of (x, y) when there are more than ``max_points`` points (NaNs ignored)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) <= max_points:
        return x, y
    edges = np.linspace(0, len(x), max_points + 1).astype(int)
    xs = np.array([x[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    with np.errstate(all="ignore"):
        ys = np.array([np.nanmean(y[a:b]) if np.isfinite(y[a:b]).any() else np.nan
                       for a, b in zip(edges[:-1], edges[1:])])
    return xs, ys


def decimate_columns(steps: np.ndarray, m: np.ndarray, max_cols: int = MAX_HEATMAP_COLS
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(steps, m) with m (n_steps, n) reduced to at most ``max_cols`` rows by bin means."""
    if len(steps) <= max_cols:
        return np.asarray(steps, dtype=float), m
    edges = np.linspace(0, len(steps), max_cols + 1).astype(int)
    xs = np.array([steps[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])
    with np.errstate(all="ignore"):
        ms = np.stack([np.nanmean(m[a:b], axis=0) for a, b in zip(edges[:-1], edges[1:])])
    return xs, ms


def x_title(x_axis: str) -> str:
    return X_AXES[x_axis][1]


def x_values(run: RunSeries, x_axis: str = "step") -> np.ndarray:
    """The run's per-step x coordinates on the chosen axis; steps when a run lacks the field
    (or has gaps in it), so an old or odd run still draws."""
    field_name = X_AXES[x_axis][0]
    if field_name == "step":
        return np.asarray(run.step, dtype=float)
    x = np.asarray(run.scalars.get(field_name, np.zeros(0)), dtype=float)
    if len(x) != len(run.step) or not np.isfinite(x).all():
        return np.asarray(run.step, dtype=float)
    return x


def x_at_steps(run: RunSeries, steps, x_axis: str = "step") -> np.ndarray:
    """x coordinates of given steps (evaluations, a divergence), interpolated from the step records."""
    steps = np.asarray(steps, dtype=float)
    if x_axis == "step" or not len(run.step):
        return steps
    return np.interp(steps, np.asarray(run.step, dtype=float), x_values(run, x_axis))


def smooth(y: np.ndarray, smoothing: float) -> np.ndarray:
    return np.asarray(y, dtype=float) if smoothing <= 0 else ema(y, smoothing)


def _add_step_curve(fig: go.Figure, x: np.ndarray, y: np.ndarray, smoothing: float, name: str, line: dict,
                    legendgroup: str, max_points: int = MAX_POINTS, **where) -> None:
    """One curve over training time: smoothed on the full series, then decimated (see the module
    note), with the raw curve faint behind it when smoothing is on."""
    if smoothing > 0:
        xr, yr = decimate(x, y, max_points)
        fig.add_trace(go.Scatter(x=xr, y=yr, mode="lines", name=f"{name} (raw)", line={**line, "width": 1},
                                 opacity=RAW_OPACITY, legendgroup=legendgroup, showlegend=False, hoverinfo="skip"),
                      **where)
    xs, ys = decimate(x, smooth(y, smoothing), max_points)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, line=line, legendgroup=legendgroup), **where)


def run_colors(runs: list[RunSeries]) -> dict[str, str]:
    return {r.run_id: PALETTE[i % len(PALETTE)] for i, r in enumerate(runs)}


def _base(fig: go.Figure, title: str, x: str, y: str, **extra) -> go.Figure:
    # The x title is in the revision: a zoom kept in steps would be meaningless on an epoch or time axis.
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=14)), uirevision=f"{title}|{x}", **{**LAYOUT, **extra})
    fig.update_xaxes(title_text=x, automargin=False)
    fig.update_yaxes(title_text=y, automargin=False)
    return fig


def _fit_legend(fig: go.Figure, chart_px: int) -> go.Figure:
    """Room for the legend below the x-axis title, sized from the entries: a preset's 4 to 10 runs
    would otherwise wrap their legend over the axis. (Test traces share their run's entry, through
    ``legendgroup``: one click hides a run.) Computed from the names, so the margins stay
    fixed between redraws (no automargin). ``chart_px``: about how wide the chart is drawn."""
    names = [t.name or "" for t in fig.data if t.showlegend is not False]
    if not names:
        return fig
    entry_px = 40 + 6 * max(len(n) for n in names)          # line sample + text at ~6 px a character
    rows = math.ceil(len(names) / max(1, (chart_px - 80) // entry_px))
    height = LAYOUT["height"] + LEGEND_ROW_PX * (rows - 1)
    margin = fig.layout.margin.to_plotly_json()
    bottom = AXIS_TITLE_PX + LEGEND_ROW_PX * rows
    plot_px = height - margin.get("t", 40) - bottom
    fig.update_layout(height=height, margin=dict(margin, b=bottom),
                      legend=dict(orientation="h", yanchor="top", y=-(AXIS_TITLE_PX - 5) / plot_px))
    return fig


def _mark_divergence(fig: go.Figure, run: RunSeries, color: str, x_axis: str = "step", **where) -> None:
    if run.diverged:
        x = float(x_at_steps(run, [run.diverged["step"]], x_axis)[0])
        fig.add_vline(x=x, line=dict(color=color, dash="dot", width=2),
                      annotation_text=f"{run.label} diverged at step {run.diverged['step']}",
                      annotation_position="top left", **where)


def _empty(title: str, x: str, y: str, note: str = "waiting for the first points") -> go.Figure:
    fig = _base(go.Figure(), title, x, y)
    fig.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font=dict(color="gray"))
    return fig


# --- loss and accuracy --------------------------------------------------------------------------
def loss_figure(runs: list[RunSeries], smoothing: float = 0.0, x_axis: str = "step",
                empty_note: str = "waiting for the first points") -> go.Figure:
    return _curves(runs, "train_loss", "test_loss", "Loss", "cross-entropy loss (nats)", 1.0, smoothing, x_axis,
                   empty_note)


def accuracy_figure(runs: list[RunSeries], smoothing: float = 0.0, x_axis: str = "step",
                    empty_note: str = "waiting for the first points") -> go.Figure:
    return _curves(runs, "train_acc", "test_acc", "Accuracy", "accuracy (%)", 100.0, smoothing, x_axis, empty_note)


def _curves(runs, train_key, test_key, title, y_title, scale, smoothing, x_axis, empty_note) -> go.Figure:
    fig = _base(go.Figure(), title, x_title(x_axis), y_title)
    colors = run_colors(runs)
    for r in runs:
        c = colors[r.run_id]
        if len(r):
            _add_step_curve(fig, x_values(r, x_axis), r.scalars[train_key] * scale, smoothing, f"{r.label} train",
                            dict(color=c, width=1.5), r.run_id)
        if len(r.eval_step):
            # Test points are evaluations of the whole model, already averaged over many images: never smoothed.
            test = r.test_loss if test_key == "test_loss" else r.test_acc
            fig.add_trace(go.Scatter(x=x_at_steps(r, r.eval_step, x_axis), y=test * scale, mode="lines+markers",
                                     name=f"{r.label} test", line=dict(color=c, dash="dash", width=2),
                                     marker=dict(size=7), legendgroup=r.run_id, showlegend=False))
        _mark_divergence(fig, r, c, x_axis)
    if not fig.data:
        return _empty(title, x_title(x_axis), y_title, empty_note)
    return _fit_legend(fig, HALF_WIDTH_PX)


# --- gradients -----------------------------------------------------------------------------------
def grad_norm_range(runs: list[RunSeries]) -> tuple[float, float] | None:
    """A shared log10 colour range for heatmaps drawn side by side, so colours compare across runs."""
    vals = [np.log10(np.clip(r.vectors["grad_norm"], 1e-12, None)) for r in runs
            if r.vectors.get("grad_norm") is not None and r.vectors["grad_norm"].size]
    if not vals:
        return None
    allv = np.concatenate([v[np.isfinite(v)].ravel() for v in vals])
    if not allv.size:
        return None
    lo, hi = np.percentile(allv, [1, 99.5])
    return float(lo), float(max(hi, lo + 1e-3))


def grad_norm_heatmap(run: RunSeries, zrange: tuple[float, float] | None = None, x_axis: str = "step") -> go.Figure:
    title = f"Gradient norm per layer: {run.label}"
    x_name, y_title = x_title(x_axis), "layer (input at top, output at bottom)"
    g = run.vectors.get("grad_norm")
    layers = run.layout.get("layers") or []
    if g is None or not g.size:
        return _empty(title, x_name, y_title)
    steps, m = decimate_columns(x_values(run, x_axis), g)
    z = np.log10(np.clip(m, 1e-12, None)).T                      # (layers, steps)
    names = layers if len(layers) == z.shape[0] else [f"layer {i}" for i in range(z.shape[0])]
    zmin, zmax = zrange or (float(np.nanmin(z)), float(np.nanmax(z)))
    ticks = list(range(math.floor(zmin), math.ceil(zmax) + 1))
    fig = go.Figure(go.Heatmap(
        x=steps, y=[f"{i}: {n}" for i, n in enumerate(names)], z=z, zmin=zmin, zmax=zmax, colorscale="Viridis",
        colorbar=dict(title=dict(text="‖∇W‖₂<br>(log)", side="right"), tickvals=ticks,
                      ticktext=[f"1e{t}" for t in ticks]),
        hovertemplate=f"{x_axis} %{{x:.4g}}<br>%{{y}}<br>log10 ‖∇W‖ = %{{z:.2f}}<extra></extra>"))
    fig = _base(fig, title, x_name, y_title, height=max(330, min(700, 14 * len(names) + 120)),
                margin=dict(LAYOUT["margin"], l=HEATMAP_LEFT))
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=9), title_standoff=4)
    return fig


def _latest_by_name(runs: list[RunSeries], key: str, names_key: str):
    """(run, its latest per-layer values of ``key``, their layer names) for each run that has them."""
    for r in runs:
        values = r.latest(key)
        if values is not None:
            yield r, values, r.layout.get(names_key) or [str(i) for i in range(len(values))]


def grad_profile_figure(runs: list[RunSeries]) -> go.Figure:
    title = "Latest gradient norm by layer"
    x_title, y_title = "layer index (0 = first conv, input side)", "gradient L2 norm ‖∂L/∂W‖₂ (log scale)"
    fig = _base(go.Figure(), title, x_title, y_title)
    colors = run_colors(runs)
    for r, g, names in _latest_by_name(runs, "grad_norm", "layers"):
        fig.add_trace(go.Scatter(x=np.arange(len(g)), y=np.clip(g, 1e-12, None), mode="lines+markers",
                                 name=r.label, line=dict(color=colors[r.run_id], dash="solid" if r.residual else "dash"),
                                 text=names, marker=dict(size=4),
                                 hovertemplate="%{text}<br>‖∇W‖ = %{y:.3g}<extra>" + r.label + "</extra>"))
    if not fig.data:
        return _empty(title, x_title, y_title)
    fig.update_yaxes(type="log")
    return _fit_legend(fig, FULL_WIDTH_PX)


# --- residual-branch responses -------------------------------------------------------------------
def branch_std_figure(runs: list[RunSeries]) -> go.Figure:
    """He et al. 2015, Fig. 7: std of each block's branch response, by layer and sorted by magnitude."""
    y_title = "std of branch response F(x)"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("by block (input → output)", "sorted by magnitude"))
    colors = run_colors(runs)
    for r, v, names in _latest_by_name(runs, "branch_std", "blocks"):
        style = dict(color=colors[r.run_id], dash="solid" if r.residual else "dash")
        fig.add_trace(go.Scatter(x=np.arange(1, len(v) + 1), y=v, mode="lines+markers", name=r.label, line=style,
                                 text=names, marker=dict(size=4), legendgroup=r.run_id,
                                 hovertemplate="block %{text}<br>std %{y:.3g}<extra>" + r.label + "</extra>"), 1, 1)
        fig.add_trace(go.Scatter(x=np.arange(1, len(v) + 1), y=np.sort(v)[::-1], mode="lines+markers", name=r.label,
                                 line=style, marker=dict(size=4), legendgroup=r.run_id, showlegend=False), 1, 2)
    fig = _base(fig, "Branch response std (Fig. 7 of the ResNet paper)", "", y_title)
    fig.update_xaxes(title_text="block index (1 = nearest the input)", row=1, col=1)
    fig.update_xaxes(title_text="rank (largest first)", row=1, col=2)
    if not fig.data:
        fig.add_annotation(text="waiting for the first points", showarrow=False, xref="paper", yref="paper",
                           x=0.5, y=0.5, font=dict(color="gray"))
    return fig


def branch_ratio_figure(run: RunSeries, smoothing: float = 0.0, x_axis: str = "step") -> go.Figure:
    title = f"‖F(x)‖ / ‖x‖ per block over time: {run.label}"
    y_title = "‖F(x)‖ / ‖x‖ (ratio, log scale)"
    m = run.vectors.get("branch_ratio")
    if m is None or not m.size:
        return _empty(title, x_title(x_axis), y_title)
    x = x_values(run, x_axis)
    names = run.layout.get("blocks") or [str(i) for i in range(m.shape[1])]
    colors = sample_colorscale("Viridis", list(np.linspace(0, 0.9, m.shape[1])))
    fig = _base(go.Figure(), title, x_title(x_axis), y_title)
    for j in range(m.shape[1]):
        name = names[j] if j < len(names) else str(j)
        _add_step_curve(fig, x, m[:, j], smoothing, name, dict(color=colors[j], width=1.3), name)
    fig.update_yaxes(type="log")
    fig.update_layout(legend=dict(orientation="v", y=1, x=1.02, font=dict(size=9)))
    return fig


# --- activations ---------------------------------------------------------------------------------
def _per_stage(runs, key, title, y_title, scale=1.0, smoothing=0.0, x_axis="step") -> go.Figure:
    fig = _base(go.Figure(), title, x_title(x_axis), y_title)
    colors = run_colors(runs)
    for r in runs:
        m = r.vectors.get(key)
        if m is None or not m.size:
            continue
        x = x_values(r, x_axis)
        stages = r.layout.get("stages") or [f"stage {i + 1}" for i in range(m.shape[1])]
        for s in range(m.shape[1]):
            _add_step_curve(fig, x, m[:, s] * scale, smoothing, f"{r.label} {stages[s]}",
                            dict(color=colors[r.run_id], dash=STAGE_DASH[s % 4]), r.run_id)
    if not fig.data:
        return _empty(title, x_title(x_axis), y_title)
    return _fit_legend(fig, HALF_WIDTH_PX)


def activation_figure(runs: list[RunSeries], key: str = "act_std", smoothing: float = 0.0,
                      x_axis: str = "step") -> go.Figure:
    what = {"act_std": "std", "act_mean": "mean"}[key]
    return _per_stage(runs, key, f"Activation {what} at each stage output",
                      f"activation {what} (input-normalised units)", 1.0, smoothing, x_axis)


def dead_relu_figure(runs: list[RunSeries], smoothing: float = 0.0, x_axis: str = "step") -> go.Figure:
    return _per_stage(runs, "dead_relu", "Dead ReLU channels per stage", "dead channels (% of stage)", 100.0,
                      smoothing, x_axis)


# --- feature maps --------------------------------------------------------------------------------
def mosaic(maps: np.ndarray, cols: int, normalise: bool = True) -> np.ndarray:
    """(C, H, W) -> one (rows*(H+1)-1, cols*(W+1)-1) image, channels left to right, NaN gaps between.
    With ``normalise`` every channel is scaled to 0..1 on its own (its pattern, not its magnitude)."""
    import torch
    from torchvision.utils import make_grid

    maps = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    c, h, w = maps.shape
    if c < cols:  # make_grid narrows a short row; the charts keep ``cols`` slots
        maps = torch.cat([maps, maps.new_full((cols - c, h, w), float("nan"))])
    grid = make_grid(maps[:, None], nrow=cols, padding=1, normalize=normalise, scale_each=True,
                     pad_value=float("nan"))[0]
    return (grid if len(maps) == 1 else grid[1:-1, 1:-1]).numpy()  # one map: make_grid adds no border


def _image_axes(fig: go.Figure, n: int) -> None:
    for i in range(1, n + 1):
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].update(autorange="reversed", scaleanchor=f"x{suffix}", showticklabels=False)
        fig.layout[f"xaxis{suffix}"].update(showticklabels=False)


def feature_stage_figure(maps: dict[str, np.ndarray], step: int, label: str = "") -> go.Figure:
    """The probe image's feature maps after the stem and each stage: one strip of channels per stage."""
    names = [n for n in ("stem", "layer1", "layer2", "layer3") if n in maps]
    fig = make_subplots(rows=len(names) or 1, cols=1, vertical_spacing=0.08,
                        subplot_titles=[f"{n}: {maps[n].shape[1]}×{maps[n].shape[2]} px, first {maps[n].shape[0]} channels"
                                        for n in names])
    for i, n in enumerate(names, 1):
        fig.add_trace(go.Heatmap(z=mosaic(maps[n], cols=maps[n].shape[0]), colorscale="Gray", showscale=False,
                                 hovertemplate=f"{n}<br>activation (scaled 0..1 per channel) %{{z:.2f}}<extra></extra>"),
                      i, 1)
    fig.update_layout(title=dict(text=f"Feature maps of the probe image at step {step} {label}", x=0, font=dict(size=14)),
                      height=110 * max(1, len(names)) + 80, margin=dict(l=10, r=10, t=60, b=10),
                      template="plotly_white")
    _image_axes(fig, len(names))
    return fig


def feature_block_figure(maps: dict[str, np.ndarray], block: str, step: int) -> go.Figure:
    """For one block: its input x, its branch F(x) and the block output, on one colour scale."""
    keys = [f"{block}/x", f"{block}/F", f"{block}/out"]
    titles = ["input x", "branch F(x)", "output (F(x) + x, or F(x) when plain)"]
    present = [k for k in keys if k in maps]
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.04)
    if present:
        # One symmetric scale for all three: a branch that only nudges x shows up faint.
        bound = max(float(np.nanmax(np.abs(maps[k].astype(np.float32)))) for k in present) or 1.0
        for j, k in enumerate(keys, 1):
            if k in maps:
                m = maps[k]
                fig.add_trace(go.Heatmap(z=mosaic(m, cols=4, normalise=False), zmin=-bound, zmax=bound,
                                         colorscale="RdBu_r", showscale=j == 3,
                                         colorbar=dict(title=dict(text="activation", side="right")),
                                         hovertemplate="%{z:.2f}<extra></extra>"), 1, j)
    fig.update_layout(title=dict(text=f"Block {block} at step {step}: x, F(x) and the sum (first channels)",
                                 x=0, font=dict(size=14)), height=300, margin=dict(l=10, r=10, t=70, b=10),
                      template="plotly_white")
    _image_axes(fig, 3)
    return fig


# --- the paper's Fig. 6 --------------------------------------------------------------------------
def fig6_figure(runs: list[RunSeries], smoothing: float = 0.0, x_axis: str = "step") -> go.Figure:
    """He et al. 2015, Fig. 6: training error against step, plain dashed, residual solid, colour by depth;
    test error as bold markers."""
    x_name, y_title = x_title(x_axis), "error (%)"
    fig = _base(go.Figure(), "Training error by depth: plain (dashed) vs residual (solid)", x_name, y_title)
    depths = sorted({r.depth for r in runs if r.depth})
    shades = dict(zip(depths, sample_colorscale("Plasma", list(np.linspace(0.05, 0.8, max(len(depths), 1))))))
    for r in sorted(runs, key=lambda r: (r.depth or 0, bool(r.residual))):
        if not len(r):
            continue
        c = shades.get(r.depth, "gray")
        dash = "solid" if r.residual else "dash"
        _add_step_curve(fig, x_values(r, x_axis), 100.0 * (1.0 - r.scalars["train_acc"]), smoothing,
                        f"{r.label} train", dict(color=c, dash=dash, width=1.5), r.run_id, max_points=200)
        if len(r.eval_step):
            fig.add_trace(go.Scatter(x=x_at_steps(r, r.eval_step, x_axis), y=100.0 * (1.0 - r.test_acc), mode="markers",
                                     name=f"{r.label} test", marker=dict(color=c, size=9, symbol="diamond"),
                                     legendgroup=r.run_id, showlegend=False))
        _mark_divergence(fig, r, c, x_axis)
    if not fig.data:
        return _empty("Training error by depth", x_name, y_title, "select plain and residual runs")
    return _fit_legend(fig, FULL_WIDTH_PX)


# --- depth sweep ---------------------------------------------------------------------------------
def depth_sweep_figure(summaries: list[dict]) -> go.Figure:
    """The degradation problem as one chart: final smoothed training error against depth, plain
    (dashed) and residual (solid). ``summaries`` are the core's ``run_summary`` dicts (``arch``,
    ``depth``, ``final_train_error`` as a fraction); with several seeds every run is a point and
    the line joins the means per depth."""
    x_name, y_title = "depth (weight layers)", "final training error (%, smoothed over the last 10% of steps)"
    title = "Final training error against depth: plain (dashed) vs residual (solid)"
    fig = _base(go.Figure(), title, x_name, y_title)
    for arch, color, dash, name in (("plain", PALETTE[1], "dash", "plain"),
                                    ("resnet", PALETTE[0], "solid", "residual")):
        points = [(int(s["depth"]), 100.0 * s["final_train_error"]) for s in summaries
                  if s.get("arch") == arch and s.get("depth") and s.get("final_train_error") is not None]
        if not points:
            continue
        depths = sorted({d for d, _ in points})
        means = [float(np.mean([e for d2, e in points if d2 == d])) for d in depths]
        fig.add_trace(go.Scatter(x=depths, y=means, mode="lines+markers", name=name, legendgroup=arch,
                                 line=dict(color=color, dash=dash, width=2), marker=dict(size=9),
                                 hovertemplate="depth %{x}<br>error %{y:.1f}%<extra>" + name + "</extra>"))
        if len(points) > len(depths):  # several seeds: show each run, not only the mean
            fig.add_trace(go.Scatter(x=[d for d, _ in points], y=[e for _, e in points], mode="markers",
                                     name=f"{name}, each run", legendgroup=arch, showlegend=False,
                                     marker=dict(color=color, size=5, opacity=0.5)))
    if not fig.data:
        return _empty(title, x_name, y_title, "no finished runs with a training error yet")
    fig.update_xaxes(tickmode="array", tickvals=sorted({int(s["depth"]) for s in summaries if s.get("depth")}))
    return fig
