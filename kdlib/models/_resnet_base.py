"""Post-activation CIFAR ResNet parts shared by the paper ResNets and the 4-stage ResNets.

Attribute names (``conv1, bn1, layerK.i.{conv1,bn1,conv2,bn2,shortcut.0,shortcut.1},
linear``) are those of the released checkpoints, so they load with ``strict=True``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU if ``relu`` (the usual block).

    The shortcut is a 1x1 conv + BN whenever the stride or the channel count changes,
    and the identity otherwise (an empty ``nn.Sequential``, which has no parameters).
    ``relu=False`` gives the seed paper's block, whose stage applies one ReLU at its end.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, relu: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = relu

    def preact(self, x: Tensor) -> Tensor:
        """The residual sum, before any ReLU (what pre-ReLU feature losses want)."""
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out)) + self.shortcut(x)

    def forward(self, x: Tensor) -> Tensor:
        out = self.preact(x)
        return F.relu(out) if self.relu else out


def make_stage(
    in_channels: int, out_channels: int, blocks: int, stride: int, relu_per_block: bool = True
) -> nn.Sequential:
    """``blocks`` BasicBlocks; only the first one changes stride/channels."""
    layers = [BasicBlock(in_channels, out_channels, stride, relu_per_block)]
    layers += [BasicBlock(out_channels, out_channels, 1, relu_per_block) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def run_stage(stage: nn.Sequential, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run a stage of BasicBlocks, returning (output before its final ReLU, output).

    The last block is split so the pre-ReLU tensor comes for free instead of being
    recomputed; the structure is static, so this traces cleanly under torch.compile.
    (Forward hooks on a stage's last block therefore do not fire.)
    """
    blocks = list(stage)
    for block in blocks[:-1]:
        x = block(x)
    pre = blocks[-1].preact(x)
    return pre, F.relu(pre)


class CifarResNet(nn.Module):
    """3x3 stem conv + BN + ReLU, stages of BasicBlocks, ``avg_pool2d(pool)``, linear.

    Stage ``i`` is the attribute ``layer{i+1}``; the first stage has stride 1, the others
    stride 2. For 32x32 inputs the last map is ``32 / 2**(stages-1)`` pixels wide, so the
    linear layer sees ``widths[-1] * (that / pool)**2`` features. Every stage ends with a
    ReLU; with ``relu_per_block=False`` (the seed paper's ResNets) that is the only ReLU
    after a residual add in the stage.

    ``forward(x, features=True)`` returns ``(logits, feats)`` with ``feats["stages"]`` (each
    stage's output, after its final ReLU), ``feats["preact"]`` (the same before that ReLU)
    , ``feats["embedding"]`` (the flattened input of ``linear``) and ``feats["stem"]`` (the
    stem's conv and BN outputs, before its ReLU).

    ``relu_after_stem`` / ``relu_between_stages`` (attributes, default True; not weights,
    so checkpoints load either way) switch off the stem's ReLU and the ReLUs that end the
    stages before the last: the seed paper's ReLU-less forward, which its OH ran for both
    models in training and evaluation (both off) and its AB initialisation ran (stages
    only). Set them through ``set_relus``; then ``feats["stages"][i]`` is the unrectified
    stage output for every stage but the last. The last stage's ReLU always stays.
    """

    relu_after_stem: bool = True
    relu_between_stages: bool = True

    def __init__(
        self,
        widths: Sequence[int],
        blocks: Sequence[int],
        num_classes: int = 10,
        stem_channels: int = 64,
        pool: int = 4,
        input_size: int = 32,
        relu_per_block: bool = True,
    ) -> None:
        super().__init__()
        if len(widths) != len(blocks) or not widths:
            raise ValueError("widths and blocks must be non-empty and of equal length")
        self.conv1 = nn.Conv2d(3, stem_channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        in_ch = stem_channels
        names = []
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            name = f"layer{i + 1}"
            stride = 1 if i == 0 else 2
            setattr(self, name, make_stage(in_ch, width, n, stride, relu_per_block))
            names.append(name)
            in_ch = width
        self._stage_names = tuple(names)
        self.pool = pool
        side = input_size // 2 ** (len(widths) - 1) // pool
        self.stage_channels: list[int] = list(widths)
        self.embedding_dim: int = widths[-1] * side * side
        self.linear = nn.Linear(self.embedding_dim, num_classes)

    def forward(self, x: Tensor, features: bool = False) -> Tensor | tuple[Tensor, dict[str, Any]]:
        conv = self.conv1(x)
        out = bn = self.bn1(conv)
        if self.relu_after_stem:
            out = F.relu(out)
        stages: list[Tensor] = []
        preacts: list[Tensor] = []
        last = len(self._stage_names) - 1
        for i, name in enumerate(self._stage_names):
            pre, out = run_stage(getattr(self, name), out)
            if not self.relu_between_stages and i < last:
                out = pre
            stages.append(out)
            preacts.append(pre)
        embedding = F.avg_pool2d(out, self.pool).flatten(1)
        logits = self.linear(embedding)
        if features:
            feats = {"stages": stages, "preact": preacts, "embedding": embedding}
            return logits, {**feats, "stem": [conv, bn]}
        return logits


def set_relus(model: nn.Module, *, after_stem: bool, between_stages: bool) -> None:
    """Switch a ``CifarResNet``'s stem and inter-stage ReLUs (see ``CifarResNet``)."""
    if not isinstance(model, CifarResNet):
        raise TypeError(f"{type(model).__name__} has no switchable stage ReLUs")
    model.relu_after_stem = after_stem
    model.relu_between_stages = between_stages


@contextlib.contextmanager
def relus(model: nn.Module, *, after_stem: bool, between_stages: bool) -> Iterator[None]:
    """``set_relus`` for the duration of a block, then the model's previous switches."""
    before = (model.relu_after_stem, model.relu_between_stages)
    set_relus(model, after_stem=after_stem, between_stages=between_stages)
    try:
        yield
    finally:
        set_relus(model, after_stem=before[0], between_stages=before[1])


def relu_description(model: nn.Module) -> str:
    """How ``model`` runs its stage ReLUs, for run records."""
    if not isinstance(model, CifarResNet):
        return "its own forward"
    if model.relu_after_stem and model.relu_between_stages:
        return "its own forward (ReLU after the stem and every stage)"
    off = [
        n
        for n, on in (
            ("the stem", model.relu_after_stem),
            ("the inner stages", model.relu_between_stages),
        )
        if not on
    ]
    return f"seed's ReLU-less forward: no ReLU after {' or '.join(off)}"
