"""What keeps a watched run fast: the server skips Streamlit's per-rerun full GC, and the page's
default redraw interval grows on machines too small to pay for a redraw every second."""
from __future__ import annotations

import dataclasses
import json
import tomllib

import pytest

from dashboard import redraw
from tests.conftest import ROOT


def test_streamlit_does_not_collect_garbage_after_every_rerun():
    # gc.collect(2) after each fragment rerun held the GIL ~0.15 s every second a page watched a run.
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_auto_redraw_interval_shrinks_as_cores_grow():
    assert redraw.auto_redraw_seconds(2) == 5.0      # this kind of machine: 1 s cost a third of the speed
    assert redraw.auto_redraw_seconds(4) == 2.0
    assert redraw.auto_redraw_seconds(8) == 1.0
    assert redraw.auto_redraw_seconds(64) == 1.0
    assert redraw.auto_redraw_seconds(None) == 5.0   # os.cpu_count() may not know
    intervals = [redraw.auto_redraw_seconds(n) for n in range(1, 33)]
    assert intervals == sorted(intervals, reverse=True)
    assert set(intervals) <= set(redraw.REDRAW_CHOICES)


def test_live_timer_is_off_when_idle_fast_until_first_points_then_as_chosen():
    assert redraw.live_period(False, [], 5.0) is None
    assert redraw.live_period(False, [("finished", 300), ("stopped", 12)], 5.0) is None
    assert redraw.live_period(True, [], 5.0) == 5.0                      # a run of this server, not shown
    assert redraw.live_period(False, [("running", 0)], 5.0) == 1.0       # just started: look every second
    assert redraw.live_period(False, [("running", 3), ("queued", 0)], 5.0) == 5.0
    assert redraw.live_period(False, [("running", 40)], 2.0) == 2.0      # e.g. a CLI run being watched


def test_page_seconds_counts_the_clicks_rerun_first_draw_redraws_and_end_on_the_cores():
    assert redraw.page_seconds(5.0, 2, 5.0) == pytest.approx((3 + 1) * redraw.REDRAW_CPU_S / 2)
    assert redraw.page_seconds(50.0, 2, 5.0) == pytest.approx((3 + 10) * redraw.REDRAW_CPU_S / 2)
    assert redraw.page_seconds(50.0, 8, 1.0) == pytest.approx((3 + 50) * redraw.REDRAW_CPU_S / 8)
    assert redraw.page_seconds(-1.0, None, 5.0) == pytest.approx(3 * redraw.REDRAW_CPU_S)
    # REDRAW_CPU_S is a redraw of one run's 4 charts; the Degradation preset's page draws 8
    assert redraw.live_charts(1) == 4 and redraw.live_charts(2) == 5 and redraw.live_charts(4, preset=True) == 8
    assert redraw.page_seconds(40.0, 2, 5.0, charts=8) == pytest.approx(2 * redraw.page_seconds(40.0, 2, 5.0))


def test_the_pages_redraws_count_until_a_dashboard_run_like_it_has_finished_here(tmp_path, monkeypatch):
    """On a machine where no dashboard run has finished, the Start estimate is the calibration plus the
    page's redraws (the browser's first Start took 1.2 s beyond its 5 s of steps on 2 cores); once one
    has, what it took (the page included) corrects the estimate and the prior is dropped for runs like it
    (a run alone, on both cores), not for a pair, whose runs train on one core each."""
    from dashboard import preset_groups
    from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from resnet_core.experiments import costmodel as cm

    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path))
    monkeypatch.setenv("RESNET_LAB_MAX_RUNS", "2")
    cal = cm.Calibration(dict(cm.machine_info("cpu"), cores=2), "cpu", {1: (0.2, 0.0, 0.0), 2: (0.1, 0.0, 0.0)},
                         0.0, [{"label": "x"}], 0.0)
    cm.cache_path("cpu").write_text(json.dumps(cal.to_dict()))
    run = RunConfig(model=ModelConfig(depth=8), data=DataConfig(image_size=16, n_test=10),
                    train=TrainConfig(steps=300, batch_size=64, eval_every=0, device="cpu"))
    pair = [run, dataclasses.replace(run, train=dataclasses.replace(run.train, seed=1))]
    every = redraw.auto_redraw_seconds(2)

    def said(cfgs, seconds, preset=False):
        return preset_groups.expected_duration(cfgs, "cpu", preset=preset) == \
            f"estimated {preset_groups.duration_text(seconds)}"

    alone = cm.estimate_seconds([run], "cpu", context="dashboard")
    assert alone == pytest.approx(30.0, rel=0.01)
    assert said([run], alone + redraw.page_seconds(alone, 2, every))
    assert "plus the page's redraws (0.1 CPU-s a chart)" in preset_groups.estimate_basis("cpu")
    both = cm.estimate_seconds(pair, "cpu", context="dashboard")
    assert both == pytest.approx(60.0, rel=0.01)                     # two at once, one core each
    assert said(pair, both + redraw.page_seconds(both, 2, every, charts=6), preset=True)

    cm.record_run(run, threads=2, seconds=36.0, context="cli")        # a CLI run does not drop it
    assert "the page's redraws" in preset_groups.estimate_basis("cpu")
    cm.record_run(run, threads=2, seconds=40.0, context="dashboard")
    assert said([run], 40.0)
    basis = preset_groups.estimate_basis("cpu")
    assert "corrected by 1 run(s) finished here (dashboard)" in basis and "the page's redraws" not in basis
    assert said(pair, both + redraw.page_seconds(both, 2, every, charts=6), preset=True)   # still at one core


def test_the_host_sets_the_shortest_redraw_for_every_browser(monkeypatch):
    """RESNET_LAB_REDRAW_S raises *auto* and removes the faster choices; junk means the default."""
    monkeypatch.delenv("RESNET_LAB_REDRAW_S", raising=False)
    assert redraw.redraw_choices(2) == {"auto (5 s)": 5.0, "1 s": 1.0, "2 s": 2.0, "5 s": 5.0}
    assert redraw.redraw_choices(8) == {"auto (1 s)": 1.0, "1 s": 1.0, "2 s": 2.0, "5 s": 5.0}
    monkeypatch.setenv("RESNET_LAB_REDRAW_S", "2")
    assert redraw.redraw_choices(8) == {"auto (2 s)": 2.0, "2 s": 2.0, "5 s": 5.0}
    assert redraw.default_redraw_seconds(2) == 5.0
    monkeypatch.setenv("RESNET_LAB_REDRAW_S", "30")
    assert redraw.redraw_choices(2) == {"auto (30 s)": 30.0}
    assert redraw.default_redraw_seconds(64) == 30.0
    for junk in ("fast", "nan", "-5", "0", ""):
        monkeypatch.setenv("RESNET_LAB_REDRAW_S", junk)
        assert redraw.host_floor_seconds() == 1.0, junk
    monkeypatch.setenv("RESNET_LAB_REDRAW_S", "1e9")
    assert redraw.host_floor_seconds() == 3600.0
