"""Plotly figures for the Why it works page: pure functions of plain data (lists, dicts), no Streamlit.

Each builder takes the numbers it draws, labelled by model (``{"plain-56": values, ...}``), so a test can
check a figure holds exactly the data given, and ``figures_for`` maps an analysis result of
``resnet_core.analysis`` onto them. Plain nets are drawn dashed and residual nets solid, as on the
other pages; a colour stays with its label across a section's charts.
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

PALETTE = qualitative.Plotly
LAYOUT = dict(margin=dict(l=70, r=20, t=50, b=50), height=360, legend=dict(orientation="h", y=-0.22),
              hovermode="closest", template="plotly_white")
LANDSCAPE_SCALE = "Viridis"


def _base(fig: go.Figure, title: str, x: str, y: str, **extra) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=14)), **{**LAYOUT, **extra})
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y)
    return fig


def _dash(label: str) -> str:
    return "dash" if "plain" in label.lower() else "solid"


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _twin_key(label: str) -> str:
    """What a plain net and its residual twin share: "plain-56" and "resnet-56" both give "-56"."""
    return re.sub(r"\b(preact-)?(plain|resnet|residual)\b", "", label.lower()).strip()


def _colors(labels) -> dict[str, str]:
    """One colour per twin pair (a depth, a run's architecture), so plain (dashed) and residual (solid)
    nets of one depth share it, as in the Fig. 6 view of the Compare page."""
    keys: dict[str, str] = {}
    for label in labels:
        keys.setdefault(_twin_key(label), _color(len(keys)))
    return {label: keys[_twin_key(label)] for label in labels}


def _floats(values: Sequence) -> list[float]:
    """Floats with None (a value the core could not compute) as NaN, so Plotly leaves a gap."""
    return [float("nan") if v is None else float(v) for v in values]


def _positive(values: Sequence) -> list[float]:
    """For log axes: zeros and negatives become gaps instead of breaking the axis range."""
    return [v if math.isfinite(v) and v > 0 else float("nan") for v in _floats(values)]


# --- 1. gradient flow ----------------------------------------------------------------------------

def block_profile_figure(series: dict[str, Sequence[float]], title: str, y_title: str, *, log_y: bool = True,
                         x_title: str = "block index (0: next to the input)",
                         names: dict[str, Sequence[str]] | None = None) -> go.Figure:
    """One quantity per block (or per layer) against its index, one line per model: depths overlaid."""
    fig = go.Figure()
    colors = _colors(series)
    for label, values in series.items():
        ys = _positive(values) if log_y else _floats(values)
        hover = list(names[label]) if names and label in names else None
        fig.add_scatter(x=list(range(len(ys))), y=ys, mode="lines+markers" if len(ys) <= 60 else "lines",
                        name=label, line=dict(color=colors[label], dash=_dash(label)), marker=dict(size=4),
                        text=hover, hovertemplate="%{text}<br>%{y:.3g}<extra>" + label + "</extra>" if hover else None)
    return _base(fig, title, x_title, y_title, yaxis_type="log" if log_y else "linear")


def ratio_vs_depth_figure(sweeps: dict[str, tuple[Sequence[int], Sequence[float]]]) -> go.Figure:
    """The gradient ratio ‖∂L/∂x_0‖ / ‖∂L/∂x_L‖ against depth, log-log, one line per family (plain, residual)."""
    fig = go.Figure()
    for i, (label, (depths, ratios)) in enumerate(sweeps.items()):
        fig.add_scatter(x=[float(d) for d in depths], y=_positive(ratios), mode="lines+markers", name=label,
                        line=dict(color=_color(i), dash=_dash(label)), marker=dict(size=7))
    fig.add_hline(y=1.0, line=dict(color="gray", dash="dot", width=1))
    return _base(fig, "Gradient at the input over gradient at the output, by depth",
                 "depth (layers)", "‖∂L/∂x₀‖ / ‖∂L/∂x_L‖", xaxis_type="log", yaxis_type="log")


def branch_share_figure(series: dict[str, Sequence[float]]) -> go.Figure:
    """Per block, the branch's energy share of the input-gradient g = Sᵀu + J_Fᵀu: its projection on g,
    ⟨J_Fᵀu, g⟩ / ‖g‖² (the shortcut's share is the rest; the two add to 1). It can leave [0, 1] where the
    parts point against each other, so the axis spans the data."""
    fig = block_profile_figure(series, "Branch's share of the gradient's energy, by block (shortcut: the rest)",
                               "⟨J_Fᵀu, g⟩ / ‖g‖²", log_y=False)
    values = [v for vs in series.values() for v in _floats(vs) if math.isfinite(v)]
    lo, hi = min(values + [0.0]), max(values + [1.0])
    fig.update_yaxes(range=[min(0.0, lo) - 0.02 * (lo < 0), max(1.02, hi + 0.02)])
    fig.add_hline(y=0.5, line=dict(color="gray", dash="dot", width=1))
    return fig


# --- 2. shattered gradients ----------------------------------------------------------------------

def line_gradient_figure(series: dict[str, Sequence[float]]) -> go.Figure:
    """The input gradient (one coordinate, or its projection) along the line of inputs between two images,
    each model's curve scaled to unit std so that their shapes, not their sizes, compare."""
    fig = go.Figure()
    colors = _colors(series)
    for label, values in series.items():
        ys = np.asarray(_floats(values))
        std = np.nanstd(ys)
        ys = (ys - np.nanmean(ys)) / std if std > 0 else ys
        t = np.linspace(0.0, 1.0, len(ys)) if len(ys) > 1 else np.zeros(len(ys))
        fig.add_scatter(x=t.tolist(), y=ys.tolist(), mode="lines", name=label,
                        line=dict(color=colors[label], dash=_dash(label), width=1.5))
    return _base(fig, "Gradient along a line between two images (standardised)",
                 "position on the line (0: first image, 1: second)", "gradient (standardised)")


def autocorrelation_figure(series: dict[str, tuple[Sequence[float], Sequence[float]]],
                           title: str = "Autocorrelation of each pixel's gradient along the line (mean over pixels)"
                           ) -> go.Figure:
    """Autocorrelation of the gradient along the line against lag: white noise drops to 0 at lag 1."""
    fig = go.Figure()
    colors = _colors(series)
    for label, (lags, corr) in series.items():
        fig.add_scatter(x=_floats(lags), y=_floats(corr), mode="lines+markers", name=label,
                        line=dict(color=colors[label], dash=_dash(label)), marker=dict(size=4))
    fig.add_hline(y=0.0, line=dict(color="gray", dash="dot", width=1))
    fig = _base(fig, title, "lag (inputs apart)", "correlation")
    fig.update_yaxes(range=[-1.02, 1.02])
    return fig


def power_spectrum_figure(series: dict[str, tuple[Sequence[float], Sequence[float], float | None]]) -> go.Figure:
    """Mean power of the pixels' gradient series along the line by frequency, log-log, each with its fitted
    slope in the legend: flat (0) for white noise, falling as 1/f² (-2) for brown noise."""
    fig = go.Figure()
    colors = _colors(series)
    for label, (freq, power, slope) in series.items():
        name = f"{label} (slope {slope:.2f})" if slope is not None and math.isfinite(slope) else label
        fig.add_scatter(x=_positive(freq), y=_positive(power), mode="lines", name=name,
                        line=dict(color=colors[label], dash=_dash(label)))
    fig = _base(fig, "Power spectrum of the gradient along the line", "frequency (cycles per input step)",
                "share of the power")
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


# --- 3. paths -------------------------------------------------------------------------------------

def paths_figure(distribution: Sequence[float], gradient_by_length: Sequence[float] | None = None,
                 lengths: Sequence[int] | None = None, paths_range: Sequence[int] | None = None,
                 gradient_range: Sequence[int] | None = None,
                 energy_share: Sequence[float] | None = None, full_norm: float | None = None) -> go.Figure:
    """Veit et al.'s Fig. 6: how many paths have each length, how much gradient one path of that length
    carries, and their product: the total gradient each length delivers. ``lengths`` are the lengths
    ``gradient_by_length`` was measured at (default 0..n); the ranges are shaded: where 95% of the paths
    are, and where 90% of the gradient comes from."""
    dist = _floats(distribution)
    all_lengths = list(range(len(dist)))
    measured = gradient_by_length is not None
    third = "Share of ‖g‖² by length" if energy_share is not None else "Total gradient by length"
    titles = ["Share of paths by length"] + (["Gradient per path by length", third] if measured else [])
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.09)
    fig.add_bar(x=all_lengths, y=dist, name="share of paths", marker_color=_color(0), row=1, col=1)
    fig.update_yaxes(title_text="share of the 2ⁿ paths", row=1, col=1)
    if paths_range:
        fig.add_vrect(x0=paths_range[0] - 0.5, x1=paths_range[1] + 0.5, fillcolor=_color(0), opacity=0.08,
                      line_width=0, row=1, col=1)
    if measured:
        grad = _floats(gradient_by_length)
        ks = list(lengths) if lengths is not None else all_lengths[:len(grad)]
        product = [dist[k] * g for k, g in zip(ks, grad)]
        total = sum(v for v in product if math.isfinite(v))
        product = [v / total for v in product] if total > 0 else product  # a share of the whole gradient
        if energy_share is not None:
            # C(n,k) E‖g_k‖² / ‖g‖²: parts of ‖g‖² that add to 1 only where path gradients are orthogonal
            product = _floats(energy_share)
        fig.add_scatter(x=ks, y=_positive(grad), mode="lines+markers", name="gradient per path",
                        line=dict(color=_color(1)), marker=dict(size=4), row=1, col=2)
        fig.update_yaxes(type="log", title_text="gradient norm (log)", row=1, col=2)
        fig.add_bar(x=ks, y=product, name="total gradient", marker_color=_color(2), row=1, col=3)
        fig.update_yaxes(title_text=("C(n,k)·E‖g_k‖² / ‖g‖²" + (f" (‖g‖ = {full_norm:.3g})" if full_norm else "")
                                     if energy_share is not None else "share of the total gradient"), row=1, col=3)
        if gradient_range:
            fig.add_vrect(x0=gradient_range[0] - 0.5, x1=gradient_range[1] + 0.5, fillcolor=_color(2),
                          opacity=0.1, line_width=0, row=1, col=3)
    fig.update_xaxes(title_text="path length (branches passed)")
    fig.update_layout(**{**LAYOUT, "height": 400, "margin": dict(l=70, r=20, t=85, b=50)}, showlegend=False,
                      title=dict(text=f"The unrolled ensemble of {len(dist) - 1} blocks", x=0, font=dict(size=14)))
    return fig


# --- Fig. 7: layer responses --------------------------------------------------------------------

def response_std_figure(series: dict[str, tuple[Sequence[str], Sequence[float]]]) -> go.Figure:
    """He et al. 2015, Fig. 7: the std of every BN output after a 3x3 conv, by layer in network order (left)
    and sorted by magnitude (right), one line per net."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["By layer (network order)", "Sorted by magnitude"],
                        horizontal_spacing=0.08)
    colors = _colors(series)
    for label, (names, stds) in series.items():
        ys = _floats(stds)
        line = dict(color=colors[label], dash=_dash(label))
        fig.add_scatter(x=list(range(1, len(ys) + 1)), y=ys, mode="lines+markers", name=label, line=line,
                        marker=dict(size=4), text=list(names), hovertemplate="%{text}<br>%{y:.3g}", row=1, col=1)
        fig.add_scatter(x=list(range(1, len(ys) + 1)), y=sorted(ys, reverse=True), mode="lines", name=label,
                        line=line, showlegend=False, row=1, col=2)
    fig.update_xaxes(title_text="layer index")
    fig.update_yaxes(title_text="std of the BN output")
    fig.update_layout(**{**LAYOUT, "height": 400},
                      title=dict(text="Layer responses (Fig. 7 of He et al. 2015)", x=0, font=dict(size=14)))
    return fig


# --- 4. lesions -----------------------------------------------------------------------------------

def lesion_single_figure(series: dict[str, tuple[Sequence[str], Sequence[bool], Sequence[float | None]]],
                         base_errors: dict[str, float]) -> go.Figure:
    """Test error after deleting one block at a time; downsampling blocks are marked with a triangle and
    a block that cannot be deleted (its shape changes and its shortcut cannot stand alone) has no point."""
    fig = go.Figure()
    colors = _colors(series)
    for label, (blocks, downsampling, errors) in series.items():
        color = colors[label]
        ys = [100 * e for e in _floats(errors)]
        symbols = ["triangle-up" if d else "circle" for d in downsampling]
        fig.add_scatter(x=list(blocks), y=ys, mode="lines+markers", name=label,
                        line=dict(color=color, dash=_dash(label)),
                        marker=dict(symbol=symbols, size=[11 if d else 7 for d in downsampling]))
        if label in base_errors:
            fig.add_hline(y=100 * base_errors[label], line=dict(color=color, dash="dot", width=1),
                          annotation_text=f"{label}: nothing deleted", annotation_position="top left")
    fig = _base(fig, "Test error after deleting one block (▲: downsampling block)", "deleted block",
                "test error (%)")
    fig.update_yaxes(range=[0, 100])
    return fig


def lesion_by_count_figure(series: dict[str, tuple[Sequence[int], Sequence[float]]]) -> go.Figure:
    fig = go.Figure()
    colors = _colors(series)
    for label, (ks, errors) in series.items():
        fig.add_scatter(x=[int(k) for k in ks], y=[100 * e for e in _floats(errors)], mode="lines+markers",
                        name=label, line=dict(color=colors[label], dash=_dash(label)))
    fig = _base(fig, "Mean test error after deleting k random blocks", "blocks deleted (k)", "test error (%)")
    fig.update_yaxes(range=[0, 100])
    return fig


def reorder_figure(series: dict[str, tuple[Sequence[float], Sequence[float]]]) -> go.Figure:
    """Error against Kendall's τ between the original and a shuffled block order (1: unchanged)."""
    fig = go.Figure()
    colors = _colors(series)
    for label, (taus, errors) in series.items():
        fig.add_scatter(x=_floats(taus), y=[100 * e for e in _floats(errors)], mode="markers", name=label,
                        marker=dict(color=colors[label], size=7, symbol="circle-open" if _dash(label) == "dash"
                                    else "circle"))
    fig = _base(fig, "Test error after swapping neighbouring blocks", "Kendall's τ to the original order",
                "test error (%)")
    fig.update_xaxes(autorange="reversed")
    fig.update_yaxes(range=[0, 100])
    return fig


def decomposition_figure(names: Sequence[str], norms: Sequence[float], input_norm: float | None = None,
                         output_norm: float | None = None, title: str = "") -> go.Figure:
    """x_L = x_l + Σ c_i for one stage: the norm of the stage's input x_l and of each block's contribution
    c_i stacked, beside the norm of the stage's output x_L (norms do not add up like the tensors: the
    stack is taller than x_L wherever contributions point different ways)."""
    fig = go.Figure()
    parts = ([("input x_l", input_norm)] if input_norm is not None else []) + list(zip(names, _floats(norms)))
    for i, (name, value) in enumerate(parts):
        fig.add_bar(x=["x_l and each block's contribution"], y=[value], name=name, marker_color=_color(i))
    if output_norm is not None:
        fig.add_bar(x=["output x_L"], y=[output_norm], name="output x_L", marker_color="#444")
    return _base(fig, title or "A stage unrolled: its input plus what each block adds", "", "L2 norm",
                 barmode="stack")


def decomposition_maps_figure(names: Sequence[str], input_map, contribution_maps, output_map) -> go.Figure:
    """The same decomposition as pictures: channel means of x_l, of every contribution and of x_L, on one
    diverging colour scale centred on zero; the panels before the last add up to it."""
    panels = [("x_l", input_map)] + list(zip(names, contribution_maps)) + [("= x_L", output_map)]
    arrays = [np.asarray(m, dtype=float) for _, m in panels]
    bound = max(float(np.nanmax(np.abs(a))) for a in arrays) or 1.0
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[n for n, _ in panels], horizontal_spacing=0.01)
    for i, a in enumerate(arrays):
        fig.add_heatmap(z=a.tolist(), zmin=-bound, zmax=bound, colorscale="RdBu_r", showscale=i == len(arrays) - 1,
                        colorbar=dict(title="mean over channels"), row=1, col=i + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed", scaleanchor=None)
    fig.update_layout(**{**LAYOUT, "height": 230, "margin": dict(l=20, r=20, t=60, b=10)},
                      title=dict(text="Feature maps: the input, each block's contribution, and their sum", x=0,
                                 font=dict(size=14)))
    fig.update_annotations(font_size=10)
    return fig


# --- 5. loss landscapes ---------------------------------------------------------------------------

def interpolation_figure(series: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]]
                         ) -> go.Figure:
    """Goodfellow et al. 2015: loss (solid, left axis) and accuracy (dotted, right) along
    θ(α) = (1-α) θ_init + α θ_trained; α = 0 is the initialisation, 1 the trained net."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    colors = _colors(series)
    for label, (alphas, loss, accuracy) in series.items():
        fig.add_scatter(x=_floats(alphas), y=_floats(loss), mode="lines", name=f"{label} loss",
                        line=dict(color=colors[label]), secondary_y=False)
        if accuracy is not None:
            fig.add_scatter(x=_floats(alphas), y=[100 * a for a in _floats(accuracy)], mode="lines",
                            name=f"{label} accuracy", line=dict(color=colors[label], dash="dot"), secondary_y=True)
    for a in (0.0, 1.0):
        fig.add_vline(x=a, line=dict(color="gray", dash="dot", width=1))
    fig = _base(fig, "Loss along the straight line from the initial to the trained weights",
                "α (0: initial weights, 1: trained)", "loss")
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 100], dtick=20, showgrid=False, secondary_y=True)
    return fig


def _log_loss(loss) -> np.ndarray:
    """log10 of the loss: away from the minimum a landscape's loss grows by orders of magnitude, and on a
    linear scale those few points would take the whole colour range (Li et al. draw it clipped or in log)."""
    a = np.asarray(loss, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, np.log10(np.where(a > 0, a, 1.0)), np.nan)


def _shared_range(surfaces: dict[str, tuple[Any, Any, Any]]) -> tuple[float, float]:
    values = np.concatenate([np.asarray(loss, dtype=float).ravel() for _, _, loss in surfaces.values()])
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0, 1.0
    return float(values.min()), float(values.max())


# Li et al. 2018: raw-loss contours at 0.1, 0.6, ..., 9.6 (their plot_2D.py: vmin 0.1, vmax 10, vlevel 0.5)
PAPER_LEVELS = dict(start=0.1, end=9.6, size=0.5)
SCALES = ("paper", "log10")


def _clipped_log(loss) -> np.ndarray:
    """Li et al.'s surface height ln(min(loss, 10) + 0.1)."""
    a = np.asarray(loss, dtype=float)
    return np.log(np.minimum(np.where(np.isfinite(a), a, 10.0), 10.0) + 0.1)


def landscape_contour_figure(surfaces: dict[str, tuple[Sequence[float], Sequence[float], Any]],
                             scale: str = "paper") -> go.Figure:
    """Li et al. 2018: the loss around the trained weights along two filter-normalised directions, one
    panel per model, all on ONE colour scale, so a plain net and its residual twin compare by colour.
    ``scale="paper"``: raw-loss contours at the paper's levels 0.1 to 9.6 (step 0.5); ``"log10"``: log₁₀
    loss contours on the range of the data."""
    if scale == "log10":
        surfaces = {k: (xs, ys, _log_loss(loss)) for k, (xs, ys, loss) in surfaces.items()}
        zmin, zmax = _shared_range(surfaces)
        contours, bar = dict(showlabels=True, labelfont=dict(size=9, color="white")), "log₁₀ loss"
    else:
        surfaces = {k: (xs, ys, np.asarray(loss, dtype=float)) for k, (xs, ys, loss) in surfaces.items()}
        zmin, zmax = PAPER_LEVELS["start"], 10.0
        contours, bar = dict(**PAPER_LEVELS, showlabels=True, labelfont=dict(size=9, color="white")), "loss"
    fig = make_subplots(rows=1, cols=max(len(surfaces), 1), subplot_titles=list(surfaces), horizontal_spacing=0.08)
    for i, (label, (xs, ys, loss)) in enumerate(surfaces.items()):
        fig.add_contour(x=_floats(xs), y=_floats(ys), z=np.asarray(loss, dtype=float).tolist(), zmin=zmin, zmax=zmax,
                        colorscale=LANDSCAPE_SCALE, showscale=i == 0, coloraxis=None, name=label,
                        autocontour=scale == "log10", contours=contours, colorbar=dict(title=bar), row=1, col=i + 1)
        fig.add_scatter(x=[0.0], y=[0.0], mode="markers", marker=dict(symbol="x", color="red", size=9),
                        name="trained weights", showlegend=i == 0, row=1, col=i + 1)
    fig.update_xaxes(title_text="direction 1 (filter-normalised)")
    fig.update_yaxes(title_text="direction 2")
    title = ("Loss landscape around the trained weights (raw-loss contours at Li et al.'s levels 0.1 to 10)"
             if scale != "log10" else "Loss landscape around the trained weights (one log colour scale)")
    fig.update_layout(**{**LAYOUT, "height": 420}, title=dict(text=title, x=0, font=dict(size=14)))
    return fig


def landscape_surface_figure(surfaces: dict[str, tuple[Sequence[float], Sequence[float], Any]],
                             scale: str = "paper") -> go.Figure:
    """The same as surfaces: ``scale="paper"`` draws Li et al.'s ln(min(loss, 10) + 0.1), ``"log10"`` log₁₀ loss."""
    transform, ztitle = (_log_loss, "log₁₀ loss") if scale == "log10" else (_clipped_log, "ln(min(loss, 10) + 0.1)")
    surfaces = {k: (xs, ys, transform(loss)) for k, (xs, ys, loss) in surfaces.items()}
    zmin, zmax = _shared_range(surfaces) if scale == "log10" else (float(np.log(0.1)), float(np.log(10.1)))
    n = max(len(surfaces), 1)
    fig = make_subplots(rows=1, cols=n, specs=[[{"type": "surface"}] * n], subplot_titles=list(surfaces),
                        horizontal_spacing=0.02)
    for i, (label, (xs, ys, loss)) in enumerate(surfaces.items()):
        fig.add_surface(x=_floats(xs), y=_floats(ys), z=np.asarray(loss, dtype=float).tolist(), cmin=zmin,
                        cmax=zmax, colorscale=LANDSCAPE_SCALE, showscale=i == 0, name=label,
                        colorbar=dict(title=ztitle), row=1, col=i + 1)
    scene = dict(xaxis_title="direction 1", yaxis_title="direction 2", zaxis_title=ztitle,
                 zaxis=dict(range=[zmin, zmax]))
    fig.update_layout(**{f"scene{'' if i == 0 else i + 1}": scene for i in range(n)})
    fig.update_layout(**{**LAYOUT, "height": 480, "margin": dict(l=10, r=10, t=60, b=10)},
                      title=dict(text=f"Loss landscape as a surface ({ztitle}, one scale)", x=0, font=dict(size=14)))
    return fig
