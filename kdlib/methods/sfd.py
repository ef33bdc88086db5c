"""SFD: the seed paper's own "simple feature distillation" baseline (Ruffy & Chahal 2019).

Per stage, the student's and the teacher's feature maps are max-pooled to 1x1 (one value
per channel), and the largest distance between a student vector and its teacher vector
over the batch is added to the cross-entropy:

    loss = CE + beta * sum_stages max_n d(maxpool(s_n), maxpool(t_n))

``variant=original`` (default, the paper's description): features are each stage's
output before its final ReLU (``feats["preact"]``), and d is the Euclidean distance of
the pooled C-vectors, so each stage adds ``max_n ||s_n - t_n||_2``.

``variant=seed``, what the seed code computes: its ``get_layers`` also records the stem's
conv and BN outputs (64 channels in every paper ResNet), so five tensors are matched, and
its ``F.pairwise_distance`` on the pooled (N, C, 1, 1) tensors takes the norm over the
last, size-1 axis, i.e. the element-wise ``|s_nc - t_nc + 1e-6|``, whose ``.max()`` runs
over samples *and* channels: ``max_n ||s_n - t_n + 1e-6||_inf``.

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

DISTANCES = ("l2", "linf")
SEED_EPS = 1e-6  # F.pairwise_distance's eps, added to the difference


def sfd_stage_loss(student: Tensor, teacher: Tensor, distance: str = "l2") -> Tensor:
    """Max over the batch of the distance between 1x1 max-pooled student/teacher features."""
    s = F.adaptive_max_pool2d(student.float(), 1).flatten(1)
    t = F.adaptive_max_pool2d(teacher.float(), 1).flatten(1)
    diff = s - t
    if distance == "l2":
        per_sample = torch.linalg.vector_norm(diff, dim=1)
    elif distance == "linf":
        per_sample = (diff + SEED_EPS).abs().amax(dim=1)
    else:
        raise ValueError(f"unknown distance {distance!r}")
    return per_sample.max()


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
            "max over channels too (L-infinity), and the stem's conv and BN outputs matched"
        ),
        "projection": Param(
            False,
            "learn a 1x1 conv from each student stage to the teacher's channel count",
            None,
            "true or false",
        ),
    }

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
        distance = "linf" if seed else "l2"
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
            "distance": "linf" if seed else "l2",
        }
