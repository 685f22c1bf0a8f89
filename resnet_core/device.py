"""Which device a run uses, and the lock that keeps seeding and weight initialisation one atomic step."""
from __future__ import annotations

import threading

import torch

# Seeding the global RNG and drawing a model's initial weights must not interleave with another thread
# doing the same (runs trained at once as threads, an analysis building a fresh net): one lock for both.
MODEL_INIT_LOCK = threading.Lock()


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device mps was asked for but MPS is not available; use --device cpu or auto")
    return dev
