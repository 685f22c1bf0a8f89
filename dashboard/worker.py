"""The run manager: queues the dashboard's runs and trains each in a training process of its own
(``dashboard/run_process.py``), started warm before it is needed; never imports Streamlit.

Why processes and not threads of the server: on a 2-core CPU, runs trained in threads of the server
shared torch's one intra-op pool and the GIL with the page's chart building and ran at 0.47x the
CLI's speed; in a process of their own, with a core each as ``reproduce --parallel 2`` gives them,
they train like the CLI (``bench/dashboard_vs_cli.py`` measures both in one run), and a run that
crashes or runs out of memory ends ``failed`` alone while the server and the other runs go on. The
processes are kept between runs (torch imported, data sets cached), so a Start shows its first point
within about a second (``dashboard/processes.py``).

The store is the single source of truth: every run writes its metrics into the run store on disk,
which the pages read; after a server restart every run is listed from disk, and the runs the dead
server was training end ``stopped`` (their process sees the server gone and stops after its step)
or ``interrupted``, and can be resumed.

One manager per runs directory and process (``RunManager.shared``): every browser tab and every
page talks to the same one, so a click, a page switch or a closed tab never stops a run. Queued runs
are taken round-robin across owners (browser sessions), each with a cap on queued runs, so one
user's fifty runs do not hold up a class.
"""
from __future__ import annotations

import collections
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dashboard import processes
from dashboard.processes import Child, env_int, max_concurrent_from_env
from resnet_core.config import DataConfig, RunConfig
from resnet_core.experiments.costmodel import longest_first
from resnet_core.training.runs import ACTIVE, RunStore, RunWriter, default_runs_dir

DEFAULT_MAX_QUEUED = 24     # per owner (browser session): the depth sweep's ten runs twice over, and more


def threads_per_run(training: int) -> int:
    """Intra-op threads for each training process: the cores divided between the runs training at
    this moment, as ``reproduce --parallel N`` does (small nets use two cores poorly within one step,
    and two runs with a core each use them fully); a run alone gets every core, as the CLI's does."""
    return max(1, (os.cpu_count() or 1) // max(1, training))


# ----------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------

@dataclass
class LiveState:
    """What the training process last reported, for progress bars; the curves come from the store."""
    run_id: str
    state: str = "queued"             # queued, loading, running, stopping, done
    step: int = 0
    total_steps: int | None = None
    images_per_s: float | None = None
    t: float = 0.0                    # seconds since the trainer started
    paused: bool = False
    started: float | None = None      # time.time() when its process took it
    threads: int | None = None        # intra-op threads its process trains with now


@dataclass
class _Job:
    run_id: str
    writer: RunWriter | None = None   # holds the run's writer lock while it is queued here
    owner: str = ""
    resume: bool = False              # continues the run from its last checkpoint
    live: LiveState | None = None
    child: Child | None = None


class QueueFull(RuntimeError):
    """An owner already has as many queued runs as the manager allows."""


class RunManager:
    """Starts, queues, pauses and stops runs; at most ``max_concurrent`` train at once, each in a
    training process, the rest wait. Queued runs are taken round-robin across owners (browser
    sessions), in each owner's order. Thread-safe: Streamlit runs every browser session in its own
    thread, and each training process reports from a reader thread."""

    _shared: dict[Path, "RunManager"] = {}
    _shared_lock = threading.Lock()

    def __init__(self, runs_dir: str | Path | None = None, max_concurrent: int | None = None,
                 max_queued: int | None = None):
        self.store = RunStore(runs_dir if runs_dir is not None else default_runs_dir())
        self.max_concurrent = max_concurrent or max_concurrent_from_env()
        self.max_queued = max_queued or env_int("RESNET_LAB_MAX_QUEUED", DEFAULT_MAX_QUEUED)
        self._lock = threading.RLock()
        self._running: dict[str, _Job] = {}
        self._queues: "collections.OrderedDict[str, collections.deque[_Job]]" = collections.OrderedDict()
        self._groups: list[tuple[str, list[str]]] = []   # (title, run ids) in start order

    @classmethod
    def shared(cls, runs_dir: str | Path | None = None, max_concurrent: int | None = None) -> "RunManager":
        """The process-wide manager of ``runs_dir`` (one per directory, created on first use)."""
        root = Path(runs_dir if runs_dir is not None else default_runs_dir()).resolve()
        with cls._shared_lock:
            if root not in cls._shared:
                cls._shared[root] = cls(root, max_concurrent)
            return cls._shared[root]

    def warm(self, data: DataConfig | None = None, run: RunConfig | None = None) -> None:
        """Starts the training processes now (importing torch, loading ``data`` and taking a few
        unrecorded steps of ``run`` in the background), so that the first Start does not wait for them."""
        processes.POOL.warm(self.max_concurrent, data, run)

    # --- starting --------------------------------------------------------------------------------
    def start(self, cfg: RunConfig, title: str | None = None, owner: str = "") -> str:
        return self.start_group([cfg], title or cfg.label, owner=owner)[0]

    def start_group(self, cfgs: list[RunConfig], title: str = "", owner: str = "") -> list[str]:
        """Creates every run at once (so all are listed as queued straight away), then starts them
        as slots free up. Twins and presets use it. Raises QueueFull past the owner's cap."""
        with self._lock:
            waiting = len(self._queues.get(owner, ()))
            if waiting + len(cfgs) > self.max_queued:
                raise QueueFull(f"{waiting} run(s) of yours are already queued and at most {self.max_queued} may "
                                f"wait at once; stop some or wait for them to start")
            # Each queued run's writer (and so its lock: the run is alive) stays here until a training
            # process takes it over.
            writers = [self.store.create(cfg, status="queued") for cfg in cfgs]
            jobs = [_Job(w.run_id, writer=w, owner=owner, live=LiveState(w.run_id)) for w in writers]
            # Listed in the preset's order, started longest first (resnet_core.experiments.presets.longest_first) so
            # that with two slots the deepest nets do not run alone at the end.
            queue = self._queues.setdefault(owner, collections.deque())
            for i in longest_first(cfgs) if self.max_concurrent > 1 else range(len(jobs)):
                queue.append(jobs[i])
            ids = [j.run_id for j in jobs]
            self._groups.append((title or ", ".join(c.label for c in cfgs), ids))
            self._launch_ready()
        return ids

    def resume_run(self, run_id: str, owner: str = "") -> str:
        """Queues a stopped, interrupted or failed run to continue from its last checkpoint, in its own
        directory (resnet_core/training/resume.py). Not ``resume``, which un-pauses a training run. Raises
        ValueError (or CheckpointError) saying why a run cannot continue."""
        import dataclasses

        from resnet_core.config import DistributedConfig
        from resnet_core.training.resume import plan_resume, reopen

        with self._lock:
            if self.is_active(run_id):
                raise RuntimeError(f"run {run_id} is already queued or training")
            plan = plan_resume(self.store, run_id)
            # Here it continues in one process, whatever number of ranks trained it before.
            cfg = dataclasses.replace(plan.config, distributed=DistributedConfig())
            writer = reopen(plan, cfg, status="queued")   # a second resume of the run is refused (RunBusy)
            job = _Job(run_id, writer=writer, owner=owner, resume=True, live=LiveState(run_id, step=plan.step))
            self._queues.setdefault(owner, collections.deque()).append(job)
            self._groups.append((f"{cfg.label} (resumed)", [run_id]))
            self._launch_ready()
        return run_id

    def _next_job(self) -> _Job | None:
        """The head of the next owner's queue in round-robin order (that owner moves to the back)."""
        for owner in list(self._queues):
            queue = self._queues[owner]
            if not queue:
                del self._queues[owner]
                continue
            job = queue.popleft()
            self._queues.move_to_end(owner)
            if not queue:
                del self._queues[owner]
            return job
        return None

    def _rebalance(self) -> None:
        n = threads_per_run(len(self._running))
        for job in self._running.values():
            if job.child is not None:
                job.child.send({"cmd": "threads", "n": n})

    def _launch_ready(self) -> None:
        with self._lock:
            while len(self._running) < self.max_concurrent:
                job = self._next_job()
                if job is None:
                    self._rebalance()
                    return
                child = processes.POOL.take()
                job.child = child
                child.handler = lambda c, msg, job=job: self._on_message(job, c, msg)
                self._running[job.run_id] = job
                job.live.state, job.live.started = "loading", time.time()
                child.send({"cmd": "run", "runs_dir": str(self.store.root.resolve()), "run_id": job.run_id,
                            "threads": threads_per_run(len(self._running)), "resume": job.resume})
                job.writer.close()   # hands the run's lock to the training process, which waits for it
                job.writer = None
                self._rebalance()

    def _on_message(self, job: _Job, child: Child, msg: dict) -> None:
        live, kind = job.live, msg.get("type")
        if kind == "start":
            live.total_steps = msg.get("total_steps")
            if live.state == "loading":
                live.state = "running"
        elif kind == "step":
            live.step, live.images_per_s, live.t = msg["step"], msg.get("images_per_s"), msg.get("t") or 0.0
            live.threads = msg.get("threads")
        elif kind in ("done", "died"):
            if kind == "died":
                self._record_death(job.run_id, msg.get("code"))
            else:
                processes.POOL.give_back(child)
            live.state = "done"
            with self._lock:
                self._running.pop(job.run_id, None)
                self._launch_ready()

    def _record_death(self, run_id: str, code) -> None:
        """The run's process died mid-run (killed, out of memory, a crash in native code): the run
        ends ``failed`` with the reason; every metric it wrote is kept."""
        try:
            info = self.store.get(run_id)
            if info.summary.get("status") not in ACTIVE:
                return   # it wrote its own end before it went
            if isinstance(code, int) and code < 0:
                import signal

                name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
                why = (f"its training process was killed ({name}), most likely because the machine ran out of "
                       "memory: try a smaller batch, width, depth or image size")
            else:
                why = f"its training process exited unexpectedly (exit code {code})"
            writer = RunWriter.reattach(info.path)
            writer.set_status("failed", error=why, finished=time.time())
            writer.close()
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            pass   # a run folder that cannot be read is listed as damaged anyway

    # --- control ---------------------------------------------------------------------------------
    def stop(self, run_id: str) -> bool:
        """Stops a running run (within one training step) or takes a queued one off the queue and
        marks it ``stopped``. False when this manager does not have the run."""
        with self._lock:
            for owner, queue in self._queues.items():
                for job in queue:
                    if job.run_id == run_id:
                        queue.remove(job)
                        job.writer.set_status("stopped", message="stopped before it started", finished=time.time())
                        job.writer.close()
                        job.live.state = "done"
                        return True
            job = self._running.get(run_id)
            if job is None:
                return False
            if job.child is not None:
                job.child.send({"cmd": "stop"})
            job.live.state, job.live.paused = "stopping", False
            return True

    def stop_all(self) -> None:
        for run_id in self.queued() + self.active():
            self.stop(run_id)

    def pause(self, run_id: str) -> bool:
        job = self._running.get(run_id)
        if job is None or job.child is None:
            return False
        job.child.send({"cmd": "pause"})
        job.live.paused = True
        return True

    def resume(self, run_id: str) -> bool:
        job = self._running.get(run_id)
        if job is None or job.child is None:
            return False
        job.child.send({"cmd": "resume"})
        job.live.paused = False
        return True

    # --- state -----------------------------------------------------------------------------------
    def active(self) -> list[str]:
        """Runs whose process has them (loading, training or stopping), in start order."""
        with self._lock:
            return list(self._running)

    def queued(self) -> list[str]:
        """Queued runs in the order they will start (round-robin across owners)."""
        with self._lock:
            queues = [list(q) for q in self._queues.values()]
        order = []
        while any(queues):
            for q in queues:
                if q:
                    order.append(q.pop(0).run_id)
        return order

    def queued_by(self, owner: str) -> int:
        with self._lock:
            return len(self._queues.get(owner, ()))

    def busy(self) -> bool:
        with self._lock:
            return bool(self._running or any(self._queues.values()))

    def is_active(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._running or any(j.run_id == run_id for q in self._queues.values() for j in q)

    def live(self, run_id: str) -> LiveState | None:
        with self._lock:
            job = self._running.get(run_id) or next(
                (j for q in self._queues.values() for j in q if j.run_id == run_id), None)
            return job.live if job is not None else None

    def start_wait_s(self) -> float | None:
        """Seconds a Start clicked now waits for its training process to be ready (0 when a warm one is
        idle; the queue behind other runs is ``ahead``'s)."""
        with self._lock:
            if len(self._running) >= self.max_concurrent:
                return 0.0
        return processes.POOL.start_wait_s()

    def ahead(self) -> list[tuple[RunConfig, int]]:
        """(config, steps done) of every run training or queued now: what a new Start waits behind."""
        with self._lock:
            jobs = list(self._running.values()) + [j for q in self._queues.values() for j in q]
        out = []
        for job in jobs:
            try:
                cfg = RunConfig.from_dict(json.loads((self.store.root / job.run_id / "config.json").read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            out.append((cfg, job.live.step if job.live else 0))
        return out

    def last_group(self) -> tuple[str, list[str]] | None:
        with self._lock:
            return self._groups[-1] if self._groups else None

    def wait(self, run_ids: list[str] | None = None, timeout: float = 60.0) -> bool:
        """Blocks until the runs (default: all) have ended; True if they did within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = set(self._running) | {j.run_id for q in self._queues.values() for j in q}
            if not (pending & set(run_ids) if run_ids is not None else pending):
                return True
            time.sleep(0.02)
        return False

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stops everything and waits for the runs to end (tests and benchmarks)."""
        self.stop_all()
        return self.wait(timeout=timeout)

    def delete(self, run_id: str) -> None:
        """Deletes a stored run; refuses while this manager trains or queues it."""
        if self.is_active(run_id):
            raise RuntimeError(f"run {run_id} is still active here; stop it first")
        self.store.delete(run_id)
