"""What keeps a watched run fast: the server skips Streamlit's per-rerun full GC, and the page's
default redraw interval grows on machines too small to pay for a redraw every second."""
from __future__ import annotations

import tomllib

from dashboard import widgets
from tests.conftest import ROOT


def test_streamlit_does_not_collect_garbage_after_every_rerun():
    # gc.collect(2) after each fragment rerun held the GIL ~0.15 s every second a page watched a run.
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_auto_redraw_interval_shrinks_as_cores_grow():
    assert widgets.auto_redraw_seconds(2) == 5.0      # this kind of machine: 1 s cost a third of the speed
    assert widgets.auto_redraw_seconds(4) == 2.0
    assert widgets.auto_redraw_seconds(8) == 1.0
    assert widgets.auto_redraw_seconds(64) == 1.0
    assert widgets.auto_redraw_seconds(None) == 5.0   # os.cpu_count() may not know
    intervals = [widgets.auto_redraw_seconds(n) for n in range(1, 33)]
    assert intervals == sorted(intervals, reverse=True)
    assert set(intervals) <= set(widgets.REDRAW_CHOICES)


def test_live_timer_is_off_when_idle_fast_until_first_points_then_as_chosen():
    assert widgets.live_period(False, [], 5.0) is None
    assert widgets.live_period(False, [("finished", 300), ("stopped", 12)], 5.0) is None
    assert widgets.live_period(True, [], 5.0) == 5.0                      # a run of this server, not shown
    assert widgets.live_period(False, [("running", 0)], 5.0) == 1.0       # just started: look every second
    assert widgets.live_period(False, [("running", 3), ("queued", 0)], 5.0) == 5.0
    assert widgets.live_period(False, [("running", 40)], 2.0) == 2.0      # e.g. a CLI run being watched
