"""The Attribution page's images: uploads (each decoded with one error line for a bad file, within the
session's pixel budget) or samples of the embedded shapes test set with their ground-truth masks."""
from __future__ import annotations

import streamlit as st
from PIL import Image

from dashboard import attribution_service as view
from resnet_core.data.images import is_tiny

UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]


def pick_images() -> list[dict]:
    """The images picked, as dicts: key, name, img (PIL RGB), mask (bool HxW) or None, label or None."""
    source = st.radio("Images", ["Upload", "Shapes test set"], horizontal=True, key="attr_source")
    return uploaded_images() if source == "Upload" else shapes_images()


def uploaded_images() -> list[dict]:
    images = []
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
    return images


def shapes_images() -> list[dict]:
    sx, sy, smasks, sclasses = view.shapes_samples()
    picks = st.multiselect("Samples of the embedded shapes test set (ground-truth mask shown beside)",
                           list(range(len(sx))), default=[0, 1], key="attr_samples",
                           format_func=lambda i: f"#{i} {sclasses[sy[i]]}")
    return [{"key": f"shapes:{view.SHAPES_SEED}:{i}", "name": f"shapes #{i} ({sclasses[sy[i]]})",
             "img": Image.fromarray(sx[i]), "mask": smasks[i], "label": sclasses[sy[i]]} for i in picks]
