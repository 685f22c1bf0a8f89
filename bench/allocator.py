"""glibc's malloc with its defaults against ``resnet_core.memory.keep_freed_memory``, side by side.

    python bench/allocator.py [--rounds 2]

Each case runs in a fresh process, alternating the two settings (``RESNET_LAB_MALLOC=default`` turns the
setting off), ``--rounds`` times: a ResNet-20 forward at batch 256 on 32x32 inputs (GMAC/s, median of 10
passes after 2), 40 training steps of a ResNet-20 at batch 128 on 32x32 shapes (images/s), and the lesion
study of a ResNet-56 at initialisation saved as a checkpoint (1,000 test images, the page's defaults; its
errors mean nothing, its time is the point). Prints each figure, the process's peak resident memory,
and the ratio tuned / default of the medians. Not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASE = r'''
import json, resource, sys, tempfile, time
sys.path.insert(0, sys.argv[2])
import torch
from resnet_core.memory import keep_freed_memory
tuned = keep_freed_memory()
case = sys.argv[1]
torch.manual_seed(0)
out = {"tuned": tuned}
if case == "forward":
    from resnet_core.config import ModelConfig
    from resnet_core.nets.models import build_model, count_macs
    m = build_model(ModelConfig(depth=20)).eval().to(memory_format=torch.channels_last)
    x = torch.randn(256, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    macs, rates = count_macs(m, (32, 32)) * 256, []
    with torch.no_grad():
        for i in range(12):
            t0 = time.perf_counter(); m(x); dt = time.perf_counter() - t0
            if i >= 2:
                rates.append(macs / dt / 1e9)
    out["value"], out["unit"] = sorted(rates)[len(rates) // 2], "GMAC/s"
elif case == "train":
    from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from resnet_core.training.runs import RunStore, execute_run
    cfg = RunConfig(model=ModelConfig(depth=20), data=DataConfig(n_train=2048, n_test=256),
                    train=TrainConfig(steps=40, batch_size=128, device="cpu", eval_every=0, feature_maps_every=0))
    r = execute_run(RunStore(tempfile.mkdtemp()).create(cfg, status="queued"))
    out["value"], out["unit"] = r.images_per_s, "images/s"
else:
    from resnet_core.analysis import ModelSource, run_analysis
    from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from resnet_core.data import SHAPE_CLASSES, load_dataset
    from resnet_core.nets.checkpoints import save_checkpoint
    from resnet_core.nets.models import build_model
    from resnet_core.training.runs import RunStore
    tmp = tempfile.mkdtemp()
    mcfg, data = ModelConfig(depth=56), DataConfig(n_train=10, n_test=1000)
    ds = load_dataset(data)
    cfg = RunConfig(model=mcfg, data=data, train=TrainConfig(steps=1), name="bench")
    w = RunStore(tmp).create(cfg, status="finished")
    save_checkpoint(w.path / "checkpoints" / "last.pt", build_model(mcfg), cfg.to_dict(), step=1,
                    classes=list(SHAPE_CLASSES), mean=ds.mean, std=ds.std)
    w.close()
    t0 = time.perf_counter()
    run_analysis("lesion", ModelSource(run_id=w.run_id), runs_dir=tmp, settings={"images": 1000}, use_cache=False)
    out["value"], out["unit"] = time.perf_counter() - t0, "s"
out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps(out))
'''


def run(case: str, tuned: bool) -> dict:
    env = dict(os.environ, RESNET_LAB_CACHE=tempfile.mkdtemp(prefix="alloc-bench-"))
    if not tuned:
        env["RESNET_LAB_MALLOC"] = "default"
    out = subprocess.run([sys.executable, "-c", CASE, case, str(ROOT)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{case} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from resnet_core.experiments.costmodel import _cpu_model

    print(f"# {_cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for case in ("forward", "train", "lesion"):
        got: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(a.rounds):
            for tuned in (False, True):
                got[tuned].append(run(case, tuned))
        unit = got[False][0]["unit"]
        med = {t: statistics.median(r["value"] for r in got[t]) for t in got}
        for t in (False, True):
            print(f"{case:<8} {'keep_freed_memory' if t else 'glibc defaults':<18} "
                  + ", ".join(f"{r['value']:.1f} {unit} (peak {r['peak_mb']} MB)" for r in got[t]))
        print(f"{case:<8} ratio tuned / default (medians): {med[True] / med[False]:.2f}"
              + ("  (a time: below 1 is faster)" if unit == "s" else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
