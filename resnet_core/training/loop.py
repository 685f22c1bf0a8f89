"""The instrumented trainer: one function for CPU, CUDA and MPS.

``train(cfg, on_event, stop, pause)`` reports everything through ``on_event(dict)``; it knows nothing
of files or of any user interface (the run store and the dashboard subscribe to its events).
Events, in order: ``start`` (layout, sizes), then per logged step ``step`` (loss, accuracy, learning
rate, throughput, probes), ``eval`` (test loss/accuracy), ``features`` (feature maps of the probe
image), ``checkpoint`` (carries the live model; the subscriber saves it), and the function returns a
``TrainResult`` whose status is finished, stopped or diverged.

The loop itself is the paper's step (forward, loss, backward, update); around it, small collaborators
are called at named moments: ``Control`` (stop and pause) before a step, ``StepMonitor`` after the
backward pass (which steps are logged, the one host copy of their statistics, divergence, checked
before the update), ``Throughput`` (images/s of training alone), and the ``Callback``s ``Evaluation``,
``FeatureMaps`` and ``Checkpoints`` after each step and once after the last.

Under torchrun, ``dist`` (resnet_core/training/distributed.py) makes the same loop data-parallel: the model
runs inside DistributedDataParallel, the loader yields this rank's shard of the global batch, the
logged loss/accuracy and the test evaluation are all-reduced, and the ranks agree on stopping each
step. ``resume`` (``checkpoints.load_train_state``) continues a run from its checkpoint's step.
"""
from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from resnet_core.config import RunConfig, TrainConfig
from resnet_core.device import MODEL_INIT_LOCK, resolve_device
from resnet_core.data import BatchLoader, Dataset, iter_test_batches, load_dataset
from resnet_core.training.distributed import DistContext
from resnet_core import memory
from resnet_core.nets.models import CifarResNet, build_model, count_params, legacy_preact_stem
from resnet_core.training.probes import ProbeSet, feature_maps, probe_layout, probes

Event = dict
OnEvent = Callable[[Event], None]


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        # Linear warm-up from lr/10; the paper trains ResNet-110 at 0.01 until training error < 80%.
        return cfg.lr * (0.1 + 0.9 * step / cfg.warmup_steps)
    if cfg.schedule == "step":
        # The paper divides by 10 at 32k and 48k of 64k iterations: 50% and 75% of the run.
        return cfg.lr * (0.1 ** ((step >= 0.5 * total) + (step >= 0.75 * total)))
    if cfg.schedule == "cosine":
        done = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
    return cfg.lr


@dataclass
class TrainResult:
    status: str                       # finished, stopped, diverged
    steps: int                        # optimizer steps taken
    train_loss: float | None = None   # last logged
    train_acc: float | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    seconds: float = 0.0
    images_per_s: float = 0.0
    message: str = ""
    extra: dict = field(default_factory=dict)


@torch.no_grad()
def evaluate(model: nn.Module, ds: Dataset, device: torch.device, batch_size: int = 256,
             limit: int | None = None, amp: bool = False, dist: DistContext | None = None) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on the test split, ``limit`` batches at most; with ``dist``
    each rank evaluates every world_size-th batch and the sums are all-reduced."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    n = 0
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    if dist is not None:
        dist.broadcast_buffers(model)  # every shard is scored with the same (rank 0's) BN statistics
    try:
        for i, (x, y) in enumerate(iter_test_batches(ds, batch_size, device, limit=limit)):
            if i % world != rank:
                continue
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
    finally:
        model.train(was_training)
    if dist is not None:
        totals = dist.sum_over_ranks(torch.stack([loss_sum, correct.float(), torch.tensor(float(n), device=device)]))
        loss_sum, correct, n = totals[0], totals[1], int(totals[2].item())
    return (loss_sum / max(n, 1)).item(), (correct / max(n, 1)).item()


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


# --- the loop's collaborators, each called at a named moment ---------------------------------------

class Throughput:
    """Images per second of training alone: pauses, evaluations, feature maps, checkpoints and the
    subscribers' handling of each record are left out of the clock."""

    def __init__(self) -> None:
        self.window_start = time.perf_counter()
        self.images = 0
        self.train_seconds = 0.0

    def add(self, images: int) -> None:
        self.images += images

    @contextmanager
    def excluded(self) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.window_start += time.perf_counter() - t

    def lap(self) -> tuple[float, float]:
        """(now, images/s since the last lap); starts the next window."""
        now = time.perf_counter()
        elapsed = max(now - self.window_start, 1e-9)
        rate = self.images / elapsed
        self.train_seconds += elapsed
        self.window_start, self.images = now, 0
        return now, rate


class Control:
    """Stop and pause requests. A single process honours ``stop`` at once; under torchrun the ranks
    stop together, at the step after any rank was asked to (agreed in ``StepMonitor.read``)."""

    def __init__(self, stop: threading.Event, pause: threading.Event | None, distributed: bool):
        self.stop, self.pause, self.distributed = stop, pause, distributed
        self.peers_agreed = False

    def stop_now(self) -> bool:
        return self.peers_agreed or (not self.distributed and self.stop.is_set())

    def paused(self) -> bool:
        return self.pause is not None and self.pause.is_set()

    def wait_out_pause(self) -> None:
        while self.pause is not None and self.pause.is_set() and not self.stop.is_set():
            time.sleep(0.05)


@dataclass
class Readout:
    """What the host learns of one step: the loss (global under torchrun), and on logged steps the
    accuracy and the probes; ``diverged`` holds the message when the loss is not finite."""
    loss: float | None = None
    acc: float | None = None
    probes: dict = field(default_factory=dict)
    diverged: str = ""


class StepMonitor:
    """Which steps are logged, and the one device->host copy of a logged step's statistics (loss,
    accuracy, every probe) together; on the other steps, only whether the loss is finite."""

    def __init__(self, tc: TrainConfig, total: int, dist: DistContext | None, control: Control):
        self.tc, self.total, self.dist, self.control = tc, total, dist, control

    def logs(self, step: int) -> bool:
        """Whether optimizer step ``step`` (1-based) is logged; with probes, the first step is."""
        every = self.tc.log_every
        return step == self.total or (step - 1 if self.tc.probes else step) % every == 0

    def read(self, step: int, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
             ps: ProbeSet, logged: bool) -> Readout:
        if self.dist is not None:  # the global batch's loss and accuracy; the ranks' stop requests
            global_loss, global_acc, self.control.peers_agreed = self.dist.step_stats(
                loss, logits, y, self.control.stop.is_set())
        if logged:
            parts = [loss.detach().reshape(1).float(), (logits.argmax(1) == y).float().mean().reshape(1)]
            if self.tc.probes:
                parts += ps.device_stats()
            host = torch.cat(parts).tolist()  # the one device->host copy of this step
            if self.dist is not None:
                host[0], host[1] = global_loss, global_acc
            if not math.isfinite(host[0]):
                return Readout(loss=host[0], diverged=f"loss became {host[0]} at step {step}; lower the learning rate")
            return Readout(loss=host[0], acc=host[1], probes=ps.split(host[2:]) if self.tc.probes else {})
        # Unlogged steps still must not step into NaN weights. Reading one bool is a sync on CUDA each
        # step, the price of stopping exactly at the step that diverged.
        if not (math.isfinite(global_loss) if self.dist is not None else torch.isfinite(loss).item()):
            return Readout(loss=float(loss.detach()),
                           diverged=f"loss became non-finite at step {step}; lower the learning rate")
        return Readout()


class Callback:
    """Work done between optimizer steps (off the throughput clock) and once after the last one."""

    def after_step(self, step: int) -> None:
        pass

    def after_training(self, result: TrainResult) -> None:
        pass


class Evaluation(Callback):
    """Test loss and accuracy: on ``eval_batches`` batches every ``eval_every`` steps, on the whole
    test split at the end (the result's figures)."""

    def __init__(self, emit: OnEvent, model: nn.Module, ds: Dataset, device: torch.device, tc: TrainConfig,
                 total: int, amp: bool, dist: DistContext | None):
        self.emit, self.model, self.ds, self.device, self.tc = emit, model, ds, device, tc
        self.total, self.amp, self.dist = total, amp, dist
        self.last: tuple[float, float] | None = None

    def after_step(self, step: int) -> None:
        if self.tc.eval_every and step % self.tc.eval_every == 0 and step < self.total:
            self.last = evaluate(self.model, self.ds, self.device, limit=self.tc.eval_batches, amp=self.amp,
                                 dist=self.dist)
            self.emit({"type": "eval", "step": step, "test_loss": self.last[0], "test_acc": self.last[1],
                       "partial": True})

    def after_training(self, result: TrainResult) -> None:
        if result.steps > 0:
            result.test_loss, result.test_acc = evaluate(self.model, self.ds, self.device, amp=self.amp,
                                                         dist=self.dist)
            self.emit({"type": "eval", "step": result.steps, "test_loss": result.test_loss,
                       "test_acc": result.test_acc, "partial": False})


class FeatureMaps(Callback):
    """Feature maps of one fixed test image at step 1, every ``every`` steps and at the end."""

    def __init__(self, emit: OnEvent, model: CifarResNet, image: torch.Tensor, every: int):
        self.emit, self.model, self.image, self.every = emit, model, image, every  # image: (1, 3, H, W)

    def after_step(self, step: int) -> None:
        if step % self.every == 0 or step == 1:
            self.emit({"type": "features", "step": step, "maps": feature_maps(self.model, self.image)})

    def after_training(self, result: TrainResult) -> None:
        if result.steps > 0:
            self.emit({"type": "features", "step": result.steps, "maps": feature_maps(self.model, self.image)})


class Checkpoints(Callback):
    """Hands the live model, optimizer and loader to the subscriber (which saves them) every ``every``
    steps and at the end."""

    def __init__(self, emit: OnEvent, model: nn.Module, opt: torch.optim.Optimizer, loader: BatchLoader,
                 every: int, total: int):
        self.emit, self.model, self.opt, self.loader, self.every, self.total = emit, model, opt, loader, every, total

    def _save(self, step: int, final: bool) -> None:
        self.emit({"type": "checkpoint", "step": step, "model": self.model, "final": final,
                   "optimizer": self.opt, "loader": self.loader})

    def after_step(self, step: int) -> None:
        if self.every and step % self.every == 0 and step < self.total:
            self._save(step, final=False)

    def after_training(self, result: TrainResult) -> None:
        self._save(result.steps, final=True)


def train(cfg: RunConfig, on_event: OnEvent | None = None, stop: threading.Event | None = None,
          pause: threading.Event | None = None, dataset: Dataset | None = None,
          model: CifarResNet | None = None, dist: DistContext | None = None,
          resume: dict | None = None) -> TrainResult:
    emit = on_event or (lambda e: None)
    stop = stop or threading.Event()
    tc = cfg.train
    device = dist.device if dist is not None else resolve_device(tc.device)
    if model is None:  # before the data set and the model are allocated: refused with one line
        memory.check_training(cfg, str(device))
    ds = dataset if dataset is not None else load_dataset(cfg.data)
    if cfg.model.num_classes != len(ds.classes):
        raise ValueError(f"the model has {cfg.model.num_classes} classes but the data set has {len(ds.classes)}")

    # Model init draws from the global RNG; the data order from the loader's own generator, so a
    # plain net and its residual twin with one seed see identical batches.
    # The global RNG is process-wide: the dashboard trains several runs in threads of one process, so
    # seeding and drawing the initial weights happen under a lock, or two runs starting together
    # would interleave their draws and neither init would match the same seed's CLI run.
    with MODEL_INIT_LOCK:
        torch.manual_seed(tc.seed)
        if model is None:  # a pre-activation run saved before the stem's BN resumes in its own layout
            model = build_model(cfg.model, resume is not None and legacy_preact_stem(cfg.model, resume["model"]))
    if resume is not None:
        model.load_state_dict(resume["model"])
    amp = tc.amp and device.type == "cuda"
    # channels_last lets oneDNN (CPU) and cuDNN (CUDA) pick their fast NHWC kernels: measured 4x faster
    # per training step for ResNet-8 on a 2-core x86 CPU (bench/train_overhead.py prints both).
    memory_format = torch.channels_last if (tc.channels_last and device.type in ("cpu", "cuda")) else torch.contiguous_format
    model = model.to(device, memory_format=memory_format).train()
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    net = dist.wrap(model) if dist is not None else model   # what the forward pass calls; probes hook `model`
    loader = BatchLoader(ds, tc.batch_size, device, seed=tc.seed, augment=cfg.data.augment,
                         pca_color=cfg.data.pca_color, channels_last=memory_format is torch.channels_last,
                         shard=(rank, world))
    total = tc.total_steps(len(ds.train_y))
    opt = make_optimizer(model, tc)
    first_step = 0
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        loader.load_state_dict(resume["loader"])
        first_step = int(resume["step"])

    emit({"type": "start", "total_steps": total, "device": str(device), "params": count_params(model),
          "classes": list(ds.classes), "layout": probe_layout(model).to_dict(), "n_train": len(ds.train_y),
          "n_test": len(ds.test_y), "steps_per_epoch": loader.steps_per_epoch, "world_size": world,
          "first_step": first_step})
    if resume is None and rank == 0:
        # The weights at step 0, kept as checkpoints/init.pt for the initial -> trained line of
        # resnet_core/analysis/landscape.py (Goodfellow et al. 2015).
        emit({"type": "init_weights", "step": 0, "model": model})

    control = Control(stop, pause, distributed=dist is not None)
    monitor = StepMonitor(tc, total, dist, control)
    evaluation = Evaluation(emit, model, ds, device, tc, total, amp, dist)
    callbacks: list[Callback] = [evaluation]
    if tc.feature_maps_every and rank == 0:  # feature maps are written by rank 0 only
        probe_image = next(iter_test_batches(ds, 1, device))[0]  # (1, 3, H, W): the fixed probe image
        callbacks.append(FeatureMaps(emit, model, probe_image, tc.feature_maps_every))
    callbacks.append(Checkpoints(emit, model, opt, loader, tc.checkpoint_every, total))

    result = TrainResult(status="finished", steps=first_step)
    t_start = time.perf_counter()
    clock = Throughput()
    with probes(model) as ps:
        step = first_step
        while step < total:
            if control.stop_now():
                result.status = "stopped"
                break
            if control.paused():
                result.extra["paused"] = True   # its wall time is no measure of its cost (history.py)
                with clock.excluded():
                    control.wait_out_pause()
                continue
            lr = set_lr(opt, lr_at(step, total, tc))
            logged = monitor.logs(step + 1)
            ps.armed = logged and tc.probes
            # the step: forward, loss, backward; the update follows once the loss is known finite
            x, y = loader.next()                                    # (B, 3, H, W), (B,)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = net(x)                                     # (B, classes)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ps.armed = False
            step += 1
            clock.add(len(y) * world)
            seen = monitor.read(step, loss, logits, y, ps, logged)
            if seen.diverged:  # checked before the update: the weights stay finite
                result.status, result.steps, result.message = "diverged", step, seen.diverged
                emit({"type": "diverged", "step": step, "loss": seen.loss, "lr": lr})
                break
            opt.step()
            result.steps = step
            if logged:
                now, images_per_s = clock.lap()
                result.train_loss, result.train_acc = seen.loss, seen.acc
                with clock.excluded():
                    emit({"type": "step", "step": step, "epoch": round(step / loader.steps_per_epoch, 4),
                          "t": round(now - t_start, 4), "lr": lr, "train_loss": seen.loss, "train_acc": seen.acc,
                          "images_per_s": images_per_s, **seen.probes})
            with clock.excluded():
                for c in callbacks:
                    c.after_step(step)

    result.seconds = time.perf_counter() - t_start
    trained_images = (result.steps - first_step) * tc.batch_size
    result.images_per_s = trained_images / clock.train_seconds if clock.train_seconds > 0 else 0.0
    if result.status != "diverged":
        for c in callbacks:
            c.after_training(result)
    elif evaluation.last is not None:
        result.test_loss, result.test_acc = evaluation.last
    emit({"type": "end", "status": result.status, "steps": result.steps, "message": result.message,
          "seconds": result.seconds, "images_per_s": result.images_per_s})
    return result
