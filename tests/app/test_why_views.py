"""AppTests of the Why it works views one at a time (``dashboard/views/why/``): what a tab says when it has
nothing to run, the shared run panel's export and its one error line for a result it cannot draw."""
from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest


def _tab(module_name: str) -> None:
    """One tab of the page, drawn alone with the page's own images and device picker."""
    import importlib

    from dashboard.views.why.common import images_and_device, section
    section(images_and_device(), importlib.import_module(f"dashboard.views.why.{module_name}"))


def _run_panel(draw_fails: bool) -> None:
    """The shared run panel with a result already in the session (as after a finished job)."""
    import plotly.graph_objects as go
    import streamlit as st

    from dashboard.views.why.common import run_panel, show, images_and_device

    def draw(results):
        if draw_fails:
            return {"Chart": results["net"]["missing"]}  # a result lacking a field the chart needs
        fig = go.Figure([go.Scatter(x=[1, 2], y=r["y"], name=k) for k, r in results.items()])
        return show({"Chart": fig}, "panel")
    st.session_state.setdefault("why_panel_shown", (["k-old"], {"net": {"y": [3.0, 4.0]}}))
    run_panel(images_and_device(), "panel", [], draw, problem="Pick something.")


def test_gradient_flow_without_a_depth_says_so_and_cannot_start(runs_dir):
    """Bug: with no depth picked, Start would submit nothing (or fail) instead of saying what to do."""
    at = AppTest.from_function(_tab, args=("gradient_flow",), default_timeout=60).run()
    assert at.button(key="why_gradient-flow_start").disabled is False
    at.multiselect(key="why_gf_depths").set_value([]).run()
    assert not at.exception
    assert [i.value for i in at.info] == ["Pick at least one depth."]
    assert at.button(key="why_gradient-flow_start").disabled


def test_paths_of_a_trained_run_without_runs_says_to_train_one(runs_dir):
    """Bug: the trained-run mode with no stored residual run would fail on an empty selectbox."""
    at = AppTest.from_function(_tab, args=("paths",), default_timeout=60).run()
    at.radio(key="why_pa_mode").set_value("a trained run").run()
    assert not at.exception
    assert [i.value for i in at.info] == ["No stored residual run has a checkpoint yet: train one on the Train page."]
    assert at.button(key="why_paths_start").disabled
    assert "why_pa_run" not in [s.key for s in at.selectbox]


def test_interpolate_and_landscape_without_runs_offer_no_start(runs_dir):
    """Bug: a tab over stored runs would draw an empty multiselect and a Start that runs nothing."""
    for module_name, name in (("interpolate", "interpolate"), ("landscape", "landscape")):
        at = AppTest.from_function(_tab, args=(module_name,), default_timeout=60).run()
        assert not at.exception
        assert len(at.info) == 1 and at.info[0].value.startswith("No stored run has a checkpoint yet"), module_name
        assert not [b for b in at.button if b.key == f"why_{name}_start"]


def test_a_missing_analysis_is_one_line_and_its_tab_is_not_drawn(runs_dir, monkeypatch):
    """Bug: a tab whose analysis the core lacks would draw its widgets and fail on Start."""
    from resnet_core import analysis
    from dashboard.views.why.captions import CAPTIONS

    monkeypatch.delitem(analysis.ANALYSES, "landscape")
    at = AppTest.from_function(_tab, args=("landscape",), default_timeout=60).run()
    assert not at.exception
    assert [c.value for c in at.caption] == [CAPTIONS["landscape"]]
    assert [i.value for i in at.info] == [
        "This analysis (`landscape`) is not available in this version of resnet_core."]
    assert not at.button and not at.multiselect


def test_run_panel_shows_the_last_result_with_its_exports(runs_dir):
    at = AppTest.from_function(_run_panel, args=(False,), default_timeout=60).run()
    assert not at.exception and not at.error
    assert [i.value for i in at.info] == ["Pick something."]
    assert at.button(key="why_panel_start").disabled
    assert any(c.value.startswith("Showing the last complete result") for c in at.caption)
    (fig,) = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    assert [(t["name"], t["y"]) for t in fig["data"]] == [("net", [3.0, 4.0])]
    assert len(at.get("download_button")) == 2 and at.selectbox(key="why_panel_export_chart").options == ["Chart"]


def test_run_panel_a_result_it_cannot_draw_is_one_error_line(runs_dir):
    """Bug: a result lacking a field would put a traceback in the page, or draw half its exports."""
    at = AppTest.from_function(_run_panel, args=(True,), default_timeout=60).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The result could not be drawn (KeyError: 'missing')."]
    assert not at.get("download_button") and not at.get("plotly_chart")


def test_paths_lesion_and_responses_show_the_cores_defaults(runs_dir):
    """The page's inputs start at the core's defaults, sized to the page's minute (bench/why_defaults.py),
    the same the CLI uses. Bug caught: the page's lesion study defaulted to 500 images while the core
    said 1,000, and paths kept 8 draws over 2 batches after the core's grew."""
    from streamlit.testing.v1 import AppTest

    from resnet_core.analysis import ANALYSES

    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "pages" / "why.py"), default_timeout=120).run()
    shown = {w.key: w.value for w in at.number_input}
    paths, lesion, responses = (ANALYSES[n].defaults for n in ("paths", "lesion", "responses"))
    expected = {"why_pa_draws": paths["draws"], "why_pa_batches": paths["batches"],
                "why_pa_batch": paths["batch_size"], "why_le_images": lesion["images"],
                "why_le_draws": lesion["draws"], "why_re_images": responses["images"]}
    assert {k: shown.get(k) for k in expected} == expected, sorted(shown)
