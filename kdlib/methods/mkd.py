"""MKD: KD from several teachers at once (the seed paper's ``MultiTrainer``).

Default, as in the seed paper's code: loss = (1 - lambda) * CE + lambda * mean_i T^2 KL_i,
with KL_i = KL(softmax(teacher_i/T) || softmax(student/T)): the average of one KD term per
teacher. ``target=mean_probs`` instead distils the ensemble, one KL to the average of the
teachers' softened distributions (as in Hinton et al. 2015's ensembles and You et al. 2017).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.errors import KdlibError
from kdlib.methods.base import Distiller, Param, register_method
from kdlib.methods.kd import KD, kd_loss

TARGETS = ("mean_kl", "mean_probs")


def mean_probs_kd_loss(
    student_logits: torch.Tensor, teacher_logits: list[torch.Tensor], T: float
) -> torch.Tensor:
    """T^2 * KL(mean_i softmax(teacher_i/T) || softmax(student/T)), averaged over the batch."""
    p_mean = torch.stack([F.softmax(t.float() / T, dim=1) for t in teacher_logits]).mean(0)
    log_p_student = F.log_softmax(student_logits.float() / T, dim=1)
    return F.kl_div(log_p_student, p_mean, reduction="batchmean") * (T * T)


@register_method
class MKD(Distiller):
    """(1-lambda) CE + lambda * (mean over teachers of T^2 KL), teachers frozen."""

    name = "mkd"
    description = "multi-teacher KD: (1-lambda)*CE + lambda*mean_i T^2*KL_i over >= 2 teachers"
    needs_teacher = True
    multi_teacher = True
    params = {
        **KD.params,
        "target": Param(
            "mean_kl",
            "mean_kl: mean of per-teacher KLs (seed code); mean_probs: KL to the mean teacher",
            lambda v: v in TARGETS,
            " or ".join(TARGETS),
        ),
    }

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | list[nn.Module] | None = None,
        **hparams: Any,
    ):
        if isinstance(teacher, list | tuple):
            teacher = nn.ModuleList(teacher)
        super().__init__(student, teacher, **hparams)

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        n = len(cfg.teacher_names())
        if n < 2:
            raise KdlibError(
                f"method 'mkd' needs at least two teachers, got {n}: --teacher a,b "
                "(and --teacher-checkpoint pa,pb, or the teachers are trained first)"
            )

    def teachers(self) -> list[nn.Module]:
        """The teachers as a list (a single module counts as one teacher)."""
        assert self.teacher is not None
        if isinstance(self.teacher, nn.ModuleList):
            return list(self.teacher)
        return [self.teacher]

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        T, lam = self.hparams["T"], self.hparams["lambda"]
        logits = self.student(images)
        with torch.no_grad():
            teacher_logits = [t(images) for t in self.teachers()]
        if self.hparams["target"] == "mean_kl":
            kd = torch.stack([kd_loss(logits, t, T) for t in teacher_logits]).mean()
        else:
            kd = mean_probs_kd_loss(logits, teacher_logits, T)
        return logits, {
            "ce": (1.0 - lam) * F.cross_entropy(logits, labels),
            "kd": lam * kd,
        }

    def record(self) -> dict[str, Any]:
        return {**super().record(), "num_teachers": len(self.teachers())}
