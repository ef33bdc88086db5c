"""KD: Hinton et al. (2015) knowledge distillation, as in the seed paper (T=5, lambda=0.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlib.methods.base import Distiller, Param, register_method


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), averaged over the batch.

    The T^2 factor keeps the soft-target gradients on the scale of the hard-label ones.
    """
    log_p_student = F.log_softmax(student_logits.float() / T, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / T, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (T * T)


def kd_terms(
    logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, T: float, lam: float
) -> dict[str, torch.Tensor]:
    """Hinton KD's two weighted terms: ``ce`` = (1-lambda)*CE, ``kd`` = lambda*T^2*KL."""
    return {
        "ce": (1.0 - lam) * F.cross_entropy(logits, labels),
        "kd": lam * kd_loss(logits, teacher_logits, T),
    }


@register_method
class KD(Distiller):
    """loss = (1 - lambda) * CE(student, labels) + lambda * T^2 * KL(teacher/T || student/T)."""

    name = "kd"
    description = "Hinton KD: (1-lambda)*CE + lambda*T^2*KL of softened logits (T=5, lambda=0.5)"
    needs_teacher = True
    params = {
        "T": Param(5.0, "softmax temperature", lambda v: v > 0, "a number > 0"),
        "lambda": Param(
            0.5, "weight of the distillation term", lambda v: 0.0 <= v <= 1.0, "0 <= lambda <= 1"
        ),
    }

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        T, lam = self.hparams["T"], self.hparams["lambda"]
        logits = self.student(images)
        return logits, kd_terms(logits, self.teacher_logits(images), labels, T, lam)
