"""The Attribution page's deletion / insertion check (Petsiuk et al. 2018)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import attribution_service as view
from dashboard.views.attribution.common import Jobs, Methods, pressed_once, Subject
from resnet_core.attribution import METHODS, attribute, deletion_insertion


def faithfulness_check(subject: Subject, methods: Methods, jobs: Jobs) -> None:
    st.caption("Petsiuk et al. 2018: pixels are removed (set to the mean colour) or inserted (into a blurred copy) "
               "in decreasing attribution order; the target probability is plotted. A random order is the reference.")
    if not pressed_once("Run deletion / insertion", "attr_run_faith"):
        return
    s = subject
    curves, rows = {}, []
    for method in methods.names:
        layer = methods.layer(s.loaded, method)
        setting = methods.settings.get(method)
        key = view.cell_key("faithfulness", s.image["key"], s.spec, method, s.target, setting, layer)

        def faith(progress, cancel, m=method, lay=layer, st_=setting):
            attr_map = attribute(s.loaded.model, s.x, s.target, m, layer=lay, settings=st_,
                                 progress=lambda f: progress(f / 2), cancel=cancel)
            return deletion_insertion(s.loaded.model, s.x, s.target, attr_map,
                                      progress=lambda f: progress(0.5 + f / 2), cancel=cancel)
        r = jobs.ensure(key, f"deletion/insertion · {METHODS[method].label}", faith)
        if r is None:
            jobs.show_problem(key)
            continue
        curves[method] = r
        rows.append({"method": METHODS[method].label, "deletion AUC": round(r.deletion_auc, 3),
                     "random-order deletion AUC": round(r.random_deletion_auc, 3),
                     "insertion AUC": round(r.insertion_auc, 3),
                     "random-order insertion AUC": round(r.random_insertion_auc, 3)})
    if curves:
        st.plotly_chart(view.faithfulness_figure(curves), key="attr_faith_fig")
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
