"""Every tab of the Why it works page at its default settings: the page's estimate beside the time it took.

    python bench/why_defaults.py [--device cpu] [--budget 60] [--steps 300] [--rounds 2]

Builds the requests the page sends when the user changes nothing (pages/why.py's defaults: gradient
flow of plain and residual nets of depth 20, 56 and 110 at batch 16; shattering at depths 20 and 56
with 256 inputs on the line; paths of a ResNet-110 at initialisation; lesions, Fig. 7 responses, the
1-D interpolation and an 11x11 landscape of trained runs; paths', lesions' and responses' settings are
the core's defaults, which the page shows), runs each
through ``resnet_core.analysis.run_analysis`` with the cache off, and prints the estimate
(``estimate_cost``, what the page shows before Start), the measured time, their ratio, and whether the
tab fits the page's budget (``--budget`` seconds: what a user waits for one click; 60 by default,
as for the default Start). Each round runs every tab again: the first round's estimates are the cost
model's alone (the bench keeps its own empty estimate history), the later ones are corrected by what the
earlier rounds took here (``resnet_core/history.py``), as a user's second click is. The trained runs are a plain-20 and a ResNet-20 of the quick scale
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
WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"


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
    ap.add_argument("--rounds", type=int, default=2, help="times every tab runs (later rounds: learned estimates)")
    a = ap.parse_args()
    from resnet_core.memory import keep_freed_memory

    keep_freed_memory()   # as the dashboard's server, where the page's analyses run
    history_dir = tempfile.mkdtemp(prefix="why-defaults-history-")
    os.environ["RESNET_LAB_CACHE"] = history_dir   # no earlier run's history: round 1 is the cost model alone

    load = os.getloadavg()[0]
    print(f"# Why it works, every tab at its defaults; {_machine()}, device {a.device}, load average {load:.1f}")
    with tempfile.TemporaryDirectory() as runs_dir:
        ids = _train_twin(runs_dir, a.steps)
        for rnd in range(1, a.rounds + 1):
            _round(rnd, default_requests(ids) + community_requests(), a, runs_dir)
    return 0


def community_requests() -> list[tuple[str, list[tuple[str, dict, dict, object]]]]:
    """The community ResNet-56 (../shared/weights, when present) under the tabs that take a trained net,
    on the shapes set's 10,000 test images: a full-size net beside the quick runs above."""
    from resnet_core.analysis import ANALYSES
    from resnet_core.config import DataConfig

    hits = sorted(WEIGHTS.glob("resnet56-*.th"))
    if not hits:
        return []
    src, data = {"checkpoint": str(hits[0])}, DataConfig(n_train=2000, n_test=10000)
    core = {name: ANALYSES[name].defaults for name in ("paths", "lesion", "responses")}
    return [("Paths (community)", [("paths", src, {"measure": True, **{k: core["paths"][k] for k in
                                                                     ("draws", "batches", "batch_size")}}, data)]),
            ("Lesions (community)", [("lesion", src, {k: core["lesion"][k] for k in ("images", "draws")}, data)]),
            ("Fig. 7 (community)", [("responses", src, {"images": core["responses"]["images"]}, data)])]


def _round(rnd: int, tabs, a, runs_dir: str) -> None:
    from resnet_core.analysis import ModelSource, estimate_cost, run_analysis

    print(f"## round {rnd}: " + ("from an empty history (an analysis's first request has its cost model alone)"
                                 if rnd == 1 else "estimates corrected by the rounds before"))
    print(f"{'tab':<20} {'analysis':<14} {'model':<34} {'estimate s':>10} {'took s':>8} {'took/est':>8}")
    for tab, requests in tabs:
        total_est = total = 0.0
        for name, source, settings, *data in requests:
            src, data = ModelSource(**source), (data[0] if data else None)
            est = estimate_cost(name, src, settings=settings, data=data, device=a.device, runs_dir=runs_dir)["seconds"]
            t0 = time.perf_counter()
            run_analysis(name, src, settings=settings, data=data, device=a.device, runs_dir=runs_dir, use_cache=False)
            took = time.perf_counter() - t0
            total_est += est
            total += took
            print(f"{tab:<20} {name:<14} {src.describe()[:34]:<34} {est:>10.1f} {took:>8.1f} "
                  f"{took / est if est else float('nan'):>8.2f}")
        verdict = "fits" if total <= a.budget else f"OVER by {total - a.budget:.0f} s"
        print(f"{tab:<20} {'(tab total)':<14} {'':<34} {total_est:>10.1f} {total:>8.1f} "
              f"{total / total_est if total_est else float('nan'):>8.2f}  budget {a.budget:.0f} s: {verdict}")

if __name__ == "__main__":
    raise SystemExit(main())
