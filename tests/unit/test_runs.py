import json
import os
import threading

import pytest

from resnet_core.nets.checkpoints import load_checkpoint
from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.training.runs import RunStore, execute_run, validate_run_id


def tiny(steps=4, **data):
    return RunConfig(model=ModelConfig(depth=8), data=DataConfig(n_train=128, n_test=32, **data),
                     train=TrainConfig(steps=steps, batch_size=16, eval_every=2, eval_batches=1,
                                       feature_maps_every=2, checkpoint_every=2, device="cpu"))


def test_a_run_directory_holds_config_metrics_features_checkpoints_and_status(tmp_path):
    store = RunStore(tmp_path)
    writer = store.create(tiny())
    assert store.get(writer.run_id).status == "queued"
    execute_run(writer)
    info = store.get(writer.run_id)
    assert info.status == "finished" and info.summary["steps"] == 4
    assert RunConfig.from_dict(info.config) == tiny()
    assert info.layout["blocks"] == ["layer1.0", "layer2.0", "layer3.0"]
    records = store.read_metrics(writer.run_id)
    assert [r["step"] for r in records if r["type"] == "step"] == [1, 2, 3, 4]
    assert store.feature_steps(writer.run_id) == [1, 2, 4]
    step, maps = store.read_features(writer.run_id)
    assert step == 4 and maps["layer1.0/F"].ndim == 3
    ckpts = sorted(p.name for p in (info.path / "checkpoints").iterdir())
    assert ckpts == ["init.pt", "last.pt", "step_00000002.pt"]  # init.pt: the weights at step 0
    loaded = load_checkpoint(store.checkpoint_path(writer.run_id))
    assert loaded.model_cfg == tiny().model and loaded.meta["step"] == 4
    assert loaded.classes == list(info.summary["classes"])


def test_metrics_are_readable_while_written_and_a_torn_line_is_skipped(tmp_path):
    store = RunStore(tmp_path)
    writer = store.create(tiny())
    seen = []
    stop = threading.Event()

    def peek(e):
        if e["type"] == "step":
            seen.append(len([r for r in store.read_metrics(writer.run_id) if r["type"] == "step"]))

    execute_run(writer, stop=stop, on_event=peek)
    assert seen == [1, 2, 3, 4]  # each step is on disk before the next one starts
    with open(writer.path / "metrics.jsonl", "a") as f:
        f.write('{"type": "step", "step": 5, "train_lo')  # a writer killed mid-line
    assert [r["step"] for r in store.read_metrics(writer.run_id) if r["type"] == "step"] == [1, 2, 3, 4]


def test_failed_run_records_the_reason_and_keeps_going(tmp_path):
    store = RunStore(tmp_path)
    writer = store.create(tiny(name="folder", path=str(tmp_path / "nowhere")))
    assert execute_run(writer) is None
    info = store.get(writer.run_id)
    assert info.status == "failed" and "nowhere" in info.error


def test_damaged_and_interrupted_runs_are_listed_not_crashing(tmp_path):
    store = RunStore(tmp_path)
    good = store.create(tiny())
    execute_run(good)
    broken = store.create(tiny())
    (broken.path / "status.json").write_text("{not json")
    dead = store.create(tiny())
    status = json.loads((dead.path / "status.json").read_text())
    status.update(status="running", pid=2 ** 22 + 12345)  # no such process
    (dead.path / "status.json").write_text(json.dumps(status))
    dead.close()  # its writer's lock is gone, as when its process dies
    (tmp_path / "stray-file.txt").write_text("not a run")
    by_id = {r.run_id: r for r in store.list()}
    assert by_id[good.run_id].status == "finished"
    assert by_id[broken.run_id].status == "damaged" and by_id[broken.run_id].error
    assert by_id[dead.run_id].status == "interrupted"


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", "", ".hidden", "x" * 200, "a\nb"])
def test_run_ids_are_validated(tmp_path, bad):
    with pytest.raises(ValueError):
        validate_run_id(bad)
    with pytest.raises(ValueError):
        RunStore(tmp_path).get(bad)


def test_delete_refuses_active_runs(tmp_path):
    store = RunStore(tmp_path)
    w = store.create(tiny())
    with pytest.raises(RuntimeError, match="stop it"):
        store.delete(w.run_id)
    execute_run(w)
    store.delete(w.run_id)
    assert store.list() == [] and not os.path.exists(w.path)
