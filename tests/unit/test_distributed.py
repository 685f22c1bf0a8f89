"""Training beyond one process, as a user runs it: torchrun with two gloo ranks on the CPU, stop
requests, a failing rank, resuming a killed run; and the loader's sharding and state in-process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet_core.nets.checkpoints import load_checkpoint, load_train_state
from resnet_core.config import ConfigError, DataConfig, RunConfig
from resnet_core.data import BatchLoader, load_dataset
from resnet_core.training.distributed import DistContext, Launch
from resnet_core.training.runs import RunStore
from tests.conftest import ROOT

TORCHRUN = Path(sys.executable).with_name("torchrun")
STEPS = 20
# A tiny net without BN, global batch 32, every step logged: the comparison.
FLAGS = ["train", "--depth", "8", "--no-bn", "--steps", str(STEPS), "--batch-size", "32", "--n-train", "256",
         "--n-test", "64", "--eval-every", "10", "--feature-maps-every", "10", "--checkpoint-every", "5",
         "--device", "cpu", "--quiet"]
# One thread per process: two ranks on a shared 2-core machine must not oversubscribe it.
ENV = {"OMP_NUM_THREADS": "1"}


def run(args, runs_dir, torchrun=False, timeout=120, fail_at=None):
    """``python -m resnet_core ARGS``, under torchrun with two ranks if asked; ``fail_at`` (step, rank or
    "all", "raise" or "kill") runs it through tests/fail_at_step.py, which fails that rank at that step."""
    module = ["tests.fail_at_step", *map(str, fail_at), "--"] if fail_at else ["resnet_core"]
    cmd = ([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", *module] if torchrun
           else [sys.executable, "-m", *module])
    return subprocess.run(["timeout", "-k", "5", str(timeout), *cmd, *args, "--runs-dir", str(runs_dir)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, **ENV})


def last_json(proc):
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stdout + proc.stderr[-3000:]
    return json.loads(lines[-1])


def step_losses(store: RunStore, run_id: str) -> dict[int, float]:
    records = [r for r in store.read_metrics(run_id) if r["type"] == "step"]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"a step was recorded twice: {steps}"
    return {r["step"]: r["train_loss"] for r in records}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process run every distributed run is compared with."""
    runs = tmp_path_factory.mktemp("reference")
    p = run(FLAGS, runs)
    assert p.returncode == 0, p.stderr[-3000:]
    out = last_json(p)
    return RunStore(runs), out["run_id"]


def test_two_gloo_ranks_match_one_process_step_by_step(reference, tmp_path):
    ref_store, ref_id = reference
    p = run(FLAGS, tmp_path, torchrun=True)
    assert p.returncode == 0, p.stderr[-3000:]
    out = last_json(p)
    assert out["status"] == "finished" and out["steps"] == STEPS and out["world_size"] == 2
    assert [d.name for d in tmp_path.iterdir()] == [out["run_id"]]   # one run directory: rank 0's
    assert sum(ln.startswith("{") for ln in p.stdout.splitlines()) == 1  # one summary: rank 0's
    store = RunStore(tmp_path)
    ref, dist = step_losses(ref_store, ref_id), step_losses(store, out["run_id"])
    assert list(dist) == list(ref) == list(range(1, STEPS + 1))
    assert max(abs(ref[s] - dist[s]) for s in ref) < 1e-4
    info = store.get(out["run_id"])
    assert info.config["distributed"] == {"world_size": 2, "backend": "gloo", "sync_bn": False,
                                          "probes": "rank0-shard"}
    assert info.summary["pid"] != os.getpid() and info.status == "finished"
    a = load_checkpoint(ref_store.checkpoint_path(ref_id)).model.state_dict()
    b = load_checkpoint(store.checkpoint_path(out["run_id"])).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    # The sharded, all-reduced test evaluation scores the same images as the single process.
    assert info.summary["test_acc"] == pytest.approx(ref_store.get(ref_id).summary["test_acc"], abs=1e-6)


@pytest.mark.parametrize("how,ranks", [("stop-file", 2), ("sigterm", 1)])
def test_a_stop_request_ends_every_rank_with_the_run_stopped(tmp_path, how, ranks):
    # BatchNorm on (per-rank statistics under torchrun), a long run that only the stop request ends.
    flags = [f for f in FLAGS if f != "--no-bn"]
    flags[flags.index("--steps") + 1] = "100000"
    cmd = ([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "resnet_core"] if ranks == 2
           else [sys.executable, "-m", "resnet_core"])
    # GNU timeout passes a SIGTERM it receives on to the command.
    launcher = subprocess.Popen(["timeout", "-k", "5", "120", *cmd, *flags, "--runs-dir", str(tmp_path)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV})
    try:
        store = RunStore(tmp_path)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            runs = store.list()
            if runs and len(step_losses(store, runs[0].run_id)) >= 3:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the distributed run never got going")
        # Listed as running: status.json carries rank 0's pid, alive, not the launcher's.
        assert store.get(runs[0].run_id).status == "running"
        if how == "stop-file":
            (runs[0].path / "STOP").touch()
        else:
            launcher.terminate()
        stdout, stderr = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, stderr[-3000:]
    out = json.loads([ln for ln in stdout.splitlines() if ln.startswith("{")][-1])
    info = store.get(out["run_id"])
    assert info.status == "stopped" and 3 <= out["steps"] < 100000
    assert max(step_losses(store, out["run_id"])) == out["steps"]
    assert load_train_state(store.checkpoint_path(out["run_id"]))["step"] == out["steps"]
    assert not (info.path / "STOP").exists()   # honoured and removed, so a resume does not stop at once


def test_a_failing_rank_fails_the_run_with_its_message_and_the_launcher_exits(tmp_path):
    t0 = time.monotonic()
    p = run(FLAGS, tmp_path, torchrun=True, fail_at=(5, 1, "raise"), timeout=90)
    assert p.returncode not in (0, 124, 137), p.stderr[-3000:]   # non-zero, and not by the timeout
    assert time.monotonic() - t0 < 80
    out = last_json(p)
    assert out["status"] == "failed" and out["error"].startswith("rank 1: RuntimeError: injected failure at step 5")
    info = RunStore(tmp_path).get(out["run_id"])
    assert info.status == "failed" and "rank 1" in info.error
    assert max(step_losses(RunStore(tmp_path), out["run_id"])) == 4  # every step before the failure kept


@pytest.mark.parametrize("ranks", [1, 2])
def test_a_killed_run_resumes_with_the_uninterrupted_runs_losses(reference, tmp_path, ranks):
    ref_store, ref_id = reference
    p = run(FLAGS, tmp_path, torchrun=ranks == 2, fail_at=(13, "all", "kill"))
    assert p.returncode != 0
    store = RunStore(tmp_path)
    (info,) = store.list()
    assert info.status == "interrupted"                      # killed: no final status written
    assert max(step_losses(store, info.run_id)) == 12         # ran past its last checkpoint (step 10)
    p = run(["train", "--resume", info.run_id, "--quiet"], tmp_path, torchrun=ranks == 2)
    assert p.returncode == 0, p.stderr[-3000:]
    out = last_json(p)
    assert out["run_id"] == info.run_id and out["status"] == "finished" and out["steps"] == STEPS
    ref, resumed = step_losses(ref_store, ref_id), step_losses(store, info.run_id)
    assert list(resumed) == list(range(1, STEPS + 1))         # steps 11 and 12 recorded once, not twice
    assert max(abs(ref[s] - resumed[s]) for s in ref) < 1e-4
    assert [r["step"] for r in store.read_metrics(info.run_id) if r["type"] == "resume"] == [10]


def test_resume_refuses_finished_runs_and_unknown_ids(reference, capsys):
    from resnet_core.cli.main import main

    store, run_id = reference
    for spec, needle in [(run_id, "finished"), ("no-such-run", "no run"), ("../x", "invalid run id")]:
        assert main(["train", "--resume", spec, "--runs-dir", str(store.root)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def test_sync_bn_is_refused_on_the_cpu_with_a_reason():
    # PyTorch's DistributedDataParallel refuses SyncBatchNorm on CPU modules (measured, torch 2.14),
    # so the refusal comes before any process group is joined.
    with pytest.raises(ConfigError, match="--sync-bn needs CUDA"):
        DistContext.start(Launch(rank=0, world_size=2, local_rank=0), "cpu", sync_bn=True)


@pytest.mark.parametrize("augment,pca", [(True, False), (True, True), (False, False)])
def test_shards_of_the_global_batch_are_the_single_process_batch(augment, pca):
    ds = load_dataset(DataConfig(n_train=64, n_test=10))
    whole = BatchLoader(ds, 16, "cpu", seed=3, augment=augment, pca_color=pca)
    shards = [BatchLoader(ds, 16, "cpu", seed=3, augment=augment, pca_color=pca, shard=(r, 4)) for r in range(4)]
    for _ in range(6):  # crosses an epoch boundary (4 steps per epoch)
        x, y = whole.next()
        parts = [s.next() for s in shards]
        assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(torch.cat([p[1] for p in parts]), y)


def test_loader_state_continues_the_same_stream():
    ds = load_dataset(DataConfig(n_train=64, n_test=10))
    a = BatchLoader(ds, 16, "cpu", seed=5)
    for _ in range(3):
        a.next()
    b = BatchLoader(ds, 16, "cpu", seed=99)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        (xa, ya), (xb, yb) = a.next(), b.next()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(Exception, match="multiple of 3"):
        BatchLoader(ds, 16, "cpu", seed=0, shard=(0, 3))


def test_old_run_configs_without_a_distributed_section_still_load():
    d = RunConfig().to_dict()
    del d["distributed"]
    assert RunConfig.from_dict(d) == RunConfig()


@pytest.mark.parametrize("bad", ["", "a,b", "0;1", "-1"])
def test_gpu_lists_are_validated(bad):
    from resnet_core.training.distributed import parse_gpus
    with pytest.raises(ConfigError, match="--gpus"):
        parse_gpus(bad)
    assert parse_gpus("0, 1,2") == ["0", "1", "2"]


def test_a_run_written_from_another_host_is_judged_by_its_heartbeat(tmp_path):
    from resnet_core.config import TrainConfig
    from resnet_core.training.runs import REMOTE_STALE_S

    store = RunStore(tmp_path)
    writer = store.create(RunConfig(train=TrainConfig(steps=1)), status="running")
    writer.close()
    status_file = writer.path / "status.json"
    status = json.loads(status_file.read_text())
    # Rank 0 on another node: its pid means nothing here, so a fresh status counts as alive...
    status.update(host="some-other-node", pid=2 ** 22 + 99, updated=time.time())
    status_file.write_text(json.dumps(status))
    assert store.get(writer.run_id).status == "running"
    # ...and one not rewritten for longer than the stale limit as cut off.
    status.update(updated=time.time() - REMOTE_STALE_S - 1)
    status_file.write_text(json.dumps(status))
    assert store.get(writer.run_id).status == "interrupted"


def test_reproduce_spreads_a_presets_runs_over_devices_into_one_group(tmp_path, capsys):
    from resnet_core.cli.main import main

    runs = tmp_path / "runs"
    # 40 steps, not 2: each slot's run is a process of its own, and a 2-step run could end before the
    # other slot's process, still importing torch, had created its run (seen once in a fresh clone).
    code = main(["reproduce", "options", "--steps", "40", "--gpus", "cpu,cpu", "--quiet", "--n-train", "64",
                 "--n-test", "20", "--runs-dir", str(runs), "--out", str(tmp_path / "figs")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert [r["status"] for r in out["runs"]] == ["finished"] * 3 and out["parallel"] == 2
    assert [r["label"] for r in out["runs"]] == [f"resnet-20 w0.5 16px large no-aug option {s}" for s in "ABC"]
    infos = RunStore(runs).list()
    assert sorted(i.run_id for i in infos) == sorted(r["run_id"] for r in out["runs"])
    assert {RunConfig.from_dict(i.config).group for i in infos} == {out["group"]}
    assert all(r["steps"] == 40 for r in out["runs"])
    # Two device slots, three runs: the first two to start (longest first, not the preset's order) trained
    # side by side, the third waited for a slot.
    by_id = {i.run_id: i for i in infos}
    started = sorted((by_id[r["run_id"]].created, by_id[r["run_id"]].summary["finished"]) for r in out["runs"])
    first_end = min(end for _, end in started[:2])
    assert started[1][0] < first_end and started[2][0] >= first_end
    assert all(by_id[r["run_id"]].config["train"]["device"] == "cpu" for r in out["runs"])
