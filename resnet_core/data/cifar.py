"""CIFAR-10 (python release) through a restricted unpickler, so a user's directory cannot run code."""
from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from resnet_core.data.consts import CIFAR10_CLASSES
from resnet_core.data.dataset import DataError, Dataset, _make_dataset

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR10_DIRNAME = "cifar-10-batches-py"
# torchvision.datasets.CIFAR10's archive and its md5 (its ``url``, ``filename``, ``tgz_md5``), written out
# so that reading them needs no torchvision import; tests/unit/test_downloads.py checks they still agree.
# $RESNET_LAB_CIFAR10_URL points at a mirror of the same file (the md5 stays the official one).
CIFAR10_ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_URL_ENV = "RESNET_LAB_CIFAR10_URL"


# ----------------------------------------------------------------------------------------------------
# CIFAR-10 (python version): read here, not through torchvision.datasets.CIFAR10, whose md5 check
# rejects any batch file that is not byte-identical to the official one.
# ----------------------------------------------------------------------------------------------------

def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, "latin1"); any other codec
    # (zlib_codec, bz2_codec, ...) has no business in a batch file.
    if encoding not in ("latin1", "latin-1"):
        raise DataError(f"refusing codec {encoding!r} in a CIFAR-10 batch file")
    return text.encode("latin1")


def _safe_pickle_globals() -> dict[tuple[str, str], object]:
    # The array constructors numpy itself names in its pickles (1.x: numpy.core, 2.x: numpy._core),
    # taken from numpy's own reduce so they resolve on either version without importing numpy.core.
    reconstruct = np.empty(0).__reduce__()[0]
    frombuffer = np.empty(1).__reduce_ex__(5)[0]                       # protocol 5 arrays
    scalar = np.uint8(0).__reduce__()[0]
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = frombuffer
    # Lists, dicts and tuples have their own opcodes; these names only appear in odd writers. Nothing
    # that can call, import, look up attributes or allocate on demand (bytes(10**12)) is allowed.
    for module in ("builtins", "__builtin__"):
        for name, value in (("list", list), ("dict", dict), ("tuple", tuple)):
            allowed[(module, name)] = value
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only numpy arrays and plain containers; any other global is refused.

    A pickle can name any importable callable (os.system, ...) and have it called while loading, so a
    batch file from a user-chosen directory is untrusted input (Python docs, "Restricting Globals").
    """

    _allowed = None

    def find_class(self, module: str, name: str):
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _safe_pickle_globals()
        try:
            return _RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to load {module}.{name} from a CIFAR-10 batch file: the official files hold only "
                "numpy arrays and lists, so this file is not one of them and may run code if loaded"
            ) from None


def _read_cifar_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"CIFAR-10 file {path} is missing: re-extract cifar-10-python.tar.gz from {CIFAR10_URL}")
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:  # truncated files raise EOFError, garbage UnpicklingError/ValueError/...
        raise DataError(
            f"CIFAR-10 file {path} is corrupt or truncated ({type(e).__name__}: {e}); "
            f"delete it and re-extract cifar-10-python.tar.gz from {CIFAR10_URL}"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR-10 file {path} does not hold a dict; it is not a CIFAR-10 python batch")
    # Files written by Python 2 have bytes keys (b"data"); files written by Python 3 may have str keys.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    d = _read_cifar_pickle(path)
    data, labels = d.get("data"), d.get("labels", d.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"CIFAR-10 file {path}: 'data' must be a uint8 array of shape (N, 3072); got "
            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        )
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"CIFAR-10 file {path}: 'labels' must be {data.shape[0]} integers from 0 to 9")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major: already CHW.
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())            # (N, 3, 32, 32)
    return x, torch.from_numpy(labels)


def _cifar_missing_message(where: Path, why: str = "") -> str:
    return (
        f"CIFAR-10 was not found in {where} (looked for {where / CIFAR10_DIRNAME}){why}. "
        f"Download cifar-10-python.tar.gz from {CIFAR10_URL} and extract it there, so that "
        f"{where / CIFAR10_DIRNAME} holds data_batch_1..5 and test_batch; or pass the parent of an existing "
        f"{CIFAR10_DIRNAME} directory."
    )


def cifar10_archive_url() -> str:
    return os.environ.get(CIFAR10_URL_ENV) or CIFAR10_ARCHIVE_URL


def cifar10_offline_message(parent: Path, reason: str) -> str:
    return (f"cannot download CIFAR-10 ({reason}): download {cifar10_archive_url()} and extract it into "
            f"{parent.resolve()}, so that {(parent / CIFAR10_DIRNAME).resolve()} holds data_batch_1..5 and test_batch")


def download_cifar10(root: str | Path, progress=None, cancel: threading.Event | None = None, *,
                     url: str | None = None, md5: str | None = None) -> Path:
    """Downloads CIFAR-10's python archive (md5 checked, as torchvision does), extracts it with
    torchvision's extractor into a temporary folder beside ``root/cifar-10-batches-py`` and renames it
    into place once every batch reads back; nothing half-written is left behind. ``progress(done,
    total)`` in bytes. Returns the ``cifar-10-batches-py`` folder; ``DataError`` in one line otherwise."""
    from resnet_core.download import DownloadCancelled, DownloadError, download

    root = Path(root).expanduser()
    parent = root.parent if root.name == CIFAR10_DIRNAME else root
    batches = parent / CIFAR10_DIRNAME
    if batches.is_dir():
        return batches
    url, md5 = url or cifar10_archive_url(), md5 or CIFAR10_ARCHIVE_MD5
    work = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=parent, prefix=".cifar-10-download."))
        archive = download(url, work / "cifar-10-python.tar.gz", md5=md5, progress=progress, cancel=cancel)
        from torchvision.datasets.utils import extract_archive  # late: only this path needs it

        extract_archive(archive, work / "extracted")
        extracted = work / "extracted" / CIFAR10_DIRNAME
        if not extracted.is_dir():
            raise DataError(f"the archive from {url} holds no {CIFAR10_DIRNAME} folder")
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            _read_cifar_batch(extracted / name)  # a bad file fails here, not in the first run
        os.replace(extracted, batches)
    except DownloadCancelled:
        raise
    except DownloadError as e:
        raise DataError(cifar10_offline_message(parent, str(e))) from None
    except DataError as e:
        raise DataError(cifar10_offline_message(parent, str(e))) from None
    except OSError as e:  # an unwritable data directory, a full disk, a broken archive
        raise DataError(cifar10_offline_message(parent, f"{e.strerror or e}: {e.filename or parent}")) from None
    except Exception as e:  # noqa: BLE001 - tarfile and friends raise many types for a bad archive
        raise DataError(cifar10_offline_message(parent, f"{type(e).__name__}: {e}")) from None
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return batches


def load_cifar10(root: str | Path, download: bool) -> Dataset:
    root = Path(root).expanduser()
    # Accept both the parent and the cifar-10-batches-py directory itself.
    parent = root.parent if root.name == CIFAR10_DIRNAME else root
    batches = parent / CIFAR10_DIRNAME
    if not batches.is_dir():
        if not download:
            raise DataError(_cifar_missing_message(parent, " and downloading is off"))
        from resnet_core.download import StderrBar

        bar = StderrBar("downloading CIFAR-10")
        try:
            download_cifar10(parent, bar)
        finally:
            bar.close()
        if not batches.is_dir():
            raise DataError(_cifar_missing_message(parent, " even after downloading"))

    parts = [_read_cifar_batch(batches / f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = _read_cifar_batch(batches / "test_batch")
    classes = list(CIFAR10_CLASSES)
    meta = batches / "batches.meta"
    if meta.exists():
        names = _read_cifar_pickle(meta).get("label_names")
        if not isinstance(names, list) or len(names) != 10:
            raise DataError(f"CIFAR-10 file {meta}: 'label_names' must be a list of 10 class names")
        classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    train_x = torch.cat([p[0] for p in parts])
    train_y = torch.cat([p[1] for p in parts])
    return _make_dataset("cifar10", classes, train_x, train_y, test_x, test_y)

