"""A run's metrics as columns (numpy arrays), read incrementally from its ``metrics.jsonl``.

Pages poll once a second; re-reading and re-parsing a whole file each time would grow with the run,
so ``MetricsTail`` remembers its byte offset and parses only the lines appended since the last poll
(complete lines only: the writer may be half-way through one). No Streamlit here.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STEP_SCALARS = ("epoch", "t", "lr", "train_loss", "train_acc", "images_per_s")
PROBE_VECTORS = ("grad_norm", "branch_std", "branch_ratio", "act_mean", "act_std", "dead_relu")


@dataclass
class RunSeries:
    """Everything a chart needs of one run. Vectors are (steps, n) arrays in the layout's order."""
    run_id: str
    label: str = ""
    residual: bool | None = None
    depth: int | None = None
    group: str = ""                   # the preset run group (config "group"); "" for a single run
    status: str = ""
    layout: dict = field(default_factory=lambda: {"layers": [], "blocks": [], "stages": []})
    total_steps: int | None = None
    step: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    scalars: dict[str, np.ndarray] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    eval_step: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    test_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    test_acc: np.ndarray = field(default_factory=lambda: np.zeros(0))
    diverged: dict | None = None      # {"step", "loss"} when the loss became non-finite
    end: dict | None = None           # the trainer's end event
    feature_steps: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)

    def latest(self, name: str) -> np.ndarray | None:
        v = self.vectors.get(name)
        return v[-1] if v is not None and len(v) else None


class _Columns:
    """Growing Python lists, turned into arrays only when asked and only when they changed."""

    def __init__(self):
        self.step: list[int] = []
        self.scalars: dict[str, list[float]] = {k: [] for k in STEP_SCALARS}
        self.vectors: dict[str, list[list[float]]] = {k: [] for k in PROBE_VECTORS}
        self.eval: list[tuple[int, float, float]] = []
        self.start: dict | None = None
        self.diverged: dict | None = None
        self.end: dict | None = None
        self.feature_steps: list[int] = []

    def add(self, rec: dict) -> None:
        kind = rec.get("type")
        if kind == "step":
            self.step.append(int(rec["step"]))
            for k in STEP_SCALARS:
                self.scalars[k].append(_num(rec.get(k)))
            for k in PROBE_VECTORS:
                if k in rec:
                    self.vectors[k].append([_num(v) for v in rec[k]])
        elif kind == "eval":
            self.eval.append((int(rec["step"]), _num(rec.get("test_loss")), _num(rec.get("test_acc"))))
        elif kind == "start":
            self.start = rec
        elif kind == "diverged":
            self.diverged = {"step": int(rec["step"]), "loss": _num(rec.get("loss"))}
        elif kind == "end":
            self.end = rec
        elif kind == "features":
            self.feature_steps.append(int(rec["step"]))


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _matrix(rows: list[list[float]]) -> np.ndarray:
    if not rows:
        return np.zeros((0, 0))
    width = max(len(r) for r in rows)
    if all(len(r) == width for r in rows):
        return np.asarray(rows, dtype=float)
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


class MetricsTail:
    """Incremental reader of one ``metrics.jsonl``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.columns = _Columns()
        self._built: tuple[int, RunSeries] | None = None
        self._records = 0

    def poll(self) -> bool:
        """Reads what was appended since the last poll; True when something new arrived."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return False
        if size < self.offset:  # replaced (a run deleted and re-created): start over
            self.offset, self.columns, self._records = 0, _Columns(), 0
        if size == self.offset:
            return False
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(size - self.offset)
        complete = chunk[:chunk.rfind(b"\n") + 1]   # a torn last line waits for the next poll
        self.offset += len(complete)
        for line in complete.splitlines():
            try:
                self.columns.add(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue  # a corrupt line (a killed writer) is skipped, as RunStore.read_metrics does
            self._records += 1
        return bool(complete)

    def series(self, run_id: str) -> RunSeries:
        if self._built is not None and self._built[0] == self._records:
            return self._built[1]
        c = self.columns
        s = RunSeries(run_id=run_id, step=np.asarray(c.step, dtype=np.int64),
                      scalars={k: np.asarray(v, dtype=float) for k, v in c.scalars.items()},
                      vectors={k: _matrix(v) for k, v in c.vectors.items()},
                      diverged=c.diverged, end=c.end, feature_steps=list(c.feature_steps))
        if c.eval:
            ev = np.asarray(c.eval, dtype=float)
            s.eval_step, s.test_loss, s.test_acc = ev[:, 0].astype(np.int64), ev[:, 1], ev[:, 2]
        if c.start:
            s.layout = c.start.get("layout") or s.layout
            s.total_steps = c.start.get("total_steps")
        self._built = (self._records, s)
        return s


class SeriesCache:
    """One ``MetricsTail`` per run, shared by every session of the server (thread-safe)."""

    def __init__(self, store):
        self.store = store
        self._tails: dict[str, MetricsTail] = {}
        self._lock = threading.Lock()

    def get(self, info) -> RunSeries:
        """The series of a ``RunInfo`` from the store, with its label, kind and status filled in."""
        with self._lock:
            tail = self._tails.get(info.run_id)
            if tail is None:
                tail = self._tails[info.run_id] = MetricsTail(info.path / "metrics.jsonl")
            tail.poll()
            s = tail.series(info.run_id)
        model = (info.config or {}).get("model", {})
        s.label, s.status = info.label, info.status
        s.residual, s.depth = model.get("residual"), model.get("depth")
        s.group = (info.config or {}).get("group") or ""
        if info.layout and not s.layout.get("layers"):
            s.layout = info.layout
        if s.total_steps is None:
            s.total_steps = info.summary.get("total_steps")
        return s

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._tails.pop(run_id, None)


def metrics_long_csv(series: list[RunSeries]) -> str:
    """The runs' scalar metrics in long format, one row per (run, step, metric): easy to pivot in
    pandas or a spreadsheet, and one schema whatever metrics a run has."""
    import csv
    import io

    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["run_id", "label", "step", "metric", "value"])
    for s in series:
        for key in ("train_loss", "train_acc", "lr", "images_per_s"):
            for step, value in zip(s.step.tolist(), s.scalars.get(key, np.zeros(0)).tolist()):
                out.writerow([s.run_id, s.label, step, key, repr(value)])
        for key, values in (("test_loss", s.test_loss), ("test_acc", s.test_acc)):
            for step, value in zip(s.eval_step.tolist(), values.tolist()):
                out.writerow([s.run_id, s.label, step, key, repr(value)])
    return buf.getvalue()
