"""How often the dashboard redraws its live charts, and what that costs the runs training beside it.
No Streamlit here (the run manager's estimates use it too)."""
from __future__ import annotations

import os

from resnet_core.training.runs import ACTIVE

# What one redraw of the Train page's live charts costs, in CPU seconds, browser and server together,
# with the browser on the machine that trains. On a 2-core CPU bench/redraw_floor.py measures 0.37
# for a page of 4 Plotly charts with nothing training, and the browser alone used 0.33-0.40 cores
# during bench/dashboard_overhead.py's 1 s runs (README, "Benchmarks").
REDRAW_CPU_S = 0.4
REDRAW_BUDGET = 0.05          # of the machine's CPU; training slows by about twice that (its threads sync)
REDRAW_CHOICES = (1.0, 2.0, 5.0)


def auto_redraw_seconds(cpu_count: int | None) -> float:
    """The shortest redraw interval whose cost stays within REDRAW_BUDGET of the CPU: 1 s from 8
    cores up, 2 s on 4, 5 s on 2, where a 1 s redraw took a third of the training speed."""
    cores = max(1, cpu_count or 1)
    for every in REDRAW_CHOICES:
        if REDRAW_CPU_S / every <= REDRAW_BUDGET * cores:
            return every
    return REDRAW_CHOICES[-1]


def host_floor_seconds() -> float:
    """The shortest redraw interval this server allows (``RESNET_LAB_REDRAW_S``, 1 by default): a host
    serving a class raises it, as every browser's redraw also costs the server. On the 2-core CPU the
    server spent 2.9 CPU-s of a 48 s Degradation preset on one browser's redraws every 5 s (Chromium 10.6
    more, on the viewer's machine when it is another): thirty such browsers would need 1.8 of the server's
    cores at 5 s, 0.3 at 30 s. Runs ending, failing or stopping still show within a second."""
    try:
        v = float(os.environ.get("RESNET_LAB_REDRAW_S", "1"))
    except ValueError:
        return 1.0
    return min(max(1.0, v), 3600.0) if v == v else 1.0


def default_redraw_seconds(cpu_count: int | None) -> float:
    """The *auto* interval: ``auto_redraw_seconds``, raised to the host's floor."""
    return max(auto_redraw_seconds(cpu_count), host_floor_seconds())


def redraw_choices(cpu_count: int | None) -> dict[str, float]:
    """The Train page's *Redraw every* options, label -> seconds: *auto* first, then each of
    REDRAW_CHOICES the host's floor allows."""
    auto = default_redraw_seconds(cpu_count)
    floor = host_floor_seconds()
    return {f"auto ({auto:g} s)": auto, **{f"{every:g} s": every for every in REDRAW_CHOICES if every >= floor}}


def live_charts(runs: int, preset: bool = False) -> int:
    """Charts the Train page's live panel draws for ``runs`` shown (its default view, Gradients): loss,
    accuracy, a heatmap per run and the gradient profile, and a preset's own figure."""
    return 3 + max(1, runs) + (1 if preset else 0)


def page_seconds(run_seconds: float, cores: int | None, every: float, charts: int = 4) -> float:
    """Wall seconds the Train page's own work adds to runs that train ``run_seconds`` on this machine's
    CPU, watched at a redraw every ``every`` seconds: the rerun on the click, the first points' draw, the
    redraws while they train and the rerun at their end, each REDRAW_CPU_S for 4 charts, scaled to
    ``charts``, taken from ``cores``. The dashboard's estimates add it only for runs of a kind (thread
    count) none of which has finished here: from then on what those runs took beside the page, measured,
    corrects them (``resnet_core/history.py``). On the 2-core CPU a 5 s Start took 5.7-6.8 s in the
    dashboard, 5.1-5.4 s from the CLI, and this adds 0.8 s; the Degradation preset (8 charts) took 46-50 s
    against 46-49 s from the CLI and 38 s by the steps alone, and this adds 4 s (the page and Chromium used
    13.5 CPU-s during it, 1.2 a redraw: its curves hold four runs' traces)."""
    return (3 + max(0.0, run_seconds) / every) * REDRAW_CPU_S * charts / 4 / max(1, cores or 1)


def live_period(busy: bool, runs: list[tuple[str, int]], chosen: float) -> float | None:
    """The live panel's timer, from whether the manager has work and the shown runs' (status, points):
    none when nothing is active (no polling when idle); 1 s while a shown run trains but has no point
    yet, so a Start answers fast; else the chosen interval."""
    if not (busy or any(status in ACTIVE for status, _ in runs)):
        return None
    if any(status == "running" and not points for status, points in runs):
        return 1.0
    return chosen
