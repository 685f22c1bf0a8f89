"""CIFAR-10's download (the page's Download button and the CLI's --data-dir) against a loopback server
with a tiny archive in CIFAR-10's format: progress, the md5 check, placement, the offline message."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from resnet_core.data import DataError, load_cifar10
from resnet_core.data.cifar import (CIFAR10_ARCHIVE_MD5, CIFAR10_ARCHIVE_URL, CIFAR10_URL_ENV, download_cifar10)
from tests.conftest import write_cifar_dir
from tests.unit.loopback import dead_url, serve


def tiny_archive(tmp_path: Path) -> bytes:
    """cifar-10-python.tar.gz in the real layout (cifar-10-batches-py/data_batch_1..5, test_batch,
    batches.meta), with 2 images a batch."""
    src = write_cifar_dir(tmp_path / "src", n_train_per_batch=2, n_test=3)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buf.getvalue()


def test_constants_are_torchvisions():
    from torchvision.datasets import CIFAR10

    assert (CIFAR10_ARCHIVE_URL, CIFAR10_ARCHIVE_MD5) == (CIFAR10.url, CIFAR10.tgz_md5)


def test_download_extracts_into_place_with_progress(tmp_path):
    body = tiny_archive(tmp_path)
    calls = []
    root = tmp_path / "data"
    with serve({"/cifar.tar.gz": body}) as url:
        got = download_cifar10(root, lambda d, t: calls.append((d, t)), url=f"{url}/cifar.tar.gz",
                               md5=hashlib.md5(body).hexdigest())
    assert got == root / "cifar-10-batches-py"
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # no archive, no temp folder
    assert calls[-1] == (len(body), len(body))
    ds = load_cifar10(root, download=False)
    assert len(ds.train_y) == 10 and len(ds.test_y) == 3


def test_wrong_checksum_is_refused_and_nothing_is_left(tmp_path):
    body = tiny_archive(tmp_path)
    root = tmp_path / "data"
    with serve({"/cifar.tar.gz": body}) as url:
        with pytest.raises(DataError) as err:
            download_cifar10(root, url=f"{url}/cifar.tar.gz")  # the official md5: this archive fails it
    assert f"md5 is not {CIFAR10_ARCHIVE_MD5}" in str(err.value)
    assert list(root.iterdir()) == []


def test_an_archive_without_cifar_is_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    body = buf.getvalue()
    root = tmp_path / "data"
    with serve({"/c.tgz": body}) as url:
        with pytest.raises(DataError, match="holds no cifar-10-batches-py"):
            download_cifar10(root, url=f"{url}/c.tgz", md5=hashlib.md5(body).hexdigest())
    assert list(root.iterdir()) == []


def test_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv(CIFAR10_URL_ENV, dead_url())
    root = tmp_path / "data"
    with pytest.raises(DataError) as err:
        download_cifar10(root)
    text = str(err.value)
    assert text.startswith("cannot download CIFAR-10 (offline?") and "\n" not in text
    assert str((root / "cifar-10-batches-py").resolve()) in text
    assert list(root.iterdir()) == []


def test_the_clis_data_dir_download_uses_the_same_path(tmp_path, monkeypatch):
    body = tiny_archive(tmp_path)
    monkeypatch.setattr("resnet_core.data.cifar.CIFAR10_ARCHIVE_MD5", hashlib.md5(body).hexdigest())
    with serve({"/c.tgz": body}) as url:
        monkeypatch.setenv(CIFAR10_URL_ENV, f"{url}/c.tgz")
        ds = load_cifar10(tmp_path / "data", download=True)
    assert len(ds.test_y) == 3
