"""The classic (DataLoader + Pillow) data path gives the same batches as the fast one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kdlib.data import DeviceLoader, crop_flip, normalize, normalize_affine, random_crop_flip
from kdlib.data.classic import (
    ClassicDataset,
    ClassicLoader,
    pil_crop_flip,
    to_normalized_tensor,
)
from kdlib.errors import KdlibError

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def batched_crop_flip(
    x: torch.Tensor, dy: np.ndarray, dx: np.ndarray, flip: np.ndarray
) -> torch.Tensor:
    """The batched path's crop and flip (``random_crop_flip``'s core) at the given draws."""
    return crop_flip(x, torch.as_tensor(dy), torch.as_tensor(dx), torch.as_tensor(flip))


def fast_batch(
    imgs: np.ndarray, idx: np.ndarray, aug: tuple[np.ndarray, np.ndarray, np.ndarray] | None
) -> torch.Tensor:
    x = torch.from_numpy(imgs[idx]).permute(0, 3, 1, 2)
    if aug is not None:
        x = batched_crop_flip(x, *(a[idx] for a in aug))
    return normalize(x, MEAN, STD)


def fixed_aug(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 9, n), rng.integers(0, 9, n), rng.random(n) < 0.5


def test_pil_crop_flip_matches_random_crop_flip_for_every_offset_and_flip() -> None:
    imgs = images(2 * 81 * 2)
    grid = np.array([(dy, dx, f) for f in (0, 1) for dy in range(9) for dx in range(9)])
    dy, dx, flip = (np.tile(grid[:, j], 2) for j in range(3))
    expected = batched_crop_flip(torch.from_numpy(imgs).permute(0, 3, 1, 2), dy, dx, flip > 0)
    for i, img in enumerate(imgs):
        got = np.asarray(pil_crop_flip(Image.fromarray(img), int(dy[i]), int(dx[i]), flip[i] > 0))
        np.testing.assert_array_equal(got, expected[i].permute(1, 2, 0).numpy())


def test_random_crop_flip_is_crop_flip_at_its_draws() -> None:
    x = torch.from_numpy(images(24)).permute(0, 3, 1, 2)
    gen = torch.Generator().manual_seed(7)
    replay = torch.Generator().set_state(gen.get_state())
    got = random_crop_flip(x, generator=gen)
    offsets = torch.randint(0, 9, (2, 24), generator=replay)
    flip = torch.rand(24, generator=replay) < 0.5
    assert torch.equal(got, crop_flip(x, offsets[0], offsets[1], flip))
    assert torch.equal(gen.get_state(), replay.get_state())  # exactly those draws


def test_pil_crop_flip_pads_with_zeros_and_checks_offsets() -> None:
    img = Image.fromarray(np.full((32, 32, 3), 200, np.uint8))
    out = np.asarray(pil_crop_flip(img, 0, 8, False))
    assert (out[:4] == 0).all() and (out[4:, :28] == 200).all() and (out[:, 28:] == 0).all()
    with pytest.raises(ValueError):
        pil_crop_flip(img, 9, 0, False)


def test_normalized_tensor_is_bit_exact_with_normalize() -> None:
    imgs = images(16)
    expected = normalize(torch.from_numpy(imgs).permute(0, 3, 1, 2), MEAN, STD)
    for img, e in zip(imgs, expected, strict=True):
        got = to_normalized_tensor(Image.fromarray(img), MEAN, STD)
        assert got.dtype == torch.float32 and got.shape == (3, 32, 32)
        assert torch.equal(got, e)


def test_precomputed_affine_is_bit_exact() -> None:
    x = torch.from_numpy(images(8)).permute(0, 3, 1, 2)
    affine = normalize_affine(MEAN, STD)
    assert all(t.dtype == torch.float32 and t.shape == (3, 1, 1) for t in affine)
    assert torch.equal(normalize(x, affine=affine), normalize(x, MEAN, STD))
    as_arrays = normalize(x, np.array(MEAN), torch.tensor(STD), torch.bfloat16)
    assert torch.equal(normalize(x, dtype=torch.bfloat16, affine=affine), as_arrays)
    with pytest.raises(ValueError):
        normalize(x)
    with pytest.raises(ValueError):
        normalize(x, MEAN, STD, affine=affine)


def test_unaugmented_batches_equal_device_loader() -> None:
    imgs, labels = images(50), np.arange(50) % 10
    kw = {"mean": MEAN, "std": STD, "shuffle": False, "augment": False}
    classic = ClassicLoader(imgs, labels, 16, num_workers=0, **kw)
    fast = DeviceLoader(imgs, labels, 16, **kw)
    assert len(classic) == len(fast) == 4 and classic.num_examples == 50
    pairs = list(zip(classic, fast, strict=True))
    for (xc, yc), (xf, yf) in pairs:
        assert xc.dtype == torch.float32 and yc.dtype == torch.int64
        assert torch.equal(xc, xf) and torch.equal(yc, yf)


def _order_of(loader: ClassicLoader) -> np.ndarray:
    """The example order of the loader's next epoch, without consuming its generator."""
    state = loader.generator.get_state()
    keys = next(iter(loader.sampler))
    loader.generator.set_state(state)
    return np.array([k[0] for k in keys])


def test_fixed_augmentation_equals_batched_augmentation() -> None:
    imgs, labels = images(40), np.arange(40) % 10
    aug = fixed_aug(40)
    loader = ClassicLoader(
        imgs,
        labels,
        40,
        mean=MEAN,
        std=STD,
        shuffle=True,
        augment=True,
        num_workers=0,
        fixed_aug=aug,
    )
    order = _order_of(loader)  # shuffled: the forced offsets follow each example
    x, y = next(iter(loader))
    np.testing.assert_array_equal(labels[order], y.numpy())
    assert torch.equal(x, fast_batch(imgs, order, aug))


@pytest.mark.parametrize("channels_last", [False, True])
def test_augmented_device_loader_equals_classic_at_its_draws(channels_last: bool) -> None:
    imgs, labels = images(40, seed=5), np.arange(40) % 10
    kw = {"mean": MEAN, "std": STD, "shuffle": False, "augment": True, "seed": 4}
    fast = DeviceLoader(imgs, labels, 40, channels_last=channels_last, **kw)
    replay = torch.Generator().manual_seed(4)  # the draws DeviceLoader's first batch makes
    offsets = torch.randint(0, 9, (2, 40), generator=replay)
    flip = torch.rand(40, generator=replay) < 0.5
    aug = (offsets[0].numpy(), offsets[1].numpy(), flip.numpy())
    classic = ClassicLoader(imgs, labels, 40, num_workers=0, fixed_aug=aug, **kw)
    ((xf, yf),) = list(fast)
    ((xc, yc),) = list(classic)
    assert torch.equal(xf, xc) and torch.equal(yf, yc)
    assert xf.is_contiguous(memory_format=torch.channels_last) is channels_last


def test_epochs_cover_every_example_once_and_repeat_with_the_seed() -> None:
    imgs = images(37)
    labels = np.arange(37)  # unique labels reveal the order

    def epochs(seed: int, workers: int, n: int = 3) -> list[tuple[np.ndarray, torch.Tensor]]:
        loader = ClassicLoader(
            imgs,
            labels,
            8,
            mean=MEAN,
            std=STD,
            shuffle=True,
            augment=True,
            seed=seed,
            num_workers=workers,
        )
        out = []
        for _ in range(n):
            batches = list(loader)
            out.append(
                (torch.cat([y for _, y in batches]).numpy(), torch.cat([x for x, _ in batches]))
            )
        return out

    a = epochs(0, 0)
    for order, _ in a:
        assert sorted(order.tolist()) == list(range(37))
    assert not np.array_equal(a[0][0], a[1][0])  # a new shuffle each epoch
    assert not torch.equal(a[0][1][np.argsort(a[0][0])], a[1][1][np.argsort(a[1][0])])
    for (o1, x1), (o2, x2) in zip(a, epochs(0, 0), strict=True):
        assert np.array_equal(o1, o2) and torch.equal(x1, x2)
    assert not np.array_equal(a[0][0], epochs(1, 0, 1)[0][0])


def test_two_workers_give_the_same_data_as_none() -> None:
    imgs, labels = images(40), np.arange(40)
    kw = {"mean": MEAN, "std": STD, "shuffle": True, "augment": True, "seed": 3}
    serial = ClassicLoader(imgs, labels, 6, num_workers=0, **kw)
    parallel = ClassicLoader(imgs, labels, 6, num_workers=2, **kw)
    for _ in range(2):  # the second epoch runs on the same, persistent workers
        for (x0, y0), (x2, y2) in zip(serial, parallel, strict=True):
            assert torch.equal(x0, x2) and torch.equal(y0, y2)


def test_restoring_the_generator_replays_the_epoch() -> None:
    imgs, labels = images(20), np.arange(20)
    loader = ClassicLoader(
        imgs, labels, 8, mean=MEAN, std=STD, shuffle=True, augment=True, num_workers=0
    )
    list(loader)
    state = loader.generator.get_state()
    first = list(loader)
    loader.generator.set_state(state)
    for (x1, y1), (x2, y2) in zip(first, loader, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_plain_dataset_items_and_bad_input() -> None:
    imgs = images(4)
    ds = ClassicDataset(imgs, np.arange(4), mean=MEAN, std=STD, augment=True)
    x, y = ds[2]
    assert x.shape == (3, 32, 32) and y == 2
    nchw = ClassicDataset(
        imgs.transpose(0, 3, 1, 2), np.arange(4), mean=MEAN, std=STD, augment=False
    )
    assert torch.equal(nchw[1][0], to_normalized_tensor(Image.fromarray(imgs[1]), MEAN, STD))
    with pytest.raises(KdlibError):
        ClassicDataset(imgs.astype(np.float32), np.arange(4), mean=MEAN, std=STD, augment=False)
    with pytest.raises(KdlibError):
        ClassicDataset(imgs, np.arange(3), mean=MEAN, std=STD, augment=False)
    with pytest.raises(KdlibError):
        bad = (np.full(4, 9), np.zeros(4, int), np.zeros(4, bool))
        ClassicDataset(imgs, np.arange(4), mean=MEAN, std=STD, augment=True, fixed_aug=bad)
    with pytest.raises(KdlibError):
        ClassicLoader(imgs, np.arange(4), 0, mean=MEAN, std=STD, shuffle=False, augment=False)
