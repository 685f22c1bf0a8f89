"""Loss landscapes: filter-normalised directions, the grid centre, a quadratic toy's closed form, init.pt."""
import threading

import pytest
import torch
import torch.nn as nn

from resnet_core.analysis import AnalysisError, ModelSource, run_analysis
from resnet_core.analysis.landscape import (_params_and_buffers, evaluate_params, filter_normalized_direction,
                                            linspace, loss_surface)
from resnet_core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.nets.models import build_model
from tests.conftest import store_tiny_run

TINY_DATA = DataConfig(n_train=64, n_test=16)


def _model(**kw):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**kw)).train()
    with torch.no_grad():
        model(torch.randn(16, 3, 16, 16))  # non-trivial running statistics
    return model.eval()


def test_every_filter_of_a_direction_has_its_weight_filters_norm():
    model = _model(depth=8, shortcut="B")
    params = {n: p.detach() for n, p in model.named_parameters()}
    d = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    checked = 0
    for name, w in params.items():
        if w.dim() > 1:
            got = d[name].reshape(w.shape[0], -1).norm(dim=1)
            assert torch.allclose(got, w.reshape(w.shape[0], -1).norm(dim=1), rtol=1e-5)
            assert not torch.allclose(d[name], w)  # random, not the weights themselves
            checked += 1
        else:  # biases and BN weights and biases
            assert torch.count_nonzero(d[name]) == 0
    assert checked == len(model.weight_layers())
    assert any(".bn" in n for n in params) and any(n.endswith("bias") for n in params)
    # a seed gives the same direction
    d2 = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    assert all(torch.equal(d[k], d2[k]) for k in d)


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_grid_centre_reproduces_the_models_own_loss(method):
    model = _model(depth=8)
    x, y = torch.randn(12, 3, 8, 8), torch.arange(12) % 10
    params, buffers = _params_and_buffers(model)
    g = torch.Generator().manual_seed(1)
    d1, d2 = filter_normalized_direction(params, g), filter_normalized_direction(params, g)
    r = loss_surface(model, d1, d2, [-0.5, 0.0, 0.5], [0.0, 0.5], x, y, batch_size=6, method=method,
                     points_per_pass=3)
    with torch.no_grad():
        logits = model(x)
        own = nn.functional.cross_entropy(logits, y).item()
        own_acc = (logits.argmax(1) == y).float().mean().item()
    assert r["loss"][0][1] == pytest.approx(own, rel=1e-5)
    assert r["accuracy"][0][1] == pytest.approx(own_acc)
    assert r["loss"][1][0] != pytest.approx(own, rel=1e-3)
    # the model itself is untouched
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())


def test_vmap_and_loop_agree():
    model = _model(depth=8)
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6) % 10
    params, _ = _params_and_buffers(model)
    g = torch.Generator().manual_seed(2)
    d1, d2 = filter_normalized_direction(params, g), filter_normalized_direction(params, g)
    a = loss_surface(model, d1, d2, [-1, 0.3], [-0.2, 0.7], x, y, batch_size=4, method="loop")
    b = loss_surface(model, d1, d2, [-1, 0.3], [-0.2, 0.7], x, y, batch_size=4, method="vmap", points_per_pass=3)
    assert torch.allclose(torch.tensor(a["loss"]), torch.tensor(b["loss"]), rtol=1e-4)
    assert a["accuracy"] == b["accuracy"]


def test_quadratic_toy_surface_matches_its_closed_form():
    # L(W) = 1/2 ||W - A||^2: along W0 + a D1 + b D2 the surface is 1/2 ||W0 - A + a D1 + b D2||^2
    toy = nn.Linear(4, 3, bias=True)
    torch.manual_seed(3)
    target = torch.randn(3, 4)
    params = {n: p.detach() for n, p in toy.named_parameters()}
    g = torch.Generator().manual_seed(4)
    d1, d2 = filter_normalized_direction(params, g), filter_normalized_direction(params, g)
    xs, ys = linspace(-1, 1, 5), linspace(-2, 2, 3)

    def evaluate(p):
        return 0.5 * ((p["weight"] - target) ** 2).sum().item(), 0.0

    r = loss_surface(toy, d1, d2, xs, ys, None, None, evaluate=evaluate)
    w0 = params["weight"]
    for j, b in enumerate(ys):
        for i, a in enumerate(xs):
            closed = 0.5 * ((w0 - target + a * d1["weight"] + b * d2["weight"]) ** 2).sum().item()
            assert r["loss"][j][i] == pytest.approx(closed, rel=1e-6)
    # the centre is the minimum along no direction in particular, but the surface is a convex quadratic
    assert r["loss"][1][2] == pytest.approx(0.5 * ((w0 - target) ** 2).sum().item(), rel=1e-6)


def test_run_analysis_landscape_and_interpolate_on_a_run(runs_dir):
    run_id = store_tiny_run(runs_dir, "land-run", "tiny")
    src = ModelSource(run_id=run_id)
    r = run_analysis("landscape", src, data=TINY_DATA, runs_dir=runs_dir,
                     settings={"points": 3, "images": 32, "method": "loop"})
    assert r["x"] == r["y"] == [-1.0, 0.0, 1.0] and len(r["loss"]) == 3 and len(r["loss"][0]) == 3
    assert r["images"] == 32 and r["method"] == "loop"
    again = run_analysis("landscape", src, data=TINY_DATA, runs_dir=runs_dir,
                         settings={"points": 3, "images": 32, "method": "loop"})
    assert again["cached"] and again["loss"] == r["loss"]
    # the centre is the stored model's own loss on the same training images
    from resnet_core.nets.checkpoints import load_checkpoint
    from resnet_core.data import load_dataset, normalize

    loaded = load_checkpoint(runs_dir / run_id / "checkpoints" / "last.pt")
    ds = load_dataset(TINY_DATA)
    x = normalize(ds.train_x[:32], loaded.mean, loaded.std)
    with torch.no_grad():
        own = nn.functional.cross_entropy(loaded.model(x), ds.train_y[:32]).item()
    assert r["loss"][1][1] == pytest.approx(own, rel=1e-4)

    # the clipped log surface of Li et al.: ln(min(loss, 10) + 0.1), and the raw-loss contour levels 0.1..9.6
    import math
    assert r["loss_clipped_log"][1][1] == pytest.approx(math.log(min(own, 10) + 0.1), rel=1e-4)
    assert r["contour_levels"][0] == 0.1 and r["contour_levels"][-1] == 9.6
    assert r["chaos_note"]          # a tiny residual net: no claim of chaos
    # a run without its saved initial weights is refused for the line, with what to do
    with pytest.raises(AnalysisError, match="init.pt.*train it again"):
        run_analysis("interpolate", src, data=TINY_DATA, runs_dir=runs_dir, settings={"points": 5, "images": 32})


def test_training_saves_initial_weights_and_interpolation_uses_them(runs_dir):
    from resnet_core.nets.checkpoints import load_checkpoint
    from resnet_core.training.runs import RunStore, execute_run

    cfg = RunConfig(model=ModelConfig(depth=8), data=DataConfig(n_train=64, n_test=16, augment=False),
                    train=TrainConfig(steps=3, batch_size=16, eval_every=0, feature_maps_every=0, seed=5,
                                      lr=0.5, probes=False))
    writer = RunStore(runs_dir).create(cfg)
    execute_run(writer)
    init = load_checkpoint(runs_dir / writer.run_id / "checkpoints" / "init.pt").model
    last = load_checkpoint(runs_dir / writer.run_id / "checkpoints" / "last.pt").model
    torch.manual_seed(5)
    fresh = build_model(cfg.model)
    assert all(torch.equal(a, b) for a, b in zip(init.state_dict().values(), fresh.state_dict().values()))
    assert not torch.equal(init.fc.weight, last.fc.weight)
    i = run_analysis("interpolate", ModelSource(run_id=writer.run_id), runs_dir=runs_dir,
                     settings={"points": 3, "images": 16, "alpha_min": 0.0, "alpha_max": 1.0})
    assert "init.pt" in i["init_source"] and i["bn"] == "interpolate"   # the paper's: running statistics interpolated
    x = None
    from resnet_core.data import load_dataset, normalize

    ds = load_dataset(cfg.data)
    loaded = load_checkpoint(runs_dir / writer.run_id / "checkpoints" / "init.pt")
    x = normalize(ds.train_x[:16], loaded.mean, loaded.std)
    with torch.no_grad():
        own0 = nn.functional.cross_entropy(init.eval()(x), ds.train_y[:16]).item()
    assert i["loss"][0] == pytest.approx(own0, rel=1e-4)   # alpha = 0: the saved initial weights


def test_landscape_bad_settings_and_cancel(runs_dir):
    run_id = store_tiny_run(runs_dir, "bad-run", "tiny")
    src = ModelSource(run_id=run_id)
    with pytest.raises(AnalysisError, match="method"):
        run_analysis("landscape", src, data=TINY_DATA, runs_dir=runs_dir, settings={"method": "mpi"})
    with pytest.raises(AnalysisError, match="points"):
        run_analysis("landscape", src, data=TINY_DATA, runs_dir=runs_dir, settings={"points": 1})
    with pytest.raises(AnalysisError, match="alpha_min"):
        run_analysis("interpolate", src, data=TINY_DATA, runs_dir=runs_dir, settings={"alpha_min": 2.0})
    with pytest.raises(AnalysisError, match="no run"):
        run_analysis("landscape", ModelSource(run_id="missing"), runs_dir=runs_dir)
    from resnet_core.analysis import Cancelled

    cancel = threading.Event()
    calls = []

    def progress(f, m):
        calls.append(f)
        if f > 0:
            cancel.set()

    with pytest.raises(Cancelled):
        run_analysis("landscape", src, data=TINY_DATA, runs_dir=runs_dir, cancel=cancel, progress=progress,
                     settings={"points": 5, "images": 16, "method": "loop"})
    assert 0 < len(calls) < 25


def test_interpolated_running_statistics_stay_valid_beyond_the_segment():
    from resnet_core.analysis.landscape import interpolated_buffers

    init = {"bn.running_mean": torch.tensor([0.0, 1.0]), "bn.running_var": torch.tensor([1.0, 1.0]),
            "bn.num_batches_tracked": torch.tensor(0)}
    trained = {"bn.running_mean": torch.tensor([2.0, 3.0]), "bn.running_var": torch.tensor([5.0, 2.0]),
               "bn.num_batches_tracked": torch.tensor(100)}
    half = interpolated_buffers(init, trained, 0.5)
    assert half["bn.running_mean"].tolist() == [1.0, 2.0] and half["bn.running_var"].tolist() == [3.0, 1.5]
    before = interpolated_buffers(init, trained, -0.5)   # 1.5 x 1 - 0.5 x 5 = -1 would be a negative variance
    assert before["bn.running_var"].tolist() == [1.0, 1.0] and before["bn.running_mean"].tolist() == [0.0, 1.0]
    after = interpolated_buffers(init, trained, 1.5)
    assert after["bn.running_var"].tolist() == [5.0, 2.0] and after["bn.num_batches_tracked"].item() == 100
