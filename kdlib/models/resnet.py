"""The 4-stage post-activation CIFAR ResNets ``resnet10/18/34`` (64/128/256/512 channels).

Weights keep PyTorch's default initialisation, as the seed paper's code did.
"""

from __future__ import annotations

from kdlib.models._resnet_base import CifarResNet
from kdlib.models.registry import register_model

_WIDTHS_4 = (64, 128, 256, 512)


@register_model("resnet10", "CIFAR ResNet-10, 4 stages x [1,1,1,1] BasicBlocks (64/128/256/512 ch)")
def resnet10(num_classes: int = 10) -> CifarResNet:
    """The smallest 4-stage CIFAR ResNet."""
    return CifarResNet(_WIDTHS_4, (1, 1, 1, 1), num_classes)


@register_model("resnet18", "CIFAR ResNet-18, 4 stages x [2,2,2,2] BasicBlocks (64/128/256/512 ch)")
def resnet18(num_classes: int = 10) -> CifarResNet:
    """The usual CIFAR ResNet-18 (11.2M parameters), a common large teacher."""
    return CifarResNet(_WIDTHS_4, (2, 2, 2, 2), num_classes)


@register_model("resnet34", "CIFAR ResNet-34, 4 stages x [3,4,6,3] BasicBlocks (64/128/256/512 ch)")
def resnet34(num_classes: int = 10) -> CifarResNet:
    """The usual CIFAR ResNet-34 (21.3M parameters)."""
    return CifarResNet(_WIDTHS_4, (3, 4, 6, 3), num_classes)


# The seed paper's 4-stage ResNets (its models/cifar10/resnet.py): the BasicBlock's ReLU
# after the residual add is dead code there, so each stage ends with one ReLU, as in its
# 3-stage paper ResNets. Same weights' names as the usual ones, another function.
_SEED_BLOCKS = {
    "resnet10_seed": (1, 1, 1, 1),
    "resnet18_seed": (2, 2, 2, 2),
    "resnet34_seed": (3, 4, 6, 3),
}


def _register_seed(name: str, blocks: tuple[int, ...]) -> None:
    @register_model(
        name,
        f"the seed paper's {name[:-5].replace('resnet', 'ResNet-')}: 4 stages x "
        f"[{','.join(map(str, blocks))}] BasicBlocks, no ReLU after each add, one per stage",
    )
    def factory(num_classes: int = 10) -> CifarResNet:
        return CifarResNet(_WIDTHS_4, blocks, num_classes, relu_per_block=False)

    factory.__name__ = factory.__qualname__ = name


for _name, _blocks in _SEED_BLOCKS.items():
    _register_seed(_name, _blocks)
