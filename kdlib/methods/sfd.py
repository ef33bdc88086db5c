"""SFD: the seed paper's own "simple feature distillation" baseline (Ruffy & Chahal 2019).

Per stage, the student's and the teacher's feature maps are max-pooled to 1x1 (one value
per channel), and the largest distance between a student vector and its teacher vector
over the batch is added to the cross-entropy:

    loss = CE + beta * sum_stages max_n d(maxpool(s_n), maxpool(t_n))

What we implement, exactly:

- features: each stage's output before its final ReLU (``feats["preact"]``), as the seed
  code's ``get_layers`` records them. The seed code also matched the stem's conv and BN
  outputs (64 channels in every paper ResNet); we match the stages only.
- ``distance=l2`` (default, the paper's description): d is the Euclidean distance between
  the pooled C-vectors, so each stage adds ``max_n ||s_n - t_n||_2``.
- ``distance=linf``: what the seed code computes. It calls ``F.pairwise_distance`` on the
  pooled (N, C, 1, 1) tensors, which takes the norm over the last, size-1 axis, i.e. the
  element-wise ``|s_nc - t_nc + 1e-6|``; ``.max()`` then takes the maximum over samples
  *and* channels: ``max_n ||s_n - t_n||_inf`` (we leave out the 1e-6).
- ``beta=1`` as in the seed code. Stages are paired by index, so both models need the same
  number of stages and, unless ``projection=true`` (a learned 1x1 conv, with bias, from
  each student stage to the teacher's channels, applied before pooling, as the seed code's
  unused ``build_transformers``), the same channel counts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.methods._features import check_stages
from kdlib.methods.base import Distiller, Param, register_method

DISTANCES = ("l2", "linf")


def sfd_stage_loss(student: Tensor, teacher: Tensor, distance: str = "l2") -> Tensor:
    """Max over the batch of the distance between 1x1 max-pooled student/teacher features."""
    s = F.adaptive_max_pool2d(student.float(), 1).flatten(1)
    t = F.adaptive_max_pool2d(teacher.float(), 1).flatten(1)
    diff = s - t
    if distance == "l2":
        per_sample = torch.linalg.vector_norm(diff, dim=1)
    elif distance == "linf":
        per_sample = diff.abs().amax(dim=1)
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
        "distance": Param(
            "l2",
            "l2: Euclidean distance of the pooled vectors (paper text); linf: max over "
            "channels too (what the seed code computes)",
            lambda v: v in DISTANCES,
            " or ".join(DISTANCES),
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
        logits, s_feats = self.student(images, features=True)
        _, t_feats = self.teacher_features(images)
        total = logits.new_zeros(())
        for i, (s, t) in enumerate(zip(s_feats["preact"], t_feats["preact"], strict=True)):
            if self.projections is not None:
                s = self.projections[i](s)
            total = total + sfd_stage_loss(s, t, self.hparams["distance"])
        return logits, {
            "ce": F.cross_entropy(logits, labels),
            "sfd": self.hparams["beta"] * total,
        }

    def record(self) -> dict[str, Any]:
        return {
            **super().record(),
            "features": "pre-ReLU stage outputs (stem not matched)",
            "distance": self.hparams["distance"],
            "variant": "paper text" if self.hparams["distance"] == "l2" else "seed code",
        }
