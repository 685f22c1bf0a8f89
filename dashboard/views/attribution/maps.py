"""The Attribution page's maps: per image, each model's top-5 predictions and target class, and one map
per method and model (side by side across models when one method is picked for several)."""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st
from PIL import Image

from dashboard import attribution_service as view
from dashboard.views.attribution.common import Jobs, Methods, Subject, short_name
from resnet_core.attribution import METHODS, attribute, overlay, png_bytes, predict
from resnet_core.data.images import model_view, normalize_image


def compute_map(loaded, x, target, method, layer, settings):
    def fn(progress, cancel):
        t0 = time.perf_counter()
        m = attribute(loaded.model, x, target, method, layer=layer, settings=settings,
                      progress=progress, cancel=cancel)
        return m, time.perf_counter() - t0
    return fn


def image_maps(images: list[dict], models: dict, methods: Methods, jobs: Jobs) -> list[Subject]:
    """Draws every image's predictions and maps; returns each (image, model) with its target class."""
    prepared = []
    for im in images:
        prepared += one_image(im, models, methods, jobs)
    return prepared


def one_image(im: dict, models: dict, methods: Methods, jobs: Jobs) -> list[Subject]:
    st.subheader(im["name"])
    cols = st.columns([1, 1, 3] if im["mask"] is not None else [1, 4])
    cols[0].image(im["img"].resize((160, 160), Image.Resampling.NEAREST) if im["img"].width < 64 else im["img"],
                  caption=f"{im['img'].width}x{im['img'].height}", width=160)
    if im["mask"] is not None:
        cols[1].image(view.mask_image(im["mask"], 160), caption="ground-truth mask", width=160)
    prepared, cells = [], []  # cells: (spec, method, key, result, seen, loaded, target, layer)
    with cols[-1]:
        for pc, (spec, loaded) in zip(st.columns(len(models)), models.items()):
            seen = model_view(im["img"], loaded.input_size)
            x = normalize_image(seen, loaded.mean, loaded.std)
            top5 = predict(loaded, x)
            pred = loaded.classes.index(top5[0][0])
            probs = dict(top5)
            pc.markdown(f"**{short_name(spec)}** · {loaded.source}")
            pc.dataframe(pd.DataFrame(view.top5_rows(top5)), hide_index=True, width="stretch")
            target = pc.selectbox("Target class", list(range(len(loaded.classes))), index=pred,
                                  key=f"target_{im['key']}_{spec}",
                                  format_func=lambda i, c=loaded.classes, p=probs:
                                  c[i] + (f" ({100 * p[c[i]]:.1f}%)" if c[i] in p else ""))
            prepared.append(Subject(im, spec, loaded, seen, x, target))
            for method in methods.names:
                layer = methods.layer(loaded, method)
                setting = methods.settings.get(method)
                key = view.cell_key(im["key"], spec, method, target, setting, layer)
                label = f"{METHODS[method].label} · {short_name(spec)} · {im['name']}"
                result = jobs.ensure(key, label, compute_map(loaded, x, target, method, layer, setting),
                                     METHODS[method].long_running)
                cells.append((spec, method, key, result, seen, loaded, target, layer))

    across_models = len(methods.names) == 1 and len(models) > 1
    groups = [[c for c in cells if c[0] == spec] for spec in models] if not across_models else [cells]
    for group in groups:
        gcols = st.columns(max(len(group), 1))
        for col, (spec, method, key, result, seen, loaded, target, layer) in zip(gcols, group):
            with col:
                title = f"{METHODS[method].label} · {short_name(spec)}" + (f" · {layer}" if layer else "")
                if result is None:
                    if not jobs.show_problem(key):
                        st.caption(f"{title}: computing ...")
                    continue
                attr_map, seconds = result
                picture = overlay(seen, attr_map, alpha=methods.alpha, signed=METHODS[method].signed)
                st.image(picture, caption=f"{title} · {loaded.classes[target]} · {seconds:.2f} s", width="stretch")
                stem = im["name"].rsplit(".", 1)[0].replace(" ", "_").replace("#", "")
                st.download_button("Download PNG", png_bytes(picture),
                                   file_name=f"{stem}_{short_name(spec)}_{method}.png", mime="image/png",
                                   key=f"dl_{key}")
    return prepared
