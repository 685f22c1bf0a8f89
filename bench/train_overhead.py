"""Cost of the instrumentation: the same model and batches through a bare PyTorch loop and through
the instrumented trainer with every probe on at every step (gradient norms, branch responses,
activation statistics, dead ReLUs; feature maps every 50 steps). Rounds alternate so both see the
same machine load; medians are reported.

    python bench/train_overhead.py [--depth 20] [--batch-size 128] [--steps 30] [--rounds 3] [--device auto]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.data import BatchLoader, load_dataset
from resnet_core.nets.models import build_model, count_macs
from resnet_core.device import resolve_device
from resnet_core.training.loop import make_optimizer, train


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(cfg: RunConfig, ds, device, warmup: int) -> float:
    """images/s of a plain training loop over the same batches, same settings, no instrumentation."""
    tc = cfg.train
    torch.manual_seed(tc.seed)
    fmt = torch.channels_last if tc.channels_last and device.type in ("cpu", "cuda") else torch.contiguous_format
    model = build_model(cfg.model).to(device, memory_format=fmt).train()
    loader = BatchLoader(ds, tc.batch_size, device, seed=tc.seed, augment=cfg.data.augment,
                         channels_last=fmt is torch.channels_last)
    opt = make_optimizer(model, tc)
    amp = tc.amp and device.type == "cuda"
    for i in range(tc.steps + warmup):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        x, y = loader.next()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # the bare loop also looks at its loss once a step, as any training loop does
    _sync(device)
    return tc.steps * tc.batch_size / (time.perf_counter() - t0)


def instrumented(cfg: RunConfig, ds, warmup: int) -> float:
    """images/s of train() between its step `warmup` and its last step."""
    stamps = {}

    def on_event(e):
        if e["type"] == "step" and e["step"] in (warmup, cfg.train.steps + warmup):
            stamps[e["step"]] = time.perf_counter()

    long_cfg = RunConfig(model=cfg.model, data=cfg.data,
                         train=TrainConfig(**{**cfg.train.to_dict(), "steps": cfg.train.steps + warmup}))
    train(long_cfg, on_event, dataset=ds)
    return cfg.train.steps * cfg.train.batch_size / (stamps[cfg.train.steps + warmup] - stamps[warmup])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    try:
        device = resolve_device(a.device)
    except RuntimeError as e:  # e.g. --device cuda on a machine without one: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    data = DataConfig(n_train=4096, n_test=256)
    ds = load_dataset(data)
    cfg = RunConfig(model=ModelConfig(depth=a.depth), data=data,
                    train=TrainConfig(steps=a.steps, batch_size=a.batch_size, device=str(device), eval_every=0,
                                      log_every=1, feature_maps_every=50, probes=True))
    flop_per_image = 3 * 2 * count_macs(build_model(cfg.model))  # forward + backward ~ 3x forward
    bare, inst = [], []
    for r in range(a.rounds):
        bare.append(bare_loop(cfg, ds, device, a.warmup))
        inst.append(instrumented(cfg, ds, a.warmup))
        print(f"round {r + 1}: bare {bare[-1]:8.1f} img/s   instrumented {inst[-1]:8.1f} img/s", file=sys.stderr)
    b, i = statistics.median(bare), statistics.median(inst)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"ResNet-{a.depth}, batch {a.batch_size}, {a.steps} steps x {a.rounds} rounds on {name} (torch {torch.__version__})")
    print(f"bare PyTorch loop      {b:9.1f} img/s   {b * flop_per_image / 1e9:7.1f} GFLOP/s")
    print(f"instrumented trainer   {i:9.1f} img/s   {i * flop_per_image / 1e9:7.1f} GFLOP/s")
    print(f"ratio bare/instrumented {b / i:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
