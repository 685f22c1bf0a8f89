"""Item 1: closed by default, a token to share. A browser without the token sees a sign-in field and
nothing else; `make run` binds 127.0.0.1; a network address needs (or generates) a token."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest


ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
TOKEN = "correct-horse-battery-staple-42"


@pytest.fixture
def shared(monkeypatch, tmp_path):
    monkeypatch.setenv("RESNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("RESNET_LAB_TOKEN", TOKEN)


def _nothing_but_sign_in(at: AppTest) -> None:
    assert not at.exception
    assert [t.value for t in at.title] == ["ResNet Lab"]
    assert [w.label for w in at.text_input] == ["Access token"]
    assert len(at.sidebar) == 0 and not at.selectbox and not at.multiselect and not at.number_input
    assert {b.key for b in at.button} <= {"FormSubmitter:sign_in-Sign in"}


def test_without_the_token_a_browser_sees_only_the_sign_in_field(shared):
    at = AppTest.from_file(APP, default_timeout=60).run()
    _nothing_but_sign_in(at)
    at.text_input(key="access_token").input("guess").run()
    at.button[0].click().run()
    _nothing_but_sign_in(at)
    assert any("not the token" in e.value for e in at.error)


def test_the_right_token_opens_the_dashboard(shared):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="access_token").input(TOKEN)
    at.button[0].click().run()
    assert not at.exception
    assert at.title[0].value == "Train plain and residual nets" and at.button(key="start")


def test_a_token_in_the_url_signs_in_like_jupyter_and_a_wrong_one_does_not(shared):
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["token"] = TOKEN
    at.run()
    assert not at.exception and at.button(key="start")
    wrong = AppTest.from_file(APP, default_timeout=60)
    wrong.query_params["token"] = TOKEN + "x"
    wrong.run()
    _nothing_but_sign_in(wrong)


def test_a_server_open_to_the_network_without_a_token_shows_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("RESNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("RESNET_LAB_TOKEN", raising=False)
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
    finally:
        st_config.set_option("server.address", before)
    assert not at.exception
    assert any("without a token" in e.value for e in at.error)
    assert not at.text_input and len(at.sidebar) == 0 and not at.button


def test_make_run_binds_localhost_and_keeps_xsrf_protection():
    from dashboard import serve

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["enableXsrfProtection"] is True
    assert "dashboard/serve.py" in (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n")[0]
    address, token, lines = serve.settings({}, 8600)
    assert address == "127.0.0.1" and token is None and "http://127.0.0.1:8600" in lines[0]


def test_serving_to_the_network_requires_a_token_generated_when_missing():
    from dashboard import serve

    address, token, lines = serve.settings({"RESNET_LAB_ADDRESS": "0.0.0.0"}, 8600)
    assert address == "0.0.0.0" and token and len(token) >= 24
    assert any(f"?token={token}" in line for line in lines)
    address, token, _ = serve.settings({"RESNET_LAB_ADDRESS": "0.0.0.0", "RESNET_LAB_TOKEN": TOKEN}, 8600)
    assert token == TOKEN
    with pytest.raises(serve.ServeError, match="too short"):
        serve.settings({"RESNET_LAB_ADDRESS": "0.0.0.0", "RESNET_LAB_TOKEN": "1234"}, 8600)
