"""The ``Dataset`` every source returns (uint8 NCHW tensors on the CPU) and ``DataError``."""
from __future__ import annotations

from dataclasses import dataclass

import torch

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



def _resample(x: torch.Tensor, size: int) -> torch.Tensor:
    """float (N, C, H, W) -> (N, C, size, size). Shrinking averages the source pixels each output pixel
    covers (2x2 blocks for 32 -> 16) rather than picking one and aliasing thin strokes; enlarging is
    bilinear."""
    if size <= x.shape[-1]:
        return torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def resize_images(x_uint8: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> uint8 (N, 3, size, size), anti-aliased (area average when shrinking), in chunks."""
    if tuple(x_uint8.shape[2:]) == (size, size):
        return x_uint8
    out = torch.empty((x_uint8.shape[0], x_uint8.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, x_uint8.shape[0], 2048):
        chunk = x_uint8[start:start + 2048].to(torch.float32)
        r = _resample(chunk, size)
        out[start:start + 2048] = r.round_().clamp_(0, 255).to(torch.uint8)
    return out


def resize_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """bool (N, H, W) -> bool (N, size, size): a pixel is object where at least half of what it covers is."""
    if tuple(masks.shape[1:]) == (size, size):
        return masks
    return _resample(masks[:, None].to(torch.float32), size)[:, 0] >= 0.5


def resize_dataset(ds: Dataset, size: int) -> Dataset:
    """The same data set at size x size (images and masks); statistics recomputed on the resized images."""
    if ds.image_size == (size, size):
        return ds
    masks = {k: (None if m is None else resize_masks(m, size))
             for k, m in (("train_masks", ds.train_masks), ("test_masks", ds.test_masks))}
    return _make_dataset(ds.name, ds.classes, resize_images(ds.train_x, size), ds.train_y,
                         resize_images(ds.test_x, size), ds.test_y, **masks)
