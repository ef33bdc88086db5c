"""The 4-stage CIFAR ResNets (kdlib/models/resnet.py), the seed's variant against the
seed's code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.models import create_model
from tests.seed_reference import reference_batch as _batch
from tests.seed_reference import seed_layer


def test_seed_resnet18_has_no_relu_after_the_add() -> None:
    """The seed's 4-stage ResNet (its ``ResNet.forward``): one ReLU per stage."""
    torch.manual_seed(0)
    net = create_model("resnet18_seed", 10).eval()
    x, _ = _batch(2)

    def reference(x: Tensor) -> Tensor:
        out = F.relu(net.bn1(net.conv1(x)))
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            out = F.relu(seed_layer(stage, out))
        return net.linear(F.avg_pool2d(out, 4).view(x.size(0), -1))

    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x))
        plain = create_model("resnet18", 10).eval()
        plain.load_state_dict(net.state_dict())  # same weights, other function
        assert not torch.allclose(plain(x), net(x))
