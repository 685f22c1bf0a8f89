"""The papers' experiments as the pages use them. The presets themselves (which runs at which scale,
what to look for, the verdict) are defined once in the core, ``resnet_core.experiments.presets``, which
``python -m resnet_core reproduce`` runs too; here they meet the run store: a preset's runs share a
``group`` in their config, and a group whose runs have all ended gets the core's verdict.
No Streamlit here (tests/unit/test_worker.py checks it).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from dashboard import redraw
from resnet_core.experiments import presets as core
from resnet_core.experiments import costmodel
from resnet_core.experiments import verdicts
from resnet_core.config import ConfigError, RunConfig
from resnet_core.training.runs import ACTIVE, RunInfo, RunStore

PRESETS = core.PRESETS


def twin(base: RunConfig) -> list[RunConfig]:
    """The same configuration as a plain net and as a residual net: plain first, drawn on the left."""
    return core.build_twin(base)


def preset_of_group(group: str) -> str | None:
    """The preset a run group was started from: its id is ``key/scale/time`` (core.new_group_id)."""
    key = (group or "").split("/", 1)[0]
    return key if key in core.PRESETS else None


def groups(infos: list[RunInfo]) -> dict[str, list[RunInfo]]:
    """Stored runs by their config's group, in the order of ``infos`` (the store lists newest first);
    runs without a group are left out."""
    out: dict[str, list[RunInfo]] = {}
    for info in infos:
        group = (info.config or {}).get("group")
        if group:
            out.setdefault(group, []).append(info)
    return out


def group_title(group: str, runs: list[RunInfo]) -> str:
    """"Degradation (Fig. 6) · quick · 2026-11-24 11:40 · 4 runs" for a group id key/scale/YYYYmmdd-HHMMSS."""
    key, _, rest = group.partition("/")
    scale, _, when = rest.partition("/")
    title = core.PRESETS[key].title if key in core.PRESETS else key
    if len(when) == 15 and when[8] == "-":
        when = f"{when[:4]}-{when[4:6]}-{when[6:8]} {when[9:11]}:{when[11:13]}"
    return " · ".join(p for p in (title, scale, when, f"{len(runs)} run{'s' if len(runs) != 1 else ''}") if p)


@functools.lru_cache(maxsize=512)
def _summary(root: str, run_id: str, mtime_ns: int, size: int, config_json: str) -> dict:
    # Keyed by the metrics file's time and size: an ended run is read once, not on every redraw.
    cfg = RunConfig.from_dict(json.loads(config_json))
    return verdicts.run_summary(cfg, RunStore(root).read_metrics(run_id))


def run_summary(info: RunInfo) -> dict | None:
    """The core's summary of a stored run (label, arch, depth, final errors, ...); None when unreadable."""
    try:
        stat = (info.path / "metrics.jsonl").stat()
        return _summary(str(info.path.parent), info.run_id, stat.st_mtime_ns, stat.st_size,
                        json.dumps(info.config, sort_keys=True))
    except (OSError, ConfigError, TypeError, ValueError, KeyError):
        return None


@dataclass
class GroupResult:
    """What the pages show of one preset group."""
    group: str
    key: str                         # the preset's key in core.PRESETS
    title: str
    what_to_look_for: str
    runs: list[RunInfo]
    ended: bool                      # every run has ended (finished, stopped, diverged, failed, ...)
    summaries: list[dict]            # of the ended runs that could be read
    verdict: dict | None             # the core's verdict once every run has ended: holds, checks, line


def group_result(group: str, runs: list[RunInfo]) -> GroupResult | None:
    """The preset result of a group of stored runs; None when the group is no preset's."""
    key = preset_of_group(group)
    if key is None:
        return None
    preset = core.PRESETS[key]
    ended = all(i.status not in ACTIVE for i in runs)
    summaries = [s for s in (run_summary(i) for i in runs if i.status not in ACTIVE) if s is not None]
    verdict = core.verdict(key, summaries) if ended and summaries else None
    return GroupResult(group, key, preset.title, preset.what_to_look_for, runs, ended, summaries, verdict)


def _page_prior(cal: costmodel.Calibration, runs: int) -> bool:
    """Whether the page's own redraws are added to the estimate of ``runs`` started together: on a CPU
    (where the page and the browser take cores from the runs), until a dashboard run at the thread count
    these will train at has finished here (its time, measured beside the page, then corrects them)."""
    if cal.device != "cpu":
        return False
    cores = cal.machine.get("cores") or 1
    threads = max(1, cores // max(1, min(runs, costmodel.runs_at_once())))
    return costmodel.finished_here(cal, "dashboard", threads) == 0


def expected_duration(cfgs: list[RunConfig], device: str = "auto",
                      ahead: list[tuple[RunConfig, int]] | None = None, start_wait_s: float | None = 0.0,
                      preset: bool = False) -> str:
    """The core's estimate of how long these runs take here (behind the runs ``ahead``, training or
    queued now, after ``start_wait_s`` for a training process to be ready), as a person reads it;
    "not measured yet" until this machine's calibration exists. ``preset``: the runs of a preset, drawn
    with its own figure."""
    seconds = costmodel.estimate_seconds(cfgs, device, ahead=ahead, context="dashboard")
    if seconds is None:
        return "not estimated yet (timing a few training steps on this machine)"
    cal = costmodel.device_calibration(device)
    if cal is not None and _page_prior(cal, len(cfgs)):
        cores = cal.machine.get("cores")
        seconds += redraw.page_seconds(seconds, cores, redraw.default_redraw_seconds(cores),
                                       redraw.live_charts(len(cfgs), preset))
    seconds += start_wait_s or 0.0
    return "estimated " + duration_text(seconds) + (" after the runs ahead of it" if ahead else "")


def estimate_basis(device: str = "auto") -> str:
    """Where the page's durations (of a Start) come from, in one line."""
    cal = costmodel.device_calibration(device)
    if cal is None:
        return "this machine's training speed is being measured"
    return costmodel.estimate_basis(cal, "dashboard") + (
        f"; plus the page's redraws ({redraw.REDRAW_CPU_S / 4:g} CPU-s a chart), until a run like it has finished here"
        if _page_prior(cal, 1) else "")


def duration_text(seconds: float | None) -> str:
    """An expected duration as a person reads it: "about 40 s", "about 3 min", "about 2.5 h"."""
    if seconds is None or seconds != seconds:
        return "duration unknown"
    if seconds < 90:
        return f"about {max(1, round(seconds / 5) * 5) if seconds >= 10 else max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"
