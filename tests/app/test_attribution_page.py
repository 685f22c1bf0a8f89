"""AppTest smoke tests of pages/attribution.py: uploads through ``file_uploader``, maps, errors, checks."""
from __future__ import annotations

import hashlib
import io
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest
from tests.conftest import store_tiny_run

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "attribution.py")
RESNET20 = ROOT.parent / "shared" / "weights" / "resnet20-12fca82f.th"


def _png(color=(200, 50, 50), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, color)
    img.paste((20, 200, 240), (10, 8, 24, 20))
    img.save(buf, format="PNG")
    return buf.getvalue()


def _elements(node, kind: str) -> list:
    """Every element of a type (class name) in an AppTest tree, depth first."""
    found = [node] if type(node).__name__ == kind else []
    for child in getattr(node, "children", {}).values():
        found += _elements(child, kind)
    return found


def _store_tiny_run(runs_dir: Path) -> str:
    return store_tiny_run(runs_dir, "tiny-run", "tiny")


def _wait_idle(timeout=120.0):
    from dashboard.attribution_service import get_service
    service = get_service()
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = list(service._jobs.values())
        if not any(j.active for j in jobs):
            return
        time.sleep(0.1)
    raise AssertionError("attribution jobs did not finish")


def test_renders_empty(runs_dir):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("Upload an image" in i.value for i in at.info)


def test_bad_upload_is_an_error_and_the_page_lives_on(runs_dir):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.file_uploader(key="attr_uploads").set_value([("broken.jpg", b"not a jpeg at all", "image/jpeg"),
                                                   ("empty.png", b"", "image/png")]).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert "broken.jpg: not an image, or not a supported format: use PNG, JPEG, WebP, BMP, GIF or TIFF" in errors
    assert any(e.startswith("empty.png: the file is empty") for e in errors)
    assert at.radio(key="attr_source").value == "Upload"


@pytest.mark.skipif(not RESNET20.is_file(), reason=(
    "pins the community ResNet-20 checkpoint through the page's path box, kept in ../shared/weights beside "
    "the checkout for the team's tests only; absent here"))
def test_upload_with_community_checkpoint_shows_maps(runs_dir, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_DATA_ROOTS", str(RESNET20.parent))  # the server's data folders allow it
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.file_uploader(key="attr_uploads").set_value(("photo.png", _png(), "image/png"))
    at.text_input(key="attr_ckpt_path").set_value(str(RESNET20))
    at.run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.multiselect(key="attr_models").value == [f"ckpt:{RESNET20}"]
    downloads = _elements(at.main, "DownloadButton")
    assert len(downloads) == 2  # saliency and Grad-CAM, the default methods
    assert len(_elements(at.main, "Image")) >= 3  # the upload and two overlays
    target = at.selectbox(key=f"target_upload:{hashlib.sha256(_png()).hexdigest()[:16]}_ckpt:{RESNET20}")
    assert len(target.options) == 10


def test_shapes_samples_run_model_and_checks(runs_dir):
    run_id = _store_tiny_run(runs_dir)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.radio(key="attr_source").set_value("Shapes test set").run()
    assert at.multiselect(key="attr_models").value == [f"run:{run_id}"]
    at.multiselect(key="attr_samples").set_value([3])
    at.multiselect(key="attr_methods").set_value(["saliency"])
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(_elements(at.main, "Image")) == 3  # the sample, its ground-truth mask and one overlay
    assert len(_elements(at.main, "DownloadButton")) == 1

    at.button(key="attr_run_rand").click().run()
    at.slider(key="attr_point_n").set_value(8)
    at.button(key="attr_run_point").click().run()
    _wait_idle()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    tables = [df.value for df in at.dataframe]
    rand = [t for t in tables if "rank correlation" in t.columns]
    point = [t for t in tables if "pointing game" in t.columns]
    assert len(rand) == 1 and -1 <= rand[0]["rank correlation"].iloc[0] <= 1
    assert len(point) == 1 and 0 <= point[0]["pointing game"].iloc[0] <= 1
    assert point[0]["images"].iloc[0] == 8


def test_worker_cancel_failure_and_cache():
    """The page's worker: Cancel stops a job between chunks, a failing job leaves one line and the
    worker alive, a finished result is served from the cache without recomputation."""
    from dashboard.attribution_service import AttributionService
    from resnet_core.attribution import Cancelled

    svc = AttributionService(max_results=2)
    started = threading.Event()

    def slow(progress, cancel):
        started.set()
        for i in range(500):
            if cancel.is_set():
                raise Cancelled("cancelled")
            progress(i / 500)
            time.sleep(0.01)
        return "finished"

    job = svc.submit("slow", "slow job", slow)
    assert started.wait(10)
    svc.cancel(["slow"])
    svc.wait(["slow"], 10)
    assert job.state == "cancelled" and svc.result("slow") is None

    bad = svc.submit("bad", "bad job", lambda progress, cancel: 1 / 0)
    svc.wait(["bad"], 10)
    assert bad.state == "failed" and bad.error.startswith("unexpected ZeroDivisionError")

    calls = []
    svc.submit("ok", "ok job", lambda progress, cancel: calls.append(1) or 42)
    svc.wait(["ok"], 10)
    assert svc.result("ok") == 42
    assert svc.submit("ok", "ok job", lambda progress, cancel: calls.append(1) or 43).state == "done"
    svc.wait(["ok"], 10)
    assert svc.result("ok") == 42 and calls == [1]
    for k in ("x", "y"):  # the LRU keeps at most two results
        svc.submit(k, k, lambda progress, cancel, k=k: k)
        svc.wait([k], 10)
    assert svc.result("ok") is None and svc.result("y") == "y"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_uploaded_code_carrying_checkpoint_refused(runs_dir, tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"state_dict": _Evil(str(marker))}, buf)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.file_uploader(key="attr_uploads").set_value(("photo.png", _png(), "image/png"))
    at.file_uploader(key="attr_ckpt_upload").set_value(("evil.th", buf.getvalue(), "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("evil.th" in e.value and "refused" in e.value for e in at.error), [e.value for e in at.error]
    assert not marker.exists()
