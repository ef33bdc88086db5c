"""The classic data path: a DataLoader with worker processes and per-image Pillow augmentation.

This is how the seed paper fed its models (torchvision's ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``, one image at a time on the CPU),
rewritten with Pillow and numpy only. It is the baseline that measures the fast loop's
speed-up, and a fallback for hardware where a device-resident split does not fit. Each
per-image op matches ``kdlib.data.augment`` pixel for pixel, and the normalized floats
bit for bit, so the two paths give the same batches for the same offsets and flips.

Seeding: all randomness comes from ``ClassicLoader.generator`` in the main process. Each
epoch it draws the order and one epoch seed; the batch with position ``b`` then draws its
crops and flips from a numpy generator seeded with ``(epoch seed, b)`` in whichever worker
loads it. So the data depend on ``seed`` alone, not on ``num_workers``, and saving and
restoring ``generator`` between epochs resumes the exact same sequence of batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from kdlib.data.augment import normalize_affine
from kdlib.data.loader import channel_axis
from kdlib.errors import KdlibError

FixedAug = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Per-example ``(dy, dx, flip)`` arrays that replace the random draws (for tests)."""

BatchKey = tuple[int, int, int]
"""``(example index, epoch seed, batch position)``: what the loader's sampler yields."""


def pil_crop_flip(img: Image.Image, dy: int, dx: int, flip: bool, padding: int = 4) -> Image.Image:
    """Zero-pad ``img`` by ``padding``, crop its original size at top-left ``(dy, dx)`` of
    the padded image, then mirror left-right if ``flip``.

    The same crop-then-flip as ``kdlib.data.augment.crop_flip`` for the same
    ``(dy, dx, flip)``, with offsets in ``[0, 2 * padding]``.
    """
    if not (0 <= dy <= 2 * padding and 0 <= dx <= 2 * padding):
        raise ValueError(f"offsets ({dy}, {dx}) outside [0, {2 * padding}]")
    w, h = img.size
    padded = ImageOps.expand(img, border=padding, fill=0) if padding else img
    out = padded.crop((dx, dy, dx + w, dy + h))
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out


def _normalized(img: Image.Image, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # np.array copies, so the tensor owns writable memory (as torchvision's ToTensor does).
    chw = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    return (chw.to(torch.float32) - shift) * scale


def to_normalized_tensor(
    img: Image.Image, mean: Sequence[float] | np.ndarray, std: Sequence[float] | np.ndarray
) -> torch.Tensor:
    """ToTensor + Normalize: ``(pixels / 255 - mean) / std`` as a float32 (3, H, W) tensor.

    Uses ``normalize``'s formula ``(x - 255 mean) * (1 / (255 std))`` with the constants of
    ``normalize_affine``, not the literal one, so it equals the batched path exactly rather
    than to within rounding.
    """
    shift, scale = normalize_affine(mean, std)
    return _normalized(img, shift, scale)


def _to_nhwc(images: np.ndarray | torch.Tensor) -> np.ndarray:
    a = images.numpy() if torch.is_tensor(images) else np.asarray(images)
    return a if channel_axis(a) == 3 else np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _check_fixed_aug(fixed_aug: FixedAug, n: int, padding: int) -> FixedAug:
    if len(fixed_aug) != 3:
        raise KdlibError("fixed_aug must be (dy, dx, flip) arrays")
    dy, dx, flip = (np.asarray(a) for a in fixed_aug)
    for name, a in (("dy", dy), ("dx", dx), ("flip", flip)):
        if a.shape != (n,):
            raise KdlibError(f"fixed_aug {name} must have shape ({n},), got {a.shape}")
    for name, a in (("dy", dy), ("dx", dx)):
        if a.min(initial=0) < 0 or a.max(initial=0) > 2 * padding:
            raise KdlibError(f"fixed_aug {name} must lie in [0, {2 * padding}]")
    return dy.astype(np.int64), dx.astype(np.int64), flip.astype(bool)


class ClassicDataset(Dataset):
    """uint8 images + labels -> ``(normalized float32 (3, H, W) tensor, int label)``.

    An item is an example index or a ``BatchKey``. Plain indices draw their crop and flip
    from ``rng``, this process's numpy generator (seeded from ``seed``, and reseeded in each
    worker from the worker's seed by ``worker_init``), as a plain DataLoader would use it.
    ``BatchKey``s, fetched a batch at a time by ``__getitems__``, draw from a generator
    seeded by the key, so a batch is the same whichever worker loads it.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        *,
        mean: Sequence[float] | np.ndarray,
        std: Sequence[float] | np.ndarray,
        augment: bool,
        padding: int = 4,
        seed: int = 0,
        fixed_aug: FixedAug | None = None,
    ) -> None:
        self.images = _to_nhwc(images)
        lab = labels.numpy() if torch.is_tensor(labels) else np.asarray(labels)
        self.labels = lab.astype(np.int64)
        if self.labels.shape != (len(self.images),):
            raise KdlibError(f"{len(self.labels)} labels for {len(self.images)} images")
        if padding < 0:
            raise KdlibError(f"padding must be >= 0, got {padding}")
        if fixed_aug is not None and not augment:
            raise KdlibError("fixed_aug needs augment=True")
        self.shift, self.scale = normalize_affine(mean, std)
        self.augment = augment
        self.padding = padding
        self.seed = seed
        self.fixed_aug = (
            None if fixed_aug is None else _check_fixed_aug(fixed_aug, len(self.images), padding)
        )
        self.rng = np.random.default_rng(seed % 2**64)

    def __len__(self) -> int:
        return len(self.images)

    def _item(self, i: int, dy: int, dx: int, flip: bool) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[i])
        if self.augment:
            if self.fixed_aug is not None:
                dy, dx, flip = (int(a[i]) for a in self.fixed_aug)
            img = pil_crop_flip(img, dy, dx, bool(flip), self.padding)
        return _normalized(img, self.shift, self.scale), int(self.labels[i])

    def _draws(self, rng: np.random.Generator, n: int) -> FixedAug:
        """Offsets and flips for ``n`` examples, distributed as ``random_crop_flip``'s."""
        if not self.augment or self.fixed_aug is not None:
            return np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool)
        dy, dx = rng.integers(0, 2 * self.padding + 1, size=(2, n))
        return dy, dx, rng.random(n) < 0.5

    def __getitem__(self, key: int | BatchKey) -> tuple[torch.Tensor, int]:
        if isinstance(key, tuple):
            return self.__getitems__([key])[0]
        dy, dx, flip = self._draws(self.rng, 1)
        return self._item(int(key), int(dy[0]), int(dx[0]), bool(flip[0]))

    def __getitems__(
        self, keys: Sequence[int] | Sequence[BatchKey]
    ) -> list[tuple[torch.Tensor, int]]:
        """One batch; DataLoader calls this instead of ``__getitem__`` once per example."""
        if not keys or not isinstance(keys[0], tuple):
            return [self[int(k)] for k in keys]
        stream = keys[0][1:]
        if any(k[1:] != stream for k in keys):
            raise KdlibError("a batch's keys must share one (epoch seed, batch) stream")
        dy, dx, flip = self._draws(np.random.default_rng(stream), len(keys))
        return [self._item(k[0], int(dy[j]), int(dx[j]), bool(flip[j])) for j, k in enumerate(keys)]


def worker_init(worker_id: int) -> None:
    """Give each worker one torch thread (workers are the parallelism; more threads would
    oversubscribe the cores) and its own ``rng``, seeded from the worker's seed."""
    torch.set_num_threads(1)
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, ClassicDataset):
        info.dataset.rng = np.random.default_rng([info.dataset.seed % 2**64, info.seed])


class _EpochBatchSampler(Sampler[list[BatchKey]]):
    """Batches of ``BatchKey``s; each pass draws a new order and epoch seed from ``generator``."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        draw_seed: bool,
        drop_last: bool,
        generator: torch.Generator,
    ) -> None:
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.draw_seed = draw_seed
        self.drop_last = drop_last
        self.generator = generator

    def __len__(self) -> int:
        n, b = self.n, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def __iter__(self) -> Iterator[list[BatchKey]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).tolist()
        else:
            order = list(range(self.n))
        epoch_seed = 0
        if self.draw_seed:
            epoch_seed = int(torch.randint(0, 2**62, (), generator=self.generator))
        b = self.batch_size
        for i in range(len(self)):
            yield [(idx, epoch_seed, i) for idx in order[i * b : (i + 1) * b]]


class ClassicLoader:
    """Iterate ``(x, y)`` batches from a DataLoader with per-image Pillow augmentation.

    A drop-in for ``DeviceLoader`` in the training loop: same constructor (less ``dtype``
    and ``channels_last``), ``len``, ``num_examples``, ``generator``, and batches already on
    ``device``. Workers persist across epochs, as respawning them costs seconds per epoch.
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
        num_workers: int = 4,
        pin_memory: bool | None = None,
        fixed_aug: FixedAug | None = None,
    ) -> None:
        if batch_size <= 0:
            raise KdlibError(f"batch size must be positive, got {batch_size}")
        if num_workers < 0:
            raise KdlibError(f"num_workers must be >= 0, got {num_workers}")
        self.device = torch.device(device)
        self.dataset = ClassicDataset(
            images, labels, mean=mean, std=std, augment=augment, seed=seed, fixed_aug=fixed_aug
        )
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else pin_memory
        # The only generator whose state matters: order and augmentation come from it.
        self.generator = torch.Generator().manual_seed(seed)
        self.sampler = _EpochBatchSampler(
            len(self.dataset),
            batch_size,
            shuffle=shuffle,
            draw_seed=augment and fixed_aug is None,
            drop_last=drop_last,
            generator=self.generator,
        )
        # DataLoader draws its own worker base seed per iterator; give it a private
        # generator so it touches neither ``generator`` (resume) nor torch's global RNG.
        self._loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=worker_init if num_workers > 0 else None,
            persistent_workers=num_workers > 0,
            generator=torch.Generator().manual_seed(seed),
        )

    @property
    def num_examples(self) -> int:
        """Examples in the split (not batches)."""
        return len(self.dataset)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self._loader:
            yield (
                x.to(self.device, non_blocking=self.pin_memory),
                y.to(self.device, non_blocking=self.pin_memory),
            )
