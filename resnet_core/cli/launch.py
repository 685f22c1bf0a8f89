"""How ``python -m resnet_core train`` runs a training: in one process or as one rank of a torchrun
launch, as a new run or resuming a stored one (``--resume``), from flags or from a full RunConfig
JSON (``--config FILE``, what ``distributed.run_on_gpus`` hands each of its processes).

Under torchrun every rank trains (``DistContext``); rank 0 alone creates and writes the run
directory and prints the JSON summary. A stop request, from SIGTERM/SIGINT (torchrun forwards the
signals it gets to every rank) or from a ``STOP`` file in the run directory (rank 0 looks for it
each step), is agreed on by all ranks through the per-step all-reduce, so all stop after the same
step and the run ends ``stopped``. A rank that raises leaves its message for rank 0, which records
the run ``failed`` with it; every rank then exits non-zero at once, without tearing down a process
group whose peers may be gone.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
from pathlib import Path

from resnet_core.config import ConfigError, DistributedConfig, RunConfig
from resnet_core.training.distributed import DistContext, launch_from_env
from resnet_core.training.resume import STOP_FILE, ResumePlan, locate_run, plan_resume, reopen


def add_launch_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several processes, stopping and resuming")
    g.add_argument("--sync-bn", action="store_true",
                   help="under torchrun on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm) "
                        "instead of each rank's shard (the default, as in the paper)")
    g.add_argument("--resume", metavar="RUN", default=None,
                   help="continue a stopped, interrupted or failed run (its id in --runs-dir, or its directory) "
                        "from its last checkpoint, with the run's own configuration")
    g.add_argument("--config", default=None, help=argparse.SUPPRESS)  # a full RunConfig JSON (run_on_gpus)


class StopRequest:
    """A stop asked for by a signal (SIGTERM, SIGINT) or by a ``STOP`` file in the run directory;
    ``train()`` asks ``is_set()`` once per step. A second Ctrl-C aborts at once."""

    def __init__(self):
        self._event = threading.Event()
        self.path: Path | None = None
        self._interrupts = 0

    def watch(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / STOP_FILE

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set() or (self.path is not None and self.path.exists())

    def install_signal_handlers(self) -> dict:
        """Catches SIGTERM and SIGINT; returns the handlers they replaced (``restore_signal_handlers``)."""
        if threading.current_thread() is not threading.main_thread():
            return {}  # signals can only be caught in the main thread (e.g. the CLI called from a test thread)
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    @staticmethod
    def restore_signal_handlers(previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                raise KeyboardInterrupt
        self._event.set()


def _summary(store, run_id: str, run_dir: Path) -> dict:
    info = store.get(run_id)
    s = info.summary
    return {"run_id": run_id, "run_dir": str(run_dir), "status": info.status,
            "steps": s.get("steps", s.get("step", 0)),   # a failed run has only its last logged step
            "train_loss": s.get("train_loss"), "train_acc": s.get("train_acc"), "test_acc": s.get("test_acc"),
            "seconds": s.get("seconds"), "images_per_s": s.get("images_per_s"),
            "world_size": (info.config or {}).get("distributed", {}).get("world_size", 1),
            "error": s.get("error") or s.get("message") or None}


def _exit_now(code: int) -> None:
    """Leaves without destroying the process group: after a failure its peers may be gone, and a
    teardown that waits for them is how a failed run turns into a hang."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_training(cfg: RunConfig, ds, runs_dir=None, on_event=None, plan: ResumePlan | None = None,
                 sync_bn: bool = False) -> int:
    """Trains ``cfg`` (or continues ``plan``) into the run store; prints the JSON summary on rank 0
    and returns the exit status: 0 for finished or stopped, 1 otherwise."""
    from resnet_core.memory import check_training

    check_training(cfg)  # one line and no run directory for a run that cannot fit
    launch = launch_from_env()
    dist = None
    if launch is not None:
        dist = DistContext.start(launch, cfg.train.device, sync_bn or cfg.distributed.sync_bn)
        cfg = dataclasses.replace(cfg, distributed=DistributedConfig(
            world_size=dist.world_size, backend=dist.backend, sync_bn=dist.sync_bn, probes="rank0-shard"))
    else:
        if sync_bn:
            raise ConfigError("--sync-bn synchronises BatchNorm across torchrun's processes; start the run with "
                              "torchrun --nproc_per_node N on CUDA GPUs")
        cfg = dataclasses.replace(cfg, distributed=DistributedConfig())
    stop = StopRequest()
    previous_handlers = stop.install_signal_handlers()
    try:
        return _run(cfg, ds, runs_dir, on_event, plan, dist, stop)
    finally:
        StopRequest.restore_signal_handlers(previous_handlers)


def _run(cfg: RunConfig, ds, runs_dir, on_event, plan: ResumePlan | None, dist: DistContext | None,
         stop: StopRequest) -> int:
    from resnet_core.training.runs import RunStore, execute_run
    from resnet_core.training.loop import train

    resume_state = plan.state if plan is not None else None

    if dist is not None and not dist.is_writer:
        try:
            result = train(cfg, None, stop=stop, dataset=ds, dist=dist, resume=resume_state)
        except Exception as e:  # noqa: BLE001 - reported to rank 0, which records the run failed
            dist.publish_failure(e)
            print(f"error: rank {dist.rank}: {type(e).__name__}: {e}", file=sys.stderr)
            _exit_now(1)
        dist.close()
        return 0 if result.status in ("finished", "stopped") else 1

    if plan is not None:
        store, writer = plan.store, reopen(plan, cfg, status="running")
    else:
        store = RunStore(runs_dir)
        writer = store.create(cfg)
    stop.watch(writer.path)
    try:
        result = execute_run(writer, stop=stop, on_event=on_event, dataset=ds, dist=dist, resume=resume_state)
    except KeyboardInterrupt:  # a second Ctrl-C: record it, then leave
        writer.set_status("stopped", message="interrupted from the keyboard")
        raise
    (writer.path / STOP_FILE).unlink(missing_ok=True)  # honoured; a resume must not stop at once
    summary = _summary(store, writer.run_id, writer.path)
    print(json.dumps(summary))
    code = 0 if result is not None and summary["status"] in ("finished", "stopped") else 1
    if dist is not None:
        if result is None:
            _exit_now(code)
        dist.close()
    return code


def run_saved(a, on_event=None) -> int:
    """``train --resume RUN`` or ``train --config FILE``: the configuration comes from the run or the
    file, not from the flags."""
    from resnet_core.data import load_dataset

    if a.resume and a.config:
        raise ConfigError("give --resume or --config, not both")
    if a.config:
        try:
            cfg = RunConfig.from_dict(json.loads(Path(a.config).read_text()))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read the run configuration {a.config}: {e}") from None
        return run_training(cfg, load_dataset(cfg.data), a.runs_dir, on_event, sync_bn=a.sync_bn)
    store, run_id = locate_run(a.resume, a.runs_dir)
    launch = launch_from_env()
    if launch is None or launch.rank == 0:
        plan = plan_resume(store, run_id)
    else:
        # Only rank 0 checks the run's status: by the time another rank looks, rank 0 may already
        # have reopened it as running. The checkpoint cannot change before every rank has read it
        # (the next one comes after a step all ranks take).
        # The same choice as rank 0's plan_resume: the newest intact checkpoint.
        from resnet_core.nets.checkpoints import CheckpointError, load_train_state
        from resnet_core.training.resume import checkpoint_candidates

        state = None
        for ckpt in checkpoint_candidates(store.root / run_id):
            try:
                state = load_train_state(ckpt)
                break
            except CheckpointError:
                continue
        if state is None:
            raise ValueError(f"run {run_id} has no intact checkpoint to resume from")
        plan = ResumePlan(store, run_id, RunConfig.from_dict(state["config"]), state)
    return run_training(plan.config, load_dataset(plan.config.data), a.runs_dir, on_event, plan=plan,
                        sync_bn=a.sync_bn)
