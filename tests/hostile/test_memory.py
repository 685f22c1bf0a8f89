"""Item 2: a memory budget before any allocation. Estimates come from the config (no model is built),
training, analyses, checkpoint loading and the page refuse what exceeds the budget with one line, and
a checkpoint's declared architecture is checked against its tensors before anything is built."""
from __future__ import annotations

import io
import json

import pytest
import torch

from dashboard import preset_groups as presets
from resnet_core import memory
from resnet_core.nets.checkpoints import FORMAT, CheckpointError, load_checkpoint
from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.nets.models import build_model, count_macs, count_params

from .conftest import run_limited

CONFIGS = [ModelConfig(depth=20), ModelConfig(depth=14, preact=True, shortcut="B", width=0.5),
           ModelConfig(depth=20, shortcut="C", batchnorm=False, width=2), ModelConfig(depth=29, block="bottleneck"),
           ModelConfig(depth=29, block="bottleneck", preact=True, shortcut="C", width=0.25),
           ModelConfig(depth=8, residual=False, num_classes=3)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_the_estimate_counts_exactly_what_a_built_model_has(cfg):
    est = memory.estimate(cfg, 16)
    model = build_model(cfg)
    assert est.params == count_params(model)
    assert est.weights_bytes == 4 * (count_params(model) + sum(b.numel() for b in model.buffers()))
    assert est.macs == count_macs(model, (16, 16))


@pytest.mark.parametrize("cfg", CONFIGS[:4], ids=lambda c: c.name)
def test_activation_estimate_bounds_what_autograd_saves(cfg):
    model = build_model(cfg).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randn(4, 3, 16, 16))
    per_image = sum(saved.values()) / 4
    est = memory.estimate(cfg, 16).activation_bytes
    assert 0.5 * est <= per_image <= est  # an upper bound, and not a wild one


def test_the_sidebar_caption_does_not_build_a_model(monkeypatch, calibrated):
    import resnet_core.nets.models as models

    def refuse(cfg):
        raise AssertionError("an estimate built a model")

    monkeypatch.setattr(models, "build_model", refuse)
    cfg = RunConfig(model=ModelConfig(depth=218, width=8), data=DataConfig(image_size=64),
                    train=TrainConfig(steps=10, batch_size=512))
    assert presets.expected_duration([cfg], "cpu").startswith("estimated about")


def test_training_beyond_the_budget_is_refused_before_any_allocation(monkeypatch):
    from resnet_core.training.loop import train

    monkeypatch.setenv(memory.BUDGET_ENV, "1")
    cfg = RunConfig(model=ModelConfig(depth=218, width=16), data=DataConfig(image_size=64, n_train=100_000),
                    train=TrainConfig(steps=1, batch_size=512, device="cpu"))
    with pytest.raises(memory.MemoryBudgetError) as e:
        train(cfg)
    line = str(e.value)
    assert "\n" not in line and "needs about" in line and "the budget is 1.00 GB" in line


def test_the_default_budget_is_a_share_of_free_memory(monkeypatch):
    monkeypatch.delenv(memory.BUDGET_ENV, raising=False)
    free = memory.free_bytes("cpu")
    assert free and memory.budget_bytes("cpu") == int(free * memory.FREE_SHARE)
    monkeypatch.setenv(memory.BUDGET_ENV, "nan")
    with pytest.raises(memory.MemoryBudgetError, match="positive number"):
        memory.budget_bytes("cpu")


def test_the_page_refuses_a_run_beyond_the_budget(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from .conftest import ROOT

    monkeypatch.setenv("RESNET_LAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv(memory.BUDGET_ENV, "0.5")
    at = AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=60).run()
    at.selectbox(key="depth_basic").set_value(218)
    at.select_slider(key="width").set_value(16)
    at.select_slider(key="batch_size").set_value(512)
    at.select_slider(key="image_size").set_value(64).run()
    assert not at.exception
    assert any("needs about" in e.value and "budget" in e.value for e in at.sidebar.error)
    assert at.button(key="start").disabled


def test_an_analysis_beyond_the_budget_is_refused(monkeypatch):
    from resnet_core.analysis import AnalysisError, ModelSource, run_analysis

    monkeypatch.setenv(memory.BUDGET_ENV, "0.5")
    with pytest.raises(AnalysisError, match="needs about .* budget is 0.50 GB"):
        run_analysis("gradient-flow", ModelSource(config=ModelConfig(depth=1202, width=16)), use_cache=False)


# --- checkpoints ------------------------------------------------------------------------------------

def _ours(model_dict: dict, state: dict, meta: dict | None = None, data: dict | None = None) -> bytes:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "config_json": json.dumps({"model": model_dict, "data": data or {}}),
                "meta_json": json.dumps(meta or {"step": 1, "classes": [str(i) for i in range(10)],
                                                 "mean": [0.5] * 3, "std": [0.25] * 3}),
                "state_dict": state}, buf)
    return buf.getvalue()


def test_a_small_file_declaring_a_huge_net_is_refused_before_building_it(tmp_path):
    """A 2 KB checkpoint asking for ResNet-1202 at width 16 (about 5e9 parameters, 20 GB), in our
    format and in the community one (inferred from key names), in a child limited to 1 GB more."""
    ours = tmp_path / "ours.pt"
    ours.write_bytes(_ours({"depth": 1202, "width": 16}, {"fc.weight": torch.zeros(2, 2)}))
    community = tmp_path / "community.th"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(256, 3, 3, 3)[:, :, :1, :1].expand(256, 3, 3, 3),
                               "layer1.199.conv1.weight": torch.zeros(1)}}, community)
    assert ours.stat().st_size < 4096
    for path in (ours, community):
        r = run_limited(f"""
            from resnet_core.nets.checkpoints import CheckpointError, load_checkpoint
            try:
                load_checkpoint({str(path)!r})
                print("loaded")
            except CheckpointError as e:
                print("refused:", e)
            except BaseException as e:
                print("crashed:", type(e).__name__)
            """, limit_mb=1024)
        assert r.stdout.startswith("refused:"), (r.stdout, r.stderr[-500:])
        assert len(r.stdout.strip().splitlines()) == 1


@pytest.mark.parametrize("case", ["num_classes_1e9", "config_not_json", "meta_missing", "model_not_dict",
                                  "state_list", "classes_not_list", "wrong_shapes"])
def test_every_malformed_file_becomes_one_line(case):
    good_state = build_model(ModelConfig(depth=8)).state_dict()
    files = {
        "num_classes_1e9": _ours({"depth": 8, "num_classes": 1e9}, good_state),
        "model_not_dict": _ours([8], good_state),  # type: ignore[arg-type]
        "state_list": _ours({"depth": 8}, [1, 2, 3]),  # type: ignore[arg-type]
        "classes_not_list": _ours({"depth": 8}, good_state, meta={"step": 1, "classes": 3, "mean": [0] * 3,
                                                                   "std": [1] * 3}),
        "wrong_shapes": _ours({"depth": 8}, {k: v.flatten() for k, v in good_state.items()}),
    }
    if case == "config_not_json":
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "config_json": "{not json", "meta_json": "{}", "state_dict": good_state}, buf)
        files[case] = buf.getvalue()
    if case == "meta_missing":
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "config_json": json.dumps({"model": {"depth": 8}}), "state_dict": good_state},
                   buf)
        files[case] = buf.getvalue()
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(files[case])
    assert "\n" not in str(e.value) and str(e.value)


def test_a_checkpoint_beyond_the_budget_is_refused(monkeypatch):
    state = build_model(ModelConfig(depth=8)).state_dict()
    monkeypatch.setenv(memory.BUDGET_ENV, "0.1")  # below the workspace alone
    with pytest.raises(CheckpointError, match="budget"):
        load_checkpoint(_ours({"depth": 8}, state))
    monkeypatch.delenv(memory.BUDGET_ENV)
    assert load_checkpoint(_ours({"depth": 8}, state)).model_cfg.depth == 8
