"""Charts of an analysis result for the command line's ``--out``: one description, two renderers.

``panels(result)`` turns a result dict into a list of chart panels (lines or a heat map, with axis names
and log scales); ``write_html`` draws them with Plotly (interactive, one file), ``write_png`` with
matplotlib when it is installed, else with Pillow (lines only, plainer). The dashboard draws its own,
richer figures from the same result dicts (resnet_core/figures/analysis.py); the core does not import it.
"""
from __future__ import annotations

import math
from pathlib import Path


def _line(title, xlabel, ylabel, series, logx=False, logy=False):
    return {"kind": "line", "title": title, "xlabel": xlabel, "ylabel": ylabel, "series": series,
            "logx": logx, "logy": logy}


def panels(r: dict) -> list[dict]:
    name = r["analysis"]
    if name == "gradient-flow":
        idx = list(range(len(r["blocks"])))
        out = [_line(f"gradient per element (RMS) by block, {r['model']}", "block", "RMS gradient",
                     [{"name": r["model"], "x": idx, "y": r["rms_input_grad"]}], logy=True),
               _line(f"‖∂L/∂x_l‖ by block (raw), {r['model']}", "block", "gradient norm",
                     [{"name": r["model"], "x": idx, "y": r["input_grad_norm"]}], logy=True),
               _line("branch's energy share of the gradient (shortcut: the rest)", "block", "⟨J_Fᵀu, g⟩ / ‖g‖²",
                     [{"name": r["model"], "x": idx, "y": r["branch_energy_share"]}])]
        if r.get("plus_one"):
            pre, post = r["plus_one"]["pre-activation"], r["plus_one"]["post-activation"]
            out.append(_line("the '+1': pre-activation beside post-activation (RMS gradient)", "block", "RMS gradient",
                             [{"name": f"{p['model']} {k}", "x": list(range(len(p["blocks"]))), "y": p["rms_input_grad"]}
                              for k, p in (("pre-activation", pre), ("post-activation", post))], logy=True))
            out.append(_line("share of the output gradient passing the output ReLU", "block", "‖u‖ / ‖v‖",
                             [{"name": k, "x": list(range(len(p["blocks"]))), "y": p["output_relu_pass"]}
                              for k, p in (("pre-activation", pre), ("post-activation", post))]))
        if r.get("sweep"):
            out.insert(1, _line("‖∂L/∂x_l‖ by block, all depths", "block", "gradient norm",
                                [{"name": e["model"], "x": list(range(len(e["blocks"]))), "y": e["input_grad_norm"]}
                                 for e in r["sweep"]], logy=True))
            series = []
            for residual in (True, False):
                pts = [e for e in r["sweep"] if e["residual"] is residual]
                if pts:
                    series.append({"name": "residual" if residual else "plain", "x": [e["depth"] for e in pts],
                                   "y": [e["ratio"] for e in pts]})
            out.insert(2, _line("‖∂L/∂x_0‖ / ‖∂L/∂x_L‖ against depth", "depth", "ratio", series, logx=True, logy=True))
        return out
    if name == "shattering":
        return [_line("autocorrelation of each pixel's gradient along the line (mean over pixels)", "lag",
                      "autocorrelation",
                      [{"name": f"{m['model']} {m['label']}", "x": list(range(len(m["autocorrelation_along_line"]))),
                        "y": m["autocorrelation_along_line"]} for m in r["models"]]),
                _line("power spectrum of the gradient along the line", "frequency", "share of the power",
                      [{"name": f"{m['model']} {m['label']} (slope {m['spectrum_slope']:.2f})",
                        "x": m["spectrum_frequency"], "y": m["power_spectrum"]} for m in r["models"]],
                      logx=True, logy=True),
                _line("correlation across pixels of gradient maps k apart (second view)", "lag", "correlation",
                      [{"name": f"{m['model']} {m['label']}", "x": list(range(len(m["cross_pixel_correlation"]))),
                        "y": m["cross_pixel_correlation"]} for m in r["models"]]),
                _line("gradient of one pixel along the line", "t", "∂f/∂x",
                      [{"name": f"{m['model']} {m['label']}", "x": r["t"], "y": m["trace"]} for m in r["models"]])]
    if name == "paths":
        k = list(range(r["blocks"] + 1))
        out = [_line(f"path lengths of {r['blocks']} blocks: Binomial(n, 1/2)", "path length k", "fraction of paths",
                     [{"name": "paths", "x": k, "y": r["length_distribution"]}])]
        if "gradient_by_length" in r:
            out += [_line("gradient carried by one path of length k", "path length k", "‖gradient‖",
                          [{"name": "per path", "x": r["lengths"], "y": r["gradient_by_length"]}], logy=True),
                    _line(f"share of ‖g‖² by path length (‖g‖ = {r['full_gradient_norm']:.3g})", "path length k",
                          "C(n,k) E‖g_k‖² / ‖g‖²",
                          [{"name": "energy share", "x": r["lengths"], "y": r["gradient_energy_share_by_length"]}])]
        return out
    if name == "lesion":
        single = [s for s in r["single"]]
        out = [_line("test error with one block deleted", "deleted block", "error",
                     [{"name": "one block deleted", "x": list(range(len(single))),
                       "y": [s["error"] if s["error"] is not None else math.nan for s in single]},
                      {"name": "intact", "x": [0, len(single) - 1], "y": [r["base_error"]] * 2}]),
               _line("test error with k random blocks deleted", "k", "mean error",
                     [{"name": "k deleted", "x": [b["k"] for b in r["by_count"]], "y": [b["error"] for b in r["by_count"]]}])]
        if r.get("reorder"):
            out.append(_line("test error of reordered nets", "Kendall's τ", "error",
                             [{"name": "reordered", "x": [e["kendall_tau"] for e in r["reorder"]],
                               "y": [e["error"] for e in r["reorder"]], "markers": True}]))
        return out
    if name == "interpolate":
        return [_line("loss from initial (0) to trained (1) weights", "alpha", "loss",
                      [{"name": "loss", "x": r["alphas"], "y": r["loss"]}], logy=True),
                _line("accuracy", "alpha", "accuracy", [{"name": "accuracy", "x": r["alphas"], "y": r["accuracy"]}])]
    if name == "landscape":
        return [{"kind": "heatmap", "title": f"ln(min(loss, 10) + 0.1) around {r['model']} (filter-normalised "
                 "directions, Li et al.'s surface)", "xlabel": "direction 1", "ylabel": "direction 2", "x": r["x"],
                 "y": r["y"], "z": r["loss_clipped_log"]}]
    if name == "responses":
        idx = list(range(1, len(r["layer_response_std"]) + 1))
        return [_line(f"std of every BN output after a 3x3 conv, {r['model']} (Fig. 7)", "layer", "std",
                      [{"name": "by layer", "x": idx, "y": r["layer_response_std"]},
                       {"name": "sorted", "x": idx, "y": r["sorted_std"]}])]
    return []


def write_html(result: dict, path: Path) -> Path:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ps = panels(result)
    fig = make_subplots(rows=len(ps), cols=1, subplot_titles=[p["title"] for p in ps],
                        vertical_spacing=0.25 / max(len(ps), 1))
    for i, p in enumerate(ps, start=1):
        if p["kind"] == "heatmap":
            fig.add_trace(go.Contour(x=p["x"], y=p["y"], z=p["z"], colorscale="Viridis", name="loss"), row=i, col=1)
        else:
            for s in p["series"]:
                fig.add_trace(go.Scatter(x=s["x"], y=s["y"], name=s["name"],
                                         mode="markers" if s.get("markers") else "lines+markers"), row=i, col=1)
            if p["logy"]:
                fig.update_yaxes(type="log", row=i, col=1)
            if p["logx"]:
                fig.update_xaxes(type="log", row=i, col=1)
        fig.update_xaxes(title_text=p["xlabel"], row=i, col=1)
        fig.update_yaxes(title_text=p["ylabel"], row=i, col=1)
    fig.update_layout(height=380 * len(ps), width=900, title=f"{result['analysis']}: {result.get('source', '')}")
    path.write_text(fig.to_html(include_plotlyjs="cdn", full_html=True), encoding="utf-8")
    return path


def _finite(xs, ys, logx, logy):
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y) and math.isfinite(x)
           and (not logy or y > 0) and (not logx or x > 0)]
    return [p[0] for p in pts], [p[1] for p in pts]


def write_png(result: dict, path: Path) -> Path:
    ps = panels(result)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(ps), 1, figsize=(8, 3.6 * len(ps)), squeeze=False)
    for ax, p in zip(axes[:, 0], ps):
        if p["kind"] == "heatmap":
            cs = ax.contourf(p["x"], p["y"], p["z"], levels=30, cmap="viridis")
            fig.colorbar(cs, ax=ax, label="loss")
        else:
            for s in p["series"]:
                xs, ys = _finite(s["x"], s["y"], p["logx"], p["logy"])
                ax.plot(xs, ys, "o" if s.get("markers") else "-", label=s["name"], markersize=3)
            if p["logy"]:
                ax.set_yscale("log")
            if p["logx"]:
                ax.set_xscale("log")
            if len(p["series"]) > 1:
                ax.legend(fontsize=7)
        ax.set_title(p["title"], fontsize=10)
        ax.set_xlabel(p["xlabel"])
        ax.set_ylabel(p["ylabel"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
