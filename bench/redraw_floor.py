"""What a live Streamlit page costs by itself, whatever it shows: CPU of the server and of a headless
Chromium on this machine while a minimal page redraws once a second, with 0, 1 and 4 Plotly charts
(our loss chart, 300 steps, built by resnet_core.figures.training exactly as the Train page builds it), against the
same page with its timer off. No training runs, so the figures are the page's cost alone.

    .venv/bin/python bench/redraw_floor.py [--seconds 15] [--every 1]

Why: a training run that keeps every core busy slows by at least this CPU over the machine's cores
(more, because its threads wait for each other at every operation), so it is the floor under the
ratio bench/dashboard_overhead.py measures for the real page.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_overhead import cpu_seconds_by_group, wait_for_health  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

PAGE = textwrap.dedent('''
    import sys, time
    import numpy as np
    import streamlit as st
    sys.path.insert(0, {root!r})
    from dashboard import widgets
    from resnet_core.figures import training as charts
    from resnet_core.training.series import RunSeries

    N, EVERY = {charts}, {every}
    st.title("redraw floor")

    def series():
        n = 300 + int(time.time() * 7) % 50        # new points every redraw, as while training
        s = RunSeries(run_id="r", label="resnet-20", residual=True, depth=20, step=np.arange(1, n + 1))
        s.scalars = {{"train_loss": 2.3 * np.exp(-np.arange(n) / 200) + 0.1 * np.random.rand(n)}}
        s.eval_step, s.test_loss = np.arange(50, n, 50), np.full(len(range(50, n, 50)), 1.0)
        return s

    @st.fragment(run_every=EVERY)
    def live():
        st.progress((time.time() % 10) / 10, text=f"step {{int(time.time())}}")
        s = series()
        cols = st.columns(2)
        for i in range(N):
            with cols[i % 2]:
                widgets.plot(charts.loss_figure([s]), f"c{{i}}")

    live()
''')


def measure(charts: int, every: float | None, seconds: float, port: int, browser) -> tuple[float, float]:
    """(server cores, browser cores) while the page is open, averaged over ``seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "floor.py"
        app.write_text(PAGE.format(root=str(ROOT), charts=charts, every=every))
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port), "--server.headless",
             "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
             "--runner.postScriptGC", "false"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_health(port)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("heading", name="redraw floor").wait_for(timeout=60_000)
            page.wait_for_timeout(5000)                       # first render and imports out of the figures
            c0, t0 = cpu_seconds_by_group(server.pid), time.perf_counter()
            page.wait_for_timeout(seconds * 1000)
            c1, wall = cpu_seconds_by_group(server.pid), time.perf_counter() - t0
            page.close()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
    return (c1["server"] - c0["server"]) / wall, (c1["browser"] - c0["browser"]) / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--every", type=float, default=1.0, help="redraw interval of the timed pages, seconds")
    ap.add_argument("--port", type=int, default=8766)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    cores = os.cpu_count() or 1
    cases = [("timer off, 4 charts", 4, None)] + [(f"redraw every {args.every:g} s, {n} chart(s)", n, args.every)
                                                  for n in (0, 1, 4)]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        print(f"{'page':34s} {'server':>8s} {'browser':>8s} {'total':>8s}   (CPU cores; {cores} on this machine)")
        for name, n, every in cases:
            server, client = measure(n, every, args.seconds, args.port, browser)
            print(f"{name:34s} {server:8.3f} {client:8.3f} {server + client:8.3f}   "
                  f"= {100 * (server + client) / cores:4.1f}% of the machine", flush=True)
        browser.close()


if __name__ == "__main__":
    main()
