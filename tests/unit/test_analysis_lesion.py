"""Lesion study: deletions really bypass the block, flags are right, errors are the model's own."""
import copy

import pytest
import torch

from resnet_core.analysis import AnalysisError, ModelSource, run_analysis
from resnet_core.analysis.lesion import (deletable, downsampling_flags, forward_plan, kendall_tau, lesion_study,
                                         random_reorder, stage_decomposition)
from resnet_core.config import DataConfig, ModelConfig
from resnet_core.nets.models import build_model
from tests.conftest import shared_weight, store_tiny_run

SETTINGS = {"images": 1000, "batch_size": 250, "draws": 2, "counts": None, "reorder": True, "swaps": [1, 2, 4],
            "seed": 0, "decompose": 0}


def _eval_model(seed=0, **kw):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(**kw))
    # non-trivial BN statistics, so eval mode is not the identity
    model.train()
    with torch.no_grad():
        model(torch.randn(32, 3, 16, 16))
    return model.eval()


def test_downsampling_flags_and_which_blocks_can_go():
    res, plain = _eval_model(depth=14), _eval_model(depth=14, residual=False)
    expected = [False, False, True, False, True, False]   # layer2.0 and layer3.0 change the shape
    assert downsampling_flags(res) == expected == downsampling_flags(plain)
    assert deletable(res) == [True] * 6
    assert deletable(plain) == [not f for f in expected]


@pytest.mark.parametrize("kw", [dict(depth=14), dict(depth=14, shortcut="B"), dict(depth=14, preact=True)])
def test_a_deleted_block_is_its_shortcut(kw):
    model = _eval_model(**kw)
    x = torch.randn(4, 3, 16, 16)
    for i in (1, 2):  # an identity block and a downsampling block
        with torch.no_grad():
            got = forward_plan(model, model.stem(x), list(range(6)), {i})
            # the same net with that block's branch silenced: its last layer's weight and bias zeroed
            twin = copy.deepcopy(model)
            last = twin.blocks()[i].branch[-1]
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()
            assert torch.allclose(got, twin(x), atol=1e-5)
            assert not torch.allclose(got, model(x), atol=1e-3)


def test_plain_net_deletion_passes_input_through_and_refuses_downsampling():
    model = _eval_model(depth=14, residual=False)
    x = torch.randn(8, 3, 16, 16)
    r = lesion_study(model, x, torch.zeros(8, dtype=torch.long), {**SETTINGS, "reorder": False})
    assert [s["error"] is None for s in r["single"]] == downsampling_flags(model)
    assert [s["downsampling"] for s in r["single"]] == downsampling_flags(model)
    with torch.no_grad():
        blocks = model.blocks()
        h = blocks[0](model.stem(x))  # block 1 removed: block 0's output goes straight to block 2
        for b in blocks[2:]:
            h = b(h)
        manual = model.fc(model.pool(model.head_act(h)).flatten(1))
        assert torch.allclose(forward_plan(model, model.stem(x), list(range(6)), {1}), manual)


def test_kendall_tau_and_reorders_stay_within_stages():
    assert kendall_tau([0, 1, 2, 3]) == 1.0 and kendall_tau([3, 2, 1, 0]) == -1.0
    assert kendall_tau([1, 0, 2, 3]) == pytest.approx(1 - 4 / 12)
    import random

    flags = [False, False, False, True, False, False, True, False, False]
    stage = [1, 1, 1, 2, 2, 2, 3, 3, 3]
    for seed in range(20):
        order = random_reorder(flags, stage, 5, random.Random(seed))
        assert sorted(order) == list(range(9))
        assert [stage[i] for i in order] == stage                 # nothing crosses a stage
        assert all(order[p] == p for p in range(9) if flags[p])    # downsampling blocks stay


def test_stage_decomposition_adds_up():
    for kw in (dict(depth=14), dict(depth=14, preact=True)):
        d = stage_decomposition(_eval_model(**kw), torch.randn(1, 3, 16, 16))
        assert [s["stage"] for s in d] == ["layer1", "layer2", "layer3"]
        for s in d:
            assert s["reconstruction_error"] < 1e-4 * s["output_norm"]
            assert len(s["contribution_norm"]) == len(s["contribution_maps"]) == 2
            import numpy as np
            total = np.array(s["input_map"]) + sum(np.array(m) for m in s["contribution_maps"])
            assert np.allclose(total, s["output_map"], atol=1e-5)


def test_pretrained_resnet20_lesions_on_its_own_predictions():
    # No CIFAR-10 here: shapes images labelled by the full model's own predictions, so the base error is 0
    # by construction and every error is disagreement with the intact net.
    from resnet_core.nets.checkpoints import load_checkpoint
    from resnet_core.data import make_shapes, normalize

    loaded = load_checkpoint(shared_weight(20))
    images = torch.from_numpy(make_shapes(100, seed=3)[0].copy()).permute(0, 3, 1, 2).contiguous()
    x = normalize(images, loaded.mean, loaded.std)
    with torch.no_grad():
        y = loaded.model(x).argmax(1)
    r = lesion_study(loaded.model, x, y, {**SETTINGS, "counts": [1, 4, 9], "draws": 2, "reorder": False})
    assert r["base_error"] == 0.0
    errs = [b["error"] for b in r["by_count"]]
    assert errs[-1] > errs[0] and errs == sorted(errs)           # more blocks gone, more disagreement
    singles = [s["error"] for s in r["single"] if not s["downsampling"]]
    assert sum(singles) / len(singles) < errs[-1]


def test_run_analysis_lesion_on_a_stored_run_and_cache(runs_dir):
    run_id = store_tiny_run(runs_dir, "lesion-run", "tiny")
    data = DataConfig(n_train=32, n_test=40)
    r = run_analysis("lesion", ModelSource(run_id=run_id), data=data, runs_dir=runs_dir,
                     settings={"images": 40, "draws": 1, "swaps": [1]})
    for key in ("base_error", "single", "by_count", "seconds", "reorder", "decomposition"):
        assert key in r
    assert [s["block"] for s in r["single"]] == ["layer1.0", "layer2.0", "layer3.0"]
    assert [s["downsampling"] for s in r["single"]] == [False, True, True]
    assert r["images"] == 40 and not r["cached"]
    cached = run_analysis("lesion", ModelSource(run_id=run_id), data=data, runs_dir=runs_dir,
                          settings={"images": 40, "draws": 1, "swaps": [1]})
    assert cached["cached"] and cached["base_error"] == r["base_error"]
    assert list((runs_dir / run_id / "analysis").glob("lesion-*.json"))
    # base error is the checkpoint's own test error on those images
    from resnet_core.nets.checkpoints import load_checkpoint
    from resnet_core.training.evaluate import evaluate_checkpoint

    ev = evaluate_checkpoint(load_checkpoint(runs_dir / run_id / "checkpoints" / "last.pt"), data, limit=40,
                             device="cpu")
    assert r["base_error"] == pytest.approx(1 - ev["accuracy"])


def test_lesion_needs_a_trained_model():
    with pytest.raises(AnalysisError, match="trained"):
        run_analysis("lesion", ModelSource(config=ModelConfig(depth=8)))


def test_the_cost_unit_is_timed_in_the_layout_the_analyses_run_in(monkeypatch):
    # Every analysis runs channels_last on the CPU; a rate timed in NCHW made every estimate long.
    import torch

    from resnet_core.nets import models
    from resnet_core.analysis import base

    layouts = []
    real_build = models.build_model

    def recording_build(cfg):
        model = real_build(cfg)
        model.register_forward_pre_hook(
            lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
        return model

    monkeypatch.setattr(models, "build_model", recording_build)
    monkeypatch.setattr(base, "_RATES", {})
    rate = base.forward_rate(torch.device("cpu"))
    assert rate > 0 and len(layouts) >= 4            # a warm-up and three timed passes (count_macs adds one)
    assert all(layouts[:4])


def test_reordering_swaps_random_same_shape_pairs_not_only_neighbours():
    import random

    # ResNet-56-like: 27 blocks, three stages of 9, the first of stages 2 and 3 downsampling
    flags = [False] * 9 + [True] + [False] * 8 + [True] + [False] * 8
    stage = [1] * 9 + [2] * 9 + [3] * 9
    taus, far = [], False
    for seed in range(20):
        order = random_reorder(flags, stage, 16, random.Random(seed))
        assert [stage[i] for i in order] == stage and order[9] == 9 and order[18] == 18
        far |= any(abs(order[p] - p) > 1 for p in range(27))
        taus.append(kendall_tau(order))
    # 16 neighbour swaps keep τ >= 0.909 for 27 blocks; 16 random pairs reach far lower
    assert far and min(taus) < 0.8


def _decomposition_by_hand(model, x):
    """Per stage, ‖x_L - S(x_in) - Σ F(x_i)‖ / ‖x_L‖ in float64 with the branches' own outputs."""
    out = []
    with torch.no_grad():
        h = model.stem(x)
        for _, stage in model.stages():
            blocks = list(stage)
            total = blocks[0].shortcut(h)
            for b in blocks:
                total = total + b.branch(h)
                h = b(h)
            out.append((torch.linalg.vector_norm(h - total) / torch.linalg.vector_norm(h)).item())
    return out


def test_decomposition_residual_zero_for_preactivation_positive_for_postactivation():
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    pre = _eval_model(depth=14, preact=True).double()
    post = _eval_model(depth=14).double()
    d_pre, d_post = stage_decomposition(pre, x), stage_decomposition(post, x)
    assert [s["residual_error"] for s in d_pre] == pytest.approx(_decomposition_by_hand(pre, x), abs=1e-12)
    assert [s["residual_error"] for s in d_post] == pytest.approx(_decomposition_by_hand(post, x), rel=1e-9)
    assert all(s["residual_error"] < 1e-12 for s in d_pre)
    assert all(s["residual_error"] > 1e-3 for s in d_post)
    # the old reconstruction from x_{i+1} - x_i holds for both by construction: it cannot tell them apart
    assert all(s["reconstruction_error"] < 1e-9 * s["output_norm"] for s in d_pre + d_post)
