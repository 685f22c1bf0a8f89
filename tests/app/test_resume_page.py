"""AppTest of the Resume control on the Compare page: a stopped run continues from its checkpoint in
its own directory and ends with every step recorded once; a finished run is not offered."""
from __future__ import annotations

import threading
from pathlib import Path

from streamlit.testing.v1 import AppTest

from dashboard.worker import RunManager
from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.training.runs import RunStore, execute_run

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "compare.py")
STEPS = 8


def tiny() -> RunConfig:
    return RunConfig(model=ModelConfig(depth=8), data=DataConfig(n_train=256, n_test=64),
                     train=TrainConfig(steps=STEPS, batch_size=32, device="cpu", eval_every=0, feature_maps_every=0))


def test_resume_continues_a_stopped_run_to_the_end(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    store = RunStore(runs_dir)
    finished = store.create(tiny())
    execute_run(finished)
    stop = threading.Event()
    stopped = store.create(tiny())
    execute_run(stopped, stop=stop, on_event=lambda e: e["type"] == "step" and e["step"] == 3 and stop.set())
    assert store.get(stopped.run_id).status == "stopped"

    monkeypatch.setenv("RESNET_LAB_RUNS", str(runs_dir))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    picker = at.selectbox(key="resume_pick")
    assert picker.value == stopped.run_id and len(picker.options) == 1   # the finished run is not offered
    at.button(key="resume_run").click().run()
    assert not at.exception and any("Resumed" in s.value for s in at.success)
    manager = RunManager.shared(runs_dir)
    try:
        assert manager.wait([stopped.run_id], timeout=120)
    finally:
        manager.shutdown(timeout=60)
    info = store.get(stopped.run_id)
    assert info.status == "finished" and info.summary["steps"] == STEPS
    steps = [r["step"] for r in store.read_metrics(stopped.run_id) if r["type"] == "step"]
    assert steps == list(range(1, STEPS + 1))
    at.run()
    assert not at.exception
    assert [s for s in at.selectbox if s.key == "resume_pick"] == []   # nothing left to resume
