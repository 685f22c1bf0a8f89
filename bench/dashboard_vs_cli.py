"""The dashboard against the CLI, in one run on one machine: the default Start and the Degradation
preset (or any quick presets: ``--presets``), each once through the dashboard (a real `streamlit run` server, a real Chromium page watching
the Train page at the default redraw, the buttons clicked) and once through the CLI
(`python -m resnet_core train --config` / `reproduce <preset> --parallel 2`), with the page's estimate
beside each measured time.

Prints the machine (CPU model, cores, sgemm GFLOP/s on all cores), then per case: wall seconds
dashboard and CLI and their ratio, the page's estimate, and for the Start: seconds from the click to
the first point on disk and to the first test evaluation at >= 80% accuracy; for the preset: its
verdict. ``--starts N`` clicks Start N times on the same page, one after the other: the first on a
server that has just started, the later ones on a warm training process and with the estimate corrected
by the runs finished before (``resnet_core/history.py``). The bench keeps this machine's calibration
(``--calibrate``: measures it anew first, as on a fresh machine) and process-start time but starts from
an empty run history (a copy of the cache in its own folder). Not a test: it asserts nothing.

    python bench/dashboard_vs_cli.py [--skip-preset | --presets fig6,options] [--starts 2] [--read-s 2] [--calibrate]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resnet_core.experiments import costmodel  # noqa: E402
from resnet_core.config import RunConfig  # noqa: E402
from resnet_core.experiments.costmodel import estimate_seconds  # noqa: E402
from resnet_core.experiments.presets import PRESETS, preset_configs, verdict
from resnet_core.experiments.scales import scale_config
from resnet_core.experiments.verdicts import run_summary  # noqa: E402
from resnet_core.training.runs import RunStore  # noqa: E402
from fresh_history import use_fresh_history  # noqa: E402 - bench/, beside this script

CHROMIUM = "/usr/bin/chromium"


def sgemm_gflops() -> float:
    import torch

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    return 2 * n**3 * 10 / (time.perf_counter() - t) / 1e9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, period=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(period)
    return None


_tails: dict = {}


def first_record(store: RunStore, run_id: str, pred) -> bool:
    """Whether a record matching ``pred`` was written; reads only what was appended since the last
    call (a full parse of the growing metrics file ten times a second would take CPU from the run)."""
    path = store.root / run_id / "metrics.jsonl"
    offset, seen = _tails.get(path, (0, []))
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return False
    end = chunk.rfind(b"\n") + 1
    for line in chunk[:end].splitlines():
        if b'"type": "step"' in line[:40] and any(r.get("type") == "step" for r in seen[-50:]):
            continue   # a step after the first needs no parse
        try:
            seen.append(json.loads(line))
        except ValueError:
            pass
    _tails[path] = (offset + end, seen)
    return any(pred(r) for r in seen)


def cli_start(cfg_json: Path, runs: Path, env: dict) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "resnet_core", "train", "--config", str(cfg_json), "--runs-dir",
                          str(runs), "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"CLI train failed: {out.stderr[-2000:]}")
    store = RunStore(runs)
    (info,) = store.list()
    records = store.read_metrics(info.run_id)
    t_of_step = {r["step"]: r.get("t") for r in records if r["type"] == "step"}
    first80 = next((r["step"] for r in records if r["type"] == "eval" and r.get("test_acc", 0) >= 0.8), None)
    return {"wall_s": wall, "train_s": info.summary.get("seconds"), "test_acc": info.summary.get("test_acc"),
            "first_80_t": t_of_step.get(first80)}


def cli_preset(runs: Path, env: dict, key: str) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "resnet_core", "reproduce", key, "--scale", "quick", "--parallel",
                          "2", "--runs-dir", str(runs), "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"CLI reproduce failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "verdict": result["verdict"]["line"], "holds": result["verdict"]["holds"]}


def dash_preset(page, store: RunStore, key: str, read_s: float) -> dict:
    """Reads the preset's estimate on the page, clicks it and follows its runs to their end."""
    # read as a person would, once the page has redrawn after the last run's end (the estimate drawn
    # while that run trained counts it as a run ahead)
    page.wait_for_timeout(1000 * read_s)
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(state="attached",
                                                                                        timeout=60_000)
    title = PRESETS[key].title
    button = page.get_by_role("button", name=title, exact=True)
    if not button.is_visible():
        page.get_by_role("button", name="Experiments from the papers").click()
    button.wait_for(timeout=30_000)
    shown = re.search(re.escape(title) + r".{0,40}?\d+ runs \(.*?\), estimated about ([\d.]+) (s|min)\.",
                      page.inner_text("body"), re.S)
    d = {"page_estimate_s": float(shown.group(1)) * (60 if shown.group(2) == "min" else 1) if shown else None}
    n = len(preset_configs(key, "quick", device="cpu"))
    before = {i.run_id for i in store.list()}
    t0 = time.perf_counter()
    button.click()
    wait_until(lambda: len([i for i in store.list() if i.run_id not in before]) == n, 60)
    ids = [i.run_id for i in store.list() if i.run_id not in before]
    wait_until(lambda: all(store.get(r).status not in ("queued", "running") for r in ids), 1800, 0.2)
    d["wall_s"] = time.perf_counter() - t0
    summaries = [run_summary(RunConfig.from_dict(store.get(r).config), store.read_metrics(r)) for r in ids]
    v = verdict(key, summaries)
    d["verdict"], d["holds"] = v["line"], v["holds"]
    return d


def one_start(page, store: RunStore) -> dict:
    """Clicks Start and follows the run to its end: what the page said, first point, >= 80%, the end."""
    d = {}
    shown = re.search(r"Start \([^)]*\) estimated about ([\d.]+) (s|min)", page.inner_text("body"))
    d["page_estimate_s"] = (float(shown.group(1)) * (60 if shown.group(2) == "min" else 1)
                            if shown else None)   # what the page says, a training process's start included
    before = {i.run_id for i in store.list()}
    t0, wall0 = time.perf_counter(), time.time()
    page.get_by_role("button", name="Start", exact=True).click()
    run_id = wait_until(lambda: next((i.run_id for i in store.list() if i.run_id not in before), None), 60)
    wait_until(lambda: first_record(store, run_id, lambda r: r["type"] == "step"), 120, 0.05)
    d["first_point_s"] = time.perf_counter() - t0
    d["created_s"] = store.get(run_id).created - wall0   # the click's way through the page to the run manager

    def reached_80():
        return first_record(store, run_id, lambda r: r["type"] == "eval" and r.get("test_acc", 0) >= 0.8)

    t80 = wait_until(lambda: reached_80() or store.get(run_id).status not in ("queued", "running"), 600, 0.25)
    d["first_80_s"] = time.perf_counter() - t0 if t80 and reached_80() else None
    wait_until(lambda: store.get(run_id).status not in ("queued", "running"), 900, 0.25)
    d["start_wall_s"] = time.perf_counter() - t0
    info = store.get(run_id)
    d["start_status"], d["start_test_acc"] = info.status, info.summary.get("test_acc")
    d["train_s"] = info.summary.get("seconds")   # the run's own clock: its first step to its end
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-preset", action="store_true", help="only the default Start")
    ap.add_argument("--presets", default="fig6",
                    help="comma-separated quick presets to click after the Starts, each then run by the CLI "
                         f"too (of {', '.join(PRESETS)})")
    ap.add_argument("--read-s", type=float, default=2.0,
                    help="seconds between the page being shown and the click on Start (a person reading it)")
    ap.add_argument("--starts", type=int, default=2,
                    help="Starts clicked one after the other on the same page (0: the preset on a fresh server)")
    ap.add_argument("--calibrate", action="store_true",
                    help="time this machine's training steps anew first, as a fresh machine's server does at its "
                         "start (else the cached calibration, which may be days old, is used)")
    a = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    work = Path(tempfile.mkdtemp(prefix="dash-vs-cli-"))
    # this machine's calibration (or a new one) and process start, no history of finished runs
    use_fresh_history(work, calibration=not a.calibrate)
    cal = costmodel.load_calibration("cpu")
    if cal is None:   # as the server does on a fresh machine: the CLI's calibration, in a process of its own
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "resnet_core", "estimate", "--calibrate", "--device", "cpu"], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, check=True)
        cal = costmodel.load_calibration("cpu")
        print(f"calibrated this machine in {time.perf_counter() - t0:.1f} s (cached in {costmodel.cache_path('cpu')})")
    gflops = sgemm_gflops()
    print(f"machine: {costmodel._cpu_model()}, {os.cpu_count()} cores, sgemm {gflops:.0f} GFLOP/s on "
          f"{os.cpu_count()} threads, torch {cal.machine['torch']}")
    print(f"estimates: {cal.basis}")

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(ROOT)
    start_cfg = scale_config("quick", device="cpu")
    cfg_json = work / "start.json"
    cfg_json.write_text(start_cfg.to_json())
    est_start = estimate_seconds([start_cfg], "cpu")
    presets = [] if a.skip_preset else [k.strip() for k in a.presets.split(",") if k.strip()]
    unknown = [k for k in presets if k not in PRESETS]
    if unknown:
        raise SystemExit(f"unknown preset(s) {', '.join(unknown)}; use {', '.join(PRESETS)}")
    core_estimate = {k: estimate_seconds(preset_configs(k, "quick", device="cpu"), "cpu", parallel=2) for k in presets}

    # --- dashboard ---------------------------------------------------------------------------------
    runs = work / "dash-runs"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                               "--server.address", "127.0.0.1", "--server.headless", "true",
                               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                              cwd=ROOT, env={**env, "RESNET_LAB_RUNS": str(runs), "RESNET_LAB_CALIBRATE": "0"},
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    dash = {}
    try:
        def healthy():
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    return r.read().decode().strip() == "ok"
            except OSError:
                return False
        if not wait_until(healthy, 90, 0.2):
            raise SystemExit("the dashboard did not come up")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t_open = time.perf_counter()
            page.goto(url + "/train")
            page.get_by_role("heading", name="Train plain and residual nets").wait_for(timeout=120_000)
            page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(
                state="attached", timeout=120_000)
            dash["page_shown_s"] = time.perf_counter() - t_open
            store = RunStore(runs)
            dash["starts"] = []
            for k in range(a.starts):
                page.wait_for_timeout(1000 * a.read_s)   # a person reads the page for a moment before clicking
                dash["starts"].append(one_start(page, store))
            dash["presets"] = {key: dash_preset(page, store, key, a.read_s) for key in presets}
            browser.close()
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)

    # --- CLI ---------------------------------------------------------------------------------------
    cli = cli_start(cfg_json, work / "cli-start", env)
    print(f"default Start ({start_cfg.label}, {start_cfg.train.steps} steps), page shown {dash['page_shown_s']:.1f} s "
          f"after opening:")
    print(f"  CLI:       {cli['wall_s']:.1f} s process wall (training {cli['train_s']:.1f} s, test accuracy "
          f"{cli['test_acc']:.3f}); >= 80% at {'%.1f s' % cli['first_80_t'] if cli['first_80_t'] else 'never'} of training")
    for k, d in enumerate(dash["starts"], 1):
        said = d["page_estimate_s"]
        print(f"  dashboard, Start {k}: {d['start_wall_s']:.1f} s click to finished ({d['start_status']}, training "
              f"{d['train_s'] or 0:.1f} s, test accuracy "
              f"{d['start_test_acc']:.3f}); run created {d['created_s']:.2f} s and its first point on disk "
              f"{d['first_point_s']:.2f} s after the click; >= 80% test accuracy at "
              f"{'%.1f s' % d['first_80_s'] if d['first_80_s'] else 'never'}; ratio to the CLI "
              f"{d['start_wall_s'] / cli['wall_s']:.2f}; the page said "
              + (f"{said:.0f} s ({100 * (said / d['start_wall_s'] - 1):+.0f}%)" if said is not None else "nothing"))
    if dash["starts"]:
        print(f"  the core's first estimate {est_start:.0f} s, without a training process's start "
              f"({100 * (est_start / dash['starts'][0]['start_wall_s'] - 1):+.0f}% against Start 1)")
    for key, d in dash["presets"].items():
        clip = cli_preset(work / f"cli-{key}", env, key)
        print(f"{PRESETS[key].title}, quick, 2 at once:")
        print(f"  dashboard: {d['wall_s']:.1f} s; verdict {'holds' if d['holds'] else 'FAILS'}: {d['verdict']}")
        print(f"  CLI:       {clip['wall_s']:.1f} s; verdict {'holds' if clip['holds'] else 'FAILS'}: {clip['verdict']}")
        est = core_estimate[key]
        print(f"  ratio dashboard / CLI: {d['wall_s'] / clip['wall_s']:.2f}; the core's estimate before any "
              f"run {est:.0f} s ({100 * (est / d['wall_s'] - 1):+.0f}% against the dashboard)")
        said = d["page_estimate_s"]
        print("  the page said " + (f"{said:.0f} s ({100 * (said / d['wall_s'] - 1):+.0f}% against the dashboard)"
                                    if said is not None else "nothing it could read"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
