"""AppTests of the Attribution views one at a time (``dashboard/views/attribution/``): the upload limit,
the method settings as the jobs receive them, and the deletion / insertion check on a stored run."""
from __future__ import annotations

import io
import json

from PIL import Image
from streamlit.testing.v1 import AppTest
from tests.conftest import store_tiny_run


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (i * 20, 100, 50)).save(buf, format="PNG")
    return buf.getvalue()


def test_more_uploads_than_the_limit_are_refused_with_one_line():
    """Bug: every upload would be decoded and attributed, however many a browser sends."""
    def app():
        import streamlit as st

        from dashboard.views.attribution.images import pick_images
        st.write(f"images: {[im['name'] for im in pick_images()]}")

    from dashboard.attribution_service import MAX_UPLOADS
    at = AppTest.from_function(app, default_timeout=60).run()
    files = [(f"p{i}.png", _png(i), "image/png") for i in range(MAX_UPLOADS + 1)]
    at.file_uploader(key="attr_uploads").set_value(files).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"{MAX_UPLOADS + 1} images uploaded; this server uses at most {MAX_UPLOADS} at once: remove 1."]
    assert at.markdown[0].value == f"images: {[f'p{i}.png' for i in range(MAX_UPLOADS)]}"


def test_method_settings_reach_the_jobs_as_set():
    """Bug: a slider wired to the wrong method's setting, or the occlusion window's 0 passed on as 0."""
    def app():
        import json

        import streamlit as st

        from dashboard.views.attribution.methods import pick_methods
        m = pick_methods({})
        st.write("settings: " + json.dumps({"names": m.names, "settings": m.settings, "layer": m.layer_pick,
                                            "alpha": m.alpha}))

    at = AppTest.from_function(app, default_timeout=60).run()
    assert json.loads(at.markdown[0].value.removeprefix("settings: ")) == {
        "names": ["saliency", "gradcam"], "layer": "(last block)", "alpha": 0.5,
        "settings": {"ig": {"n_steps": 50}, "smoothgrad": {"nt_samples": 20, "noise_level": 0.15},
                     "occlusion": {"window": None}}}
    at.slider(key="attr_ig_steps").set_value(8)
    at.slider(key="attr_nt_samples").set_value(4)
    at.number_input(key="attr_window").set_value(6).run()
    settings = json.loads(at.markdown[0].value.removeprefix("settings: "))["settings"]
    assert settings == {"ig": {"n_steps": 8}, "smoothgrad": {"nt_samples": 4, "noise_level": 0.15},
                        "occlusion": {"window": 6}}


def _faithfulness(run_id: str) -> None:
    from PIL import Image

    from dashboard import attribution_service as view
    from dashboard.views.attribution.common import Jobs, Methods, Subject
    from dashboard.views.attribution.faithfulness import faithfulness_check
    from resnet_core.data.images import model_view, normalize_image

    spec = f"run:{run_id}"
    loaded = view.get_model(spec, view.runs_dir())
    sx, _, _, _ = view.shapes_samples()
    seen = model_view(Image.fromarray(sx[0]), loaded.input_size)
    x = normalize_image(seen, loaded.mean, loaded.std)
    methods = Methods(["saliency", "gradcam"], {}, "no-such-layer", 0.5)   # Grad-CAM falls back to the last block
    faithfulness_check(Subject({"key": "shapes:test:0", "name": "shapes #0"}, spec, loaded, seen, x, 0), methods,
                       Jobs(view.get_service()))


def test_deletion_insertion_of_a_stored_run_draws_both_curves_per_method(runs_dir):
    """Bug: a method's curves or AUCs left out, or the check started before its button is pressed."""
    from dashboard.attribution_service import get_service

    run_id = store_tiny_run(runs_dir, "tiny-faith", "tiny")
    at = AppTest.from_function(_faithfulness, args=(run_id,), default_timeout=120).run()
    assert not at.exception and not at.get("plotly_chart") and not at.dataframe
    at.button(key="attr_run_faith").click().run()
    service = get_service()
    assert service.wait(list(service._jobs), 120), "deletion / insertion jobs did not finish"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (fig,) = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    names = [t["name"] for t in fig["data"]]
    assert [n.rsplit(" AUC", 1)[0] for n in names] == ["Saliency deletion", "Saliency insertion",
                                                        "Grad-CAM deletion", "Grad-CAM insertion"], names
    (table,) = [df.value for df in at.dataframe]
    assert list(table["method"]) == ["Saliency", "Grad-CAM"]
    for column in ("deletion AUC", "random-order deletion AUC", "insertion AUC", "random-order insertion AUC"):
        assert table[column].between(0, 1).all(), column
    # the legend carries the same AUCs as the table
    assert names[0].endswith(f"AUC {table['deletion AUC'].iloc[0]:.3f}")
