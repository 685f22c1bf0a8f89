"""The Attribution page in real Chromium: upload a PNG through the file input, pick a CIFAR model, see maps."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from tests.conftest import store_tiny_run

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 120_000  # a cold server imports torch and captum on the first visit of the page


def _tiny_run(runs_dir: Path) -> str:
    return store_tiny_run(runs_dir, "e2e-attribution-tiny", "e2e-tiny")


@pytest.fixture
def photo(tmp_path) -> Path:
    p = tmp_path / "e2e_photo.png"
    img = Image.new("RGB", (64, 48), (40, 120, 200))
    img.paste((250, 210, 30), (20, 12, 44, 36))
    img.save(p)
    return p


def _uploader_input(page, label_text: str):
    return (page.locator('[data-testid="stFileUploader"]').filter(has_text=label_text)
            .locator('input[type="file"]'))


def test_upload_png_and_see_saliency(app_server, page, photo):
    """On a model trained here (a stored tiny run), with or without the community weights beside the
    checkout: the page offers stored runs first."""
    _tiny_run(Path(app_server.runs_dir))
    page.goto(app_server.url + "/attribution")
    page.get_by_role("heading", name="Attribution").wait_for(timeout=TIMEOUT_MS)
    _uploader_input(page, "Upload one or more images").set_input_files(str(photo))
    page.get_by_text("e2e_photo.png").first.wait_for(timeout=TIMEOUT_MS)
    # The default methods are Saliency and Grad-CAM; each finished map gets a download button.
    downloads = page.get_by_role("button", name="Download PNG")
    downloads.first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("Saliency ·", exact=False).first.wait_for(timeout=TIMEOUT_MS)
    overlays = page.locator('[data-testid="stImage"] img')
    assert overlays.count() >= 2
    assert page.locator('[data-testid="stException"]').count() == 0


def test_bad_upload_shows_an_error_not_a_traceback(app_server, page, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature and nothing valid after it
    page.goto(app_server.url + "/attribution")
    page.get_by_role("heading", name="Attribution").wait_for(timeout=TIMEOUT_MS)
    _uploader_input(page, "Upload one or more images").set_input_files(str(bad))
    page.get_by_text("broken.png:", exact=False).first.wait_for(timeout=TIMEOUT_MS)
    assert page.locator('[data-testid="stException"]').count() == 0
    # The server is still up: the page still answers.
    page.reload()
    page.get_by_role("heading", name="Attribution").wait_for(timeout=TIMEOUT_MS)
