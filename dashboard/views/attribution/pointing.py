"""The Attribution page's pointing game over the embedded shapes test set."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import attribution_service as view
from dashboard.views.attribution.common import Jobs, Methods, pressed_once, short_name
from resnet_core.attribution import METHODS, shapes_evaluation


def pointing_game(models: dict, methods: Methods, jobs: Jobs) -> None:
    st.caption("Over a batch of the embedded shapes test set: does the map's maximum fall on the object "
               "(pointing game), and what share of the positive attribution lies on it? Chance is the share "
               "of the image the objects cover. The target is the true class for models trained on the "
               "shapes, else the model's prediction.")
    n_images = st.slider("Test images", 8, 64, 32, 8, key="attr_point_n")
    if not pressed_once("Run the pointing game", "attr_run_point"):
        return
    rows = []
    for spec, loaded in models.items():
        for method in methods.names:
            layer = methods.layer(loaded, method)
            setting = methods.settings.get(method)
            key = view.cell_key("pointing", spec, method, n_images, setting, layer)
            r = jobs.ensure(key, f"pointing game · {METHODS[method].label} · {short_name(spec)}",
                            lambda progress, cancel, m=method, lay=layer, li=loaded, st_=setting: shapes_evaluation(
                                li, [m], n_images=n_images, seed=view.SHAPES_SEED, layer=lay,
                                settings={m: st_}, progress=progress, cancel=cancel)[0])
            if r is None:
                jobs.show_problem(key)
                continue
            rows.append({"model": short_name(spec), "method": METHODS[method].label,
                         "pointing game": round(r.pointing, 3), "mass inside mask": round(r.mass_inside, 3),
                         "chance": round(r.chance, 3), "images": r.n_images, "seconds": round(r.seconds, 2)})
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
