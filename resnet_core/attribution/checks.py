"""Checks that attribution maps mean something: model randomisation, deletion/insertion, and the
pointing game and mass inside the object mask on the shapes set."""
from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from resnet_core.nets.checkpoints import LoadedModel

from resnet_core.attribution.methods import (RANDOMISATION_THRESHOLD, AttributionError, Cancelled, _device, _Run, attribute,
                      chunk_size)

# --- sanity checks -----------------------------------------------------------------------------------

def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (a Grad-CAM map is mostly zeros after its ReLU)."""
    flat = a.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_vals = flat[order]
    boundaries = np.flatnonzero(np.diff(sorted_vals)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [flat.size]))
    avg = (starts + ends - 1) / 2.0
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0


def top_layers(model: nn.Module) -> list[str]:
    """The classifier and the last stage: what the top-layer randomisation re-initialises."""
    stages = [n for n, _ in model.named_children() if n.startswith("layer")]
    head = "fc" if hasattr(model, "fc") else list(dict(model.named_children()))[-1]
    return [head] + stages[-1:]


def cascade_steps(model: nn.Module) -> list[list[str]]:
    """Cascading randomisation (Adebayo et al. 2018, §4): the head, then each block from the top down."""
    blocks = [f.name for f in getattr(model, "feature_info", []) if f.kind == "block"]
    head = top_layers(model)[0]
    return [[head] + blocks[len(blocks) - i:] for i in range(len(blocks) + 1)]


def reinitialise(model: nn.Module, names: list[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with the named submodules' parameters (and BN statistics) re-drawn."""
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in names:
            if name not in modules:
                raise AttributionError(f"no layer {name!r} to re-initialise")
            for sub in modules[name].modules():
                if hasattr(sub, "reset_parameters"):
                    sub.reset_parameters()
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.reset_running_stats()
    return clone.eval()


@dataclass
class RandomisationResult:
    method: str
    steps: list[list[str]]          # re-initialised modules at each step
    rank_correlation: list[float]   # Spearman of |map| original vs randomised, per step
    threshold: float
    original: np.ndarray
    randomised: list[np.ndarray]

    @property
    def flagged(self) -> bool:
        """True when the map of the most randomised model still ranks pixels like the original."""
        return self.rank_correlation[-1] > self.threshold


def model_randomisation_check(model: nn.Module, x: torch.Tensor, target: int, method: str, *,
                              layer: str | None = None, settings: dict | None = None,
                              steps: list[list[str]] | None = None, threshold: float = RANDOMISATION_THRESHOLD,
                              original: np.ndarray | None = None, seed: int = 0,
                              progress: Callable[[float], None] | None = None,
                              cancel: threading.Event | None = None) -> RandomisationResult:
    """Adebayo et al. 2018: re-run ``method`` with the top layers re-initialised (or a cascade of
    steps) and compare with the Spearman rank correlation of the absolute maps. A map that barely
    changes when the weights it should explain are destroyed is flagged."""
    steps = steps or [top_layers(model)]
    total = len(steps) + (original is None)
    done = 0

    def sub(f):
        if progress is not None:
            progress((done + f) / total)

    if original is None:
        original = attribute(model, x, target, method, layer=layer, settings=settings, progress=sub, cancel=cancel)
        done += 1
    maps, corr = [], []
    for names in steps:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        random_model = reinitialise(model, names, seed)
        m = attribute(random_model, x, target, method, layer=layer, settings=settings, progress=sub, cancel=cancel)
        maps.append(m)
        corr.append(spearman(np.abs(original), np.abs(m)))
        done += 1
    return RandomisationResult(method, steps, corr, threshold, original, maps)


@dataclass
class FaithfulnessResult:
    fractions: np.ndarray          # share of pixels removed (deletion) or inserted (insertion), 0..1
    deletion: np.ndarray           # target probability along the deletion curve
    insertion: np.ndarray
    deletion_auc: float            # lower is better: removing the top pixels first kills the score
    insertion_auc: float           # higher is better
    random_deletion_auc: float | None = None   # the same with a random pixel order, for reference
    random_insertion_auc: float | None = None


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with sigma = side/16 (RISE, Petsiuk et al. 2018, blurs 224 px with sigma 5...),
    the kernel 3 sigma wide each side. The edge is replicated outwards first (torchvision would reflect
    it, and refuses a kernel wider than a tiny image)."""
    sigma = max(1.0, x.shape[-1] / 16)
    r = math.ceil(3 * sigma)
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    return TF.gaussian_blur(padded, [2 * r + 1, 2 * r + 1], [sigma, sigma])[..., r:-r, r:-r]


def _curve(model, start: torch.Tensor, end: torch.Tensor, order: torch.Tensor, target: int, fractions: np.ndarray,
           run: _Run) -> np.ndarray:
    """Probability of ``target`` as pixels of ``end`` replace those of ``start`` in ``order``. (1, C, H, W) inputs."""
    h, w = start.shape[2:]
    n_pixels = h * w
    counts = [int(round(f * n_pixels)) for f in fractions]
    batch = chunk_size(start, len(counts))
    rank = torch.empty(n_pixels, dtype=torch.long, device=start.device)
    rank[order] = torch.arange(n_pixels, device=start.device)  # rank of each pixel in the order
    out = []
    for i in range(0, len(counts), batch):
        run.check()
        ks = torch.tensor(counts[i:i + batch], device=start.device)
        mask = (rank.view(1, n_pixels) < ks.view(-1, 1)).view(-1, 1, h, w).to(start.dtype)  # (b, 1, H, W)
        imgs = start * (1 - mask) + end * mask                                             # (b, C, H, W)
        with torch.no_grad():
            p = F.softmax(model(imgs).float(), dim=1)[:, target]
        out.append(p.cpu().numpy())
        if run.progress is not None:
            run.seen += len(ks)
            run.progress(min(1.0, run.seen / run.expected))
    return np.concatenate(out)


def _auc(fractions: np.ndarray, curve: np.ndarray) -> float:
    return float(np.trapezoid(curve, fractions))


def deletion_insertion(model: nn.Module, x: torch.Tensor, target: int, attr_map: np.ndarray, *,
                       steps: int = 32, with_random: bool = True, seed: int = 0,
                       progress: Callable[[float], None] | None = None,
                       cancel: threading.Event | None = None) -> FaithfulnessResult:
    """Petsiuk et al. 2018 (RISE): deletion sets pixels to the mean colour (zero in normalised space)
    in decreasing attribution order; insertion starts from a blurred copy and puts the original pixels
    back in that order. Curves of the target probability; AUC by the trapezoid rule over 0..1."""
    x = x[:1].to(_device(model))
    h, w = x.shape[2:]
    if attr_map.shape != (h, w):
        raise AttributionError(f"the map is {attr_map.shape}, the image {h}x{w}")
    fractions = np.linspace(0.0, 1.0, steps + 1)
    run = _Run(progress, cancel)
    run.expected, run.seen = len(fractions) * (4 if with_random else 2), 0
    scores = torch.from_numpy(np.ascontiguousarray(attr_map, dtype=np.float32)).flatten().to(x.device)
    order = torch.argsort(scores, descending=True, stable=True)
    baseline, blurred = torch.zeros_like(x), _blur(x)
    deletion = _curve(model, x, baseline, order, target, fractions, run)
    insertion = _curve(model, blurred, x, order, target, fractions, run)
    result = FaithfulnessResult(fractions, deletion, insertion, _auc(fractions, deletion), _auc(fractions, insertion))
    if with_random:
        g = torch.Generator().manual_seed(seed)
        random_order = torch.randperm(h * w, generator=g).to(x.device)
        result.random_deletion_auc = _auc(fractions, _curve(model, x, baseline, random_order, target, fractions, run))
        result.random_insertion_auc = _auc(fractions, _curve(model, blurred, x, random_order, target, fractions, run))
    return result


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> float:
    """Zhang et al. 2016 without tolerance (the images are 32 px): the share of images whose map
    maximum lies inside the object mask. A constant map points nowhere and counts as a miss."""
    maps, masks = np.asarray(maps), np.asarray(masks, dtype=bool)
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    idx = flat.argmax(axis=1)
    informative = flat.max(axis=1) > flat.min(axis=1)
    hits = masks.reshape(n, -1)[np.arange(n), idx] & informative
    return float(hits.mean())


def mass_inside(maps: np.ndarray, masks: np.ndarray) -> float:
    """Mean share of the positive attribution mass that falls inside the mask (0 for an all-negative map)."""
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=bool)
    pos = np.clip(maps, 0, None).reshape(maps.shape[0], -1)
    total = pos.sum(axis=1)
    inside = (pos * masks.reshape(masks.shape[0], -1)).sum(axis=1)
    share = np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
    return float(share.mean())


@dataclass
class ShapesScore:
    method: str
    pointing: float      # share of images whose map maximum is on the object
    mass_inside: float   # mean share of positive attribution on the object
    chance: float        # mean share of the image the object covers: a random map's expected scores
    n_images: int
    seconds: float


def shapes_evaluation(loaded: LoadedModel, methods: list[str], *, n_images: int = 32, seed: int = 0,
                      layer: str | None = None, settings: dict[str, dict] | None = None,
                      progress: Callable[[float], None] | None = None,
                      cancel: threading.Event | None = None) -> list[ShapesScore]:
    """Pointing game and mass inside the mask over ``n_images`` of the embedded shapes test set.

    The target is the true class when the model was trained on the shapes (its classes are the shape
    names), else its own prediction. Images are resized to the model's input size."""
    from resnet_core.config import DataConfig
    from resnet_core.data import SHAPE_CLASSES, load_dataset, normalize

    ds = load_dataset(DataConfig(name="synthetic", n_train=10, n_test=max(10, n_images), seed=seed))
    x_u8, y, masks = ds.test_x[:n_images], ds.test_y[:n_images], ds.test_masks[:n_images]
    x = normalize(x_u8, loaded.mean, loaded.std).float()
    size = loaded.input_size
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        masks = F.interpolate(masks[:, None].float(), size=(size, size), mode="nearest")[:, 0] > 0.5
    x = x.to(_device(loaded.model))
    if list(loaded.classes) == list(SHAPE_CLASSES):
        target = y.to(x.device)
    else:
        with torch.no_grad():
            target = loaded.model(x).argmax(dim=1)
    masks_np = masks.cpu().numpy()
    chance = float(masks_np.reshape(len(masks_np), -1).mean())
    scores = []
    for i, name in enumerate(methods):
        t0 = time.perf_counter()
        sub = None if progress is None else (lambda f, i=i: progress((i + f) / len(methods)))
        maps = attribute(loaded.model, x, target, name, layer=layer, settings=(settings or {}).get(name),
                         progress=sub, cancel=cancel)
        maps = maps.reshape(len(x), size, size)
        scores.append(ShapesScore(name, pointing_game(maps, masks_np), mass_inside(maps, masks_np), chance,
                                  len(x), time.perf_counter() - t0))
    return scores


