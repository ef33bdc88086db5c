"""The seed paper's own AutoAugment port (its ``CIFAR10Policy``), batched on the device.

UDA's ``variant=seed`` augments each image the way the seed code (karanchahal/distiller,
``distillers/uda_distiller.py``) did: the same 25 CIFAR-10 sub-policies as
``kdlib.data.autoaugment``, one drawn per image, but its own mapping of the levels 0..9 to
op parameters, taken from the widely used PyTorch port it copied, and its own Pillow calls:

=============================  ============================================================
ShearX, ShearY                 ``linspace(0, 0.3, 10)[level]``, random sign, **bicubic**
TranslateX, TranslateY         ``linspace(0, 150 / 331, 10)[level] * 32`` pixels (up to 14.5,
                               fractional), random sign, nearest
Rotate                         ``linspace(0, 30, 10)[level]`` degrees, counter-clockwise
                               only (no sign), nearest, gray outside (its RGBA composite)
Color, Contrast, Sharpness,    enhance factor ``1 + linspace(0, 0.9, 10)[level]`` times a
Brightness                     random sign (0.1..1.9)
Posterize                      keep ``round(linspace(8, 4, 10)[level])`` bits (8..4)
Solarize                       invert pixels ``>= linspace(256, 0, 10)[level]``
Invert, AutoContrast,          no magnitude
Equalize
=============================  ============================================================

Each op reproduces the Pillow call the seed makes (tests compare with Pillow). Shears go
through Pillow's bicubic affine filter (``Geometry.c``: cubic convolution with a = -1 on
pixel centres, columns clamped, missing rows repeating the last one, the result clipped and
truncated); translations through its ``ImagingScaleAffine`` (double arithmetic, nearest);
rotations through its 16.16 fixed-point affine path, as ``kdlib.data.autoaugment`` does.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from kdlib.data.autoaugment import (
    _BLEND_OPS,
    _OP_INDEX,
    CIFAR10_POLICY,
    OPS,
    Fill,
    _affine_matrix,
    _apply_lut,
    _blend,
    _check_batch,
    _degenerate,
    _fill_values,
    _identity_matrix,
    _lut,
    affine_source,
    draw_subpolicies,
    gather_pixels,
)

# The seed's signed ops: random.choice([-1, 1]) in its lambdas (Rotate has none).
SEED_SIGNED_OPS = frozenset(
    {"ShearX", "ShearY", "TranslateX", "TranslateY", "Color", "Contrast", "Sharpness", "Brightness"}
)
_ENHANCE = ("Color", "Contrast", "Sharpness", "Brightness")
IMAGE_SIZE = 32  # translate's magnitude is a fraction of img.size[0]


def seed_magnitudes(image_size: int = IMAGE_SIZE) -> np.ndarray:
    """(14 ops, 10 levels) of the seed's unsigned op parameters, as its ``ranges`` dict;
    enhance ops hold ``m`` of the factor ``1 + m * sign``."""
    ranges = {
        "ShearX": np.linspace(0, 0.3, 10),
        "ShearY": np.linspace(0, 0.3, 10),
        "TranslateX": np.linspace(0, 150 / 331, 10) * image_size,
        "TranslateY": np.linspace(0, 150 / 331, 10) * image_size,
        "Rotate": np.linspace(0, 30, 10),
        "Color": np.linspace(0.0, 0.9, 10),
        "Posterize": np.round(np.linspace(8, 4, 10), 0),
        "Solarize": np.linspace(256, 0, 10),
        "Contrast": np.linspace(0.0, 0.9, 10),
        "Sharpness": np.linspace(0.0, 0.9, 10),
        "Brightness": np.linspace(0.0, 0.9, 10),
    }
    return np.stack([ranges.get(op, np.zeros(10)) for op in OPS])


@functools.lru_cache(maxsize=16)
def _tables(device: torch.device) -> tuple[torch.Tensor, ...]:
    ops = torch.tensor([[_OP_INDEX[o[0]] for o in sp] for sp in CIFAR10_POLICY], device=device)
    probs = torch.tensor([[o[1] for o in sp] for sp in CIFAR10_POLICY], device=device)
    levels = torch.tensor([[o[2] for o in sp] for sp in CIFAR10_POLICY], device=device)
    mags = torch.tensor(seed_magnitudes(), dtype=torch.float64, device=device)
    signed = torch.tensor([op in SEED_SIGNED_OPS for op in OPS], device=device)
    return ops, probs, levels, mags, signed


def _dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _translate_source(
    tx: torch.Tensor, ty: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source pixels of ``Image.transform(AFFINE, (1, 0, tx, 0, 1, ty), NEAREST)``: Pillow's
    ``ImagingScaleAffine`` reads input pixel ``COORD(x + 0.5 + tx)``, in doubles. Flat
    indices (B, H * W) and whether each is inside (B, H, W)."""
    b = tx.shape[0]
    dt = _dtype(tx.device)
    xs = torch.arange(w, device=tx.device, dtype=dt).view(1, w) + 0.5 + tx.to(dt).view(b, 1)
    ys = torch.arange(h, device=tx.device, dtype=dt).view(1, h) + 0.5 + ty.to(dt).view(b, 1)
    xin = torch.where(xs < 0, -1.0, torch.floor(xs)).to(torch.int64)  # COORD: -1 below 0
    yin = torch.where(ys < 0, -1.0, torch.floor(ys)).to(torch.int64)
    inside = ((yin >= 0) & (yin < h)).view(b, h, 1) & ((xin >= 0) & (xin < w)).view(b, 1, w)
    src = yin.clamp(0, h - 1).view(b, h, 1) * w + xin.clamp(0, w - 1).view(b, 1, w)
    return src.view(b, h * w), inside


def _cubic(v1: torch.Tensor, v2: torch.Tensor, v3: torch.Tensor, v4: torch.Tensor, d):
    """Pillow's BICUBIC macro (cubic convolution, a = -1)."""
    p2 = -v1 + v3
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def _shear_bicubic(xf: torch.Tensor, m: torch.Tensor, fill: Fill) -> torch.Tensor:
    """``Image.transform(AFFINE, m, BICUBIC, fillcolor)`` per image, ``m`` (B, 2, 3)."""
    b, c, h, w = xf.shape
    dt = _dtype(xf.device)
    m = m.to(dt)
    ys = torch.arange(h, device=xf.device, dtype=dt).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=xf.device, dtype=dt).view(1, 1, w) + 0.5

    def coef(i: int, j: int) -> torch.Tensor:
        return m[:, i, j].view(b, 1, 1)

    xin = coef(0, 0) * xs + coef(0, 1) * ys + coef(0, 2)  # (B, H, W), affine_transform
    yin = coef(1, 0) * xs + coef(1, 1) * ys + coef(1, 2)
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    xin, yin = xin - 0.5, yin - 0.5
    x0, y0 = torch.floor(xin), torch.floor(yin)
    dx, dy = (xin - x0).unsqueeze(1), (yin - y0).unsqueeze(1)  # (B, 1, H, W)
    x0, y0 = x0.to(torch.int64) - 1, y0.to(torch.int64) - 1
    img = xf.to(dt).reshape(b, c, h * w)

    def pixel(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        src = (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).view(b, 1, h * w)
        return img.gather(2, src.expand(b, c, h * w)).view(b, c, h, w)

    def row_value(row: torch.Tensor) -> torch.Tensor:
        v = [pixel(row, x0 + k) for k in range(4)]  # columns clamped (XCLIP)
        return _cubic(v[0], v[1], v[2], v[3], dx)

    values = [row_value(y0)]  # the first row is clamped (YCLIP)
    for k in (1, 2, 3):  # a later row outside the image repeats the value before it
        ok = ((y0 + k >= 0) & (y0 + k < h)).unsqueeze(1)
        values.append(torch.where(ok, row_value(y0 + k), values[-1]))
    v = _cubic(values[0], values[1], values[2], values[3], dy)
    v = torch.where(v <= 0, 0.0, torch.where(v >= 255, 255.0, torch.trunc(v)))
    out = v.to(torch.float32)
    return torch.where(inside.unsqueeze(1), out, _fill_values(fill, c, xf.device))


def _signed(mag: torch.Tensor, negate: torch.Tensor, signed: torch.Tensor) -> torch.Tensor:
    return torch.where(negate & signed, -mag, mag)


def seed_op_parameter(op: str, magnitude: torch.Tensor) -> torch.Tensor:
    """The value the seed hands Pillow for ``op`` given its signed ``magnitude`` (B,):
    the enhance factor ``1 + m`` for enhance ops, the magnitude itself otherwise."""
    return 1.0 + magnitude if op in _ENHANCE else magnitude


def apply_seed_op(
    x: torch.Tensor, op: str, magnitude: torch.Tensor, mask: torch.Tensor, fill: Fill = 128
) -> torch.Tensor:
    """The seed's ``op`` with its signed ``magnitude`` (B,) on the images of uint8 ``x``
    where ``mask`` (B,) is True (see the module docstring for what each op does). Give
    float64 magnitudes for results equal to Pillow's, which computes in doubles."""
    _check_batch(x)
    if op not in _OP_INDEX:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    op_id = torch.full((x.shape[0],), _OP_INDEX[op], device=x.device)
    mag = magnitude.to(device=x.device, dtype=_dtype(x.device))
    out = _apply_slot(x.to(torch.float32), op_id, mask.to(x.device), mag, (op,), fill)
    return out.to(torch.uint8)


def _apply_slot(
    xf: torch.Tensor,
    op_id: torch.Tensor,
    fires: torch.Tensor,
    mag: torch.Tensor,
    slot_ops: tuple[str, ...],
    fill: Fill,
) -> torch.Tensor:
    """One op per image (``op_id``, where ``fires``), with signed magnitudes ``mag``: one
    pass per family (tables, blends, nearest maps, bicubic shears) for the whole batch;
    images whose op is elsewhere get that family's identity."""
    b, c, h, w = xf.shape
    flat = xf.reshape(b * c, h * w).to(torch.int64)
    identity_lut = torch.arange(256, dtype=torch.float32, device=xf.device)
    lut = identity_lut
    factor, degenerate = torch.ones(b, device=xf.device), None
    src = torch.arange(h * w, device=xf.device).expand(b, h * w)
    inside = torch.ones(b, h, w, dtype=torch.bool, device=xf.device)
    shear = _identity_matrix(b, xf.device)
    sheared = torch.zeros(b, dtype=torch.bool, device=xf.device)
    for op in slot_ops:
        picked = op_id == _OP_INDEX[op]
        mask = fires & picked
        if op in ("TranslateX", "TranslateY", "Rotate"):
            if op == "Rotate":
                s_op, i_op = affine_source(_affine_matrix(op, mag, h, w), h, w)
            else:
                zero = torch.zeros_like(mag)
                t = (mag, zero) if op == "TranslateX" else (zero, mag)
                s_op, i_op = _translate_source(*t, h, w)
            src = torch.where(mask.view(-1, 1), s_op, src)
            inside = torch.where(mask.view(-1, 1, 1), i_op, inside)
        elif op in ("ShearX", "ShearY"):
            shear = torch.where(mask.view(-1, 1, 1), _affine_matrix(op, mag, h, w), shear)
            sheared = sheared | mask
        elif op in _BLEND_OPS:
            factor = torch.where(mask, seed_op_parameter(op, mag).to(torch.float32), factor)
            deg = _degenerate(xf, op)
            pick = picked.view(-1, 1, 1, 1)
            degenerate = deg if degenerate is None else torch.where(pick, deg, degenerate)
        else:
            param = seed_op_parameter(op, mag).to(torch.float32)
            lut = torch.where(mask.view(-1, 1, 1), _lut(xf, flat, op, param), lut)
    if lut is not identity_lut:
        xf = _apply_lut(lut, flat, xf.shape)
    if degenerate is not None:
        xf = _blend(degenerate, xf, factor)
    xf = gather_pixels(xf, src, inside, fill)
    if any(op in ("ShearX", "ShearY") for op in slot_ops):
        if xf.device.type == "cpu":  # only the sheared images (reading the mask is free here)
            idx = sheared.nonzero().flatten()
            if idx.numel():
                xf = xf.index_copy(0, idx, _shear_bicubic(xf[idx], shear[idx], fill))
        else:  # no host synchronisation on a GPU: every image, the identity map for most
            xf = torch.where(sheared.view(-1, 1, 1, 1), _shear_bicubic(xf, shear, fill), xf)
    return xf


# Per sub-policy slot: the op types occurring there (constants: no device reads).
_SLOT_OPS: tuple[tuple[str, ...], ...] = tuple(
    tuple(dict.fromkeys(sp[slot][0] for sp in CIFAR10_POLICY)) for slot in range(2)
)


def apply_seed_subpolicies(
    x: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None = None, fill: Fill = 128
) -> torch.Tensor:
    """Sub-policy ``idx[i]`` of the CIFAR-10 policy, the seed's way, on image ``i`` of ``x``.

    Per image and slot: the op fires when a uniform draw is below its probability, and a
    signed op negates its magnitude when a second draw is below 0.5 (one ``rand((2, 2,
    B))`` from ``generator``). The first ops of all images come before the second ones.
    """
    _check_batch(x)
    b = x.shape[0]
    dev = generator.device if generator is not None else x.device
    u = torch.rand((2, 2, b), generator=generator, device=dev).to(x.device)
    ops, probs, levels, mags, signed = _tables(x.device)
    idx = idx.to(device=x.device, dtype=torch.int64)
    xf = x.to(torch.float32)
    for slot in range(2):
        op_id = ops[idx, slot]
        fires = u[slot, 0] < probs[idx, slot]
        mag = _signed(mags[op_id, levels[idx, slot]], u[slot, 1] < 0.5, signed[op_id])
        xf = _apply_slot(xf, op_id, fires, mag, _SLOT_OPS[slot], fill)
    return xf.to(torch.uint8)


def seed_cifar10_autoaugment(
    x: torch.Tensor, generator: torch.Generator | None = None, fill: Fill = 128
) -> torch.Tensor:
    """The seed's CIFAR10Policy with an independent random sub-policy per image (uint8)."""
    _check_batch(x)
    idx = draw_subpolicies(x.shape[0], generator, x.device)
    return apply_seed_subpolicies(x, idx, generator, fill)
