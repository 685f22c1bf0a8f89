"""The probes' numbers against hand computations in float64 on a tiny net (micrograd's habit)."""
import pytest
import torch
import torch.nn.functional as F

from resnet_core.config import ModelConfig
from resnet_core.nets.models import build_model
from resnet_core.training.probes import captured, feature_maps, probes


def _tiny(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(depth=8, **kw)).double().train()


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


@pytest.mark.parametrize("residual", [True, False])
def test_gradient_norms_equal_hand_computation(residual):
    model = _tiny(residual=residual)
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    with probes(model) as ps:
        ps.armed = True
        F.cross_entropy(model(x), y).backward()
        measured = ps.split(torch.cat(ps.device_stats()).tolist())
    # Independent: autograd on a fresh copy, norm as sqrt(sum g^2) in float64.
    twin = _tiny(residual=residual)
    twin.load_state_dict(model.state_dict())
    weights = [m.weight for _, m in twin.weight_layers()]
    grads = torch.autograd.grad(F.cross_entropy(twin(x), y), weights)
    expected = [g.pow(2).sum().sqrt().item() for g in grads]
    assert measured["grad_norm"] == pytest.approx(expected, rel=1e-5)
    assert len(measured["grad_norm"]) == len(model.layer_names)


def test_branch_std_and_ratio_equal_hand_computation():
    model = _tiny()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    with probes(model) as ps:
        ps.armed = True
        model(x)
        measured = ps.split(torch.cat(ps.device_stats(with_grads=False)).tolist(), with_grads=False)
    # Walk the net by hand: the input of each block, its branch response F, the sample std of F.
    with torch.no_grad():
        h = model.stem(x)
        stds, ratios = [], []
        for blk in model.blocks():
            f = blk.branch(h)
            mean = f.sum() / f.numel()
            stds.append(((f - mean).pow(2).sum() / (f.numel() - 1)).sqrt().item())
            ratios.append((f.pow(2).sum().sqrt() / h.pow(2).sum().sqrt()).item())
            h = torch.relu(f + blk.shortcut(h))
    assert measured["branch_std"] == pytest.approx(stds, rel=1e-5)
    assert measured["branch_ratio"] == pytest.approx(ratios, rel=1e-5)


def test_dead_relu_fraction_and_stage_stats():
    model = _tiny()
    with torch.no_grad():
        model.layer3[0].branch.bn1.bias.fill_(-1e6)  # kills every channel of that ReLU
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    with probes(model) as ps:
        ps.armed = True
        out3 = None
        with captured(model, ["layer3"]) as store:
            model(x)
            out3 = store["layer3"]
        m = ps.split(torch.cat(ps.device_stats(with_grads=False)).tolist(), with_grads=False)
    # layer3 has two ReLUs (relu1 dead, relu_out not): the stage's dead fraction averages them.
    alive_out = (out3.amax(dim=(0, 2, 3)) > 0).double().mean().item()
    assert m["dead_relu"][2] == pytest.approx((1.0 + (1 - alive_out)) / 2)
    assert m["act_mean"][2] == pytest.approx(out3.mean().item())
    assert m["act_std"][2] == pytest.approx(out3.std().item())


def test_hooks_are_removed_even_when_the_body_raises():
    model = _tiny()
    with pytest.raises(RuntimeError, match="boom"):
        with probes(model) as ps:
            ps.armed = True
            model(torch.randn(2, 3, 32, 32, dtype=torch.float64))
            raise RuntimeError("boom")
    assert _no_hooks(model)
    with pytest.raises(KeyError):
        with captured(model, ["layer9"]):
            pass
    assert _no_hooks(model)


def test_unarmed_probes_record_nothing():
    model = _tiny()
    with probes(model) as ps:
        model(torch.randn(2, 3, 32, 32, dtype=torch.float64))
        assert all(v is None for v in ps._branch_std)


def test_feature_maps_of_probe_image():
    model = _tiny().float()
    maps = feature_maps(model, torch.randn(1, 3, 32, 32), max_channels=4)
    assert maps["stem"].shape == (4, 32, 32) and maps["layer3"].shape == (4, 8, 8)
    assert set(maps) >= {"layer2.0/x", "layer2.0/F", "layer2.0/out"}
    assert maps["layer2.0/x"].shape == (4, 32, 32) and maps["layer2.0/F"].shape == (4, 16, 16)
    assert model.training and _no_hooks(model)


def _bn_after_3x3_by_hand(model, x):
    """Walk the net by hand: the output of each BN that follows a 3x3 conv, in network order."""
    import torch.nn as nn

    outs = {}

    def seq(prefix, m, h):
        prev = None
        for name, child in m.named_children():
            h = child(h)
            if isinstance(child, nn.BatchNorm2d) and isinstance(prev, nn.Conv2d) and prev.kernel_size == (3, 3):
                outs[f"{prefix}.{name}"] = h
            prev = child
        return h

    with torch.no_grad():
        h = seq("stem", model.stem, x)
        for name, blk in model.named_blocks():
            f = seq(f"{name}.branch", blk.branch, h)
            h = blk.relu_out(f + blk.shortcut(h)) if blk.shortcut is not None else blk.relu_out(f)
    return outs


@pytest.mark.parametrize("kw, expected_names", [
    (dict(), ["stem.bn"] + [f"layer{s}.0.branch.bn{i}" for s in (1, 2, 3) for i in (1, 2)]),
    (dict(preact=True), ["stem.bn"] + [f"layer{s}.0.branch.bn2" for s in (1, 2, 3)]),
    (dict(residual=False), ["stem.bn"] + [f"layer{s}.0.branch.bn{i}" for s in (1, 2, 3) for i in (1, 2)])])
def test_layer_response_std_is_every_bn_after_a_3x3_conv(kw, expected_names):
    model = _tiny(**kw)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    with probes(model) as ps:
        ps.armed = True
        model(x)
        measured = ps.split(torch.cat(ps.device_stats(with_grads=False)).tolist(), with_grads=False)
        names = ps.layout.to_dict()["layer_response_names"]
    by_hand = _bn_after_3x3_by_hand(model, x)
    # the stem's BN and both BNs of every basic post-activation block: twice the old one-per-block record
    assert names == expected_names == list(by_hand)
    expected = [by_hand[n].std().item() for n in names]       # torch.std: the sample std over all elements
    assert measured["layer_response_std"] == pytest.approx(expected, rel=1e-5)
    assert _no_hooks(model)


def test_evaluate_layer_response_std_over_all_images_in_eval_mode():
    from resnet_core.nets.checkpoints import LoadedModel
    from resnet_core.config import DataConfig
    from resnet_core.data import load_dataset, normalize
    from resnet_core.training.evaluate import evaluate_checkpoint

    model = _tiny().float()
    with torch.no_grad():   # non-trivial running statistics, so eval mode differs from training mode
        model(torch.randn(16, 3, 32, 32))
    data = DataConfig(n_train=32, n_test=24)
    ds = load_dataset(data)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    loaded = LoadedModel(model, model.cfg, list(ds.classes), mean, std, 32, "tiny")
    r = evaluate_checkpoint(loaded, data, batch_size=10, device="cpu", with_probes=True)
    by_hand = _bn_after_3x3_by_hand(model.eval().double(), normalize(ds.test_x, mean, std).double())
    names = r["probes"]["layer_response_names"]
    assert names == list(by_hand) and r["images"] == 24
    # one std over every element of the layer's output across all 24 images (batches of 10, 10 and 4)
    assert r["probes"]["layer_response_std"] == pytest.approx([by_hand[n].std().item() for n in names], rel=1e-4)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_layer_response_std_in_training_mode_from_bn_statistics_after_earlier_batches(momentum):
    # training mode reads the batch variance from the running variance's update (no pass over the
    # activations): exact after earlier batches too, for a momentum and for a cumulative average
    import torch.nn as nn

    model = _tiny()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum
            nn.init.normal_(m.weight)   # a learned-looking scale and shift
            nn.init.normal_(m.bias)
    with torch.no_grad():
        model(torch.randn(3, 3, 32, 32, dtype=torch.float64) * 2)
        model(torch.randn(5, 3, 32, 32, dtype=torch.float64) + 1)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    with probes(model) as ps:
        ps.armed = True
        model(x)
        measured = ps.split(torch.cat(ps.device_stats(with_grads=False)).tolist(), with_grads=False)
        names = list(ps.layout.responses)
    # by hand on a copy with the running statistics as they were before this batch
    twin = _tiny()
    for m in twin.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum
    twin.load_state_dict(model.state_dict())
    by_hand = _bn_after_3x3_by_hand(twin, x)
    assert measured["layer_response_std"] == pytest.approx([by_hand[n].std().item() for n in names], rel=1e-6)
