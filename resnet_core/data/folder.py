"""An ImageFolder tree (ROOT/CLASS_NAME/IMAGE), centre-cropped to 32x32, unreadable files and image bombs skipped."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from resnet_core.data.images import FORMATS
from resnet_core.data.dataset import DataError, Dataset, _make_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


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
            # The uploads' decoder allow-list (resnet_core/data/images.py): a file named .png cannot reach
            # a rarely used PIL plugin.
            with Image.open(path, formats=FORMATS) as im:
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


def folder_classes(root: str | Path) -> list[str]:
    """The class names a folder data set will have: its sub-folders holding at least one image file (by
    name; an unreadable image is found out only when the set is loaded). Cheap: no image is opened."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; {_FOLDER_LAYOUT}")
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
               for p in d.rglob("*")):
            out.append(d.name)
    return out


def load_folder(root: str | Path, size: int = 32, test_fraction: float = 0.2, seed: int = 0,
                whole: bool = False) -> Dataset:
    """ImageFolder tree -> Dataset; each image centre-cropped to a square and resized to size x size.

    The split is per class and deterministic in `seed`: every class with two or more readable images
    puts round(test_fraction * count) of them (at least one) in the test set. Unreadable files are
    skipped with a warning, and their count appears in the data set's name. ``whole=True`` (evaluating a
    checkpoint on the folder) puts every image in the test set, and in the training set too, which
    only serves for the channel statistics.
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

    if whole:
        x, y = _stack([(imgs, k) for k, imgs in enumerate(per_class)])
        name = f"folder:{root.name}" + (f" ({len(skipped)} unreadable skipped)" if skipped else "")
        return _make_dataset(name, classes, x, y, x, y)

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

    train_x, train_y = _stack(train_parts)
    test_x, test_y = _stack(test_parts)
    name = f"folder:{root.name}" + (f" ({len(skipped)} unreadable skipped)" if skipped else "")
    return _make_dataset(name, classes, train_x, train_y, test_x, test_y)


def _stack(parts: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(images (n_k, S, S, 3), class k)] -> uint8 (n, 3, S, S), int64 labels (n,)."""
    x = np.concatenate([a for a, _ in parts])                          # (n, S, S, 3)
    y = np.concatenate([np.full(len(a), k, dtype=np.int64) for a, k in parts])
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)
