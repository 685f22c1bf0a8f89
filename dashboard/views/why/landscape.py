"""The Why it works page's Loss landscape tab."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis_service as view
from dashboard.views.why.common import WhyContext, run_choice_label, run_panel, show
from resnet_core.figures import analysis as charts

NAME = "landscape"
TITLE = "Loss landscape"


def tab(ctx: WhyContext, name: str = NAME) -> None:
    runs = ctx.runs
    if not runs:
        st.info("No stored run has a checkpoint yet: train a plain net and its residual twin on the Train page "
                "(Start twin).")
        return
    by_id = {r["run_id"]: r for r in runs}
    default = [next((r["run_id"] for r in runs if not r["residual"]), None),
               next((r["run_id"] for r in runs if r["residual"]), None)]
    picks = st.multiselect("Runs (a plain net and its residual twin, side by side)", list(by_id),
                           default=[d for d in default if d], max_selections=3, key="why_la_runs",
                           format_func=lambda i: run_choice_label(by_id[i]))
    c1, c2, c3, c4 = st.columns(4)
    paper = c4.checkbox("The paper's setting (51x51 grid, all training images)", False, key="why_la_paper",
                        help="Li et al. evaluate a 51x51 grid on the whole CIFAR-10 training set: hours on a "
                        "2-core CPU. The default grid and images fit a minute or two.")
    grid = c1.slider("Grid (points per side)", 5, 51, 11, 2, key="why_la_grid", disabled=paper)
    span = c2.slider("Span (± along each direction)", 0.1, 2.0, 1.0, 0.1, key="why_la_span")
    images = c3.number_input("Training images", 50, 50000, 500, 50, key="why_la_images", disabled=paper)
    scale = c4.radio("Loss shown as", ["paper", "log10"], key="why_la_scale", horizontal=True,
                     format_func=lambda v: {"paper": "the paper's (raw-loss contours, clipped ln surface)",
                                            "log10": "log₁₀ loss"}[v])
    settings = {"points": 51 if paper else int(grid), "span": float(span), "images": 50000 if paper else int(images)}
    requests = [view.Request(name, by_id[i]["label"] + f" · {i[-4:]}", run_id=i, settings=settings) for i in picks]

    def draw(results):
        surfaces = {k: (r["x"], r["y"], r["loss"]) for k, r in results.items()}
        figs = {"Contours": charts.landscape_contour_figure(surfaces, scale),
                "Surface": charts.landscape_surface_figure(surfaces, scale)}
        figs = show(figs, name)
        notes = [f"{k}: {r['chaos_note']}" for k, r in results.items() if r.get("chaos_note")]
        st.caption(" ".join(notes) + (" " if notes else "") + "The paper's plain-56 chaos needs a trained plain-56 "
                   "(on CIFAR-10) here too: train one on the Train page to see it. "
                   + " · ".join(f"{k}: {r['images']} images, {len(r['x'])}x{len(r['y'])} grid"
                                for k, r in results.items()) + " (the paper: 50,000 images, 51x51).")
        return figs

    run_panel(ctx, name, requests, draw, None if requests else "Pick one or more runs.")

