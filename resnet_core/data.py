"""Data sets and the device-resident batch loader.

Three sources, one ``Dataset`` (uint8 NCHW tensors on the CPU):

* ``synthetic``: an embedded, generated set of ten shape classes on cluttered backgrounds, with a
  ground-truth object mask per image (for checking attributions against where the object is).
* ``cifar10``: the python-pickle release, read here with a restricted unpickler.
* ``folder``: an ImageFolder tree (root/class_name/image).

``BatchLoader`` keeps the whole uint8 set on the training device and augments with tensor ops there
(airbench style), so CPU and CUDA share one code path and the host never touches a batch.
"""
from __future__ import annotations

import functools
import math
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import DataConfig
from .data_consts import CIFAR10_CLASSES

__all__ = [
    "SHAPE_CLASSES", "CIFAR10_CLASSES", "CIFAR10_URL", "IMAGE_SUFFIXES", "DataError", "Dataset",
    "make_shapes", "load_dataset", "load_cifar10", "load_folder", "normalize", "BatchLoader",
    "iter_test_batches", "synthetic_test_seed",
]

SHAPE_CLASSES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "ring", "crescent", "arrow", "hourglass", "ell",
)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR10_DIRNAME = "cifar-10-batches-py"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# He et al. 2015 §4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly sampled".
PAD = 4
# AlexNet (Krizhevsky et al. 2012 §4.1): alpha ~ N(0, 0.1) per image and principal component.
PCA_ALPHA_STD = 0.1
PCA_SUBSAMPLE_IMAGES = 2000


class DataError(RuntimeError):
    """A data set that cannot be loaded; the message says what is wrong and what to do."""


@dataclass
class Dataset:
    name: str
    classes: list[str]
    train_x: torch.Tensor   # uint8 (N, 3, H, W)
    train_y: torch.Tensor   # int64 (N,)
    test_x: torch.Tensor    # uint8 (M, 3, H, W)
    test_y: torch.Tensor    # int64 (M,)
    mean: tuple[float, float, float]  # per-channel mean of train_x on a 0..1 scale
    std: tuple[float, float, float]
    test_masks: torch.Tensor | None = None   # bool (M, H, W): the class object's pixels (synthetic only)
    train_masks: torch.Tensor | None = None  # bool (N, H, W)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])


def _channel_stats(x_uint8: torch.Tensor) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    # Sums in float64 over chunks: CIFAR-10's 51M values per channel would lose digits in float32,
    # and the whole set in float64 at once would be 1.2 GB.
    n, _, h, w = x_uint8.shape
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for start in range(0, n, 2048):
        chunk = x_uint8[start:start + 2048].to(torch.float64)          # (c, 3, H, W) on 0..255
        total += chunk.sum(dim=(0, 2, 3)).cpu()
        total_sq += chunk.square().sum(dim=(0, 2, 3)).cpu()
    count = n * h * w
    mean = total / count
    var = (total_sq / count - mean.square()) * count / max(count - 1, 1)  # unbiased, like torch.std
    std = (var.clamp_min(0).sqrt() / 255.0).clamp_min(1e-3)           # a constant channel must not divide by 0
    return tuple(float(v) for v in mean / 255.0), tuple(float(v) for v in std)


def _make_dataset(name, classes, train_x, train_y, test_x, test_y, train_masks=None, test_masks=None) -> Dataset:
    mean, std = _channel_stats(train_x)
    return Dataset(name=name, classes=list(classes), train_x=train_x, train_y=train_y, test_x=test_x,
                   test_y=test_y, mean=mean, std=std, test_masks=test_masks, train_masks=train_masks)


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


def _render_shapes(rng: np.random.Generator, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images float32 (n, 3, S, S) on 0..1 and masks bool (n, S, S) for one chunk of labels.

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
        stroke &= col(1, 1) < 0.8                                       # some images get fewer
        np.copyto(img, col(3, 1, 1), where=stroke[:, None])

    # Object pose: radius 0.55..0.8 of the half-width (9 to 13 pixels at 32x32), any rotation, a mild
    # aspect change; centred so that at most a sliver of a tip can leave the image.
    scale = 0.55 + col(1, 1) * 0.25                                     # (n, 1, 1)
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
    sigma = 0.02 + col(1, 1, 1) * 0.04
    img += rng.standard_normal((n, 1, size, size), dtype=f32) * sigma
    return img, mask


@functools.lru_cache(maxsize=8)
def _make_shapes_cached(n: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed % 2**64)
    # Exactly balanced classes in a random order.
    labels = rng.permutation(np.arange(n, dtype=np.int64) % len(SHAPE_CLASSES))
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    for start in range(0, n, _CHUNK):
        end = min(n, start + _CHUNK)
        img, masks[start:end] = _render_shapes(rng, labels[start:end], size)   # (c, 3, S, S) on 0..1
        np.clip(img, 0.0, 1.0, out=img)
        images[start:end] = (img * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    for a in (images, labels, masks):
        a.flags.writeable = False  # shared by every caller of the cache
    return images, labels, masks


def make_shapes(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` images uint8 (n, size, size, 3) HWC, labels int64 (n,), object masks bool (n, size, size).

    The same (n, seed, size) gives identical arrays; results are cached in-process and read-only.
    """
    if n < 1:
        raise DataError(f"the synthetic data set needs at least one image; got n={n}")
    if size < 8:
        raise DataError(f"synthetic images must be at least 8 pixels wide; got size={size}")
    return _make_shapes_cached(int(n), int(seed), int(size))


def synthetic_test_seed(seed: int) -> int:
    # Far outside any seed a person types, so one run's test set is never another run's training set.
    return seed + 2**32


def _shapes_to_torch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, labels, masks = make_shapes(n, seed)
    # Copies: the cached arrays are read-only and shared.
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # (n, 3, S, S)
    return x, torch.from_numpy(labels.copy()), torch.from_numpy(masks.copy())


# ----------------------------------------------------------------------------------------------------
# CIFAR-10 (python version): read here, not through torchvision.datasets.CIFAR10, whose md5 check
# rejects any batch file that is not byte-identical to the official one.
# ----------------------------------------------------------------------------------------------------

def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles bytes at protocol 2 as _codecs.encode(str, "latin1"); any other codec
    # (zlib_codec, bz2_codec, ...) has no business in a batch file.
    if encoding not in ("latin1", "latin-1"):
        raise DataError(f"refusing codec {encoding!r} in a CIFAR-10 batch file")
    return text.encode("latin1")


def _safe_pickle_globals() -> dict[tuple[str, str], object]:
    # The array constructors numpy itself names in its pickles (1.x: numpy.core, 2.x: numpy._core),
    # taken from numpy's own reduce so they resolve on either version without importing numpy.core.
    reconstruct = np.empty(0).__reduce__()[0]
    frombuffer = np.empty(1).__reduce_ex__(5)[0]                       # protocol 5 arrays
    scalar = np.uint8(0).__reduce__()[0]
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = frombuffer
    # Lists, dicts and tuples have their own opcodes; these names only appear in odd writers. Nothing
    # that can call, import, look up attributes or allocate on demand (bytes(10**12)) is allowed.
    for module in ("builtins", "__builtin__"):
        for name, value in (("list", list), ("dict", dict), ("tuple", tuple)):
            allowed[(module, name)] = value
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only numpy arrays and plain containers; any other global is refused.

    A pickle can name any importable callable (os.system, ...) and have it called while loading, so a
    batch file from a user-chosen directory is untrusted input (Python docs, "Restricting Globals").
    """

    _allowed = None

    def find_class(self, module: str, name: str):
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _safe_pickle_globals()
        try:
            return _RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to load {module}.{name} from a CIFAR-10 batch file: the official files hold only "
                "numpy arrays and lists, so this file is not one of them and may run code if loaded"
            ) from None


def _read_cifar_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"CIFAR-10 file {path} is missing: re-extract cifar-10-python.tar.gz from {CIFAR10_URL}")
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except Exception as e:  # truncated files raise EOFError, garbage UnpicklingError/ValueError/...
        raise DataError(
            f"CIFAR-10 file {path} is corrupt or truncated ({type(e).__name__}: {e}); "
            f"delete it and re-extract cifar-10-python.tar.gz from {CIFAR10_URL}"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR-10 file {path} does not hold a dict; it is not a CIFAR-10 python batch")
    # Files written by Python 2 have bytes keys (b"data"); files written by Python 3 may have str keys.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    d = _read_cifar_pickle(path)
    data, labels = d.get("data"), d.get("labels", d.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"CIFAR-10 file {path}: 'data' must be a uint8 array of shape (N, 3072); got "
            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        )
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"CIFAR-10 file {path}: 'labels' must be {data.shape[0]} integers from 0 to 9")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major: already CHW.
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())            # (N, 3, 32, 32)
    return x, torch.from_numpy(labels)


def _cifar_missing_message(where: Path, why: str = "") -> str:
    return (
        f"CIFAR-10 was not found in {where} (looked for {where / CIFAR10_DIRNAME}){why}. "
        f"Download cifar-10-python.tar.gz from {CIFAR10_URL} and extract it there, so that "
        f"{where / CIFAR10_DIRNAME} holds data_batch_1..5 and test_batch; or pass the parent of an existing "
        f"{CIFAR10_DIRNAME} directory."
    )


def load_cifar10(root: str | Path, download: bool) -> Dataset:
    root = Path(root).expanduser()
    # Accept both the parent and the cifar-10-batches-py directory itself.
    parent = root.parent if root.name == CIFAR10_DIRNAME else root
    batches = parent / CIFAR10_DIRNAME
    if not batches.is_dir():
        if not download:
            raise DataError(_cifar_missing_message(parent, " and downloading is off"))
        try:
            import torchvision  # late: only this path needs it

            parent.mkdir(parents=True, exist_ok=True)
            torchvision.datasets.CIFAR10(str(parent), train=True, download=True)
        except Exception as e:  # offline: URLError; read-only disk: OSError; bad archive: RuntimeError
            why = f" and the download failed ({type(e).__name__}: {e})"
            raise DataError(_cifar_missing_message(parent, why)) from None
        if not batches.is_dir():
            raise DataError(_cifar_missing_message(parent, " even after downloading"))

    parts = [_read_cifar_batch(batches / f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = _read_cifar_batch(batches / "test_batch")
    classes = list(CIFAR10_CLASSES)
    meta = batches / "batches.meta"
    if meta.exists():
        names = _read_cifar_pickle(meta).get("label_names")
        if not isinstance(names, list) or len(names) != 10:
            raise DataError(f"CIFAR-10 file {meta}: 'label_names' must be a list of 10 class names")
        classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    train_x = torch.cat([p[0] for p in parts])
    train_y = torch.cat([p[1] for p in parts])
    return _make_dataset("cifar10", classes, train_x, train_y, test_x, test_y)


# ----------------------------------------------------------------------------------------------------
# Image folders
# ----------------------------------------------------------------------------------------------------

_FOLDER_LAYOUT = (
    "expected layout: ROOT/CLASS_NAME/IMAGE, at least two class folders, each with images "
    f"({', '.join(IMAGE_SUFFIXES)})"
)


def _load_image(path: Path, size: int) -> np.ndarray | None:
    """uint8 (size, size, 3) HWC, or None when PIL cannot read the file safely."""
    from PIL import Image, ImageOps

    # PIL raises DecompressionBombError above 2x MAX_IMAGE_PIXELS and only warns above 1x; refuse
    # from 1x ourselves (from the header, before decoding) so an image bomb is never decoded.
    max_pixels = Image.MAX_IMAGE_PIXELS or 89_478_485
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > max_pixels:
                    return None
                # JPEG: decode at a reduced scale that is still at least `size`, far faster for photos.
                im.draft("RGB", (size, size))
                im = ImageOps.exif_transpose(im)
                if im.mode == "P":  # palette transparency: via RGBA, as PIL asks, then drop alpha
                    im = im.convert("RGBA")
                im = im.convert("RGB")
                # Centre-crop to a square, then resize: keeps the aspect ratio (torchvision's
                # Resize + CenterCrop), rather than squashing a landscape photo.
                im = ImageOps.fit(im, (size, size), Image.Resampling.BICUBIC)
                return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError):
        # OSError covers UnidentifiedImageError and truncated files; SyntaxError is what some PIL
        # plugins raise on a malformed header.
        return None


def load_folder(root: str | Path, size: int = 32, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """ImageFolder tree -> Dataset; each image centre-cropped to a square and resized to size x size.

    The split is per class and deterministic in `seed`: every class with two or more readable images
    puts round(test_fraction * count) of them (at least one) in the test set. Unreadable files are
    skipped with a warning, and their count appears in the data set's name.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; {_FOLDER_LAYOUT}")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be between 0 and 1; got {test_fraction}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes: list[str] = []
    per_class: list[np.ndarray] = []
    skipped: list[Path] = []
    for d in class_dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith("."))
        images = []
        for p in files:
            a = _load_image(p, size)
            if a is None:
                skipped.append(p)
            else:
                images.append(a)
        if images:  # a class folder with nothing readable is not a class
            classes.append(d.name)
            per_class.append(np.stack(images))                          # (n_k, S, S, 3)
    if skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) in {root}: {shown}", stacklevel=2)
    if len(classes) < 2:
        found = f"found {len(classes)} class folder(s) with readable images"
        raise DataError(f"image folder {root}: {found}; {_FOLDER_LAYOUT}")

    train_parts, test_parts = [], []
    for k, imgs in enumerate(per_class):
        # One stream per class: adding a class does not reshuffle the others.
        order = np.random.default_rng([seed % 2**32, k]).permutation(len(imgs))
        n_test = 0 if len(imgs) < 2 else min(len(imgs) - 1, max(1, round(test_fraction * len(imgs))))
        test_parts.append((imgs[order[:n_test]], k))
        train_parts.append((imgs[order[n_test:]], k))
    if not sum(len(a) for a, _ in test_parts):
        raise DataError(f"image folder {root}: every class has a single image, nothing is left for a test "
                        f"set; put at least two images in each class folder")

    def stack(parts):
        x = np.concatenate([a for a, _ in parts])                      # (n, S, S, 3)
        y = np.concatenate([np.full(len(a), k, dtype=np.int64) for a, k in parts])
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)

    train_x, train_y = stack(train_parts)
    test_x, test_y = stack(test_parts)
    name = f"folder:{root.name}" + (f" ({len(skipped)} unreadable skipped)" if skipped else "")
    return _make_dataset(name, classes, train_x, train_y, test_x, test_y)


# ----------------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------------

def load_dataset(cfg: DataConfig) -> Dataset:
    if cfg.name == "synthetic":
        train_x, train_y, train_m = _shapes_to_torch(cfg.n_train, cfg.seed)
        test_x, test_y, test_m = _shapes_to_torch(cfg.n_test, synthetic_test_seed(cfg.seed))
        return _make_dataset("synthetic", SHAPE_CLASSES, train_x, train_y, test_x, test_y,
                             train_masks=train_m, test_masks=test_m)
    if cfg.name == "cifar10":
        return load_cifar10(cfg.path or "./data", cfg.download)
    if cfg.name == "folder":
        return load_folder(cfg.path)
    raise DataError(f"unknown data set {cfg.name!r}: use synthetic, cifar10 or folder")


# ----------------------------------------------------------------------------------------------------
# Normalisation, augmentation, batches
# ----------------------------------------------------------------------------------------------------

def _channel_tensor(values, device) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32, device=device).view(1, 3, 1, 1)


def normalize(x_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """float32 NCHW (x / 255 - mean) / std on x's device; mean and std on a 0..1 scale."""
    x = x_uint8.to(torch.float32).div_(255.0)                         # (B, 3, H, W)
    return x.sub_(_channel_tensor(mean, x.device)).div_(_channel_tensor(std, x.device))


def _pca_basis(train_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvectors (3, 3) as columns and the std along each (3,) of the training pixels' RGB, 0..1 scale."""
    n = train_x.shape[0]
    # Evenly spaced images, not random ones: the basis must not consume any random numbers.
    idx = torch.linspace(0, n - 1, steps=min(n, PCA_SUBSAMPLE_IMAGES)).round().long()
    pixels = train_x[idx.to(train_x.device)].to(torch.float64).div_(255.0)   # (k, 3, H, W)
    pixels = pixels.permute(1, 0, 2, 3).reshape(3, -1)                  # (3, k*H*W)
    cov = torch.cov(pixels).cpu()                                       # (3, 3)
    eigval, eigvec = torch.linalg.eigh(cov)
    # The paper scales alpha by the covariance eigenvalue on 0..255 pixels, which is ambiguous in
    # scale; like fb.resnet.torch's Lighting transform we use the standard deviation along each
    # component (sqrt of the eigenvalue) on a 0..1 scale, so alpha ~ N(0, 0.1) is a 10% colour shift.
    return eigvec.float(), eigval.clamp_min(0).sqrt().float()


class BatchLoader:
    """Whole uint8 data set resident on `device`; augmentation by tensor ops on that device; batches
    sliced from a device-side permutation (the airbench style). One code path for CPU and CUDA.

    All randomness (order, crops, flips, colour) comes from a private CPU ``torch.Generator`` seeded
    with `seed`: the global RNG is neither used nor advanced, so two loaders with one seed yield
    identical batches whatever the model initialisation draws. Each epoch is a fresh permutation; its
    last N mod batch_size images are dropped for that epoch (they come back in other epochs), so
    every batch has the same size.
    """

    def __init__(self, ds: Dataset, batch_size: int, device: torch.device | str, seed: int,
                 augment: bool = True, pca_color: bool = False, channels_last: bool = False):
        self.device = torch.device(device)
        self.x = ds.train_x.to(self.device)                             # uint8 (N, 3, H, W)
        self.y = ds.train_y.to(self.device)                             # int64 (N,)
        self.n = int(self.x.shape[0])
        if self.n < 1:
            raise DataError(f"data set {ds.name} has no training images")
        self.batch_size = max(1, min(int(batch_size), self.n))
        self.steps_per_epoch = self.n // self.batch_size
        self.augment, self.pca_color, self.channels_last = augment, pca_color, channels_last
        self.mean = _channel_tensor(ds.mean, self.device)              # (1, 3, 1, 1)
        self.std = _channel_tensor(ds.std, self.device)
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))
        if pca_color:
            eigvec, eigstd = _pca_basis(ds.train_x)
            self.pca_eigvec, self.pca_eigstd = eigvec.to(self.device), eigstd.to(self.device)
        self.epoch = 0      # epochs completed so far
        self._perm: torch.Tensor | None = None
        self._pos = 0

    def __iter__(self) -> "BatchLoader":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next()

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._perm is None:
            # Drawn on the CPU generator (CUDA generators give different streams) and moved once per epoch.
            self._perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.batch_size]         # (B,)
        self._pos += self.batch_size
        if self._pos + self.batch_size > self.n:
            self.epoch += 1
            self._perm = None
        x = normalize(self.x[idx], self.mean, self.std)                 # (B, 3, H, W) float32
        if self.pca_color:
            x = self._pca_jitter(x)
        if self.augment:
            x = self._pad_crop_flip(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.y[idx]

    def _pca_jitter(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        alpha = torch.randn((b, 3), generator=self.generator).to(self.device) * PCA_ALPHA_STD   # (B, 3)
        rgb = (alpha * self.pca_eigstd) @ self.pca_eigvec.T             # (B, 3): eigvec @ (alpha * lambda)
        # The shift is on the 0..1 scale; in normalised units it is divided by the channel std.
        return x + rgb.view(b, 3, 1, 1) / self.std

    def _pad_crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # Zero padding after normalisation pads with the mean colour, i.e. zero in the mean-subtracted
        # input the paper pads (it subtracts the per-pixel mean before augmenting).
        padded = F.pad(x, (PAD, PAD, PAD, PAD))                        # (B, 3, H+8, W+8)
        offsets = torch.randint(0, 2 * PAD + 1, (b, 2), generator=self.generator).to(x.device)  # (B, 2) dy, dx
        flip = torch.rand(b, generator=self.generator).to(x.device) < 0.5                     # (B,)
        rows = offsets[:, :1] + torch.arange(h, device=x.device)        # (B, H)
        cols = torch.arange(w, device=x.device).expand(b, w)            # (B, W)
        # A horizontal flip is the crop read right-to-left: fold it into the column index.
        cols = torch.where(flip[:, None], w - 1 - cols, cols) + offsets[:, 1:]   # (B, W)
        out = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w + 2 * PAD))  # (B, 3, H, W+8)
        return out.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))             # (B, 3, H, W)


def iter_test_batches(ds: Dataset, batch_size: int, device, limit: int | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised test images and labels on `device`, in order, no augmentation; at most `limit` batches."""
    device = torch.device(device)
    batch_size = max(1, int(batch_size))
    m = int(ds.test_x.shape[0])
    n_batches = math.ceil(m / batch_size)
    if limit is not None:
        n_batches = min(n_batches, max(0, int(limit)))
    for i in range(n_batches):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        x = ds.test_x[sl].to(device, non_blocking=True)                 # uint8 (B, 3, H, W)
        yield normalize(x, ds.mean, ds.std), ds.test_y[sl].to(device, non_blocking=True)
