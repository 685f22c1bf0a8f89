"""One file from a URL into place, checked, with progress; nothing half-written is ever left behind.

The bytes go to a unique temporary name beside the destination (so the final rename is atomic on one
file system), are hashed while they arrive, and are renamed into place only when the checksum holds;
any failure, a cancel included, removes the temporary file. ``progress(done_bytes, total_bytes)`` is
called after every chunk (``total_bytes`` is None when the server does not say).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

TIMEOUT_S = 30            # per socket operation: an unreachable host fails in seconds, not minutes
CHUNK = 1 << 16

Progress = Callable[[int, "int | None"], None]


class DownloadError(RuntimeError):
    """A download that failed; the message says why (offline, refused, corrupt, truncated)."""


class DownloadCancelled(DownloadError):
    pass


def download(url: str, dest: str | Path, *, sha256_prefix: str | None = None, md5: str | None = None,
             progress: Progress | None = None, cancel: threading.Event | None = None,
             timeout: float = TIMEOUT_S) -> Path:
    """Fetches ``url`` to ``dest``; checks the sha256 prefix (torch hub's file names carry one) or the
    full md5 (torchvision's data sets publish one). Raises ``DownloadError`` with a one-line reason."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    sha, md = hashlib.sha256(), hashlib.md5()
    done = 0
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except urllib.error.HTTPError as e:
                raise DownloadError(f"the server answered {e.code} {e.reason}") from None
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or str(e) or type(e).__name__
                raise DownloadError(f"offline? {reason}") from None
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                if progress is not None:
                    progress(0, total)
                while True:
                    if cancel is not None and cancel.is_set():
                        raise DownloadCancelled("cancelled")
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, urllib.error.URLError) as e:
                        raise DownloadError(f"the connection broke after {done:,} bytes ({e})") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    sha.update(chunk)
                    md.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        if total is not None and done != total:
            raise DownloadError(f"the download stopped at {done:,} of {total:,} bytes")
        if sha256_prefix and not sha.hexdigest().startswith(sha256_prefix):
            raise DownloadError(f"the downloaded file is corrupt: its sha256 does not start with {sha256_prefix}")
        if md5 and md.hexdigest() != md5:
            raise DownloadError(f"the downloaded file is corrupt: its md5 is not {md5}")
        os.replace(tmp, dest)  # a reader never sees a half-written file
    finally:
        tmp.unlink(missing_ok=True)
    return dest


class StderrBar:
    """A ``progress`` callback drawing a tqdm bar of bytes on stderr (the CLI's), created with the first
    bytes so that a download that never starts draws nothing. ``close()`` when done, whatever happened."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            import sys

            from tqdm import tqdm  # late: only a drawing CLI needs it

            self.bar = tqdm(total=total, desc=self.desc, unit="B", unit_scale=True, unit_divisor=1024,
                            file=sys.stderr, dynamic_ncols=True, leave=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
