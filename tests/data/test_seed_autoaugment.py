"""The seed paper's AutoAugment port, op by op, against the Pillow calls its code makes
(``SubPolicy`` in karanchahal/distiller's ``distillers/uda_distiller.py``, transcribed here
without kdlib), at every level and both signs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from kdlib.data.autoaugment import OPS
from kdlib.data.seed_autoaugment import (
    SEED_SIGNED_OPS,
    apply_seed_op,
    apply_seed_subpolicies,
    seed_cifar10_autoaugment,
)

FILL = (128, 128, 128)
RANGES = {  # the seed's ranges dict
    "ShearX": np.linspace(0, 0.3, 10),
    "ShearY": np.linspace(0, 0.3, 10),
    "TranslateX": np.linspace(0, 150 / 331, 10),
    "TranslateY": np.linspace(0, 150 / 331, 10),
    "Rotate": np.linspace(0, 30, 10),
    "Color": np.linspace(0.0, 0.9, 10),
    "Posterize": np.round(np.linspace(8, 4, 10), 0).astype(int),
    "Solarize": np.linspace(256, 0, 10),
    "Contrast": np.linspace(0.0, 0.9, 10),
    "Sharpness": np.linspace(0.0, 0.9, 10),
    "Brightness": np.linspace(0.0, 0.9, 10),
    "AutoContrast": [0] * 10,
    "Equalize": [0] * 10,
    "Invert": [0] * 10,
}


def seed_pillow(img: Image.Image, op: str, magnitude: float, sign: int) -> Image.Image:
    """The seed's ``func[op](img, magnitude)`` with ``random.choice([-1, 1])`` = ``sign``."""
    if op == "ShearX":
        return img.transform(
            img.size, Image.AFFINE, (1, magnitude * sign, 0, 0, 1, 0), Image.BICUBIC,
            fillcolor=FILL,
        )  # fmt: skip
    if op == "ShearY":
        return img.transform(
            img.size, Image.AFFINE, (1, 0, 0, magnitude * sign, 1, 0), Image.BICUBIC,
            fillcolor=FILL,
        )  # fmt: skip
    if op == "TranslateX":
        return img.transform(
            img.size, Image.AFFINE, (1, 0, magnitude * img.size[0] * sign, 0, 1, 0),
            fillcolor=FILL,
        )  # fmt: skip
    if op == "TranslateY":
        return img.transform(
            img.size, Image.AFFINE, (1, 0, 0, 0, 1, magnitude * img.size[1] * sign),
            fillcolor=FILL,
        )  # fmt: skip
    if op == "Rotate":
        rot = img.convert("RGBA").rotate(magnitude)
        return Image.composite(rot, Image.new("RGBA", rot.size, (128,) * 4), rot).convert(img.mode)
    if op == "Color":
        return ImageEnhance.Color(img).enhance(1 + magnitude * sign)
    if op == "Posterize":
        return ImageOps.posterize(img, int(magnitude))
    if op == "Solarize":
        return ImageOps.solarize(img, magnitude)
    if op == "Contrast":
        return ImageEnhance.Contrast(img).enhance(1 + magnitude * sign)
    if op == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(1 + magnitude * sign)
    if op == "Brightness":
        return ImageEnhance.Brightness(img).enhance(1 + magnitude * sign)
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Invert":
        return ImageOps.invert(img)
    raise ValueError(op)


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, 32, dtype=np.float64)  # smooth images too: bicubic overshoot
    imgs[0] = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1).astype(np.uint8)
    imgs[1] = (imgs[1] // 64) * 64  # few levels: equalize / autocontrast corner cases
    return imgs


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("sign", [1, -1])
def test_every_op_matches_the_seeds_pillow_call_at_every_level(op: str, sign: int) -> None:
    imgs = _images()
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    n = len(imgs)
    for level in range(10):
        mag = float(RANGES[op][level])
        pixels = mag * 32 if op.startswith("Translate") else mag
        signed = pixels * (sign if op in SEED_SIGNED_OPS else 1)
        mags = torch.full((n,), signed, dtype=torch.float64)  # Pillow gets doubles
        got = apply_seed_op(x, op, mags, torch.ones(n, dtype=torch.bool))
        for i in range(n):
            want = np.asarray(seed_pillow(Image.fromarray(imgs[i]), op, mag, sign))
            have = got[i].permute(1, 2, 0).numpy()
            assert np.array_equal(have, want), (op, level, sign, i, np.abs(have - want).max())


def test_masked_out_images_are_unchanged() -> None:
    x = torch.from_numpy(_images()).permute(0, 3, 1, 2).contiguous()
    mask = torch.tensor([True, False, True, False, True, False])
    for op in OPS:
        out = apply_seed_op(x, op, torch.full((6,), 0.27), mask)
        assert torch.equal(out[~mask], x[~mask]), op


def test_subpolicies_equal_their_ops_applied_one_by_one() -> None:
    """The batched pass equals each image's two ops through apply_seed_op, for draws made
    from the same generator state."""
    from kdlib.data.autoaugment import CIFAR10_POLICY
    from kdlib.data.seed_autoaugment import seed_magnitudes

    x = torch.from_numpy(_images(25, seed=3)).permute(0, 3, 1, 2).contiguous()
    idx = torch.arange(25)  # every sub-policy once
    g = torch.Generator().manual_seed(7)
    got = apply_seed_subpolicies(x, idx, g)
    u = torch.rand((2, 2, 25), generator=torch.Generator().manual_seed(7))
    mags = seed_magnitudes()
    want = x.clone()
    for slot in range(2):
        for i in range(25):
            op, p, level = CIFAR10_POLICY[i][slot]
            if u[slot, 0, i] < p:
                m = float(mags[OPS.index(op), level])
                if op in SEED_SIGNED_OPS and u[slot, 1, i] < 0.5:
                    m = -m
                want[i : i + 1] = apply_seed_op(
                    want[i : i + 1],
                    op,
                    torch.tensor([m], dtype=torch.float64),
                    torch.tensor([True]),
                )
    assert torch.equal(got, want)


def test_the_policy_is_repeatable_from_its_generator() -> None:
    x = torch.from_numpy(_images(8)).permute(0, 3, 1, 2).contiguous()
    a = seed_cifar10_autoaugment(x, torch.Generator().manual_seed(1))
    b = seed_cifar10_autoaugment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == x.shape
