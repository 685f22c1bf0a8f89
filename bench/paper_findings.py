"""The papers' findings at quick scale: each preset over several seeds, as ``reproduce`` runs it, with its
wall time, the estimate the dashboard shows before Start, and every separation per seed.

    python bench/paper_findings.py [--presets fig6,options,preact,depth-sweep] [--seeds 3] [--parallel 2]
                                   [--device cpu] [--scale quick] [--steps N] [--rounds 1]

The estimates start from this machine's calibration with no history of finished runs (a cache folder
of the bench's own); with ``--rounds 2`` every preset runs again, its estimate now corrected by what the
first round's runs took (``resnet_core/history.py``).

Besides wall time it prints the process's CPU time: on a machine shared with other work, wall time
grows with the load, while CPU time of runs on one thread each (``--parallel`` = cores) stays close
to what they cost alone, so CPU time / cores is the quiet-machine figure to compare with the target.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_core.experiments.presets import PRESETS  # noqa: E402
from resnet_core.experiments.costmodel import estimate_seconds
from resnet_core.experiments.reproduce import reproduce, reproduce_configs  # noqa: E402
from fresh_history import use_fresh_history  # noqa: E402 - bench/, beside this script


def _fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset keys")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed+seeds-1")
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--parallel", type=int, default=1, help="runs at once (the dashboard: 2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="override the runs' steps (a plumbing check)")
    ap.add_argument("--runs-dir", default=None, help="default: a temporary directory")
    ap.add_argument("--out", default=None, help="figures directory (default: none written)")
    ap.add_argument("--rounds", type=int, default=1, help="times the presets run (later rounds: corrected estimates)")
    a = ap.parse_args()
    keys = [k.strip() for k in a.presets.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PRESETS]
    if unknown:
        print(f"error: unknown preset(s) {', '.join(unknown)}; use {', '.join(PRESETS)}", file=sys.stderr)
        return 2
    cores = os.cpu_count() or 1
    print(f"# {a.scale} scale, device {a.device}, {a.seeds} seed(s), {a.parallel} run(s) at a time, {cores} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    from resnet_core.memory import keep_freed_memory

    keep_freed_memory()   # as `python -m resnet_core reproduce` does
    summary_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        use_fresh_history(Path(tmp))
        runs_dir = a.runs_dir or tmp
        for rnd, key in [(r, k) for r in range(1, a.rounds + 1) for k in keys]:
            per_seed = reproduce_configs(key, a.scale, seeds=1, device=a.device, steps=a.steps)
            estimate = estimate_seconds(per_seed, a.device, parallel=a.parallel)
            if estimate is None:   # this machine not measured yet: measure it now, as the dashboard would
                from resnet_core.experiments.costmodel import calibrate
                calibrate(a.device)
                estimate = estimate_seconds(per_seed, a.device, parallel=a.parallel)
            t_cpu = time.process_time()
            res = reproduce(key, a.scale, seeds=a.seeds, device=a.device, runs_dir=runs_dir, out=a.out,
                            steps=a.steps, parallel=a.parallel, first_seed=a.first_seed)
            cpu = time.process_time() - t_cpu
            wall_per_seed = res["seconds"] / a.seeds
            print(f"\n## round {rnd}, {res['title']} ({key}): wall {res['seconds']:.0f} s for {a.seeds} seed(s) = "
                  f"{wall_per_seed:.0f} s per seed; CPU {cpu:.0f} s = {cpu / a.seeds / cores:.0f} s per seed per core; "
                  f"estimate {estimate:.0f} s per seed")
            print(f"{'run':<34} {'seed':>4} {'steps':>6} {'s':>7} {'ms/step':>8} {'train err %':>11} {'test err %':>10}")
            for r in res["runs"]:
                ms = 1000 * r["seconds"] / r["steps"] if r.get("seconds") and r["steps"] else None
                print(f"{r['label']:<34} {r['seed']:>4} {r['steps']:>6} {_fmt(r.get('seconds')):>7} {_fmt(ms):>8} "
                      f"{_fmt(None if r['final_train_error'] is None else 100 * r['final_train_error']):>11} "
                      f"{_fmt(None if r['final_test_error'] is None else 100 * r['final_test_error']):>10}")
            v = res["verdict"]
            print(f"{'separation (points)':<52} {'seed':>4} {'value':>8} {'threshold':>9} {'holds':>6}")
            for c in v["checks"]:
                kind = " (reported)" if c.get("reported_only") else ""
                print(f"{c['name'] + kind:<52} {c['seed']:>4} {_fmt(c['value'], '.2f'):>8} "
                      f"{c['threshold']:>9} {'yes' if c['holds'] else 'NO':>6}")
            print(f"verdict: {v['line']} -> {'holds' if v['holds'] else 'does NOT hold'}")
            summary_rows.append((f"{key} r{rnd}", wall_per_seed, cpu / a.seeds / cores, estimate, v["seeds_holding"], v["seeds"]))
    print(f"\n{'preset':<15} {'wall s/seed':>11} {'CPU s/seed/core':>15} {'estimate s':>10} {'seeds holding':>13}")
    for key, wall, cpu, est, ok, n in summary_rows:
        print(f"{key:<15} {wall:>11.0f} {cpu:>15.0f} {est:>10.0f} {f'{ok}/{n}':>13}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
