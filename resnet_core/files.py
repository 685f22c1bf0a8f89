"""Opening a file a user named: only a regular file is read (a FIFO or a device would block or never
end), and at most a given number of bytes."""
from __future__ import annotations

import os
import stat
from pathlib import Path


CHUNK = 8 * 2**20


class NotARegularFile(OSError):
    """The path names a FIFO, a device, a socket or a directory; the message says what to give instead."""


def read_regular(path: str | Path, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path`` (FileNotFoundError when it is missing; NotARegularFile for
    anything else; ValueError above ``max_bytes``). Opened non-blocking, then checked on the open
    descriptor, so a FIFO swapped in after a check cannot hang the reader."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise NotARegularFile(f"{path} is a directory; give the {what} inside it")
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(f"{path} is not a regular file (a FIFO, device or socket): give a {what}")
        if st.st_size > max_bytes:
            raise ValueError(f"{path.name} is {st.st_size / 2**20:.0f} MB; the limit is {max_bytes // 2**20} MB")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            chunks, total = [], 0
            while total <= max_bytes:  # in chunks: read(max_bytes) would reserve all of it up front
                chunk = f.read(min(CHUNK, max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            data = b"".join(chunks)
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise ValueError(f"{path.name} is larger than {max_bytes // 2**20} MB")
    return data


ROOTS_ENV = "RESNET_LAB_DATA_ROOTS"


class OutsideRoots(PermissionError):
    """A path typed in a browser that is not under the server's data roots (or not allowed at all)."""


def data_roots(runs_dir: str | Path | None = None) -> list[Path]:
    """The folders a browser may name paths in: ``RESNET_LAB_DATA_ROOTS`` (separated by ``os.pathsep``),
    else the project's ``data/`` and the run store. Absolute, not resolved through links: a link an
    administrator put under a root is part of that root."""
    raw = os.environ.get(ROOTS_ENV, "").strip()
    if raw:
        parts = [p for p in raw.split(os.pathsep) if p.strip()]
    else:
        parts = ["data", str(runs_dir if runs_dir is not None else os.environ.get("RESNET_LAB_RUNS", "runs"))]
    return [Path(os.path.abspath(os.path.expanduser(p.strip()))) for p in parts]


def browser_path(text: str, roots: list[Path], what: str = "path") -> Path:
    """``text`` as a path under one of ``roots``, or ``OutsideRoots`` with one message whether or not
    the path exists (so a browser learns nothing about the rest of the machine). Relative paths are
    taken from the server's working directory; ``..`` is refused outright, since a link under a root
    could make it lead anywhere."""
    names = ", ".join(str(r) for r in roots)
    refusal = OutsideRoots(f"that {what} is not one this server opens: give a {what} inside {names} "
                           f"(set {ROOTS_ENV} on the server to allow others)")
    if not isinstance(text, str) or not text.strip() or "\x00" in text or len(text) > 4096:
        raise refusal
    raw = Path(os.path.expanduser(text.strip()))
    if ".." in raw.parts:
        raise refusal
    p = Path(os.path.abspath(raw))
    for root in roots:
        if p == root or root in p.parents:
            return p
    raise refusal
