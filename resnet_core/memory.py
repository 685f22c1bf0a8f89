"""Memory a run, an analysis or a checkpoint needs, from its config alone, and the budget it must fit.

Nothing here builds a model: parameters, multiply-adds and activation sizes are counted from the
architecture (the same walk ``CifarResNet`` makes), so a request for a 5e9-parameter net is refused
in microseconds instead of being allocated. A test checks the counts against built models.

A training step holds the weights, their gradients and SGD's momentum (three float32 copies), the
activations autograd saves for the backward pass (per image, times the batch) and the data set
(uint8 images). The budget is a share of the memory free on the device when the check runs
(``MemAvailable`` on the CPU, ``torch.cuda.mem_get_info`` on a GPU), or ``RESNET_LAB_MEMORY_BUDGET_GB``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from resnet_core.config import ConfigError, ModelConfig, RunConfig

BUDGET_ENV = "RESNET_LAB_MEMORY_BUDGET_GB"
FREE_SHARE = 0.7            # of the memory free when the check runs: other runs and the server need room
FLOAT = 4                   # bytes of a float32
# Tensors autograd keeps in training: each conv's output (for BatchNorm), each BatchNorm's output (for
# the ReLU), each block's sum. Measured with torch's saved-tensor hooks, the real figure is 0.8-0.85 of
# this count (tests/unit/test_memory.py); the rest is headroom for the gradients of the backward pass.
SAVED_PER_CONV = 1
SAVED_PER_BN = 1
SAVED_PER_BLOCK = 1
INFERENCE_LIVE = 4          # layer outputs alive at once in a forward pass without autograd
WORKSPACE = 256 * 2**20     # the framework itself, kernels' scratch space, the loader's batch


class MemoryBudgetError(ConfigError):
    """A config whose estimated memory exceeds the budget; the message names both."""


@dataclass(frozen=True)
class Estimate:
    params: int
    weights_bytes: int          # parameters + buffers (BatchNorm statistics), float32
    activation_bytes: int       # per image in a training step (forward + saved for backward)
    macs: int                   # multiply-adds of one forward pass of one image
    peak_layer_bytes: int = 0   # per image: the largest single layer output

    def training_bytes(self, batch: int, data_bytes: int = 0) -> int:
        """Weights, gradients and momentum, activations of a batch, the data set, the workspace."""
        return 3 * self.weights_bytes + self.activation_bytes * batch + data_bytes + WORKSPACE

    def inference_bytes(self, batch: int = 1) -> int:
        """Without autograd only a few layer outputs are alive at once (a block's input, its branch,
        its shortcut, the sum): four of the largest per image."""
        return self.weights_bytes + INFERENCE_LIVE * self.peak_layer_bytes * batch + WORKSPACE


def _layers(cfg: ModelConfig, image_size: int):
    """(kind, cin, cout, k, out_side) for every conv ('conv'), BatchNorm ('bn') and block ('block') in
    network order, as ``CifarResNet`` builds them."""
    expansion = 1 if cfg.block == "basic" else 4
    widths, n, bn = cfg.stage_widths, cfg.n, cfg.batchnorm
    side = image_size
    yield ("conv", 3, widths[0], 3, side)
    if bn and not cfg.preact:
        yield ("bn", widths[0], widths[0], 0, side)
    cin = widths[0]
    for i, planes in enumerate(widths):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            out_side = (side - 1) // stride + 1
            cout = planes * expansion
            if cfg.block == "basic":
                convs = [(cin, planes, 3, out_side), (planes, cout, 3, out_side)]
            else:
                convs = [(cin, planes, 1, side), (planes, planes, 3, out_side), (planes, cout, 1, out_side)]
            for a, b, k, s in convs:
                if bn:  # before the conv (pre-activation) or after it
                    yield ("bn", 0, a if cfg.preact else b, 0, s)
                yield ("conv", a, b, k, s)
            if cfg.residual:
                changes = stride != 1 or cin != cout
                if cfg.shortcut == "C" or (cfg.shortcut == "B" and changes):
                    yield ("conv", cin, cout, 1, out_side)
                    if bn:
                        yield ("bn", cout, cout, 0, out_side)
            yield ("block", cout, cout, 0, out_side)
            cin, side = cout, out_side
    if bn and cfg.preact:
        yield ("bn", cin, cin, 0, side)
    yield ("fc", cin, cfg.num_classes, 0, 1)


def estimate(cfg: ModelConfig, image_size: int = 32) -> Estimate:
    """Parameters, weight bytes, training activations per image and forward multiply-adds of ``cfg``."""
    params = buffers = macs = act = peak = 0
    bias = not cfg.batchnorm
    for kind, cin, cout, k, side in _layers(cfg, image_size):
        peak = max(peak, cout * side * side * FLOAT)
        if kind == "conv":
            params += cin * cout * k * k + (cout if bias else 0)
            macs += side * side * cout * cin * k * k
            act += SAVED_PER_CONV * cout * side * side * FLOAT
        elif kind == "bn":
            params += 2 * cout
            buffers += 2 * cout + 1
            act += SAVED_PER_BN * cout * side * side * FLOAT
        elif kind == "block":
            act += SAVED_PER_BLOCK * cout * side * side * FLOAT
        elif kind == "fc":
            params += cin * cout + cout
            macs += cin * cout
    act += 3 * image_size * image_size * FLOAT
    return Estimate(params, (params + buffers) * FLOAT, act, macs, peak)


def data_bytes(cfg: RunConfig) -> int:
    """The data set in memory: uint8 images (synthetic sets also keep a mask per image)."""
    d = cfg.data
    side = d.image_size
    if d.name == "synthetic":
        return (d.n_train + d.n_test) * (3 * side * side + side * side)
    if d.name == "cifar10":
        return 60_000 * 3 * (32 * 32 + side * side)
    return 0  # a folder: unknown until it is read; the loader bounds its image count


def training_bytes(cfg: RunConfig) -> int:
    return estimate(cfg.model, cfg.data.image_size).training_bytes(cfg.train.batch_size, data_bytes(cfg))


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def free_bytes(device: str = "cpu") -> int | None:
    """Memory free on ``device`` now (``cpu``, ``cuda``, ``cuda:N``, ``auto``), None when unknown."""
    if device.startswith("cuda") or device == "auto":
        try:
            import torch

            if torch.cuda.is_available():
                index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
                return int(torch.cuda.mem_get_info(index)[0])
        except Exception:  # noqa: BLE001 - no usable GPU: fall back to host memory
            pass
    return _meminfo_available()


def budget_bytes(device: str = "cpu") -> int | None:
    """``RESNET_LAB_MEMORY_BUDGET_GB`` when set, else ``FREE_SHARE`` of the free memory; None: unknown."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if raw:
        try:
            gb = float(raw)
        except ValueError:
            gb = float("nan")
        if not gb > 0 or gb == float("inf"):
            raise MemoryBudgetError(f"{BUDGET_ENV} must be a positive number of GB; got {raw!r}")
        return int(gb * 2**30)
    free = free_bytes(device)
    return None if free is None else int(free * FREE_SHARE)


def gb(n: float) -> str:
    return f"{n / 2**30:.2f} GB" if n < 10 * 2**30 else f"{n / 2**30:.0f} GB"


def check(needed: int, what: str, device: str = "cpu", hint: str = "") -> None:
    """Raises ``MemoryBudgetError`` when ``needed`` bytes exceed the budget of ``device``."""
    budget = budget_bytes(device)
    if budget is not None and needed > budget:
        source = BUDGET_ENV if os.environ.get(BUDGET_ENV, "").strip() else f"{FREE_SHARE:.0%} of the free memory"
        raise MemoryBudgetError(f"{what} needs about {gb(needed)} of memory; the budget is {gb(budget)} "
                                f"({source}){': ' + hint if hint else ''}")


def check_training(cfg: RunConfig, device: str | None = None) -> int:
    """Refuses a run whose estimated training memory exceeds the budget; returns the estimate."""
    needed = training_bytes(cfg)
    check(needed, f"training {cfg.label} at batch {cfg.train.batch_size}", device or cfg.train.device,
          "use a smaller batch, width, depth, input size or data set")
    return needed


def check_model(cfg: ModelConfig, image_size: int = 32, batch: int = 1, what: str = "the model",
                device: str = "cpu") -> int:
    """Refuses loading or running ``cfg`` (inference, ``batch`` images) beyond the budget."""
    needed = estimate(cfg, image_size).inference_bytes(batch)
    check(needed, f"{what} ({cfg.name})", device, "use a smaller model")
    return needed


# ----------------------------------------------------------------------------------------------------
# The CPU allocator
# ----------------------------------------------------------------------------------------------------

MMAP_THRESHOLD = 256 << 20
TOP_PAD = 64 << 20


def keep_freed_memory() -> bool:
    """Asks glibc's malloc to keep freed activation memory for the next pass instead of returning it to
    the system: PyTorch has no caching allocator on the CPU, and with glibc's defaults every forward pass
    of a batch of 256 32x32 images took fresh pages from the kernel (its buffers of 16 MB were unmapped
    or trimmed when freed and faulted in anew the next time). Blocks under ``MMAP_THRESHOLD`` now come
    from the heap and ``TOP_PAD`` of free space stays at its top. Measured on the 2-core CPU
    (bench/allocator.py): a ResNet-20 forward at batch 256 ran at 1.5-1.7x the rate, the lesion study of
    a ResNet-56 took 0.77x the time; training steps changed within noise; peak memory did not grow.
    Set once per process, before the work (``python -m resnet_core``, the dashboard's server and its
    training processes); False where the C library is not glibc (nothing changes there)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("RESNET_LAB_MALLOC") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # musl and others: no mallopt
        return False
    M_TOP_PAD, M_MMAP_THRESHOLD = -2, -3
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TOP_PAD, TOP_PAD))
