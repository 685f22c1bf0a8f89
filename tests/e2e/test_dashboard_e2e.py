"""A user's path through the dashboard in real Chromium: start a tiny run, watch the charts gain
points, stop it, find it on Compare and export its metrics as CSV."""
from __future__ import annotations

import csv
import io
import re

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

LOSS_POINTS_JS = """() => {
  // Streamlit wraps the title in <b>; the chart may be present twice while a fragment re-renders.
  const plots = [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
    .filter(p => p.layout && p.layout.title && /^(<b>)*Loss(<\\/b>)*$/.test(p.layout.title.text));
  // _fullData: plotly.py sends arrays base64-encoded; plotly.js decodes them there, not in .data
  return Math.max(0, ...plots.map(p => p._fullData && p._fullData[0] ? p._fullData[0].x.length : 0));
}"""


def set_number(page, wait_for_app_run, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_for_app_run(page)


def choose(page, wait_for_app_run, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app_run(page)


def progress_step(page) -> int:
    text = page.locator("[data-testid='stProgress']").first.inner_text()
    m = re.search(r"step (\d+)/", text)
    return int(m.group(1)) if m else 0


def test_train_watch_stop_compare_export(app_server, page, open_app, wait_for_app_run):
    open_app(page, app_server.url)
    page.get_by_role("heading", name="Train plain and residual nets").wait_for()

    choose(page, wait_for_app_run, "Depth (weight layers)", "8")
    set_number(page, wait_for_app_run, "Training images", 512)
    set_number(page, wait_for_app_run, "Test images", 128)
    set_number(page, wait_for_app_run, "Steps", 5000)
    # The last edit's rerun may not have begun within wait_for_app_run's first 210 ms on a busy machine;
    # Start must not be clicked with the settings of the rerun before it (the default run is 300 steps,
    # done in seconds, and there would be nothing left to stop).
    wait_for_app_run(page, initial_wait_ms=1000)

    page.get_by_role("button", name="Start", exact=True).click()
    page.locator("[data-testid='stProgress']").filter(has_text="/5000").first.wait_for(timeout=60_000)
    # The progress bar appears, then the loss chart gains points while the page polls (once a second).
    page.locator("[data-testid='stProgress']").first.wait_for(timeout=60_000)
    page.wait_for_function(f"({LOSS_POINTS_JS})() >= 2", timeout=90_000)
    first = page.evaluate(LOSS_POINTS_JS)
    page.wait_for_function(f"({LOSS_POINTS_JS})() > {first}", timeout=90_000)
    assert progress_step(page) > 0
    page.screenshot(path=str(ARTIFACTS / "e2e-train-live.png"), full_page=True)

    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop", exact=True).click()
    page.locator("[data-testid='stProgress']").filter(has_text="stopped").wait_for(timeout=60_000)
    (run_dir,) = [p for p in app_server.runs_dir.iterdir() if p.is_dir()]
    assert '"status": "stopped"' in (run_dir / "status.json").read_text()
    stopped_at = progress_step(page)
    assert 0 < stopped_at < 5000

    page.get_by_role("link", name="Compare").click()
    page.get_by_role("heading", name="Compare runs").wait_for()
    wait_for_app_run(page)
    page.locator("[data-testid='stMultiSelect']").filter(has_text="resnet-8").wait_for()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .js-plotly-plot').length >= 5")
    page.screenshot(path=str(ARTIFACTS / "e2e-compare.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download metrics (CSV)").click()
    text = open(download.value.path(), encoding="utf-8").read()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and set(rows[0]) == {"run_id", "label", "step", "metric", "value"}
    assert {r["run_id"] for r in rows} == {run_dir.name}
    assert max(int(r["step"]) for r in rows if r["metric"] == "train_loss") >= stopped_at - 1
