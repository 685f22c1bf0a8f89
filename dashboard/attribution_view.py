"""Streamlit glue for the Attribution page: cached model and image loading, a worker for attribution
jobs with progress and cancel, and figure builders.

Attribution runs in one process-wide worker thread that never touches Streamlit (the pages poll it
from ``st.fragment(run_every=...)``): a click or a slider move reruns the page without killing a job,
and Cancel sets the job's event, which the core honours between chunks. One worker, not one per
session: every job uses the CPU's cores anyway, and Captum's Guided Backprop/DeepLift attach hooks to
the (shared, cached) model, so two jobs on one model at once would see each other's hooks.

Results are cached per (image hash, model id, method, target, settings) in the worker's bounded LRU
rather than ``st.cache_data``: they are produced on the worker thread, outside any script run, and a
cancelled job must leave nothing behind. Decoded images and the shapes samples use ``st.cache_data`` /
``st.cache_resource``; loaded models ``st.cache_resource``.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from resnet_core.attribution import (METHODS, AttributionError, Cancelled, load_model)
from resnet_core.checkpoints import CheckpointError, LoadedModel, load_checkpoint
from resnet_core.config import ConfigError
from resnet_core.imagenet import ARCHS, ModelError
from resnet_core.images import ImageError, load_image
from resnet_core.runs import RunStore, default_runs_dir

USER_ERRORS = (ImageError, CheckpointError, ModelError, AttributionError, ConfigError)
MAX_RESULTS = 256
SHAPES_SEED = 0
SHAPES_SAMPLES = 64


# --- jobs --------------------------------------------------------------------------------------------

@dataclass
class Job:
    key: str
    label: str
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: float = 0.0
    state: str = "queued"          # queued, running, done, failed, cancelled
    error: str = ""
    started: float = field(default_factory=time.time)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class AttributionService:
    """A single worker thread, its jobs by key, and a bounded LRU of finished results."""

    def __init__(self, max_results: int = MAX_RESULTS):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attribution")
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._results: OrderedDict[str, Any] = OrderedDict()
        self._max = max_results

    def result(self, key: str) -> Any | None:
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        return None

    def job(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def submit(self, key: str, label: str, fn: Callable[..., Any]) -> Job:
        """Queues ``fn(progress=, cancel=)`` unless its result is cached or it is already queued/running."""
        with self._lock:
            job = self._jobs.get(key)
            if key in self._results:
                return job or Job(key, label, state="done", progress=1.0)
            if job is not None and job.active:
                return job
            job = Job(key, label)
            self._jobs[key] = job
        self._pool.submit(self._run, job, fn)
        return job

    def _run(self, job: Job, fn) -> None:
        if job.cancel.is_set():
            job.state = "cancelled"
            return
        job.state = "running"

        def progress(f: float) -> None:
            job.progress = float(f)

        try:
            value = fn(progress=progress, cancel=job.cancel)
        except Cancelled:
            job.state = "cancelled"
            return
        except USER_ERRORS as e:
            job.error, job.state = str(e), "failed"
            return
        except MemoryError:
            job.error, job.state = "out of memory: use fewer steps or samples, or a smaller image", "failed"
            return
        except Exception as e:  # noqa: BLE001 - a worker must survive anything; the page shows one line
            traceback.print_exc()  # to the server log, for a bug report
            job.error, job.state = f"unexpected {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}", "failed"
            return
        with self._lock:
            self._results[job.key] = value
            self._results.move_to_end(job.key)
            while len(self._results) > self._max:
                self._results.popitem(last=False)
        job.progress, job.state = 1.0, "done"

    def cancel(self, keys) -> None:
        with self._lock:
            for k in keys:
                job = self._jobs.get(k)
                if job is not None and job.active:
                    job.cancel.set()
                    if job.state == "queued":
                        job.state = "cancelled"

    def forget(self, key: str) -> None:
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.active:
                del self._jobs[key]

    def wait(self, keys, timeout: float) -> None:
        """Until every job of ``keys`` has finished or ``timeout`` seconds have passed."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            jobs = [self.job(k) for k in keys]
            if not any(j is not None and j.active for j in jobs):
                return
            time.sleep(0.05)


@st.cache_resource(show_spinner=False)
def get_service() -> AttributionService:
    return AttributionService()


def cell_key(*parts) -> str:
    """One cache key from (image hash, model id, method, target, settings, ...)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


# --- images ------------------------------------------------------------------------------------------

def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@st.cache_data(show_spinner=False, max_entries=64)
def decode_upload(data: bytes) -> Image.Image:
    """``load_image`` cached by content; raises ``ImageError`` (not cached) for a bad file."""
    return load_image(data)


@st.cache_resource(show_spinner="Rendering the shapes test set ...")
def shapes_samples(n: int = SHAPES_SAMPLES, seed: int = SHAPES_SEED):
    """(images uint8 (n, 32, 32, 3), labels, masks bool (n, 32, 32), class names) of the shapes test set."""
    from resnet_core.config import DataConfig
    from resnet_core.data import load_dataset

    ds = load_dataset(DataConfig(name="synthetic", n_train=10, n_test=n, seed=seed))
    return (ds.test_x.permute(0, 2, 3, 1).numpy(), ds.test_y.numpy(), ds.test_masks.numpy(), list(ds.classes))


# --- models ------------------------------------------------------------------------------------------

def runs_dir() -> str:
    return str(default_runs_dir().resolve())


def run_models(root: str) -> list[tuple[str, str]]:
    """(spec, label) of every stored run with a checkpoint, newest first."""
    out = []
    store = RunStore(root)
    for info in store.list():
        if store.checkpoint_path(info.run_id) is not None:
            out.append((f"run:{info.run_id}", f"run · {info.label} · {info.status} · {info.run_id}"))
    return out


def imagenet_models() -> list[tuple[str, str]]:
    return [(f"imagenet:{a}", f"ImageNet {label} (torchvision, downloaded on first use)")
            for a, (_, _, label) in ARCHS.items()]


@st.cache_resource(show_spinner="Loading the model ...", max_entries=8)
def get_model(spec: str, root: str) -> LoadedModel:
    """A model by spec (see ``resnet_core.attribution.load_model``); errors are not cached."""
    return load_model(spec, runs_dir=root, device="cpu")


@st.cache_resource(show_spinner="Loading the checkpoint ...", max_entries=4)
def get_uploaded_model(file_digest: str, _data: bytes) -> LoadedModel:
    """An uploaded checkpoint, by content hash; always through the safe loader."""
    return load_checkpoint(_data)


# --- figures -----------------------------------------------------------------------------------------

def mask_image(mask: np.ndarray, size: int = 256) -> Image.Image:
    return Image.fromarray((mask.astype(np.uint8) * 255), "L").resize((size, size), Image.Resampling.NEAREST)


def faithfulness_figure(curves: dict[str, Any]) -> go.Figure:
    """Deletion (solid) and insertion (dashed) curves per method, AUCs in the legend."""
    fig = go.Figure()
    palette = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880"]
    for i, (method, r) in enumerate(curves.items()):
        color = palette[i % len(palette)]
        label = METHODS[method].label
        fig.add_scatter(x=r.fractions, y=r.deletion, mode="lines", line=dict(color=color),
                        name=f"{label} deletion AUC {r.deletion_auc:.3f}")
        fig.add_scatter(x=r.fractions, y=r.insertion, mode="lines", line=dict(color=color, dash="dash"),
                        name=f"{label} insertion AUC {r.insertion_auc:.3f}")
    fig.update_layout(title=dict(text="Deletion (solid, lower is better) and insertion (dashed, higher is better)",
                                 x=0, font=dict(size=14)),
                      xaxis_title="share of pixels removed / inserted", yaxis_title="target probability",
                      yaxis_range=[0, 1.02], template="plotly_white", height=380,
                      margin=dict(l=50, r=20, t=50, b=40), legend=dict(font=dict(size=11)))
    return fig


def top5_rows(top5: list[tuple[str, float]]) -> list[dict]:
    return [{"class": c, "probability": round(p, 4)} for c, p in top5]


def job_progress_text(job: Job) -> str:
    elapsed = time.time() - job.started
    return f"{job.label}: {job.state} {100 * job.progress:.0f}% ({elapsed:.0f} s)"
