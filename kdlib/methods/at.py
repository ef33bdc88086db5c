"""AT: activation-based attention transfer (Zagoruyko & Komodakis, ICLR 2017).

Per stage, the spatial attention map of a feature map f (N, C, H, W) is
``a = normalize(mean_c |f_c|^p)`` flattened to H*W values and L2-normalised per sample
(p = 2). As in the authors' code, the per-stage loss is the mean over the batch and the
H*W positions of the squared difference ``(a_s - a_t)^2``, and

    loss = CE + beta * sum_stages mean((a_s - a_t)^2),   beta = 1000,

as in the authors' ``cifar.py`` (``opt.beta * sum(loss_groups)``) and RepDistiller.

(The paper writes the unsquared norm ``||a_s - a_t||_2``; beta = 1000 was set for the
code's squared, averaged form, which we follow.) Features: each stage's output
(``feats["stages"]``: after the ReLU for the ResNets, the raw residual sum for WRNs, the
tensors the authors' WRN code used). Channel counts may differ (the map averages them
out), but stages are paired by index and their spatial sizes must match: we check that
up front rather than interpolate.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.methods._features import check_stages
from kdlib.methods.base import Distiller, Param, register_method


def attention_map(f: Tensor, p: float = 2.0) -> Tensor:
    """L2-normalised spatial attention map ``mean_c |f|^p``, flattened to (N, H*W)."""
    return F.normalize(f.float().abs().pow(p).mean(dim=1).flatten(1), p=2, dim=1)


def at_loss(student: Tensor, teacher: Tensor, p: float = 2.0) -> Tensor:
    """Mean squared difference of the two attention maps (over batch and positions)."""
    return (attention_map(student, p) - attention_map(teacher, p)).pow(2).mean()


@register_method
class AT(Distiller):
    """CE + beta * sum over stages of the attention-map loss."""

    name = "at"
    description = (
        "attention transfer (Zagoruyko & Komodakis 2017): CE + 1000 * sum over stages of "
        "the squared distance of normalised attention maps"
    )
    needs_teacher = True
    revision = 1  # 1: CE + beta * sum, as the authors (was beta / 2)
    params = {
        "beta": Param(1000.0, "weight of the attention loss", lambda v: v >= 0, "a number >= 0"),
        "p": Param(2.0, "exponent of |f| in the attention map", lambda v: v > 0, "a number > 0"),
    }

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        check_stages(cls.name, cfg, spatial=True)

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, s_feats = self.student(images, features=True)
        _, t_feats = self.teacher_features(images)
        p = self.hparams["p"]
        total = sum(
            at_loss(s, t, p) for s, t in zip(s_feats["stages"], t_feats["stages"], strict=True)
        )
        return logits, {
            "ce": F.cross_entropy(logits, labels),
            "at": self.hparams["beta"] * total,
        }

    def record(self) -> dict[str, Any]:
        return {**super().record(), "features": "stage outputs", "form": "authors' code"}
