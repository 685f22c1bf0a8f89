"""One worker thread, its jobs by key, and a bounded LRU of finished results; never imports Streamlit.

The Attribution page (``attribution_service.AttributionService``) and the Why it works page
(``analysis_service.AnalysisService``) both queue long work here. One thread, not one per session: the
work uses every core through torch anyway, and a second job at the same time would only halve both.
Pages poll jobs from ``st.fragment(run_every=...)``; Cancel sets the job's event, which the work checks
between its units and answers by raising the service's ``cancelled`` exception.
"""
from __future__ import annotations

import math
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable


def one_line(e: BaseException) -> str:
    """The message a person reads: the first line of the error, never a traceback."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:300]


@dataclass
class Job:
    key: str
    label: str
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: float = 0.0
    message: str = ""
    state: str = "queued"          # queued, running, done, failed, cancelled
    error: str = ""
    started: float = field(default_factory=time.time)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def progress_text(self) -> str:
        elapsed = time.time() - self.started
        what = f" · {self.message}" if self.message else ""
        return f"{self.label}: {self.state} {100 * self.progress:.0f}%{what} ({elapsed:.0f} s)"


class JobService:
    """Subclasses say which exceptions mean "cancelled" and which are the user's error (shown as one
    line), and what to advise when memory runs out."""

    thread_name = "jobs"
    oom_message = "out of memory: ask for less"

    def __init__(self, max_results: int = 64):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._results: OrderedDict[str, Any] = OrderedDict()
        self._max = max_results

    def cancelled_errors(self) -> tuple[type[BaseException], ...]:
        return ()

    def user_errors(self) -> tuple[type[BaseException], ...]:
        return ()

    def result(self, key: str) -> Any | None:
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        return None

    def job(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def submit(self, key: str, label: str, fn: Callable[..., Any]) -> Job:
        """Queues ``fn(progress=, cancel=)`` unless its result is cached or it is already queued/running.
        ``progress(fraction, message="")`` may be called from ``fn`` as often as it likes."""
        with self._lock:
            job = self._jobs.get(key)
            if key in self._results:
                return job or Job(key, label, state="done", progress=1.0)
            if job is not None and job.active:
                return job
            job = Job(key, label)
            self._jobs[key] = job
        self._pool.submit(self._run, job, fn)
        return job

    def _run(self, job: Job, fn) -> None:
        if job.cancel.is_set():
            job.state = "cancelled"
            return
        job.state, job.started = "running", time.time()

        def progress(fraction: float, message: str = "") -> None:  # plain attribute writes: read by the page
            if math.isfinite(fraction):
                job.progress = min(max(float(fraction), 0.0), 1.0)
            job.message = str(message)

        try:
            value = fn(progress=progress, cancel=job.cancel)
        except self.cancelled_errors():
            job.state = "cancelled"
            return
        except self.user_errors() as e:
            job.error, job.state = one_line(e), "failed"
            return
        except MemoryError:
            job.error, job.state = self.oom_message, "failed"
            return
        except Exception as e:  # noqa: BLE001 - a worker must survive anything; the page shows one line
            traceback.print_exc()  # to the server log, for a bug report
            job.error, job.state = f"unexpected {type(e).__name__}: {one_line(e)}", "failed"
            return
        with self._lock:
            self._results[job.key] = value
            self._results.move_to_end(job.key)
            while len(self._results) > self._max:
                self._results.popitem(last=False)
        job.progress, job.state = 1.0, "done"

    def cancel(self, keys) -> None:
        with self._lock:
            for k in keys:
                job = self._jobs.get(k)
                if job is not None and job.active:
                    job.cancel.set()
                    if job.state == "queued":
                        job.state = "cancelled"

    def forget(self, key: str) -> None:
        """Drops a failed or cancelled job, so that the same request may be started again."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.active:
                del self._jobs[key]

    def wait(self, keys, timeout: float) -> bool:
        """True when every job of ``keys`` has finished within ``timeout`` seconds."""
        deadline = time.time() + timeout
        while True:
            if not any(j is not None and j.active for j in (self.job(k) for k in keys)):
                return True
            if time.time() >= deadline:
                return False
            time.sleep(0.05)
