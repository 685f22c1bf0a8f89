"""The worker behind the Why it works page: analyses of ``resnet_core.analysis`` run in one thread of the
server process, with progress, Cancel and a bounded cache of results. Never imports Streamlit.

The worker is ``dashboard/jobs.py``'s, shared with the Attribution page: one process-wide thread,
jobs by key, a bounded LRU of finished results. One thread, not one per session: every analysis uses all
of the CPU's cores through torch anyway, and a second one at the same time would only halve both. The
page polls the jobs from ``st.fragment(run_every=...)``, so a click or a widget change reruns the page
without touching a job, and Cancel sets the job's event, which the core checks between units of work.

Results are cached here, in memory, per (analysis, model source, data, settings); the core keeps its own
on-disk cache in a run's directory (``use_cache``), which is what makes reopening a landscape instant
after a server restart.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from resnet_core import analysis as core
from resnet_core.nets.checkpoints import CheckpointError
from resnet_core.config import ConfigError
from resnet_core.training.runs import RunStore

from dashboard.jobs import Job, JobService, one_line  # noqa: F401  (Job, one_line: used by the Why views)

MAX_RESULTS = 64           # a 2-D landscape result is a few hundred numbers; 64 of anything stay small


USER_ERRORS = (ConfigError, CheckpointError, FileNotFoundError, core.AnalysisError)


# --- jobs --------------------------------------------------------------------------------------------

class AnalysisService(JobService):
    """The Why it works page's worker (``dashboard/jobs.py``): analyses one at a time, results cached."""

    thread_name = "analysis"
    oom_message = "out of memory: use a smaller depth, batch, grid or fewer images"
    _shared: "AnalysisService | None" = None
    _shared_lock = threading.Lock()

    def __init__(self, max_results: int = MAX_RESULTS):
        super().__init__(max_results)

    def cancelled_errors(self) -> tuple[type[BaseException], ...]:
        return (core.Cancelled,)

    def user_errors(self) -> tuple[type[BaseException], ...]:
        return USER_ERRORS

    @classmethod
    def shared(cls) -> "AnalysisService":
        """The process-wide service: every tab and session of the server queues into the same thread."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared


# --- requests ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One analysis of one model: what the page asks the worker for."""
    analysis: str
    label: str                          # e.g. "residual-56" or "run resnet-20 · 2026..."
    config: dict | None = None          # ModelConfig fields, for analyses at initialisation
    run_id: str | None = None
    checkpoint: str | None = None
    settings: dict = field(default_factory=dict)
    data: dict | None = None            # DataConfig fields; None: the core's default (the run's own data)

    @property
    def key(self) -> str:
        parts = [self.analysis, self.config, self.run_id, self.checkpoint, self.settings, self.data]
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def source(self):
        from resnet_core.config import ModelConfig

        config = ModelConfig.from_dict(self.config) if self.config is not None else None
        return core.ModelSource(config=config, run_id=self.run_id, checkpoint=self.checkpoint)

    def data_config(self):
        from resnet_core.config import DataConfig

        return DataConfig.from_dict(self.data) if self.data is not None else None


def available() -> dict[str, Any]:
    """The registered analyses by name."""
    return dict(core.ANALYSES)


class Estimator:
    """Cost estimates off the script thread. The page asks for one on every rerun, and the first one of a
    setting may build the nets to count their multiply-adds or load a data set: seconds for a ResNet-110 on
    a loaded 2-core CPU, more at 1,202 layers. So they are computed in a thread of their own (not the
    analysis worker's, where they would queue behind a long analysis) and remembered per request and
    device; the page shows "estimating" and polls. A refusal is remembered for ``ERROR_TTL_S`` only, so
    that fixing what it complained about (a data set, a file) is seen on a later rerun."""

    ERROR_TTL_S = 20.0
    MAX_ENTRIES = 256

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis-estimate")
        self._lock = threading.Lock()
        self._costs: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self._errors: dict[tuple[str, str], tuple[str, float]] = {}
        self._pending: set[tuple[str, str]] = set()

    def get(self, request: Request, device: str = "cpu") -> tuple[str, Any]:
        """("ready", {"seconds", "detail"}), ("failed", one line) or ("pending", None), starting the work."""
        key = (request.key, device)
        with self._lock:
            if key in self._costs:
                self._costs.move_to_end(key)
                return "ready", self._costs[key]
            if key in self._errors:
                message, when = self._errors[key]
                if time.time() - when < self.ERROR_TTL_S:
                    return "failed", message
                del self._errors[key]
            if key not in self._pending:
                self._pending.add(key)
                self._pool.submit(self._estimate, key, request, device)
        return "pending", None

    def _estimate(self, key, request: Request, device: str) -> None:
        try:
            cost = core.estimate_cost(request.analysis, request.source(), settings=request.settings,
                                      data=request.data_config(), device=device)
        except Exception as e:  # noqa: BLE001 - an estimate must never take the page down
            if not isinstance(e, USER_ERRORS):
                traceback.print_exc()
            with self._lock:
                self._errors[key] = (one_line(e), time.time())
                self._pending.discard(key)
            return
        with self._lock:
            self._costs[key] = cost
            while len(self._costs) > self.MAX_ENTRIES:
                self._costs.popitem(last=False)
            self._pending.discard(key)

    def summary(self, requests: list[Request], device: str = "cpu") -> tuple[str, str]:
        """("ready", "Estimated about 12 s: ... (basis: ...)"), ("failed", the first refusal) or ("pending", "")."""
        answers = [(r, *self.get(r, device)) for r in requests]
        for r, state, value in answers:
            if state == "failed":
                return "failed", f"{r.label}: {value}"
        if any(state == "pending" for _, state, _ in answers):
            return "pending", ""
        total = sum(float(value.get("seconds", 0.0)) for _, _, value in answers)
        details = "; ".join(str(value.get("detail", "")) or r.label for r, _, value in answers)
        bases = list(dict.fromkeys(str(value["basis"]) for _, _, value in answers if value.get("basis")))
        basis = f" (basis: {'; '.join(bases)})" if bases else ""
        return "ready", f"Estimated {format_seconds(total)}: {details}{basis}"

    def wait(self, timeout: float) -> bool:
        """True when nothing is being estimated (within ``timeout`` seconds)."""
        deadline = time.time() + timeout
        while True:
            with self._lock:
                if not self._pending:
                    return True
            if time.time() >= deadline:
                return False
            time.sleep(0.05)


ESTIMATES = Estimator()


def format_seconds(s: float) -> str:
    if s < 1:
        return "under a second"
    if s < 90:
        return f"about {s:.0f} s"
    return f"about {s / 60:.1f} min"


def job_fn(request: Request, runs_dir: str, device: str = "cpu") -> Callable[..., Any]:
    """The worker's callable for ``request``: ``run_analysis`` with the job's progress and cancel."""
    def run(progress, cancel):
        return core.run_analysis(request.analysis, request.source(), data=request.data_config(),
                                 settings=request.settings, device=device, runs_dir=runs_dir,
                                 progress=progress, cancel=cancel, use_cache=True)
    return run


def submit(service: AnalysisService, request: Request, runs_dir: str, device: str = "cpu") -> Job:
    return service.submit(request.key, request.label, job_fn(request, runs_dir, device))


# --- models to pick from -----------------------------------------------------------------------------

def stored_runs(root: str) -> list[dict]:
    """Every stored run with a final checkpoint, newest first: id, label, residual, depth, has_init."""
    store = RunStore(root)
    out = []
    for info in store.list():
        ckpt = store.checkpoint_path(info.run_id)
        if ckpt is None:
            continue
        model = (info.config or {}).get("model", {})
        out.append({"run_id": info.run_id, "label": info.label, "status": info.status,
                    "residual": bool(model.get("residual", True)), "depth": model.get("depth"),
                    "has_init": (ckpt.parent / "init.pt").is_file()})
    return out


# --- export ------------------------------------------------------------------------------------------

def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, scalar) pairs of a JSON-like result: ``sweep[2].ratio``, ``loss[3][4]``."""
    if isinstance(value, dict):
        rows = []
        for k, v in value.items():
            rows += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(value, (list, tuple)):
        rows = []
        for i, v in enumerate(value):
            rows += flatten(v, f"{prefix}[{i}]")
        return rows
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return flatten(value.tolist(), prefix)
    return [(prefix, value)]


def result_csv(results: dict[str, Any]) -> str:
    """A long-format CSV of labelled results: model, field, value (one row per number)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "field", "value"])
    for label, result in results.items():
        for path, value in flatten(result):
            w.writerow([label, path, "" if value is None else value])
    return buf.getvalue()
