"""Pre-activation wide ResNets WRN-d-k (Zagoruyko & Komodakis, 2016), no dropout.

``n = (d - 4) / 6`` blocks per stage, widths 16 (stem), 16k, 32k, 64k, strides 1, 2, 2.
Module names follow the seed paper's released WRN checkpoints:
``conv1`` (stem), ``layer{1,2,3}.layer.{i}.{bn1,conv1,bn2,conv2,convShortcut}``, then the
final ``bn1`` and ``linear``.

Features: a pre-activation net has no ReLU at the end of a stage; the tensor a stage
hands on is the raw residual sum, which the next block (or the final BN-ReLU) normalises
and rectifies. So ``feats["stages"][i]`` and ``feats["preact"][i]`` are both the raw output
of ``layer{i+1}`` (the same tensor objects), and ``feats["embedding"]`` is the globally
pooled output of the final BN-ReLU.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.models.registry import register_model


class WideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus shortcut, nothing after the add.

    When the shape changes, the 1x1 ``convShortcut`` reads the pre-activated input (as in
    the reference WRN code); otherwise the shortcut is the raw input.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.convShortcut: nn.Conv2d | None = None
        if stride != 1 or in_channels != out_channels:
            self.convShortcut = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        if self.convShortcut is None:
            return out + x
        return out + self.convShortcut(act)


class WideStage(nn.Module):
    """A stage of WideBlocks, held under ``.layer`` to match the checkpoints' key names."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, stride: int) -> None:
        super().__init__()
        layers = [WideBlock(in_channels, out_channels, stride)]
        layers += [WideBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
        self.layer = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen``; see the module docstring for the feature convention."""

    def __init__(self, depth: int, widen: int, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 6 or depth < 10 or widen < 1:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1, got depth={depth}")
        n = (depth - 4) // 6
        widths = [16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.layer1 = WideStage(16, widths[0], n, 1)
        self.layer2 = WideStage(widths[0], widths[1], n, 2)
        self.layer3 = WideStage(widths[1], widths[2], n, 2)
        self.bn1 = nn.BatchNorm2d(widths[2])
        self.linear = nn.Linear(widths[2], num_classes)
        self.stage_channels: list[int] = widths
        self.embedding_dim: int = widths[2]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, features: bool = False) -> Tensor | tuple[Tensor, dict[str, Any]]:
        s1 = self.layer1(self.conv1(x))
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        embedding = F.relu(self.bn1(s3)).mean(dim=(2, 3))
        logits = self.linear(embedding)
        if features:
            stages = [s1, s2, s3]
            return logits, {"stages": stages, "preact": list(stages), "embedding": embedding}
        return logits


def _register(depth: int, widen: int) -> None:
    n = (depth - 4) // 6
    plural = "block" if n == 1 else "blocks"
    w = (16 * widen, 32 * widen, 64 * widen)

    @register_model(
        f"wrn{depth}_{widen}",
        f"pre-activation WRN-{depth}-{widen}, 3 stages x {n} {plural} "
        f"({w[0]}/{w[1]}/{w[2]} ch), 16-ch stem",
    )
    def factory(num_classes: int = 10) -> WideResNet:
        return WideResNet(depth, widen, num_classes)

    factory.__name__ = factory.__qualname__ = f"wrn{depth}_{widen}"
    factory.__doc__ = f"WRN-{depth}-{widen}."


# wrn22_4: the seed paper's second MKD teacher
_WRNS = ((10, 1), (16, 1), (16, 2), (16, 4), (22, 4), (28, 1), (28, 2), (40, 1), (40, 2))
for _depth, _widen in _WRNS:
    _register(_depth, _widen)
