"""Every tab of the Why it works page at its default settings: the page's estimate beside the time it took.

    python bench/why_defaults.py [--device cpu] [--budget 60] [--steps 300]

Builds the requests the page sends when the user changes nothing (pages/why.py's defaults: gradient
flow of plain and residual nets of depth 20, 56 and 110 at batch 16; shattering at depths 20 and 56
with 256 inputs on the line; paths of a ResNet-110 at initialisation; lesions, Fig. 7 responses, the
1-D interpolation and an 11x11 landscape of trained runs; paths', lesions' and responses' settings are
the core's defaults, which the page shows), runs each
through ``resnet_core.analysis.run_analysis`` with the cache off, and prints the estimate
(``estimate_cost``, what the page shows before Start), the measured time, their ratio, and whether the
tab fits the page's budget (``--budget`` seconds: what a user waits for one click; 60 by default,
as for the default Start). The trained runs are a plain-20 and a ResNet-20 of the quick scale
(``--steps`` steps each), trained first into a temporary run store; their training is not timed here.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _machine() -> str:
    import platform

    from resnet_core.experiments.costmodel import machine_info

    info = machine_info("cpu")
    return f"{info.get('cpu', platform.processor())}, {os.cpu_count()} cores"


def _train_twin(runs_dir: str, steps: int) -> dict[str, str]:
    """A quick-scale plain-20 and ResNet-20 (the presets' base), trained into ``runs_dir``: label -> run id."""
    import dataclasses

    from resnet_core.data import load_dataset
    from resnet_core.experiments.presets import build_twin
    from resnet_core.experiments.scales import preset_base
    from resnet_core.training.runs import RunStore, execute_run

    base = preset_base("quick", device="cpu")
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=steps, checkpoint_every=0))
    store = RunStore(runs_dir)
    ds = load_dataset(base.data)
    ids = {}
    for cfg in build_twin(base):
        writer = store.create(cfg, status="running")
        execute_run(writer, dataset=ds)
        ids[cfg.label] = writer.path.name
    return ids


def default_requests(run_ids: dict[str, str]) -> list[tuple[str, list[tuple[str, dict, dict]]]]:
    """(tab, [(analysis, source kwargs, settings)]) as pages/why.py builds them with every default."""
    from resnet_core.analysis import ANALYSES
    from resnet_core.config import ModelConfig

    plain, resnet = run_ids["plain-20 w0.5 16px large no-aug"], run_ids["resnet-20 w0.5 16px large no-aug"]
    gf = [("gradient-flow", {"config": ModelConfig(depth=d, residual=r)},
           {"batch_size": 16, "plus_one": r and d == 20}) for r in (False, True) for d in (20, 56, 110)]
    sh = [("shattering", {"config": ModelConfig(depth=d)}, {"points": 256, "twin": True}) for d in (20, 56)]
    core = {name: ANALYSES[name].defaults for name in ("paths", "lesion", "responses")}   # the page reads these
    pa = [("paths", {"config": ModelConfig(depth=110)},
           {"measure": True, **{k: core["paths"][k] for k in ("draws", "batches", "batch_size")}})]
    le = [("lesion", {"run_id": resnet}, {k: core["lesion"][k] for k in ("images", "draws")})]
    re = [("responses", {"run_id": i}, {"images": core["responses"]["images"]}) for i in (plain, resnet)]
    it = [("interpolate", {"run_id": i}, {"points": 21, "images": 500}) for i in (plain, resnet)]
    la = [("landscape", {"run_id": i}, {"points": 11, "span": 1.0, "images": 500}) for i in (plain, resnet)]
    return [("Gradient flow", gf), ("Shattering", sh), ("Paths", pa), ("Lesions", le), ("Fig. 7 responses", re),
            ("Interpolation", it), ("Landscape", la)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds a tab's default may take")
    ap.add_argument("--steps", type=int, default=300, help="training steps of the two runs the tabs analyse")
    a = ap.parse_args()

    from resnet_core.analysis import ModelSource, estimate_cost, run_analysis

    load = os.getloadavg()[0]
    print(f"# Why it works, every tab at its defaults; {_machine()}, device {a.device}, load average {load:.1f}")
    with tempfile.TemporaryDirectory() as runs_dir:
        ids = _train_twin(runs_dir, a.steps)
        print(f"{'tab':<18} {'analysis':<14} {'model':<34} {'estimate s':>10} {'took s':>8} {'took/est':>8}")
        for tab, requests in default_requests(ids):
            total_est = total = 0.0
            for name, source, settings in requests:
                src = ModelSource(**source)
                est = estimate_cost(name, src, settings=settings, device=a.device, runs_dir=runs_dir)["seconds"]
                t0 = time.perf_counter()
                run_analysis(name, src, settings=settings, device=a.device, runs_dir=runs_dir, use_cache=False)
                took = time.perf_counter() - t0
                total_est += est
                total += took
                print(f"{tab:<18} {name:<14} {src.describe()[:34]:<34} {est:>10.1f} {took:>8.1f} "
                      f"{took / est if est else float('nan'):>8.2f}")
            verdict = "fits" if total <= a.budget else f"OVER by {total - a.budget:.0f} s"
            print(f"{tab:<18} {'(tab total)':<14} {'':<34} {total_est:>10.1f} {total:>8.1f} "
                  f"{total / total_est if total_est else float('nan'):>8.2f}  budget {a.budget:.0f} s: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
