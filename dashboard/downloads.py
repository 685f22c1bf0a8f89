"""Downloads started from the pages (community checkpoints, CIFAR-10): one background thread, a progress
bar polled from a fragment, one line when it fails. A download never blocks a script run or the server:
the page shows its progress and goes on; when it ends, the page reruns and uses the file.

The files land where the CLI puts them (``resnet_core.nets.community``: torch hub's cache; CIFAR-10: the data
directory the server reads, ``$RESNET_LAB_DATA`` or ``data/``), so either front end finds the other's.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import streamlit as st

from resnet_core.nets import community
from resnet_core.nets.checkpoints import CheckpointError
from resnet_core.data import DataError
from resnet_core.data.cifar import CIFAR10_DIRNAME, download_cifar10
from resnet_core.download import DownloadCancelled

from dashboard.jobs import Job, JobService

CIFAR_KEY = "cifar10-data"


class DownloadService(JobService):
    thread_name = "downloads"
    oom_message = "out of memory while downloading"

    def cancelled_errors(self):
        return (DownloadCancelled,)

    def user_errors(self):
        return (CheckpointError, DataError)

    def drop(self, key: str) -> None:
        """Forgets a finished download (its file was removed since), so that it can run again."""
        with self._lock:
            self._results.pop(key, None)
            job = self._jobs.get(key)
            if job is not None and not job.active:
                del self._jobs[key]


_service: DownloadService | None = None
_service_lock = threading.Lock()


def service() -> DownloadService:
    global _service
    with _service_lock:
        if _service is None:
            _service = DownloadService(max_results=16)
        return _service


def _bytes_progress(progress):
    """Adapts ``download``'s (done, total) bytes to the job's (fraction, message)."""
    def update(done: int, total: int | None) -> None:
        mb = f"{done / 1e6:.1f}" + (f" of {total / 1e6:.1f} MB" if total else " MB")
        progress(done / total if total else 0.0, mb)
    return update


# --- what is where ---------------------------------------------------------------------------------------

def cifar_download_root() -> Path:
    """The data directory the server reads CIFAR-10 from (``widgets.cifar_root`` looks here first)."""
    return Path(os.environ.get("RESNET_LAB_DATA") or "data")


def community_label(name: str) -> str:
    c = community.get(name)
    state = "downloaded" if c.downloaded else "downloaded on first use"
    return f"{c.label} CIFAR-10 community checkpoint · {c.size_text()} · {state}"


def community_job_key(name: str) -> str:
    return f"community:{name}"


def start_community(name: str) -> Job:
    key = community_job_key(name)
    svc = service()
    job = svc.job(key)
    if job is not None and not job.active and not community.get(name).downloaded:
        svc.drop(key)  # done before, but the file has gone: fetch it again
    return svc.submit(key, f"downloading {name}",
                      lambda progress, cancel: community.ensure(name, _bytes_progress(progress), cancel))


def start_cifar(root: Path) -> Job:
    svc = service()
    job = svc.job(CIFAR_KEY)
    if job is not None and not job.active and not (root / CIFAR10_DIRNAME).is_dir():
        svc.drop(CIFAR_KEY)
    return svc.submit(CIFAR_KEY, "downloading CIFAR-10 (about 170 MB)",
                      lambda progress, cancel: download_cifar10(root, _bytes_progress(progress), cancel))


# --- on the page -----------------------------------------------------------------------------------------

@st.fragment(run_every=0.5)
def _progress(key: str, widget_key: str) -> None:
    job = service().job(key)
    if job is None or not job.active:
        st.rerun()  # finished (or failed): the whole page redraws with the file, or the error line
    st.progress(job.progress, text=job.progress_text())
    if st.button("Cancel download", key=f"{widget_key}_cancel"):
        service().cancel([key])
        st.rerun()


def _failed(job: Job | None) -> str | None:
    return job.error if job is not None and job.state == "failed" else None


def community_checkpoint(name: str, key: str, auto: bool = True) -> Path | None:
    """The cached file of a community checkpoint; while it downloads a progress bar, and None. ``auto``:
    the download starts here (the user chose this net, so this is its first use); else a Download button
    starts it (a net merely shown as a default choice). A failed download shows its one line and Retry."""
    ckpt = community.get(name)
    if ckpt.downloaded:
        return ckpt.path
    jkey = community_job_key(name)
    job = service().job(jkey)
    if job is not None and job.state == "done":  # the file went away since
        service().drop(jkey)
        job = None
    error = _failed(job)
    if error:
        st.error(error, icon="🚫")
        if st.button(f"Retry downloading {name}", key=f"{key}_retry"):
            service().drop(jkey)
            start_community(name)
            st.rerun()
        return None
    if job is not None and job.state == "cancelled":
        st.caption(f"{name}: download cancelled.")
        if st.button(f"Download {name} ({ckpt.size_text()})", key=f"{key}_again"):
            service().drop(jkey)
            start_community(name)
            st.rerun()
        return None
    if job is None:
        if not auto:
            st.caption(f"{name} is not downloaded yet ({ckpt.size_text()}, from {ckpt.url}).")
            if not st.button(f"Download {name}", key=f"{key}_start"):
                return None
        start_community(name)
    st.caption(f"{name} ({ckpt.size_text()}) is downloading from {ckpt.url} into {ckpt.path.parent}.")
    _progress(jkey, key)
    return None


def cifar_download(key: str) -> None:
    """CIFAR-10 is not here: a Download button (about 170 MB, md5 checked), its progress, or why it failed
    and where to put ``cifar-10-batches-py`` by hand."""
    root = cifar_download_root()
    job = service().job(CIFAR_KEY)
    if job is not None and job.active:
        _progress(CIFAR_KEY, key)
        return
    error = _failed(job)
    if error:
        st.error(error, icon="🚫")
    elif job is not None and job.state == "done" and not (root / CIFAR10_DIRNAME).is_dir():
        service().drop(CIFAR_KEY)
    target = (root / CIFAR10_DIRNAME).resolve()
    st.caption(f"CIFAR-10 is not on this machine. Download it (about 170 MB, checksum checked) into "
               f"{target}, or place an extracted `{CIFAR10_DIRNAME}` there yourself.")
    if st.button("Retry download" if error else "Download CIFAR-10", key=key):
        service().drop(CIFAR_KEY)
        start_cifar(root)
        st.rerun()
