"""Every registered attribution method, the sanity checks, progress and cancellation."""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from captum.attr import IntegratedGradients, Saliency
from PIL import Image

from resnet_core import attribution as A
from resnet_core.attribution import METHODS, AttributionError, AttributionMethod, Cancelled
from resnet_core.config import ModelConfig
from resnet_core.nets.models import build_model

FAST = {"ig": {"n_steps": 8}, "smoothgrad": {"nt_samples": 4}, "occlusion": {"window": 8, "stride": 8}}

warnings.filterwarnings("ignore", module="captum")


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(depth=8, num_classes=10)).eval()


@pytest.fixture(scope="module")
def image():
    g = torch.Generator().manual_seed(0)
    # A smooth random picture: low-frequency noise upsampled, roughly unit scale like a normalised image.
    return nn.functional.interpolate(torch.randn(1, 3, 8, 8, generator=g), size=32, mode="bilinear")


@pytest.fixture(scope="module")
def trained(trained_shapes):
    """A ResNet-8 trained here on the shapes (tests/conftest.py), not a downloaded one."""
    return trained_shapes.loaded


def _test_images(trained_shapes, n):
    import dataclasses

    from resnet_core.data import load_dataset, normalize
    ds = load_dataset(dataclasses.replace(trained_shapes.data, n_train=10, n_test=max(10, n)))
    return normalize(ds.test_x[:n], trained_shapes.loaded.mean, trained_shapes.loaded.std).float()


@pytest.fixture(scope="module")
def shapes_image(trained_shapes):
    return _test_images(trained_shapes, 1)


@pytest.mark.parametrize("name", list(METHODS))
def test_method_shape_finite_and_target_matters(name, small_model, image):
    a = A.attribute(small_model, image, 1, name, settings=FAST.get(name))
    b = A.attribute(small_model, image, 7, name, settings=FAST.get(name))
    assert a.shape == (32, 32) and a.dtype == np.float32
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert np.abs(a).max() > 0
    assert not np.allclose(a, b), "the map must depend on the target class"
    if not METHODS[name].signed:
        assert a.min() >= 0


@pytest.mark.parametrize("name", list(METHODS))
def test_method_batched_matches_single(name, small_model, image):
    x = torch.cat([image, image.flip(-1)])
    maps = A.attribute(small_model, x, torch.tensor([1, 7]), name, settings=FAST.get(name))
    assert maps.shape == (2, 32, 32)
    single = A.attribute(small_model, x[1:], 7, name, settings=FAST.get(name))
    if name != "smoothgrad":  # random noise differs between calls
        np.testing.assert_allclose(maps[1], single, rtol=1e-3, atol=1e-5 * np.abs(single).max())


def test_same_numbers_as_captum_directly(small_model, image):
    ours = A.attribute(small_model, image, 3, "saliency")
    direct = Saliency(small_model).attribute(image, target=3, abs=True).amax(dim=1)[0].numpy()
    np.testing.assert_array_equal(ours, direct)
    ours = A.attribute(small_model, image, 3, "ig", settings={"n_steps": 10, "internal_batch_size": 4})
    direct = IntegratedGradients(small_model).attribute(image, baselines=image * 0, target=3, n_steps=10,
                                                        internal_batch_size=4).sum(dim=1)[0].numpy()
    np.testing.assert_allclose(ours, direct, rtol=1e-5, atol=1e-7)


def test_registry_accepts_a_new_method(small_model, image, monkeypatch):
    def input_gradient_x_input(model, x, target, *, layer, settings, run):
        x = x.clone().requires_grad_(True)
        model(x)[:, target].sum().backward()
        return (x.grad * x).sum(dim=1)
    monkeypatch.setitem(METHODS, "gxi", AttributionMethod("gxi", "Gradient x Input", input_gradient_x_input, signed=True))
    assert A.attribute(small_model, image, 0, "gxi").shape == (32, 32)


def test_bad_requests_say_what_is_valid(small_model, image):
    with pytest.raises(AttributionError, match="saliency, ig"):
        A.attribute(small_model, image, 0, "lime")
    with pytest.raises(AttributionError, match="layer3.0"):
        A.attribute(small_model, image, 0, "gradcam", layer="layer9.9")
    with pytest.raises(AttributionError, match="n_steps"):
        A.attribute(small_model, image, 0, "ig", settings={"steps": 3})
    assert A.layer_choices(small_model) == ["stem", "layer1.0", "layer2.0", "layer3.0"]
    assert A.default_layer(small_model) == "layer3.0"


def test_gradcam_every_layer(small_model, image):
    for layer in A.layer_choices(small_model):
        m = A.attribute(small_model, image, 2, "gradcam", layer=layer)
        assert m.shape == (32, 32) and m.min() >= 0


def test_progress_reaches_one_and_cancel_stops_between_chunks(small_model, image):
    seen = []
    A.attribute(small_model, image, 0, "ig", settings={"n_steps": 12, "internal_batch_size": 4}, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 3

    cancel = threading.Event()
    calls = []

    def progress(f):
        calls.append(f)
        cancel.set()  # asked to stop after the first chunk
    with pytest.raises(Cancelled):
        A.attribute(small_model, image, 0, "ig", settings={"n_steps": 12, "internal_batch_size": 4},
                    progress=progress, cancel=cancel)
    assert len(calls) == 1
    assert not small_model._forward_pre_hooks, "hooks must be removed after a cancel"
    with pytest.raises(Cancelled):
        A.deletion_insertion(small_model, image, 0, np.zeros((32, 32), np.float32), cancel=cancel)


def test_spearman_with_ties():
    a = np.array([0.0, 0.0, 0.0, 1.0, 2.0])
    assert A.spearman(a, a) == pytest.approx(1.0)
    assert A.spearman(a, -a) == pytest.approx(-1.0)
    assert A.spearman(a, np.zeros(5)) == 0.0
    # Ties averaged: ranks of a are (2, 2, 2, 4, 5) (1-based); of b (1, 2, 3, 4, 5).
    b = np.arange(5.0)
    ra, rb = np.array([2, 2, 2, 4, 5.0]), np.arange(1, 6.0)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    assert A.spearman(a, b) == pytest.approx((ra @ rb) / np.sqrt((ra @ ra) * (rb @ rb)))


def test_pointing_game_and_mass_inside_by_hand():
    masks = np.zeros((3, 4, 4), bool)
    masks[:, :2, :2] = True
    maps = np.zeros((3, 4, 4))
    maps[0, 0, 0] = 1.0          # max inside, all mass inside
    maps[1, 3, 3] = 1.0          # max outside
    maps[1, 0, 0] = 0.5
    maps[2] = -1.0               # constant, all negative: a miss, no positive mass
    assert A.pointing_game(maps, masks) == pytest.approx(1 / 3)
    assert A.mass_inside(maps, masks) == pytest.approx((1.0 + 0.5 / 1.5 + 0.0) / 3)


def test_overlay_png(image):
    view = Image.new("RGB", (32, 32), (128, 128, 128))
    m = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    for signed in (False, True):
        img = A.overlay(view, m, alpha=0.6, signed=signed, display_size=128)
        assert img.size == (128, 128) and img.mode == "RGB"
        assert A.png_bytes(img)[:8] == b"\x89PNG\r\n\x1a\n"
    # alpha 0 is the image itself
    assert np.asarray(A.overlay(view, m, alpha=0.0, display_size=32)).tolist() == np.asarray(view).tolist()


# --- checks on a trained model -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["saliency", "gradcam", "ig", "deeplift"])
def test_randomisation_separates_trained_from_random(name, trained, shapes_image):
    """The maps of a trained ResNet change when its top layers are re-drawn (not flagged); a
    self-comparison is perfectly correlated; a map that ignores the model (the input's own contrast)
    is flagged."""
    settings = FAST.get(name)
    r = A.model_randomisation_check(trained.model, shapes_image, 2, name, settings=settings)
    assert r.steps == [["fc", "layer3"]]
    assert r.rank_correlation[0] < A.RANDOMISATION_THRESHOLD and not r.flagged
    same = A.model_randomisation_check(trained.model, shapes_image, 2, name, settings=settings, steps=[[]],
                                       original=r.original)
    assert same.rank_correlation[0] == pytest.approx(1.0) and same.flagged


def test_randomisation_flags_a_model_independent_map(trained, shapes_image, monkeypatch):
    def edges(model, x, target, *, layer, settings, run):
        contrast = (x[..., 1:, 1:] - x[..., :-1, :-1]).abs().sum(1)  # (B, H-1, W-1)
        return torch.nn.functional.pad(contrast, (0, 1, 0, 1))
    monkeypatch.setitem(METHODS, "edges", AttributionMethod("edges", "Edge detector", edges))
    r = A.model_randomisation_check(trained.model, shapes_image, 2, "edges")
    assert r.flagged and r.rank_correlation[0] == pytest.approx(1.0)


def test_cascading_randomisation(trained, shapes_image):
    steps = A.cascade_steps(trained.model)
    n_blocks = 3 * (trained.model_cfg.depth - 2) // 6
    assert steps[0] == ["fc"] and steps[1] == ["fc", "layer3.0"] and len(steps) == n_blocks + 1
    r = A.model_randomisation_check(trained.model, shapes_image, 2, "saliency", steps=steps[:3])
    assert len(r.rank_correlation) == 3 and all(-1 <= c <= 1 for c in r.rank_correlation)
    # the original model is untouched by the re-initialisation of its copies
    again = A.attribute(trained.model, shapes_image, 2, "saliency")
    np.testing.assert_array_equal(again, r.original)


@pytest.mark.parametrize("name", ["saliency", "gradcam", "ig"])
def test_deletion_insertion_sane_on_trained_model(name, trained, trained_shapes):
    x = _test_images(trained_shapes, 6)
    ours, random_order = [], []
    for i in range(len(x)):
        xi = x[i:i + 1]
        target = int(trained.model(xi).argmax())
        p0 = float(A.probabilities(trained.model, xi)[0, target])
        m = A.attribute(trained.model, xi, target, name, settings=FAST.get(name))
        seen = []
        f = A.deletion_insertion(trained.model, xi, target, m, steps=16, progress=seen.append)
        assert f.fractions[0] == 0 and f.fractions[-1] == 1 and len(f.deletion) == 17
        assert f.deletion[0] == pytest.approx(p0, abs=1e-5) and f.insertion[-1] == pytest.approx(p0, abs=1e-5)
        for auc in (f.deletion_auc, f.insertion_auc, f.random_deletion_auc, f.random_insertion_auc):
            assert 0 <= auc <= 1
        assert seen[-1] == pytest.approx(1.0)
        ours.append(f.insertion_auc - f.deletion_auc)
        random_order.append(f.random_insertion_auc - f.random_deletion_auc)
    # Over a few images (one out-of-distribution picture can go either way), the attribution order
    # separates insertion from deletion better than a random pixel order.
    assert np.mean(ours) > np.mean(random_order) + 0.05


def test_shapes_pointing_game_numbers(trained):
    scores = A.shapes_evaluation(trained, ["saliency", "gradcam"], n_images=12)
    assert [s.method for s in scores] == ["saliency", "gradcam"]
    for s in scores:
        assert 0 <= s.pointing <= 1 and 0 <= s.mass_inside <= 1 and 0 < s.chance < 1
        assert s.n_images == 12


def test_shapes_pointing_game_scores_a_map_on_the_object_one_and_off_it_zero(trained, monkeypatch):
    """Two hand-made methods whose map is each image's own object mask, or its complement: the shapes
    evaluation must score them 1 and 0 on pointing and mass inside, and report the masks' mean area as
    chance. Catches masks misaligned with their images (another index, transposed, not resized with the
    image) and hits counted against the wrong mask."""
    from resnet_core.config import DataConfig
    from resnet_core.data import load_dataset, normalize

    n = 12
    ds = load_dataset(DataConfig(name="synthetic", n_train=10, n_test=n, seed=0))
    ref = normalize(ds.test_x[:n], trained.mean, trained.std).float()
    masks = ds.test_masks[:n].float()
    assert masks.shape[-1] == trained.input_size and (masks.flatten(1).sum(1) > 0).all()

    def own_mask(x):  # each row of the batch it is given, matched back to its test image
        idx = ((x.cpu()[:, None] - ref[None]) ** 2).flatten(2).sum(-1).argmin(1)
        return masks[idx]

    monkeypatch.setitem(METHODS, "on-object", AttributionMethod(
        "on-object", "The object's mask", lambda model, x, target, **_: own_mask(x)))
    monkeypatch.setitem(METHODS, "off-object", AttributionMethod(
        "off-object", "The background", lambda model, x, target, **_: 1 - own_mask(x)))
    on, off = A.shapes_evaluation(trained, ["on-object", "off-object"], n_images=n)
    assert (on.pointing, on.mass_inside) == (pytest.approx(1.0), pytest.approx(1.0))
    assert (off.pointing, off.mass_inside) == (pytest.approx(0.0), pytest.approx(0.0))
    assert on.chance == off.chance == pytest.approx(masks.mean().item())
    assert on.n_images == off.n_images == n
