"""The instrumented trainer: one function for CPU, CUDA and MPS.

``train(cfg, on_event, stop, pause)`` reports everything through ``on_event(dict)``; it knows nothing
of files or of any user interface (the run store and the dashboard subscribe to its events).
Events, in order: ``start`` (layout, sizes), then per logged step ``step`` (loss, accuracy, learning
rate, throughput, probes), ``eval`` (test loss/accuracy), ``features`` (feature maps of the probe
image), ``checkpoint`` (carries the live model; the subscriber saves it), and the function returns a
``TrainResult`` whose status is finished, stopped or diverged.

Under torchrun, ``dist`` (resnet_core/training/distributed.py) makes the same loop data-parallel: the model
runs inside DistributedDataParallel, the loader yields this rank's shard of the global batch, the
logged loss/accuracy and the test evaluation are all-reduced, and the ranks agree on stopping each
step. ``resume`` (``checkpoints.load_train_state``) continues a run from its checkpoint's step.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from resnet_core.config import RunConfig, TrainConfig
from resnet_core.device import MODEL_INIT_LOCK, resolve_device
from resnet_core.data import BatchLoader, Dataset, iter_test_batches, load_dataset
from resnet_core.training.distributed import DistContext, inject_failure, injected_failure_step
from resnet_core import memory
from resnet_core.nets.models import CifarResNet, build_model, count_params, legacy_preact_stem
from resnet_core.training.probes import feature_maps, probe_layout, probes

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
    cuda = device.type == "cuda"
    amp = tc.amp and cuda
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
    fail_at = injected_failure_step(rank)
    probe_image = None
    if tc.feature_maps_every and rank == 0:  # feature maps are written by rank 0 only
        probe_image = next(iter_test_batches(ds, 1, device))[0]  # (1, 3, H, W): the fixed probe image

    layout = probe_layout(model)
    emit({"type": "start", "total_steps": total, "device": str(device), "params": count_params(model),
          "classes": list(ds.classes), "layout": layout.to_dict(), "n_train": len(ds.train_y),
          "n_test": len(ds.test_y), "steps_per_epoch": loader.steps_per_epoch, "world_size": world,
          "first_step": first_step})
    if resume is None and rank == 0:
        # The weights at step 0, kept as checkpoints/init.pt for the initial -> trained line of
        # resnet_core/analysis/landscape.py (Goodfellow et al. 2015).
        emit({"type": "init_weights", "step": 0, "model": model})

    result = TrainResult(status="finished", steps=0)
    t_start = time.perf_counter()
    t_window, images_window, train_seconds = time.perf_counter(), 0, 0.0
    last_eval: tuple[float, float] | None = None

    result.steps = first_step
    stop_agreed = False   # distributed: some rank was asked to stop (all-reduced with the last step)
    with probes(model) as ps:
        step = first_step
        while step < total:
            if stop_agreed or (dist is None and stop.is_set()):
                result.status = "stopped"
                break
            if pause is not None and pause.is_set():
                paused_at = time.perf_counter()
                while pause.is_set() and not stop.is_set():
                    time.sleep(0.05)
                t_window += time.perf_counter() - paused_at  # paused time is not training time
                continue
            lr = lr_at(step, total, tc)
            for g in opt.param_groups:
                g["lr"] = lr
            log_now = tc.probes and (step % tc.log_every == 0 or step == total - 1)
            ps.armed = log_now
            x, y = loader.next()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ps.armed = False
            images_window += len(y) * world
            step += 1
            if step == fail_at:
                inject_failure(step, rank)  # a test hook, off unless RESNET_LAB_FAIL_AT_STEP is set
            if dist is not None:  # the global batch's loss and accuracy; the ranks' stop requests
                global_loss, global_acc, stop_agreed = dist.step_stats(loss, logits, y, stop.is_set())
            if log_now or not tc.probes and (step % tc.log_every == 0 or step == total):
                parts = [loss.detach().reshape(1).float(), (logits.argmax(1) == y).float().mean().reshape(1)]
                if tc.probes:
                    parts += ps.device_stats()
                host = torch.cat(parts).tolist()  # the one device->host copy of this step
                if dist is not None:
                    host[0], host[1] = global_loss, global_acc
                loss_value = host[0]
                if not math.isfinite(loss_value):
                    result.status, result.steps = "diverged", step
                    result.message = f"loss became {loss_value} at step {step}; lower the learning rate"
                    emit({"type": "diverged", "step": step, "loss": loss_value, "lr": lr})
                    break
                opt.step()
                now = time.perf_counter()
                elapsed = max(now - t_window, 1e-9)
                train_seconds += elapsed
                rec = {"type": "step", "step": step, "epoch": round(step / loader.steps_per_epoch, 4),
                       "t": round(now - t_start, 4), "lr": lr, "train_loss": loss_value, "train_acc": host[1],
                       "images_per_s": images_window / elapsed}
                if tc.probes:
                    rec.update(ps.split(host[2:]))
                result.train_loss, result.train_acc = loss_value, host[1]
                emit(rec)
                t_window, images_window = time.perf_counter(), 0
            else:
                # Unlogged steps still must not step into NaN weights. Reading one bool is a sync on
                # CUDA each step, the price of stopping exactly at the step that diverged.
                if not (math.isfinite(global_loss) if dist is not None else torch.isfinite(loss).item()):
                    result.status, result.steps = "diverged", step
                    result.message = f"loss became non-finite at step {step}; lower the learning rate"
                    emit({"type": "diverged", "step": step, "loss": float(loss.detach()), "lr": lr})
                    break
                opt.step()
            result.steps = step

            paused_clock = time.perf_counter()
            if tc.eval_every and step % tc.eval_every == 0 and step < total:
                last_eval = evaluate(model, ds, device, limit=tc.eval_batches, amp=amp, dist=dist)
                emit({"type": "eval", "step": step, "test_loss": last_eval[0], "test_acc": last_eval[1],
                      "partial": True})
            if probe_image is not None and (step % tc.feature_maps_every == 0 or step == 1):
                emit({"type": "features", "step": step, "maps": feature_maps(model, probe_image)})
            if tc.checkpoint_every and step % tc.checkpoint_every == 0 and step < total:
                emit({"type": "checkpoint", "step": step, "model": model, "final": False,
                      "optimizer": opt, "loader": loader})
            t_window += time.perf_counter() - paused_clock  # evaluation is not training throughput

    result.seconds = time.perf_counter() - t_start
    trained_images = (result.steps - first_step) * tc.batch_size
    result.images_per_s = trained_images / train_seconds if train_seconds > 0 else 0.0
    if result.status != "diverged":
        if result.steps > 0:
            result.test_loss, result.test_acc = evaluate(model, ds, device, amp=amp, dist=dist)
            emit({"type": "eval", "step": result.steps, "test_loss": result.test_loss,
                  "test_acc": result.test_acc, "partial": False})
            if probe_image is not None:
                emit({"type": "features", "step": result.steps, "maps": feature_maps(model, probe_image)})
        emit({"type": "checkpoint", "step": result.steps, "model": model, "final": True,
              "optimizer": opt, "loader": loader})
    elif last_eval is not None:
        result.test_loss, result.test_acc = last_eval
    emit({"type": "end", "status": result.status, "steps": result.steps, "message": result.message,
          "seconds": result.seconds, "images_per_s": result.images_per_s})
    return result
