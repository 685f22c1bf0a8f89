"""The Why it works page's Shattered gradients tab."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis_service as view
from dashboard.views.why.common import ALL_DEPTHS, WhyContext, run_choice_label, run_panel, show
from resnet_core.figures import analysis as charts
from resnet_core.config import ModelConfig

NAME = "shattering"
TITLE = "Shattered gradients"


def tab(ctx: WhyContext, name: str = NAME) -> None:
    c1, c2, c3 = st.columns([1, 2, 2])
    arch = c1.radio("Nets", ["both", "residual", "plain"], horizontal=True, key="why_sh_arch")
    depths = c2.multiselect("Depths (at initialisation)", ALL_DEPTHS, default=[20, 56], key="why_sh_depths")
    by_id = {r["run_id"]: r for r in ctx.runs}
    trained = c3.multiselect("Trained runs (each beside itself at initialisation)", list(by_id), key="why_sh_runs",
                             format_func=lambda i: run_choice_label(by_id[i]))
    points = st.slider("Inputs along the line between two test images", 32, 512, 256, 32, key="why_sh_points")
    requests = []
    for depth in sorted(depths):
        # "both": the residual net and its plain twin in one request (the core's ``twin``)
        cfg = ModelConfig(depth=depth, residual=arch != "plain")
        requests.append(view.Request(name, f"depth {depth}" if arch == "both" else cfg.name, config=cfg.to_dict(),
                                     settings={"points": int(points), "twin": arch == "both"},
                                     data=ctx.init_data))
    requests += [view.Request(name, f"{by_id[i]['label']} · {i[-4:]}", run_id=i,
                              settings={"points": int(points), "twin": False}) for i in trained]

    def draw(results):
        curves = {}
        for request_label, r in results.items():
            for m in r["models"]:
                key = f"{m['model']} {m['label']}"
                if key in curves:  # e.g. a trained run's initialisation and the same depth picked above
                    key = f"{key} ({request_label})"
                curves[key] = m
        figs = {"Gradient along the line": charts.line_gradient_figure({k: m["trace"] for k, m in curves.items()}),
                "Autocorrelation along the line": charts.autocorrelation_figure(
                    {k: (list(range(len(m["autocorrelation_along_line"]))), m["autocorrelation_along_line"])
                     for k, m in curves.items()}),
                "Power spectrum": charts.power_spectrum_figure(
                    {k: (m["spectrum_frequency"], m["power_spectrum"], m["spectrum_slope"]) for k, m in curves.items()}),
                "Correlation across pixels": charts.autocorrelation_figure(
                    {k: (list(range(len(m["cross_pixel_correlation"]))), m["cross_pixel_correlation"])
                     for k, m in curves.items()},
                    title="Correlation across pixels of whole gradient maps k inputs apart (a second view)")}
        show(figs, name, {"Gradient along the line": "One pixel's gradient (the centre pixel, first colour "
                                                     "channel) at each input on the line, scaled to unit spread.",
                          "Autocorrelation along the line": "The paper's statistic: each pixel's gradient as a "
                          "series along the line, centred, its autocorrelation by lag, averaged over pixels.",
                          "Correlation across pixels": "Not the paper's statistic: the Pearson correlation over "
                          "pixels between the gradient maps of two inputs k steps apart."})
        st.caption("Autocorrelation at lag 1 along the line (1: smooth, 0: white noise): " + " · ".join(
            f"{k} {m['line_neighbour_correlation']:.3f}" for k, m in curves.items()))
        return figs

    run_panel(ctx, name, requests, draw, None if requests else "Pick a depth or a trained run.")

