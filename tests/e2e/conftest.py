"""End-to-end fixtures: a real `streamlit run` server on a free port and Debian's Chromium via Playwright.

Fixtures (other e2e tests use these names): ``browser`` (session), ``page`` (function, screenshot to
test-artifacts/ on failure), ``app_server`` (module: ``.url``, ``.runs_dir``). pytest-playwright's own
browser fixtures are not used: they look for Playwright's bundled browser, which is not installed.

Waiting follows Streamlit's own e2e_playwright conftest: the root element carries
``data-test-connection-state`` and ``data-test-script-state`` (initial -> running -> notRunning), so
"the rerun finished" is a condition to wait for, not a sleep.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MISSING = ("e2e tests skipped: chromium missing: apt-get install -y chromium "
           f"(Playwright drives Debian's {CHROMIUM}, not a downloaded browser)")
_skipped_for_chromium: list[str] = []


@dataclass
class AppServer:
    url: str
    runs_dir: Path
    process: subprocess.Popen
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read().decode().strip() == "ok"
    except OSError:
        return False


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, request) -> AppServer:
    """A server per test module, each with a run store of its own: no test sees another's runs. A module's
    ``SERVER_ENV`` (a dict) adds to the server's environment (a host's settings)."""
    runs_dir = tmp_path_factory.mktemp("e2e") / "runs"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"e2e-streamlit-server-{port}.log"
    # The community checkpoints in ../shared/weights are one of this server's data folders.
    env = {**os.environ, "RESNET_LAB_RUNS": str(runs_dir),
           "RESNET_LAB_DATA_ROOTS": os.pathsep.join(["data", str(runs_dir), str(ROOT.parent / "shared" / "weights")]),
           **getattr(request.module, "SERVER_ENV", {})}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"streamlit did not come up on {url}; see {log}:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    yield AppServer(url, runs_dir, proc, log)
    try:
        os.killpg(proc.pid, signal.SIGTERM)   # the server's own process group (start_new_session)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(MISSING.replace("skipped", "cannot run"))
        warnings.warn(MISSING)
        _skipped_for_chromium.append(MISSING)
        pytest.skip(MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    pg = context.new_page()
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{name}-failure.png"), full_page=True)
        except Exception as e:  # noqa: BLE001 - a failed screenshot must not hide the test failure
            print(f"could not take the failure screenshot: {e}")
    context.close()


def pytest_terminal_summary(terminalreporter):
    if _skipped_for_chromium:
        terminalreporter.write_sep("!", _skipped_for_chromium[0], red=True, bold=True)


# --- helpers the tests share ---------------------------------------------------------------------
def wait_for_app_run(page, initial_wait_ms: int = 210, timeout_ms: int = 60_000) -> None:
    """Until the script (or fragment) rerun after an interaction has finished."""
    page.wait_for_timeout(initial_wait_ms)   # widgets debounce ~200 ms before the rerun starts
    page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for(
        state="attached", timeout=timeout_ms)
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(
        state="attached", timeout=timeout_ms)


def open_app(page, url: str) -> None:
    page.goto(url)
    page.locator("[data-testid='stAppViewContainer']").wait_for(state="attached", timeout=60_000)
    wait_for_app_run(page)


@pytest.fixture(name="wait_for_app_run")
def _wait_for_app_run_fixture():
    """The helper as a fixture: test modules cannot import one another's conftest reliably."""
    return wait_for_app_run


@pytest.fixture(name="open_app")
def _open_app_fixture():
    return open_app
