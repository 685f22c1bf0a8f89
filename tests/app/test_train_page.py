"""AppTest of the Train page: renders, has its controls, refuses invalid settings next to the widget,
and a tiny run started from the page produces metrics and charts."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.worker import RunManager
from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "train.py")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv("RESNET_LAB_RUNS", str(d))
    yield d
    RunManager.shared(d).shutdown(timeout=60)


def tiny_page(steps: int = 10) -> AppTest:
    """The page with the sidebar set to a run that trains in seconds."""
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="depth_basic").set_value(8)
    at.number_input(key="n_train").set_value(512)
    at.number_input(key="n_test").set_value(128)
    at.number_input(key="steps").set_value(steps)
    at.number_input(key="eval_every").set_value(5)
    at.number_input(key="features_every").set_value(5)
    at.select_slider(key="batch_size").set_value(32)
    at.selectbox(key="device").set_value("cpu")
    return at.run()


def test_page_renders_with_its_controls(runs_dir):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    keys = {b.key for b in at.button}
    assert {"start", "start_twin", "preset_Degradation", "preset_Shortcut options A/B/C",
            "preset_Post- vs pre-activation"} <= keys
    for key in ("model_kind", "block", "shortcut", "length_unit"):
        assert at.radio(key=key)
    for key in ("depth_basic", "init", "data_name", "device", "schedule"):
        assert at.selectbox(key=key)
    assert at.selectbox(key="depth_basic").options == [str(d) for d in (8, 14, 20, 26, 32, 38, 44, 50, 56, 62, 68,
                                                                        74, 80, 86, 92, 98, 104, 110, 116, 122, 128, 134,
                                                                        140, 146, 152, 158, 164, 170, 176, 182, 188, 194,
                                                                        200, 206, 212, 218)]
    refresh = at.segmented_control(key="refresh")
    assert refresh.value.startswith("auto") and {"1 s", "2 s", "5 s"} <= set(refresh.options)
    at.radio(key="block").set_value("bottleneck").run()
    assert "11" in at.selectbox(key="depth_bottleneck").options   # 9n+2 depths only
    assert not at.button(key="start").disabled


def test_an_invalid_setting_is_refused_next_to_its_widget(runs_dir):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.number_input(key="lr").set_value(0.0).run()
    assert any("learning rate must be positive" in e.value for e in at.sidebar.error)
    assert at.button(key="start").disabled and at.button(key="start_twin").disabled
    at.toggle(key="batchnorm").set_value(False)
    at.toggle(key="zero_init_last").set_value(True).run()
    assert any("zero_init_last needs BatchNorm" in e.value for e in at.sidebar.error)
    assert not at.exception


def test_a_tiny_run_started_from_the_page_produces_metrics_and_charts(runs_dir):
    at = tiny_page(steps=10)
    at.button(key="start").click().run()
    assert not at.exception
    (run_id,) = at.session_state["shown_runs"]
    manager = RunManager.shared(runs_dir)
    assert manager.wait([run_id], timeout=180)
    at.run()
    assert not at.exception
    assert manager.store.get(run_id).status == "finished"
    assert any(r["type"] == "step" for r in manager.store.read_metrics(run_id))
    charts = at.get("plotly_chart")
    assert len(charts) >= 4          # loss, accuracy, gradient heatmap, gradient profile
    assert any("step 10/10" in p.proto.text for p in at.get("progress"))
    at.segmented_control(key="refresh").set_value("1 s").run()
    assert not at.exception and len(at.get("plotly_chart")) >= 4
    for view in ("Branch responses", "Feature maps", "Activations"):
        at.segmented_control(key="view").set_value(view).run()
        assert not at.exception
        assert len(at.get("plotly_chart")) >= 3
    assert len(at.caption) >= 4      # every chart says what to look for


def test_twin_trains_plain_and_residual_with_one_seed_side_by_side(runs_dir):
    at = tiny_page(steps=4)
    at.button(key="start_twin").click().run()
    ids = at.session_state["shown_runs"]
    manager = RunManager.shared(runs_dir)
    assert len(ids) == 2 and manager.wait(ids, timeout=180)
    configs = [manager.store.get(r).config for r in ids]
    assert [c["model"]["residual"] for c in configs] == [False, True]
    assert configs[0]["train"]["seed"] == configs[1]["train"]["seed"]
    at.run()
    assert not at.exception
    heatmaps = [c for c in at.get("plotly_chart") if "Gradient norm per layer" in c.proto.spec]
    assert len(heatmaps) == 2


def test_a_missing_folder_is_refused_before_it_can_fail(runs_dir):
    at = tiny_page()
    at.selectbox(key="data_name").set_value("folder").run()
    at.text_input(key="data_path").input("/nonexistent/images").run()
    assert any("no folder" in e.value for e in at.sidebar.error)
    assert at.button(key="start").disabled


def test_failed_and_diverged_runs_show_why_without_a_traceback(runs_dir, tmp_path):
    manager = RunManager.shared(runs_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = manager.start(RunConfig(model=ModelConfig(depth=8), data=DataConfig(name="folder", path=str(empty)),
                                     train=TrainConfig(steps=2, batch_size=8, device="cpu")))
    # Without BatchNorm a learning rate of 99 overflows within a few steps.
    diverged = manager.start(RunConfig(model=ModelConfig(depth=8, batchnorm=False),
                                       data=DataConfig(n_train=512, n_test=128),
                                       train=TrainConfig(steps=10, batch_size=32, lr=99.0, device="cpu",
                                                         eval_every=0, feature_maps_every=0)))
    assert manager.wait(timeout=180)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["shown_runs"] = [failed, diverged]
    at.run()
    assert not at.exception
    assert manager.store.get(failed).status == "failed"
    assert any("failed:" in e.value for e in at.error)
    assert manager.store.get(diverged).status == "diverged"
    assert any("diverged at step" in w.value for w in at.warning)
    assert at.get("plotly_chart")   # its curves up to the divergence are still drawn
