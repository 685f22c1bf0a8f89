"""The Attribution page's model randomisation check (Adebayo et al. 2018)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import attribution_service as view
from dashboard.views.attribution.common import Jobs, Methods, pressed_once, Subject
from resnet_core.attribution import METHODS, model_randomisation_check, overlay


def randomisation_check(subject: Subject, methods: Methods, jobs: Jobs) -> None:
    st.caption("Adebayo et al. 2018: the top layers (classifier and last stage) are re-initialised and the "
               "map recomputed. A map whose Spearman rank correlation with the original stays above 0.5 "
               "barely depends on what the model learned, and is flagged.")
    if not pressed_once("Run the randomisation check", "attr_run_rand"):
        return
    s = subject
    rows = []
    for method in methods.names:
        layer = methods.layer(s.loaded, method)
        setting = methods.settings.get(method)
        key = view.cell_key("randomisation", s.image["key"], s.spec, method, s.target, setting, layer)
        r = jobs.ensure(key, f"randomisation · {METHODS[method].label}",
                        lambda progress, cancel, m=method, lay=layer, st_=setting: model_randomisation_check(
                            s.loaded.model, s.x, s.target, m, layer=lay, settings=st_, progress=progress,
                            cancel=cancel))
        if r is None:
            jobs.show_problem(key)
            continue
        rows.append({"method": METHODS[method].label, "re-initialised": ", ".join(r.steps[-1]),
                     "rank correlation": round(r.rank_correlation[-1], 3),
                     "flagged": "⚠️ barely changes" if r.flagged else "ok"})
        signed = METHODS[method].signed
        c1, c2 = st.columns(2)
        c1.image(overlay(s.seen, r.original, alpha=methods.alpha, signed=signed, display_size=192),
                 caption=f"{METHODS[method].label}: trained")
        c2.image(overlay(s.seen, r.randomised[-1], alpha=methods.alpha, signed=signed, display_size=192),
                 caption=f"{METHODS[method].label}: top layers re-initialised")
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
