"""Batched augmentation on uint8 tensors: random crop with zero padding and horizontal flip.

The whole batch is done with one pad and one gather, with per-sample offsets and flips,
so it runs at the same speed on a GPU whatever the batch size, with no Python loop over
images. Equivalent in distribution to torchvision's RandomCrop(32, padding=4) followed by
RandomHorizontalFlip(0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

Stat = Sequence[float] | np.ndarray | torch.Tensor
Affine = tuple[torch.Tensor, torch.Tensor]
"""``(shift, scale)`` of ``normalize``: ``x -> (x - shift) * scale``, see normalize_affine."""


def crop_flip(
    x: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    flip: torch.Tensor,
    padding: int = 4,
    *,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Crop image ``i`` of ``x`` (B, C, H, W) at top-left ``(dy[i], dx[i])`` of the image
    padded with ``padding`` zeros, then mirror it left-right where ``flip[i]``.

    The deterministic core of ``random_crop_flip``: ``dy``, ``dx`` are integer (B,) tensors
    in ``[0, 2 * padding]``, ``flip`` a bool (B,) tensor, on any device. Returns a new tensor
    of ``x``'s shape, dtype and device in ``memory_format`` (``torch.channels_last`` is
    free: the gather produces that layout).
    """
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    b, _, h, w = x.shape
    dy, dx, flip = dy.to(x.device), dx.to(x.device), flip.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = torch.arange(w, device=x.device).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indices around a slice: result is (B, H, W, C); back to (B, C, H, W).
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)


def random_crop_flip(
    x: torch.Tensor,
    padding: int = 4,
    generator: torch.Generator | None = None,
    *,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Crop each image of ``x`` (B, C, H, W) at its own random offset from the image padded
    with ``padding`` zeros, and flip it horizontally with probability 1/2.

    Random numbers come from ``generator`` (on any device) or the global RNG of
    ``x.device``: one ``randint`` of the (2, B) offsets, then one ``rand`` of B flip draws
    (< 0.5 flips); ``crop_flip`` does the rest. Returns a new tensor of ``x``'s shape, dtype
    and device, in ``memory_format``.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    b = x.shape[0]
    dev = generator.device if generator is not None else x.device
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=dev)
    flip = torch.rand(b, generator=generator, device=dev) < 0.5
    return crop_flip(x, offsets[0], offsets[1], flip, padding, memory_format=memory_format)


def _stat(v: Stat) -> torch.Tensor:
    t = v if torch.is_tensor(v) else torch.as_tensor(np.asarray(v, dtype=np.float32))
    return t.to(torch.float32).view(-1, 1, 1)


def normalize_affine(mean: Stat, std: Stat, device: str | torch.device | None = None) -> Affine:
    """``(mean * 255, 1 / (std * 255))`` as float32 (C, 1, 1) tensors on ``device``.

    The constants of ``normalize``; compute them once and pass them as its ``affine``.
    They are computed in float32 where ``mean`` and ``std`` live (the CPU for lists and
    arrays) and then moved, so every path that uses them (the device loop, the classic
    per-image path) normalizes bit for bit alike. ``device=None`` leaves them there.
    """
    m, s = _stat(mean), _stat(std)
    shift, scale = m * 255.0, 1.0 / (s * 255.0)
    if device is None:
        return shift, scale
    return shift.to(device), scale.to(device)


def normalize(
    x: torch.Tensor,
    mean: Stat | None = None,
    std: Stat | None = None,
    dtype: torch.dtype = torch.float32,
    *,
    affine: Affine | None = None,
) -> torch.Tensor:
    """Map uint8 pixels (B, C, H, W) to ``(x / 255 - mean) / std`` per channel, as ``dtype``.

    Computed as ``(x - shift) * scale`` in float32 with ``(shift, scale)`` from
    normalize_affine (pass them as ``affine`` to skip recomputing them for every batch,
    instead of ``mean`` and ``std``), and cast at the end, so half-precision outputs lose
    nothing extra. Keeps ``x``'s memory layout (e.g. channels_last).
    """
    if affine is None:
        if mean is None or std is None:
            raise ValueError("normalize needs mean and std, or affine")
        affine = normalize_affine(mean, std)
    elif mean is not None or std is not None:
        raise ValueError("normalize takes mean and std, or affine, not both")
    shift, scale = (t.to(x.device) for t in affine)
    out = (x.to(torch.float32) - shift) * scale
    return out if dtype == torch.float32 else out.to(dtype)
