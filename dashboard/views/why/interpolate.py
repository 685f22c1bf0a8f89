"""The Why it works page's 1-D interpolation tab."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis_service as view
from dashboard.views.why.common import WhyContext, run_choice_label, run_panel, show
from resnet_core.figures import analysis as charts

NAME = "interpolate"
TITLE = "1-D interpolation"


def tab(ctx: WhyContext, name: str = NAME) -> None:
    runs = ctx.runs
    if not runs:
        st.info("No stored run has a checkpoint yet: train one on the Train page.")
        return
    by_id = {r["run_id"]: r for r in runs}
    picks = st.multiselect("Runs (a plain net and its residual twin compare well)", list(by_id),
                           default=[r["run_id"] for r in runs][:2], key="why_in_runs",
                           format_func=lambda i: run_choice_label(by_id[i]))
    c1, c2, c3 = st.columns(3)
    points = c1.slider("Points on the line (α from -0.5 to 1.5)", 5, 81, 21, 2, key="why_in_points")
    paper = c3.checkbox("Every training image (the paper's)", False, key="why_in_paper")
    images = c2.number_input("Training images", 50, 50000, 500, 50, key="why_in_images", disabled=paper)
    settings = {"points": int(points), "images": 50000 if paper else int(images)}
    bn = st.radio("BN running statistics along the line", ["interpolate", "recompute"], horizontal=True,
                  key="why_in_bn", format_func=lambda v: {"interpolate": "interpolated with the weights (the paper's)",
                                                          "recompute": "recomputed at each α"}[v])
    settings["bn"] = bn
    lacking = [i for i in picks if not by_id[i]["has_init"]]
    if lacking:
        st.caption(f"{', '.join(by_id[i]['label'] for i in lacking)}: no initial weights saved (checkpoints/init.pt; "
                   "runs trained before runs saved them lack it), so the line cannot start from them: left out. "
                   "Train the run again to draw it.")
    picks = [i for i in picks if i not in lacking]
    requests = [view.Request(name, by_id[i]["label"] + f" · {i[-4:]}", run_id=i, settings=settings) for i in picks]

    def draw(results):
        figs = {"Interpolation": charts.interpolation_figure(
            {k: (r["alphas"], r["loss"], r.get("accuracy")) for k, r in results.items()})}
        show(figs, name)
        st.caption("Initial weights: " + " · ".join(f"{k}: {r.get('init_source', '?')}" for k, r in results.items()))
        return figs

    run_panel(ctx, name, requests, draw, None if requests else "Pick one or more runs with saved initial weights.")

