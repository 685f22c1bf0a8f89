"""How long work took on this machine against what its cost model said: the estimates' own correction.

The cost models count work (an analysis's multiply-adds over a forward rate timed here; a run's steps over
step costs timed here) and say how long it will take. What they leave out (an analysis's own mix of
batch sizes, partial passes, autograd calls and hooks; a run's evaluations, probes and files, the machine's
pace over minutes rather than over the few seconds it was timed) shows as the ratio of the time taken to
the estimate. That ratio varies between analyses and models (0.4-2x for the analyses on the 2-core CPU,
bench/why_defaults.py) and little from one run of the same thing to the next. So every finished piece of
work keeps its ratio here, and the next estimate of the same kind is multiplied by:

- for the same key (an analysis of the same model; a run at the same thread count): the median of its last
  ``KEEP`` ratios;
- for a key not seen yet: the median over the keys of that group;
- for a group never run here: 1 (the cost model alone).

Only work whose estimate was at least ``MIN_SECONDS`` teaches: below that, fixed costs (building a net,
loading a checkpoint) dominate and the ratio says nothing about the next, larger request. The ratios live
in one small JSON file per kind, machine and device beside the training calibration (``RESNET_LAB_CACHE``);
a damaged or unwritable file only means no correction.
"""
from __future__ import annotations

import json
import os
import statistics
import threading
from pathlib import Path

KEEP = 5
MAX_KEYS = 32
MIN_SECONDS = 0.5
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


def _ratios(entry) -> list[float]:
    if not isinstance(entry, list):
        return []
    return [float(r) for r in entry if isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r < 1e3]


def factor(kind: str, group: str, key: str, device: str) -> tuple[float, str]:
    """(multiplier for the cost model's estimate, where it comes from, in words)."""
    with _LOCK:
        by_key = _read(kind, device).get(group)
    if not isinstance(by_key, dict):
        return 1.0, "no run of it here yet"
    own = _ratios(by_key.get(key))
    if own:
        return statistics.median(own), f"x{statistics.median(own):.2f} from its last {len(own)} run(s) like it here"
    medians = [statistics.median(r) for r in map(_ratios, by_key.values()) if r]
    if not medians:
        return 1.0, "no run of it here yet"
    f = statistics.median(medians)
    return f, f"x{f:.2f} from its runs of {len(medians)} other kind(s) here"


def record(kind: str, group: str, key: str, device: str, estimated: float, took: float) -> None:
    """Keeps took / estimated under ``group`` and ``key`` (nothing for estimates under ``MIN_SECONDS``)."""
    if not (estimated >= MIN_SECONDS and took > 0 and 0 < took / estimated < 1e3):
        return
    with _LOCK:
        data = _read(kind, device)
        by_key = data.get(group) if isinstance(data.get(group), dict) else {}
        ratios = _ratios(by_key.pop(key, None)) + [float(f"{took / estimated:.4g}")]
        by_key[key] = ratios[-KEEP:]                     # re-inserted last: the newest key is kept
        while len(by_key) > MAX_KEYS:
            by_key.pop(next(iter(by_key)))
        data[group] = by_key
        target = path(kind, device)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, target)
        except OSError:
            pass
