"""The Why it works page's Layer responses (Fig. 7) tab."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis_service as view
from dashboard import downloads
from dashboard.views.why.common import WhyContext, community_request, run_choice_label, run_panel, show
from resnet_core.figures import analysis as charts
from resnet_core.nets import community

NAME = "responses"
TITLE = "Layer responses (Fig. 7)"


def tab(ctx: WhyContext, name: str = NAME) -> None:
    options = {f"run:{r['run_id']}": run_choice_label(r) for r in ctx.runs}
    # The community CIFAR-10 nets by name, each downloaded on first use (a button, then its progress).
    options.update({n: downloads.community_label(n) for n in community.NAMES})
    if not ctx.runs:
        st.caption("No stored run has a checkpoint yet: train a plain net and its residual twin on the Train "
                   "page (Start twin) to compare them as the paper does, or pick a community checkpoint.")
    default = [next((k for k, r in zip(options, ctx.runs) if not r["residual"]), None),
               next((k for k, r in zip(options, ctx.runs) if r["residual"]), None)]
    picks = st.multiselect("Nets (a plain run and its residual twin compare as in the paper)", list(options),
                           default=[d for d in default if d], key="why_re_models", format_func=options.get)
    c1, c2 = st.columns(2)
    paper = c2.checkbox("The paper's setting (all 10,000 test images)", False, key="why_re_paper")
    default = view.available()[NAME].defaults   # the core's: the paper's 10,000 fits the page's budget
    images = c1.number_input("Test images", 50, 10000, default["images"], 50, key="why_re_images", disabled=paper)
    settings = {"images": 10000 if paper else int(images)}
    requests, problem = [], None
    for spec in picks:
        kind, ref = spec.split(":", 1)
        if kind == "run":
            by_id = {r["run_id"]: r for r in ctx.runs}
            requests.append(view.Request(name, f"{by_id[ref]['label']} · {ref[-4:]}", run_id=ref, settings=settings))
        else:  # a community checkpoint by name, downloaded on first use
            request, problem = community_request(ctx, name, spec, settings, f"why_re_dl_{ref}", problem)
            requests += [request] if request is not None else []

    def draw(results):
        series = {k: (r["layer_response_names"], r["layer_response_std"]) for k, r in results.items()}
        figs = {"Responses": charts.response_std_figure(series)}
        show(figs, name)
        st.caption(" · ".join(f"{k}: {r['note']}, {r['images']} test images" for k, r in results.items()))
        return figs

    run_panel(ctx, name, requests, draw, problem or (None if requests else "Pick one or more nets."))

