"""The dashboard's training processes (``dashboard/run_process.py``): started before they are needed and
kept between runs, shared by every run manager of this server process.

Imports neither torch nor the core at module level: ``prestart`` runs first thing in a session, before
the server has imported torch, so the processes' own start overlaps the server's.
"""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAX_CONCURRENT = 2  # a 2-core CPU: a third run would only slow the other two down


def env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def max_concurrent_from_env() -> int:
    return env_int("RESNET_LAB_MAX_RUNS", DEFAULT_MAX_CONCURRENT)


# ----------------------------------------------------------------------------------------------------
# Training processes, shared by every manager of this server process
# ----------------------------------------------------------------------------------------------------

class Child:
    """One training process and the thread that reads its messages."""

    def __init__(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        self.proc = subprocess.Popen([sys.executable, "-m", "dashboard.run_process"], cwd=str(ROOT), env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ready = threading.Event()
        self.started = time.perf_counter()
        self.head_start = 0                # prefetches and warm-ups sent at its start
        self.warm_s: float | None = None   # start to the end of those
        self.dead = False
        self.handler = None            # called with each message while the child trains a run
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, name=f"run-process-{self.proc.pid}", daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("type") == "ready":
                self.ready.set()
                continue
            if msg.get("type") == "warm":
                self.head_start -= 1
                if self.head_start == 0 and self.warm_s is None:   # its start, as measured on this machine
                    from resnet_core.experiments import costmodel

                    self.warm_s = time.perf_counter() - self.started
                    costmodel.record_process_start(self.warm_s)
                continue
            handler = self.handler
            if handler is not None:
                handler(self, msg)
        self.dead = True
        code = self.proc.wait()
        handler = self.handler
        if handler is not None:
            handler(self, {"type": "died", "code": code})

    def send(self, cmd: dict) -> bool:
        with self._send_lock:
            try:
                self.proc.stdin.write(json.dumps(cmd) + "\n")
                self.proc.stdin.flush()
                return True
            except (OSError, ValueError):  # the process is gone; its reader reports it
                return False

    def close(self, timeout: float = 5.0) -> None:
        self.send({"cmd": "exit"})
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Pool:
    """Idle training processes, reused from run to run; new ones are started as needed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: list[Child] = []
        self._all: list[Child] = []
        self._prefetched: list[dict] = []
        self._warmup: dict | None = None

    def _spawn(self) -> Child:
        child = Child()
        child.head_start = len(self._prefetched) + (self._warmup is not None)
        for data in self._prefetched:
            child.send({"cmd": "prefetch", "data": data})
        if self._warmup is not None:
            child.send({"cmd": "warmup", "config": self._warmup})
        self._all.append(child)
        return child

    def take(self) -> Child:
        with self._lock:
            while self._idle:
                child = self._idle.pop(0)
                if not child.dead and child.proc.poll() is None:
                    return child
            return self._spawn()

    def give_back(self, child: Child) -> None:
        with self._lock:
            child.handler = None
            if not child.dead and child.proc.poll() is None:
                self._idle.append(child)

    def warm(self, n: int, data=None, run=None) -> None:
        """At least ``n`` processes started (idle ones count), each loading ``data`` in the background
        (a ``DataConfig``), then taking a few unrecorded steps of ``run`` (a ``RunConfig``: its kernels)."""
        with self._lock:
            if data is not None:
                d = data.to_dict()
                if d not in self._prefetched:
                    self._prefetched.append(d)
                    for child in self._all:
                        if not child.dead:
                            child.head_start += 1   # not warm until it has loaded this too
                            child.send({"cmd": "prefetch", "data": d})
            if run is not None and run.to_dict() != self._warmup:
                self._warmup = run.to_dict()
                for child in self._all:
                    if not child.dead:
                        child.head_start += 1
                        child.send({"cmd": "warmup", "config": self._warmup})
            self._idle = [c for c in self._idle if not c.dead and c.proc.poll() is None]
            busy = sum(1 for c in self._all if not c.dead and c.proc.poll() is None and c not in self._idle)
            while len(self._idle) + busy < n:
                self._idle.append(self._spawn())

    def start_wait_s(self) -> float | None:
        """Seconds a run handed to this pool now waits for a warm process: none when an idle one is warm,
        else what is left of a starting one's (or a new one's) start, as measured on this machine (None
        before any process has started here)."""
        with self._lock:
            idle = [c for c in self._idle if not c.dead and c.proc.poll() is None]
        if any(c.ready.is_set() and c.head_start <= 0 for c in idle):   # started, data and kernels loaded
            return 0.0
        from resnet_core.experiments import costmodel

        measured = costmodel.process_start_seconds()
        if measured is None:
            return None
        if not idle:
            return measured
        # the next run takes the oldest idle process, the nearest to ready
        return max(0.0, measured - (time.perf_counter() - min(c.started for c in idle)))

    def close(self) -> None:
        with self._lock:
            children, self._all, self._idle = list(self._all), [], []
        for child in children:
            child.close()


POOL = Pool()
atexit.register(POOL.close)


def prestart() -> None:
    """Starts the server's training processes now, before any page has imported torch: called first
    thing by a signed-in session (dashboard/app.py), so that the processes' own start (interpreter,
    torch, ~2 s alone on 2 cores) runs while the server renders its first page, not after it. The
    data and warm-up steps they are to load follow from the run manager (``Pool.warm``)."""
    POOL.warm(max_concurrent_from_env())


