"""RKD: relational knowledge distillation (Park et al., CVPR 2019), distance + angle.

On the embeddings (the input of each model's final linear layer; their sizes may differ):

- distance-wise: pairwise Euclidean distances within the batch, each divided by the mean
  of the non-zero (off-diagonal) distances, compared with smooth L1 (Huber, delta 1,
  mean over the N x N entries);
- angle-wise: for every triple (i, j, k), the cosine of the angle at i between
  ``e_j - e_i`` and ``e_k - e_i``, compared with smooth L1 (mean over N^3 entries);

loss = (1 - lambda) * CE + lambda * T^2 * KL + 25 * distance + 50 * angle.

``variant=original`` (default, ``lambda=0``): the method's definition, task loss + RKD-DA
with weights 25 and 50 as in the paper. ``variant=seed``: KD in place of CE (``lambda``
0.5, T=5, as ``kd``); the seed also computed an attention-transfer term but never added
it to the loss in any version, so it changes nothing and is left out. (Its last commit
pairs each student stage with the next teacher stage, whose attention map has another
size on the paper's ResNets, so that version cannot have run: the paper's RKD runs must come
from an earlier one, which paired equal stages. Both leave the loss as here.)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.methods.base import Distiller, Param, register_method, variant_param
from kdlib.methods.kd import kd_loss


def pairwise_distances(e: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean distance matrix of the rows of ``e`` in float32 (exact zero diagonal).

    Computed with autocast off: in bf16 the ``|a|^2 + |b|^2 - 2ab`` form cancels badly.
    Off-diagonal entries are at least ``sqrt(eps)`` (a stable gradient for equal rows).
    """
    with torch.autocast(e.device.type, enabled=False):
        e = e.float()
        sq = e.pow(2).sum(dim=1)
        d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp_min(eps)
        n = e.shape[0]
        return d2.sqrt() * (1 - torch.eye(n, device=e.device, dtype=d2.dtype))


def _mean_normalised(d: Tensor) -> Tensor:
    """``d`` divided by the mean of its n(n-1) off-diagonal entries (all > 0, diagonal 0).

    No boolean indexing: it would sync with the device and break ``torch.compile`` graphs.
    """
    n = d.shape[0]
    if n < 2:  # a batch of one has no pairs (a shape check, not a data-dependent branch)
        return d
    return d / (d.sum() / (n * (n - 1)))


def rkd_distance_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Smooth L1 between pairwise distance matrices, each divided by its mean distance."""
    with torch.no_grad():
        t_d = _mean_normalised(pairwise_distances(teacher))
    return F.smooth_l1_loss(_mean_normalised(pairwise_distances(student)), t_d)


def _angles(e: Tensor) -> Tensor:
    """Cosines of all triplet angles, flattened ``[i, j, k]`` (float32, autocast off)."""
    with torch.autocast(e.device.type, enabled=False):
        e = e.float()
        diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # [i, j] = e_j - e_i
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()  # [i, j, k] = cos angle at i


def rkd_angle_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Smooth L1 between the cosines of all triplet angles of the two embeddings."""
    with torch.no_grad():
        t_a = _angles(teacher)
    return F.smooth_l1_loss(_angles(student), t_a)


@register_method
class RKD(Distiller):
    """(1-lambda)*CE + lambda*T^2*KL + dist_weight*RKD-D + angle_weight*RKD-A."""

    name = "rkd"
    description = (
        "relational KD (Park et al. 2019): CE + 25 * distance-wise + 50 * angle-wise "
        "smooth-L1 losses on the embeddings"
    )
    needs_teacher = True
    params = {
        "dist_weight": Param(
            25.0, "weight of the distance-wise loss", lambda v: v >= 0, "a number >= 0"
        ),
        "angle_weight": Param(
            50.0, "weight of the angle-wise loss", lambda v: v >= 0, "a number >= 0"
        ),
        "lambda": Param(
            0.0,
            "weight of a KD term replacing part of CE (variant=seed: 0.5)",
            lambda v: 0.0 <= v <= 1.0,
            "0 <= lambda <= 1",
        ),
        "T": Param(5.0, "KD temperature (when lambda > 0)", lambda v: v > 0, "a number > 0"),
        "variant": variant_param("KD, lambda 0.5 and T 5, in place of CE"),
    }
    seed_defaults = {"lambda": 0.5}

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        lam = self.hparams["lambda"]
        logits, s_feats = self.student(images, features=True)
        t_logits, t_feats = self.teacher_features(images)
        s_emb, t_emb = s_feats["embedding"], t_feats["embedding"]
        losses = {"ce": (1.0 - lam) * F.cross_entropy(logits, labels)}
        if lam > 0:
            losses["kd"] = lam * kd_loss(logits, t_logits, self.hparams["T"])
        losses["rkd_dist"] = self.hparams["dist_weight"] * rkd_distance_loss(s_emb, t_emb)
        losses["rkd_angle"] = self.hparams["angle_weight"] * rkd_angle_loss(s_emb, t_emb)
        return logits, losses

    def record(self) -> dict[str, Any]:
        lam = self.hparams["lambda"]  # the variant sets its default
        return {
            **super().record(),
            "features": "embedding (input of the final linear layer)",
            "variant": self.hparams["variant"],
            "task_loss": "CE" if lam == 0 else f"KD (lambda {lam}, T {self.hparams['T']})",
        }
