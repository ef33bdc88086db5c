"""Batched augmentation (kdlib/data/augment.py): random crop and flip, normalization."""

from __future__ import annotations

import numpy as np
import torch

from kdlib.data import dataset_stats, normalize, random_crop_flip


def _coded_batch(b: int, seed: int = 0) -> torch.Tensor:
    """Images whose channel 0 is row+1 and channel 1 is column+1 (0 marks padding)."""
    ramp = torch.arange(1, 33, dtype=torch.uint8)
    x = torch.empty(b, 3, 32, 32, dtype=torch.uint8)
    x[:, 0] = ramp[:, None]
    x[:, 1] = ramp[None, :]
    gen = torch.Generator().manual_seed(seed)
    x[:, 2] = torch.randint(0, 256, (b, 32, 32), generator=gen, dtype=torch.uint8)
    return x


def _offsets(out: torch.Tensor, padding: int = 4) -> tuple[torch.Tensor, ...]:
    """Recover each sample's crop offset (dy, dx in the padded image) and flip."""
    centre_row = out[:, 0, 16, 16].long()
    flipped = out[:, 1, 16, 17].long() < out[:, 1, 16, 16].long()
    dy = centre_row - 17 + padding
    dx = torch.where(
        flipped, out[:, 1, 16, 16].long() + padding - 16, out[:, 1, 16, 16].long() - 17 + padding
    )
    return dy, dx, flipped


def test_crop_flip_keeps_shape_dtype_device() -> None:
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.device == x.device
    assert out.is_contiguous()


def test_crop_without_padding_is_identity_up_to_flip() -> None:
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and same.any() and mirrored.any()


def test_crop_offsets_uniform_and_content_is_padded_window() -> None:
    reps = 100
    x = _coded_batch(81 * reps)
    out = random_crop_flip(x, padding=4, generator=torch.Generator().manual_seed(1))
    dy, dx, flipped = _offsets(out)
    assert int(dy.min()) == 0 and int(dy.max()) == 8 and int(dx.min()) == 0 and int(dx.max()) == 8
    counts = torch.bincount(dy * 9 + dx, minlength=81)
    assert counts.numel() == 81 and int(counts.min()) > 55 and int(counts.max()) < 145
    assert abs(flipped.float().mean().item() - 0.5) < 0.03
    # Every output is exactly its window of the zero-padded input, flipped if flipped.
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(0, len(x), 97):
        window = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        want = window.flip(-1) if flipped[i] else window
        assert torch.equal(out[i], want)


def test_crop_offsets_differ_within_a_batch() -> None:
    out = random_crop_flip(_coded_batch(32), generator=torch.Generator().manual_seed(2))
    dy, dx, flipped = _offsets(out)
    assert len(set(zip(dy.tolist(), dx.tolist(), strict=True))) > 10
    assert 0 < int(flipped.sum()) < 32


def test_normalize_values() -> None:
    x = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    mean, std = dataset_stats("cifar10")
    out = normalize(x, mean, std)
    want = (np.array([0, 128, 255]) / 255 - np.array(mean)) / np.array(std)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), want, rtol=1e-5)
    assert normalize(x, mean, std, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_crop_flip_memory_format() -> None:
    x = _coded_batch(6)
    gen = torch.Generator().manual_seed(3)
    out = random_crop_flip(x, generator=gen, memory_format=torch.channels_last)
    gen.manual_seed(3)
    assert torch.equal(out, random_crop_flip(x, generator=gen))
    assert out.is_contiguous(memory_format=torch.channels_last)
