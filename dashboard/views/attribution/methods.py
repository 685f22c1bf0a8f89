"""The Attribution page's methods, their settings and the maps' opacity."""
from __future__ import annotations

import streamlit as st

from dashboard.views.attribution.common import Methods
from resnet_core.attribution import METHODS, layer_choices

AUTO_LAYER = "(last block)"


def pick_methods(models: dict) -> Methods:
    """The methods picked and their settings; the Grad-CAM layers offered are the first model's."""
    names = st.multiselect("Methods", list(METHODS), default=["saliency", "gradcam"], key="attr_methods",
                           format_func=lambda m: METHODS[m].label)
    with st.expander("Method settings"):
        c1, c2, c3 = st.columns(3)
        ig_steps = c1.slider("Integrated Gradients: steps", 4, 200, 50, key="attr_ig_steps")
        nt_samples = c2.slider("SmoothGrad: noisy samples", 2, 100, 20, key="attr_nt_samples")
        noise = c2.slider("SmoothGrad: noise (share of the input range)", 0.05, 0.5, 0.15, key="attr_noise")
        first = next(iter(models.values()), None)
        layers = [AUTO_LAYER] + (layer_choices(first.model) if first else [])
        layer_pick = c3.selectbox("Grad-CAM layer", layers, key="attr_layer")
        window = c3.number_input("Occlusion window in pixels (0: 1/8 of the side)", 0, 112, 0, key="attr_window")
    settings = {"ig": {"n_steps": ig_steps}, "smoothgrad": {"nt_samples": nt_samples, "noise_level": noise},
                "occlusion": {"window": window or None}}
    alpha = st.slider("Opacity of the map", 0.0, 1.0, 0.5, 0.05, key="attr_alpha")
    return Methods(names, settings, layer_pick, alpha)
