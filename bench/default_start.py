"""Time to insight of the default Start: how soon the loss visibly falls and test accuracy reaches 80%.

    python bench/default_start.py [--scale quick] [--device cpu] [--rounds 1]

Trains ``scales.scale_config(scale)`` (the default Start's config) by calling ``train()`` in this
process, with the data set already loaded and torch warmed up, as the dashboard's warm training process
has them (bench/dashboard_vs_cli.py times the real page, click to end). Prints, from the run's own events, the
wall time from Start to: the first step, the training loss (EMA 0.6, as the page's default
smoothing draws it) first 0.1 below its first value, and each test evaluation with its accuracy.
Targets (issue 8): the loss visibly falls within 10 s; test accuracy >= 80% within 60 s.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from resnet_core.experiments.curves import ema  # noqa: E402
from resnet_core.data import load_dataset  # noqa: E402
from resnet_core.experiments.scales import scale_config  # noqa: E402
from resnet_core.training.loop import train  # noqa: E402

VISIBLE_DROP = 0.1        # nats below the first smoothed value: a fall one sees on the loss chart
# The first fall is often only from a high initial loss down to chance, ln(10) = 2.303 nats for ten
# classes; learning shows when the loss goes below chance, so that time is reported too.
PAGE_SMOOTHING = 0.6      # the Train page's default smoothing weight


def one_round(scale: str, device: str) -> dict:
    cfg = scale_config(scale, device=device)
    ds = load_dataset(cfg.data)
    # The server imports torch._dynamo (the optimizer's first use) and renders the data set before
    # any Start; do both here too so the clock starts where the user's click does.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    losses, times, evals = [], [], []
    t0 = time.perf_counter()

    def on_event(e):
        now = time.perf_counter() - t0
        if e["type"] == "step":
            losses.append(e["train_loss"])
            times.append(now)
        elif e["type"] == "eval":
            evals.append((now, e["step"], e["test_acc"], e["partial"]))

    result = train(cfg, on_event=on_event, dataset=ds)
    smooth = ema(losses, PAGE_SMOOTHING)
    drop_at = next((t for t, s in zip(times, smooth) if s <= smooth[0] - VISIBLE_DROP), None)
    chance = math.log(len(ds.classes))
    below_chance_at = next((t for t, v in zip(times, smooth) if v <= chance - VISIBLE_DROP), None)
    acc80_at = next((t for t, _, acc, _ in evals if acc >= 0.80), None)
    return {"label": cfg.label, "steps": result.steps, "first_step_s": times[0] if times else None,
            "loss_drop_s": drop_at, "below_chance_s": below_chance_at, "acc80_s": acc80_at, "evals": evals, "seconds": result.seconds,
            "final_test_acc": result.test_acc}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    print(f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for i in range(a.rounds):
        r = one_round(a.scale, a.device)
        fmt = lambda v: "never" if v is None else f"{v:.1f} s"
        print(f"round {i + 1}: {r['label']}, {r['steps']} steps in {r['seconds']:.1f} s; first step {fmt(r['first_step_s'])}; "
              f"loss visibly falls (EMA {PAGE_SMOOTHING} down {VISIBLE_DROP}) at {fmt(r['loss_drop_s'])}, "
              f"{VISIBLE_DROP} below chance at {fmt(r['below_chance_s'])} (target 10 s); "
              f"test accuracy >= 80% at {fmt(r['acc80_s'])} (target 60 s)")
        for t, step, acc, partial in r["evals"]:
            print(f"    {t:6.1f} s  step {step:4d}  test accuracy {100 * acc:5.1f}%  ({'partial' if partial else 'full test set'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
