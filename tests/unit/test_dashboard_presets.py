"""dashboard/preset_groups.py: a run group names its preset, summaries are the core's and are read once,
a group gets its verdict only when every run has ended, durations read as a person says them."""
from __future__ import annotations

import pytest

from dashboard import preset_groups as presets
from resnet_core.experiments import presets as core
from resnet_core.experiments import scales
from resnet_core.experiments import verdicts
from resnet_core.config import RunConfig
from resnet_core.training.runs import RunStore


_OPEN: list = []   # writers of runs that stay "running" for the rest of the session


def _group(tmp_path, statuses, key="preact"):
    group = core.new_group_id(key, "quick")
    store = RunStore(tmp_path / "runs")
    for cfg, status in zip(core.preset_configs(key, "quick", group=group), statuses):
        w = store.create(cfg, status="running")
        for step in (1, 2, 3, 4):
            w({"type": "step", "step": step, "train_loss": 1.0, "train_acc": 0.5 if cfg.model.preact else 0.6})
        w.set_status(status)
        if status != "running":
            w.close()
        else:  # a running one keeps its writer (and its lock) open: still active
            _OPEN.append(w)
    return group, store


def test_a_group_id_names_its_preset():
    for key in core.PRESETS:
        assert presets.preset_of_group(core.new_group_id(key, "paper")) == key
    assert presets.preset_of_group("") is None
    assert presets.preset_of_group("my-own-group/quick/20260101-000000") is None


def test_the_verdict_waits_for_every_run_of_the_group(tmp_path):
    group, store = _group(tmp_path, ["finished", "running"])   # "running" by this live process: active
    runs = presets.groups(store.list())[group]
    result = presets.group_result(group, runs)
    assert result.key == "preact" and not result.ended and result.verdict is None
    assert [s["label"] for s in result.summaries] == ["resnet-20 w0.5 16px large no-aug"]


def test_an_ended_group_gets_the_cores_verdict_from_the_cores_summaries(tmp_path):
    group, store = _group(tmp_path, ["finished", "stopped"])
    runs = presets.groups(store.list())[group]
    result = presets.group_result(group, runs)
    assert result.ended
    expected = [verdicts.run_summary(RunConfig.from_dict(i.config), store.read_metrics(i.run_id)) for i in runs]
    assert sorted(result.summaries, key=str) == sorted(expected, key=str)
    assert result.verdict == core.verdict("preact", expected)
    assert not result.verdict["holds"]              # pre-activation ends 10 points above post-activation


def test_ungrouped_runs_belong_to_no_group(tmp_path):
    store = RunStore(tmp_path / "runs")
    store.create(scales.scale_config("quick")).close()
    assert presets.groups(store.list()) == {}


@pytest.mark.parametrize("seconds,text", [(3.4, "about 3 s"), (42, "about 40 s"), (88, "about 90 s"),
                                          (200, "about 3 min"), (9000, "about 2.5 h"), (None, "duration unknown")])
def test_duration_text(seconds, text):
    assert presets.duration_text(seconds) == text
