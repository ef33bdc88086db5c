"""PKD: patient knowledge distillation (Sun et al., EMNLP 2019) carried over to CNNs.

PKD adds to KD a "patient" loss that makes the student's intermediate representations
follow the teacher's: the mean squared error between the per-layer L2-normalised hidden
vectors. Here a layer is a stage, and its hidden vector is the stage output (after its
ReLU, ``feats["stages"]``) global-average-pooled to a C-vector:

    p = concat_i( avgpool(stage_i) / ||avgpool(stage_i)||_2 )      (per sample)
    loss = (1 - lambda) * CE + lambda * T^2 * KL + beta * mean((p_s - p_t)^2)

with T=5, lambda=0.5 as in ``kd`` and beta=10 as in the seed code. Each stage is
normalised on its own, as PKD normalises each layer's vector; the mean runs over the
batch and all concatenated channels. Stages are paired by index, so the two models need
equal channel counts per stage.

``variant=seed``, as the seed code ran it: the whole stage maps (after their ReLUs)
flattened and concatenated, no pooling and no normalisation (its ``patience_loss`` default),
``KD + 10 * mean((flat_s - flat_t)^2)``; the spatial sizes must then match too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.methods._features import check_stages
from kdlib.methods.base import Distiller, Param, register_method, variant_param
from kdlib.methods.kd import KD, kd_terms


def patience_vector(stages: list[Tensor], normalize: bool = True) -> Tensor:
    """Concatenated per-stage pooled (and, by default, per-sample L2-normalised) features."""
    parts = []
    for x in stages:
        v = x.float().mean(dim=(2, 3))
        parts.append(F.normalize(v, p=2, dim=1) if normalize else v)
    return torch.cat(parts, dim=1)


def patience_loss(student: list[Tensor], teacher: list[Tensor], normalize: bool = True) -> Tensor:
    """Mean squared error of the two patience vectors."""
    return F.mse_loss(patience_vector(student, normalize), patience_vector(teacher, normalize))


def flat_patience_loss(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """The seed's: MSE of the concatenated, flattened, unnormalised whole stage maps."""
    s = torch.cat([x.float().flatten(1) for x in student], dim=1)
    t = torch.cat([x.float().flatten(1) for x in teacher], dim=1)
    return F.mse_loss(s, t)


@register_method
class PKD(Distiller):
    """KD + beta * MSE of the normalised, pooled, concatenated stage features."""

    name = "pkd"
    description = (
        "patient KD (Sun et al. 2019): KD + 10 * MSE of the per-stage L2-normalised, "
        "pooled stage features"
    )
    needs_teacher = True
    params = {
        "T": KD.params["T"],
        "lambda": KD.params["lambda"],
        "beta": Param(10.0, "weight of the patience loss", lambda v: v >= 0, "a number >= 0"),
        "variant": variant_param("whole maps flattened, no pooling, no normalisation"),
    }

    @classmethod
    def check_config(cls, cfg: Any, hparams: dict[str, Any]) -> None:
        check_stages(cls.name, cfg, channels=True, spatial=hparams["variant"] == "seed")

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        T, lam = self.hparams["T"], self.hparams["lambda"]
        logits, s_feats = self.student(images, features=True)
        t_logits, t_feats = self.teacher_features(images)
        if self.hparams["variant"] == "seed":
            pt = flat_patience_loss(s_feats["stages"], t_feats["stages"])
        else:
            pt = patience_loss(s_feats["stages"], t_feats["stages"])
        return logits, {
            **kd_terms(logits, t_logits, labels, T, lam),
            "patience": self.hparams["beta"] * pt,
        }

    def record(self) -> dict[str, Any]:
        seed = self.hparams["variant"] == "seed"
        return {
            **super().record(),
            "variant": self.hparams["variant"],
            "features": "stage outputs (after ReLU), "
            + ("whole maps flattened, unnormalised" if seed else "pooled, L2-normalised"),
        }
