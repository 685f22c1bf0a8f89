"""Gradient flow at initialisation: the block-by-block backward pass against autograd and against theory."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from resnet_core.analysis import ANALYSES, AnalysisError, ModelSource, estimate_cost, run_analysis
from resnet_core.analysis.gradient_flow import flow_through_blocks, gradient_flow
from resnet_core.config import DataConfig, ModelConfig
from resnet_core.nets.models import _Block, build_model, count_macs

TINY_DATA = DataConfig(n_train=32, n_test=16)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(ModelConfig(**kw))


@pytest.mark.parametrize("kw, budget", [(dict(depth=8), 2**30), (dict(depth=8), 0), (dict(depth=14, residual=False), 2**30),
                                        (dict(depth=8, preact=True), 0), (dict(depth=8, shortcut="B"), 2**30),
                                        (dict(depth=8, batchnorm=False), 300_000)])
def test_block_by_block_backward_equals_autograd_in_float64(kw, budget):
    # budget 0: every block recomputed from its stored input; 300 kB: graphs kept for the first blocks only
    model = _model(**kw).double().train()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    r = gradient_flow(model, x, y, graph_budget_bytes=budget)

    # Reference: one ordinary autograd pass, the gradient at each block's input kept by a hook.
    kept = {}
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: kept.__setitem__(i, a[0]) or a[0].retain_grad())
               for i, b in enumerate(model.blocks())]
    model.zero_grad()
    xi = x.clone().requires_grad_(True)
    F.cross_entropy(model(xi), y).backward()
    for h in handles:
        h.remove()
    expected = [kept[i].grad.norm().item() for i in range(len(kept))]
    assert r["input_grad_norm"] == pytest.approx(expected, rel=1e-9)
    assert r["ratio"] == pytest.approx(expected[0] / expected[-1], rel=1e-9)
    assert r["image_grad_norm"] == pytest.approx(xi.grad.norm().item(), rel=1e-9)
    assert r["weight_grad_norm"] == pytest.approx([m.weight.grad.norm().item() for _, m in model.weight_layers()],
                                                  rel=1e-9)
    assert r["layers"] == model.layer_names and len(r["blocks"]) == len(expected)
    # the shortcut and branch parts add up (as vectors) to the input gradient: norms obey the triangle rule
    for total, s, b in zip(r["input_grad_norm"], r["shortcut_grad_norm"], r["branch_grad_norm"]):
        assert total <= s + b + 1e-12
    if not model.cfg.residual:
        assert r["shortcut_grad_norm"] == [0.0] * len(expected) and r["branch_share"] == [1.0] * len(expected)


def test_linear_residual_net_gradient_is_the_analytic_product():
    # x_{l+1} = x_l + W_l x_l, L = c . x_L  =>  dL/dx_l = (I + W_l)^T ... (I + W_{L-1})^T c
    torch.manual_seed(1)
    d, n = 5, 4
    blocks = [_Block(nn.Sequential(nn.Linear(d, d, bias=False)), nn.Identity(), preact=True).double()
              for _ in range(n)]
    c = torch.randn(d, dtype=torch.float64)
    x0 = torch.randn(1, d, dtype=torch.float64)
    r = flow_through_blocks(blocks, x0, lambda h: (h @ c).sum())
    expected, g = [], c.clone()
    for b in reversed(blocks):
        w = b.branch[0].weight.detach()
        branch = w.T @ g
        expected.insert(0, (g + branch, g, branch))
        g = g + branch
    got = [math.exp(v) for v in torch.stack(r["input_grad_log"]).tolist()]
    assert got == pytest.approx([e[0].norm().item() for e in expected], rel=1e-12)
    assert [math.exp(v) for v in torch.stack(r["shortcut_grad_log"]).tolist()] == pytest.approx(
        [e[1].norm().item() for e in expected], rel=1e-12)
    assert [math.exp(v) for v in torch.stack(r["branch_grad_log"]).tolist()] == pytest.approx(
        [e[2].norm().item() for e in expected], rel=1e-12)
    # the gradient vector itself, rescaled by the carried scale, is the product of the Jacobians
    grad_x0 = r["grad_h0"] * math.exp(r["grad_h0_log_scale"].item())
    product = torch.eye(d, dtype=torch.float64)
    for b in blocks:
        product = (torch.eye(d, dtype=torch.float64) + b.branch[0].weight.detach()) @ product
    assert torch.allclose(grad_x0.flatten(), product.T @ c, rtol=1e-12, atol=1e-12)


def _stage1_variances(cfg, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg)
    x = torch.randn(8, 3, 16, 16)
    r = gradient_flow(model, x, torch.zeros(8, dtype=torch.long))
    n = cfg.n
    return r["stem_std"] ** 2, [s * s for s in r["activation_std"][:n]]


def test_residual_without_bn_doubles_forward_variance_per_block():
    # Pre-activation, no BN, He init: Var(x + F(x)) = Var(x) + Var(F(x)) and He init keeps Var(F(x)) = Var(x)
    v0, v = _stage1_variances(ModelConfig(depth=38, preact=True, batchnorm=False, width=4))
    ratios = [b / a for a, b in zip([v0] + v[:-1], v)]
    geometric_mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
    assert 1.6 < geometric_mean < 2.5, ratios


def test_residual_with_bn_variance_grows_linearly_with_block_index():
    # De & Smith 2020: with BN on the branch input, Var(F(x)) ~ 1 whatever Var(x): x_l grows like x_0 + l
    v0, v = _stage1_variances(ModelConfig(depth=38, preact=True, batchnorm=True, width=2))
    ys = [v0] + v
    xs = list(range(len(ys)))
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)
    residuals = [b - (my + slope * (a - mx)) for a, b in zip(xs, ys)]
    r2 = 1 - sum(e * e for e in residuals) / sum((b - my) ** 2 for b in ys)
    assert 0.5 < slope < 1.6 and r2 > 0.97, (slope, r2, ys)
    # and not geometric: the last step is a much smaller fraction than the first
    assert ys[-1] / ys[-2] < ys[1] / ys[0]


def test_plain_bn_net_input_gradient_grows_with_depth_residual_much_less():
    x = torch.randn(4, 3, 8, 8)
    y = torch.arange(4)
    ratio = {}
    for depth in (14, 32):
        for residual in (False, True):
            torch.manual_seed(0)
            r = gradient_flow(build_model(ModelConfig(depth=depth, residual=residual)), x, y)
            ratio[depth, residual] = r["ratio"]
    assert ratio[32, False] > ratio[14, False] > 1
    assert ratio[32, True] < ratio[32, False] / 5


def test_a_known_gain_per_layer_is_measured_exactly():
    """A plain ResNet-20 without BN whose every block conv is the identity kernel times 1.2, in float64,
    on a stem that makes every activation positive (no ReLU masks a gradient): each block's input
    gradient is 1.2^2 times the next block's, and the fitted per-layer rate of stages 1 and 2 is 1.2 to
    1e-9. Catches a gradient read at the wrong side of a block, an off-by-one between blocks, and a rate
    fitted per block instead of per layer (1.44) or across the stage jumps."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=20, residual=False, batchnorm=False)).double()
    gain = 1.2
    with torch.no_grad():
        model.stem.conv.weight.mul_(0.01)
        model.stem.conv.bias.fill_(1.0)
        for b in model.blocks():
            for conv in (b.branch.conv1, b.branch.conv2):
                nn.init.dirac_(conv.weight)
                conv.weight.mul_(gain)
                conv.bias.zero_()
    r = gradient_flow(model, torch.randn(2, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1]))
    g = r["input_grad_norm"]
    assert [a / b for a, b in zip(g, g[1:])] == pytest.approx([gain ** 2] * (len(g) - 1), rel=1e-9)
    rates = {s["stage"]: s["rate"] for s in r["per_layer_rate_by_stage"]}
    # The last stage's fit ends at the net's output gradient, which no ReLU of a block has masked:
    # the 16 channels the identity kernels leave empty in stage 3 carry gradient there only.
    assert (rates["layer1"], rates["layer2"]) == (pytest.approx(gain, rel=1e-9), pytest.approx(gain, rel=1e-9))


def test_run_analysis_gradient_flow_with_sweep_and_contract_fields():
    progress = []
    r = run_analysis("gradient-flow", ModelSource(config=ModelConfig(depth=8)),
                     settings={"batch_size": 4, "depths": [8, 14], "sweep_batch_size": 2}, data=TINY_DATA,
                     progress=lambda f, m: progress.append(f))
    for key in ("analysis", "settings", "seconds", "blocks", "input_grad_norm", "ratio", "peak_memory_mb",
                "branch_share", "activation_std", "weight_grad_norm", "sweep"):
        assert key in r
    assert r["analysis"] == "gradient-flow" and r["blocks"] == ["layer1.0", "layer2.0", "layer3.0"]
    assert [(e["depth"], e["residual"]) for e in r["sweep"]] == [(8, True), (8, False), (14, True), (14, False)]
    assert all(len(e["input_grad_norm"]) == 3 * ((e["depth"] - 2) // 6) for e in r["sweep"])
    assert progress[-1] == 1.0 and progress == sorted(progress)
    import json
    json.dumps(r, allow_nan=False)  # plain data, no inf/nan


def test_gradient_past_float32_range_is_carried_exactly():
    # A plain net's gradient grows ~1.2x per layer: ~1e95 over 1,202 layers, past float32's 3e38. Here
    # x_{l+1} = x_l + 100 x_l in float32: the gradient is 101^n |c|, 1e60 for n = 30.
    d, n = 3, 30
    blocks = []
    for _ in range(n):
        lin = nn.Linear(d, d, bias=False)
        nn.init.eye_(lin.weight)
        lin.weight.data *= 100
        blocks.append(_Block(nn.Sequential(lin), nn.Identity(), preact=True))
    c = torch.tensor([3.0, 4.0, 0.0])
    r = flow_through_blocks(blocks, torch.ones(1, d), lambda h: (h @ c).sum())
    logs = torch.stack(r["input_grad_log"]).tolist()
    assert logs[0] == pytest.approx(n * math.log(101) + math.log(5.0), rel=1e-6)
    assert logs[-1] == pytest.approx(math.log(101 * 5.0), rel=1e-6)


def test_bad_requests_are_analysis_errors():
    src = ModelSource(config=ModelConfig(depth=8))
    with pytest.raises(AnalysisError, match="no setting"):
        run_analysis("gradient-flow", src, settings={"bogus": 1})
    with pytest.raises(AnalysisError, match="depth 9"):
        run_analysis("gradient-flow", src, settings={"depths": [8, 9]})
    with pytest.raises(AnalysisError, match="batch_size"):
        run_analysis("gradient-flow", src, settings={"batch_size": 0})
    with pytest.raises(AnalysisError, match="unknown analysis"):
        run_analysis("nope", src)
    with pytest.raises(AnalysisError, match="exactly one"):
        ModelSource()


def test_cancel_stops_between_blocks():
    import threading

    from resnet_core.analysis import Cancelled

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        run_analysis("gradient-flow", ModelSource(config=ModelConfig(depth=8)), cancel=cancel, data=TINY_DATA)


def test_estimate_cost_is_the_hand_count_of_multiply_adds_over_the_rate(monkeypatch, tmp_path):
    """At a fixed rate of 1 GMAC/s: a ResNet-8 at batch 4 costs 2 forwards + 1 backward (4 forwards) for
    it and for its pre-activation twin (the '+1' view); a sweep over depths 8 and 14 adds, per depth, the
    plain and residual nets at the sweep batch of 8, 4 forwards each. Catches a dropped twin, a backward
    counted as one forward, the sweep at the main batch size, a depth of the sweep left out."""
    import resnet_core.analysis as analysis

    monkeypatch.setattr(analysis, "forward_rate", lambda device, width=1.0, image_size=32: 1e9)
    monkeypatch.setenv("RESNET_LAB_CACHE", str(tmp_path))   # no history of earlier runs: the cost model alone
    macs = {d: count_macs(build_model(ModelConfig(depth=d)), (32, 32)) for d in (8, 14)}
    src = ModelSource(config=ModelConfig(depth=8))
    one = estimate_cost("gradient-flow", src, {"batch_size": 4})
    sweep = estimate_cost("gradient-flow", src, {"batch_size": 4, "depths": [8, 14]})
    alone = macs[8] * 4 * 4 * 2
    assert one["seconds"] == pytest.approx(alone / 1e9, rel=2e-3)   # three significant digits
    assert sweep["seconds"] == pytest.approx((alone + (macs[8] + macs[14]) * 8 * 4 * 2) / 1e9, rel=2e-3)
    assert "sweep of 4 nets" in sweep["detail"]
    assert ANALYSES["gradient-flow"].needs == "config"


# --- issue 18: per element, energy shares, the "+1" view ------------------------------------------------

def _hand_parts(model, x, y):
    """Per block, by plain autograd in float64: the input-gradient g, its branch part J_Fᵀu and shortcut
    part Sᵀu (u: the output gradient past the output ReLU), and the output gradient v."""
    ins, outs = {}, {}
    blocks = model.blocks()
    hs = [b.register_forward_pre_hook(lambda m, a, i=i: ins.__setitem__(i, a[0]) or a[0].retain_grad())
          for i, b in enumerate(blocks)]
    hs += [b.register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o) or o.retain_grad())
           for i, b in enumerate(blocks)]
    F.cross_entropy(model(x), y).backward()
    for h in hs:
        h.remove()
    parts = []
    for i, b in enumerate(blocks):
        xi = ins[i].detach().requires_grad_(True)
        f = b.branch(xi)
        s = b.shortcut(xi)
        z = f + s
        v = outs[i].grad
        u = v * (z > 0).double() if isinstance(b.relu_out, nn.ReLU) else v
        (gb,) = torch.autograd.grad(f, xi, u, retain_graph=True)
        (gs,) = torch.autograd.grad(s, xi, u)
        parts.append((ins[i].grad, gb, gs, u, v))
    return parts


@pytest.mark.parametrize("preact", [False, True])
def test_rms_energy_share_and_cosine_against_hand_computation_in_float64(preact):
    model = _model(depth=8, preact=preact).double().train()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    r = gradient_flow(model, x, y)
    model.zero_grad()
    parts = _hand_parts(model, x.clone(), y)
    for i, (g, b, s, u, v) in enumerate(parts):
        assert torch.allclose(b + s, g, rtol=1e-9, atol=1e-15)
        assert r["rms_input_grad"][i] == pytest.approx((g.pow(2).mean().sqrt()).item(), rel=1e-9)
        share = ((b * g).sum() / (g * g).sum()).item()
        assert r["branch_energy_share"][i] == pytest.approx(share, rel=1e-9, abs=1e-12)
        # the shortcut's energy share is the rest: the two add to 1 exactly
        assert share + ((s * g).sum() / (g * g).sum()).item() == pytest.approx(1.0, abs=1e-12)
        cos = ((b * s).sum() / (b.norm() * s.norm())).item()
        assert r["branch_shortcut_cosine"][i] == pytest.approx(cos, rel=1e-9, abs=1e-12)
        assert r["output_relu_pass"][i] == pytest.approx((u.norm() / v.norm()).item(), rel=1e-9)
    if preact:
        assert r["output_relu_pass"] == pytest.approx([1.0] * len(parts))
    else:
        assert all(p < 1.0 for p in r["output_relu_pass"])
    # per element, the stage-1 input has 4x the elements of a stage-3 tensor: the per-element ratio divides it out
    out_rms = r["output_grad_norm"] / math.sqrt(4 * model.fc.in_features * 4 * 4)
    assert r["ratio_per_element"] == pytest.approx(r["rms_input_grad"][0] / out_rms, rel=1e-9)
    assert r["ratio_per_element"] != pytest.approx(r["ratio"], rel=1e-3)


def test_plain_net_branch_carries_everything():
    model = _model(depth=8, residual=False).double().train()
    r = gradient_flow(model, torch.randn(2, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1]))
    assert r["branch_energy_share"] == pytest.approx([1.0] * 3) and r["branch_shortcut_cosine"] == [None] * 3


@pytest.mark.parametrize("block, depth", [("basic", 20), ("bottleneck", 29)])
def test_per_layer_rate_recovers_a_known_gain_within_each_stage(block, depth):
    from resnet_core.analysis.gradient_flow import per_layer_rate_by_stage

    model = _model(depth=depth, block=block)
    per_block = 3 if block == "bottleneck" else 2
    n = len(model.blocks())
    gains = {"layer1": 1.3, "layer2": 1.2, "layer3": 1.1}
    # each block's input gradient is its output's times gain^per_block; a stage boundary adds a jump (x7)
    # that a fit across stages would take for growth, and that a per-stage fit must ignore
    with torch.no_grad():
        h = model.stem(torch.zeros(1, 3, 32, 32))
        numels = []
        for b in model.blocks():
            numels.append(h.numel())
            h = b(h)
        numels.append(h.numel())
    names = [nm for nm, _ in model.named_blocks()]
    values = [1.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        jump = 7.0 if numels[i] != numels[i + 1] else 1.0   # a block that changes the shape
        values[i] = values[i + 1] * gains[names[i].split(".")[0]] ** per_block * jump
    rates = per_layer_rate_by_stage(model, values[:n], values[n], numels)
    assert [r["stage"] for r in rates] == ["layer1", "layer2", "layer3"]
    for r in rates:
        assert r["rate"] == pytest.approx(gains[r["stage"]], rel=1e-9)
        assert r["layers"] >= per_block


def test_plus_one_view_runs_the_preactivation_twin():
    r = run_analysis("gradient-flow", ModelSource(config=ModelConfig(depth=8)), data=TINY_DATA,
                     settings={"batch_size": 4, "twin": False}, use_cache=False)
    pre, post = r["plus_one"]["pre-activation"], r["plus_one"]["post-activation"]
    assert pre["output_relu_pass"] == pytest.approx([1.0] * 3)
    assert all(p < 1 for p in post["output_relu_pass"])
    assert post["rms_input_grad"] == r["rms_input_grad"]
    for key in ("rms_input_grad", "per_layer_rate_by_stage", "ratio_per_element", "branch_energy_share",
                "branch_shortcut_cosine"):
        assert key in r
    plain = run_analysis("gradient-flow", ModelSource(config=ModelConfig(depth=8, residual=False)), data=TINY_DATA,
                         settings={"batch_size": 4, "twin": False}, use_cache=False)
    assert "plus_one" not in plain
