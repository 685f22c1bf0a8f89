"""Resuming in one process, in-process: the checkpoint holds what the run continues from, the
records a killed process wrote past its checkpoint are dropped, and the resumed steps are exactly
the uninterrupted run's."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from dashboard.worker import RunManager
from resnet_core.nets.checkpoints import CheckpointError, load_train_state, save_checkpoint
from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.nets.models import build_model
from resnet_core.training.resume import plan_resume, reopen
from resnet_core.training.runs import RunStore, execute_run

STEPS = 8


def tiny(**train) -> RunConfig:
    return RunConfig(model=ModelConfig(depth=8), data=DataConfig(n_train=256, n_test=64, pca_color=True),
                     train=TrainConfig(**{"steps": STEPS, "batch_size": 32, "device": "cpu", "eval_every": 3,
                                          "eval_batches": 1, "feature_maps_every": 2, "checkpoint_every": 2, **train}))


def losses(store, run_id):
    return [(r["step"], r["train_loss"]) for r in store.read_metrics(run_id) if r["type"] == "step"]


def stopped_at(store, step):
    stop = threading.Event()
    writer = store.create(tiny())
    execute_run(writer, stop=stop, on_event=lambda e: e["type"] == "step" and e["step"] == step and stop.set())
    return writer.run_id


def test_a_stopped_run_resumes_to_exactly_the_uninterrupted_runs_steps(tmp_path):
    store = RunStore(tmp_path)
    whole = store.create(tiny())
    execute_run(whole)
    run_id = stopped_at(store, 3)
    state = load_train_state(store.checkpoint_path(run_id))
    assert state["step"] == 3 and state["loader"]["pos"] == 3 * 32 and state["optimizer"]["state"]
    plan = plan_resume(store, run_id)
    execute_run(reopen(plan), resume=plan.state)
    info = store.get(run_id)
    assert info.status == "finished" and info.summary["steps"] == STEPS
    assert losses(store, run_id) == losses(store, whole.run_id)   # bit for bit: same weights, momentum, batches
    # Plus the snapshot taken when it stopped at step 3.
    assert store.feature_steps(run_id) == sorted(store.feature_steps(whole.run_id) + [3])


def test_records_past_the_checkpoint_are_dropped_before_appending(tmp_path):
    store = RunStore(tmp_path)
    run_id = stopped_at(store, 4)
    path = store.root / run_id
    # What a process killed after its step-4 checkpoint would have left behind.
    with open(path / "metrics.jsonl", "a") as f:
        for step in (5, 6):
            f.write(json.dumps({"type": "step", "step": step, "train_loss": 9.0}) + "\n")
    np.savez_compressed(path / "features" / "00000006.npz", x=np.zeros(1))
    status = json.loads((path / "status.json").read_text())
    status.update(status="running", pid=2 ** 22 + 7)   # no such process: interrupted
    (path / "status.json").write_text(json.dumps(status))
    (path / "STOP").touch()
    assert store.get(run_id).status == "interrupted"
    writer = reopen(plan_resume(store, run_id))
    writer.close()
    records = store.read_metrics(run_id)
    assert max(r["step"] for r in records if "step" in r) == 4
    assert not any(r["type"] == "end" for r in records) and records[-1] == {"type": "resume", "step": 4, "world_size": 1}
    assert 6 not in store.feature_steps(run_id) and not (path / "STOP").exists()
    assert store.get(run_id).created == status["created"]   # stays where it was in the lists


def test_runs_that_cannot_continue_say_why(tmp_path):
    store = RunStore(tmp_path)
    done = store.create(tiny())
    execute_run(done)
    with pytest.raises(ValueError, match="finished"):
        plan_resume(store, done.run_id)
    old = store.create(tiny(), status="stopped")                       # a checkpoint of weights only
    save_checkpoint(old.path / "checkpoints" / "last.pt", build_model(tiny().model), tiny().to_dict(), step=2,
                    classes=list("abcdefghij"), mean=(0.5,) * 3, std=(0.2,) * 3)
    old.set_status("stopped")
    with pytest.raises(CheckpointError, match="weights only"):
        plan_resume(store, old.run_id)
    bare = store.create(tiny(), status="stopped")
    bare.set_status("stopped")
    with pytest.raises(ValueError, match="no checkpoint"):
        plan_resume(store, bare.run_id)
    manager = RunManager(tmp_path)
    with pytest.raises(ValueError, match="finished"):
        manager.resume_run(done.run_id)


def test_the_manager_resumes_a_run_in_its_own_directory(tmp_path):
    store = RunStore(tmp_path)
    whole = store.create(tiny())
    execute_run(whole)
    run_id = stopped_at(store, 5)
    manager = RunManager(tmp_path)
    assert manager.resume_run(run_id) == run_id
    with pytest.raises(RuntimeError, match="already"):
        manager.resume_run(run_id)
    assert manager.wait([run_id], timeout=120)
    assert store.get(run_id).status == "finished"
    assert losses(store, run_id) == losses(store, whole.run_id)
    assert [i.run_id for i in store.list()].count(run_id) == 1 and len(store.list()) == 2
