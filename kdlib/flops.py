"""Multiply-accumulates per image of a model, for the arithmetic lower bound of a step.

Counted with forward hooks on convolutions and linear layers (the rest is noise for these
nets). A training step costs about 3x the forward (forward + two backward products) for
the student, and 1x the forward for a frozen teacher.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def macs_per_image(model: nn.Module, image_size: int = 32) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on one image."""
    total = 0

    def conv_hook(module: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += output.numel() * k

    def linear_hook(module: nn.Linear, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def training_flops_per_image(student: nn.Module, teacher: nn.Module | None = None) -> int:
    """FLOPs (2 per MAC) of one training image: 3 student passes + 1 teacher forward."""
    flops = 3 * 2 * macs_per_image(student)
    if teacher is not None:
        flops += 2 * macs_per_image(teacher)
    return flops
