"""Community CIFAR-10 checkpoints by name: the download (progress, sha256 prefix, cache location, the
offline message, nothing half-written left behind) against a loopback server, and the front ends
(evaluate, analyze, attribute) that take the names."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import pytest
import torch

from resnet_core.nets import community
from resnet_core.cli.main import main
from resnet_core.config import ModelConfig
from resnet_core.nets.models import build_model
from tests.conftest import WEIGHTS, write_cifar_dir
from tests.unit.loopback import dead_url, serve

NAME = "cifar10:resnet20"


def _tiny_community_file() -> bytes:
    """A ResNet-8 in akamaster's layout (DataParallel's ``module.`` prefix, ``best_prec1``)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=8))
    buf = io.BytesIO()
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "best_prec1": 90.0}, buf)
    return buf.getvalue()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch hub's cache in tmp_path, and cifar10:resnet20 renamed to a tiny file's real sha256 prefix."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    body = _tiny_community_file()
    name = f"resnet20-{hashlib.sha256(body).hexdigest()[:8]}.th"
    entry = dataclasses.replace(community.CATALOGUE[NAME], file=name, size_bytes=len(body))
    monkeypatch.setitem(community.CATALOGUE, NAME, entry)
    return entry, body


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_download_goes_to_torch_hub_cache_with_progress(hub, monkeypatch):
    entry, body = hub
    calls = []
    with serve({f"/weights/{entry.file}": body}) as url:
        monkeypatch.setenv(community.BASE_URL_ENV, url + "/weights/")
        assert entry.url == f"{url}/weights/{entry.file}"
        assert not entry.downloaded
        path = community.ensure(NAME, progress=lambda done, total: calls.append((done, total)))
    assert path == Path(torch.hub.get_dir()) / "checkpoints" / entry.file
    assert path.read_bytes() == body and entry.downloaded
    assert _leftovers(path.parent) == [entry.file]               # no temporary file beside it
    assert calls[0] == (0, len(body)) and calls[-1] == (len(body), len(body))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)  # monotonic
    # Cached: the next use reads the file without any server.
    monkeypatch.setenv(community.BASE_URL_ENV, dead_url())
    loaded = community.load(NAME)
    assert loaded.model_cfg == ModelConfig(depth=8)
    assert loaded.meta["published_test_error"] == 8.27 and loaded.meta["paper_test_error"] == 8.75
    assert NAME in loaded.source


def test_corrupt_download_is_refused_and_removed(hub, monkeypatch):
    entry, body = hub
    corrupt = body[:-100] + bytes(100)
    with serve({f"/{entry.file}": corrupt}) as url:
        monkeypatch.setenv(community.BASE_URL_ENV, url)
        with pytest.raises(community.CommunityError) as err:
            community.ensure(NAME)
    text = str(err.value)
    assert "corrupt" in text and entry.sha256_prefix in text
    assert f"{url}/{entry.file}" in text and str(entry.path) in text and "\n" not in text
    assert _leftovers(entry.path.parent) == []


def test_truncated_download_is_refused_and_removed(hub, monkeypatch):
    entry, body = hub
    with serve({f"/{entry.file}": body}, truncate={f"/{entry.file}": 1000}) as url:
        monkeypatch.setenv(community.BASE_URL_ENV, url)
        with pytest.raises(community.CommunityError, match="1,000 of"):
            community.ensure(NAME)
    assert _leftovers(entry.path.parent) == []


def test_offline_names_the_url_and_the_exact_path(hub, monkeypatch):
    entry, _ = hub
    monkeypatch.setenv(community.BASE_URL_ENV, dead_url())
    with pytest.raises(community.CommunityError) as err:
        community.ensure(NAME)
    text = str(err.value)
    assert text.startswith(f"cannot download {NAME} (offline?")
    assert f"download {entry.url} and place it at {entry.path}" in text
    assert _leftovers(entry.path.parent) == []


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(community.CommunityError, match="cifar10:resnet1202"):
        community.get("cifar10:resnet21")


def test_catalogue_names_urls_and_hash_prefixes(monkeypatch):
    monkeypatch.delenv(community.BASE_URL_ENV, raising=False)
    assert community.NAMES == [f"cifar10:resnet{d}" for d in (20, 32, 44, 56, 110, 1202)]
    for c in community.CATALOGUE.values():
        assert c.file == f"resnet{c.depth}-{c.sha256_prefix}.th" and len(c.sha256_prefix) == 8
        assert c.url == f"{community.DEFAULT_BASE_URL}/{c.file}"
        if c.depth <= 110:  # ResNet-1202 takes seconds to build: its count is checked by test_published
            assert c.params == sum(p.numel() for p in build_model(ModelConfig(depth=c.depth)).parameters())
    assert community.CATALOGUE["cifar10:resnet1202"].size_text() == "about 79 MB"
    assert community.CATALOGUE["cifar10:resnet20"].size_text() == "1.1 MB"


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_catalogue_matches_the_real_files_when_at_hand(depth):
    hits = sorted(WEIGHTS.glob(f"resnet{depth}-*.th")) if WEIGHTS.is_dir() else []
    if not hits:
        pytest.skip("the reference checkpoints are not on this machine")
    c = community.CATALOGUE[f"cifar10:resnet{depth}"]
    assert hits[0].name == c.file and hits[0].stat().st_size == c.size_bytes and c.size_measured
    assert hashlib.sha256(hits[0].read_bytes()).hexdigest().startswith(c.sha256_prefix)


# --- front ends -----------------------------------------------------------------------------------------

def test_evaluate_by_name_downloads_then_reports(hub, monkeypatch, tmp_path, capsys):
    entry, body = hub
    write_cifar_dir(tmp_path / "data")
    with serve({f"/{entry.file}": body}) as url:
        monkeypatch.setenv(community.BASE_URL_ENV, url)
        rc = main(["evaluate", "--checkpoint", NAME, "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                   "--no-download", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert NAME in result["checkpoint"] and result["images"] == 20
    assert entry.path.is_file()
    # 20 images are not the test set the published figures were measured on: said, not compared.
    assert "are for CIFAR-10's 10,000 test images" in err and "published 8.27%" in err


def test_evaluate_offline_is_one_line_with_url_and_path(hub, monkeypatch, capsys):
    entry, _ = hub
    monkeypatch.setenv(community.BASE_URL_ENV, dead_url())
    assert main(["evaluate", "--checkpoint", NAME, "--dataset", "synthetic", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cannot download cifar10:resnet20")
    assert str(entry.path) in err[-1] and entry.url in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_published_errors_beside_a_full_test_set_measurement(hub, monkeypatch):
    from resnet_core.config import DataConfig
    from resnet_core.training.evaluate import published_errors, reference_line

    entry, body = hub
    with serve({f"/{entry.file}": body}) as url:
        monkeypatch.setenv(community.BASE_URL_ENV, url)
        loaded = community.load(NAME)
    cifar = DataConfig(name="cifar10", path="data")
    assert published_errors(loaded, cifar, 10_000) == {"published_test_error": 8.27, "paper_test_error": 8.75}
    assert published_errors(loaded, cifar, 500) == {}
    assert published_errors(loaded, DataConfig(name="synthetic"), 10_000) == {}
    out = {"accuracy": 0.9169, "images": 10_000, "dataset": "cifar10", **published_errors(loaded, cifar, 10_000)}
    line = reference_line(loaded, out)
    assert line.startswith(f"{NAME}: measured 8.31% test error on 10,000 cifar10 images")
    assert line.endswith("published 8.27% (akamaster's README); paper 8.75% (He et al. 2015, Table 6)")


def test_attribute_and_analyze_take_the_names(hub, monkeypatch):
    from resnet_core.analysis import ModelSource
    from resnet_core.cli.analyze import _source
    from resnet_core.attribution import load_model

    entry, body = hub
    with serve({f"/{entry.file}": body}) as url:
        monkeypatch.setenv(community.BASE_URL_ENV, url)
        loaded = load_model(NAME)
    assert loaded.model_cfg == ModelConfig(depth=8) and "community" in loaded.source

    class Args:
        run = None
        checkpoint = NAME
        quiet = True

    assert _source(Args()) == ModelSource(checkpoint=str(entry.path))


def test_help_texts_name_the_community_checkpoints(capsys):
    for argv in (["evaluate", "--help"], ["analyze", "--help"], ["attribute", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert "cifar10:resnet" in text and "shared" not in text


def test_a_bad_file_placed_in_the_cache_says_how_to_recover(hub):
    entry, _ = hub
    entry.path.parent.mkdir(parents=True)
    entry.path.write_bytes(b"not a checkpoint")
    with pytest.raises(community.CommunityError) as err:
        community.load(NAME)
    assert f"delete {entry.path} to download it again" in str(err.value) and "\n" not in str(err.value)
