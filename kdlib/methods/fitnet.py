"""FitNet hints (Romero et al., ICLR 2015), as the single-stage baseline of modern benchmarks.

A convolutional regressor maps the student's "guided" stage onto the teacher's "hint"
stage, and their mean squared error is added to the cross-entropy:

    loss = CE + beta * mean((r(s_k) - t_k)^2),   beta = 100, k = hint_stage = 1

This is how Tian et al.'s CRD benchmark (RepDistiller) runs FitNet: one training stage,
hint/guided layer in the middle of the network (the second of three stages; their
``hint_layer=2`` counts the stem), beta = 100, and their ``ConvReg`` for equal spatial
sizes: a 1x1 conv with bias, BN, then a ReLU (we add the ReLU only where the teacher's
hint is itself rectified, i.e. not for the pre-activation WRNs, as Romero et al. give the
regressor the hint layer's non-linearity). The original paper instead trains in two
stages (hint pre-training of the lower student, then KD); the seed paper has no FitNet.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlib.errors import KdlibError
from kdlib.methods._features import model_info, probe
from kdlib.methods.base import Distiller, Param, register_method


def regressor(in_channels: int, out_channels: int, relu: bool) -> nn.Sequential:
    """1x1 conv with bias + BN (+ ReLU): maps the guided student feature to the hint's
    channels (the spatial sizes are equal: ``check_config``)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 1, bias=True),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@register_method
class FitNet(Distiller):
    """CE + beta * MSE(regressor(student stage k), teacher stage k)."""

    name = "fitnet"
    description = (
        "FitNet hints (Romero et al. 2015), single stage: CE + 100 * MSE of a middle stage "
        "through a 1x1 conv + BN regressor"
    )
    needs_teacher = True
    revision = 1  # 1: RepDistiller's 1x1 ConvReg with bias (was a 3x3 conv without)
    params = {
        "beta": Param(100.0, "weight of the hint loss", lambda v: v >= 0, "a number >= 0"),
        "hint_stage": Param(
            1,
            "0-based stage index used as hint (teacher) and guided layer (student)",
            lambda v: v >= 0,
            "an integer >= 0, below both models' stage counts",
        ),
    }

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        k = hparams["hint_stage"]
        teacher = cfg.teacher_names()[0]
        s, t = model_info(cfg.student), model_info(teacher)
        n = min(len(s.stage_shapes), len(t.stage_shapes))
        if k >= n:
            raise KdlibError(
                f"method 'fitnet': parameter hint_stage={k} is out of range: --student="
                f"{cfg.student} has {len(s.stage_shapes)} stages and --teacher={teacher} has "
                f"{len(t.stage_shapes)} (allowed: 0..{n - 1})"
            )
        if s.sizes[k] != t.sizes[k]:
            raise KdlibError(
                f"method 'fitnet': stage {k} is {s.sizes[k][0]}x{s.sizes[k][1]} in --student="
                f"{cfg.student} but {t.sizes[k][0]}x{t.sizes[k][1]} in --teacher={teacher}; "
                "choose a -p hint_stage where the spatial sizes match"
            )

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None, **hparams: Any):
        super().__init__(student, teacher, **hparams)
        k = self.hparams["hint_stage"]
        s, t = probe(student), probe(self.teacher)
        self.regressor = regressor(s.channels[k], t.channels[k], relu=t.post_relu[k])

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        k = self.hparams["hint_stage"]
        logits, s_feats = self.student(images, features=True)
        _, t_feats = self.teacher_features(images)
        hint = F.mse_loss(
            self.regressor(s_feats["stages"][k]).float(), t_feats["stages"][k].float()
        )
        return logits, {
            "ce": F.cross_entropy(logits, labels),
            "hint": self.hparams["beta"] * hint,
        }

    def record(self) -> dict[str, Any]:
        return {
            **super().record(),
            "variant": "single-stage (CRD benchmark), not Romero et al.'s two-stage",
            "regressor_relu": isinstance(self.regressor[-1], nn.ReLU),
        }
