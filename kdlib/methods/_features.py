"""Shared parts of the feature-based methods: shape probes, config checks, connectors.

Feature methods compare student stage ``i`` with teacher stage ``i``, so most need equal
stage counts and often equal spatial sizes. ``model_info`` finds the shapes by running a
model once on a dummy CIFAR image, so every architecture the registry knows is covered
without a table to keep in sync, and ``check_stages`` turns a mismatch into one line
naming the fields before any work is done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.errors import KdlibError
from kdlib.models import create_model
from kdlib.models._resnet_base import CifarResNet
from kdlib.models.wrn import WideResNet

INPUT_SIZE = 32  # CIFAR images


@dataclass(frozen=True)
class FeatureInfo:
    """What a model's ``forward(x, features=True)`` gives, for one 32x32 image."""

    stage_shapes: tuple[tuple[int, int, int], ...]  # (channels, height, width) per stage
    post_relu: tuple[bool, ...]  # whether "stages"[i] is rectified (False for pre-act WRNs)

    @property
    def channels(self) -> list[int]:
        return [c for c, _, _ in self.stage_shapes]

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [(h, w) for _, h, w in self.stage_shapes]


def probe(model: nn.Module) -> FeatureInfo:
    """Run ``model`` once in eval mode on a zero image and record its feature shapes."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            _, feats = model(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=device), True)
    finally:
        model.train(was_training)
    stages, preact = feats["stages"], feats["preact"]
    return FeatureInfo(
        stage_shapes=tuple((int(s.shape[1]), int(s.shape[2]), int(s.shape[3])) for s in stages),
        post_relu=tuple(s is not p for s, p in zip(stages, preact, strict=True)),
    )


@lru_cache(maxsize=64)
def model_info(name: str) -> FeatureInfo:
    """``probe`` of a freshly built ``name`` (for ``check_config``; cached per name)."""
    return probe(create_model(name, 10))


def _describe(info: FeatureInfo) -> str:
    return f"{len(info.stage_shapes)} stages ({'/'.join(str(c) for c in info.channels)} ch)"


def check_stages(
    method: str,
    cfg: Any,
    *,
    channels: bool = False,
    spatial: bool = False,
    channels_hint: str = "",
) -> tuple[FeatureInfo, FeatureInfo]:
    """Student and teacher feature info; ``KdlibError`` if their stages cannot be paired.

    Always requires equal stage counts; ``channels``/``spatial`` also require equal
    channel counts / spatial sizes per stage. ``channels_hint`` is appended to the
    channel-mismatch message (e.g. how to enable a projection).
    """
    teacher = cfg.teacher_names()[0]
    s, t = model_info(cfg.student), model_info(teacher)
    pair = f"--student={cfg.student} has {_describe(s)} but --teacher={teacher} has {_describe(t)}"
    if len(s.stage_shapes) != len(t.stage_shapes):
        raise KdlibError(
            f"method {method!r}: {pair}; it pairs student stage i with teacher stage i, so "
            "both need the same number of stages (e.g. two paper ResNets, or a paper ResNet "
            "and a WRN)"
        )
    if channels and s.channels != t.channels:
        raise KdlibError(
            f"method {method!r}: {pair}; it needs equal channel counts per stage"
            + (f" ({channels_hint})" if channels_hint else "")
        )
    if spatial and s.sizes != t.sizes:
        sizes = "; ".join(f"{a} vs {b}" for a, b in zip(s.sizes, t.sizes, strict=True))
        raise KdlibError(
            f"method {method!r}: --student={cfg.student} and --teacher={teacher} have "
            f"different stage spatial sizes ({sizes}); it needs them equal per stage"
        )
    return s, t


# -- pre-ReLU features (OH, AB) -------------------------------------------------------


def _family(model: nn.Module) -> str | None:
    if isinstance(model, CifarResNet):
        return "resnet"
    if isinstance(model, WideResNet):
        return "wrn"
    return None


def check_prerelu_support(method: str, cfg: Any) -> None:
    """``KdlibError`` unless both models are ones whose pre-ReLU BN we know how to find."""
    for field, name in (("student", cfg.student), ("teacher", cfg.teacher_names()[0])):
        if _family(create_model(name, 10)) is None:
            raise KdlibError(
                f"method {method!r}: --{field}={name}: it needs the BatchNorm before each "
                "stage's final ReLU, known only for the CIFAR ResNets (resnet8..56, "
                "resnet10/18/34) and WRNs"
            )


def check_seed_forward_support(method: str, cfg: Any, hparams: dict[str, Any]) -> None:
    """``variant=seed`` of OH/AB runs the seed's ReLU-less ResNet forward, SFD's matches the
    ResNet stem: ResNets only."""
    if hparams.get("variant") != "seed":
        return
    for field, name in (("student", cfg.student), ("teacher", cfg.teacher_names()[0])):
        if _family(create_model(name, 10)) != "resnet":
            raise KdlibError(
                f"method {method!r}: -p variant=seed is defined for the seed paper's ResNets "
                f"only, but --{field}={name} is not one; use variant=original"
            )


def bn_before_relu(model: nn.Module) -> list[nn.BatchNorm2d]:
    """Per stage, the BatchNorm whose output the next ReLU rectifies (Heo et al.'s choice).

    Post-activation ResNets: ``bn2`` of the stage's last block (its output plus the
    shortcut is what the stage's ReLU sees). Pre-activation WRNs: the ``bn1`` of the next
    stage's first block, and the final ``bn1`` for the last stage.
    """
    family = _family(model)
    if family == "resnet":
        return [getattr(model, name)[-1].bn2 for name in model._stage_names]
    if family == "wrn":
        return [model.layer2.layer[0].bn1, model.layer3.layer[0].bn1, model.bn1]
    raise KdlibError(f"no pre-ReLU BatchNorm known for {type(model).__name__}")


def prerelu_features(model: nn.Module, feats: dict[str, Any]) -> list[Tensor]:
    """Each stage's feature just before a ReLU, as Heo et al. (AB, OH) distil them.

    ResNets: ``feats["preact"]``. WRNs: the stage output normalised by the BN that
    precedes the next ReLU (see ``bn_before_relu``). That BN is applied functionally with
    momentum 0, so its running statistics are not updated a second time per batch.
    """
    if _family(model) == "resnet":
        return list(feats["preact"])
    out = []
    for x, bn in zip(feats["stages"], bn_before_relu(model), strict=True):
        out.append(
            F.batch_norm(
                x, bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.training, 0.0, bn.eps
            )
        )
    return out


# -- connectors and weights -----------------------------------------------------------


def conv_bn_connector(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (no bias) + BN with Heo et al.'s init: N(0, sqrt(2/(k*k*out))), BN 1/0."""
    conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / out_channels))
    bn = nn.BatchNorm2d(out_channels)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    return nn.Sequential(conv, bn)


def stage_weights(n: int) -> list[float]:
    """Heo et al.'s per-stage weights: 1 for the last stage, halved for each earlier one."""
    return [1.0 / 2 ** (n - 1 - i) for i in range(n)]
