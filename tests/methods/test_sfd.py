"""SFD (kdlib/methods/sfd.py): the stage loss against loops and the seed code's call, the
method on pre-activation features, and the seed variant against the seed's code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.methods import create_method
from kdlib.methods.sfd import sfd_stage_loss
from tests.methods.helpers import make_batch as _batch
from tests.methods.helpers import make_models as _models
from tests.methods.helpers import np64 as _np
from tests.methods.helpers import np_ce
from tests.seed_reference import TOL, reference_batch, seed_layer
from tests.seed_reference import reference_total as _total

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is fastest


def seed_pairwise_distance(x1: Tensor, x2: Tensor, eps: float = 1e-6) -> Tensor:
    """``F.pairwise_distance(x1, x2)`` as the seed code ran it (December 2019, PyTorch 1.3):
    ATen's ``at::norm(x1 - x2 + eps, p, 1, keepdim)``, the norm over dim 1. PyTorch later
    moved that norm to the last dim, which for the seed's (N, C, 1, 1) inputs is another
    number, so today's ``F.pairwise_distance`` is no reference."""
    return torch.norm(x1 - x2 + eps, 2, 1)


def _ref_sfd(s: np.ndarray, t: np.ndarray, distance: str) -> float:
    eps = 1e-6 if distance == "seed" else 0.0
    best = 0.0
    for n in range(s.shape[0]):
        sv = [s[n, c].max() for c in range(s.shape[1])]
        tv = [t[n, c].max() for c in range(t.shape[1])]
        diffs = [a - b + eps for a, b in zip(sv, tv, strict=True)]
        best = max(best, math.sqrt(sum(x * x for x in diffs)))
    return best


def test_sfd_stage_loss_by_hand() -> None:
    # one sample, two channels: pooled student (3, 1), teacher (0, 5) -> diff (3, -4)
    s = torch.tensor([[[[1.0, 3.0]], [[1.0, -2.0]]]])
    t = torch.tensor([[[[0.0, -1.0]], [[5.0, 2.0]]]])
    assert sfd_stage_loss(s, t, "l2").item() == pytest.approx(5.0)
    assert sfd_stage_loss(s, t, "seed").item() == pytest.approx(math.hypot(3 + 1e-6, -4 + 1e-6))
    with pytest.raises(ValueError, match="unknown distance 'linf'"):
        sfd_stage_loss(s, t, "linf")


@pytest.mark.parametrize("distance", ["l2", "seed"])
def test_sfd_stage_loss_matches_loops(distance: str) -> None:
    torch.manual_seed(0)
    s, t = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    got = sfd_stage_loss(s, t, distance).item()
    assert got == pytest.approx(_ref_sfd(_np(s), _np(t), distance), rel=1e-5)


def test_sfd_seed_distance_is_pairwise_distance_as_pytorch_1_3_computed_it() -> None:
    """The seed code: pairwise_distance of (N, C, 1, 1) pooled maps, then .max()."""
    torch.manual_seed(0)
    s, t = torch.randn(6, 4, 5, 5), torch.randn(6, 4, 5, 5)
    s1, t1 = F.adaptive_max_pool2d(s, 1), F.adaptive_max_pool2d(t, 1)
    seed = seed_pairwise_distance(s1, t1)
    assert seed.shape == (6, 1, 1)  # one distance per sample, over the channels
    assert sfd_stage_loss(s, t, "seed").item() == pytest.approx(seed.max().item(), rel=1e-6)
    # today's call takes the norm over the last, size-1 axis: one value per channel
    assert F.pairwise_distance(s1, t1).shape == (6, 4, 1)


def test_sfd_method_sums_stages_of_preact_features() -> None:
    student, teacher = _models()
    method = create_method("sfd", student, teacher, beta=0.5).eval()
    x, y = _batch()
    logits, losses = method(x, y)
    _, sf = student(x, features=True)
    _, tf = teacher(x, features=True)
    expected = sum(
        _ref_sfd(_np(s), _np(t), "l2") for s, t in zip(sf["preact"], tf["preact"], strict=True)
    )
    assert set(losses) == {"ce", "sfd"}
    assert losses["sfd"].item() == pytest.approx(0.5 * expected, rel=1e-5)
    assert losses["ce"].item() == pytest.approx(np_ce(logits, y), rel=1e-5)
    assert method.record()["variant"] == "original"


# -- the seed variant (distillers/fd_distiller.py), against the seed's code -----------


def seed_get_layers(net: nn.Module, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """get_layers over the children conv1, bn1, layer1..3 (ReLU after each non-conv)."""
    feats = []
    out = x
    for layer in (net.conv1, net.bn1, net.layer1, net.layer2, net.layer3):
        out = seed_layer(layer, out) if isinstance(layer, nn.Sequential) else layer(out)
        feats.append(out)
        if not isinstance(layer, nn.Conv2d):
            out = F.relu(out)
    out = F.avg_pool2d(out, 4).view(out.size(0), -1)
    return feats, net.linear(out)


def test_sfd_seed_variant_is_the_seed_feature_loss_with_the_stem() -> None:
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("sfd", student, teacher, variant="seed").eval()
    x, y = reference_batch()
    _, losses = method(x, y)
    s_feats, s_out = seed_get_layers(student, x)
    t_feats, _ = seed_get_layers(teacher, x)
    feature_loss = 0.0
    for s, t in zip(s_feats, t_feats, strict=True):
        s1 = F.adaptive_max_pool2d(s, (1, 1))
        t1 = F.adaptive_max_pool2d(t, (1, 1))
        feature_loss = feature_loss + seed_pairwise_distance(s1, t1).max()
    expected = F.cross_entropy(s_out, y) + feature_loss
    assert len(s_feats) == 5
    assert _total(losses) == pytest.approx(expected.item(), **TOL)
