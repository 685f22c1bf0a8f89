"""``python -m resnet_core runs``: the stored runs, as a table or JSON."""
from __future__ import annotations

import json

from resnet_core.cli.common import add_runs_dir_flag


def add_parser(sub) -> None:
    r = sub.add_parser("runs", help="list stored runs")
    add_runs_dir_flag(r)
    r.add_argument("--json", action="store_true")

    r.set_defaults(subcommand=run)


def run(a) -> int:
    from resnet_core.training.runs import RunStore

    infos = RunStore(a.runs_dir).list()
    rows = [{"run_id": r.run_id, "label": r.label, "status": r.status, "steps": r.summary.get("steps", r.summary.get("step")),
             "train_loss": r.summary.get("train_loss"), "train_acc": r.summary.get("train_acc"),
             "test_acc": r.summary.get("test_acc"), "error": r.error or None} for r in infos]
    if a.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print(f"no runs in {RunStore(a.runs_dir).root}")
        return 0
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    print(f"{'run_id':<48} {'status':<11} {'steps':>6} {'loss':>7} {'train_acc':>9} {'test_acc':>8}")
    for r in rows:
        print(f"{r['run_id']:<48} {r['status']:<11} {fmt(r['steps']):>6} {fmt(r['train_loss']):>7} "
              f"{fmt(r['train_acc']):>9} {fmt(r['test_acc']):>8}" + (f"  {r['error']}" if r["error"] else ""))
    return 0
