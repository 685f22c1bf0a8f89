"""What watching costs: throughput of one run through the CLI path vs through the dashboard with a page
open and polling, interleaved in one script run; plus the delay from pressing Start to the first point.

    .venv/bin/python bench/dashboard_overhead.py [--steps 300] [--rounds 2] [--refresh 1 5]

(a) CLI: ``execute_run`` in this process's main thread, exactly what ``python -m resnet_core train`` does.
(b) Dashboard: a real ``streamlit run`` server, the Train page open in headless Chromium; the run is
    started by clicking Start, so it trains in the server's RunManager thread while the page's
    fragment redraws every chart each ``--refresh`` seconds (the page's "Redraw every" control)
    until it ends; once per refresh interval given, in one round.
Both report the trainer's own images/s (training steps only, evaluation excluded). Same config: the
page defaults (ResNet-20, shapes, batch 128, eval every 50, feature maps every 25) with --steps steps.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from resnet_core.training.runs import RunStore, execute_run  # noqa: E402


def cli_run(runs: Path, steps: int) -> float:
    cfg = RunConfig(model=ModelConfig(depth=20), data=DataConfig(),
                    train=TrainConfig(steps=steps, batch_size=128, eval_every=50, feature_maps_every=25))
    result = execute_run(RunStore(runs).create(cfg, status="running"))
    return result.images_per_s


def start_server(runs: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env={**os.environ, "RESNET_LAB_RUNS": str(runs)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_health(port)
    return proc


def wait_for_health(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"streamlit did not answer on port {port}")


def cpu_seconds_by_group(server_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of the server process and of the browser's processes,
    read from /proc (Linux): where a slow dashboard run's cycles went."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"server": 0.0, "browser": 0.0}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(d.name) == server_pid:
            out["server"] += seconds
        elif b"chromium" in cmd or b"chrome" in cmd:
            out["browser"] += seconds
    return out


def wait_run_state(page) -> None:
    page.wait_for_timeout(210)
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(state="attached", timeout=60_000)


def dashboard_run(page, runs: Path) -> tuple[float, float, float]:
    """(images/s, seconds from click to the first step on disk, seconds to the first point on the page).
    Polls fast only until the first point is seen, then every 0.5 s, so the bench itself costs little."""
    before = {p.name for p in runs.iterdir()} if runs.is_dir() else set()
    clicked = time.perf_counter()
    page.get_by_role("button", name="Start", exact=True).click()
    first_disk = first_page = None
    while True:
        new = [p for p in runs.iterdir() if p.name not in before] if runs.is_dir() else []
        if new and first_disk is None and (new[0] / "metrics.jsonl").exists() and \
                '"type": "step"' in (new[0] / "metrics.jsonl").read_text():
            first_disk = time.perf_counter() - clicked
        if first_page is None and page.locator("[data-testid='stProgress']").filter(
                has_text=re.compile(r"running · step [1-9]\d*/")).count():
            first_page = time.perf_counter() - clicked
        if new:
            status = json.loads((new[0] / "status.json").read_text())
            if status["status"] not in ("queued", "running"):
                return status["images_per_s"], first_disk or float("nan"), first_page or float("nan")
        page.wait_for_timeout(50 if first_page is None else 500)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--refresh", nargs="+", default=["1", "auto"], choices=["auto", "1", "2", "5"],
                    help="the page's redraw intervals to measure (seconds, or the page's default, auto)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="resnet-lab-bench-"))
    server = start_server(tmp / "dash", args.port)
    cli, dash, first_disk, first_page = [], {}, [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{args.port}/")
            page.get_by_role("button", name="Start", exact=True).wait_for(timeout=60_000)
            box = page.get_by_label("Steps", exact=True)
            box.fill(str(args.steps))
            box.press("Enter")
            wait_run_state(page)
            cli_run(tmp / "warm", 2)                       # torch's first-run costs out of the figures
            for r in range(args.rounds):
                cli.append(cli_run(tmp / "cli", args.steps))
                print(f"round {r + 1}: CLI        {cli[-1]:8.1f} images/s", flush=True)
                for every in args.refresh:
                    name = re.compile(r"^auto") if every == "auto" else f"{every} s"
                    page.get_by_role("radiogroup", name="Redraw every").get_by_role("radio", name=name, exact=True).click()
                    wait_run_state(page)
                    cpu0, t0 = cpu_seconds_by_group(server.pid), time.perf_counter()
                    ips, disk, shown = dashboard_run(page, tmp / "dash")
                    cpu1, wall = cpu_seconds_by_group(server.pid), time.perf_counter() - t0
                    print(f"round {r + 1}: redraw {every}, during the dashboard run ({wall:.0f} s): server process "
                          f"{cpu1['server'] - cpu0['server']:.0f} CPU s, browser {cpu1['browser'] - cpu0['browser']:.0f} CPU s",
                          flush=True)
                    dash.setdefault(every, []).append(ips)
                    first_disk.append(disk)
                    first_page.append(shown)
                    print(f"round {r + 1}: redraw {every}, dashboard {ips:8.1f} images/s (first step on disk "
                          f"{disk:.2f} s, on the page {shown:.2f} s after the click)", flush=True)
                    wait_run_state(page)
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
    c = statistics.median(cli)
    print(f"\nResNet-20, shapes, batch 128, {args.steps} steps, {os.cpu_count()} CPU cores, {args.rounds} interleaved rounds")
    print(f"CLI (execute_run, main thread):                       {c:8.1f} images/s (median)")
    for every, ips in dash.items():
        d = statistics.median(ips)
        print(f"dashboard, page redrawing every {every + ' s' if every != 'auto' else 'auto'} (median):"
              f"{d:12.1f} images/s   ratio dashboard / CLI: {d / c:.3f}")
    print(f"first step on disk after Start: median {statistics.median(first_disk):.2f} s; "
          f"first point on the page: median {statistics.median(first_page):.2f} s")


if __name__ == "__main__":
    main()
