"""The Why it works page's Gradient flow tab."""
from __future__ import annotations

import streamlit as st

from dashboard import analysis_service as view
from dashboard.views.why.common import ALL_DEPTHS, SWEEP_DEPTHS, WhyContext, run_panel, show
from resnet_core.figures import analysis as charts
from resnet_core.config import INITS, SHORTCUTS, ConfigError, ModelConfig

NAME = "gradient-flow"
TITLE = "Gradient flow"


def tab(ctx: WhyContext, name: str = NAME) -> None:
    c1, c2, c3 = st.columns([1, 2, 1])
    arch = c1.radio("Nets", ["both", "residual", "plain"], horizontal=True, key="why_gf_arch")
    depths = c2.multiselect("Depths", ALL_DEPTHS, default=[20, 56, 110], key="why_gf_depths",
                            help="Depth 6n+2; the paper's CIFAR nets: 20 to 110, and 1202. "
                                 "One forward and backward pass each.")
    batch = c3.number_input("Batch (images)", 1, 256, 16, key="why_gf_batch")
    c2.button("The papers' depths: 8, 20, 56, 110, 218, 434, 1202", key="why_gf_sweep",
              on_click=lambda: st.session_state.update(why_gf_depths=SWEEP_DEPTHS, why_gf_batch=8),
              help="Plain and residual nets at the depths of the paper's Table 6 and Fig. 6, at a batch of 8: "
                   "a 1,202-layer net costs as much as about 60 ResNet-20s, and the estimate says how long here.")
    c4, c5, c6, c7 = st.columns(4)
    bn = c4.checkbox("BatchNorm", True, key="why_gf_bn")
    preact = c5.checkbox("Pre-activation", False, key="why_gf_preact")
    init = c6.selectbox("Init", INITS, key="why_gf_init")
    shortcut = c7.selectbox("Shortcut", SHORTCUTS, key="why_gf_shortcut")
    kinds = {"both": [False, True], "residual": [True], "plain": [False]}[arch]
    requests, problem = [], None if depths else "Pick at least one depth."
    try:
        for residual in kinds:
            for depth in sorted(depths):
                cfg = ModelConfig(depth=depth, residual=residual, batchnorm=bn, preact=preact, init=init,
                                  shortcut=shortcut)
                # the "+1" view: the shallowest residual net also runs with the other activation order
                requests.append(view.Request(name, cfg.name + ("" if bn else " no-BN"), config=cfg.to_dict(),
                                             settings={"batch_size": int(batch),
                                                       "plus_one": residual and depth == min(depths)},
                                             data=ctx.init_data))
    except ConfigError as e:
        requests, problem = [], str(e)

    def draw(results):
        names = {k: r.get("blocks", []) for k, r in results.items()}
        rms = {k: r["rms_input_grad"] for k, r in results.items() if r.get("rms_input_grad")}
        norms = {k: r["input_grad_norm"] for k, r in results.items()}
        figs = {"Gradient per element by block": charts.block_profile_figure(
                    rms, "Gradient reaching each block's input, per element (RMS)", "RMS gradient (log)", names=names),
                "Gradient norm by block": charts.block_profile_figure(
                    norms, "Gradient reaching each block's input, ‖∂L/∂x_l‖ (raw: stages differ in size)",
                    "gradient norm (log)", names=names)}
        sweeps: dict[str, tuple[list, list]] = {}
        for r in sorted(results.values(), key=lambda r: r["depth"]):
            family = "residual" if r["residual"] else "plain"
            for label, key in ((f"{family}, per element", "ratio_per_element"), (f"{family}, raw norms", "ratio")):
                if key in r:
                    depths, ratios = sweeps.setdefault(label, ([], []))
                    depths.append(r["depth"])
                    ratios.append(r[key])
        figs["Ratio by depth"] = charts.ratio_vs_depth_figure(sweeps)
        plus = next((r["plus_one"] for r in results.values() if r.get("plus_one")), None)
        if plus:
            pre, post = plus["pre-activation"], plus["post-activation"]
            figs["The +1"] = charts.block_profile_figure(
                {f"{pre['model']} pre-activation": pre["rms_input_grad"],
                 f"{post['model']} post-activation": post["rms_input_grad"]},
                "The \"+1\": pre-activation (nothing after the addition) beside post-activation", "RMS gradient (log)")
            figs["ReLU mask"] = charts.block_profile_figure(
                {"pre-activation": pre["output_relu_pass"], "post-activation": post["output_relu_pass"]},
                "Share of each block's output gradient that passes its output ReLU, ‖u‖/‖v‖",
                "‖u‖ / ‖v‖", log_y=False)
        share = {k: r["branch_energy_share"] for k, r in results.items()
                 if r.get("branch_energy_share") and r.get("residual")}
        if share:
            figs["Branch share"] = charts.branch_share_figure(share)
        cosine = {k: r["branch_shortcut_cosine"] for k, r in results.items()
                  if r.get("residual") and r.get("branch_shortcut_cosine")}
        if cosine:
            figs["Cosine"] = charts.block_profile_figure(
                cosine, "Cosine between the branch's and the shortcut's part of the gradient", "cosine", log_y=False)
        act = {k: r["activation_std"] for k, r in results.items() if r.get("activation_std")}
        if act:
            figs["Activation std"] = charts.block_profile_figure(act, "Forward activation std by block",
                                                                 "std (log)")
        wgrad = {k: r["weight_grad_norm"] for k, r in results.items() if r.get("weight_grad_norm")}
        if wgrad:
            figs["Weight gradients"] = charts.block_profile_figure(wgrad, "Weight-gradient norm by layer",
                                                                   "‖∂L/∂W‖ (log)", x_title="layer index (0: stem)")
        show(figs, name, {
            "Gradient per element by block": "Root mean square of the gradient's elements: a stage-1 tensor has "
            "4x the elements of a stage-3 one, which alone doubles a ratio of raw norms.",
            "The +1": "He et al.'s ∂E/∂x_l = ∂E/∂x_L (1 + ∂ΣF/∂x_l) holds for identity shortcuts with nothing "
            "after the addition: the pre-activation net. In the post-activation net the ReLU after each sum "
            "masks the shortcut's gradient too (the chart below).",
            "Branch share": "The projection of the branch's part on the whole gradient; the shortcut's is the rest. "
            "Norms would not divide it: the two parts are nearly orthogonal (the cosine, below)."})
        rates = []
        for k, r in results.items():
            per_stage = [f"{s['stage']} {s['rate']:.3f}" for s in r.get("per_layer_rate_by_stage", [])
                         if s.get("rate") is not None]
            if per_stage:
                rates.append(f"{k}: " + ", ".join(per_stage))
        if rates:
            st.caption("Growth of the per-element gradient per weight layer, output to input, fitted within each "
                       "stage (Yang et al. 2019 predict about 1.21 for a plain net with BN): " + " · ".join(rates))
        st.caption("Time per net: " + " · ".join(f"{k} {r['seconds']:.2f} s" for k, r in results.items()
                                                  if "seconds" in r))
        return figs

    run_panel(ctx, name, requests, draw, problem)

