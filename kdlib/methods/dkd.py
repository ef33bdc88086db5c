"""DKD: decoupled knowledge distillation (Zhao et al., CVPR 2022), a modern logit baseline.

DKD splits KD's KL into TCKD, a binary KL over (target class, all others), and NCKD, a KL
over the non-target classes only (each softmax renormalised without the target), and
weights them separately: loss = ce_weight * CE + w(epoch) * (alpha * TCKD + beta * NCKD),
both KLs with the T^2 factor. w(epoch) = min(epoch / warmup, 1) ramps the KD terms up
linearly over the first ``warmup`` epochs (epochs counted from 1, as in the authors' code).
Defaults are the paper's CIFAR-100 setting: alpha=1, beta=8, T=4, warm-up 20 epochs, CE 1.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.methods.base import Distiller, Param, register_method


def _target_other_log_probs(
    logits: torch.Tensor, labels: torch.Tensor, T: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log of the binary (target, non-target) distribution (B, 2) and the log-softmax over
    the non-target classes (B, C-1), both of ``logits / T``, computed stably in log space."""
    z = logits.float() / T
    c = z.shape[1]
    # Indices of the non-target classes in order (a stable sort moves the target last);
    # gathers, unlike boolean indexing, need no host synchronisation on a GPU.
    other = torch.argsort(F.one_hot(labels, c), dim=1, stable=True)[:, : c - 1]
    z_target = z.gather(1, labels[:, None]).squeeze(1)  # (B,)
    z_other = z.gather(1, other)  # (B, C-1)
    log_total = torch.logsumexp(z, dim=1)
    log_binary = torch.stack([z_target, torch.logsumexp(z_other, dim=1)], dim=1)
    return log_binary - log_total[:, None], F.log_softmax(z_other, dim=1)


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    beta: float,
    T: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha * TCKD, beta * NCKD), each T^2 * KL(teacher || student) averaged over the batch."""
    s_bin, s_other = _target_other_log_probs(student_logits, labels, T)
    t_bin, t_other = _target_other_log_probs(teacher_logits, labels, T)
    tckd = F.kl_div(s_bin, t_bin, reduction="batchmean", log_target=True) * (T * T)
    nckd = F.kl_div(s_other, t_other, reduction="batchmean", log_target=True) * (T * T)
    return alpha * tckd, beta * nckd


@register_method
class DKD(Distiller):
    """ce_weight * CE + min(epoch/warmup, 1) * (alpha * TCKD + beta * NCKD)."""

    name = "dkd"
    description = "decoupled KD (Zhao+ 2022): CE + warm-up * (alpha*TCKD + beta*NCKD), T=4"
    needs_teacher = True
    params = {
        "alpha": Param(1.0, "weight of TCKD (target vs rest)", lambda v: v >= 0, "a number >= 0"),
        "beta": Param(8.0, "weight of NCKD (non-target classes)", lambda v: v >= 0, ">= 0"),
        "T": Param(4.0, "softmax temperature", lambda v: v > 0, "a number > 0"),
        "warmup": Param(20, "epochs of linear warm-up of the KD terms", lambda v: v >= 0, ">= 0"),
        "ce_weight": Param(1.0, "weight of the cross-entropy", lambda v: v >= 0, "a number >= 0"),
    }

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, **hparams: Any):
        super().__init__(student, teacher, **hparams)
        self.on_epoch_start(1)

    def on_epoch_start(self, epoch: int) -> None:
        """Set the warm-up factor min(epoch / warmup, 1) for this epoch (1-based)."""
        warmup = self.hparams["warmup"]
        self.warmup_factor = min(epoch / warmup, 1.0) if warmup > 0 else 1.0

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = self.hparams
        logits = self.student(images)
        teacher_logits = self.teacher_logits(images)
        tckd, nckd = dkd_loss(logits, teacher_logits, labels, h["alpha"], h["beta"], h["T"])
        return logits, {
            "ce": h["ce_weight"] * F.cross_entropy(logits, labels),
            "tckd": self.warmup_factor * tckd,
            "nckd": self.warmup_factor * nckd,
        }

    def record(self) -> dict[str, Any]:
        return {**super().record(), "warmup": "KD terms scaled by min(epoch / warmup, 1)"}
