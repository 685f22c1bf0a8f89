"""The cost model behind every duration the page and the CLI state: work counted from the config,
step costs fitted to steps timed on this machine, and the run manager's schedule."""
from __future__ import annotations

import dataclasses
import json

import pytest

from resnet_core.experiments import costmodel as cm
from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.nets.models import build_model, count_macs
from resnet_core.experiments.costmodel import estimate_seconds
from resnet_core.experiments.presets import preset_configs


@pytest.mark.parametrize("kw", [
    dict(depth=20), dict(depth=8, residual=False), dict(depth=20, shortcut="B"), dict(depth=20, shortcut="C"),
    dict(depth=29, block="bottleneck"), dict(depth=29, block="bottleneck", shortcut="C", preact=True),
    dict(depth=14, width=0.5), dict(depth=8, width=1.5, num_classes=7)])
@pytest.mark.parametrize("size", [32, 16, 21])
def test_macs_from_the_config_match_the_built_model(kw, size):
    """Counting from the config must agree with hooks on a built model (a wrong stride, a missed
    projection or bottleneck 1x1 would not)."""
    cfg = ModelConfig(**kw)
    assert cm.config_macs(cfg, size) == count_macs(build_model(cfg), (size, size))


def test_resnet20_is_the_papers_40_55m_multiply_adds():
    assert cm.config_macs(ModelConfig(depth=20), 32) == 40_551_040   # 40.55M, as pinned for count_macs


def test_fit_recovers_known_coefficients_and_never_goes_negative():
    truth = (0.004, 0.0007, 0.13)
    rows = [(l, g, truth[0] + truth[1] * l + truth[2] * g) for l, g in [(8, 4.7), (20, 0.5), (56, 1.5), (20, 2.0)]]
    assert cm._fit(rows) == pytest.approx(truth, rel=1e-6)
    # a fixed cost that would fit negative is dropped, not kept below zero
    rows = [(l, g, 0.001 * l + 0.1 * g - 0.05) for l, g in [(8, 4.7), (20, 0.5), (56, 1.5), (20, 2.0)]]
    assert min(cm._fit(rows)) >= 0.0


def _cal(coeffs, cores=2, startup=0.0):
    return cm.Calibration({"cores": cores, "cpu": "test"}, "cpu", coeffs, startup, [{"label": "x"}], 0.0)


def _run(depth, steps, batch=64, size=16):
    return RunConfig(model=ModelConfig(depth=depth), data=DataConfig(image_size=size, n_test=10),
                     train=TrainConfig(steps=steps, batch_size=batch, eval_every=0))


def test_step_cost_is_the_fitted_line():
    cal = _cal({1: (0.01, 0.001, 0.2), 2: (0.02, 0.001, 0.1)})
    c = _run(20, 100)
    gm = 3 * cm.config_macs(c.model, 16) * 64 / 1e9
    assert cal.step_seconds(c, 1) == pytest.approx(0.01 + 0.001 * 20 + 0.2 * gm)
    assert cal.step_seconds(c, 2) == pytest.approx(0.02 + 0.001 * 20 + 0.1 * gm)
    assert cal.step_seconds(c, 8) == cal.step_seconds(c, 2)   # more threads than measured: the most measured


def test_schedule_by_hand_a_run_alone_gets_every_core_two_share_them():
    """Hand computation: 1-thread steps cost 1 s, 2-thread steps 0.5 s (fixed cost only). Runs of
    300 and 100 steps, two at once: both train at 1 s/step for 100 s; then the long one is alone
    at 0.5 s/step for its last 200 steps: 100 s. Total 200 s (plus the final test pass of 10 images,
    10/(3*64) step equivalents at 0.5 s)."""
    cal = _cal({1: (1.0, 0.0, 0.0), 2: (0.5, 0.0, 0.0)})
    long, short = _run(20, 300), _run(8, 100)
    final_eval = 10 / (3 * 64)
    # the short one's test pass is taken while both train (1 s/step), the long one's alone (0.5)
    expected = 100 + final_eval * 1.0 + (200 - final_eval) * 0.5 + final_eval * 0.5
    assert cm.schedule_seconds(cal, [long, short], parallel=2) == pytest.approx(expected, rel=1e-3)
    # one at a time, each alone on both cores
    assert cm.schedule_seconds(cal, [long, short], parallel=1) == pytest.approx(
        (400 + 2 * final_eval) * 0.5, rel=1e-6)
    # behind a run already training with 50 of 150 steps left to go, a lone Start waits for it:
    alone = cm.schedule_seconds(cal, [short], parallel=1)
    behind = cm.schedule_seconds(cal, [short], parallel=1, ahead=[(_run(8, 150), 100)])
    assert behind == pytest.approx(alone + (50 + final_eval) * 0.5, rel=1e-6)


def test_estimates_need_this_machines_calibration(tmp_path, monkeypatch):
    """No figure from elsewhere: without a calibration of this machine the estimate is None; with
    one (cached per machine under RESNET_LAB_CACHE) it is the schedule of the measured costs."""
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path))
    cfgs = preset_configs("fig6", "quick", device="cpu")
    assert cm.load_calibration("cpu") is None
    assert estimate_seconds(cfgs, "cpu") is None
    tiny = [_run(8, 3, batch=8, size=16), _run(14, 3, batch=8, size=16), _run(20, 3, batch=16, size=16)]
    cal = cm.calibrate("cpu", thread_counts=[1], configs=tiny)
    assert cm.cache_path("cpu").is_file() and cm.cache_path("cpu").parent == tmp_path
    again = cm.load_calibration("cpu")
    assert again.coefficients == {1: pytest.approx(cal.coefficients[1])}
    assert all(c >= 0 for c in cal.coefficients[1]) and cal.step_seconds(tiny[0]) > 0
    assert len(cal.samples) == 3 and "this machine" in cal.basis
    got = estimate_seconds(cfgs, "cpu", parallel=2)
    assert got == pytest.approx(cm.schedule_seconds(again, cfgs, 2))


def test_estimate_is_the_hand_computation_from_a_known_calibration(tmp_path, monkeypatch):
    """A calibration with fixed coefficients, stored as this machine's (2 cores): a step costs
    fixed + per-layer * layers + per-GMAC * GMACs (3 forwards' multiply-adds of the batch), a run pays
    its steps plus a 10-image test pass (10/(3*64) steps) plus 0.5 s of its own. One at a time, each run
    alone has both cores; two at once, each has one until the first ends, then the other has both.
    Catches a term or the final test pass dropped, the coefficients of the wrong thread count, the
    overhead counted per step, and a schedule that does not hand the freed core on."""
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path))
    cal = _cal({1: (0.02, 0.001, 0.3), 2: (0.012, 0.0006, 0.18)}, cores=2, startup=0.5)
    cal.machine = dict(cm.machine_info("cpu"), cores=2)
    cm.cache_path("cpu").write_text(json.dumps(cal.to_dict()))
    a, b = _run(8, 100), _run(20, 40)     # weight layers: 2 + 3 * n * 2 = the depth (n = 1 and 3)
    gmacs = {r: 3 * cm.config_macs(r.model, 16) * 64 / 1e9 for r in (a, b)}

    def step(r, threads):
        fixed, per_layer, per_gmac = cal.coefficients[threads]
        return fixed + per_layer * r.model.depth + per_gmac * gmacs[r]

    work = {r: r.train.steps + 10 / (3 * 64) for r in (a, b)}
    one_at_a_time = sum(work[r] * step(r, 2) + 0.5 for r in (a, b))
    assert estimate_seconds([a, b], "cpu", parallel=1) == pytest.approx(one_at_a_time, rel=1e-9)
    # two at once: the overhead counts as step equivalents at the all-core rate (0.5 / step(r, 2))
    left = {r: work[r] + 0.5 / step(r, 2) for r in (a, b)}
    first = min((a, b), key=lambda r: left[r] * step(r, 1))
    other = b if first is a else a
    t1 = left[first] * step(first, 1)
    both = t1 + (left[other] - t1 / step(other, 1)) * step(other, 2)
    assert estimate_seconds([a, b], "cpu", parallel=2) == pytest.approx(both, rel=1e-9)


def test_a_runs_own_overhead_is_added_once_per_run():
    """Hand computation: 1 s a step on all cores, a run's own overhead 10 s: a lone run of 100 steps
    (and a 10-image final test pass) takes 100 + 10/(3*64) steps plus 10 s; two in a row, twice that."""
    cal = _cal({1: (2.0, 0.0, 0.0), 2: (1.0, 0.0, 0.0)}, startup=10.0)
    run = _run(8, 100)
    one = 100 + 10 / (3 * 64) + 10.0
    assert cm.schedule_seconds(cal, [run], parallel=2) == pytest.approx(one, rel=1e-9)
    assert cm.schedule_seconds(cal, [run, run], parallel=1) == pytest.approx(2 * one, rel=1e-9)


def test_the_overhead_is_measured_by_a_stored_run(tmp_path):
    cal = _cal({1: (0.001, 0.0, 0.0), 2: (0.001, 0.0, 0.0)})
    tiny = _run(8, 3, batch=8, size=16)
    tiny = dataclasses.replace(tiny, train=dataclasses.replace(tiny.train, feature_maps_every=25))
    overhead, snapshot = cm.run_overhead(cal, tiny, 1)
    # The run's own cost (model, initial weights, checkpoints, files) is its whole wall time less a
    # step count that takes 0.006 s here: never free. A snapshot's cost is a difference of two timed
    # runs, which other work on the machine can swallow: it is only never negative.
    assert overhead > 0.0 and snapshot >= 0.0


def test_feature_map_snapshots_are_counted_per_run():
    """Hand computation: 1 s a step alone, no fixed overhead, 0.5 s a snapshot: 100 steps with maps
    every 25 take 2 + 4 snapshots (first step, every 25th, the end): 100 + 10/(3*64) + 3 s."""
    cal = _cal({1: (2.0, 0.0, 0.0), 2: (1.0, 0.0, 0.0)})
    cal.snapshot_s = 0.5
    run = _run(8, 100)
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, feature_maps_every=25))
    assert cm.schedule_seconds(cal, [run], parallel=2) == pytest.approx(100 + 10 / (3 * 64) + 3.0, rel=1e-9)


def test_finished_runs_correct_the_next_estimate_of_the_same_run_at_the_same_thread_count(tmp_path, monkeypatch):
    """Hand computation: a calibration saying 0.5 s a step on 2 threads, 1 s on 1, no overhead. A run of
    100 steps (and a 10-image test pass) finished on 2 threads in 1.5x its estimate: the next estimate of
    it alone (2 threads) is 1.5x the calibration's; two of it at once (1 thread each, never seen at 1
    thread) keep the calibration's figure; once one finished at 1 thread in 0.8x, they take 0.8, and the
    lone run keeps its 1.5. A stopped, paused or resumed run teaches nothing (the test below).
    Catches a correction ignored, applied to the wrong thread count, or learned from a partial run."""
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path))
    cal = _cal({1: (1.0, 0.0, 0.0), 2: (0.5, 0.0, 0.0)}, cores=2)
    cal.machine = dict(cm.machine_info("cpu"), cores=2)
    cm.cache_path("cpu").write_text(json.dumps(cal.to_dict()))
    run = _run(8, 100)
    work = 100 + 10 / (3 * 64)
    assert estimate_seconds([run], "cpu") == pytest.approx(work * 0.5, rel=1e-9)
    assert "no run finished here yet (cli)" in cm.estimate_basis(cm.load_calibration("cpu"))
    cm.record_run(run, threads=2, seconds=1.5 * work * 0.5)
    assert estimate_seconds([run], "cpu") == pytest.approx(1.5 * work * 0.5, rel=1e-3)
    assert "corrected by 1 run(s) finished here (cli)" in cm.estimate_basis(cm.load_calibration("cpu"))
    assert estimate_seconds([run, run], "cpu", parallel=2) == pytest.approx(work * 1.0, rel=1e-3)
    cm.record_run(run, threads=1, seconds=0.8 * work * 1.0)
    assert estimate_seconds([run, run], "cpu", parallel=2) == pytest.approx(0.8 * work, rel=1e-3)
    assert estimate_seconds([run], "cpu") == pytest.approx(1.5 * work * 0.5, rel=1e-3)


def test_a_longer_run_carries_the_fixed_seconds_the_short_ones_took_beyond_their_estimate(tmp_path, monkeypatch):
    """Runs of 100 and 300 steps each took their estimate plus 2 s (as a dashboard run does: the page's
    redraws at its start and end): a run of 1,000 steps is estimated at its steps plus 2 s, not at the
    short runs' ratio (which would add 20%). Hand computation at 0.5 s a step alone."""
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path))
    cal = _cal({1: (1.0, 0.0, 0.0), 2: (0.5, 0.0, 0.0)}, cores=2)
    cal.machine = dict(cm.machine_info("cpu"), cores=2)
    cm.cache_path("cpu").write_text(json.dumps(cal.to_dict()))
    alone = {s: (s + 10 / (3 * 64)) * 0.5 for s in (100, 300, 1000)}
    for s in (100, 300):
        cm.record_run(_run(8, s), threads=2, seconds=alone[s] + 2.0, context="dashboard")
    assert estimate_seconds([_run(8, 1000)], "cpu", context="dashboard") == pytest.approx(alone[1000] + 2.0, rel=1e-3)


def test_only_a_whole_unpaused_run_is_recorded(tmp_path, monkeypatch):
    import threading

    from resnet_core.training.runs import RunStore, execute_run

    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path))
    recorded = []
    monkeypatch.setattr(cm, "record_run", lambda cfg, threads, seconds, **kw: recorded.append((kw["context"], seconds)))
    store = RunStore(tmp_path / "runs")
    tiny = _run(8, 3, batch=8, size=16)
    execute_run(store.create(tiny, status="queued"))
    assert len(recorded) == 1 and recorded[0][0] == "cli" and recorded[0][1] > 0
    stop = threading.Event()
    stop.set()
    execute_run(store.create(tiny, status="queued"), stop=stop)           # stopped before its end
    pause = threading.Event()
    pause.set()
    threading.Timer(0.3, pause.clear).start()
    execute_run(store.create(tiny, status="queued"), pause=pause)         # paused on its way
    assert len(recorded) == 1


def test_the_dashboards_runs_and_the_clis_teach_their_own_estimates(tmp_path, monkeypatch):
    """A run beside the page and the browser is slower than the same run from the CLI (a 5 s Start took
    6.2-7.5 s on 2 cores): each context keeps its own history; one with none has the calibration alone."""
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path))
    cal = _cal({1: (1.0, 0.0, 0.0), 2: (0.5, 0.0, 0.0)}, cores=2)
    cal.machine = dict(cm.machine_info("cpu"), cores=2)
    cm.cache_path("cpu").write_text(json.dumps(cal.to_dict()))
    run = _run(8, 100)
    alone = (100 + 10 / (3 * 64)) * 0.5
    cm.record_run(run, threads=2, seconds=1.2 * alone, context="cli")
    assert estimate_seconds([run], "cpu", context="dashboard") == pytest.approx(alone, rel=1e-9)
    cm.record_run(run, threads=2, seconds=1.4 * alone, context="dashboard")
    assert estimate_seconds([run], "cpu", context="dashboard") == pytest.approx(1.4 * alone, rel=1e-3)
    assert estimate_seconds([run], "cpu", context="cli") == pytest.approx(1.2 * alone, rel=1e-3)
    assert "corrected by 1 run(s) finished here (dashboard)" in cm.estimate_basis(cm.load_calibration("cpu"), "dashboard")


def test_a_failure_to_keep_a_runs_time_does_not_fail_the_run(tmp_path, monkeypatch):
    from resnet_core.training.runs import RunStore, execute_run

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cm, "record_run", broken)
    store = RunStore(tmp_path / "runs")
    writer = store.create(_run(8, 3, batch=8, size=16), status="queued")
    result = execute_run(writer)
    assert result is not None and result.status == "finished"
    assert store.get(writer.run_id).status == "finished"
