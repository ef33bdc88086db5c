"""TRIPLET: KD plus a cosine-embedding loss between student and teacher logits.

The seed paper's ``TripletTrainer`` (despite the name it has no triplets): PyTorch's
``CosineEmbeddingLoss`` with target 1, i.e. the batch mean of 1 - cos(student, teacher)
on the raw logits, which pulls the student's logit vector towards the teacher's direction.

``variant=original`` (default): (1 - lambda) CE + lambda T^2 KL + weight * (1 - cos); the
default ``weight=0.5`` is the weight the seed code gives the term (1 - lambda at 0.5).
``variant=seed``: the seed code has the CE line commented out, so its loss is
(1 - lambda) (1 - cos) + lambda T^2 KL, with no label term (``weight`` is then unused).
No author's definition exists for this method (the seed README promises a triplet loss
with the student as the negative example; no commit implements one), so ``original`` is
kdlib's own construction: the seed's cosine term added to KD, which keeps its CE.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kdlib.methods.base import Distiller, Param, register_method, variant_param
from kdlib.methods.kd import KD, kd_loss, kd_terms


def cosine_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """``CosineEmbeddingLoss`` with target 1: mean over the batch of 1 - cos(s, t)."""
    cos = F.cosine_similarity(student_logits.float(), teacher_logits.float(), dim=1)
    return (1.0 - cos).mean()


@register_method
class Triplet(Distiller):
    """KD plus ``weight`` * (1 - cos(student logits, teacher logits))."""

    name = "triplet"
    description = "KD + weight*(1 - cos(student, teacher logits)) (seed code: CosineEmbeddingLoss)"
    needs_teacher = True
    params = {
        **KD.params,
        "weight": Param(0.5, "weight of the cosine term", lambda v: v >= 0, "a number >= 0"),
        "variant": variant_param("the cosine term, weighted 1-lambda, replaces CE"),
    }

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        T, lam = self.hparams["T"], self.hparams["lambda"]
        logits = self.student(images)
        teacher_logits = self.teacher_logits(images)
        cos = cosine_loss(logits, teacher_logits)
        kd = lam * kd_loss(logits, teacher_logits, T)
        if self.hparams["variant"] == "seed":
            return logits, {"cosine": (1.0 - lam) * cos, "kd": kd}
        return logits, {
            **kd_terms(logits, teacher_logits, labels, T, lam),
            "cosine": self.hparams["weight"] * cos,
        }

    def record(self) -> dict[str, Any]:
        variant = (
            "seed code: (1-lambda)*(1-cos) + lambda*T^2*KL, no CE"
            if self.hparams["variant"] == "seed"
            else "(1-lambda)*CE + lambda*T^2*KL + weight*(1-cos)"
        )
        return {**super().record(), "variant": self.hparams["variant"], "loss": variant}
