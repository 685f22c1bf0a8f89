"""The CUDA path: training throughput of ResNet-20/56/110 and the time of the Fig. 6 preset on one GPU.

1. Images/s and achieved TFLOP/s of a bare training step (SGD, bf16 autocast, channels_last, the
   device-resident loader) at batch 128 and 512, eager and under torch.compile, measured side by
   side in one process. TFLOP/s counts 3 x 2 x multiply-adds per image (forward + backward).
2. The Fig. 6 preset at paper scale (plain-20, plain-56, ResNet-20, ResNet-56; resnet_core.experiments.presets)
   for 30 epochs of CIFAR-10-sized data, the four runs concurrently on one GPU, each in its own thread
   and CUDA stream, through the instrumented trainer the dashboard uses. CIFAR-10 from --data-dir when
   present, else a generated stand-in of the same shape (50,000 + 10,000 uint8 32x32 images).

    python bench/gpu_throughput.py                       # needs CUDA; refuses in one line otherwise
    python bench/gpu_throughput.py --device cpu --tiny   # a seconds-long smoke run of every path
    python bench/gpu_throughput.py --skip-preset         # throughput table only
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from resnet_core.config import DataConfig, ModelConfig, TrainConfig
from resnet_core.data import BatchLoader
from resnet_core.data.dataset import _make_dataset
from resnet_core.nets.models import build_model, count_macs
from resnet_core.training.loop import make_optimizer, train

CIFAR_SHAPE = (50_000, 10_000)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stand_in_dataset(n_train: int, n_test: int, size: int = 32, seed: int = 0):
    """Random uint8 images and labels of CIFAR-10's shape: the same work per step as the real set."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = lambda n: torch.randint(0, 10, (n,), generator=g)
    return _make_dataset("stand-in", [str(i) for i in range(10)], rand(n_train), labels(n_train), rand(n_test),
                         labels(n_test))


def step_throughput(depth: int, batch: int, device: torch.device, ds, compiled: bool, steps: int,
                    warmup: int) -> tuple[float, float]:
    """(images/s, TFLOP/s) of a bare training step."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=depth)).to(device, memory_format=torch.channels_last).train()
    flop_per_image = 6 * count_macs(build_model(ModelConfig(depth=depth)))
    loader = BatchLoader(ds, batch, device, seed=0, channels_last=True)
    opt = make_optimizer(model, TrainConfig(batch_size=batch))
    amp = device.type == "cuda"
    fwd = torch.compile(model) if compiled else model

    def step():
        x, y = loader.next()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):  # compilation, cuDNN autotuning, allocator warm-up
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    ips = steps * batch / (time.perf_counter() - t0)
    return ips, ips * flop_per_image / 1e12


def fig6_preset(device: torch.device, ds, data_cfg: DataConfig, epochs: float, tiny: bool) -> None:
    from resnet_core.experiments.presets import build_fig6
    from resnet_core.experiments.scales import scale_config

    base = scale_config("quick" if tiny else "paper", data_cfg, device=str(device))
    # The paper scale's settings, 30 epochs instead of 64k iterations; probes every 10th step as the preset has.
    train_cfg = dataclasses.replace(base.train, steps=None, epochs=epochs)
    base = dataclasses.replace(base, data=dataclasses.replace(base.data, image_size=int(ds.train_x.shape[-1])),
                               train=train_cfg)
    cfgs = build_fig6(base)
    if tiny:
        cfgs = [dataclasses.replace(c, model=dataclasses.replace(c.model, depth=8 if c.model.depth == 20 else 14))
                for c in cfgs]
    results: dict[str, object] = {}
    errors: list[str] = []

    def one(cfg):
        try:
            stream = torch.cuda.Stream(device) if device.type == "cuda" else None
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                results[cfg.label] = train(cfg, dataset=ds)
        except Exception as e:  # noqa: BLE001 - reported below; the other runs go on
            errors.append(f"{cfg.label}: {type(e).__name__}: {e}")

    flop = sum(6 * count_macs(build_model(c.model), (c.data.image_size,) * 2) * c.train.total_steps(len(ds.train_y))
               * c.train.batch_size for c in cfgs)
    _sync(device)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(c,)) for c in cfgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _sync(device)
    wall = time.perf_counter() - t0
    print(f"\nFig. 6 preset, {len(cfgs)} runs x {epochs:g} epochs of {len(ds.train_y):,} images "
          f"({ds.name}), concurrently on {device}:")
    for label, r in results.items():
        print(f"  {label:<14} {r.status:<9} {r.steps:>7} steps  test acc {r.test_acc or 0:.3f}  "
              f"{r.images_per_s:9.1f} img/s")
    for e in errors:
        print(f"  FAILED {e}")
    print(f"  wall time {wall:9.1f} s   total work {flop / 1e15:.3f} PFLOP   achieved {flop / wall / 1e12:.2f} TFLOP/s"
          f"   (moonshot: 4 runs in <= 120 s on one H100)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu together with --tiny")
    ap.add_argument("--tiny", action="store_true", help="a smoke run: small nets, few steps, small stand-in data")
    ap.add_argument("--depths", default="20,56,110")
    ap.add_argument("--batches", default="128,512")
    ap.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--skip-preset", action="store_true")
    ap.add_argument("--epochs", type=float, default=30.0, help="epochs of the Fig. 6 preset")
    ap.add_argument("--data-dir", default="data", help="holds cifar-10-batches-py; a stand-in is generated otherwise")
    a = ap.parse_args()

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here; this benchmark measures the CUDA path (use --device cpu --tiny for a smoke run)",
              file=sys.stderr)
        return 2
    if device.type != "cuda" and not a.tiny:
        print("error: on a CPU this benchmark only runs as a smoke test: add --tiny", file=sys.stderr)
        return 2
    if a.tiny:
        depths, batches, steps, warmup, epochs = [8], [16, 32], 3, 1, 0.5
        ds = stand_in_dataset(256, 64)
        data_cfg = DataConfig(n_train=256, n_test=64)
    else:
        depths = [int(d) for d in a.depths.split(",")]
        batches = [int(b) for b in a.batches.split(",")]
        steps, warmup, epochs = a.steps, a.warmup, a.epochs
        from resnet_core.experiments.scales import cifar10_present
        if cifar10_present(a.data_dir):
            from resnet_core.data import load_dataset
            data_cfg = DataConfig(name="cifar10", path=a.data_dir, download=False)
            ds = load_dataset(data_cfg)
        else:
            ds = stand_in_dataset(*CIFAR_SHAPE)
            data_cfg = DataConfig(n_train=CIFAR_SHAPE[0], n_test=CIFAR_SHAPE[1])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}, torch {torch.__version__}, bf16 autocast {'on' if device.type == 'cuda' else 'off (CPU)'}, "
          f"channels_last, {steps} timed steps after {warmup} warm-up")
    print(f"{'net':<11} {'batch':>5} {'mode':<8} {'images/s':>10} {'TFLOP/s':>8}")
    modes = [False] if a.no_compile else [False, True]
    for depth in depths:
        for batch in batches:
            eager = None
            for compiled in modes:
                try:
                    ips, tflops = step_throughput(depth, batch, device, ds, compiled, steps, warmup)
                except Exception as e:  # noqa: BLE001 - e.g. no C++ compiler for inductor: say so, go on
                    print(f"resnet-{depth:<4} {batch:>5} {'compile' if compiled else 'eager':<8} "
                          f"unavailable: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                    continue
                ratio = f"  x{ips / eager:.2f} vs eager" if compiled and eager else ""
                eager = eager or ips
                print(f"resnet-{depth:<4} {batch:>5} {'compile' if compiled else 'eager':<8} {ips:10.1f} {tflops:8.3f}{ratio}")
    if not a.skip_preset:
        fig6_preset(device, ds, data_cfg, epochs, a.tiny)
    return 0


if __name__ == "__main__":
    sys.exit(main())
