import pytest
import torch
import torch.nn as nn

from resnet_core.config import ConfigError, ModelConfig, valid_depths
from resnet_core.nets.models import ZeroPadShortcut, build_model, count_macs, count_params

# He et al. 2015, Table 6 (option A): parameters in millions.
PAPER_PARAMS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}

CONFIGS = [
    dict(depth=8), dict(depth=8, residual=False), dict(depth=8, shortcut="B"), dict(depth=8, shortcut="C"),
    dict(depth=8, preact=True), dict(depth=8, batchnorm=False), dict(depth=11, block="bottleneck"),
    dict(depth=11, block="bottleneck", preact=True, shortcut="B"), dict(depth=8, width=2),
    dict(depth=8, init="xavier"), dict(depth=8, init="normal"), dict(depth=8, zero_init_last=True),
    dict(depth=8, preact=True, zero_init_last=True),
]


@pytest.mark.parametrize("depth,millions", PAPER_PARAMS.items())
def test_param_counts_match_paper_table6(depth, millions):
    n = count_params(build_model(ModelConfig(depth=depth)))
    assert round(n / 1e6, 2 if millions < 1 else 1) == millions


def test_resnet20_macs():
    # 40.55M multiply-adds per 32x32 image, the figure the benchmark's GFLOP/s are based on.
    assert count_macs(build_model(ModelConfig(depth=20))) == 40_551_040


@pytest.mark.parametrize("depth", [20, 56])
def test_plain_twin_has_exactly_the_residual_parameters_under_option_a(depth):
    res = build_model(ModelConfig(depth=depth))
    plain = build_model(ModelConfig(depth=depth, residual=False))
    assert count_params(res) == count_params(plain)
    assert [tuple(p.shape) for p in res.parameters()] == [tuple(p.shape) for p in plain.parameters()]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_every_config_builds_runs_and_trains(kw):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**kw))
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    # It learns: a fixed batch of 8 images, each its own class, fitted better within 15 SGD steps, and
    # every weight moves. Catches a branch cut from the graph or scaled away (its weights get no or zero
    # gradients and never move), weights the optimiser never sees, an output that ignores its input. (A post-activation net whose branches
    # start at zero learns slowest: its loss falls to about 0.8 of the first; the others' to 0.4 or less.)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses
    unmoved = [n for (n, p), p0 in zip(model.named_parameters(), before) if torch.equal(p, p0)]
    assert not unmoved
    # Stable names: one per conv/linear, in network order, stem first and fc last.
    assert model.layer_names[0] == "stem.conv" and model.layer_names[-1] == "fc"
    assert [fi.name for fi in model.feature_info][1:] == [n for n, _ in model.named_blocks()]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_blocks_expose_branch_shortcut_and_own_relus(kw):
    model = build_model(ModelConfig(**kw))
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and all(not m.inplace for m in relus)
    assert len({id(m) for m in relus}) == len(relus)
    for b in model.blocks():
        assert isinstance(b.branch, nn.Sequential)
        assert (b.shortcut is not None) == kw.get("residual", True)


def test_shortcut_options():
    a = build_model(ModelConfig(depth=8, shortcut="A"))
    b = build_model(ModelConfig(depth=8, shortcut="B"))
    c = build_model(ModelConfig(depth=8, shortcut="C"))
    assert isinstance(a.layer2[0].shortcut, ZeroPadShortcut) and isinstance(a.layer1[0].shortcut, nn.Identity)
    assert hasattr(b.layer2[0].shortcut, "conv") and isinstance(b.layer1[0].shortcut, nn.Identity)
    assert all(hasattr(blk.shortcut, "conv") for blk in c.blocks())
    assert count_params(a) < count_params(b) < count_params(c)


def test_option_a_shortcut_subsamples_and_zero_pads():
    sc = ZeroPadShortcut(16, 32, 2)
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_plain_block_has_no_addition():
    torch.manual_seed(0)
    m = build_model(ModelConfig(depth=8, residual=False)).eval()
    blk = m.layer1[0]
    x = torch.randn(1, 16, 8, 8)
    assert torch.allclose(blk(x), torch.relu(blk.branch(x)))


def test_zero_init_last_makes_blocks_identity_at_start():
    torch.manual_seed(0)
    m = build_model(ModelConfig(depth=8, zero_init_last=True)).eval()
    blk = m.layer1[0]
    x = torch.randn(1, 16, 8, 8).relu()
    assert torch.allclose(blk(x), x)


@pytest.mark.parametrize("depth,block", [(21, "basic"), (7, "basic"), (21, "bottleneck"), (0, "basic"), (1208, "basic")])
def test_invalid_depths_are_refused_with_what_is_valid(depth, block):
    with pytest.raises(ConfigError, match=r"n\+2|at most"):
        ModelConfig(depth=depth, block=block)


def test_valid_depths():
    assert valid_depths("basic")[:5] == [8, 14, 20, 26, 32] and 1202 in valid_depths("basic")
    assert valid_depths("bottleneck")[:3] == [11, 20, 29] and 164 in valid_depths("bottleneck")


def test_preactivation_stem_has_bn_relu_before_the_first_unit_splits():
    # He et al. 2016 (their CIFAR code): conv, BN, ReLU, then the first unit, whose shortcut carries that
    # activated input; the first unit has no BN-ReLU of its own. Post-activation nets are unchanged.
    import torch.nn as nn

    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=8, preact=True)).eval()
    assert [type(m) for m in model.stem] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    first = model.layer1[0].branch
    assert isinstance(first.bn1, nn.Identity) and isinstance(first.relu1, nn.Identity)
    assert isinstance(model.layer2[0].branch.bn1, nn.BatchNorm2d)
    seen = {}
    h = model.layer1[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
    x = torch.randn(2, 3, 16, 16)
    model(x)
    h.remove()
    assert seen["x"].min() >= 0      # the first shortcut's input is activated, not the raw convolution
    assert torch.allclose(seen["x"], torch.relu(model.stem.bn(model.stem.conv(x))))


def test_preactivation_checkpoint_of_the_earlier_layout_still_loads(tmp_path):
    from resnet_core.nets.checkpoints import load_checkpoint, save_checkpoint

    cfg = ModelConfig(depth=8, preact=True)
    torch.manual_seed(0)
    old = build_model(cfg, legacy_preact_stem=True).eval()
    assert "stem.bn.weight" not in old.state_dict() and "layer1.0.branch.bn1.weight" in old.state_dict()
    path = save_checkpoint(tmp_path / "old.pt", old, {"model": cfg.to_dict()}, step=1, classes=list("abcdefghij"),
                           mean=(0.5,) * 3, std=(0.25,) * 3)
    loaded = load_checkpoint(path)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(loaded.model(x), old(x))
