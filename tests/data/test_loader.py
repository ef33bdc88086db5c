"""DeviceLoader (kdlib/data/loader.py): epochs, order, normalization, memory format and
its own augmentation generator."""

from __future__ import annotations

import numpy as np
import torch

from kdlib.data import DeviceLoader, dataset_stats


def _loader(n: int = 103, **kw) -> DeviceLoader:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    opts = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "shuffle": True, "augment": True}
    return DeviceLoader(images, np.arange(n), 10, **(opts | kw))


def test_loader_covers_each_example_once_per_epoch() -> None:
    loader = _loader()
    assert len(loader) == 11
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [len(y) for _, y in batches] == [10] * 10 + [3]
        seen = torch.cat([y for _, y in batches])
        assert sorted(seen.tolist()) == list(range(103))
        x, y = batches[0]
        assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        epochs.append(seen)
    assert not torch.equal(epochs[0], epochs[1])
    replay = torch.cat([y for _, y in _loader()])
    assert torch.equal(replay, epochs[0])
    assert not torch.equal(torch.cat([y for _, y in _loader(seed=1)]), epochs[0])


def test_loader_drop_last_and_plain_order() -> None:
    loader = _loader(drop_last=True, shuffle=False, augment=False)
    assert len(loader) == 10
    ys = torch.cat([y for _, y in loader])
    assert ys.tolist() == list(range(100))


def test_loader_normalizes_and_formats() -> None:
    images = np.random.default_rng(3).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    mean, std = dataset_stats("cifar10")
    loader = DeviceLoader(
        images,
        np.zeros(7),
        4,
        mean=mean,
        std=std,
        shuffle=False,
        augment=False,
        channels_last=True,
    )
    x, _ = next(iter(loader))
    want = (images[:4].astype(np.float32) / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), want, rtol=1e-5, atol=1e-6)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_batches_equal_contiguous_ones() -> None:
    for augment in (False, True):
        plain = list(_loader(augment=augment))
        cl = list(_loader(augment=augment, channels_last=True))
        for (xp, yp), (xc, yc) in zip(plain, cl, strict=True):
            assert torch.equal(xp, xc) and torch.equal(yp, yc)
            assert xp.is_contiguous() and xc.is_contiguous(memory_format=torch.channels_last)


def test_loader_augments_with_its_own_generator() -> None:
    a = [x for x, _ in _loader(shuffle=False)]
    b = [x for x, _ in _loader(shuffle=False)]
    c = [x for x, _ in _loader(shuffle=False, augment=False)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
