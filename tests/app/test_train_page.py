"""AppTest of the Train page: renders, has its controls, refuses invalid settings next to the widget,
and a tiny run started from the page produces metrics and charts."""
from __future__ import annotations

import json
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


def _chart(at, title: str) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if spec["layout"]["title"]["text"] == title:
            return spec
    raise AssertionError(f"no chart titled {title!r}")


def _trace_names(at, title: str) -> list[str]:
    return [t["name"] for t in _chart(at, title)["data"]]


def test_with_no_run_shown_the_page_draws_the_empty_loss_and_accuracy_charts(runs_dir):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    for title in ("Loss", "Accuracy"):
        spec = _chart(at, title)
        assert spec["data"] == [] and spec["layout"]["annotations"][0]["text"] == "no run shown"
    assert any("Start a run, or pick stored runs" in c.value for c in at.caption)


def test_page_renders_with_its_controls(runs_dir):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    keys = {b.key for b in at.button}
    assert {"start", "start_twin", "preset_fig6", "preset_options", "preset_preact", "preset_depth-sweep"} <= keys
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
    # Smoothing: on by default with the raw curve faint behind; at 0 only the raw curve is left.
    assert at.slider(key="train_curves_smoothing").value == pytest.approx(0.6)
    label = manager.store.get(run_id).label
    assert _trace_names(at, "Loss") == [f"{label} train (raw)", f"{label} train", f"{label} test"]
    at.slider(key="train_curves_smoothing").set_value(0.0).run()
    assert _trace_names(at, "Loss") == [f"{label} train", f"{label} test"]
    at.segmented_control(key="train_curves_x_axis").set_value("epoch").run()
    assert _chart(at, "Accuracy")["layout"]["xaxis"]["title"]["text"].startswith("epoch")
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


def test_a_missing_folder_is_refused_before_it_can_fail(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_DATA_ROOTS", str(tmp_path))  # inside the data folders, but missing
    at = tiny_page()
    at.selectbox(key="data_name").set_value("folder").run()
    at.text_input(key="data_path").input(str(tmp_path / "nonexistent" / "images")).run()
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


def test_scale_is_picked_for_the_device_said_and_sets_the_sidebar(runs_dir):
    from resnet_core.experiments import scales

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    picked = scales.default_scale("auto")
    assert at.radio(key="scale").value == picked
    assert any(c.value.startswith(f"**{picked}** picked: ") for c in at.sidebar.caption)

    def sidebar_matches(cfg):
        assert at.select_slider(key="width").value == cfg.model.width
        assert at.select_slider(key="image_size").value == cfg.data.image_size
        assert at.number_input(key="steps").value == cfg.train.steps
        assert at.select_slider(key="batch_size").value == cfg.train.batch_size
        assert at.number_input(key="warmup_steps").value == cfg.train.warmup_steps
        assert at.number_input(key="lr").value == pytest.approx(cfg.train.lr)
        assert at.number_input(key="log_every").value == cfg.train.log_every

    sidebar_matches(scales.scale_config(picked))
    other = next(s for s in scales.SCALES if s != picked)
    at.radio(key="scale").set_value(other).run()
    assert not at.exception
    sidebar_matches(scales.scale_config(other))
    assert any(c.value.startswith(f"**{other}** chosen ({picked} is the default") for c in at.sidebar.caption)
    at.radio(key="scale").set_value("quick").run()
    # What the quick scale changes shows in the label of what Start trains, and stays editable.
    start_caption = lambda: next(c.value for c in at.caption if c.value.startswith("Expected duration"))  # noqa: E731
    quick = scales.scale_config("quick")
    assert f"**Start** ({quick.label})" in start_caption()
    assert quick.label.endswith("16px large no-aug")
    at.select_slider(key="width").set_value(0.5).run()
    assert f"**Start** ({quick.model.name.split(' ')[0]} w0.5 16px large no-aug) " in start_caption()
    at.toggle(key="large_objects").set_value(False)
    at.toggle(key="augment").set_value(True).run()
    assert f"**Start** ({quick.model.name.split(' ')[0]} w0.5 16px) " in start_caption()


def test_the_default_start_on_a_cpu_is_the_quick_scale_run(runs_dir):
    from resnet_core.experiments import scales

    if scales.default_scale("auto") != "quick":
        pytest.skip("a CUDA GPU is here: the default is the paper scale")
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.button(key="start").click().run()
    (run_id,) = at.session_state["shown_runs"]
    manager = RunManager.shared(runs_dir)
    manager.stop(run_id)
    manager.wait([run_id], timeout=120)
    stored = manager.store.get(run_id).config
    expected = scales.scale_config("quick").to_dict()
    for section in ("model", "data"):
        assert stored[section] == expected[section], section
    for field in ("steps", "batch_size", "lr", "warmup_steps", "schedule", "eval_every", "log_every"):
        assert stored["train"][field] == expected["train"][field], field


def test_preset_popover_lists_the_four_presets_with_what_to_look_for_and_duration(runs_dir, calibrated):
    """Durations come from this machine's calibration (here a known one: tests/conftest.py), and the
    page says what they are based on."""
    import re

    from resnet_core.experiments import presets as core

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    labels = {b.key: b.label for b in at.button}
    for key, preset in core.PRESETS.items():
        assert labels[f"preset_{key}"] == preset.title
        (caption,) = [c.value for c in at.caption if c.value.endswith(f"Look for: {preset.what_to_look_for}")]
        n = len(core.preset_configs(key, "quick"))
        assert caption.startswith(f"{n} runs (")
        assert re.search(r", estimated about [\d.]+ (s|min|h)\. Look for", caption), caption
    assert len(core.PRESETS) == 4
    (start,) = [c.value for c in at.caption if c.value.startswith("Expected duration: **Start**")]
    assert re.match(r"Expected duration: \*\*Start\*\* \(.+\) estimated about [\d.]+ (s|min|h)", start), start
    assert calibrated.basis in start


def test_without_a_calibration_the_page_promises_no_duration(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path / "empty-cache"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    (start,) = [c.value for c in at.caption if c.value.startswith("Expected duration: **Start**")]
    assert "not estimated yet" in start and "about" not in start


def test_a_preset_started_from_the_page_is_one_group_with_one_seed(runs_dir):
    at = tiny_page(steps=2)
    at.button(key="preset_preact").click().run()
    ids = at.session_state["shown_runs"]
    manager = RunManager.shared(runs_dir)
    manager.stop_all()
    assert manager.wait(ids, timeout=120)
    configs = [manager.store.get(r).config for r in ids]
    assert len(configs) == 2 and [c["model"]["preact"] for c in configs] == [False, True]
    assert len({c["group"] for c in configs}) == 1 and configs[0]["group"].startswith("preact/")
    assert len({c["train"]["seed"] for c in configs}) == 1


def test_the_start_estimate_includes_what_is_left_of_a_training_process_start(runs_dir, calibrated, monkeypatch):
    """On a fresh server the first Start waits for its training process (torch, the data, a warm-up):
    the page's estimate adds what is left of it. Bug caught: the estimate counted the steps alone and
    the first Start took 43% longer than it said."""
    import re

    from dashboard import preset_groups
    from dashboard.worker import RunManager
    from resnet_core.experiments import costmodel, scales

    steps_alone = costmodel.estimate_seconds([scales.scale_config("quick", device="cpu")], "cpu")
    monkeypatch.setattr(RunManager, "start_wait_s", lambda self: 600.0)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    (start,) = [c.value for c in at.caption if c.value.startswith("Expected duration: **Start**")]
    shown = re.match(r"Expected duration: \*\*Start\*\* \(.+?\) (estimated about [\d.]+ (s|min|h))", start).group(1)
    assert shown == "estimated " + preset_groups.duration_text(steps_alone + 600.0), start
