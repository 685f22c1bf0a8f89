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
import time
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from resnet_core.attribution import (METHODS, AttributionError, Cancelled, load_model)
from resnet_core.nets.checkpoints import CheckpointError, LoadedModel, load_checkpoint
from resnet_core.config import ConfigError
from resnet_core.nets.imagenet import ARCHS, ModelError
from resnet_core.files import OutsideRoots, browser_path, data_roots
from resnet_core.data.images import ImageError, load_image
from resnet_core.training.runs import RunStore, default_runs_dir

from dashboard.jobs import Job, JobService  # noqa: F401  (Job: part of this module's interface)

USER_ERRORS = (ImageError, CheckpointError, ModelError, AttributionError, ConfigError, OutsideRoots)
MAX_RESULTS = 256
SHAPES_SEED = 0
SHAPES_SAMPLES = 64


# --- jobs --------------------------------------------------------------------------------------------

class AttributionService(JobService):
    """The Attribution page's worker (``dashboard/jobs.py``): maps one at a time, results cached."""

    thread_name = "attribution"
    oom_message = "out of memory: use fewer steps or samples, or a smaller image"

    def __init__(self, max_results: int = MAX_RESULTS):
        super().__init__(max_results)

    def cancelled_errors(self) -> tuple[type[BaseException], ...]:
        return (Cancelled,)

    def user_errors(self) -> tuple[type[BaseException], ...]:
        return USER_ERRORS


@st.cache_resource(show_spinner=False)
def get_service() -> AttributionService:
    return AttributionService()


def cell_key(*parts) -> str:
    """One cache key from (image hash, model id, method, target, settings, ...)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


# --- images ------------------------------------------------------------------------------------------

def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


MAX_UPLOADS = 8                   # images a session's uploader may hold; the rest are refused
UPLOAD_MAX_PIXELS = 12_000_000    # width x height of one upload (a 12 MP phone photo); 36 MB decoded
SESSION_MAX_PIXELS = 48_000_000   # all of a session's uploads together
DECODED_CACHE_BYTES = 256 * 2**20  # decoded uploads kept for reruns, across sessions


class DecodedCache:
    """Decoded uploads by content hash, least recently used first out, bounded in bytes (not entries:
    one 12 MP photo weighs as much as 12,000 small ones). Thread-safe: sessions share it."""

    def __init__(self, max_bytes: int = DECODED_CACHE_BYTES):
        import collections
        import threading

        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[str, Image.Image] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def size_of(img: Image.Image) -> int:
        return img.width * img.height * len(img.getbands())

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: str, make) -> Image.Image:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        img = make()  # outside the lock: decoding may take a second
        size = self.size_of(img)
        with self._lock:
            if key not in self._items and size <= self.max_bytes:
                self._items[key] = img
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= self.size_of(old)
        return img


@st.cache_resource(show_spinner=False)
def decoded_cache() -> DecodedCache:
    return DecodedCache()


def decode_upload(data: bytes) -> Image.Image:
    """``load_image`` with the shared server's pixel cap, cached by content in a byte-bounded cache;
    raises ``ImageError`` (not cached) for a bad or too large file."""
    return decoded_cache().get(digest(data), lambda: load_image(data, max_pixels=UPLOAD_MAX_PIXELS))


def checkpoint_path(text: str) -> str:
    """A checkpoint path typed in the browser, if it is inside the server's data roots; otherwise
    ``OutsideRoots`` with the same line whether or not it exists. Only regular files are then read
    (``resnet_core.nets.checkpoints``)."""
    return str(browser_path(text, data_roots(runs_dir()), "checkpoint path"))


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
