"""Why it works: the arguments of He et al. and Veit et al. made visible without waiting for training:
gradient flow at any depth, shattered gradients, the unrolled ensemble and lesions, loss landscapes.

Every analysis is ``resnet_core.analysis``'s (the CLI's ``analyze`` runs the same); each tab is a module
of ``dashboard/views/why/`` that picks models and settings, runs them in the worker
(``dashboard/analysis_service.py``) and draws the result."""
from __future__ import annotations

import streamlit as st

from dashboard.views.why import TABS
from dashboard.views.why.common import images_and_device, section

st.title("Why it works")
st.caption("Why residual connections make deep nets trainable, shown on your machine: each tab runs one "
           "experiment from the papers on nets at initialisation, runs trained here or the community "
           "checkpoints, in the background, with a progress bar and Cancel. Numbers are cached, so coming "
           "back to a tab shows its last result at once.")
ctx = images_and_device()
for tab, module in zip(st.tabs([m.TITLE for m in TABS]), TABS):
    with tab:
        section(ctx, module)
