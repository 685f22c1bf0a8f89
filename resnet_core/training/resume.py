"""Continuing a stopped, interrupted or failed run from its last checkpoint, in its own run directory.

A resumable checkpoint (every checkpoint written since runs could be resumed) holds the weights, the
optimizer's state (momentum buffers), the loader's generator and position, and the step; the
learning-rate schedule is a function of the step. So a resumed run takes exactly the steps the
uninterrupted run would have taken, with the same batches, one process or several (the data order
is the global batch's, whatever the number of ranks).

The process that was killed may have run ahead of its last checkpoint: the records it wrote after
the checkpoint's step are dropped from ``metrics.jsonl`` (and its feature maps after that step
deleted) before the run is reopened, because those steps are taken again and would otherwise be
recorded twice. One CLI (``train --resume``) and the dashboard (``RunManager.resume_run``) share it.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from resnet_core.nets.checkpoints import CheckpointError, load_train_state
from resnet_core.config import ConfigError, RunConfig
from resnet_core.training.runs import STEP_CKPT, RunLock, RunStore, RunWriter, validate_run_id

RESUMABLE = ("stopped", "interrupted", "failed")
STOP_FILE = "STOP"


@dataclass
class ResumePlan:
    store: RunStore
    run_id: str
    config: RunConfig
    state: dict           # checkpoints.load_train_state: model, optimizer, loader, step, config

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def path(self) -> Path:
        return self.store.root / self.run_id


def locate_run(spec: str, runs_dir: str | Path | None = None) -> tuple[RunStore, str]:
    """A run id in ``runs_dir`` or the path of a run directory."""
    p = Path(spec).expanduser()
    if (p / "config.json").is_file():
        return RunStore(p.resolve().parent), p.resolve().name
    return RunStore(runs_dir), validate_run_id(spec)


def plan_resume(store: RunStore, run_id: str) -> ResumePlan:
    """Checks that the run can be continued and reads its last checkpoint (nothing is written)."""
    info = store.get(run_id)
    if info.status not in RESUMABLE:
        raise ValueError(f"run {run_id} is {info.status}: only a stopped, interrupted or failed run can be resumed")
    candidates = checkpoint_candidates(info.path)
    if not candidates:
        raise ValueError(f"run {run_id} has no checkpoint to resume from: it was cut off before its first one "
                         "(train with --checkpoint-every N to make a run resumable mid-way)")
    try:
        config = RunConfig.from_dict(info.config)
    except (ConfigError, TypeError) as e:
        raise ValueError(f"run {run_id} has an unreadable config.json ({e}): it cannot be resumed") from None
    first_error = None
    for ckpt in candidates:  # the newest intact one: a crash may have left last.pt truncated
        try:
            return ResumePlan(store, run_id, config, load_train_state(ckpt))
        except CheckpointError as e:
            first_error = first_error or e
    raise CheckpointError(f"run {run_id}: no intact checkpoint to resume from ({first_error})")


def checkpoint_candidates(path: Path) -> list[Path]:
    """``last.pt``, then the step checkpoints newest first."""
    d = Path(path) / "checkpoints"
    if not d.is_dir():
        return []
    steps = sorted(((int(m.group(1)), p) for p in d.iterdir() if (m := STEP_CKPT.match(p.name))), reverse=True)
    last = [d / "last.pt"] if (d / "last.pt").is_file() else []
    return last + [p for _, p in steps]


def _kept(record: dict, step: int) -> bool:
    if record.get("type") == "end":
        return False  # the resumed run writes its own end
    return "step" not in record or int(record["step"]) <= step


def reopen(plan: ResumePlan, config: RunConfig | None = None, status: str = "queued") -> RunWriter:
    """Takes the run's writer lock (a second resume gets ``RunBusy``), drops what was recorded after the
    checkpoint's step, removes a stop request, and returns a writer appending to the run (its creation
    time kept, so it stays where it was in the lists)."""
    path = plan.path
    lock = RunLock(path)
    try:
        # Under the lock, a run still marked queued or running has lost its writer (interrupted); one that
        # another resume has meanwhile taken to its end is not resumed twice.
        raw = plan.store.get(plan.run_id).summary.get("status")
        if raw not in RESUMABLE + ("queued", "running"):
            raise ValueError(f"run {plan.run_id} is {raw}: only a stopped, interrupted or failed run can be resumed")
        return _reopen_locked(plan, lock, config, status)
    except BaseException:
        lock.release()
        raise


def _reopen_locked(plan: ResumePlan, lock: RunLock, config: RunConfig | None, status: str) -> RunWriter:
    path, step = plan.path, plan.step
    metrics = path / "metrics.jsonl"
    kept = [r for r in plan.store.read_metrics(plan.run_id) if _kept(r, step)]
    tmp = metrics.with_name(f".metrics.jsonl.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "w") as f:
        for r in kept:
            f.write(json.dumps(r, allow_nan=True) + "\n")
    os.replace(tmp, metrics)  # a reader sees the old file or the new one, never a mix
    for npz in (path / "features").glob("*.npz"):
        if npz.stem.isdigit() and int(npz.stem) > step:
            npz.unlink()
    (path / STOP_FILE).unlink(missing_ok=True)
    old = json.loads((path / "status.json").read_text())
    writer = RunWriter(path, config or plan.config, status, lock=lock)
    writer._status.update(created=old.get("created", writer._status["created"]), resumed_from=step,
                          resumed=time.time())
    writer._flush_status()
    writer._write({"type": "resume", "step": step, "world_size": (config or plan.config).distributed.world_size})
    return writer
