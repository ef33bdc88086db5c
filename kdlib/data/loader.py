"""A data loader that keeps a whole split on the device and serves normalized batches.

CIFAR is small (150 MB as uint8), so it is copied to the GPU once; each step is then an
index, an optional batched crop+flip and a normalize: a few kernel launches and no
host-to-device copies or worker processes. This is the airbench recipe.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from kdlib.data.augment import normalize, normalize_affine, random_crop_flip
from kdlib.errors import KdlibError


def channel_axis(images: np.ndarray | torch.Tensor) -> int:
    """Check that ``images`` is a uint8 batch of 3-channel images, (N, H, W, 3) or
    (N, 3, H, W); return its channel axis (3 or 1). Shared by both loaders."""
    dtype, shape = images.dtype, tuple(images.shape)
    uint8 = dtype == torch.uint8 if torch.is_tensor(images) else dtype == np.uint8
    if not uint8 or len(shape) != 4:
        raise KdlibError(f"images must be a uint8 (N, H, W, 3) array, got {dtype} {shape}")
    if shape[-1] == 3:
        return 3
    if shape[1] == 3:
        return 1
    raise KdlibError(f"images must have 3 channels, got shape {shape}")


def _to_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(images)
    return t.permute(0, 3, 1, 2) if channel_axis(t) == 3 else t


class DeviceLoader:
    """Iterate ``(x, y)`` batches of a device-resident split; iterate again for each epoch.

    ``x`` is normalized ``dtype`` NCHW (channels_last memory if asked), ``y`` int64. The
    order (with ``shuffle``) and augmentations come from the loader's own generator on the
    device, seeded from ``seed``: the same seed gives the same sequence of epochs.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        batch_size: int,
        *,
        mean: Sequence[float] | np.ndarray,
        std: Sequence[float] | np.ndarray,
        device: str | torch.device = "cpu",
        shuffle: bool,
        augment: bool,
        drop_last: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise KdlibError(f"batch size must be positive, got {batch_size}")
        self.device = torch.device(device)
        # The batches' memory layout is set here, once: indexing, the crop's gather and
        # normalize all keep it, so no step of __iter__ copies to change it.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.images = _to_nchw(images).to(self.device).contiguous(memory_format=self.memory_format)
        self.labels = torch.as_tensor(labels).to(device=self.device, dtype=torch.int64)
        if len(self.labels) != len(self.images):
            raise KdlibError(f"{len(self.labels)} labels for {len(self.images)} images")
        self.batch_size = batch_size
        self.mean = torch.as_tensor(np.asarray(mean, dtype=np.float32), device=self.device)
        self.std = torch.as_tensor(np.asarray(std, dtype=np.float32), device=self.device)
        self.affine = normalize_affine(mean, std, self.device)
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.dtype = dtype
        self.channels_last = channels_last
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        # keep_raw: also keep each batch's images before crop+flip and normalize (uint8) as
        # ``last_raw``, for a method that augments the raw image (UDA's seed variant)
        self.keep_raw = False
        self.last_raw: torch.Tensor | None = None

    @property
    def num_examples(self) -> int:
        """Examples in the split (not batches)."""
        return len(self.labels)

    def __len__(self) -> int:
        n = self.num_examples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.num_examples
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x = self.images[idx]
            if self.keep_raw:
                self.last_raw = x
            if self.augment:
                x = random_crop_flip(x, generator=self.generator, memory_format=self.memory_format)
            x = normalize(x, dtype=self.dtype, affine=self.affine)
            # A no-op (no copy) unless a PyTorch op changed the layout after all.
            x = x.contiguous(memory_format=self.memory_format)
            yield x, self.labels[idx]
