import math

import pytest
import torch

from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.data import BatchLoader
from resnet_core.training.loop import lr_at, train

SMALL_DATA = DataConfig(n_train=256, n_test=64)


def tiny_cfg(steps=6, **model):
    return RunConfig(model=ModelConfig(depth=8, **model), data=SMALL_DATA,
                     train=TrainConfig(steps=steps, batch_size=32, eval_every=3, eval_batches=1,
                                       feature_maps_every=3, device="cpu"))


def collect(cfg, **kw):
    events = []
    result = train(cfg, events.append, **kw)
    return result, events


def test_events_carry_every_probe_in_layout_order():
    result, events = collect(tiny_cfg())
    assert result.status == "finished" and result.steps == 6
    start = events[0]
    assert start["type"] == "start" and start["total_steps"] == 6
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 7))
    layout = start["layout"]
    for e in steps:
        assert len(e["grad_norm"]) == len(layout["layers"])
        assert len(e["branch_std"]) == len(e["branch_ratio"]) == len(layout["blocks"]) == 3
        assert len(e["act_mean"]) == len(e["dead_relu"]) == 3
        # one std per BN after a 3x3 conv: the stem's and two per basic post-activation block
        assert len(e["layer_response_std"]) == len(layout["layer_response_names"]) == 7
        assert all(math.isfinite(v) and v >= 0 for v in e["grad_norm"] + e["branch_std"] + e["layer_response_std"])
        assert 0 <= e["train_acc"] <= 1 and e["images_per_s"] > 0
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["partial"] for e in evals] == [True, False] and evals[-1]["step"] == 6
    assert [e["step"] for e in events if e["type"] == "features"] == [1, 3, 6, 6]
    assert [e["final"] for e in events if e["type"] == "checkpoint"] == [True]
    assert events[-1]["type"] == "end" and events[-1]["status"] == "finished"


@pytest.mark.parametrize("probes,logged", [(True, [1, 4, 7]), (False, [3, 6, 7])])
def test_each_collaborator_speaks_at_its_moment(probes, logged):
    """The whole event sequence of a 7-step run, written out by hand: logging every 3 steps (with probes
    from step 1, so the first step's probes are seen; without, at multiples of 3), a partial evaluation
    and feature maps every 3 steps (feature maps at step 1 too), a checkpoint every 2, each after its
    step's record and in that order, and the final evaluation, feature maps and checkpoint after the
    last step. Fails when a moment moves, a collaborator is skipped or two swap."""
    cfg = tiny_cfg(steps=7)
    cfg = RunConfig(model=cfg.model, data=cfg.data, train=TrainConfig(
        **{**cfg.train.to_dict(), "log_every": 3, "checkpoint_every": 2, "probes": probes}))
    result, events = collect(cfg)
    seen = [(e["type"], e.get("step")) for e in events]
    between = {1: [("features", 1)], 2: [("checkpoint", 2)], 3: [("eval", 3), ("features", 3)],
               4: [("checkpoint", 4)], 5: [], 6: [("eval", 6), ("features", 6), ("checkpoint", 6)], 7: []}
    expected = [("start", None), ("init_weights", 0)]
    for step in range(1, 8):
        expected += ([("step", step)] if step in logged else []) + between[step]
    expected += [("eval", 7), ("features", 7), ("checkpoint", 7), ("end", None)]
    assert seen == expected
    assert result.status == "finished" and result.steps == 7
    assert result.train_loss == [e for e in events if e["type"] == "step"][-1]["train_loss"]


def test_fixed_seed_is_reproducible_and_twins_see_identical_batches(monkeypatch):
    seen = {}
    real_next = BatchLoader.next

    def spy(self):
        x, y = real_next(self)
        seen.setdefault(id(self), []).append((x.clone(), y.clone()))
        return x, y

    monkeypatch.setattr(BatchLoader, "next", spy)
    r1, e1 = collect(tiny_cfg(steps=4))
    r2, e2 = collect(tiny_cfg(steps=4))
    r3, _ = collect(tiny_cfg(steps=4, residual=False))
    assert [e["train_loss"] for e in e1 if e["type"] == "step"] == [e["train_loss"] for e in e2 if e["type"] == "step"]
    batches = list(seen.values())
    assert len(batches) == 3
    for (xa, ya), (xb, yb) in zip(batches[0], batches[2]):  # residual net and its plain twin
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_stop_is_honoured_within_one_step():
    import threading
    stop = threading.Event()
    events = []

    def on_event(e):
        events.append(e)
        if e["type"] == "step" and e["step"] == 3:
            stop.set()

    result = train(tiny_cfg(steps=50), on_event, stop=stop)
    assert result.status == "stopped" and result.steps == 3
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2, 3]
    assert [e["final"] for e in events if e["type"] == "checkpoint"] == [True]  # stopped runs keep a checkpoint


def test_diverging_loss_ends_the_run_at_that_step_keeping_metrics():
    cfg = tiny_cfg(steps=20)
    model_holder = {}

    def on_event(e):
        events.append(e)
        if e["type"] == "step" and e["step"] == 2:
            # The next forward pass produces a non-finite loss, as a too-high learning rate would.
            with torch.no_grad():
                model_holder["model"].fc.weight.fill_(float("inf"))

    events = []
    from resnet_core.nets.models import build_model
    torch.manual_seed(0)
    model_holder["model"] = build_model(cfg.model)
    result = train(cfg, on_event, model=model_holder["model"])
    assert result.status == "diverged" and result.steps == 3
    assert "step 3" in result.message
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2]
    assert any(e["type"] == "diverged" and e["step"] == 3 for e in events)


def test_a_too_high_learning_rate_diverges():
    cfg = RunConfig(model=ModelConfig(depth=8, batchnorm=False, init="xavier"), data=SMALL_DATA,
                    train=TrainConfig(steps=30, batch_size=32, lr=99.0, weight_decay=0, eval_every=0,
                                      feature_maps_every=0, device="cpu"))
    result, events = collect(cfg)
    assert result.status == "diverged" and result.steps < 30
    assert all(math.isfinite(e["train_loss"]) for e in events if e["type"] == "step")
    assert events[-1]["type"] == "end" and events[-1]["status"] == "diverged"


def test_step_schedule_divides_by_ten_at_half_and_three_quarters():
    tc = TrainConfig(steps=100, lr=0.1)
    assert [lr_at(s, 100, tc) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    warm = TrainConfig(steps=100, lr=0.1, warmup_steps=10, schedule="cosine")
    assert lr_at(0, 100, warm) == pytest.approx(0.01)
    assert lr_at(10, 100, warm) == pytest.approx(0.1)
    assert lr_at(99, 100, warm) < 0.001


def test_training_fits_a_small_training_set():
    # The optimizer, schedule and loader work together: 128 images, no augmentation, are memorised
    # in 60 steps (learning the full set takes a few hundred steps: see bench/dataset_difficulty.py).
    cfg = RunConfig(model=ModelConfig(depth=8), data=DataConfig(n_train=128, n_test=32, augment=False),
                    train=TrainConfig(steps=60, batch_size=64, lr=0.1, eval_every=0, feature_maps_every=0,
                                      schedule="constant", device="cpu"))
    result, events = collect(cfg)
    steps = [e for e in events if e["type"] == "step"]
    assert result.status == "finished"
    assert sum(e["train_loss"] for e in steps[-5:]) / 5 < 0.4 * steps[0]["train_loss"]
    assert sum(e["train_acc"] for e in steps[-5:]) / 5 > 0.5  # chance is 0.1
