"""NOKD: the student trained on labels alone, the baseline every method is compared to."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlib.methods.base import Distiller, register_method


@register_method
class NoKD(Distiller):
    """Cross-entropy on the labels; any teacher given is ignored."""

    name = "nokd"
    description = "baseline: cross-entropy on the labels only, no teacher"

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(images)
        return logits, {"ce": F.cross_entropy(logits, labels)}
