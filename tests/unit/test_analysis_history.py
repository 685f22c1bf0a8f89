"""The analyses' estimates learn from what they took on this machine (resnet_core/history.py)."""
import json

import pytest

from resnet_core import history
from resnet_core.analysis import ModelSource, estimate_cost, run_analysis
from resnet_core.config import DataConfig, ModelConfig
from tests.conftest import store_tiny_run

TINY_DATA = DataConfig(n_train=32, n_test=16)


@pytest.fixture
def empty_history(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path))
    return tmp_path


def test_a_key_seen_before_takes_its_median_ratio_a_new_one_its_groups(empty_history):
    """Hand computation. Lesions of a ResNet-56 estimated at 40 s took 20, 40 and 30 s: the next estimate of
    40 s becomes 40 x median(0.5, 1, 0.75) = 30 s. With a ResNet-20's ratios 2 and 3 beside them, a
    ResNet-110 never seen, estimated at 80 s, takes the median of all five ratios (0.5, 0.75, 1, 2, 3):
    80 s. Another analysis, another device: untouched."""
    assert history.predict("analysis", "lesion", "resnet-56", "cpu", 40.0) == (40.0, "no run of it here yet")
    for took in (20.0, 40.0, 30.0):
        history.record("analysis", "lesion", "resnet-56", "cpu", 40.0, took)
    seconds, why = history.predict("analysis", "lesion", "resnet-56", "cpu", 40.0)
    assert seconds == pytest.approx(30.0) and "last 3 run(s) like it" in why
    for took in (20.0, 30.0):
        history.record("analysis", "lesion", "resnet-20", "cpu", 10.0, took)
    seconds, why = history.predict("analysis", "lesion", "resnet-110", "cpu", 80.0)
    assert seconds == pytest.approx(80.0) and "from 5 other run(s)" in why
    history.record("analysis", "lesion", "resnet-32", "cpu", 10.0, 5.0)          # ratios 0.5 0.5 .75 1 2 3
    assert history.predict("analysis", "lesion", "resnet-110", "cpu", 80.0)[0] == pytest.approx(80.0 * 0.875)
    assert history.predict("analysis", "paths", "resnet-56", "cpu", 40.0)[0] == 40.0        # per analysis
    assert history.predict("analysis", "lesion", "resnet-56", "cuda", 40.0)[0] == 40.0      # and per device


def test_a_runs_fixed_cost_stays_fixed_within_half_again_of_the_estimate(empty_history):
    """Runs that took their estimate plus 2 s and plus 1 s (a page redrawn at each start and end): a new,
    8x larger run is predicted at its estimate plus the median, 1.5 s, not scaled by the small runs'
    ratio; a tiny one at no more than 1.5x its estimate, and a run that took less the other way."""
    group = "dashboard, 2 thread(s)"
    history.record("runs", group, "start", "cpu", 5.0, 7.0)
    history.record("runs", group, "start, 600 steps", "cpu", 10.0, 11.0)
    seconds, why = history.predict("runs", group, "preset", "cpu", 40.0, fallback="offset")
    assert seconds == pytest.approx(41.5) and "+1.5 s from 2 other run(s)" in why
    assert history.predict("runs", group, "tiny", "cpu", 1.0, fallback="offset")[0] == pytest.approx(1.5)
    history.record("runs", "cli, 1 thread(s)", "a", "cpu", 10.0, 2.0)              # took 8 s less
    assert history.predict("runs", "cli, 1 thread(s)", "b", "cpu", 9.0, fallback="offset")[0] == pytest.approx(6.0)


def test_only_the_last_runs_count_and_tiny_estimates_teach_nothing(empty_history):
    for took in (100.0, 100.0, 100.0, 1.0, 1.0, 1.0, 1.0, 1.0):   # an old slow spell, then five at ratio 0.1
        history.record("analysis", "paths", "m", "cpu", 10.0, took)
    assert history.predict("analysis", "paths", "m", "cpu", 10.0)[0] == pytest.approx(1.0)
    history.record("analysis", "responses", "m", "cpu", history.MIN_SECONDS / 2, 5.0)   # fixed costs dominate
    assert history.predict("analysis", "responses", "m", "cpu", 1.0)[0] == 1.0
    assert history.count("analysis", "cpu") == 5 and history.count("analysis", "cpu", ["responses"]) == 0


def test_a_damaged_history_means_no_correction_and_is_rewritten(empty_history):
    target = history.path("analysis", "cpu")
    target.parent.mkdir(parents=True, exist_ok=True)
    for junk in ("{not json", json.dumps([1, 2]), json.dumps({"lesion": {"m": ["x", -1, True, [1, "a"], [0, 0]]}})):
        target.write_text(junk)
        assert history.predict("analysis", "lesion", "m", "cpu", 10.0)[0] == 10.0
    history.record("analysis", "lesion", "m", "cpu", 10.0, 5.0)
    assert history.predict("analysis", "lesion", "m", "cpu", 10.0)[0] == pytest.approx(5.0)


def test_a_run_teaches_the_next_estimate_of_the_same_analysis(empty_history, monkeypatch):
    """The cost model at a fixed slow rate (1 MMAC/s: a ResNet-8's gradient flow 'takes' minutes), then one
    real run: the next estimate is the cost model's times took / that estimate, with the basis saying so.
    Catches a run that does not record, an estimate that ignores the history, a cached result recorded."""
    import resnet_core.analysis as analysis

    monkeypatch.setattr(analysis, "forward_rate", lambda device, width=1.0, image_size=32: 1e6)
    monkeypatch.setattr(analysis, "known_rate", lambda device, width=1.0, image_size=32: 1e6)
    src = ModelSource(config=ModelConfig(depth=8))
    first = estimate_cost("gradient-flow", src, {"batch_size": 4}, TINY_DATA)
    assert first["seconds"] > 60 and "no run of it here yet" in first["basis"]
    took = run_analysis("gradient-flow", src, settings={"batch_size": 4}, data=TINY_DATA, use_cache=False)["seconds"]
    second = estimate_cost("gradient-flow", src, {"batch_size": 4}, TINY_DATA)
    assert second["seconds"] == pytest.approx(took, rel=0.01, abs=2e-3)
    assert "last 1 run(s) like it" in second["basis"] and "1 GMAC/s" not in second["basis"]


def test_a_run_without_a_measured_rate_is_not_slowed_down_to_learn(empty_history, monkeypatch):
    import resnet_core.analysis as analysis

    def no_timing(*a, **k):
        raise AssertionError("run_analysis timed a forward rate")

    monkeypatch.setattr(analysis, "forward_rate", no_timing)
    monkeypatch.setattr(analysis, "known_rate", lambda device, width=1.0, image_size=32: None)
    run_analysis("gradient-flow", ModelSource(config=ModelConfig(depth=8)), settings={"batch_size": 4},
                 data=TINY_DATA, use_cache=False)
    assert not history.path("analysis", "cpu").exists()


def test_work_finishing_in_several_processes_at_once_loses_no_pair(empty_history):
    """Two training processes ending together both read, add and write the history: with the lock,
    every pair is kept (without it, one process's write replaced the other's)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(i,)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert history.count("runs", "cpu") == 4 * history.KEEP


def _record_many(i: int) -> None:
    for _ in range(history.KEEP):
        history.record("runs", "cli, 1 thread(s)", f"run {i}", "cpu", 10.0, 12.0)


def test_the_fig7_responses_count_their_probes_as_measured_here(empty_history, monkeypatch):
    """The responses run every pass with the training probes' hooks armed: their estimate is the plain
    count times the measured cost of a probed pass in plain passes (at a fixed rate of 1 GMAC/s and a
    factor of 1.5 by hand), and that factor is a measurement: at least 1 (the probes only add work),
    taken once per process and size."""
    import resnet_core.analysis as analysis
    import resnet_core.analysis.base as base
    import resnet_core.analysis.responses as responses
    import torch
    from resnet_core.analysis.base import macs_of

    factor = base.probed_factor(torch.device("cpu"), 0.25, 16)
    assert factor >= 1.0
    monkeypatch.setattr(base, "_median_seconds", lambda *a, **k: pytest.fail("measured twice"))
    assert base.probed_factor(torch.device("cpu"), 0.25, 16) == factor

    monkeypatch.setattr(analysis, "forward_rate", lambda device, width=1.0, image_size=32: 1e9)
    monkeypatch.setattr(responses, "probed_factor", lambda device, width=1.0, image_size=32: 1.5)
    run_id = store_tiny_run(empty_history / "runs", "tiny", "tiny")        # a depth-8 net, 32x32 data
    est = estimate_cost("responses", ModelSource(run_id=run_id), {"images": 10}, TINY_DATA,
                        runs_dir=empty_history / "runs")
    assert est["seconds"] == pytest.approx(macs_of(ModelConfig(depth=8), 32) * 10 * 1.5 / 1e9, rel=5e-3)   # 3 digits
    assert "with probes (x1.50 a plain one) x 10 test images" in est["detail"]
