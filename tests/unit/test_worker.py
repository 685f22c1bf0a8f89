"""The run manager without a browser: start, stop, queue, pause, failures, restart recovery."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dashboard.worker import RunManager
from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.runs import RunStore

ROOT = Path(__file__).resolve().parents[2]
TINY_DATA = DataConfig(n_train=512, n_test=128)


def tiny(steps=8, residual=True, **train) -> RunConfig:
    return RunConfig(model=ModelConfig(depth=8, residual=residual), data=TINY_DATA,
                     train=TrainConfig(steps=steps, batch_size=32, device="cpu", eval_every=0,
                                       feature_maps_every=4, **train))


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def steps_written(store: RunStore, run_id: str) -> int:
    return sum(1 for r in store.read_metrics(run_id) if r["type"] == "step")


@pytest.fixture
def manager(tmp_path):
    m = RunManager(tmp_path / "runs", max_concurrent=2)
    yield m
    assert m.shutdown(timeout=60), "runs still alive after shutdown"


def test_a_run_trains_into_the_store(manager):
    run_id = manager.start(tiny(steps=6))
    assert manager.wait([run_id], timeout=120)
    info = manager.store.get(run_id)
    assert info.status == "finished"
    assert info.layout and info.layout["layers"]
    assert steps_written(manager.store, run_id) == 6
    assert manager.store.feature_steps(run_id)  # the probe image's maps were kept
    assert manager.active() == [] and manager.queued() == []


def test_stop_ends_a_run_and_keeps_its_metrics(manager):
    run_id = manager.start(tiny(steps=100_000))
    wait_for(lambda: steps_written(manager.store, run_id) >= 2, what="first steps")
    assert manager.stop(run_id)
    assert manager.wait([run_id], timeout=60)
    info = manager.store.get(run_id)
    assert info.status == "stopped"
    assert steps_written(manager.store, run_id) >= 2
    assert manager.store.checkpoint_path(run_id) is not None


def test_more_runs_than_slots_queue_in_order_and_a_queued_run_can_be_stopped(tmp_path):
    m = RunManager(tmp_path / "runs", max_concurrent=1)
    try:
        first, second, third = m.start_group([tiny(steps=100_000), tiny(steps=3), tiny(steps=3)], "three")
        assert m.active() == [first]
        assert m.queued() == [second, third]
        assert m.store.get(third).status == "queued"   # listed at once, before it starts
        assert m.last_group() == ("three", [first, second, third])

        assert m.stop(third)                            # off the queue, never trained
        assert m.queued() == [second]
        assert m.store.get(third).status == "stopped"
        assert steps_written(m.store, third) == 0

        wait_for(lambda: steps_written(m.store, first) >= 1, what="first run's first step")
        m.stop(first)                                   # frees the slot: the queued run starts
        assert m.wait(timeout=120)
        assert m.store.get(first).status == "stopped"
        assert m.store.get(second).status == "finished"
    finally:
        m.shutdown()


def test_pause_holds_a_run_and_resume_lets_it_finish(manager):
    run_id = manager.start(tiny(steps=20))
    wait_for(lambda: steps_written(manager.store, run_id) >= 1, what="first step")
    assert manager.pause(run_id)
    assert manager.live(run_id).paused
    held = steps_written(manager.store, run_id)
    time.sleep(0.5)
    assert steps_written(manager.store, run_id) <= held + 1   # at most the step in flight
    assert manager.resume(run_id)
    assert manager.wait([run_id], timeout=120)
    assert manager.store.get(run_id).status == "finished"


def test_a_failing_run_is_recorded_with_its_reason(manager, tmp_path):
    bad = RunConfig(model=ModelConfig(depth=8), data=DataConfig(name="folder", path=str(tmp_path / "nowhere")),
                    train=TrainConfig(steps=2, batch_size=8, device="cpu"))
    run_id = manager.start(bad)
    assert manager.wait([run_id], timeout=60)
    info = manager.store.get(run_id)
    assert info.status == "failed"
    assert "nowhere" in info.error


def test_a_twin_trained_together_starts_from_the_same_weights_as_alone(tmp_path):
    """Twins start in two threads at once; the core seeds and draws the weights under a lock, so the
    residual twin's first losses equal those of the same run trained alone."""
    alone = RunManager(tmp_path / "alone", max_concurrent=1)
    together = RunManager(tmp_path / "together", max_concurrent=2)
    cfg = tiny(steps=3)
    a = alone.start(cfg)
    assert alone.wait(timeout=120)
    _, b = together.start_group([tiny(steps=3, residual=False), cfg], "twin")
    assert together.wait(timeout=120)
    losses = lambda m, r: [x["train_loss"] for x in m.store.read_metrics(r) if x["type"] == "step"]
    assert losses(alone, a) == pytest.approx(losses(together, b), rel=1e-4)


def test_after_a_server_restart_every_run_is_listed_with_its_curves(tmp_path):
    """A process trains one run and queues another, then dies (SIGKILL, as a killed server would).
    A fresh store lists both: the cut-off run as interrupted with its metrics, the queued one too."""
    runs = tmp_path / "runs"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from dashboard.worker import RunManager
        from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
        cfg = RunConfig(model=ModelConfig(depth=8), data=DataConfig(n_train=512, n_test=128),
                        train=TrainConfig(steps=100000, batch_size=32, device="cpu", eval_every=0))
        m = RunManager({str(runs)!r}, max_concurrent=1)
        ids = m.start_group([cfg, cfg], "two")
        print(" ".join(ids), flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        running, queued = proc.stdout.readline().split()
        store = RunStore(runs)
        wait_for(lambda: steps_written(store, running) >= 2, timeout=120, what="steps in the child")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    fresh = RunStore(runs)
    listed = {i.run_id: i for i in fresh.list()}
    assert listed[running].status == "interrupted"
    assert listed[queued].status == "interrupted"
    assert steps_written(fresh, running) >= 2
    # and a new manager over the same directory can delete them: they are no longer active
    RunManager(runs).delete(queued)
    assert queued not in {i.run_id for i in fresh.list()}


def test_the_worker_charts_and_series_never_import_streamlit():
    code = ("import sys; import dashboard.worker, dashboard.charts, dashboard.series, dashboard.presets; "
            "print(json.dumps('streamlit' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) is False
