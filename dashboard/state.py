"""Process-wide objects the pages share, through ``st.cache_resource``: the run manager and the
incremental metrics reader. Every session (tab) of the server gets the same ones."""
from __future__ import annotations

import streamlit as st

from resnet_core.training.runs import RunInfo, default_runs_dir

from resnet_core.training.series import RunSeries, SeriesCache
from dashboard.worker import RunManager


@st.cache_resource(show_spinner=False)
def _manager(runs_dir: str) -> RunManager:
    from resnet_core.experiments.scales import preset_base, scale_config
    from resnet_core.memory import keep_freed_memory

    keep_freed_memory()   # the analyses run in this process: their passes keep their memory between batches
    manager = RunManager.shared(runs_dir)
    # The training processes import torch (~2.5 s), render the quick presets' and the default Start's
    # data (~1 s) and take two unrecorded steps of the default Start (its kernels) now, while the page is
    # read, so that none of it stands between Start and the first point.
    manager.warm(preset_base("quick").data)
    start = scale_config("quick")
    manager.warm(start.data, run=start)
    # The page's durations come from this machine's measured step costs: measured once, in the
    # background, the first time the dashboard runs here (resnet_core/experiments/costmodel.py).
    from resnet_core.experiments.costmodel import calibrate_in_background
    from resnet_core.device import resolve_device

    calibrate_in_background(resolve_device("auto").type)
    return manager


@st.cache_resource(show_spinner=False)
def _series_cache(runs_dir: str) -> SeriesCache:
    return SeriesCache(_manager(runs_dir).store)


def runs_dir() -> str:
    # Read on every call, not once: tests point RESNET_LAB_RUNS at a fresh directory per test.
    return str(default_runs_dir().resolve())


def session_owner() -> str:
    """This browser session's id: the run queue takes sessions' runs in turn."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def get_manager() -> RunManager:
    return _manager(runs_dir())


def get_series(info: RunInfo) -> RunSeries:
    return _series_cache(runs_dir()).get(info)


def forget_series(run_id: str) -> None:
    _series_cache(runs_dir()).forget(run_id)


@st.cache_data(show_spinner=False, max_entries=64)
def read_features(root: str, run_id: str, step: int):
    """Feature maps of one snapshot; cached by step, so a page re-reads the .npz only when a new one exists."""
    return get_manager().store.read_features(run_id, step)


STATUS_ICON = {"queued": "⏳", "running": "▶️", "finished": "✅", "stopped": "⏹️", "diverged": "💥",
               "failed": "❌", "interrupted": "⚠️", "damaged": "🚫"}


def run_title(info: RunInfo) -> str:
    return f"{STATUS_ICON.get(info.status, '')} {info.label} · {info.status} · {info.run_id[:15]}"
