"""Normalisation and the device-resident batch loader (airbench style): the uint8 set lives on the
training device and batches are augmented there by tensor ops."""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from resnet_core.data.dataset import DataError, Dataset

# He et al. 2015 §4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly sampled".
PAD = 4


def pad_for(size: int) -> int:
    """Padding of the random crop for images `size` pixels wide: the paper's 4 px at 32, scaled with the
    image (2 px at 16), so a crop shifts the object by the same share of the image (1/8) at any size;
    4 px at 16 would shift a shape by a quarter of the frame and partly out of it."""
    return max(1, round(PAD * size / 32))
# AlexNet (Krizhevsky et al. 2012 §4.1): alpha ~ N(0, 0.1) per image and principal component.
PCA_ALPHA_STD = 0.1
PCA_SUBSAMPLE_IMAGES = 2000


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

    ``shard=(rank, world_size)`` (data-parallel training): ``batch_size`` is the global batch; every
    rank draws the global batch's indices and random numbers, as one process would, and keeps its
    contiguous slice of them, so the ranks together see exactly the single-process run's images.
    ``state_dict``/``load_state_dict`` carry the generator and the position, so a resumed run
    continues the same stream.
    """

    def __init__(self, ds: Dataset, batch_size: int, device: torch.device | str, seed: int,
                 augment: bool = True, pca_color: bool = False, channels_last: bool = False,
                 shard: tuple[int, int] = (0, 1)):
        self.device = torch.device(device)
        self.x = ds.train_x.to(self.device)                             # uint8 (N, 3, H, W)
        self.y = ds.train_y.to(self.device)                             # int64 (N,)
        self.n = int(self.x.shape[0])
        if self.n < 1:
            raise DataError(f"data set {ds.name} has no training images")
        self.batch_size = max(1, min(int(batch_size), self.n))
        self.steps_per_epoch = self.n // self.batch_size
        rank, world = shard
        if self.batch_size % world:
            raise DataError(f"the global batch of {self.batch_size} does not split evenly over {world} "
                            f"processes: use a batch size that is a multiple of {world}")
        per_rank = self.batch_size // world
        self.shard = slice(rank * per_rank, (rank + 1) * per_rank)     # this rank's rows of the global batch
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
        idx = self._perm[self._pos:self._pos + self.batch_size]         # (B,) the global batch
        self._pos += self.batch_size
        if self._pos + self.batch_size > self.n:
            self.epoch += 1
            self._perm = None
        # The random numbers of the whole global batch are drawn, in this order, whatever the shard:
        # the generator then advances identically on every rank and in a single process.
        b, g = self.batch_size, self.generator
        alpha = torch.randn((b, 3), generator=g) if self.pca_color else None                   # (B, 3)
        if self.augment:
            pad = pad_for(int(self.x.shape[-1]))
            offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=g)                         # (B, 2) dy, dx
            flip = torch.rand(b, generator=g) < 0.5                                             # (B,)
        mine = self.shard
        idx = idx[mine]                                                 # (b,) this rank's rows
        x = normalize(self.x[idx], self.mean, self.std)                 # (b, 3, H, W) float32
        if self.pca_color:
            x = self._pca_jitter(x, alpha[mine].to(self.device))
        if self.augment:
            x = self._pad_crop_flip(x, offsets[mine].to(self.device), flip[mine].to(self.device))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.y[idx]

    def state_dict(self) -> dict:
        """Everything the stream depends on: the generator, this epoch's permutation and the position."""
        return {"generator": self.generator.get_state(), "perm": None if self._perm is None else self._perm.cpu(),
                "pos": self._pos, "epoch": self.epoch, "n": self.n, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if (state["n"], state["batch_size"]) != (self.n, self.batch_size):
            raise DataError(f"the saved loader position is for {state['n']} images at batch {state['batch_size']}, "
                            f"this data set has {self.n} at batch {self.batch_size}: resume with the run's own data")
        self.generator.set_state(state["generator"])
        self._perm = None if state["perm"] is None else state["perm"].to(self.device)
        self._pos, self.epoch = int(state["pos"]), int(state["epoch"])

    def _pca_jitter(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        alpha = alpha * PCA_ALPHA_STD                                   # (B, 3) ~ N(0, 0.1)
        rgb = (alpha * self.pca_eigstd) @ self.pca_eigvec.T             # (B, 3): eigvec @ (alpha * lambda)
        # The shift is on the 0..1 scale; in normalised units it is divided by the channel std.
        return x + rgb.view(b, 3, 1, 1) / self.std

    def _pad_crop_flip(self, x: torch.Tensor, offsets: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # Zero padding after normalisation pads with the mean colour, i.e. zero in the mean-subtracted
        # input the paper pads (it subtracts the per-pixel mean before augmenting).
        pad = pad_for(w)
        padded = F.pad(x, (pad, pad, pad, pad))                        # (B, 3, H+2p, W+2p)
        rows = offsets[:, :1] + torch.arange(h, device=x.device)        # (B, H)
        cols = torch.arange(w, device=x.device).expand(b, w)            # (B, W)
        # A horizontal flip is the crop read right-to-left: fold it into the column index.
        cols = torch.where(flip[:, None], w - 1 - cols, cols) + offsets[:, 1:]   # (B, W)
        out = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w + 2 * pad))  # (B, 3, H, W+2p)
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
