"""The Attribution page's models: stored runs, community CIFAR-10 checkpoints (downloaded on first use),
a checkpoint by path or upload, and the ImageNet ResNets; each loaded, or refused with one line."""
from __future__ import annotations

import streamlit as st

from dashboard import attribution_service as view
from dashboard import downloads
from resnet_core.nets import community


def model_options(root: str) -> tuple[dict, dict]:
    """(every model offered: spec -> label, the bytes of an uploaded checkpoint by spec), with the path
    box and the checkpoint uploader."""
    options = dict(view.run_models(root))
    # The community CIFAR-10 nets by name, each with its size and whether it is already downloaded.
    options.update({name: downloads.community_label(name) for name in community.NAMES})
    path = st.text_input("Community CIFAR-10 checkpoint by path on the server (akamaster's .th format, or a run's "
                         ".pt; inside the server's data folders, e.g. data/resnet20-12fca82f.th)",
                         key="attr_ckpt_path").strip()
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
    return options, uploaded_bytes


def pick_models(root: str) -> tuple[list[str], dict]:
    """(the specs picked, the models loaded by spec): a community checkpoint still downloading is picked
    but not loaded yet."""
    state = st.session_state
    options, uploaded_bytes = model_options(root)
    # A checkpoint just named or uploaded is selected for the user; vanished options are dropped.
    fresh = [s for s in options if s.startswith(("ckpt:", "upload:")) and s not in state.get("attr_known", [])]
    state["attr_known"] = list(options)
    selected = [s for s in state.get("attr_models", []) if s in options] + fresh
    if not selected and "attr_models" not in state:
        selected = [s for s in options if s.startswith("run:")][:1]
    state["attr_models"] = list(dict.fromkeys(selected))
    model_specs = st.multiselect("Models (several: one method across models, e.g. a plain net and its residual "
                                 "twin)", list(options), key="attr_models", format_func=lambda s: options.get(s, s))
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
    return model_specs, models
