"""Attribution: Captum saliency maps on uploaded photos or shapes samples, for runs trained here, community
CIFAR-10 checkpoints and ImageNet ResNets, with the checks that tell whether a map means anything."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from dashboard import attribution_view as view
from dashboard import downloads
from resnet_core.nets import community
from resnet_core.attribution import (METHODS, default_layer, deletion_insertion, layer_choices,
                                     model_randomisation_check, overlay, png_bytes, predict, shapes_evaluation,
                                     attribute)
from resnet_core.data.images import is_tiny, model_view, normalize_image

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
AUTO_LAYER = "(last block)"
SHORT_WAIT_S = 20  # a fast method's result is awaited in the same script run, so it appears without polling

st.title("Attribution")
st.caption("Which pixels drive a prediction, by eight Captum methods, and whether the maps survive the "
           "sanity checks of Adebayo et al. 2018 and Petsiuk et al. 2018.")
service = view.get_service()
root = view.runs_dir()
state = st.session_state

# --- images --------------------------------------------------------------------------------------------
images = []  # dicts: key, name, img (PIL RGB), mask (bool HxW) or None, label or None
source = st.radio("Images", ["Upload", "Shapes test set"], horizontal=True, key="attr_source")
if source == "Upload":
    files = st.file_uploader("Upload one or more images (PNG, JPEG, WebP, BMP, GIF first frame, TIFF)",
                             type=UPLOAD_TYPES, accept_multiple_files=True, key="attr_uploads")
    files = list(files or [])
    if len(files) > view.MAX_UPLOADS:
        st.error(f"{len(files)} images uploaded; this server uses at most {view.MAX_UPLOADS} at once: "
                 f"remove {len(files) - view.MAX_UPLOADS}.")
        files = files[:view.MAX_UPLOADS]
    pixels = 0
    for f in files:
        data = f.getvalue()
        try:
            img = view.decode_upload(data)
        except view.USER_ERRORS as e:
            st.error(f"{f.name}: {e}")
            continue
        pixels += img.width * img.height
        if pixels > view.SESSION_MAX_PIXELS:
            st.error(f"{f.name}: the images so far hold more than {view.SESSION_MAX_PIXELS / 1e6:.0f} MP together, "
                     "this server's limit for one session: remove some or downscale them.")
            break
        images.append({"key": f"upload:{view.digest(data)}", "name": f.name, "img": img, "mask": None, "label": None})
        if is_tiny(img):
            st.warning(f"{f.name} is only {img.width}x{img.height} pixels: it is upscaled to the model's input, "
                       "so its maps show little.")
else:
    sx, sy, smasks, sclasses = view.shapes_samples()
    picks = st.multiselect("Samples of the embedded shapes test set (ground-truth mask shown beside)",
                           list(range(len(sx))), default=[0, 1], key="attr_samples",
                           format_func=lambda i: f"#{i} {sclasses[sy[i]]}")
    for i in picks:
        images.append({"key": f"shapes:{view.SHAPES_SEED}:{i}", "name": f"shapes #{i} ({sclasses[sy[i]]})",
                       "img": Image.fromarray(sx[i]), "mask": smasks[i], "label": sclasses[sy[i]]})

# --- models --------------------------------------------------------------------------------------------
options = dict(view.run_models(root))
# The community CIFAR-10 nets by name, each with its size and whether it is already downloaded.
options.update({name: downloads.community_label(name) for name in community.NAMES})
path = st.text_input("Community CIFAR-10 checkpoint by path on the server (akamaster's .th format, or a run's .pt; "
                     "inside the server's data folders, e.g. data/resnet20-12fca82f.th)", key="attr_ckpt_path").strip()
if path:
    try:
        path = view.checkpoint_path(path)
        options[f"ckpt:{path}"] = f"checkpoint {path}"
    except view.USER_ERRORS as e:
        st.error(str(e))
uploaded_ckpt = st.file_uploader("... or upload a checkpoint (.th, .pt, .pth; loaded with weights_only=True)",
                                 type=["th", "pt", "pth", "ckpt"], key="attr_ckpt_upload")
uploaded_bytes = {}
if uploaded_ckpt is not None:
    data = uploaded_ckpt.getvalue()
    spec = f"upload:{view.digest(data)}"
    options[spec], uploaded_bytes[spec] = f"uploaded {uploaded_ckpt.name}", data
options.update(view.imagenet_models())

# A checkpoint just named or uploaded is selected for the user; vanished options are dropped.
fresh = [s for s in options if s.startswith(("ckpt:", "upload:")) and s not in state.get("attr_known", [])]
state["attr_known"] = list(options)
selected = [s for s in state.get("attr_models", []) if s in options] + fresh
if not selected and "attr_models" not in state:
    selected = [s for s in options if s.startswith("run:")][:1]
state["attr_models"] = list(dict.fromkeys(selected))
model_specs = st.multiselect("Models (several: one method across models, e.g. a plain net and its residual twin)",
                             list(options), key="attr_models", format_func=lambda s: options.get(s, s))

models = {}
for spec in model_specs:
    try:
        if spec.startswith("upload:"):
            models[spec] = view.get_uploaded_model(spec, uploaded_bytes[spec])
        elif community.is_community(spec):
            # Downloaded on first use, in the background with a progress bar; used once it is here.
            if downloads.community_checkpoint(spec, key=f"attr_dl_{spec}") is not None:
                models[spec] = view.get_model(spec, root)
        else:
            models[spec] = view.get_model(spec, root)
    except view.USER_ERRORS as e:
        st.error(f"{options.get(spec, spec)}: {e}")

# --- methods -------------------------------------------------------------------------------------------
method_names = st.multiselect("Methods", list(METHODS), default=["saliency", "gradcam"], key="attr_methods",
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

if not images:
    st.info("Upload an image or pick shapes samples to begin.")
    st.stop()
if not models:
    if not any(community.is_community(s) for s in model_specs):  # else: its download's progress is shown
        st.info("Pick a model: a stored run, a community CIFAR-10 checkpoint, a checkpoint by path or upload, "
                "or an ImageNet ResNet.")
    st.stop()
if not method_names:
    st.info("Pick at least one method.")
    st.stop()


def layer_for(loaded) -> str | None:
    names = layer_choices(loaded.model)
    return layer_pick if layer_pick in names else default_layer(loaded.model)


def short_name(spec: str) -> str:
    return spec.split(":", 1)[1].rsplit("/", 1)[-1][:40]


status_area = st.container()
pending: list[str] = []


def ensure(key: str, label: str, fn, long_running: bool = True):
    """The cached result, or None while its job runs; submits the job unless the user cancelled it."""
    result = service.result(key)
    if result is not None:
        return result
    job = service.job(key)
    if job is not None and job.state in ("cancelled", "failed"):
        return None
    service.submit(key, label, fn)
    if not long_running:
        service.wait([key], SHORT_WAIT_S)
        result = service.result(key)
        if result is not None:
            return result
    pending.append(key)
    return None


def show_job_problem(key: str) -> bool:
    job = service.job(key)
    if job is None or job.active:
        return False
    if job.state == "failed":
        st.error(f"{job.label}: {job.error}")
    else:
        st.warning(f"{job.label}: cancelled")
    st.button("Run again", key=f"again_{key}", on_click=service.forget, args=(key,))
    return job.state in ("failed", "cancelled")


def compute_map(loaded, x, target, method, layer):
    def fn(progress, cancel):
        t0 = time.perf_counter()
        m = attribute(loaded.model, x, target, method, layer=layer, settings=settings.get(method),
                      progress=progress, cancel=cancel)
        return m, time.perf_counter() - t0
    return fn


# --- per image: predictions, target, maps -----------------------------------------------------------------
prepared = []  # (image, spec, loaded, view, x, target) for the checks below
for im in images:
    st.subheader(im["name"])
    cols = st.columns([1, 1, 3] if im["mask"] is not None else [1, 4])
    cols[0].image(im["img"].resize((160, 160), Image.Resampling.NEAREST) if im["img"].width < 64 else im["img"],
                  caption=f"{im['img'].width}x{im['img'].height}", width=160)
    if im["mask"] is not None:
        cols[1].image(view.mask_image(im["mask"], 160), caption="ground-truth mask", width=160)
    cells = []  # (spec, method, key, payload)
    with cols[-1]:
        pcols = st.columns(len(models))
        for pc, (spec, loaded) in zip(pcols, models.items()):
            seen = model_view(im["img"], loaded.input_size)
            x = normalize_image(seen, loaded.mean, loaded.std)
            top5 = predict(loaded, x)
            pred = loaded.classes.index(top5[0][0])
            probs = dict(top5)
            pc.markdown(f"**{short_name(spec)}** · {loaded.source}")
            pc.dataframe(pd.DataFrame(view.top5_rows(top5)), hide_index=True, width="stretch")
            target = pc.selectbox("Target class", list(range(len(loaded.classes))), index=pred,
                                  key=f"target_{im['key']}_{spec}",
                                  format_func=lambda i, c=loaded.classes, p=probs: c[i] + (f" ({100 * p[c[i]]:.1f}%)" if c[i] in p else ""))
            prepared.append((im, spec, loaded, seen, x, target))
            for method in method_names:
                layer = layer_for(loaded) if METHODS[method].needs_layer else None
                key = view.cell_key(im["key"], spec, method, target, settings.get(method), layer)
                label = f"{METHODS[method].label} · {short_name(spec)} · {im['name']}"
                result = ensure(key, label, compute_map(loaded, x, target, method, layer), METHODS[method].long_running)
                cells.append((spec, method, key, result, seen, loaded, target, layer))

    across_models = len(method_names) == 1 and len(models) > 1
    groups = [[c for c in cells if c[0] == spec] for spec in models] if not across_models else [cells]
    for group in groups:
        gcols = st.columns(max(len(group), 1))
        for col, (spec, method, key, result, seen, loaded, target, layer) in zip(gcols, group):
            with col:
                title = f"{METHODS[method].label} · {short_name(spec)}" + (f" · {layer}" if layer else "")
                if result is None:
                    if not show_job_problem(key):
                        st.caption(f"{title}: computing ...")
                    continue
                attr_map, seconds = result
                picture = overlay(seen, attr_map, alpha=alpha, signed=METHODS[method].signed)
                st.image(picture, caption=f"{title} · {loaded.classes[target]} · {seconds:.2f} s", width="stretch")
                stem = im["name"].rsplit(".", 1)[0].replace(" ", "_").replace("#", "")
                st.download_button("Download PNG", png_bytes(picture), file_name=f"{stem}_{short_name(spec)}_{method}.png",
                                   mime="image/png", key=f"dl_{key}")

# --- checks ----------------------------------------------------------------------------------------------
st.header("Checks that the maps mean something")
choice = st.selectbox("Image and model for the randomisation and deletion/insertion checks",
                      list(range(len(prepared))), key="attr_check_subject",
                      format_func=lambda i: f"{prepared[i][0]['name']} · {short_name(prepared[i][1])}")
im, spec, loaded, seen, x, target = prepared[choice]

rand_tab, faith_tab, point_tab = st.tabs(["Model randomisation", "Deletion / insertion", "Pointing game (shapes)"])
with rand_tab:
    st.caption("Adebayo et al. 2018: the top layers (classifier and last stage) are re-initialised and the "
               "map recomputed. A map whose Spearman rank correlation with the original stays above 0.5 "
               "barely depends on what the model learned, and is flagged.")
    if st.button("Run the randomisation check", key="attr_run_rand"):
        state["attr_rand_on"] = True
    if state.get("attr_rand_on"):
        rows = []
        for method in method_names:
            layer = layer_for(loaded) if METHODS[method].needs_layer else None
            key = view.cell_key("randomisation", im["key"], spec, method, target, settings.get(method), layer)
            r = ensure(key, f"randomisation · {METHODS[method].label}",
                       lambda progress, cancel, m=method, lay=layer: model_randomisation_check(
                           loaded.model, x, target, m, layer=lay, settings=settings.get(m), progress=progress,
                           cancel=cancel))
            if r is None:
                show_job_problem(key)
                continue
            rows.append({"method": METHODS[method].label, "re-initialised": ", ".join(r.steps[-1]),
                         "rank correlation": round(r.rank_correlation[-1], 3),
                         "flagged": "⚠️ barely changes" if r.flagged else "ok"})
            c1, c2 = st.columns(2)
            c1.image(overlay(seen, r.original, alpha=alpha, signed=METHODS[method].signed, display_size=192),
                     caption=f"{METHODS[method].label}: trained")
            c2.image(overlay(seen, r.randomised[-1], alpha=alpha, signed=METHODS[method].signed, display_size=192),
                     caption=f"{METHODS[method].label}: top layers re-initialised")
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

with faith_tab:
    st.caption("Petsiuk et al. 2018: pixels are removed (set to the mean colour) or inserted (into a blurred "
               "copy) in decreasing attribution order; the target probability is plotted. A random order is "
               "the reference.")
    if st.button("Run deletion / insertion", key="attr_run_faith"):
        state["attr_faith_on"] = True
    if state.get("attr_faith_on"):
        curves, rows = {}, []
        for method in method_names:
            layer = layer_for(loaded) if METHODS[method].needs_layer else None
            key = view.cell_key("faithfulness", im["key"], spec, method, target, settings.get(method), layer)

            def faith(progress, cancel, m=method, lay=layer):
                attr_map = attribute(loaded.model, x, target, m, layer=lay, settings=settings.get(m),
                                     progress=lambda f: progress(f / 2), cancel=cancel)
                return deletion_insertion(loaded.model, x, target, attr_map, progress=lambda f: progress(0.5 + f / 2),
                                          cancel=cancel)
            r = ensure(key, f"deletion/insertion · {METHODS[method].label}", faith)
            if r is None:
                show_job_problem(key)
                continue
            curves[method] = r
            rows.append({"method": METHODS[method].label, "deletion AUC": round(r.deletion_auc, 3),
                         "random-order deletion AUC": round(r.random_deletion_auc, 3),
                         "insertion AUC": round(r.insertion_auc, 3),
                         "random-order insertion AUC": round(r.random_insertion_auc, 3)})
        if curves:
            st.plotly_chart(view.faithfulness_figure(curves), key="attr_faith_fig")
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

with point_tab:
    st.caption("Over a batch of the embedded shapes test set: does the map's maximum fall on the object "
               "(pointing game), and what share of the positive attribution lies on it? Chance is the share "
               "of the image the objects cover. The target is the true class for models trained on the "
               "shapes, else the model's prediction.")
    n_images = st.slider("Test images", 8, 64, 32, 8, key="attr_point_n")
    if st.button("Run the pointing game", key="attr_run_point"):
        state["attr_point_on"] = True
    if state.get("attr_point_on"):
        rows = []
        for spec_i, loaded_i in models.items():
            for method in method_names:
                layer = layer_for(loaded_i) if METHODS[method].needs_layer else None
                key = view.cell_key("pointing", spec_i, method, n_images, settings.get(method), layer)
                r = ensure(key, f"pointing game · {METHODS[method].label} · {short_name(spec_i)}",
                           lambda progress, cancel, m=method, lay=layer, li=loaded_i: shapes_evaluation(
                               li, [m], n_images=n_images, seed=view.SHAPES_SEED, layer=lay,
                               settings={m: settings.get(m)}, progress=progress, cancel=cancel)[0])
                if r is None:
                    show_job_problem(key)
                    continue
                rows.append({"model": short_name(spec_i), "method": METHODS[method].label,
                             "pointing game": round(r.pointing, 3), "mass inside mask": round(r.mass_inside, 3),
                             "chance": round(r.chance, 3), "images": r.n_images, "seconds": round(r.seconds, 2)})
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


# --- progress and cancel ------------------------------------------------------------------------------------
@st.fragment(run_every=0.5)
def progress_panel(keys: list[str]) -> None:
    jobs = [j for j in (service.job(k) for k in keys) if j is not None and j.active]
    if not jobs:
        st.rerun()  # everything finished: redraw the page with the results
    for j in jobs:
        st.progress(min(max(j.progress, 0.0), 1.0), text=view.job_progress_text(j))
    if st.button("Cancel", key="attr_cancel", type="secondary"):
        service.cancel(keys)
        st.rerun()


if pending:
    with status_area:
        progress_panel(pending)
