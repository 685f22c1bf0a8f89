"""Data sets and the device-resident batch loader.

Three sources, one ``Dataset`` (uint8 NCHW tensors on the CPU), one module each:

* ``shapes``: the embedded, generated set of ten shape classes on cluttered backgrounds, with a
  ground-truth object mask per image (for checking attributions against where the object is).
* ``cifar``: CIFAR-10's python-pickle release, read with a restricted unpickler.
* ``folder``: an ImageFolder tree (root/class_name/image).

``loader.BatchLoader`` keeps the whole uint8 set on the training device and augments with tensor ops
there (airbench style), so CPU and CUDA share one code path and the host never touches a batch.
"""
from __future__ import annotations

from resnet_core.config import DataConfig
from resnet_core.data.consts import CIFAR10_CLASSES
from resnet_core.data.cifar import CIFAR10_DIRNAME, CIFAR10_URL, load_cifar10
from resnet_core.data.dataset import DataError, Dataset, resize_dataset
from resnet_core.data.folder import IMAGE_SUFFIXES, folder_classes, load_folder
from resnet_core.data.loader import PAD, BatchLoader, iter_test_batches, normalize
from resnet_core.data.shapes import SHAPE_CLASSES, load_shapes, make_shapes, synthetic_test_seed

__all__ = [
    "SHAPE_CLASSES", "CIFAR10_CLASSES", "CIFAR10_URL", "CIFAR10_DIRNAME", "IMAGE_SUFFIXES", "PAD", "DataError",
    "Dataset", "make_shapes", "load_dataset", "load_shapes", "load_cifar10", "load_folder", "folder_classes",
    "normalize",
    "BatchLoader", "iter_test_batches", "synthetic_test_seed", "resize_dataset",
]


def load_dataset(cfg: DataConfig) -> Dataset:
    if cfg.name == "synthetic":
        return load_shapes(cfg.n_train, cfg.n_test, cfg.seed, cfg.image_size, cfg.clutter, cfg.large_objects)
    if cfg.name == "cifar10":
        return resize_dataset(load_cifar10(cfg.path or "./data", cfg.download), cfg.image_size)
    if cfg.name == "folder":
        return load_folder(cfg.path, size=cfg.image_size)
    raise DataError(f"unknown data set {cfg.name!r}: use synthetic, cifar10 or folder")
