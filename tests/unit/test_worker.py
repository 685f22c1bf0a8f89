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
from resnet_core.training.runs import RunStore

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
    run_id = manager.start(tiny(steps=200))
    wait_for(lambda: steps_written(manager.store, run_id) >= 1, what="first step")
    assert manager.pause(run_id)
    assert manager.live(run_id).paused
    time.sleep(0.5)   # the request crosses to the training process; the step in flight completes
    held = steps_written(manager.store, run_id)
    time.sleep(0.5)
    assert steps_written(manager.store, run_id) == held       # held: no step while paused
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
    """Twins start in two training processes at once, so the residual twin's first losses equal those
    of the same run trained alone (the first exactly: the same weights and batch; later ones within
    float noise, since alone the run gets two threads and in a pair one, which reorders reductions)."""
    alone = RunManager(tmp_path / "alone", max_concurrent=1)
    together = RunManager(tmp_path / "together", max_concurrent=2)
    cfg = tiny(steps=3)
    a = alone.start(cfg)
    assert alone.wait(timeout=120)
    _, b = together.start_group([tiny(steps=3, residual=False), cfg], "twin")
    assert together.wait(timeout=120)
    losses = lambda m, r: [x["train_loss"] for x in m.store.read_metrics(r) if x["type"] == "step"]
    assert losses(alone, a)[0] == pytest.approx(losses(together, b)[0], rel=1e-5)
    assert losses(alone, a) == pytest.approx(losses(together, b), rel=1e-3)


def test_after_a_server_restart_every_run_is_listed_with_its_curves(tmp_path):
    """A server process trains one run and queues another, then dies (SIGKILL, as a killed server
    would). A fresh store lists both: the run in training stopped by its training process after the
    step in flight (its server gone), with its metrics and a checkpoint to resume from; the queued
    one as interrupted."""
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
    wait_for(lambda: fresh.get(running).status not in ("running", "queued"), timeout=60,
             what="the orphaned training process to stop")
    listed = {i.run_id: i for i in fresh.list()}
    assert listed[running].status == "stopped"
    assert fresh.checkpoint_path(running) is not None
    assert listed[queued].status == "interrupted"
    assert steps_written(fresh, running) >= 2
    # and a new manager over the same directory can delete them: they are no longer active
    RunManager(runs).delete(queued)
    assert queued not in {i.run_id for i in fresh.list()}


def test_the_worker_charts_and_series_never_import_streamlit():
    code = ("import sys; import dashboard.worker, resnet_core.figures.training, resnet_core.training.series, dashboard.preset_groups; "
            "print(json.dumps('streamlit' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) is False


def test_a_run_killed_in_its_process_fails_alone_while_another_finishes(manager):
    """A training process that dies mid-run (here SIGKILL, as the kernel's OOM killer sends) ends its
    run ``failed`` with the reason; the run beside it and the manager go on."""
    doomed, fine = manager.start_group([tiny(steps=100_000), tiny(steps=30)], "two")
    wait_for(lambda: steps_written(manager.store, doomed) >= 1, what="first step")
    os.kill(manager._running[doomed].child.proc.pid, signal.SIGKILL)
    assert manager.wait(timeout=120)
    info = manager.store.get(doomed)
    assert info.status == "failed"
    assert "killed (SIGKILL)" in info.error and "memory" in info.error
    assert steps_written(manager.store, doomed) >= 1          # what it wrote is kept
    assert manager.store.get(fine).status == "finished"
    again = manager.start(tiny(steps=2))                         # and the manager still trains
    assert manager.wait([again], timeout=120)
    assert manager.store.get(again).status == "finished"


def test_a_run_over_the_memory_limit_fails_alone_while_another_finishes(tmp_path, monkeypatch):
    """RESNET_LAB_RUN_MEMORY_GB caps each training process: a run that needs more (a big batch of a
    big input) ends failed with PyTorch's allocation error; the small run beside it finishes."""
    from dashboard import processes

    monkeypatch.setenv("RESNET_LAB_RUN_MEMORY_GB", "1")
    monkeypatch.setattr(processes, "POOL", processes.Pool())   # processes started under the limit
    m = RunManager(tmp_path / "runs", max_concurrent=2)
    try:
        huge = RunConfig(model=ModelConfig(depth=20, width=4), data=DataConfig(n_train=64, n_test=16, image_size=64),
                         train=TrainConfig(steps=2, batch_size=4096, device="cpu", eval_every=0))
        big, small = m.start_group([huge, tiny(steps=5)], "two")
        assert m.wait(timeout=180)
        info = m.store.get(big)
        assert info.status == "failed", info
        assert "memory" in info.error.lower() or "alloc" in info.error.lower(), info.error
        assert m.store.get(small).status == "finished"
    finally:
        m.shutdown()
        processes.POOL.close()


def test_queued_runs_are_taken_round_robin_across_owners_with_a_cap_each(tmp_path):
    """One session's many runs do not hold up another's: with one slot, A's second run waits behind
    B's first; and no session may queue more than the cap."""
    from dashboard.worker import QueueFull

    m = RunManager(tmp_path / "runs", max_concurrent=1, max_queued=3)
    try:
        a1, a2, a3 = m.start_group([tiny(steps=100_000), tiny(steps=2), tiny(steps=2)], "A", owner="A")
        (b1,) = m.start_group([tiny(steps=2)], "B", owner="B")
        assert m.active() == [a1]
        assert m.queued() == [a2, b1, a3]       # FIFO would have been a2, a3, b1
        with pytest.raises(QueueFull, match="at most 3"):
            m.start_group([tiny(steps=2)] * 2, "A again", owner="A")
        assert m.queued_by("A") == 2 and m.queued_by("B") == 1
        m.start(tiny(steps=2), owner="B")        # B still has room
        wait_for(lambda: steps_written(m.store, a1) >= 1, what="first step")
        m.stop(a1)
        assert m.wait(timeout=120)
        order = sorted([a2, b1, a3], key=lambda r: m.store.get(r).summary.get("started", 0))
        assert order == [a2, b1, a3]
    finally:
        m.shutdown()


def test_runs_at_once_divide_the_cores_and_a_run_alone_gets_them_all(tmp_path):
    """Two runs at once train with the cores divided between them (a core each on 2 cores, as
    ``reproduce --parallel 2``): the first run's process, started alone with every core, must take
    the smaller share once the second starts (three threads on two cores ran the Degradation preset
    at 0.6x the CLI's speed); once alone again it takes every core back."""
    from dashboard.worker import threads_per_run

    m = RunManager(tmp_path / "runs", max_concurrent=2)
    try:
        first, second = m.start_group([tiny(steps=100_000), tiny(steps=100_000)], "two")
        wait_for(lambda: all((m.live(r).step or 0) >= 3 and m.live(r).threads for r in (first, second)),
                 what="both runs training")
        wait_for(lambda: [m.live(r).threads for r in (first, second)] == [threads_per_run(2)] * 2,
                 timeout=10, what=f"both runs at {threads_per_run(2)} thread(s)")
        m.stop(second)
        assert m.wait([second], timeout=60)
        wait_for(lambda: m.live(first).threads == threads_per_run(1), timeout=10, what="the lone run on every core")
    finally:
        m.shutdown()


def test_a_start_waits_for_what_is_left_of_a_training_process_start(monkeypatch):
    """The page's estimate adds the wait for a training process: none once an idle one has loaded its
    data and warmed up; before that, what is left of the start time measured on this machine. Bug
    caught: the first Start on a fresh server took 43% longer than its estimate said."""
    from dashboard import processes
    from resnet_core.experiments import costmodel

    pool = processes.Pool()
    monkeypatch.setattr(processes, "POOL", pool)
    try:
        cfg = tiny(steps=2)
        pool.warm(1, data=cfg.data, run=cfg)
        child = pool._idle[0]
        deadline = time.monotonic() + 120
        while child.warm_s is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert child.warm_s is not None and child.warm_s > 0
        assert costmodel.process_start_seconds() == pytest.approx(child.warm_s, abs=1e-3)  # kept for the page
        assert pool.start_wait_s() == 0.0                  # a warm process is idle: a Start waits for nothing
        child.close()
        child.dead = True
        assert pool.start_wait_s() == pytest.approx(child.warm_s, abs=1e-3)   # a new one starts from scratch
    finally:
        pool.close()


def test_processes_started_first_thing_count_as_warm_only_once_they_loaded_what_the_manager_sent(monkeypatch):
    """A session starts the training processes before the server imports torch (``prestart``), and the
    run manager sends them their data and warm-up steps later: until those are done, a Start still
    waits, and the process's start is measured to their end. Bug caught: the head-start count was set at
    spawn only, so a process started early read as warm with its data still loading."""
    from dashboard import processes

    pool = processes.Pool()
    monkeypatch.setattr(processes, "POOL", pool)
    try:
        pool.warm(1)                                  # what prestart does: no data, no warm-up yet
        (child,) = pool._idle
        assert child.ready.wait(120)
        cfg = tiny(steps=2)
        pool.warm(1, data=cfg.data, run=cfg)          # the manager, once the page has imported the core
        assert pool._idle == [child] and child.head_start == 2    # its data and its warm-up to come
        deadline = time.monotonic() + 120
        while child.warm_s is None and time.monotonic() < deadline:
            assert child.head_start > 0 or child.warm_s is not None
            time.sleep(0.05)
        assert child.warm_s is not None and child.head_start == 0 and pool.start_wait_s() == 0.0
    finally:
        pool.close()


def test_the_process_module_does_not_import_torch():
    """``prestart`` runs before the server's first page imports torch; importing it must not."""
    out = subprocess.run([sys.executable, "-c", "import sys, dashboard.processes; print('torch' in sys.modules)"],
                         capture_output=True, text=True, cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
