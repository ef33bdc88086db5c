"""The seed paper's ResNet8/14/20/26/32/44/56 (Ruffy & Chahal, 2019).

These are NOT He et al.'s CIFAR ResNets: the stem has 64 channels, the three stages
16/32/64, and the head average-pools the 8x8 map with kernel 4, leaving 2x2, so the linear
layer sees 64 * 2 * 2 = 256 features. Depth ``6n + 2`` means ``n`` blocks per stage. The
first block of stage 1 goes 64 -> 16 channels and so has a projection shortcut.

Inside a stage the blocks have NO ReLU after the residual add; each stage ends with one
ReLU. The released checkpoints prove it: with a ReLU after every block, ResNet14/20/26/32
score 17-46% on the CIFAR-10 test set; without, exactly their published accuracies.
(ResNet8, one block per stage, cannot tell the two apart.) Module names match the
released checkpoints.
"""

from __future__ import annotations

from kdlib.models._resnet_base import CifarResNet
from kdlib.models.registry import register_model


class PaperResNet(CifarResNet):
    """Paper ResNet of depth ``6 * blocks_per_stage + 2``."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__(
            (16, 32, 64),
            (blocks_per_stage,) * 3,
            num_classes,
            stem_channels=64,
            relu_per_block=False,
        )


def _register(depth: int) -> None:
    n = (depth - 2) // 6
    plural = "BasicBlock" if n == 1 else "BasicBlocks"

    @register_model(
        f"resnet{depth}", f"paper ResNet, 3 stages x {n} {plural} (16/32/64 ch), 64-ch stem"
    )
    def factory(num_classes: int = 10) -> PaperResNet:
        return PaperResNet(n, num_classes)

    factory.__name__ = factory.__qualname__ = f"resnet{depth}"
    factory.__doc__ = f"The seed paper's ResNet{depth} ({n} blocks per stage)."


for _depth in (8, 14, 20, 26, 32, 44, 56):
    _register(_depth)
