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


def _ref_sfd(s: np.ndarray, t: np.ndarray, distance: str) -> float:
    best = 0.0
    for n in range(s.shape[0]):
        sv = [s[n, c].max() for c in range(s.shape[1])]
        tv = [t[n, c].max() for c in range(t.shape[1])]
        diffs = [a - b for a, b in zip(sv, tv, strict=True)]
        d = math.sqrt(sum(x * x for x in diffs)) if distance == "l2" else max(map(abs, diffs))
        best = max(best, d)
    return best


def test_sfd_stage_loss_by_hand() -> None:
    # one sample, two channels: pooled student (3, 1), teacher (0, 5) -> diff (3, -4)
    s = torch.tensor([[[[1.0, 3.0]], [[1.0, -2.0]]]])
    t = torch.tensor([[[[0.0, -1.0]], [[5.0, 2.0]]]])
    assert sfd_stage_loss(s, t, "l2").item() == pytest.approx(5.0)
    assert sfd_stage_loss(s, t, "linf").item() == pytest.approx(4.0)


@pytest.mark.parametrize("distance", ["l2", "linf"])
def test_sfd_stage_loss_matches_loops(distance: str) -> None:
    torch.manual_seed(0)
    s, t = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    got = sfd_stage_loss(s, t, distance).item()
    assert got == pytest.approx(_ref_sfd(_np(s), _np(t), distance), rel=1e-5)


def test_sfd_linf_is_what_the_seed_code_computes() -> None:
    """The seed code: pairwise_distance of (N, C, 1, 1) pooled maps, then .max()."""
    torch.manual_seed(0)
    s, t = torch.randn(6, 4, 5, 5), torch.randn(6, 4, 5, 5)
    seed = F.pairwise_distance(F.adaptive_max_pool2d(s, 1), F.adaptive_max_pool2d(t, 1)).max()
    assert sfd_stage_loss(s, t, "linf").item() == pytest.approx(seed.item(), abs=2e-6)


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
        feature_loss = feature_loss + F.pairwise_distance(s1, t1).max()
    expected = F.cross_entropy(s_out, y) + feature_loss
    assert len(s_feats) == 5
    assert _total(losses) == pytest.approx(expected.item(), **TOL)
