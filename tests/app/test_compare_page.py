"""AppTest of the Compare page: stored runs (from anywhere) overlay, the Fig. 6 view, CSV export,
delete with confirmation, refused while active."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.worker import RunManager
from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.training.runs import RunStore, execute_run

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "compare.py")


def tiny(residual: bool, steps: int = 4) -> RunConfig:
    return RunConfig(model=ModelConfig(depth=8, residual=residual), data=DataConfig(n_train=512, n_test=128),
                     train=TrainConfig(steps=steps, batch_size=32, device="cpu", eval_every=2, feature_maps_every=0))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Two finished runs written the way the CLI writes them (no dashboard involved)."""
    d = tmp_path_factory.mktemp("compare") / "runs"
    store = RunStore(d)
    for residual in (False, True):
        execute_run(store.create(tiny(residual), status="running"))
    return d


@pytest.fixture
def compare_page(runs_dir, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_RUNS", str(runs_dir))
    return AppTest.from_file(PAGE, default_timeout=60)


def test_empty_store_says_how_to_get_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_RUNS", str(tmp_path / "none"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert "No runs yet" in at.info[0].value


def test_runs_from_the_cli_are_listed_and_overlaid(compare_page, runs_dir):
    at = compare_page.run()
    assert not at.exception
    ids = [i.run_id for i in RunStore(runs_dir).list()]
    assert set(at.multiselect(key="compare_runs").value) == set(ids)
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(specs) == 5
    assert any("Training error by depth" in s for s in specs)      # the Fig. 6 view
    assert len(at.caption) >= 5


def test_csv_export_is_long_format_of_the_selected_runs(compare_page, runs_dir):
    at = compare_page.run()
    assert any(getattr(e.proto, "label", "") == "Download metrics (CSV)" for e in at.get("download_button"))
    store = RunStore(runs_dir)
    infos = store.list()
    from resnet_core.training.series import MetricsTail, metrics_long_csv
    series = []
    for info in infos:
        tail = MetricsTail(info.path / "metrics.jsonl")
        tail.poll()
        s = tail.series(info.run_id)
        s.label = info.label
        series.append(s)
    rows = list(csv.DictReader(io.StringIO(metrics_long_csv(series))))
    assert {r["run_id"] for r in rows} == {i.run_id for i in infos}
    assert {r["metric"] for r in rows} == {"train_loss", "train_acc", "lr", "images_per_s", "test_loss", "test_acc"}
    assert sum(1 for r in rows if r["metric"] == "train_loss") == 8   # 4 steps x 2 runs
    float(rows[0]["value"])


def test_selecting_one_run_narrows_the_charts(compare_page, runs_dir):
    at = compare_page.run()
    first = at.multiselect(key="compare_runs").value[0]
    at.multiselect(key="compare_runs").set_value([first]).run()
    assert not at.exception
    assert at.multiselect(key="compare_runs").value == [first]


def test_delete_asks_for_confirmation_and_refuses_active_runs(compare_page, runs_dir):
    at = compare_page.run()
    victim = at.selectbox(key="delete_run").value
    at.button(key="delete").click().run()
    assert any("cannot be undone" in w.value for w in at.warning)
    at.button(key="delete_no").click().run()                   # cancel keeps it
    assert victim in {i.run_id for i in RunStore(runs_dir).list()}
    at.button(key="delete").click().run()
    at.button(key="delete_yes").click().run()
    assert not at.exception
    assert victim not in {i.run_id for i in RunStore(runs_dir).list()}
    assert any("Deleted" in s.value for s in at.success)

    manager = RunManager.shared(runs_dir)
    active = manager.start(tiny(True, steps=100_000))
    try:
        at = compare_page.run()
        at.selectbox(key="delete_run").set_value(active).run()
        assert at.button(key="delete").disabled
    finally:
        manager.shutdown(timeout=60)


def _figure(at, title: str) -> dict:
    import json

    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if title in spec["layout"]["title"]["text"]:
            return spec
    raise AssertionError(f"no chart titled {title!r}")


def test_smoothing_and_x_axis_controls_change_the_curves(compare_page):
    at = compare_page.run()
    smoothing = at.slider(key="compare_curves_smoothing")
    assert smoothing.value == pytest.approx(0.6)
    assert at.slider(key="compare_fig6_smoothing").value == pytest.approx(0.9)   # Fig. 6 smoothed by default
    loss = _figure(at, "Loss")
    raw = [t for t in loss["data"] if t["name"].endswith("(raw)")]
    assert len(raw) == 2 and all(t["opacity"] < 1 for t in raw)   # one faint raw curve behind each run's
    smoothing.set_value(0.0).run()
    assert not at.exception
    assert not [t for t in _figure(at, "Loss")["data"] if t["name"].endswith("(raw)")]
    assert [t for t in _figure(at, "Training error by depth")["data"] if t["name"].endswith("(raw)")]
    at.segmented_control(key="compare_curves_x_axis").set_value("time").run()
    assert not at.exception
    assert _figure(at, "Accuracy")["layout"]["xaxis"]["title"]["text"].startswith("wall time")
