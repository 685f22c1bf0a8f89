"""The Why it works page's Paths tab."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis_service as view
from dashboard import downloads
from dashboard.views.why.common import (ALL_DEPTHS, NO_CIFAR, WhyContext, run_choice_label, run_panel,
                                      show)
from resnet_core.figures import analysis as charts
from resnet_core.config import ModelConfig
from resnet_core.nets import community

NAME = "paths"
TITLE = "Paths"


def tab(ctx: WhyContext, name: str = NAME) -> None:
    c1, c2 = st.columns([1, 3])
    mode = c1.radio("Paths of", ["a net at initialisation", "a trained run", "a community checkpoint"],
                    key="why_pa_mode")
    c3, c4, c5, c6 = st.columns(4)
    measure = c3.checkbox("Measure the gradient per length (else exact counts only)", True, key="why_pa_measure")
    paper = c3.checkbox("The paper's setting (1,000 draws per length)", False, key="why_pa_paper",
                        disabled=not measure, help="Veit et al. average about 1,000 measurements per length over "
                        "training batches; the default is what fits a 2-core CPU in a minute or so.")
    default = view.available()[NAME].defaults   # the core's: sized to the page's time budget
    draws = c4.number_input("Random draws per length", 1, 1000, default["draws"], key="why_pa_draws",
                            disabled=not measure or paper)
    batches = c5.number_input("Random training batches", 1, 1000, default["batches"], key="why_pa_batches",
                              disabled=not measure)
    batch = c6.number_input("Images per batch", 1, 256, default["batch_size"], key="why_pa_batch",
                            disabled=not measure)
    settings = {"measure": bool(measure), "draws": 1000 if paper else int(draws), "batches": int(batches),
                "batch_size": int(batch)}
    requests, problem = [], None
    if mode == "a net at initialisation":
        depth = c2.selectbox("Depth (n blocks = (depth - 2) / 2)", ALL_DEPTHS, index=ALL_DEPTHS.index(110),
                             key="why_pa_depth", help="ResNet-110 has 54 blocks, the net of Veit et al.'s Fig. 6.")
        cfg = ModelConfig(depth=depth)
        requests = [view.Request(name, cfg.name + " (init)", config=cfg.to_dict(), settings=settings,
                                 data=ctx.init_data)]
    elif mode == "a trained run":
        runs = [r for r in ctx.runs if r["residual"]]
        if not runs:
            problem = "No stored residual run has a checkpoint yet: train one on the Train page."
        else:
            by_id = {r["run_id"]: r for r in runs}
            pick = c2.selectbox("Run", list(by_id), key="why_pa_run", format_func=lambda i: run_choice_label(by_id[i]))
            requests = [view.Request(name, by_id[pick]["label"], run_id=pick, settings=settings)]
    else:
        pick = c2.selectbox("Checkpoint", community.NAMES, key="why_pa_ckpt", format_func=downloads.community_label)
        path = downloads.community_checkpoint(pick, key="why_pa_dl", auto=False)  # a button, then progress
        if path is None:
            problem = f"{pick} is not here yet: it is used once its download ends."
        else:
            if ctx.ckpt_data is None and measure:
                problem = NO_CIFAR
            requests = [view.Request(name, pick.split(":")[1], checkpoint=str(path), settings=settings,
                                     data=ctx.ckpt_data)]

    def draw(results):
        (label, r), = results.items()
        figs = {"Paths": charts.paths_figure(r["length_distribution"], r.get("gradient_by_length"),
                                             r.get("lengths"), r.get("paths_95_range"), r.get("gradient_90_range"),
                                             r.get("gradient_energy_share_by_length"), r.get("full_gradient_norm"))}
        show(figs, name)
        lo, hi = r["paths_95_range"]
        text = f"{label}: {r['blocks']} blocks, 2^{r['blocks']} paths; 95% of them pass through {lo} to {hi} blocks."
        if r.get("gradient_90_range"):
            g_lo, g_hi = r["gradient_90_range"]
            text += (f" 90% of the summed C(n,k)·E‖g_k‖² comes from paths of {g_lo} to {g_hi} blocks; the "
                     f"parts add up to {r['gradient_energy_share_total']:.2f} of ‖g‖² (1 if path gradients were "
                     f"orthogonal; less where they reinforce each other). {r['draws']} draws per length over "
                     f"{r['batches']} batches of "
                     f"{r['batch_size']} training images" + (" (the paper's 1,000)." if r["draws"] >= 1000 else
                                                              "; the paper averages about 1,000."))
        st.caption(text)
        return figs

    run_panel(ctx, name, requests, draw, problem)

