"""Every page answers at its own URL, as a link or a bookmark would open it (the default page too)."""
from __future__ import annotations

import pytest

TITLES = {"": "Train plain and residual nets", "/train": "Train plain and residual nets",
          "/compare": "Compare runs", "/why": "Why it works", "/attribution": "Attribution"}


@pytest.mark.parametrize("path", list(TITLES))
def test_each_page_opens_at_its_url(app_server, page, path, wait_for_app_run):
    page.goto(app_server.url + path)
    page.get_by_role("heading", name=TITLES[path]).wait_for(timeout=120_000)
    wait_for_app_run(page)
    assert page.get_by_text("Page not found").count() == 0
    assert page.locator('[data-testid="stException"]').count() == 0
