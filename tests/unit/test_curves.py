"""Smoothing and end-of-run figures against hand computations."""
import math

import numpy as np
import pytest

from resnet_core.experiments.curves import ema, final_test_error, final_train_error, tail_mean


def test_ema_matches_a_hand_computation_with_debiasing():
    w = 0.5
    v = [4.0, 0.0, 2.0]
    # s0 = 0.5*4 = 2, debiased by 1-0.5 -> 4; s1 = 0.5*2 + 0 = 1, / (1-0.25) -> 4/3;
    # s2 = 0.5*1 + 0.5*2 = 1.5, / (1-0.125) -> 12/7
    assert ema(v, w) == pytest.approx([4.0, 4.0 / 3.0, 12.0 / 7.0])


def test_ema_starts_at_the_first_value_not_at_zero():
    out = ema([0.9] * 5, 0.99)  # without debiasing the first point would be 0.009
    assert out == pytest.approx([0.9] * 5)


def test_ema_weight_zero_is_the_raw_curve_and_nan_is_skipped():
    assert ema([1.0, 2.0, 3.0], 0.0) == pytest.approx([1.0, 2.0, 3.0])
    out = ema([1.0, math.nan, 3.0], 0.5)
    # the NaN keeps the previous smoothed value; the next one continues from it
    assert out[0] == pytest.approx(1.0) and out[1] == pytest.approx(1.0)
    assert out[2] == pytest.approx((0.5 * 0.5 * 1.0 + 0.5 * 3.0) / (1 - 0.25))
    with pytest.raises(ValueError):
        ema([1.0], 1.0)


def test_tail_mean_takes_the_last_ten_percent():
    values = list(range(100))                       # last 10: 90..99
    assert tail_mean(values) == pytest.approx(np.mean(range(90, 100)))
    assert tail_mean([5.0, 7.0]) == pytest.approx(7.0)   # at least one value
    assert tail_mean([]) is None and tail_mean([math.nan]) is None


def test_final_errors_from_records():
    steps = [{"type": "step", "step": i + 1, "train_acc": 0.1 if i < 90 else 0.8} for i in range(100)]
    evals = [{"type": "eval", "step": 50, "test_acc": 0.3, "partial": True},
             {"type": "eval", "step": 100, "test_acc": 0.75, "partial": False}]
    assert final_train_error(steps + evals) == pytest.approx(0.2)
    assert final_test_error(steps + evals) == pytest.approx(0.25)
    assert final_test_error(steps) is None
