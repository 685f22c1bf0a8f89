"""The analyses' estimates learn from what they took on this machine (resnet_core/history.py)."""
import json

import pytest

from resnet_core import history
from resnet_core.analysis import ModelSource, estimate_cost, run_analysis
from resnet_core.config import DataConfig, ModelConfig

TINY_DATA = DataConfig(n_train=32, n_test=16)


@pytest.fixture
def empty_history(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path))
    return tmp_path


def test_the_factor_is_the_median_of_the_models_own_runs_else_of_the_other_models(empty_history):
    assert history.factor("analysis", "lesion", "resnet-56 32px trained", "cpu")[0] == 1.0     # never ran here
    for took in (20.0, 40.0, 30.0):                                                  # ratios 0.5, 1.0, 0.75
        history.record("analysis", "lesion", "resnet-56 32px trained", "cpu", 40.0, took)
    f, why = history.factor("analysis", "lesion", "resnet-56 32px trained", "cpu")
    assert f == pytest.approx(0.75) and "last 3 run(s) like it" in why
    history.record("analysis", "lesion", "resnet-20 32px trained", "cpu", 10.0, 20.0)            # ratio 2
    history.record("analysis", "lesion", "resnet-20 32px trained", "cpu", 10.0, 30.0)            # ratio 3: median 2.5
    f, why = history.factor("analysis", "lesion", "resnet-110 32px trained", "cpu")              # unseen: median of medians
    assert f == pytest.approx((0.75 + 2.5) / 2) and "2 other kind(s)" in why
    assert history.factor("analysis", "paths", "resnet-56 32px trained", "cpu")[0] == 1.0        # per analysis
    assert history.factor("analysis", "lesion", "resnet-56 32px trained", "cuda")[0] == 1.0      # and per device


def test_only_the_last_runs_count_and_tiny_estimates_teach_nothing(empty_history):
    for took in (100.0, 100.0, 100.0, 1.0, 1.0, 1.0, 1.0, 1.0):   # an old slow spell, then five at ratio 0.1
        history.record("analysis", "paths", "m", "cpu", 10.0, took)
    assert history.factor("analysis", "paths", "m", "cpu")[0] == pytest.approx(0.1)
    history.record("analysis", "responses", "m", "cpu", history.MIN_SECONDS / 2, 5.0)           # fixed costs dominate
    assert history.factor("analysis", "responses", "m", "cpu")[0] == 1.0


def test_a_damaged_history_means_no_correction_and_is_rewritten(empty_history):
    target = history.path("analysis", "cpu")
    target.parent.mkdir(parents=True, exist_ok=True)
    for junk in ("{not json", json.dumps([1, 2]), json.dumps({"lesion": {"m": ["x", -1, True]}})):
        target.write_text(junk)
        assert history.factor("analysis", "lesion", "m", "cpu")[0] == 1.0
    history.record("analysis", "lesion", "m", "cpu", 10.0, 5.0)
    assert history.factor("analysis", "lesion", "m", "cpu")[0] == pytest.approx(0.5)


def test_a_run_teaches_the_next_estimate_of_the_same_analysis(empty_history, monkeypatch):
    """The cost model at a fixed slow rate (1 MMAC/s: a ResNet-8's gradient flow 'takes' minutes), then one
    real run: the next estimate is the cost model's times took / that estimate, with the basis saying so.
    Catches a run that does not record, an estimate that ignores the history, a cached result recorded."""
    import resnet_core.analysis as analysis

    monkeypatch.setattr(analysis, "forward_rate", lambda device, width=1.0, image_size=32: 1e6)
    monkeypatch.setattr(analysis, "known_rate", lambda device, width=1.0, image_size=32: 1e6)
    src = ModelSource(config=ModelConfig(depth=8))
    first = estimate_cost("gradient-flow", src, {"batch_size": 4}, TINY_DATA)
    assert first["seconds"] > 60 and "no run of it here yet" in first["basis"]
    took = run_analysis("gradient-flow", src, settings={"batch_size": 4}, data=TINY_DATA, use_cache=False)["seconds"]
    second = estimate_cost("gradient-flow", src, {"batch_size": 4}, TINY_DATA)
    assert second["seconds"] == pytest.approx(took, rel=0.01, abs=2e-3)
    assert "last 1 run(s) like it" in second["basis"] and "1 GMAC/s" not in second["basis"]


def test_a_run_without_a_measured_rate_is_not_slowed_down_to_learn(empty_history, monkeypatch):
    import resnet_core.analysis as analysis

    def no_timing(*a, **k):
        raise AssertionError("run_analysis timed a forward rate")

    monkeypatch.setattr(analysis, "forward_rate", no_timing)
    monkeypatch.setattr(analysis, "known_rate", lambda device, width=1.0, image_size=32: None)
    run_analysis("gradient-flow", ModelSource(config=ModelConfig(depth=8)), settings={"batch_size": 4},
                 data=TINY_DATA, use_cache=False)
    assert not history.path("analysis", "cpu").exists()
