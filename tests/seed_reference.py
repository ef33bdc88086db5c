"""What the seed paper's code (karanchahal/distiller) computes, transcribed independently: its
models' forward passes and its KD loss, for the tests of each method's ``variant=seed``
(tests/methods/) and of the seed's models (tests/models/).

Every reference is written from the seed's (or the authors') source, in plain torch calls on
the models' modules, without calling kdlib's losses or its models' forward. A transcription
that one method alone uses sits beside that method's tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TOL = {"rel": 1e-5, "abs": 1e-5}


def reference_batch(n: int = 6, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def reference_total(losses: dict[str, Tensor]) -> float:
    return float(sum(v.item() for v in losses.values()))


# -- the seed's models (models/cifar10/resnet.py), transcribed -------------------------


def seed_block(b: nn.Module, x: Tensor) -> Tensor:
    """BasicBlock.forward: its first line ``F.relu(x)`` is dead; no ReLU after the add."""
    out = F.relu(b.bn1(b.conv1(x)))
    out = b.bn2(b.conv2(out))
    return out + b.shortcut(x)


def seed_layer(stage: nn.Sequential, x: Tensor) -> Tensor:
    for b in stage:
        x = seed_block(b, x)
    return x


def seed_forward(net: nn.Module, x: Tensor, use_relu: bool = True, is_feat: bool = False):
    """ResNetSmall.forward(x, is_feat, use_relu): features after the stage ReLUs."""
    out = net.bn1(net.conv1(x))
    if use_relu:
        out = F.relu(out)
    feat1 = seed_layer(net.layer1, out)
    if use_relu:
        feat1 = F.relu(feat1)
    feat2 = seed_layer(net.layer2, feat1)
    if use_relu:
        feat2 = F.relu(feat2)
    feat3 = F.relu(seed_layer(net.layer3, feat2))  # the last relu is always included
    pool = F.avg_pool2d(feat3, 4).view(feat3.size(0), -1)
    out = net.linear(pool)
    return ([feat1, feat2, feat3], pool, out) if is_feat else out


def seed_extract_feature(net: nn.Module, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """ResNetSmall.extract_feature(x, preReLU=True): no stem or inter-stage ReLU at all."""
    x = net.bn1(net.conv1(x))
    feat1 = seed_layer(net.layer1, x)
    feat2 = seed_layer(net.layer2, feat1)
    feat3 = seed_layer(net.layer3, feat2)
    out = F.avg_pool2d(F.relu(feat3), 4).view(feat3.size(0), -1)
    return [feat1, feat2, feat3], net.linear(out)


def seed_kd_loss(out_s: Tensor, out_t: Tensor, target: Tensor, lam=0.5, T=5.0) -> Tensor:
    """KDTrainer.kd_loss: KLDivLoss(size_average=False) / batch size."""
    loss = F.cross_entropy(out_s, target)
    kl = F.kl_div(F.log_softmax(out_s / T, dim=1), F.softmax(out_t / T, dim=1), reduction="sum")
    return (1 - lam) * loss + lam * T * T * kl / target.shape[0]
