"""The embedded shapes set: ten shape classes on cluttered backgrounds, each image with its exact object mask."""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from resnet_core.data.dataset import DataError, Dataset, _make_dataset, resize_images, resize_masks

SHAPE_CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "crescent", "arrow", "hourglass", "ell",
)



# ----------------------------------------------------------------------------------------------------
# Embedded synthetic shapes
#
# Every image is rendered at once for a chunk of the batch: each pixel's coordinates are mapped into
# the object's own frame by a per-image affine transform (rotation, scale, aspect, translation), and
# the class shape is an implicit function (inside <=> f(u, v) true) evaluated on that grid. The mask
# is that boolean array itself, so it matches the drawn object exactly (no anti-aliasing: the object
# is painted over the background precisely where the mask is true). Backgrounds are random colour
# gradients plus straight distractor strokes, which are not any class shape; per-pixel noise on top.
# Position, rotation, scale and colour are independent of the class, so a linear classifier on raw
# pixels stays near chance (11%) while ResNet-8 reaches 96% in 500 SGD steps
# (bench/dataset_difficulty.py). The price: the first ~100 steps look flat, as there is no colour
# or texture shortcut to learn first.
# ----------------------------------------------------------------------------------------------------

# Object radius as a fraction of the image's half-width, drawn uniformly: 9 to 13 pixels at 32x32. The
# large variant (the quick scale's 16x16 presets) keeps 6 to 7.6 pixels of radius at 16x16.
OBJECT_RADIUS = (0.55, 0.8)
LARGE_OBJECT_RADIUS = (0.75, 0.95)

_CHUNK = 1024  # images rendered together: keeps the (chunk, S, S) float32 temporaries in cache


def _shape_inside(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether (u, v), in the object's frame (radius about 1, v up), lies inside shape `cls`."""
    name = SHAPE_CLASSES[cls]
    if name == "circle":
        return u * u + v * v < 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) < 0.82
    if name == "triangle":  # equilateral, inscribed in the unit circle, apex up
        return (v > -0.55) & (v < 1.0 - math.sqrt(3.0) * np.abs(u))
    if name == "star":  # five points: radius swings between 0.36 (notches) and 1.1 (tips) with angle
        r = np.sqrt(u * u + v * v)
        phase = (np.arctan2(u, v) * (5.0 / (2.0 * math.pi))) % 1.0      # 0 at a tip, tips every 72 deg
        tip = np.abs(phase - 0.5) * 2.0                                 # 1 at a tip, 0 at a notch
        return r < 0.36 + 0.74 * tip * tip
    if name == "cross":  # a plus: four arms
        au, av = np.abs(u), np.abs(v)
        return ((au < 0.26) & (av < 1.0)) | ((av < 0.26) & (au < 1.0))
    if name == "ring":
        r2 = u * u + v * v
        return (r2 < 1.0) & (r2 > 0.55 * 0.55)
    if name == "crescent":  # disc minus a shifted disc
        return (u * u + v * v < 1.0) & ((u - 0.45) ** 2 + v * v > 0.8 * 0.8)
    if name == "arrow":  # shaft along +u ending in a triangular head
        shaft = (np.abs(v) < 0.2) & (u > -1.0) & (u < 0.15)
        head = (u >= 0.15) & (np.abs(v) < (1.0 - u) * (0.7 / 0.85))
        return shaft | head
    if name == "hourglass":  # two triangles meeting tip to tip, joined by a narrow waist
        av = np.abs(v)
        return (av < 0.95) & (np.abs(u) < 0.14 + 0.75 * av)
    if name == "ell":  # two bars at a right angle
        vertical = (u > -0.75) & (u < -0.25) & (v > -0.9) & (v < 0.95)
        foot = (u > -0.75) & (u < 0.85) & (v > -0.9) & (v < -0.4)
        return vertical | foot
    raise AssertionError(cls)


def _segment_distance(px, py, ax, ay, bx, by) -> np.ndarray:
    """Distance from grid points (1, S, S) to the segments a-b, one per image (n, 1, 1)."""
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
    ex, ey = px - ax - t * dx, py - ay - t * dy
    return np.sqrt(ex * ex + ey * ey)                                   # (n, S, S)


def _render_shapes(rng: np.random.Generator, labels: np.ndarray, size: int, clutter: bool = True,
                   large: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Images float32 (n, 3, S, S) on 0..1 and masks bool (n, S, S) for one chunk of labels.

    ``clutter=False`` draws the same backgrounds, objects and poses (the same random draws) without the
    distractor strokes and with a quarter of the pixel noise. It did not shorten the initial plateau
    near 90% error (README, "Findings in minutes"), so no preset uses it.

    ``large=True`` draws every object with a radius of 0.75..0.95 of the half-width instead of
    0.55..0.8 (the same random draws, rescaled): the quick scale's set, whose 16x16 images would
    otherwise leave a shape only 4 to 6 pixels of radius. Larger objects also have less room to move.

    Channels first while drawing: colour broadcasts (n, 3, 1, 1) against masks (n, 1, S, S) then run
    over contiguous S*S rows, several times faster than HWC's stride-3 inner loop.
    """
    n = labels.shape[0]
    f32 = np.float32

    def col(*shape):  # per-image uniform draws, shaped to broadcast against (n, ...)
        return rng.random((n,) + shape, dtype=f32)

    # Pixel centres on [-1, 1], y up.
    c = (np.arange(size, dtype=f32) + 0.5) / size * 2.0 - 1.0
    px = c[None, None, :]                                               # (1, 1, S)
    py = -c[None, :, None]                                              # (1, S, 1)

    # Background: a linear gradient between two random colours in a random direction.
    c0 = col(3, 1, 1)                                                   # (n, 3, 1, 1)
    c1 = np.clip(c0 + (col(3, 1, 1) - 0.5) * 0.9, 0.0, 1.0)
    phi = col(1, 1) * f32(2 * math.pi)                                  # (n, 1, 1)
    t = (px * np.cos(phi) + py * np.sin(phi)) * 0.5 + 0.5               # (n, S, S) in [0, 1]
    img = c0 + (c1 - c0) * t[:, None]                                   # (n, 3, S, S)

    # Distractors: up to two straight strokes in random colours, drawn under the object. A segment is
    # none of the classes (the nearest, the arrow, has a head; the ell and the cross have two bars).
    for _ in range(2):
        ax, ay = col(1, 1) * 2.2 - 1.1, col(1, 1) * 2.2 - 1.1
        ang, length = col(1, 1) * f32(2 * math.pi), 0.3 + col(1, 1) * 1.2
        bx, by = ax + length * np.cos(ang), ay + length * np.sin(ang)
        width = 0.04 + col(1, 1) * 0.05                                 # half-width: 1.3 to 2.9 px wide at 32x32
        stroke = _segment_distance(px, py, ax, ay, bx, by) < width      # (n, S, S)
        stroke &= col(1, 1) < (0.8 if clutter else 0.0)                 # some images get fewer
        np.copyto(img, col(3, 1, 1), where=stroke[:, None])

    # Object pose: radius OBJECT_RADIUS of the half-width (9 to 13 pixels at 32x32), any rotation, a mild
    # aspect change; centred so that at most a sliver of a tip can leave the image.
    lo, hi = LARGE_OBJECT_RADIUS if large else OBJECT_RADIUS
    scale = lo + col(1, 1) * (hi - lo)                                  # (n, 1, 1)
    aspect = 0.9 + col(1, 1) * 0.2
    limit = 1.0 - 0.9 * scale
    cx, cy = (col(1, 1) * 2 - 1) * limit, (col(1, 1) * 2 - 1) * limit
    theta = col(1, 1) * f32(2 * math.pi)
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    u = ((px - cx) * cos_t + (py - cy) * sin_t) / (scale * aspect)      # (n, S, S), object frame
    v = (-(px - cx) * sin_t + (py - cy) * cos_t) / (scale / aspect)
    mask = np.zeros((n, size, size), dtype=bool)
    for k in range(len(SHAPE_CLASSES)):
        idx = np.flatnonzero(labels == k)
        if idx.size:
            mask[idx] = _shape_inside(k, u[idx], v[idx])

    # Object colour: random, but pushed away from the background colour under the object's centre so
    # the shape is always visible (shifting every channel by 0.5 on the colour torus).
    obj = col(3, 1, 1)                                                  # (n, 3, 1, 1)
    t_c = (cx * np.cos(phi) + cy * np.sin(phi)) * 0.5 + 0.5             # (n, 1, 1)
    bg_c = c0 + (c1 - c0) * t_c[:, None]
    close = np.abs(obj - bg_c).max(axis=1, keepdims=True) < 0.35
    obj = np.where(close, (bg_c + 0.5) % 1.0, obj)
    # Mild shading across the object, so a flat colour is not a cue either.
    shade = 1.0 + (col(1, 1, 1) - 0.5) * 0.25 * np.clip(0.5 * (u + v), -1.0, 1.0)[:, None]  # (n, 1, S, S)
    np.copyto(img, obj * shade, where=mask[:, None])

    # Per-pixel luminance noise, its strength drawn per image.
    sigma = (0.02 + col(1, 1, 1) * 0.04) * (1.0 if clutter else 0.25)
    img += rng.standard_normal((n, 1, size, size), dtype=f32) * sigma
    return img, mask


@functools.lru_cache(maxsize=8)
def _make_shapes_cached(n: int, seed: int, size: int, clutter: bool = True, large: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed % 2**64)
    # Exactly balanced classes in a random order.
    labels = rng.permutation(np.arange(n, dtype=np.int64) % len(SHAPE_CLASSES))
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    for start in range(0, n, _CHUNK):
        end = min(n, start + _CHUNK)
        img, masks[start:end] = _render_shapes(rng, labels[start:end], size, clutter, large)   # (c, 3, S, S) on 0..1
        np.clip(img, 0.0, 1.0, out=img)
        images[start:end] = (img * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    for a in (images, labels, masks):
        a.flags.writeable = False  # shared by every caller of the cache
    return images, labels, masks


def make_shapes(n: int, seed: int, size: int = 32, clutter: bool = True, large: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` images uint8 (n, size, size, 3) HWC, labels int64 (n,), object masks bool (n, size, size).

    The same (n, seed, size) gives identical arrays; results are cached in-process and read-only.
    """
    if n < 1:
        raise DataError(f"the synthetic data set needs at least one image; got n={n}")
    if size < 8:
        raise DataError(f"synthetic images must be at least 8 pixels wide; got size={size}")
    return _make_shapes_cached(int(n), int(seed), int(size), bool(clutter), bool(large))


def synthetic_test_seed(seed: int) -> int:
    # Far outside any seed a person types, so one run's test set is never another run's training set.
    return seed + 2**32


def _shapes_to_torch(n: int, seed: int, size: int = 32, clutter: bool = True, large: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Below 32 px the set is drawn at 32 and shrunk by area averaging: the same images as the 32 px
    # set, anti-aliased, rather than point-sampled renderings whose thin strokes would break up.
    images, labels, masks = make_shapes(n, seed, max(size, 32), clutter, large)
    # Copies: the cached arrays are read-only and shared.
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # (n, 3, S, S)
    m = torch.from_numpy(masks.copy())
    return resize_images(x, size), torch.from_numpy(labels.copy()), resize_masks(m, size)


# ----------------------------------------------------------------------------------------------------
# CIFAR-10 (python version): read here, not through torchvision.datasets.CIFAR10, whose md5 check
# rejects any batch file that is not byte-identical to the official one.
# ----------------------------------------------------------------------------------------------------


def load_shapes(n_train: int, n_test: int, seed: int, size: int = 32, clutter: bool = True,
                large: bool = False) -> Dataset:
    train_x, train_y, train_m = _shapes_to_torch(n_train, seed, size, clutter, large)
    test_x, test_y, test_m = _shapes_to_torch(n_test, synthetic_test_seed(seed), size, clutter, large)
    return _make_dataset("synthetic", SHAPE_CLASSES, train_x, train_y, test_x, test_y,
                         train_masks=train_m, test_masks=test_m)
