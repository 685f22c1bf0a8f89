"""The unrolled ensemble: exact path counts, path gradients that add up to the full gradient."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from resnet_core.analysis import AnalysisError, ModelSource, run_analysis
from resnet_core.analysis.paths import BlockGraphs, length_distribution
from resnet_core.config import DataConfig, ModelConfig
from resnet_core.models import build_model

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
                     settings={"draws": 2, "batch_size": 4})
    assert r["blocks"] == 6 and len(r["length_distribution"]) == 7
    assert r["lengths"] == list(range(7)) and len(r["gradient_by_length"]) == 7
    assert sum(r["gradient_share_by_length"]) == pytest.approx(1.0)
    assert all(math.isfinite(v) and v > 0 for v in r["gradient_by_length"])
    # one path each of length 0 and n: every draw measures the same path
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
