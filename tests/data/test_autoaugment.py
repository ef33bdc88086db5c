"""Tests for kdlib.data.autoaugment: every op against Pillow (which the original AutoAugment
code calls), masking, per-image independence of the policy draws, seeding, the table.

All on CPU with small batches; the CUDA test runs only where a GPU is present.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from kdlib.data.autoaugment import (
    CIFAR10_POLICY,
    OPS,
    SIGNED_OPS,
    apply_op,
    apply_subpolicies,
    cifar10_autoaugment,
    draw_subpolicies,
    level_to_magnitude,
)

FILL = (128, 128, 128)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Run these many small tensor ops on one thread. On a small shared machine each
    parallel op otherwise waits for a busy second core: 8 ms instead of 20 us each."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _natural_images(n: int, seed: int) -> np.ndarray:
    """Smooth 32x32 RGB images (gradients, a few waves, mild noise), as CIFAR-like stand-ins."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    out = np.empty((n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        img = np.empty((3, 32, 32))
        for c in range(3):
            img[c] = rng.uniform(40, 200) + rng.uniform(-80, 80) * xx + rng.uniform(-80, 80) * yy
            for _ in range(3):
                fx, fy = rng.uniform(0.3, 3, size=2)
                img[c] += rng.uniform(5, 40) * np.sin(
                    2 * math.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * math.pi)
                )
        img += rng.normal(0, 4, img.shape)
        out[i] = np.clip(np.rint(img), 0, 255)
    return out


def _test_images() -> np.ndarray:
    """Six natural-ish images plus edge cases: constant, narrow range, two values, noise."""
    rng = np.random.default_rng(7)
    natural = _natural_images(6, seed=0)
    constant = np.full((1, 3, 32, 32), 77, dtype=np.uint8)
    narrow = rng.integers(100, 121, size=(1, 3, 32, 32), dtype=np.uint8)
    two = np.where(rng.random((1, 3, 32, 32)) < 0.3, 10, 200).astype(np.uint8)
    noise = rng.integers(0, 256, size=(1, 3, 32, 32), dtype=np.uint8)
    return np.concatenate([natural, constant, narrow, two, noise])


IMAGES = _test_images()


def _pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)))


def _np(im: Image.Image) -> np.ndarray:
    return np.asarray(im).transpose(2, 0, 1)


def _pil_op(im: Image.Image, op: str, m: float) -> Image.Image:
    """The Pillow call the original AutoAugment code makes for ``op`` with parameter ``m``."""
    affine = {
        "ShearX": (1, m, 0, 0, 1, 0),
        "ShearY": (1, 0, 0, m, 1, 0),
        "TranslateX": (1, 0, m, 0, 1, 0),
        "TranslateY": (1, 0, 0, 0, 1, m),
    }
    if op in affine:
        return im.transform(im.size, Image.AFFINE, affine[op], Image.NEAREST, fillcolor=FILL)
    if op == "Rotate":
        return im.rotate(m, resample=Image.NEAREST, fillcolor=FILL)
    if op in ("Color", "Contrast", "Brightness", "Sharpness"):
        return getattr(ImageEnhance, op)(im).enhance(m)
    return {
        "Invert": lambda: ImageOps.invert(im),
        "AutoContrast": lambda: ImageOps.autocontrast(im),
        "Equalize": lambda: ImageOps.equalize(im),
        "Posterize": lambda: ImageOps.posterize(im, int(m)),
        "Solarize": lambda: ImageOps.solarize(im, int(m)),
    }[op]()


def _magnitudes(op: str) -> list[float]:
    """Every parameter the policy can give ``op``: levels 0..9, both signs where signed."""
    mags = level_to_magnitude(op, torch.arange(10)).tolist()
    if op in SIGNED_OPS:
        mags += [-m for m in mags]
    return sorted(set(mags))


# Allowed difference from Pillow, over the test images and every level (both signs). Every
# op reproduces Pillow's own arithmetic: integer and float32 colour maths, double-precision
# AutoContrast tables, the 16.16 fixed-point coordinates of its affine transforms. On this
# CPU the measured mean absolute difference is 0 for all 14 ops; the slack is for Pillow
# builds whose C compiler fuses a multiply-add (e.g. on aarch64), which can move a value by
# one, and for a geometric pixel landing on the neighbouring source pixel at a boundary.
MEAN_ABS_TOLERANCE = 0.01
COLOUR_MAX_DIFF = 1  # colour ops: no pixel off by more than this
GEOMETRIC_DIFFERING_PIXELS = 0.001  # geometric ops: fraction of pixels allowed to differ
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")


@pytest.mark.parametrize("op", OPS)
def test_op_matches_pillow(op: str) -> None:
    x = torch.from_numpy(IMAGES)
    n = len(IMAGES)
    for m in _magnitudes(op):
        ours = apply_op(x, op, torch.full((n,), m), torch.ones(n, dtype=torch.bool)).numpy()
        ref = np.stack([_np(_pil_op(_pil(a), op, m)) for a in IMAGES])
        d = np.abs(ours.astype(np.int64) - ref.astype(np.int64))
        assert d.mean() <= MEAN_ABS_TOLERANCE, (op, m, d.mean())
        if op in GEOMETRIC:
            assert (d > 0).mean() <= GEOMETRIC_DIFFERING_PIXELS, (op, m, (d > 0).mean())
        else:
            assert d.max() <= COLOUR_MAX_DIFF, (op, m, d.max())


def test_geometric_fill_is_configurable() -> None:
    x = torch.from_numpy(IMAGES[:2])
    mag, mask = torch.full((2,), 5.0), torch.ones(2, dtype=torch.bool)
    out = apply_op(x, "TranslateX", mag, mask, fill=(1, 2, 3))
    assert out[:, :, :, -5:].permute(0, 2, 3, 1).eq(torch.tensor([1, 2, 3])).all()
    assert torch.equal(out[:, :, :, :-5], x[:, :, :, 5:])
    assert apply_op(x, "TranslateX", mag, mask)[:, :, :, -5:].eq(128).all()


@pytest.mark.parametrize("op", OPS)
def test_mask_selects_images(op: str) -> None:
    x = torch.from_numpy(IMAGES)
    n = len(IMAGES)
    mag = torch.full((n,), max(_magnitudes(op), key=abs))
    mask = torch.arange(n) % 2 == 0
    full = apply_op(x, op, mag, torch.ones(n, dtype=torch.bool))
    out = apply_op(x, op, mag, mask)
    assert out.dtype == torch.uint8 and out.shape == x.shape and out.device == x.device
    assert torch.equal(out[~mask], x[~mask])
    assert torch.equal(out[mask], full[mask])
    assert torch.equal(apply_op(x, op, mag, torch.zeros(n, dtype=torch.bool)), x)


def test_per_sample_magnitudes() -> None:
    x = torch.from_numpy(IMAGES[:4])
    mag = torch.tensor([-9.0, -3.0, 4.0, 9.0])
    out = apply_op(x, "TranslateY", mag, torch.ones(4, dtype=torch.bool))
    for i, m in enumerate(mag.tolist()):
        assert np.array_equal(out[i].numpy(), _np(_pil_op(_pil(IMAGES[i]), "TranslateY", m)))


def test_level_mapping_follows_original_code() -> None:
    def mag(op: str, level: int) -> float:
        return level_to_magnitude(op, torch.tensor([level])).item()

    assert mag("Rotate", 2) == 6 and mag("Rotate", 9) == 27
    assert mag("ShearY", 8) == pytest.approx(0.24) and mag("ShearX", 9) == pytest.approx(0.27)
    assert mag("TranslateX", 9) == 9 and mag("TranslateY", 3) == 3
    assert mag("Color", 0) == pytest.approx(0.1) and mag("Brightness", 9) == pytest.approx(1.72)
    assert mag("Posterize", 7) == 2 and mag("Posterize", 0) == 4
    assert mag("Solarize", 2) == 205 and mag("Solarize", 8) == 52 and mag("Solarize", 0) == 256
    assert mag("Equalize", 5) == 0


def test_policy_table() -> None:
    assert len(CIFAR10_POLICY) == 25
    for sub in CIFAR10_POLICY:
        assert len(sub) == 2
        for name, prob, level in sub:
            assert name in OPS
            assert 0.0 <= prob <= 1.0
            assert isinstance(level, int) and 0 <= level <= 9
    assert CIFAR10_POLICY[0] == (("Invert", 0.1, 7), ("Contrast", 0.2, 6))
    assert CIFAR10_POLICY[-1] == (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1))
    assert {op for sub in CIFAR10_POLICY for op, _, _ in sub} == set(OPS) - {"ShearX"}


def test_subpolicy_draws_are_per_image_and_uniform() -> None:
    g = torch.Generator().manual_seed(0)
    idx = draw_subpolicies(256, g)
    assert idx.shape == (256,) and idx.dtype == torch.int64
    assert len(idx.unique()) >= 23  # expected about 25 * (1 - e^(-256/25)) = 25
    counts = torch.bincount(draw_subpolicies(25_000, g), minlength=25)
    assert counts.min() > 850 and counts.max() < 1150  # 1000 each, sd ~31


def test_same_image_gets_many_different_augmentations() -> None:
    x = torch.from_numpy(IMAGES[:1]).expand(256, -1, -1, -1).contiguous()
    out = cifar10_autoaugment(x, torch.Generator().manual_seed(1))
    distinct = len({bytes(o.numpy().tobytes()) for o in out})
    # One sub-policy for the whole batch could give at most 9 results (each op fires or
    # not, signed ones with either sign); per-image draws give dozens (49 with this seed).
    assert distinct >= 30
    # Some draws fire nothing (or a no-op such as Invert with probability 0).
    assert 0 < (out == x).flatten(1).all(1).sum() < 128


def test_output_dtype_shape_and_input_untouched() -> None:
    x = torch.from_numpy(IMAGES.copy())
    before = x.clone()
    out = cifar10_autoaugment(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape and out.device == x.device
    assert torch.equal(x, before)
    odd = torch.randint(0, 256, (3, 3, 20, 28), dtype=torch.uint8)
    assert cifar10_autoaugment(odd).shape == odd.shape
    with pytest.raises(ValueError):
        cifar10_autoaugment(x.float())


def test_seeding() -> None:
    x = torch.from_numpy(_natural_images(64, seed=3))

    def run(seed: int) -> torch.Tensor:
        return cifar10_autoaugment(x, torch.Generator().manual_seed(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_subpolicies_match_pillow_image_by_image() -> None:
    """The fused batch path equals the original per-image recipe run through Pillow.

    Replays the documented draws: after the indices, one rand((2, 2, B)) whose [slot, 0]
    fires the slot's op below its probability and whose [slot, 1] < 0.5 negates signed ops.
    """
    n = 96
    x = torch.from_numpy(np.concatenate([_natural_images(n - len(IMAGES), 4), IMAGES]))
    idx = torch.arange(n) % 25  # every sub-policy, several times
    out = apply_subpolicies(x, idx, torch.Generator().manual_seed(2)).numpy()
    u = torch.rand((2, 2, n), generator=torch.Generator().manual_seed(2))
    diffs = []
    for i in range(n):
        im = _pil(x[i].numpy())
        for slot, (op, prob, level) in enumerate(CIFAR10_POLICY[int(idx[i])]):
            if u[slot, 0, i] < prob:
                m = level_to_magnitude(op, torch.tensor([level])).item()
                im = _pil_op(im, op, -m if op in SIGNED_OPS and u[slot, 1, i] < 0.5 else m)
        diffs.append(np.abs(out[i].astype(np.int64) - _np(im).astype(np.int64)).mean())
    assert float(np.mean(diffs)) <= MEAN_ABS_TOLERANCE, np.max(diffs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_without_host_sync() -> None:
    x = torch.from_numpy(_natural_images(64, seed=5))
    xc = x.cuda()
    for op in OPS:
        mag = torch.full((64,), max(_magnitudes(op), key=abs))
        mask = torch.arange(64) % 3 != 0
        assert torch.equal(
            apply_op(xc, op, mag.cuda(), mask.cuda()).cpu(), apply_op(x, op, mag, mask)
        )
    g = torch.Generator(device="cuda").manual_seed(0)
    cifar10_autoaugment(xc, g)  # first call caches the per-device tables (a host copy)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = cifar10_autoaugment(xc, g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device == xc.device and out.dtype == torch.uint8
