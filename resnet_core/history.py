"""How long work took on this machine against what its cost model said: the estimates' own correction.

The cost models count work (an analysis's multiply-adds over a forward rate timed here; a run's steps over
step costs timed here) and say how long it will take. What they leave out (an analysis's own mix of
batch sizes, partial passes, autograd calls and hooks; a run's evaluations, probes and files, the page
and the browser beside a dashboard run) shows in what the work then took. On the 2-core CPU the analyses
took 0.4-2x their count (bench/why_defaults.py), a 5 s Start took 6.2-7.5 s in the dashboard, while the
same work repeated took nearly the same time again. So every finished piece of work keeps its
(estimate, took) pair here, under a group (one analysis; runs in one context at one thread count) and a
key (the model; the run's net and steps), and the next estimate becomes:

- for a key seen before: the estimate times the median of its last ``KEEP`` ratios took / estimate;
- for a new key of a group seen before, as its caller says: an analysis of another model the group's
  median ratio (its time scales with its count, at a pace the count misses); a run of another net or
  length the group's median of took - estimate, added (what a dashboard run adds beside the page is a
  second or two around its start and end, which a ratio learned from a 5 s Start would spread over a
  40 s preset), within 1.5x of the estimate either way. A line fitted through a group's pairs was
  tried and dropped: from two clusters of short runs it extrapolated a 600-step run to 0.68x;
- for a group never seen here: the estimate alone.

Only work whose estimate was at least ``MIN_SECONDS`` teaches: below that, fixed costs (building a net,
loading a checkpoint) dominate and say little about the next, larger request. The pairs live in one
small JSON file per kind, machine and device beside the training calibration (``RESNET_LAB_CACHE``); a
damaged or unwritable file only means no correction.
"""
from __future__ import annotations

import fcntl
import json
import os
import statistics
import threading
from pathlib import Path

KEEP = 5
MAX_KEYS = 32
MIN_SECONDS = 0.5
MAX_OFFSET_FACTOR = 1.5
_LOCK = threading.Lock()


def path(kind: str, device: str) -> Path:
    from resnet_core.experiments.costmodel import cache_path

    calibration = cache_path(device)   # the same machine key: one file per kind, machine and device
    return calibration.with_name(calibration.name.replace("cost-", f"{kind}-", 1))


def _read(kind: str, device: str) -> dict:
    try:
        data = json.loads(path(kind, device).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1e9


def _pairs(entry) -> list[tuple[float, float]]:
    """The (estimate, took) pairs of one key; anything else in the file is ignored."""
    if not isinstance(entry, list):
        return []
    return [(float(p[0]), float(p[1])) for p in entry
            if isinstance(p, list) and len(p) == 2 and _number(p[0]) and _number(p[1]) and p[0] >= MIN_SECONDS]


def predict(kind: str, group: str, key: str, device: str, estimated: float,
            fallback: str = "ratio") -> tuple[float, str]:
    """(seconds the work of ``estimated`` seconds by the cost model is expected to take, why, in words).
    A key seen before: its median ratio. A new key of a group seen before: ``fallback`` "ratio" (the
    group's median ratio: an analysis of another model, whose time scales with its count) or "offset"
    (the group's median of took - estimate, a fixed cost such as the page's around a dashboard run,
    added to the estimate, which it may change by at most ``MAX_OFFSET_FACTOR`` either way)."""
    with _LOCK:
        by_key = _read(kind, device).get(group)
    by_key = by_key if isinstance(by_key, dict) else {}
    own = _pairs(by_key.get(key))
    if own:
        f = statistics.median(t / e for e, t in own)
        return estimated * f, f"x{f:.2f} from its last {len(own)} run(s) like it here"
    others = [p for k, v in by_key.items() if k != key for p in _pairs(v)]
    if not others:
        return estimated, "no run of it here yet"
    if fallback == "offset":
        extra = statistics.median(t - e for e, t in others)
        seconds = min(max(estimated + extra, estimated / MAX_OFFSET_FACTOR), estimated * MAX_OFFSET_FACTOR)
        return seconds, f"{extra:+.1f} s from {len(others)} other run(s) here"
    f = statistics.median(t / e for e, t in others)
    return estimated * f, f"x{f:.2f} from {len(others)} other run(s) here"


def count(kind: str, device: str, groups: list[str] | None = None) -> int:
    """How many finished pieces of work this machine keeps (in ``groups``, or in all)."""
    with _LOCK:
        data = _read(kind, device)
    return sum(len(_pairs(v)) for g, by_key in data.items() if groups is None or g in groups
               if isinstance(by_key, dict) for v in by_key.values())


def record(kind: str, group: str, key: str, device: str, estimated: float, took: float) -> None:
    """Keeps (estimated, took) under ``group`` and ``key`` (nothing for estimates under ``MIN_SECONDS``)."""
    if not (estimated >= MIN_SECONDS and _number(estimated) and _number(took) and took / estimated < 1e3):
        return
    target = path(kind, device)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Two training processes may finish at once: the read-modify-write is one at a time across
        # processes (the lock file), and the file is replaced whole (readers never see half of it).
        with _LOCK, open(target.with_name(f".{target.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = _read(kind, device)
            by_key = data.get(group) if isinstance(data.get(group), dict) else {}
            pairs = _pairs(by_key.pop(key, None)) + [(float(f"{estimated:.4g}"), float(f"{took:.4g}"))]
            by_key[key] = [list(p) for p in pairs[-KEEP:]]   # re-inserted last: the newest key is kept
            while len(by_key) > MAX_KEYS:
                by_key.pop(next(iter(by_key)))
            data[group] = by_key
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, target)
    except OSError:   # a read-only cache: no correction is learned, nothing else changes
        pass
