"""Reading training curves: TensorBoard-style smoothing and the end-of-run figures the findings use.

Both the dashboard (smoothed charts, preset verdicts) and the CLI (``reproduce``) call these, so a
number on the page and in the CLI's JSON is the same computation.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TAIL_FRACTION = 0.10  # "final" training error: the mean over the last 10% of logged steps


def ema(values: Sequence[float], weight: float) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing.

    ``weight`` in [0, 1): 0 returns the values, 0.99 is very smooth. Debiased like Adam's moments
    (TensorBoard's scalar smoothing since 2019): s_t = w s_{t-1} + (1 - w) v_t from s_{-1} = 0, divided by
    1 - w^(t+1), so the first points are not pulled towards zero. Non-finite values are skipped (they
    keep the previous smoothed value) so one diverged point does not poison the rest of the curve.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1); got {weight}")
    v = np.asarray(values, dtype=np.float64)
    out = np.empty_like(v)
    last, n_seen = 0.0, 0
    for i, x in enumerate(v):
        if math.isfinite(x):
            last = weight * last + (1.0 - weight) * x
            n_seen += 1
        out[i] = last / (1.0 - weight ** n_seen) if n_seen else math.nan
    return out


def tail_mean(values: Sequence[float], fraction: float = TAIL_FRACTION) -> float | None:
    """Mean of the last ``fraction`` of the finite values (at least one); None when there are none."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return None
    k = max(1, int(math.ceil(fraction * v.size)))
    return float(v[-k:].mean())


def final_train_error(records: list[dict], fraction: float = TAIL_FRACTION) -> float | None:
    """Training error (1 - accuracy, a fraction) smoothed over the last ``fraction`` of logged steps."""
    accs = [r["train_acc"] for r in records if r.get("type") == "step" and r.get("train_acc") is not None]
    m = tail_mean(accs, fraction)
    return None if m is None else 1.0 - m


def final_test_error(records: list[dict]) -> float | None:
    """Test error of the last full evaluation (the one at the end of the run), else the last partial one."""
    evals = [r for r in records if r.get("type") == "eval" and r.get("test_acc") is not None]
    if not evals:
        return None
    full = [r for r in evals if not r.get("partial")]
    return 1.0 - float((full or evals)[-1]["test_acc"])
