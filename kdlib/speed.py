"""The switchable speed techniques of the training loop, resolved for one device.

Each can be turned off on its own so ``kdlib bench`` can measure what it contributes:
data resident on the device (the fast loop) vs a DataLoader (the classic loop), bf16
autocast, channels_last memory layout, torch.compile, and a fused (or foreach) optimizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from kdlib.config import TrainConfig


@dataclass(frozen=True)
class Speed:
    """Resolved speed settings of one run (recorded in its config as ``speed``)."""

    loop: str
    precision: str  # fp32 | bf16
    channels_last: bool
    compile: bool
    fused_optimizer: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_speed(cfg: TrainConfig, device: torch.device) -> Speed:
    """Fill in the ``auto`` settings: everything on for a GPU's fast loop, plain on a CPU."""
    gpu = device.type == "cuda"
    fast = cfg.loop == "fast"
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if gpu and fast else "fp32")
    channels_last = cfg.channels_last if cfg.channels_last is not None else (gpu and fast)
    return Speed(
        loop=cfg.loop,
        precision=precision,
        channels_last=bool(channels_last),
        compile=cfg.compile,
        fused_optimizer=gpu and fast,
    )


def make_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: TrainConfig, speed: Speed
) -> torch.optim.SGD:
    """The paper's SGD; one fused kernel per step on a GPU, else the foreach version."""
    kwargs: dict[str, Any] = {"fused": True} if speed.fused_optimizer else {"foreach": True}
    return torch.optim.SGD(
        list(params),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
        **kwargs,
    )


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` (BatchNorm parameters and losses stay float32), or nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
