"""The Why it works page's Lesions tab."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis_service as view
from dashboard import downloads
from dashboard.views.why.common import WhyContext, community_request, run_choice_label, run_panel, show
from resnet_core.figures import analysis as charts
from resnet_core.nets import community

NAME = "lesion"
TITLE = "Lesions"


def tab(ctx: WhyContext, name: str = NAME) -> None:
    # Residual runs first (the study's subject), then the community checkpoints, then plain runs.
    ordered = [r for r in ctx.runs if r["residual"]], [r for r in ctx.runs if not r["residual"]]
    options = {f"run:{r['run_id']}": run_choice_label(r) for r in ordered[0]}
    options.update({n: downloads.community_label(n) for n in community.NAMES})
    options.update({f"run:{r['run_id']}": run_choice_label(r) for r in ordered[1]})
    labels = {f"run:{r['run_id']}": f"{r['label']} · {r['run_id'][-4:]}" for r in ctx.runs}
    c1, c2 = st.columns(2)
    pick = c1.selectbox("Net (a stored run with a checkpoint, or a community checkpoint)", list(options),
                        key="why_le_model", format_func=options.get)
    plain_runs = {f"run:{r['run_id']}": run_choice_label(r) for r in ordered[1]}
    beside = c2.selectbox("Plain net beside it (optional)", ["none"] + list(plain_runs), key="why_le_plain",
                          format_func=lambda s: "none" if s == "none" else plain_runs[s],
                          help="Train a plain twin on the Train page (Start twin) to compare: deleting any of "
                               "its layers is catastrophic.")
    c3, c4, c5 = st.columns(3)
    paper = c5.checkbox("The paper's setting (all 10,000 test images)", False, key="why_le_paper",
                        help="Veit et al. score the whole CIFAR-10 test set; the default fits the time budget here.")
    default = view.available()[NAME].defaults   # the core's: sized to the page's time budget
    images = c3.number_input("Test images", 50, 10000, default["images"], 50, key="why_le_images", disabled=paper)
    draws = c4.number_input("Random draws per k and per reordering", 1, 1000, default["draws"], key="why_le_draws")
    settings = {"images": 10000 if paper else int(images), "draws": int(draws)}
    problem = None
    requests = []
    for spec in dict.fromkeys([pick] + ([beside] if beside != "none" else [])):
        kind, ref = spec.split(":", 1)
        if kind == "run":
            requests.append(view.Request(name, labels[spec], run_id=ref, settings=settings))
        else:  # a community checkpoint by name, downloaded on first use
            request, problem = community_request(ctx, name, spec, settings, "why_le_dl", problem)
            requests += [request] if request is not None else []

    def draw(results):
        figs = {"Single deletions": charts.lesion_single_figure(
                    {k: ([s["block"] for s in r["single"]], [bool(s["downsampling"]) for s in r["single"]],
                         [s["error"] for s in r["single"]]) for k, r in results.items()},
                    {k: r["base_error"] for k, r in results.items()}),
                "Deleting k blocks": charts.lesion_by_count_figure(
                    {k: ([b["k"] for b in r["by_count"]], [b["error"] for b in r["by_count"]])
                     for k, r in results.items()})}
        reorder = {k: ([p["kendall_tau"] for p in r["reorder"]], [p["error"] for p in r["reorder"]])
                   for k, r in results.items() if r.get("reorder")}
        if reorder:
            figs["Reordering"] = charts.reorder_figure(reorder)
        show(figs, name)
        decomposed = {k: r["decomposition"] for k, r in results.items() if r.get("decomposition")}
        if decomposed:
            st.markdown("**x_L = x_l + Σ F(x_i), literally** (one test image)")
            c1, c2 = st.columns(2)
            who = c1.selectbox("Net", list(decomposed), key="why_le_dec_model")
            stages = {d["stage"]: d for d in decomposed[who]}
            stage = stages[c2.selectbox("Stage", list(stages), index=len(stages) - 1, key="why_le_dec_stage")]
            st.caption("Residual error ‖x_L - x_l - ΣF(x_i)‖/‖x_L‖ with the branches' own outputs, by stage: "
                       + ", ".join(f"{d['stage']} {d['residual_error']:.2g}" for d in decomposed[who]
                                   if "residual_error" in d)
                       + " (zero up to float error only for pre-activation nets; the stack below adds what each "
                         "block changes, x_{i+1} - x_i, which sums to x_L in any net).")
            extra = {"Decomposition": charts.decomposition_figure(
                         stage["blocks"], stage["contribution_norm"], stage["input_norm"], stage["output_norm"],
                         title=f"{who}, {stage['stage']}: its input plus what each block adds"),
                     "Decomposition maps": charts.decomposition_maps_figure(
                         stage["blocks"], stage["input_map"], stage["contribution_maps"], stage["output_map"])}
            show(extra, f"{name}_dec")
            figs.update(extra)
        return figs

    run_panel(ctx, name, requests, draw, problem)

