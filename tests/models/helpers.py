"""Shared by the model tests: the parameter count of every registered model."""

from __future__ import annotations

from torch import nn

# Parameter counts for 10 classes. The paper ResNets and WRN-10/16/28-1 are the counts the
# seed paper reports for its released checkpoints; the rest are the usual published sizes.
PARAMS = {
    "resnet8": 89_322,
    "resnet14": 186_538,
    "resnet20": 283_754,
    "resnet26": 380_970,
    "resnet32": 478_186,
    "resnet44": 672_618,
    "resnet56": 867_050,
    "resnet10": 4_903_242,
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "resnet10_seed": 4_903_242,  # the same modules as resnet10/18/34: another forward
    "resnet18_seed": 11_173_962,
    "resnet34_seed": 21_282_122,
    "wrn10_1": 77_850,
    "wrn16_1": 175_066,
    "wrn16_2": 691_674,
    "wrn16_4": 2_748_890,
    "wrn22_4": 4_298_970,
    "wrn28_1": 369_498,
    "wrn28_2": 1_467_610,
    "wrn40_1": 563_930,
    "wrn40_2": 2_243_546,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
