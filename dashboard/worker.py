"""The run manager: trains runs in worker threads of the server process; never imports Streamlit.

Why threads and not processes: torch releases the GIL inside its kernels, so a training thread runs
at nearly the speed of the CLI (bench/dashboard_overhead.py measures it); a new run starts in
milliseconds because torch is already imported and the data set is cached in memory (a process
would pay ~2.5 s of ``import torch`` before its first point); and nothing has to be shipped between
processes, because every run writes its metrics into the run store on disk, which the pages read.
What a watching page does cost training is CPU, not the GIL: a run in a process of its own, watched
by a page redrawing every second, ran at 0.63-0.82 of its unwatched speed, against 0.62-0.69 for a
run in this thread (see bench/redraw_floor.py for where that CPU goes).
The store is the single source of truth: after a server restart every run is listed from disk, and
the runs the dead process was training show as ``interrupted`` (``RunStore.get`` sees its pid gone).

One manager per runs directory and process (``RunManager.shared``): every browser tab and every
page talks to the same one, so a click, a page switch or a closed tab never stops a run.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from resnet_core.config import DataConfig, RunConfig
from resnet_core.presets import longest_first
from resnet_core.runs import RunStore, RunWriter, default_runs_dir, execute_run

DEFAULT_MAX_CONCURRENT = 2  # a 2-core CPU: a third run would only slow the other two down


def max_concurrent_from_env() -> int:
    try:
        return max(1, int(os.environ.get("RESNET_LAB_MAX_RUNS", DEFAULT_MAX_CONCURRENT)))
    except ValueError:
        return DEFAULT_MAX_CONCURRENT


# ----------------------------------------------------------------------------------------------------
# Data sets, shared by every run of the process: the default shapes set takes ~2 s to render and
# CIFAR-10 ~1 s to read, which would otherwise stand between Start and the first point.
# ----------------------------------------------------------------------------------------------------

_DATASET_CACHE_SIZE = 3   # CIFAR-10 is 150 MB of uint8; three data sets at most stay resident
_datasets: "collections.OrderedDict[DataConfig, object]" = collections.OrderedDict()
_dataset_locks: dict[DataConfig, threading.Lock] = {}
_datasets_lock = threading.Lock()


def cached_dataset(cfg: DataConfig):
    """The loaded data set for ``cfg``, loaded once per process (raises what ``load_dataset`` raises).
    Training only reads a Dataset's tensors, so runs in several threads share one safely."""
    from resnet_core.data import load_dataset

    with _datasets_lock:
        if cfg in _datasets:
            _datasets.move_to_end(cfg)
            return _datasets[cfg]
        key_lock = _dataset_locks.setdefault(cfg, threading.Lock())
    with key_lock:  # twins asking for one data set together load it once
        with _datasets_lock:
            if cfg in _datasets:
                return _datasets[cfg]
        ds = load_dataset(cfg)
        with _datasets_lock:
            _datasets[cfg] = ds
            while len(_datasets) > _DATASET_CACHE_SIZE:
                _datasets.popitem(last=False)
        return ds


def warm_up_torch() -> None:
    """Pays torch's one-off lazy imports now rather than at the first Start: constructing the first
    optimizer imports torch._dynamo, ~2.4 s on a 2-core CPU (measured), before any step can run."""
    import torch

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def prefetch_dataset(cfg: DataConfig) -> threading.Thread:
    """Loads ``cfg`` and warms torch up in the background (errors are left for the run that needs
    the data set to report)."""
    def load():
        try:
            warm_up_torch()
            cached_dataset(cfg)
        except Exception:  # noqa: BLE001 - the run that uses this data set records the error
            pass
    t = threading.Thread(target=load, name=f"prefetch-{cfg.name}", daemon=True)
    t.start()
    return t


# ----------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------

@dataclass
class LiveState:
    """What the training thread last reported, for progress bars; the curves come from the store."""
    run_id: str
    state: str = "queued"             # queued, loading, running, stopping, done
    step: int = 0
    total_steps: int | None = None
    images_per_s: float | None = None
    t: float = 0.0                    # seconds since the trainer started
    paused: bool = False
    started: float | None = None      # time.time() when the thread began


@dataclass
class _Job:
    writer: RunWriter
    stop: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    live: LiveState | None = None
    resume: dict | None = None        # the checkpoint's training state when the job continues a run

    @property
    def run_id(self) -> str:
        return self.writer.run_id


class RunManager:
    """Starts, queues, pauses and stops runs; at most ``max_concurrent`` train at once, the rest
    wait in FIFO order. Thread-safe: Streamlit runs every browser session in its own thread."""

    _shared: dict[Path, "RunManager"] = {}
    _shared_lock = threading.Lock()

    def __init__(self, runs_dir: str | Path | None = None, max_concurrent: int | None = None):
        self.store = RunStore(runs_dir if runs_dir is not None else default_runs_dir())
        self.max_concurrent = max_concurrent or max_concurrent_from_env()
        self._lock = threading.RLock()
        self._running: dict[str, _Job] = {}
        self._queue: collections.deque[_Job] = collections.deque()
        self._groups: list[tuple[str, list[str]]] = []   # (title, run ids) in start order

    @classmethod
    def shared(cls, runs_dir: str | Path | None = None, max_concurrent: int | None = None) -> "RunManager":
        """The process-wide manager of ``runs_dir`` (one per directory, created on first use)."""
        root = Path(runs_dir if runs_dir is not None else default_runs_dir()).resolve()
        with cls._shared_lock:
            if root not in cls._shared:
                cls._shared[root] = cls(root, max_concurrent)
            return cls._shared[root]

    # --- starting --------------------------------------------------------------------------------
    def start(self, cfg: RunConfig, title: str | None = None) -> str:
        return self.start_group([cfg], title or cfg.label)[0]

    def start_group(self, cfgs: list[RunConfig], title: str = "") -> list[str]:
        """Creates every run at once (so all are listed as queued straight away), then starts them
        in order as slots free up. Twins and presets use it."""
        with self._lock:
            jobs = [_Job(self.store.create(cfg, status="queued")) for cfg in cfgs]
            for job in jobs:
                job.live = LiveState(job.run_id)
            # Listed in the preset's order, started longest first (resnet_core.presets.longest_first) so
            # that with two slots the deepest nets do not run alone at the end.
            for i in longest_first(cfgs) if self.max_concurrent > 1 else range(len(jobs)):
                self._queue.append(jobs[i])
            ids = [j.run_id for j in jobs]
            self._groups.append((title or ", ".join(c.label for c in cfgs), ids))
            self._launch_ready()
        return ids

    def resume_run(self, run_id: str) -> str:
        """Queues a stopped, interrupted or failed run to continue from its last checkpoint, in its own
        directory (resnet_core/resume.py). Not ``resume``, which un-pauses a training run. Raises
        ValueError (or CheckpointError) saying why a run cannot continue."""
        import dataclasses

        from resnet_core.config import DistributedConfig
        from resnet_core.resume import plan_resume, reopen

        with self._lock:
            if self.is_active(run_id):
                raise RuntimeError(f"run {run_id} is already queued or training")
            plan = plan_resume(self.store, run_id)
            # Here it continues in one process, whatever number of ranks trained it before.
            cfg = dataclasses.replace(plan.config, distributed=DistributedConfig())
            job = _Job(reopen(plan, cfg, status="queued"), resume=plan.state)
            job.live = LiveState(run_id, step=plan.step)
            self._queue.append(job)
            self._groups.append((f"{cfg.label} (resumed)", [run_id]))
            self._launch_ready()
        return run_id

    def _launch_ready(self) -> None:
        with self._lock:
            while self._queue and len(self._running) < self.max_concurrent:
                job = self._queue.popleft()
                job.thread = threading.Thread(target=self._run, args=(job,), name=f"run-{job.run_id}", daemon=True)
                self._running[job.run_id] = job
                job.live.state, job.live.started = "loading", time.time()
                job.thread.start()

    def _run(self, job: _Job) -> None:
        live = job.live

        def on_event(event: dict) -> None:  # runs in this thread; plain attribute writes only
            kind = event["type"]
            if kind == "start":
                live.total_steps, live.state = event["total_steps"], "running"
            elif kind == "step":
                live.step, live.images_per_s, live.t = event["step"], event["images_per_s"], event["t"]

        try:
            try:
                dataset = cached_dataset(job.writer.config.data)
            except Exception as e:  # noqa: BLE001 - recorded as the run's failure, like execute_run does
                job.writer.set_status("failed", error=f"{type(e).__name__}: {e}", finished=time.time())
                job.writer.close()
                return
            execute_run(job.writer, job.stop, job.pause, on_event=on_event, dataset=dataset, resume=job.resume)
        finally:
            live.state = "done"
            with self._lock:
                self._running.pop(job.run_id, None)
                self._launch_ready()

    # --- control ---------------------------------------------------------------------------------
    def stop(self, run_id: str) -> bool:
        """Stops a running run (within one training step) or takes a queued one off the queue and
        marks it ``stopped``. False when this manager does not have the run."""
        with self._lock:
            for job in self._queue:
                if job.run_id == run_id:
                    self._queue.remove(job)
                    job.writer.set_status("stopped", message="stopped before it started", finished=time.time())
                    job.writer.close()
                    job.live.state = "done"
                    return True
            job = self._running.get(run_id)
            if job is None:
                return False
            job.stop.set()
            job.pause.clear()
            job.live.state = "stopping"
            return True

    def stop_all(self) -> None:
        for run_id in self.queued() + self.active():
            self.stop(run_id)

    def pause(self, run_id: str) -> bool:
        job = self._running.get(run_id)
        if job is None:
            return False
        job.pause.set()
        job.live.paused = True
        return True

    def resume(self, run_id: str) -> bool:
        job = self._running.get(run_id)
        if job is None:
            return False
        job.pause.clear()
        job.live.paused = False
        return True

    # --- state -----------------------------------------------------------------------------------
    def active(self) -> list[str]:
        """Runs whose thread is alive (loading, training or stopping), in start order."""
        with self._lock:
            return list(self._running)

    def queued(self) -> list[str]:
        with self._lock:
            return [j.run_id for j in self._queue]

    def busy(self) -> bool:
        with self._lock:
            return bool(self._running or self._queue)

    def is_active(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._running or any(j.run_id == run_id for j in self._queue)

    def live(self, run_id: str) -> LiveState | None:
        with self._lock:
            job = self._running.get(run_id) or next((j for j in self._queue if j.run_id == run_id), None)
            return job.live if job is not None else None

    def last_group(self) -> tuple[str, list[str]] | None:
        with self._lock:
            return self._groups[-1] if self._groups else None

    def wait(self, run_ids: list[str] | None = None, timeout: float = 60.0) -> bool:
        """Blocks until the runs (default: all) have ended; True if they did within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = set(self._running) | {j.run_id for j in self._queue}
            if not (pending & set(run_ids) if run_ids is not None else pending):
                return True
            time.sleep(0.02)
        return False

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stops everything and waits for the threads (tests and benchmarks)."""
        self.stop_all()
        return self.wait(timeout=timeout)

    def delete(self, run_id: str) -> None:
        """Deletes a stored run; refuses while this manager trains or queues it."""
        if self.is_active(run_id):
            raise RuntimeError(f"run {run_id} is still active here; stop it first")
        self.store.delete(run_id)
