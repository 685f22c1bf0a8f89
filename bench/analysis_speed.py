"""How long the Why it works analyses take, and how much memory, measured side by side in one run.

1. The gradient-flow depth sweep (8 to 1,202 layers, residual and plain, batch 8), and one 1,202-layer
   net at batch 32 alone: time and peak memory. Each runs in a fresh process, so that the process's peak
   resident set (ru_maxrss) is that analysis's own.
2. A lesion study of the community ResNet-56 (../shared/weights) on 1,000 images. There is no CIFAR-10 on
   this machine: the images are the embedded shapes set, so the errors themselves mean nothing here (the
   net was trained on CIFAR-10); the time is what is measured.
3. A 21x21 loss landscape on 500 training images of a quick-scale ResNet-20 (width 0.5, 16x16 inputs):
   the per-point loop and the vmap-batched pass timed on the same 16 grid points first, then the whole
   grid with the faster one.

    .venv/bin/python bench/analysis_speed.py [--quick] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WEIGHTS = ROOT.parent / "shared" / "weights"

SWEEP = (8, 20, 56, 110, 218, 434, 1202)


def _child(code: str) -> dict:
    """Runs ``code`` in a fresh interpreter; it prints one JSON line; adds the child's peak RSS in MiB."""
    wrapper = code + "\nimport resource, json as _j\n" \
        "print(_j.dumps({**OUT, 'process_peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    p = subprocess.run([sys.executable, "-c", wrapper], cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"child failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_gradient_flow(device: str, depths) -> None:
    print(f"== gradient flow at initialisation, {device}")
    base = _child("import resource\nOUT = {'baseline_rss_mb': 0}\nimport torch, resnet_core.analysis")
    print(f"  interpreter + torch + resnet_core alone: {base['process_peak_rss_mb']:.0f} MiB peak RSS")
    code = f"""
from resnet_core.analysis import run_analysis, ModelSource
from resnet_core.config import ModelConfig, DataConfig
r = run_analysis("gradient-flow", ModelSource(config=ModelConfig(depth=8)), device={device!r},
                 data=DataConfig(n_train=64, n_test=16),
                 settings={{"batch_size": 8, "depths": {list(depths)}, "sweep_batch_size": 8}})
OUT = {{"sweep_seconds": r["sweep_seconds"], "sweep": [{{k: e[k] for k in ("model", "ratio", "seconds",
        "peak_memory_mb", "stored_activation_mb")}} for e in r["sweep"]]}}
"""
    r = _child(code)
    print(f"  sweep of {len(r['sweep'])} nets (depths {', '.join(map(str, depths))}, residual and plain, "
          f"batch 8): {r['sweep_seconds']:.1f} s, process peak RSS {r['process_peak_rss_mb']:.0f} MiB")
    print(f"  {'net':<12} {'seconds':>8} {'stored MiB':>10} {'ratio |dL/dx_0|/|dL/dx_L|':>26}")
    for e in r["sweep"]:
        print(f"  {e['model']:<12} {e['seconds']:>8.2f} {e['stored_activation_mb']:>10.1f} {e['ratio']:>26.4g}")
    for batch in (8, 32):
        code = f"""
from resnet_core.analysis import run_analysis, ModelSource
from resnet_core.config import ModelConfig, DataConfig
r = run_analysis("gradient-flow", ModelSource(config=ModelConfig(depth=1202)), device={device!r},
                 data=DataConfig(n_train=64, n_test=16), settings={{"batch_size": {batch}}})
OUT = {{"seconds": r["seconds"], "stored": r["stored_activation_mb"], "ratio": r["ratio"],
        "peak_memory_mb": r["peak_memory_mb"]}}
"""
        r = _child(code)
        extra = f", CUDA peak allocated {r['peak_memory_mb']:.0f} MiB" if device != "cpu" else ""
        print(f"  ResNet-1202 alone at batch {batch}: {r['seconds']:.1f} s, stored block inputs {r['stored']:.0f} MiB, "
              f"process peak RSS {r['process_peak_rss_mb']:.0f} MiB{extra}")


def bench_lesion(device: str, images: int) -> None:
    hits = sorted(WEIGHTS.glob("resnet56-*.th"))
    if not hits:
        print("== lesion: ../shared/weights/resnet56-*.th not present, skipped")
        return
    from resnet_core.analysis import ModelSource, estimate_cost, run_analysis
    from resnet_core.config import DataConfig

    data = DataConfig(n_train=10, n_test=images)
    src = ModelSource(checkpoint=str(hits[0]))
    est = estimate_cost("lesion", src, {"images": images}, data, device=device)
    t0 = time.perf_counter()
    r = run_analysis("lesion", src, data=data, settings={"images": images}, device=device)
    wall = time.perf_counter() - t0
    n_variants = sum(s["error"] is not None for s in r["single"]) + sum(b["draws"] for b in r["by_count"]) + len(r["reorder"])
    print(f"== lesion study, community ResNet-56 on {r['images']} shapes images (not CIFAR-10), {device}")
    print(f"  {n_variants} variants ({len(r['single'])} single deletions, {len(r['by_count'])} counts x draws, "
          f"{len(r['reorder'])} reorders): {r['seconds']:.1f} s ({wall:.1f} s with loading); estimate was "
          f"{est['seconds']:.0f} s ({est['detail']})")


def bench_landscape(device: str, points: int, images: int) -> None:
    import torch

    from resnet_core.analysis import ModelSource, run_analysis
    from resnet_core.analysis.landscape import (_params_and_buffers, filter_normalized_direction, linspace,
                                                loss_surface)
    from resnet_core.nets.checkpoints import save_checkpoint
    from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from resnet_core.data import SHAPE_CLASSES, load_dataset, normalize
    from resnet_core.nets.models import build_model
    from resnet_core.training.runs import RunStore

    try:
        mcfg = ModelConfig(depth=20, width=0.5)
        data = DataConfig(n_train=images, n_test=100, image_size=16)
        scale = "width 0.5, 16x16 inputs"
    except Exception:  # noqa: BLE001 - a tree without the quick scale: the full-size net
        mcfg, data, scale = ModelConfig(depth=20), DataConfig(n_train=images, n_test=100), "32x32 inputs"
    print(f"== loss landscape, ResNet-20 ({scale}), {points}x{points} grid on {images} training images, {device}")
    torch.manual_seed(0)
    model = build_model(mcfg).to(device).eval()
    ds = load_dataset(data)
    x = normalize(ds.train_x[:images], ds.mean, ds.std).to(device)
    y = ds.train_y[:images].to(device)
    params, _ = _params_and_buffers(model)
    g = torch.Generator().manual_seed(0)
    d1, d2 = filter_normalized_direction(params, g), filter_normalized_direction(params, g)
    if device == "cpu":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    xs = linspace(-1, 1, 4)
    timings: dict[str, list[float]] = {}
    for _ in range(2):  # interleaved rounds, the faster of two each: a shared machine's load drifts
        for method, ppp in (("loop", 1), ("vmap", 4), ("vmap", 16)):
            t0 = time.perf_counter()
            loss_surface(model, d1, d2, xs, xs, x, y, batch_size=500, method=method, points_per_pass=ppp)
            timings.setdefault(f"{method}" + (f" x{ppp}" if method == "vmap" else ""), []).append(time.perf_counter() - t0)
    timings = {k: min(v) for k, v in timings.items()}
    best = min(timings, key=timings.get)
    print("  16 grid points (best of 2 interleaved rounds): " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
          + f" -> {best} is {max(timings.values()) / timings[best]:.2f}x the slowest")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(model=mcfg, data=data, train=TrainConfig(steps=1), name="bench")
        writer = RunStore(tmp).create(cfg, status="finished")
        save_checkpoint(writer.path / "checkpoints" / "last.pt", build_model(mcfg), cfg.to_dict(), step=1,
                        classes=list(SHAPE_CLASSES), mean=ds.mean, std=ds.std)
        writer.close()
        method = best.split()[0]
        t0 = time.perf_counter()
        r = run_analysis("landscape", ModelSource(run_id=writer.run_id), runs_dir=tmp, device=device,
                         settings={"points": points, "images": images, "method": method,
                                   "points_per_pass": int(best.split("x")[-1]) if "x" in best else 4})
        t1 = time.perf_counter()
        again = run_analysis("landscape", ModelSource(run_id=writer.run_id), runs_dir=tmp, device=device,
                             settings={"points": points, "images": images, "method": method,
                                       "points_per_pass": int(best.split("x")[-1]) if "x" in best else 4})
        t2 = time.perf_counter()
    print(f"  whole grid with {best}: {r['seconds']:.1f} s ({points * points} points, "
          f"{r['seconds'] / points ** 2 * 1000:.0f} ms a point); reopened from the run's cache in "
          f"{(t2 - t1) * 1000:.0f} ms (cached: {again['cached']})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="smaller: sweep to 218, 200 images, an 11x11 grid")
    a = ap.parse_args()
    import torch

    from resnet_core.memory import keep_freed_memory

    keep_freed_memory()   # as the dashboard's server and `python -m resnet_core analyze`

    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    depths = SWEEP[:5] if a.quick else SWEEP
    bench_gradient_flow(a.device, depths)
    bench_lesion(a.device, 200 if a.quick else 1000)
    bench_landscape(a.device, 11 if a.quick else 21, 200 if a.quick else 500)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (2-core machine shared with other work: "
          "figures are upper bounds for a quiet one)")


if __name__ == "__main__":
    main()
