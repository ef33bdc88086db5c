"""OH: feature overhaul distillation (Heo et al., ICCV 2019), as in the authors' CIFAR code.

- Features: each stage's pre-ReLU feature (``prerelu_features``: the residual sum for the
  post-activation ResNets, the BN-normalised stage output for the pre-activation WRNs),
  for the teacher and, through a 1x1 conv + BN connector, for the student.
- Margin: per teacher channel, the expectation of the pre-ReLU response given that it is
  negative, from the teacher BN's affine parameters (gamma = std s, beta = mean m, of a
  Gaussian): ``m - s * pdf(m/s) / cdf(-m/s)``, or ``-3s`` where ``cdf(-m/s) <= 0.001``.
- Partial L2: the target is ``max(teacher, margin)``; the squared error counts only where
  ``student > target`` or ``target > 0`` (a student response below a negative target is
  already "off" enough).
- Distance per stage summed over elements, weighted 1, 1/2, 1/4 from the last stage
  back, divided by the batch size, times ``beta`` = 1e-3 (the authors' CIFAR script's
  ``loss_distill.sum() / batch_size / 1000``); plus CE.

``variant=original`` (default): the teacher frozen (eval mode, fixed BN statistics), both
models' own forward. ``variant=seed``, as the seed code ran it: teacher and student both
run the ReLU-less forward (no ReLU after the stem or between stages: its BasicBlock's
ReLU line is dead and its ``extract_feature`` skips the others), in training and in the
student's evaluation (the teacher's accuracy is measured with its own forward), and the
teacher stays in train mode (batch statistics; its running
statistics move); its weights get no gradient either way (the features are detached).
(The authors' CIFAR script also kept its teacher in train mode, but with the ReLUs.)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.methods._features import (
    bn_before_relu,
    check_prerelu_support,
    check_seed_forward_support,
    check_stages,
    conv_bn_connector,
    prerelu_features,
    stage_weights,
)
from kdlib.methods.base import Distiller, Param, register_method, variant_param
from kdlib.models import relu_description, relus, set_relus


def margin_from_bn(bn: nn.BatchNorm2d) -> Tensor:
    """E[x | x < 0] per channel for x ~ N(beta, |gamma|^2), or -3|gamma| when P(x < 0) is tiny."""
    s = bn.weight.detach().double().abs().clamp_min(1e-12)
    m = bn.bias.detach().double()
    p_neg = torch.special.ndtr(-m / s)
    pdf = torch.exp(-((m / s) ** 2) / 2) / math.sqrt(2 * math.pi)
    expected = m - s * pdf / p_neg.clamp_min(1e-300)
    return torch.where(p_neg > 1e-3, expected, -3 * s).float()


def oh_partial_l2(source: Tensor, target: Tensor, margin: Tensor) -> Tensor:
    """Heo et al.'s partial L2, summed over all elements (margin broadcasts per channel)."""
    target = torch.maximum(target, margin)
    mask = (source > target) | (target > 0)
    return ((source - target) ** 2 * mask).sum()


@register_method
class OH(Distiller):
    """CE + beta * sum_i w_i * partial_L2(connector_i(s_i), t_i; margin_i) / batch size."""

    name = "oh"
    description = (
        "feature overhaul (Heo et al. 2019): CE + 1e-3 * margin-based partial L2 of pre-ReLU "
        "features via 1x1 conv+BN connectors"
    )
    needs_teacher = True
    params = {
        "beta": Param(
            1e-3, "weight of the distillation distance", lambda v: v >= 0, "a number >= 0"
        ),
        "variant": variant_param(
            "no stem or inter-stage ReLUs in either model, teacher in train mode"
        ),
    }

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        check_prerelu_support(cls.name, cfg)
        check_stages(cls.name, cfg, spatial=True)
        check_seed_forward_support(cls.name, cfg, hparams)

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, **hparams: Any):
        super().__init__(student, teacher, **hparams)
        assert self.teacher is not None
        for p in self.teacher.parameters():  # never optimized, even when not frozen
            p.requires_grad_(False)
        if self.hparams["variant"] == "seed":  # the student is trained and evaluated so
            set_relus(student, after_stem=False, between_stages=False)
        s_ch, t_ch = student.stage_channels, self.teacher.stage_channels
        self.connectors = nn.ModuleList(
            conv_bn_connector(s, t) for s, t in zip(s_ch, t_ch, strict=True)
        )
        for i, bn in enumerate(bn_before_relu(self.teacher)):
            self.register_buffer(f"margin{i}", margin_from_bn(bn).view(1, -1, 1, 1))
        self.weights = stage_weights(len(s_ch))

    def freezes_teacher(self) -> bool:
        return self.hparams["variant"] == "original"

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, s_feats = self.student(images, features=True)
        if self.hparams["variant"] == "seed":  # the teacher's ReLU-less features, as the seed
            with relus(self.teacher, after_stem=False, between_stages=False):
                _, t_feats = self.teacher_features(images)
        else:
            _, t_feats = self.teacher_features(images)
        with torch.no_grad():
            t_pre = prerelu_features(self.teacher, t_feats)
        s_pre = prerelu_features(self.student, s_feats)
        distance = logits.new_zeros((), dtype=torch.float32)
        for i, (s, t) in enumerate(zip(s_pre, t_pre, strict=True)):
            source = self.connectors[i](s).float()
            margin = getattr(self, f"margin{i}")
            distance = distance + self.weights[i] * oh_partial_l2(source, t.float(), margin)
        return logits, {
            "ce": F.cross_entropy(logits, labels),
            "oh": self.hparams["beta"] * distance / images.shape[0],
        }

    def record(self) -> dict[str, Any]:
        return {
            **super().record(),
            "variant": self.hparams["variant"],
            "student_forward": relu_description(self.student),
            "teacher_forward": (
                "seed's ReLU-less forward inside the loss (no ReLU after the stem or the inner "
                "stages); its own forward where its accuracy is measured"
                if self.hparams["variant"] == "seed"
                else relu_description(self.teacher)
            ),
            "weights_note": (
                "the student's weights are for the ReLU-less forward (set_relus(model, "
                "after_stem=False, between_stages=False)); its own forward scores otherwise"
                if self.hparams["variant"] == "seed"
                else ""
            ),
            "stage_weights": self.weights,
        }
