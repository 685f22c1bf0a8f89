"""A run's end shows on the Train page within a second or so, however rarely its charts redraw: on a
server whose host set the shortest redraw to an hour (RESNET_LAB_REDRAW_S), a Start's charts draw its
first points, then wait; its end still reruns the page (the 1 s status watcher, pages/train.py)."""
from __future__ import annotations

from tests.e2e.test_dashboard_e2e import LOSS_POINTS_JS, set_number

SERVER_ENV = {"RESNET_LAB_REDRAW_S": "3600"}


def test_the_end_of_a_run_shows_long_before_the_next_redraw(app_server, page, open_app, wait_for_app_run):
    open_app(page, app_server.url)
    page.get_by_role("heading", name="Train plain and residual nets").wait_for()
    options = page.locator("[data-testid='stButtonGroup']").filter(has_text="auto (3600 s)")
    options.wait_for()
    assert options.get_by_role("button", name="1 s", exact=True).count() == 0   # below the host's floor

    set_number(page, wait_for_app_run, "Steps", 1000)   # 15-20 s on 2 cores: running when first drawn
    wait_for_app_run(page, initial_wait_ms=1000)
    page.get_by_role("button", name="Start", exact=True).click()
    # Until its first points show, the page looks every second; then at the chosen 3600 s.
    page.wait_for_function(f"({LOSS_POINTS_JS})() >= 1", timeout=90_000)
    progress = page.locator("[data-testid='stProgress']").first
    assert "running" in progress.inner_text(), "the run ended before the page drew it running: make it longer"
    # The end shows without a redraw of the charts, long before the next one (the timeout only allows
    # for a slow, busy machine).
    page.locator("[data-testid='stProgress']").filter(has_text="finished").wait_for(timeout=600_000)
    assert "step 1000/1000" in page.locator("[data-testid='stProgress']").first.inner_text()
