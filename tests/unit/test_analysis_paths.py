"""The unrolled ensemble: exact path counts, path gradients that add up to the full gradient."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from resnet_core.analysis import AnalysisError, ModelSource, run_analysis
from resnet_core.analysis.paths import BlockGraphs, length_distribution
from resnet_core.config import DataConfig, ModelConfig
from resnet_core.nets.models import build_model

TINY_DATA = DataConfig(n_train=32, n_test=16)


def test_length_distribution_exact_counts_for_54_blocks():
    # Veit et al. 2016, ResNet-110 (54 blocks): 95% of paths pass through 19-35 blocks (exactly 98.0%)
    p = length_distribution(54)
    assert len(p) == 55 and sum(p) == pytest.approx(1.0, abs=1e-15)
    assert sum(p[19:36]) == pytest.approx(0.980, abs=5e-4)
    assert sum(p[5:18]) == pytest.approx(0.0045, abs=5e-5)
    assert p[27] == max(p) and p[0] == p[54] == 2.0 ** -54


@pytest.mark.parametrize("kw", [dict(depth=8), dict(depth=8, shortcut="B"), dict(depth=8, preact=True)])
def test_all_paths_add_up_to_the_full_gradient(kw):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**kw)).double().train()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([1, 2, 3])
    blocks = model.blocks()

    def head_loss(h):
        return F.cross_entropy(model.fc(model.pool(model.head_act(h)).flatten(1)), y)

    with torch.no_grad():
        h0 = model.stem(x)
    graphs = BlockGraphs(blocks, h0, head_loss)
    n = len(blocks)
    total = sum(graphs.backward(set(c)) for k in range(n + 1) for c in itertools.combinations(range(n), k))
    # reference: ordinary autograd at the first block's input
    h = h0.clone().requires_grad_(True)
    out = h
    for b in blocks:
        out = b(out)
    (ref,) = torch.autograd.grad(head_loss(out), h)
    assert torch.allclose(total, ref, rtol=1e-10, atol=1e-14)
    assert torch.allclose(graphs.backward(None), ref, rtol=1e-10, atol=1e-14)
    # the path through no branch at all is the shortcut chain: for option A identities, the head's gradient
    # passed through the ReLU masks, subsampled and stripped of the padded channels


def test_run_analysis_paths_fields():
    r = run_analysis("paths", ModelSource(config=ModelConfig(depth=14)), data=TINY_DATA,
                     settings={"draws": 2, "batches": 1, "batch_size": 4})
    assert r["blocks"] == 6 and len(r["length_distribution"]) == 7
    assert r["lengths"] == list(range(7)) and len(r["gradient_by_length"]) == 7
    assert sum(r["gradient_share_by_length"]) == pytest.approx(1.0)
    assert all(math.isfinite(v) and v > 0 for v in r["gradient_by_length"])
    # one path each of length 0 and n: on one batch, measured once, exactly
    assert r["gradient_std_by_length"][0] == 0 and r["gradient_std_by_length"][-1] == 0
    assert r["gradient_std_by_length"][3] > 0


def test_paths_counts_only_and_plain_net_refused():
    r = run_analysis("paths", ModelSource(config=ModelConfig(depth=110)), data=TINY_DATA,
                     settings={"measure": False})
    assert r["blocks"] == 54 and "gradient_by_length" not in r and r["paths_95_range"][0] >= 19
    with pytest.raises(AnalysisError, match="plain"):
        run_analysis("paths", ModelSource(config=ModelConfig(depth=8, residual=False)), data=TINY_DATA)
    with pytest.raises(AnalysisError, match="lengths"):
        run_analysis("paths", ModelSource(config=ModelConfig(depth=8)), data=TINY_DATA, settings={"lengths": [0, 9]})


def test_energy_shares_against_every_path_by_hand_in_float64():
    # depth 8: 3 blocks, 8 paths; with draws >= C(3, k) every path of each length is measured, so the
    # shares are exact: C(n,k) E‖g_k‖² / ‖g‖² with the mean over all k-subsets, written out here
    from resnet_core.analysis.paths import gradient_by_length

    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=8)).double().train()
    batches = [(torch.randn(3, 3, 16, 16, dtype=torch.float64), torch.tensor([1, 2, 3])),
               (torch.randn(3, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 4, 5]))]
    r = gradient_by_length(model, batches, [0, 1, 2, 3], draws=6, seed=0)
    blocks = model.blocks()
    expected = {k: [] for k in range(4)}
    full_sq = []
    for x, y in batches:
        def head_loss(h, y=y):
            return F.cross_entropy(model.fc(model.pool(model.head_act(h)).flatten(1)), y)
        graphs = BlockGraphs(blocks, model.stem(x).detach(), head_loss)
        g = graphs.backward(None)
        full_sq.append((g * g).sum().item())
        for k in range(4):
            for c in itertools.combinations(range(3), k):
                gk = graphs.backward(set(c))
                expected[k].append((gk * gk).sum().item() / full_sq[-1])
    for i, k in enumerate(range(4)):
        assert r["energy"][i] == pytest.approx(sum(expected[k]) / len(expected[k]), rel=1e-10)
    assert r["draws"] == [2, 6, 6, 2]      # every path of each length, once per batch
    assert r["full_sq"] == pytest.approx(sum(full_sq) / 2, rel=1e-10)


def test_run_analysis_paths_energy_share_and_random_batches():
    r = run_analysis("paths", ModelSource(config=ModelConfig(depth=14)), data=TINY_DATA,
                     settings={"draws": 8, "batches": 2, "batch_size": 4})
    share = r["gradient_energy_share_by_length"]
    assert len(share) == 7 and all(v >= 0 for v in share)
    assert sum(share) == pytest.approx(r["gradient_energy_share_total"])
    # with the norms, Σ C(n,k) E‖g_k‖ far exceeds ‖g‖; the squared norms add up to about ‖g‖²
    assert sum(r["total_gradient_by_length"]) > 1.5 * r["full_gradient_norm"]
    assert 0.5 < r["gradient_energy_share_total"] < 1.5
    assert r["batches"] == 2 and r["full_gradient_norm"] > 0
