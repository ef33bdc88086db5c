"""AutoAugment's CIFAR-10 policy as batched uint8 tensor operations, one sub-policy per image.

UDA needs AutoAugment (Cubuk et al., 2019) with an independent sub-policy per image, as the
original TensorFlow code does. kornia and torchvision's v2 transforms draw one sub-policy for
the whole batch, and a Python loop over images is far too slow inside a GPU training step.
Here every op works on the whole batch with per-sample magnitudes and a per-sample mask,
with no host synchronisation (no ``.item()``, no branching on tensor values). Per sub-policy
slot, images whose ops differ still share one pass per family: one gather through per-image
look-up tables (Invert, Solarize, Posterize, Brightness, Contrast, AutoContrast, Equalize),
one gather through per-image affine maps (Rotate, Shear, Translate) and one blend (Color,
Sharpness); images not concerned get the identity.

Each op reproduces Pillow's implementation (``ImageOps``, ``ImageEnhance``,
``Image.transform``), which is what the original code calls; tests compare against Pillow.

Magnitude levels 0..9 map to op parameters as in the original code
(``augmentation_transforms.py`` of tensorflow/models research/autoaugment, which UDA reuses),
with ``int_parameter(level, m) = int(level * m / 10)`` and
``float_parameter(level, m) = level * m / 10``:

=============================  ============================================================
Rotate                         ``int_parameter(level, 30)`` degrees (level 2 -> 6), random sign
ShearX, ShearY                 ``float_parameter(level, 0.3)`` (level 9 -> 0.27), random sign,
                               sheared about the top-left corner like the original
TranslateX, TranslateY         ``int_parameter(level, 10)`` pixels, absolute (level 9 -> 9 px,
                               not scaled by image size), random sign
Color, Contrast, Brightness,   enhance factor ``float_parameter(level, 1.8) + 0.1`` in
Sharpness                      0.1..1.72, no sign (as the original)
Posterize                      keep ``4 - int_parameter(level, 4)`` bits (level 7 -> 2 bits).
                               This is what the original code does; the paper's table says
                               4..8 bits and torchvision keeps 5 bits at level 7.
Solarize                       invert pixels ``>= 256 - int_parameter(level, 256)``
                               (level 2 -> 205, level 8 -> 52)
Invert, AutoContrast,          no magnitude
Equalize
=============================  ============================================================

Geometric ops fill uncovered pixels with ``fill`` (default 128 gray, as the widely used
PyTorch port of AutoAugment does; the TF code fills with the dataset mean, which is
``fill=(125, 123, 114)`` for CIFAR-10) and sample the nearest pixel exactly as Pillow's
16.16 fixed-point affine transform does, through per-image integer source indices and one
gather.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

# The 25 sub-policies of the AutoAugment paper's CIFAR-10 policy (Cubuk et al., "AutoAugment:
# Learning Augmentation Strategies from Data", CVPR 2019, appendix table "Policy found on
# reduced CIFAR-10"); the same table as torchvision's AutoAugmentPolicy.CIFAR10 and the first
# 25 entries of the TF code's good_policies(). Entries are (op, probability, level 0..9); the
# levels of Invert, AutoContrast and Equalize are the paper's and are ignored.
CIFAR10_POLICY: tuple[tuple[tuple[str, float, int], tuple[str, float, int]], ...] = (
    (("Invert", 0.1, 7), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 5), ("Equalize", 0.5, 1)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 3)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 8), ("Equalize", 0.6, 4)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 6)),
    (("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, 8), ("Invert", 0.1, 3)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1)),
)

OPS: tuple[str, ...] = (
    "Invert",
    "Contrast",
    "Rotate",
    "TranslateX",
    "TranslateY",
    "Sharpness",
    "ShearX",
    "ShearY",
    "AutoContrast",
    "Equalize",
    "Posterize",
    "Color",
    "Brightness",
    "Solarize",
)
SIGNED_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"})
_OP_INDEX = {name: i for i, name in enumerate(OPS)}
# Three families, each applied to a whole batch in one pass whatever op each image has:
# per-channel look-up tables (one gather), affine maps (one gather) and blends with a
# non-constant degenerate image (one blend).
_GEOMETRIC = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"})
_LUT_OPS = frozenset(
    {"Invert", "Solarize", "Posterize", "Brightness", "Contrast", "AutoContrast", "Equalize"}
)
_BLEND_OPS = frozenset({"Color", "Sharpness"})

Fill = int | Sequence[int]


def _int_parameter(level: int, maxval: int) -> int:
    return int(level * maxval / 10)


def _float_parameter(level: int, maxval: float) -> float:
    return float(level) * maxval / 10


def _magnitude(op: str, level: int) -> float:
    """The original TF code's parameter of ``op`` at ``level``, before any random sign."""
    if op == "Rotate":
        return float(_int_parameter(level, 30))
    if op in ("ShearX", "ShearY"):
        return _float_parameter(level, 0.3)
    if op in ("TranslateX", "TranslateY"):
        return float(_int_parameter(level, 10))
    if op in ("Color", "Contrast", "Brightness", "Sharpness"):
        return _float_parameter(level, 1.8) + 0.1
    if op == "Posterize":
        return float(4 - _int_parameter(level, 4))
    if op == "Solarize":
        return float(256 - _int_parameter(level, 256))
    return 0.0  # Invert, AutoContrast, Equalize


# (14 ops, 10 levels), computed in Python doubles like the original and then rounded to
# float32 once, as Pillow receives its enhance factors.
_MAGNITUDES: tuple[tuple[float, ...], ...] = tuple(
    tuple(_magnitude(op, level) for level in range(10)) for op in OPS
)


def level_to_magnitude(op: str, level: torch.Tensor) -> torch.Tensor:
    """Map integer levels 0..9 (any shape) to ``op``'s unsigned parameter, float32, as the
    original TF code does (see the module docstring); zeros for ops without a magnitude."""
    if op not in _OP_INDEX:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    table = _device_tables(level.device)[3]
    return table[_OP_INDEX[op]][level.to(torch.int64)]


# ---------------------------------------------------------------------------------------
# Cached per-device constants: building them with torch.tensor on a GPU would be a
# blocking host-to-device copy on every call.
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _device_tables(
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CIFAR10_POLICY's (25, 2) op indices, probabilities and levels, and _MAGNITUDES."""
    ops = torch.tensor([[_OP_INDEX[o[0]] for o in sp] for sp in CIFAR10_POLICY], device=device)
    probs = torch.tensor([[o[1] for o in sp] for sp in CIFAR10_POLICY], device=device)
    levels = torch.tensor([[o[2] for o in sp] for sp in CIFAR10_POLICY], device=device)
    mags = torch.tensor(_MAGNITUDES, dtype=torch.float32, device=device)
    return ops, probs, levels, mags


@functools.lru_cache(maxsize=16)
def _fill_tensor(fill: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(fill, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def _fill_values(fill: Fill, channels: int, device: torch.device) -> torch.Tensor:
    vals = (int(fill),) * channels if isinstance(fill, int) else tuple(int(v) for v in fill)
    if len(vals) != channels:
        raise ValueError(f"fill needs 1 or {channels} values, got {len(vals)}")
    return _fill_tensor(vals, device)


# ---------------------------------------------------------------------------------------
# The ops. Images are float32 tensors holding the integers 0..255 between ops: every op is
# exact in float32 (intermediate integers stay below 2**24), and a pass converts to and
# from uint8 once rather than once per op.
# ---------------------------------------------------------------------------------------


def _coord_dtype(device: torch.device) -> torch.dtype:
    """float64 for the affine coefficients (as Pillow uses), except where it is missing."""
    return torch.float32 if device.type == "mps" else torch.float64


def _affine(xf: torch.Tensor, m: torch.Tensor, fill: Fill) -> torch.Tensor:
    """Resample each image through its own (2, 3) inverse map ``m`` in Pillow's coordinates.

    Reproduces ``Image.transform(..., AFFINE, m, NEAREST, fillcolor=fill)`` exactly: Pillow
    rounds the coefficients to 16.16 fixed point (with the pixel-centre offset folded into
    the constant term) and output pixel (x, y) reads input pixel ``(a2 + x*a0 + y*a1) >> 16``
    (and likewise for rows), or ``fill`` outside the image. We do the same integer
    arithmetic per image, then one gather. Float sampling grids (affine_grid + grid_sample)
    cannot reproduce this where a source point falls on a pixel boundary, e.g. shear 0.12
    on row 12: 2.5% of pixels came from the neighbouring pixel. (Pillow computes pure
    translations in doubles instead, which agrees for the integer shifts used here.)
    The identity map returns the image exactly.
    """
    b, c, h, w = xf.shape
    src, inside = affine_source(m, h, w)
    return gather_pixels(xf, src, inside, fill)


def affine_source(m: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's nearest-neighbour source pixel of every output pixel under the inverse maps
    ``m`` (B, 2, 3), in its 16.16 fixed point (see ``_affine``): flat indices (B, H * W)
    into an H x W image, and whether each falls inside it (B, H, W)."""
    b = m.shape[0]
    m = m.to(_coord_dtype(m.device))

    def fix(v: torch.Tensor) -> torch.Tensor:
        return torch.floor(v * 65536.0 + 0.5).to(torch.int64).view(-1, 1, 1)

    a0, a1, a3, a4 = fix(m[:, 0, 0]), fix(m[:, 0, 1]), fix(m[:, 1, 0]), fix(m[:, 1, 1])
    a2 = fix(m[:, 0, 2] + m[:, 0, 0] * 0.5 + m[:, 0, 1] * 0.5)
    a5 = fix(m[:, 1, 2] + m[:, 1, 0] * 0.5 + m[:, 1, 1] * 0.5)
    ys = torch.arange(h, device=m.device).view(1, h, 1)
    xs = torch.arange(w, device=m.device).view(1, 1, w)
    xin = torch.div(a2 + ys * a1 + xs * a0, 65536, rounding_mode="floor")  # (B, H, W)
    yin = torch.div(a5 + ys * a4 + xs * a3, 65536, rounding_mode="floor")
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    src = (yin.clamp(0, h - 1) * w + xin.clamp(0, w - 1)).view(b, h * w)
    return src, inside


def gather_pixels(
    xf: torch.Tensor, src: torch.Tensor, inside: torch.Tensor, fill: Fill
) -> torch.Tensor:
    """Output pixel j of image i is input pixel ``src[i, j]`` (flat), or ``fill`` where
    ``inside`` (B, H, W) is False: one gather for the whole batch."""
    b, c, h, w = xf.shape
    out = xf.reshape(b, c, h * w).gather(2, src.view(b, 1, h * w).expand(b, c, h * w))
    return torch.where(inside.unsqueeze(1), out.view(b, c, h, w), _fill_values(fill, c, xf.device))


def _affine_matrix(op: str, magnitude: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per-sample (B, 2, 3) inverse maps, in Pillow's pixel coordinates, of a geometric op."""
    mag = magnitude.to(_coord_dtype(magnitude.device))
    one, zero = torch.ones_like(mag), torch.zeros_like(mag)
    if op == "Rotate":
        # Image.rotate(deg): counter-clockwise by deg about the centre (w / 2, h / 2).
        rad = mag * (math.pi / 180.0)
        cos, sin = torch.cos(rad), torch.sin(rad)
        cx, cy = w / 2.0, h / 2.0
        rows = [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy]
    elif op == "ShearX":
        rows = [one, mag, zero, zero, one, zero]
    elif op == "ShearY":
        rows = [one, zero, zero, mag, one, zero]
    elif op == "TranslateX":
        rows = [one, zero, mag, zero, one, zero]
    elif op == "TranslateY":
        rows = [one, zero, zero, zero, one, mag]
    else:
        raise ValueError(f"{op!r} is not a geometric op")
    return torch.stack(rows, dim=1).view(-1, 2, 3)


def _identity_matrix(b: int, device: torch.device) -> torch.Tensor:
    return torch.eye(2, 3, dtype=_coord_dtype(device), device=device).expand(b, 2, 3)


def _grayscale(xf: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L, ``(R*299 + G*587 + B*114) / 1000`` in its 16-bit fixed point with
    rounding; (B, 1, H, W). The weighted sum stays below 2**24, so float32 is exact."""
    acc = xf[:, 0:1] * 19595.0 + xf[:, 1:2] * 38470.0 + xf[:, 2:3] * 7471.0 + 32768.0
    return torch.floor(acc * (1.0 / 65536.0))


def _smooth(xf: torch.Tensor) -> torch.Tensor:
    """Pillow's ImageFilter.SMOOTH: 3x3 kernel [[1,1,1],[1,5,1],[1,1,1]] / 13, rounded,
    border pixels kept. Summed from shifted slices (a 3x3 box sum plus 4x the centre),
    which on CPU is many times faster than a depthwise conv2d."""
    h, w = xf.shape[2:]
    if h < 3 or w < 3:
        return xf
    rows = xf[:, :, :-2] + xf[:, :, 1:-1] + xf[:, :, 2:]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    out = xf.clone()
    out[:, :, 1:-1, 1:-1] = torch.round((box + 4.0 * xf[:, :, 1:-1, 1:-1]) * (1.0 / 13.0))
    return out


def _blend(degenerate: torch.Tensor, xf: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Pillow's Image.blend, all ImageEnhance does after making its degenerate image:
    ``degenerate + factor * (x - degenerate)`` in float32, clipped, truncated. Broadcasts
    ``factor`` (B,) over the rest; factor 1 returns ``x`` exactly."""
    f = factor.to(torch.float32).view((-1,) + (1,) * (xf.ndim - 1))
    return (degenerate + f * (xf - degenerate)).clamp_(0, 255).trunc_()


def _histogram(flat: torch.Tensor) -> torch.Tensor:
    """Per-row 256-bin histograms (rows, 256) of int64 pixel values ``flat`` (rows, pixels).

    scatter_add_ rather than bincount, which reads the maximum back to the host."""
    hist = torch.zeros(flat.shape[0], 256, dtype=torch.int64, device=flat.device)
    ones = torch.ones(1, 1, dtype=torch.int64, device=flat.device).expand_as(flat)
    return hist.scatter_add_(1, flat, ones)


def _equalize_lut(flat: torch.Tensor) -> torch.Tensor:
    """ImageOps.equalize's table for each row (an image channel) of ``flat``: (rows, 256).

    Pillow: ``step = (pixels - count of the highest used value) // 255``; the table maps
    ``i`` to ``(step // 2 + pixels below i) // step`` (clipped to 255 when applied), or is
    the identity when the channel uses a single value or ``step`` is 0.
    """
    hist = _histogram(flat)
    last = hist.gather(1, flat.amax(dim=1, keepdim=True))
    step = (flat.shape[1] - last) // 255
    below = hist.cumsum(dim=1) - hist
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp_(max=255)
    identity = ((hist > 0).sum(dim=1, keepdim=True) <= 1) | (step == 0)
    return torch.where(identity, torch.arange(256, device=flat.device), lut).to(torch.float32)


def _lut(xf: torch.Tensor, flat: torch.Tensor, op: str, magnitude: torch.Tensor) -> torch.Tensor:
    """The (B, C, 256) per-channel table of a look-up-table op, for every image of ``xf``.

    ``flat`` is ``xf`` as int64 (B * C, H * W); the tables' values are float32 integers.
    """
    b, c = xf.shape[:2]
    v = torch.arange(256, dtype=torch.float32, device=xf.device).expand(b, c, 256)
    mag = magnitude.to(torch.float32).view(-1, 1, 1)
    if op == "Invert":
        return 255.0 - v
    if op == "Solarize":
        return torch.where(v >= mag, 255.0 - v, v)
    if op == "Posterize":
        # Keeping the top ``bits`` bits is flooring to a multiple of 2 ** (8 - bits).
        q = torch.exp2(8.0 - mag.round().clamp(0, 8))
        return torch.floor(v / q) * q
    if op == "Brightness":
        return _blend(torch.zeros_like(v), v, magnitude)
    if op == "Contrast":
        # Blend with a constant image of int(mean(L) + 0.5), in exact integers.
        h, w = xf.shape[2:]
        total = _grayscale(xf).sum(dim=(1, 2, 3), dtype=torch.int64)
        mean = ((2 * total + h * w) // (2 * h * w)).to(torch.float32).view(b, 1, 1)
        return _blend(mean.expand_as(v), v, magnitude)
    if op == "AutoContrast":
        # ImageOps.autocontrast (no cutoff) stretches each channel's [lo, hi] onto [0, 255]
        # with int(v * scale + offset), scale = 255 / (hi - lo), offset = -lo * scale, in
        # doubles: the same double arithmetic gives the same table (its rounding makes a
        # few exact integers land one lower). Constant channels are left alone.
        dt = _coord_dtype(xf.device)
        lo = xf.amin(dim=(2, 3)).unsqueeze(-1).to(dt)
        span = xf.amax(dim=(2, 3)).unsqueeze(-1).to(dt) - lo
        # (Not 255.0 / span: a scalar over a tensor is computed as 255 * (1 / span).)
        scale = torch.full_like(span, 255.0) / span.clamp(min=1.0)
        out = (v.to(dt) * scale + -lo * scale).trunc_().clamp_(0, 255).to(torch.float32)
        return torch.where(span > 0, out, v)
    if op == "Equalize":
        return _equalize_lut(flat).view(b, c, 256)
    raise ValueError(f"{op!r} is not a look-up-table op")


def _apply_lut(lut: torch.Tensor, flat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return lut.reshape(-1, 256).gather(1, flat).view(shape)


def _degenerate(xf: torch.Tensor, op: str) -> torch.Tensor:
    """The non-constant image ImageEnhance blends with: grayscale (Color) or smoothed."""
    if op == "Color":
        return _grayscale(xf).expand_as(xf)
    if op == "Sharpness":
        return _smooth(xf)
    raise ValueError(f"{op!r} is not a blend op")


def _check_batch(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 (B, C, H, W) batch, got {x.dtype} {tuple(x.shape)}")


def apply_op(
    x: torch.Tensor,
    op: str,
    magnitude: torch.Tensor,
    mask: torch.Tensor,
    fill: Fill = 128,
) -> torch.Tensor:
    """Apply ``op`` to the images of uint8 ``x`` (B, 3, H, W) where ``mask`` (B,) is True.

    ``magnitude`` (B,) is the op's own parameter, sign included (see level_to_magnitude):
    degrees (Rotate, counter-clockwise), shear factor, pixels (Translate; positive moves the
    content left / up, as Pillow's AFFINE data does), enhance factor (Color, Contrast,
    Brightness, Sharpness), bits kept (Posterize), threshold (Solarize); ignored by Invert,
    AutoContrast and Equalize. Other images come back unchanged: they get the identity
    (table, matrix, or blend factor 1), so no tensor value steers Python control flow.
    Geometric ops work for any channel count, the colour ops need RGB.
    """
    _check_batch(x)
    if op not in _OP_INDEX:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    b, c, h, w = x.shape
    mask = mask.to(x.device)
    mag = magnitude.to(device=x.device, dtype=torch.float32)
    xf = x.to(torch.float32)
    if op in _GEOMETRIC:
        m = torch.where(
            mask.view(-1, 1, 1), _affine_matrix(op, mag, h, w), _identity_matrix(b, x.device)
        )
        out = _affine(xf, m, fill)
    elif op in _BLEND_OPS:
        out = _blend(_degenerate(xf, op), xf, torch.where(mask, mag, 1.0))
    else:
        flat = x.reshape(b * c, h * w).to(torch.int64)
        identity = torch.arange(256, dtype=torch.float32, device=x.device)
        lut = torch.where(mask.view(-1, 1, 1), _lut(xf, flat, op, mag), identity)
        out = _apply_lut(lut, flat, x.shape)
    return out.to(torch.uint8)


def draw_subpolicies(
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One sub-policy index per image, uniform over the 25, as int64 (B,) on ``device``.

    Drawn on the generator's device when one is given (then moved to ``device``).
    """
    dev = generator.device if generator is not None else device
    idx = torch.randint(0, len(CIFAR10_POLICY), (batch_size,), generator=generator, device=dev)
    return idx if device is None else idx.to(device)


# Per sub-policy slot (first op, second op): the op types occurring there, in table order.
_SLOT_OPS: tuple[tuple[str, ...], ...] = tuple(
    tuple(dict.fromkeys(sp[slot][0] for sp in CIFAR10_POLICY)) for slot in range(2)
)


def apply_subpolicies(
    x: torch.Tensor,
    idx: torch.Tensor,
    generator: torch.Generator | None = None,
    fill: Fill = 128,
) -> torch.Tensor:
    """Apply sub-policy ``idx[i]`` of CIFAR10_POLICY to image ``i`` of uint8 ``x``.

    Each of its two ops fires with its own probability and signed ops take a random sign,
    all drawn independently per image from ``generator`` (or ``x.device``'s global RNG) as
    one ``rand((2, 2, B))``: [slot, 0] < probability fires, [slot, 1] < 0.5 negates. The
    first ops of all images are applied before the second ones. Within a slot each image
    has one op, so per family one pass serves every image: the table ops share one gather
    with per-image tables, the geometric ops one gather with per-image affine maps, Color
    and Sharpness one blend; images whose op is elsewhere (or does not fire) get the
    identity. Same result as applying each op with apply_op.
    """
    _check_batch(x)
    b, c, h, w = x.shape
    dev = generator.device if generator is not None else x.device
    u = torch.rand((2, 2, b), generator=generator, device=dev).to(x.device)
    ops, probs, levels, mags = _device_tables(x.device)
    idx = idx.to(device=x.device, dtype=torch.int64)
    identity_lut = torch.arange(256, dtype=torch.float32, device=x.device)
    xf = x.to(torch.float32)
    for slot in range(2):
        op_id = ops[idx, slot]
        fires = u[slot, 0] < probs[idx, slot]
        mag = mags[op_id, levels[idx, slot]]  # (B,) each image's own op's magnitude
        signed = torch.where(u[slot, 1] < 0.5, -mag, mag)
        flat = xf.reshape(b * c, h * w).to(torch.int64)
        lut, mat = identity_lut, _identity_matrix(b, x.device)
        factor, degenerate = torch.ones_like(mag), None
        for op in _SLOT_OPS[slot]:
            mask = fires & (op_id == _OP_INDEX[op])
            if op in _GEOMETRIC:
                mat = torch.where(mask.view(-1, 1, 1), _affine_matrix(op, signed, h, w), mat)
            elif op in _BLEND_OPS:
                factor = torch.where(mask, mag, factor)
                deg = _degenerate(xf, op)
                picked = (op_id == _OP_INDEX[op]).view(-1, 1, 1, 1)
                degenerate = deg if degenerate is None else torch.where(picked, deg, degenerate)
            else:
                lut = torch.where(mask.view(-1, 1, 1), _lut(xf, flat, op, mag), lut)
        # Each image has at most one non-identity family, so the order does not matter.
        if lut is not identity_lut:
            xf = _apply_lut(lut, flat, xf.shape)
        if degenerate is not None:
            xf = _blend(degenerate, xf, factor)
        xf = _affine(xf, mat, fill)
    return xf.to(torch.uint8)


def cifar10_autoaugment(
    x: torch.Tensor, generator: torch.Generator | None = None, fill: Fill = 128
) -> torch.Tensor:
    """AutoAugment CIFAR-10 policy with an independent random sub-policy for each image.

    ``x`` is uint8 (B, 3, H, W) on any device; returns a new tensor of the same shape, dtype
    and device. Random numbers come from ``generator`` (on any device) when given: first
    the sub-policy indices, then the draws of apply_subpolicies.
    """
    _check_batch(x)
    idx = draw_subpolicies(x.shape[0], generator, x.device)
    return apply_subpolicies(x, idx, generator, fill)
