"""Downloads from the pages against a loopback server: a community checkpoint picked on the Attribution
page (progress, then maps; offline: one line with the URL and the path), and CIFAR-10 from the Train
page's data set picker."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard import downloads
from dashboard.worker import RunManager
from resnet_core.nets import community
from tests.unit.loopback import dead_url, serve
from tests.unit.test_cifar_download import tiny_archive
from tests.unit.test_community import NAME, _tiny_community_file

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTION = str(ROOT / "pages" / "attribution.py")
TRAIN = str(ROOT / "pages" / "train.py")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RESNET_LAB_DATA", str(tmp_path / "data"))
    body = _tiny_community_file()
    entry = dataclasses.replace(community.CATALOGUE[NAME], file=f"resnet20-{hashlib.sha256(body).hexdigest()[:8]}.th",
                                size_bytes=len(body))
    monkeypatch.setitem(community.CATALOGUE, NAME, entry)
    for key in (downloads.community_job_key(NAME), downloads.CIFAR_KEY):  # the service is process-wide
        downloads.service().drop(key)
    yield entry, body
    RunManager.shared(tmp_path / "runs").shutdown(timeout=60)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 50, 50)).save(buf, format="PNG")
    return buf.getvalue()


def _wait_downloads(timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while any(j.active for j in list(downloads.service()._jobs.values())):
        assert time.time() < deadline, "downloads did not finish"
        time.sleep(0.05)


def _attribution_with(name: str) -> AppTest:
    at = AppTest.from_file(ATTRIBUTION, default_timeout=120).run()
    at.file_uploader(key="attr_uploads").set_value(("photo.png", _png(), "image/png"))
    at.multiselect(key="attr_models").set_value([name])
    at.multiselect(key="attr_methods").set_value(["saliency"])
    return at.run()


def test_attribution_lists_community_checkpoints_and_downloads_the_chosen_one(env, monkeypatch):
    entry, body = env
    with serve({f"/{entry.file}": body}) as url:
        monkeypatch.setenv(community.BASE_URL_ENV, url)
        at = AppTest.from_file(ATTRIBUTION, default_timeout=120).run()
        labels = at.multiselect(key="attr_models").options
        assert f"ResNet-1202 CIFAR-10 community checkpoint · about 79 MB · downloaded on first use" in labels
        assert any(label.startswith("ResNet-20 CIFAR-10 community checkpoint") for label in labels)
        assert not any("shared" in label for label in labels) and "shared" not in at.text_input(key="attr_ckpt_path").label
        at = _attribution_with(NAME)
        assert not at.exception and not at.error, [e.value for e in at.error]
        _wait_downloads()
    assert entry.downloaded
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(label.endswith("· downloaded") for label in at.multiselect(key="attr_models").options)
    assert at.get("download_button")  # the saliency overlay of the downloaded net


def test_attribution_offline_is_one_line_with_url_and_path(env, monkeypatch):
    entry, _ = env
    monkeypatch.setenv(community.BASE_URL_ENV, dead_url())
    at = _attribution_with(NAME)
    _wait_downloads()
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith(f"cannot download {NAME} (offline?")
    assert f"download {entry.url} and place it at {entry.path}" in errors[0]
    assert at.button(key=f"attr_dl_{NAME}_retry")
    assert not entry.path.parent.is_dir() or list(entry.path.parent.iterdir()) == []


def test_train_sidebar_always_lists_cifar10_and_downloads_it(env, monkeypatch, tmp_path):
    body = tiny_archive(tmp_path)
    monkeypatch.setattr("resnet_core.data.cifar.CIFAR10_ARCHIVE_MD5", hashlib.md5(body).hexdigest())
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    picker = at.selectbox(key="data_name")
    assert "CIFAR-10 (not downloaded yet)" in picker.options
    picker.set_value("cifar10").run()
    assert not at.exception
    assert at.button(key="start").disabled  # nothing to train on yet
    with serve({"/c.tgz": body}) as url:
        monkeypatch.setenv("RESNET_LAB_CIFAR10_URL", f"{url}/c.tgz")
        at.button(key="data_cifar_download").click().run()
        _wait_downloads()
    assert (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file()
    at.run()
    assert not at.exception
    assert at.selectbox(key="data_name").value == "cifar10"
    assert f"CIFAR-10 ({tmp_path / 'data'})" in at.selectbox(key="data_name").options
    assert not at.button(key="start").disabled


def test_train_sidebar_cifar10_offline_says_where_to_put_it(env, monkeypatch, tmp_path):
    monkeypatch.setenv("RESNET_LAB_CIFAR10_URL", dead_url())
    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    at.selectbox(key="data_name").set_value("cifar10").run()
    at.button(key="data_cifar_download").click().run()
    _wait_downloads()
    at.run()
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert any(e.startswith("cannot download CIFAR-10 (offline?") and
               str((tmp_path / "data" / "cifar-10-batches-py").resolve()) in e for e in errors), errors


def test_why_page_offers_community_checkpoints_and_downloads_on_request(env, monkeypatch):
    entry, body = env
    page = str(ROOT / "pages" / "why.py")
    monkeypatch.setenv(community.BASE_URL_ENV, dead_url())  # nothing may be fetched without the click
    at = AppTest.from_file(page, default_timeout=120).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    lesion_pick = at.selectbox(key="why_le_model")
    assert lesion_pick.value == NAME  # no stored run: the first community checkpoint
    assert any(o.startswith("ResNet-110 CIFAR-10 community checkpoint · about 7 MB") for o in lesion_pick.options)
    assert downloads.service().job(downloads.community_job_key(NAME)) is None
    assert f"{NAME} is not here yet: download it above." in [i.value for i in at.info]
    with serve({f"/{entry.file}": body}) as url:
        monkeypatch.setenv(community.BASE_URL_ENV, url)
        at.button(key="why_le_dl_start").click().run()
        _wait_downloads()
    assert entry.downloaded
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="why_le_model").options[0].endswith("· downloaded")
    infos = [i.value for i in at.info]
    assert f"{NAME} is not here yet: download it above." not in infos
    # What now holds the lesion study back is the data, not the model: CIFAR-10 is not in the test's data dir.
    assert any(i.startswith("The community checkpoints are CIFAR-10 models") for i in infos)


def _paper_run(runs_dir: Path, depth: int, residual: bool, test_acc: float, steps: int) -> str:
    from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from resnet_core.training.runs import RunStore

    cfg = RunConfig(model=ModelConfig(depth=depth, residual=residual),
                    data=DataConfig(name="cifar10", path="data", download=False), train=TrainConfig(steps=steps))
    writer = RunStore(runs_dir).create(cfg, status="finished")
    writer.set_status("finished", test_acc=test_acc, steps=steps)
    writer.close()
    return writer.run_id


def test_finished_paper_runs_show_the_papers_figure_on_train_and_compare(env, tmp_path):
    runs = tmp_path / "runs"
    resnet = _paper_run(runs, 56, True, 0.91, 2_000)
    plain = _paper_run(runs, 20, False, 0.85, 64_000)
    expected = "9.00% test error; paper: 6.97% (He et al. 2015, Table 6); this run trained 2,000 of the paper's 64,000 steps"

    at = AppTest.from_file(str(ROOT / "pages" / "compare.py"), default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[resnet, "paper's test err (%)"] == 6.97 and table.loc[resnet, "test err (%)"] == 9.0
    assert table.loc[plain, "paper's test err (%)"] != table.loc[plain, "paper's test err (%)"]  # NaN: not stated
    captions = [c.value for c in at.caption]
    assert f"resnet-56 · {resnet}: {expected}" in captions
    assert any(c.startswith(f"plain-20 · {plain}: 15.00% test error; paper: not stated (He et al. 2015, Fig. 6")
               for c in captions)

    at = AppTest.from_file(TRAIN, default_timeout=60).run()
    at.multiselect(key="shown_runs").set_value([resnet]).run()
    assert not at.exception
    assert f"resnet-56: {expected}" in [c.value for c in at.caption]


def test_attribution_shows_download_progress_and_cancel_keeps_nothing(env, monkeypatch):
    import threading

    entry, body = env
    release = threading.Event()
    with serve({f"/{entry.file}": body}, hold={f"/{entry.file}": release}) as url:
        monkeypatch.setenv(community.BASE_URL_ENV, url)
        at = _attribution_with(NAME)
        job = downloads.service().job(downloads.community_job_key(NAME))
        deadline = time.time() + 30
        while job.progress < 0.4:  # half the file is sent, then the server holds the rest back
            assert time.time() < deadline, job
            time.sleep(0.05)
        at.run()  # the page returns while the download is under way
        assert not at.exception and not at.error
        bars = at.get("progress")
        assert bars and "downloading cifar10:resnet20: running" in bars[0].proto.text
        at.button(key=f"attr_dl_{NAME}_cancel").click().run()
        release.set()
        _wait_downloads()
    assert job.state == "cancelled" and not entry.downloaded
    assert not entry.path.parent.is_dir() or list(entry.path.parent.iterdir()) == []
    at.run()
    assert not at.exception and not at.error
    assert at.button(key=f"attr_dl_{NAME}_again")  # it can be started again
