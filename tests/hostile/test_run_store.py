"""Item 7: the run store survives what a real disk and real users do: malformed run folders, reused
pids, two resumes, torn checkpoints, many checkpoints, same-second run ids, a full disk."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from resnet_core.training import runs as runs_mod
from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.training.resume import plan_resume, reopen
from resnet_core.training.runs import RunStore, execute_run

ROOT = Path(__file__).resolve().parents[2]


def tiny(steps: int = 6, every: int = 2) -> RunConfig:
    return RunConfig(model=ModelConfig(depth=8, width=0.25), data=DataConfig(n_train=64, n_test=16, image_size=8),
                     train=TrainConfig(steps=steps, batch_size=16, device="cpu", eval_every=0, eval_batches=1,
                                       feature_maps_every=0, checkpoint_every=every))


def stopped_at(store: RunStore, step: int, cfg: RunConfig | None = None) -> str:
    stop = threading.Event()
    writer = store.create(cfg or tiny())
    execute_run(writer, stop=stop, on_event=lambda e: e["type"] == "step" and e["step"] == step and stop.set())
    return writer.run_id


def malformed_store(root: Path) -> dict[str, str]:
    """Run folders as a crash, a bad disk or a hand edit leave them; returns {run id: what is wrong}."""
    store = RunStore(root)
    cases = {"status-list": ("status.json", "[]"), "pid-text": ("status.json", None),
             "config-list": ("config.json", "[1, 2]"), "status-unknown": ("status.json", '{"status": "zombie"}'),
             "no-status": ("status.json", "")}
    out = {}
    for name, (file, text) in cases.items():
        w = store.create(tiny(), run_id=f"bad-{name}")
        w.close()
        if text is None:
            status = json.loads((w.path / "status.json").read_text())
            status.update(status="running", pid="abc", created="yesterday")
            text = json.dumps(status)
        if text == "":
            (w.path / file).unlink()
        else:
            (w.path / file).write_text(text)
        out[w.run_id] = name
    return out


def test_malformed_run_folders_are_listed_as_damaged_and_can_be_deleted(tmp_path):
    store = RunStore(tmp_path)
    bad = malformed_store(tmp_path)
    listed = {i.run_id: i for i in store.list()}
    for run_id in bad:
        assert listed[run_id].status == "damaged" and listed[run_id].error, run_id
        store.delete(run_id)
    assert store.list() == []


@pytest.mark.parametrize("page", ["train", "compare", "why", "attribution"])
def test_a_malformed_run_folder_breaks_no_page(page, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("RESNET_LAB_RUNS", str(runs))
    malformed_store(runs)
    at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]


def test_delete_is_offered_for_a_damaged_run(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("RESNET_LAB_RUNS", str(runs))
    (victim,) = [r for r, name in malformed_store(runs).items() if name == "pid-text"]
    at = AppTest.from_file(str(ROOT / "pages" / "compare.py"), default_timeout=60).run()
    at.selectbox(key="delete_run").set_value(victim).run()
    at.button(key="delete").click().run()
    at.button(key="delete_yes").click().run()
    assert not at.exception and not (runs / victim).exists()


def test_liveness_is_the_writers_lock_not_a_pid(tmp_path):
    store = RunStore(tmp_path)
    w = store.create(tiny())
    w.set_status("running")
    assert store.get(w.run_id).status == "running"  # its writer is alive (this process)
    w.close()
    status = json.loads((w.path / "status.json").read_text())
    for pid in (os.getpid(), None):  # a reused pid (alive: this very process), and a missing one
        if pid is None:
            status.pop("pid")
        else:
            status["pid"] = pid
        (w.path / "status.json").write_text(json.dumps(status))
        assert store.get(w.run_id).status == "interrupted", pid
    store.delete(w.run_id)
    # A writer in another process (a child running the run) is alive exactly as long as that process.
    code = ("import sys, time; from resnet_core.training.runs import RunStore; from resnet_core.config import RunConfig; "
            "w = RunStore(sys.argv[1]).create(RunConfig(), status='running', run_id='child'); "
            "print('ready', flush=True); time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "ready"
        assert store.get("child").status == "running"
        with pytest.raises(RuntimeError, match="running"):
            store.delete("child")
    finally:
        child.kill()
        child.wait()
    assert store.get("child").status == "interrupted"


def test_a_second_resume_is_refused_and_no_steps_are_lost(tmp_path):
    store = RunStore(tmp_path)
    run_id = stopped_at(store, 3)
    first, second = plan_resume(store, run_id), plan_resume(store, run_id)
    writer = reopen(first)
    with pytest.raises(RuntimeError, match="already being resumed"):  # runs.RunBusy
        reopen(second)
    execute_run(writer, resume=first.state)
    steps = [r["step"] for r in store.read_metrics(run_id) if r["type"] == "step"]
    assert steps == list(range(1, 7)) and store.get(run_id).status == "finished"
    with pytest.raises(ValueError, match="finished"):
        plan_resume(store, run_id)


def test_last_pt_is_replaced_atomically_never_rewritten_in_place(tmp_path):
    store = RunStore(tmp_path)
    w = store.create(tiny(steps=6, every=2))
    last = w.path / "checkpoints" / "last.pt"
    opened: dict = {}

    def on_event(e):
        if e["type"] == "checkpoint" and e["step"] == 2:
            opened["f"] = open(last, "rb")  # a reader that opened last.pt at step 2
            opened["bytes"] = last.read_bytes()

    execute_run(w, on_event=on_event)
    with opened["f"] as f:
        assert f.read() == opened["bytes"]  # its file was never rewritten under it
    assert last.read_bytes() != opened["bytes"]
    assert not [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")]


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    store = RunStore(tmp_path)
    run_id = stopped_at(store, 5)
    ckpts = store.root / run_id / "checkpoints"
    data = (ckpts / "last.pt").read_bytes()
    (ckpts / "last.pt").write_bytes(data[: len(data) // 2])  # a crash during its write
    plan = plan_resume(store, run_id)
    assert plan.step == 4  # step_00000004.pt
    execute_run(reopen(plan), resume=plan.state)
    assert store.get(run_id).status == "finished"


def test_step_checkpoints_are_pruned_to_the_last_few(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_KEEP_CHECKPOINTS", "2")
    store = RunStore(tmp_path)
    w = store.create(tiny(steps=8, every=1))
    execute_run(w)
    names = sorted(p.name for p in (w.path / "checkpoints").iterdir())
    assert names == ["init.pt", "last.pt", "step_00000006.pt", "step_00000007.pt"]


def test_run_ids_cannot_collide(tmp_path, monkeypatch):
    monkeypatch.setattr(runs_mod.secrets, "token_hex", lambda n=None: "00")
    monkeypatch.setattr(runs_mod.time, "strftime", lambda fmt, *a: "20250101-000000")
    store = RunStore(tmp_path)
    ids = [store.create(tiny()).run_id for _ in range(3)]
    assert len(set(ids)) == 3


def test_a_full_disk_fails_the_run_with_a_clear_message(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 2**20, 2**20))
    store = RunStore(tmp_path)
    w = store.create(tiny(steps=4, every=2))
    execute_run(w)
    info = store.get(w.run_id)
    assert info.status == "failed" and "not enough free disk for a checkpoint" in info.error
    assert "\n" not in info.error
    assert [r["step"] for r in store.read_metrics(w.run_id) if r["type"] == "step"] == [1, 2]


def test_an_analysis_ending_after_its_run_was_deleted_does_not_bring_it_back(tmp_path):
    from resnet_core.analysis.base import write_cache

    store = RunStore(tmp_path)
    w = store.create(tiny())
    w.close()
    path = w.path / "analysis" / "lesion-0123.json"
    store.delete(w.run_id)
    write_cache(path, {"analysis": "lesion"})
    assert not w.path.exists() and store.list() == []
