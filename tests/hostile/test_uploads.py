"""Item 6: uploads bounded: files per session, decoded pixels (width x height, not file size), and the
decoded cache in bytes."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard import attribution_service as view
from resnet_core.data.images import ImageError, load_image

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "pages" / "attribution.py")


def png(w: int, h: int, color=(200, 50, 50)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_a_small_file_of_many_pixels_is_refused_by_its_pixels_not_its_size():
    data = png(6300, 6300)  # about 40 MP in 100-odd KB: it passed the CLI's 40 MP cap
    assert len(data) < 200_000
    with pytest.raises(ImageError, match="12 MP"):
        view.decode_upload(data)
    assert load_image(png(100, 100)).size == (100, 100)


def test_the_decoded_cache_is_bounded_in_bytes():
    cache = view.DecodedCache(max_bytes=3 * 100 * 100 * 3)
    for i in range(10):
        cache.get(f"k{i}", lambda i=i: Image.new("RGB", (100, 100), (i, i, i)))
        assert cache.bytes <= cache.max_bytes
    assert cache.bytes == 3 * 100 * 100 * 3
    # the most recently used are the ones kept
    made = []
    cache.get("k9", lambda: made.append(1) or Image.new("RGB", (100, 100)))
    assert not made
    assert view.decoded_cache().max_bytes <= 512 * 2**20


def test_the_number_of_uploads_per_session_is_capped(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_RUNS", str(tmp_path / "runs"))
    rng = np.random.default_rng(0)
    files = [(f"img{i}.png", png(16, 16, tuple(int(v) for v in rng.integers(0, 256, 3))), "image/png")
             for i in range(view.MAX_UPLOADS + 3)]
    decoded = []
    real = view.decode_upload
    monkeypatch.setattr(view, "decode_upload", lambda data: decoded.append(len(data)) or real(data))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.file_uploader(key="attr_uploads").set_value(files).run()
    assert not at.exception
    assert any(f"at most {view.MAX_UPLOADS}" in e.value for e in at.error)
    assert len(decoded) == view.MAX_UPLOADS  # the rest are never decoded


def test_the_pixels_of_a_session_are_capped(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(view, "SESSION_MAX_PIXELS", 3 * 200 * 200)
    files = [(f"img{i}.png", png(200, 200, (i, 0, 0)), "image/png") for i in range(5)]
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.file_uploader(key="attr_uploads").set_value(files).run()
    assert not at.exception
    assert any("img3.png" in e.value and "together" in e.value for e in at.error)
