"""The run store: one directory per run, readable while it is being written.

    runs/<run_id>/config.json       the RunConfig (architecture, data, training)
    runs/<run_id>/status.json       status, layout, final metrics; replaced atomically
    runs/<run_id>/metrics.jsonl     one JSON record per line, flushed as produced
    runs/<run_id>/features/NNNNNNNN.npz   feature maps of the probe image
    runs/<run_id>/checkpoints/last.pt     and step_NNNNNNNN.pt; init.pt holds the weights at step 0
    runs/<run_id>/analysis/<name>-<hash>.json   cached results of resnet_core.analysis
    runs/<run_id>/STOP                    (written by a user) ends a CLI/torchrun run after its step
    runs/<run_id>/writer.lock             flock-ed by the one process writing the run

A process killed mid-run loses at most the line it was writing; a reader skips a torn last line,
reports a run whose writer died as ``interrupted`` and a run it cannot read as ``damaged``.

Liveness is the writer's lock, not a pid: ``RunWriter`` holds an exclusive ``fcntl.flock`` on
``writer.lock`` from its creation to ``close()``, in whichever process writes the run (the server's
thread or a child process), and the kernel drops it when that process dies. A reader that can take a
shared lock knows nobody writes the run; a second writer (a second resume) is refused with
``RunBusy``. Checkpoints are written under unique temporary names and renamed into place, the
newest also as ``last.pt``; all but the newest ``RESNET_LAB_KEEP_CHECKPOINTS`` (default 3) step
checkpoints are deleted, and a checkpoint is not started without room for it on the disk.
"""
from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import secrets
import shutil
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resnet_core.nets.checkpoints import save_checkpoint
from resnet_core.config import ConfigError, RunConfig

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
STATUSES = ("queued", "running", "finished", "stopped", "diverged", "failed", "interrupted", "damaged")
ACTIVE = ("queued", "running")
HOST = socket.gethostname()
# A run written from another machine (a torchrun rank 0 elsewhere on a shared filesystem) cannot be
# checked by pid: it counts as cut off when its status has not been rewritten for this long.
REMOTE_STALE_S = 900
LOCK_FILE = "writer.lock"
KEEP_ENV = "RESNET_LAB_KEEP_CHECKPOINTS"
DEFAULT_KEEP = 3
DISK_MARGIN = 64 * 2**20    # free bytes left on the disk after a checkpoint, for the metrics and the OS
STEP_CKPT = re.compile(r"^step_(\d+)\.pt$")


class RunBusy(RuntimeError):
    """Another process writes this run (it trains, or a resume of it is under way)."""


def keep_checkpoints() -> int:
    """How many step checkpoints a run keeps (``RESNET_LAB_KEEP_CHECKPOINTS``, at least 1)."""
    raw = os.environ.get(KEEP_ENV, "").strip()
    try:
        return max(1, int(raw)) if raw else DEFAULT_KEEP
    except ValueError:
        return DEFAULT_KEEP


class RunLock:
    """The exclusive writer lock of one run directory, held until ``release()`` or the process ends."""

    def __init__(self, path: Path, wait_s: float = 0.5):
        self.path = Path(path)
        self._fd: int | None = None
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait_s  # a reader's probe holds a shared lock for microseconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() > deadline:
                    os.close(fd)
                    raise RunBusy(f"run {self.path.name} is being written by another process (it trains, or "
                                  "it is already being resumed): wait for it to end, or stop it first") from None
                time.sleep(0.02)
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock

    def __del__(self):  # a writer dropped without close() must not keep its run "running" forever
        self.release()


def writer_alive(path: Path) -> bool:
    """Whether some process (this one included) holds the run's writer lock now."""
    try:
        fd = os.open(Path(path) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file: written before locks, or never started; nobody writes it now
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def default_runs_dir() -> Path:
    return Path(os.environ.get("RESNET_LAB_RUNS", "runs"))


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id) or ".." in run_id:
        raise ValueError(f"invalid run id {run_id!r}: letters, digits, '.', '_' and '-' only")
    return run_id


def _replace_with_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src`` in one rename: a reader sees the old file or the new one."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp")
    try:
        try:
            os.link(src, tmp)  # same file system: no bytes copied
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _damaged(run_id: str, path: Path, why: str) -> "RunInfo":
    try:
        created = path.stat().st_mtime
    except OSError:
        created = 0.0
    return RunInfo(run_id, path, "damaged", created=created, error=why)


@dataclass
class RunInfo:
    run_id: str
    path: Path
    status: str
    config: dict | None = None
    summary: dict = field(default_factory=dict)   # final metrics and messages from status.json
    layout: dict | None = None
    created: float = 0.0
    error: str = ""

    @property
    def label(self) -> str:
        cfg = self.config or {}
        if cfg.get("name"):
            return cfg["name"]
        try:
            return RunConfig.from_dict(cfg).label
        except (ConfigError, TypeError):
            return self.run_id


class RunWriter:
    """Subscribes to the trainer's events and writes them into one run directory."""

    def __init__(self, path: Path, config: RunConfig, status: str = "queued", lock: RunLock | None = None,
                 keep: int | None = None):
        self.path = path
        self.config = config
        # Taken before anything is written: a second writer of the run is refused with RunBusy.
        self.lock = lock if lock is not None and lock.held else RunLock(path)
        self.keep = keep if keep is not None else keep_checkpoints()
        self._status = {"status": status, "created": time.time(), "updated": time.time(), "pid": os.getpid(),
                        "host": HOST}
        (path / "features").mkdir(parents=True, exist_ok=True)
        (path / "checkpoints").mkdir(exist_ok=True)
        (path / "config.json").write_text(config.to_json())
        self._metrics = open(path / "metrics.jsonl", "a", buffering=1)  # line-buffered: one write per record
        self._classes: list[str] = []
        self._mean = self._std = None
        self._flush_status()

    @classmethod
    def reattach(cls, path: Path, lock: RunLock | None = None) -> "RunWriter":
        """A writer for a run another process created (the dashboard creates and queues a run, its
        training process writes it): takes the run's writer lock (``lock``, or a new one, waiting a
        moment for the process handing it over), keeps its config and status fields, appends metrics."""
        writer = cls.__new__(cls)
        writer.path = Path(path)
        writer.lock = lock if lock is not None and lock.held else RunLock(writer.path, wait_s=10.0)
        writer.keep = keep_checkpoints()
        writer.config = RunConfig.from_dict(json.loads((writer.path / "config.json").read_text()))
        writer._status = json.loads((writer.path / "status.json").read_text())
        writer._status.update(pid=os.getpid(), host=HOST)
        (writer.path / "features").mkdir(parents=True, exist_ok=True)
        (writer.path / "checkpoints").mkdir(exist_ok=True)
        writer._metrics = open(writer.path / "metrics.jsonl", "a", buffering=1)
        writer._classes, writer._mean, writer._std = [], None, None
        writer._flush_status()
        return writer

    @property
    def run_id(self) -> str:
        return self.path.name

    def set_status(self, status: str, **fields) -> None:
        self._status.update(status=status, updated=time.time(), pid=os.getpid(), **fields)
        self._flush_status()

    def _flush_status(self) -> None:
        _write_json_atomic(self.path / "status.json", self._status)

    def set_data_info(self, classes, mean, std) -> None:
        self._classes, self._mean, self._std = list(classes), tuple(mean), tuple(std)

    def __call__(self, event: dict) -> None:
        kind = event["type"]
        if kind == "features":
            step = event["step"]
            np.savez_compressed(self.path / "features" / f"{step:08d}.npz", **event["maps"])
            self._write({"type": "features", "step": step})
            return
        if kind == "init_weights":  # never last.pt: a reader of last.pt wants trained weights
            save_checkpoint(self.path / "checkpoints" / "init.pt", event["model"], self.config.to_dict(), step=0,
                            classes=self._classes, mean=self._mean, std=self._std)
            return
        if kind == "checkpoint":
            ckpt = self.path / "checkpoints" / ("last.pt" if event["final"] else f"step_{event['step']:08d}.pt")
            # With the optimizer and loader state the checkpoint can be resumed (resnet_core/training/resume.py).
            train_state = ({"optimizer": event["optimizer"].state_dict(), "loader": event["loader"].state_dict()}
                           if "optimizer" in event and "loader" in event else None)
            self._check_disk(event["model"], train_state is not None)
            save_checkpoint(ckpt, event["model"], self.config.to_dict(), step=event["step"],
                            classes=self._classes, mean=self._mean, std=self._std, train_state=train_state)
            if not event["final"]:  # the newest checkpoint is always also last.pt, replaced atomically
                _replace_with_copy(ckpt, self.path / "checkpoints" / "last.pt")
                self._prune()
            self._write({"type": "checkpoint", "step": event["step"], "path": ckpt.name})
            return
        if kind == "start":
            self._status.update(layout=event["layout"], total_steps=event["total_steps"],
                                device=event["device"], params=event["params"], classes=event["classes"])
            self.set_status("running", started=time.time())
        self._write(event)
        if kind == "step":
            self._status.update(step=event["step"], train_loss=event["train_loss"], train_acc=event["train_acc"])
            # status.json is rewritten at most once a second; metrics.jsonl carries every step
            if time.time() - self._status["updated"] >= 1.0:
                self.set_status("running")

    def _write(self, record: dict) -> None:
        self._metrics.write(json.dumps(record, allow_nan=True) + "\n")

    def _check_disk(self, model, resumable: bool) -> None:
        """Refuses (OSError ENOSPC, one line) a checkpoint the disk has no room for: the weights, the
        momentum when resumable, twice (the step file and last.pt), and a margin."""
        size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        need = size * (2 if resumable else 1) * 2 + DISK_MARGIN
        free = shutil.disk_usage(self.path).free
        if free < need:
            raise OSError(errno.ENOSPC, f"not enough free disk for a checkpoint: {free / 2**20:.0f} MB free, "
                                        f"about {need / 2**20:.0f} MB needed; free space or delete old runs",
                          str(self.path / "checkpoints"))

    def _prune(self) -> None:
        """Keeps the newest ``keep`` step checkpoints (last.pt and init.pt are never pruned)."""
        found = sorted((int(m.group(1)), p) for p in (self.path / "checkpoints").iterdir()
                       if (m := STEP_CKPT.match(p.name)))
        for _, p in found[:-self.keep]:
            p.unlink(missing_ok=True)

    def close(self) -> None:
        if not self._metrics.closed:
            self._metrics.close()
        self.lock.release()


class RunStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_runs_dir()

    def _dir(self, run_id: str) -> Path:
        return self.root / validate_run_id(run_id)

    def new_run_id(self, cfg: RunConfig) -> str:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.label)[:60].strip("-.") or "run"
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{label}-{secrets.token_hex(4)}"

    def create(self, cfg: RunConfig, status: str = "queued", run_id: str | None = None) -> RunWriter:
        self.root.mkdir(parents=True, exist_ok=True)
        if run_id is not None:  # a caller's own id: taken or refused, never shared
            path = self.root / validate_run_id(run_id)
            path.mkdir()
            return RunWriter(path, cfg, status)
        base = self.new_run_id(cfg)
        for n in range(1, 10_000):
            # mkdir is the claim: of two processes making one id, one gets it and the other the next.
            path = self.root / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return RunWriter(path, cfg, status)
        raise RuntimeError(f"could not make a new run id in {self.root}")

    def list(self) -> list[RunInfo]:
        if not self.root.is_dir():
            return []
        infos = []
        for p in self.root.iterdir():
            if RUN_ID.match(p.name) and p.is_dir():
                try:
                    infos.append(self.get(p.name))
                except (FileNotFoundError, NotADirectoryError):
                    continue  # deleted while listing
        return sorted(infos, key=lambda r: (r.created, r.run_id), reverse=True)

    def get(self, run_id: str) -> RunInfo:
        """The run's state; never raises for what is inside its folder: anything malformed makes it
        ``damaged`` (listed, with the reason, and deletable)."""
        path = self._dir(run_id)
        if not path.is_dir():
            raise FileNotFoundError(f"no run {run_id!r} in {self.root}")
        try:
            return self._read(run_id, path)
        except FileNotFoundError:
            if not path.is_dir():
                raise
            return _damaged(run_id, path, "its config.json or status.json is missing")
        except Exception as e:  # noqa: BLE001 - any content at all may be on the disk
            return _damaged(run_id, path, f"unreadable run files ({type(e).__name__}: {str(e)[:200]})")

    def _read(self, run_id: str, path: Path) -> RunInfo:
        config = json.loads((path / "config.json").read_text())
        status = json.loads((path / "status.json").read_text())
        if not isinstance(config, dict) or not isinstance(status, dict):
            return _damaged(run_id, path, "config.json and status.json must each hold a JSON object")
        state = status.get("status")
        if state not in STATUSES:
            return _damaged(run_id, path, f"unknown status {str(state)[:40]!r} in status.json")
        created = float(status.get("created", 0.0))
        if not math.isfinite(created):
            created = 0.0
        if str(status.get("host", HOST)) != HOST:
            updated = status.get("updated", 0.0)
            cut_off = time.time() - (float(updated) if isinstance(updated, (int, float)) else 0.0) > REMOTE_STALE_S
        else:
            cut_off = not writer_alive(path)
        if state in ACTIVE and cut_off:
            # Its process died without writing a final status: a running run was cut off, and a queued
            # one (the dashboard queues runs in memory) will never start now.
            state = "interrupted"
        layout = status.get("layout")
        error = status.get("error", "")
        return RunInfo(run_id, path, state, config=config, summary=status,
                       layout=layout if isinstance(layout, dict) else None, created=created,
                       error=error if isinstance(error, str) else str(error))

    def read_metrics(self, run_id: str) -> list[dict]:
        """Every complete record; a torn or corrupt line (a killed writer) is skipped."""
        path = self._dir(run_id) / "metrics.jsonl"
        records = []
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.endswith("\n"):
                        try:
                            records.append(json.loads(line))
                        except ValueError:
                            continue
        except FileNotFoundError:
            pass
        return records

    def feature_steps(self, run_id: str) -> list[int]:
        d = self._dir(run_id) / "features"
        return sorted(int(p.stem) for p in d.glob("*.npz") if p.stem.isdigit()) if d.is_dir() else []

    def read_features(self, run_id: str, step: int | None = None) -> tuple[int, dict[str, np.ndarray]] | None:
        steps = self.feature_steps(run_id)
        if not steps:
            return None
        step = steps[-1] if step is None else step
        try:
            with np.load(self._dir(run_id) / "features" / f"{step:08d}.npz") as z:
                return step, {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError):
            return None

    def checkpoint_path(self, run_id: str) -> Path | None:
        p = self._dir(run_id) / "checkpoints" / "last.pt"
        return p if p.is_file() else None

    def delete(self, run_id: str) -> None:
        info = self.get(run_id)
        if info.status in ACTIVE:
            raise RuntimeError(f"run {run_id} is {info.status}; stop it before deleting it")
        shutil.rmtree(info.path)


def _learn(cfg, threads: int, seconds: float, ds, context: str) -> None:
    """Keeps a finished run's time for the estimates; never fails the run it learns from."""
    from resnet_core.experiments.costmodel import record_run

    try:
        record_run(cfg, threads, seconds, n_train=len(ds.train_y), n_test=len(ds.test_y), context=context)
    except Exception as e:  # noqa: BLE001 - the run is finished and recorded; only the lesson is lost
        print(f"warning: the run's time was not kept for the estimates ({type(e).__name__}: {e})", file=sys.stderr)


def execute_run(writer: RunWriter, stop: threading.Event | None = None, pause: threading.Event | None = None,
                on_event=None, dataset=None, context: str = "cli", **train_options):
    """Trains ``writer.config`` into its run directory; never raises for a failing run: the failure
    is recorded as status ``failed`` with the error, and every metric written so far is kept.
    ``train_options`` (``dist``, ``resume``) go to ``train``. A whole run's time is kept for the
    estimates of runs in its ``context`` ("cli" or "dashboard": costmodel.record_run)."""
    import torch

    from resnet_core.data import load_dataset
    from resnet_core.training.loop import train

    def both(event):
        writer(event)
        if on_event is not None:
            on_event(event)

    cfg = writer.config
    try:
        t0, threads = time.perf_counter(), torch.get_num_threads()
        writer.set_status("running")
        ds = dataset if dataset is not None else load_dataset(cfg.data)
        writer.set_data_info(ds.classes, ds.mean, ds.std)
        result = train(cfg, both, stop=stop, pause=pause, dataset=ds, **train_options)
        writer.set_status(result.status, steps=result.steps, train_loss=result.train_loss,
                          train_acc=result.train_acc, test_loss=result.test_loss, test_acc=result.test_acc,
                          seconds=result.seconds, images_per_s=result.images_per_s, message=result.message,
                          finished=time.time())
        # A whole run at one thread count, unpaused, on one process: what it took teaches the estimates
        if (result.status == "finished" and not result.extra.get("paused") and torch.get_num_threads() == threads
                and not train_options.get("resume") and train_options.get("dist") is None):
            _learn(cfg, threads, time.perf_counter() - t0, ds, context)
        return result
    except Exception as e:  # noqa: BLE001 - a failing run is data, not a crash
        dist = train_options.get("dist")
        # Under torchrun a rank that raised is the cause; rank 0 then only sees a broken collective.
        message = dist.explain_failure(e) if dist is not None else f"{type(e).__name__}: {e}"
        writer.set_status("failed", error=message, traceback=traceback.format_exc()[-4000:],
                          finished=time.time())
        if on_event is not None:
            on_event({"type": "end", "status": "failed", "message": message})
        return None
    finally:
        writer.close()
