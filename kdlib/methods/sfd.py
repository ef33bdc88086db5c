"""SFD: the seed paper's own "simple feature distillation" baseline (Ruffy & Chahal 2019).

Per stage, the student's and the teacher's feature maps are max-pooled to 1x1 (one value
per channel), and the largest distance between a student vector and its teacher vector
over the batch is added to the cross-entropy:

    loss = CE + beta * sum_stages max_n d(maxpool(s_n), maxpool(t_n))

``variant=original`` (default, the paper's description): features are each stage's
output before its final ReLU (``feats["preact"]``), and d is the Euclidean distance of
the pooled C-vectors, so each stage adds ``max_n ||s_n - t_n||_2``.

``variant=seed``, what the seed code computed when it ran (December 2019, PyTorch 1.3):
its ``get_layers`` also records the stem's conv and BN outputs (64 channels in every
paper ResNet), so five tensors are matched, and its ``F.pairwise_distance`` on the pooled
(N, C, 1, 1) tensors was ATen's ``norm(x1 - x2 + eps, 2, dim=1)``: the Euclidean norm
over the channels with ``eps = 1e-6`` added to the difference, ``max_n ||s_n - t_n +
1e-6||_2``. PyTorch moved that norm to the last axis in September 2021 (pytorch#64882);
on the (N, C, 1, 1) tensors, today's call gives ``max_n ||s_n - t_n + 1e-6||_inf``. kdlib's
seed variant computed that until revision 1, and its runs from before are other runs
(``method_revision``).

``beta=1`` as in the seed code. Stages are paired by index, so both models need the same
number of stages and, unless ``projection=true`` (a learned 1x1 conv, with bias, from
each student stage to the teacher's channels, applied before pooling, as the seed code's
unused ``build_transformers``; stages only), the same channel counts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.methods._features import check_seed_forward_support, check_stages
from kdlib.methods.base import Distiller, Param, register_method, variant_param

DISTANCES = ("l2", "seed")
SEED_EPS = 1e-6  # F.pairwise_distance's eps, added to the difference


def sfd_stage_loss(student: Tensor, teacher: Tensor, distance: str = "l2") -> Tensor:
    """Max over the batch of the distance between 1x1 max-pooled student/teacher features:
    Euclidean (``l2``), or ``seed``: Euclidean of the difference plus 1e-6, as the seed's
    ``F.pairwise_distance`` computed it on PyTorch 1.3."""
    s = F.adaptive_max_pool2d(student.float(), 1).flatten(1)
    t = F.adaptive_max_pool2d(teacher.float(), 1).flatten(1)
    diff = s - t
    if distance == "seed":
        diff = diff + SEED_EPS
    elif distance != "l2":
        raise ValueError(f"unknown distance {distance!r}; known: {', '.join(DISTANCES)}")
    return torch.linalg.vector_norm(diff, dim=1).max()


@register_method
class SFD(Distiller):
    """CE + beta * sum over stages of the batch-max distance of max-pooled features."""

    name = "sfd"
    description = (
        "simple feature distillation (seed paper): CE + per stage max over the batch of "
        "the distance of 1x1 max-pooled features"
    )
    needs_teacher = True
    params = {
        "beta": Param(1.0, "weight of the feature term", lambda v: v >= 0, "a number >= 0"),
        "variant": variant_param(
            "the stem's conv and BN outputs matched too, and 1e-6 added to each difference"
        ),
        "projection": Param(
            False,
            "learn a 1x1 conv from each student stage to the teacher's channel count",
            None,
            "true or false",
        ),
    }

    @classmethod
    def revision_for(cls, hparams: dict[str, Any]) -> int:
        # seed 1: PyTorch 1.3's pairwise_distance, the norm over the channels (was the
        # norm over the last, size-1 axis, as today's PyTorch computes the same call)
        return 1 if hparams["variant"] == "seed" else 0

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        check_stages(
            cls.name,
            cfg,
            channels=not hparams["projection"],
            channels_hint="add -p projection=true to learn a 1x1 projection",
        )
        check_seed_forward_support(cls.name, cfg, hparams)  # the stem features: ResNets

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, **hparams: Any):
        super().__init__(student, teacher, **hparams)
        self.projections: nn.ModuleList | None = None
        if self.hparams["projection"]:
            s_ch, t_ch = student.stage_channels, self.teacher.stage_channels
            self.projections = nn.ModuleList(
                nn.Conv2d(s, t, kernel_size=1) for s, t in zip(s_ch, t_ch, strict=True)
            )

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        seed = self.hparams["variant"] == "seed"
        logits, s_feats = self.student(images, features=True)
        _, t_feats = self.teacher_features(images)
        distance = "seed" if seed else "l2"
        total = logits.new_zeros((), dtype=torch.float32)
        for i, (s, t) in enumerate(zip(s_feats["preact"], t_feats["preact"], strict=True)):
            if self.projections is not None:
                s = self.projections[i](s)
            total = total + sfd_stage_loss(s, t, distance)
        if seed:  # the seed also matched the stem's conv and BN outputs
            for s, t in zip(s_feats["stem"], t_feats["stem"], strict=True):
                total = total + sfd_stage_loss(s, t, distance)
        return logits, {
            "ce": F.cross_entropy(logits, labels),
            "sfd": self.hparams["beta"] * total,
        }

    def record(self) -> dict[str, Any]:
        seed = self.hparams["variant"] == "seed"
        return {
            **super().record(),
            "variant": self.hparams["variant"],
            "features": "pre-ReLU stage outputs"
            + (" and the stem's conv and BN outputs" if seed else " (stem not matched)"),
            "distance": "l2 of the difference + 1e-6" if seed else "l2",
        }
