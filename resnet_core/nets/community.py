"""The community CIFAR-10 ResNets by name: ``cifar10:resnet20`` ... ``cifar10:resnet1202``.

They are Yerlan Idelbayev's ResNet-20/32/44/56/110/1202 (akamaster/pytorch_resnet_cifar10, BSD
2-clause), trained as He et al. 2015 Sec. 4.2 describes, with option A shortcuts. Like torchvision's
weights, each file name carries the first hex digits of its sha256, which the download checks. Files
are kept in torch hub's cache, ``torch.hub.get_dir()/checkpoints/`` (where torchvision keeps its
weights; ``$TORCH_HOME`` moves it), downloaded on first use, and loaded through
``checkpoints.load_checkpoint`` (``weights_only=True``, akamaster's keys mapped to ours).

``$RESNET_LAB_WEIGHTS_URL`` replaces the base URL (a mirror, or a local server in tests).
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from resnet_core.nets.checkpoints import CheckpointError
from resnet_core.download import Progress
from resnet_core.experiments.published import COMMUNITY, PAPER_TABLE6, Published

PREFIX = "cifar10:"
BASE_URL_ENV = "RESNET_LAB_WEIGHTS_URL"
DEFAULT_BASE_URL = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models"
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.th$")


class CommunityError(CheckpointError):
    """A community checkpoint that cannot be provided; one line that says what to do."""


@dataclass(frozen=True)
class CommunityCheckpoint:
    depth: int
    file: str                 # akamaster's file name: resnet<depth>-<sha256 prefix>.th
    size_bytes: int
    size_measured: bool       # True: the real file's size; False: estimated from the parameter count
    params: int               # our option-A net of this depth (the same as akamaster's)

    @property
    def name(self) -> str:
        return f"{PREFIX}resnet{self.depth}"

    @property
    def label(self) -> str:
        return f"ResNet-{self.depth}"

    @property
    def sha256_prefix(self) -> str:
        return _HASH_IN_NAME.search(self.file).group(1)

    @property
    def url(self) -> str:
        return f"{base_url()}/{self.file}"

    @property
    def path(self) -> Path:
        return cache_dir() / self.file

    @property
    def downloaded(self) -> bool:
        return self.path.is_file()

    @property
    def published(self) -> Published:
        return COMMUNITY[self.depth]

    @property
    def paper(self) -> Published:
        return PAPER_TABLE6[self.depth]

    def size_text(self) -> str:
        mb = self.size_bytes / 1e6
        return f"{mb:.1f} MB" if self.size_measured else f"about {mb:.0f} MB"

    def offline_message(self, reason: str) -> str:
        return (f"cannot download {self.name} ({reason}): download {self.url} and place it at {self.path}")


# Sizes: 20-56 are the real files' (checked against them by tests/unit/test_community.py when they are
# at hand). 110 and 1202 are estimated: their state dicts' float32 bytes (6,945,104 and 78,053,232 for
# our nets of that depth) plus the ~131 bytes of pickle per tensor the four real files show.
CATALOGUE: dict[str, CommunityCheckpoint] = {c.name: c for c in (
    CommunityCheckpoint(20, "resnet20-12fca82f.th", 1_099_231, True, 269_722),
    CommunityCheckpoint(32, "resnet32-d509ac18.th", 1_890_043, True, 464_154),
    CommunityCheckpoint(44, "resnet44-014dd654.th", 2_680_855, True, 658_586),
    CommunityCheckpoint(56, "resnet56-4bfd9763.th", 3_471_733, True, 853_018),
    CommunityCheckpoint(110, "resnet110-1d1ed7c2.th", 7_030_000, False, 1_727_962),
    CommunityCheckpoint(1202, "resnet1202-f3b1deed.th", 79_000_000, False, 19_421_274),
)}
NAMES = list(CATALOGUE)


def base_url() -> str:
    return (os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


def cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def is_community(spec: str) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def get(name: str) -> CommunityCheckpoint:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise CommunityError(f"unknown community checkpoint {name!r}: use one of {', '.join(NAMES)}") from None


def ensure(name: str, progress: Progress | None = None, cancel: threading.Event | None = None) -> Path:
    """The cached file of ``name``, downloaded (sha256 prefix checked) when it is not there yet.
    Raises ``CommunityError`` naming the URL and the exact path to place the file at."""
    from resnet_core.download import DownloadCancelled, DownloadError, download

    ckpt = get(name)
    if ckpt.downloaded:
        return ckpt.path
    try:
        return download(ckpt.url, ckpt.path, sha256_prefix=ckpt.sha256_prefix, progress=progress, cancel=cancel)
    except DownloadCancelled:
        raise
    except DownloadError as e:
        raise CommunityError(ckpt.offline_message(str(e))) from None
    except OSError as e:  # the cache directory unwritable, the disk full
        raise CommunityError(ckpt.offline_message(f"{e.strerror or e}: {e.filename or ckpt.path.parent}")) from None


def ensure_with_bar(name: str, enabled: bool = True) -> Path:
    """``ensure`` with a tqdm bar on stderr while it downloads (none when already cached)."""
    from resnet_core.download import StderrBar

    if not enabled or get(name).downloaded:
        return ensure(name)
    bar = StderrBar(f"downloading {name}")
    try:
        return ensure(name, bar)
    finally:
        bar.close()


def load(name: str, progress: Progress | None = None):
    """The ``LoadedModel`` of a community checkpoint, its published and paper errors in ``meta``."""
    from resnet_core.nets.checkpoints import load_checkpoint

    ckpt = get(name)
    path = ensure(name, progress)
    try:
        loaded = load_checkpoint(path)
    except CheckpointError as e:  # a file placed there by hand may be anything
        raise CommunityError(f"{e}; delete {path} to download it again, or place the file from {ckpt.url} there") from None
    loaded.source = f"community CIFAR-10 checkpoint {name} ({ckpt.file})"
    loaded.meta.update(community=name, published_test_error=ckpt.published.error,
                       paper_test_error=ckpt.paper.error)
    return loaded
