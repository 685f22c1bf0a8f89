"""The navigation entry point renders and lists its pages."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def test_app_renders_the_train_page_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Train plain and residual nets"
    assert at.button(key="start")
