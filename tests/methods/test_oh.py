"""OH (kdlib/methods/oh.py): the margin, the partial L2, the method's weights, and the
seed variant (teacher in train mode, ReLU-less forward) against the seed's code."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.methods import create_method
from kdlib.methods._features import prerelu_features, stage_weights
from kdlib.methods.oh import margin_from_bn, oh_partial_l2
from kdlib.models import create_model
from tests.methods.helpers import make_batch as _batch
from tests.methods.helpers import make_models as _models
from tests.seed_reference import TOL, reference_batch, seed_extract_feature, seed_forward
from tests.seed_reference import reference_total as _total

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is fastest


def _ref_margin(gamma: float, beta: float) -> float:
    s, m = abs(gamma), beta
    cdf = 0.5 * (1 + math.erf((-m / s) / math.sqrt(2)))
    if cdf > 0.001:
        return -s * math.exp(-((m / s) ** 2) / 2) / math.sqrt(2 * math.pi) / cdf + m
    return -3 * s


def test_oh_margin_matches_gaussian_formula() -> None:
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 0.1]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, -0.3, 1.0]))  # last: P(x<0) ~ 0 -> -3s
    got = margin_from_bn(bn).tolist()
    want = [_ref_margin(g, b) for g, b in [(1.0, 0.0), (-2.0, 1.0), (0.5, -0.3), (0.1, 1.0)]]
    assert got == pytest.approx(want, rel=1e-5)
    assert got[0] == pytest.approx(-math.sqrt(2 / math.pi), rel=1e-6)  # half-normal mean
    assert got[3] == pytest.approx(-0.3)


def test_oh_partial_l2_by_hand() -> None:
    source = torch.tensor([1.0, -1.0, 0.2, 0.5, -0.3]).view(1, 1, 1, 5)
    target = torch.tensor([-2.0, -2.0, -0.1, 1.0, -0.1]).view(1, 1, 1, 5)
    margin = torch.tensor([-0.5]).view(1, 1, 1, 1)
    # 1.5^2 (below margin: target -> margin) + 0 + 0.3^2 + 0.5^2 (target > 0) + 0
    assert oh_partial_l2(source, target, margin).item() == pytest.approx(2.59)


def test_oh_partial_l2_matches_the_seed_codes_three_cases() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    m = -torch.rand(1, 3, 1, 1)
    ref = 0.0
    for idx in np.ndindex(*s.shape):
        a, b, mm = float(s[idx]), float(t[idx]), float(m[0, idx[1], 0, 0])
        if a > mm and b <= mm:
            ref += (a - mm) ** 2
        elif (a > b and mm < b <= 0) or b > 0:  # the seed code's second and third cases
            ref += (a - b) ** 2
    assert oh_partial_l2(s, t, m).item() == pytest.approx(ref, rel=1e-5)


def test_oh_method_distance_weights_and_normalisation() -> None:
    student, teacher = _models("resnet8", "wrn16_2")
    method = create_method("oh", student, teacher).eval()
    x, y = _batch()
    _, losses = method(x, y)
    _, sf = student(x, features=True)
    _, tf = teacher(x, features=True)
    s_pre, t_pre = prerelu_features(student, sf), prerelu_features(teacher, tf)
    expected = 0.0
    for i, w in enumerate(stage_weights(3)):
        src = method.connectors[i](s_pre[i])
        expected += w * oh_partial_l2(src, t_pre[i], getattr(method, f"margin{i}")).item()
    assert stage_weights(3) == [0.25, 0.5, 1.0]
    assert losses["oh"].item() == pytest.approx(1e-3 * expected / 4, rel=1e-5)


def test_oh_wrn_prerelu_features_are_the_next_bn() -> None:
    model = create_model("wrn16_2").eval()
    x, _ = _batch(2)
    _, feats = model(x, features=True)
    pre = prerelu_features(model, feats)
    assert torch.allclose(pre[0], model.layer2.layer[0].bn1(feats["stages"][0]))
    assert torch.allclose(pre[2], model.bn1(feats["stages"][2]))


def test_oh_teacher_frozen_by_default_and_seed_variant_runs_teacher_in_train_mode() -> None:
    student, teacher = _models()
    frozen = create_method("oh", student, teacher)
    frozen.train()
    assert not teacher.training
    assert frozen.record()["teacher_frozen"] is True

    student, teacher = _models()
    seed = create_method("oh", student, teacher, variant="seed")
    seed.train()
    assert teacher.training
    before = teacher.layer1[0].bn1.running_mean.clone()
    x, y = _batch()
    sum(seed(x, y)[1].values()).backward()
    assert not torch.equal(before, teacher.layer1[0].bn1.running_mean)  # batch statistics
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not any(p is q for p in seed.trainable_parameters() for q in teacher.parameters())
    record = seed.record()
    assert record["teacher_frozen"] is False and record["variant"] == "seed"


# -- the seed variant (distillers/oh_distiller.py), against the seed's code -----------


def seed_oh_margin(bn: nn.BatchNorm2d) -> Tensor:
    out = []
    for s, m in zip(bn.weight.data, bn.bias.data, strict=True):
        s, m = abs(s.item()), m.item()
        cdf = 0.5 * (1 + math.erf((-m / s) / math.sqrt(2)))  # norm.cdf(-m / s)
        if cdf > 0.001:
            out.append(-s * math.exp(-((m / s) ** 2) / 2) / math.sqrt(2 * math.pi) / cdf + m)
        else:
            out.append(-3 * s)
    return torch.tensor(out).view(1, -1, 1, 1)


def seed_oh_distillation_loss(source: Tensor, target: Tensor, margin: Tensor) -> Tensor:
    loss = (
        (source - margin) ** 2 * ((source > margin) & (target <= margin)).float()
        + (source - target) ** 2 * ((source > target) & (target > margin) & (target <= 0)).float()
        + (source - target) ** 2 * (target > 0).float()
    )
    return torch.abs(loss).sum()


def test_oh_seed_variant_is_the_seed_loss_on_the_relu_less_forward() -> None:
    student, teacher = _models()
    ref_s, ref_t = copy.deepcopy(student), copy.deepcopy(teacher)
    method = create_method("oh", student, teacher, variant="seed")
    connectors = copy.deepcopy(method.connectors)
    method.train()
    assert teacher.training  # the seed keeps its teacher in train mode
    x, y = reference_batch()
    logits, losses = method(x, y)

    ref_s.train(), ref_t.train(), connectors.train()
    s_feats, s_out = seed_extract_feature(ref_s, x)
    t_feats, _ = seed_extract_feature(ref_t, x)
    bns = [getattr(ref_t, f"layer{i}")[-1].bn2 for i in (1, 2, 3)]  # get_bn_before_relu
    distill = 0.0
    for i in range(3):
        src = connectors[i](s_feats[i])
        distill = distill + seed_oh_distillation_loss(
            src, t_feats[i].detach(), seed_oh_margin(bns[i])
        ) / 2 ** (3 - i - 1)
    expected = F.cross_entropy(s_out, y) + distill / x.shape[0] / 1000
    torch.testing.assert_close(logits, s_out)
    assert _total(losses) == pytest.approx(expected.item(), **TOL)
    # the teacher's running statistics moved as in the seed (batch statistics)
    torch.testing.assert_close(teacher.layer1[0].bn1.running_mean, ref_t.layer1[0].bn1.running_mean)

    # OHTrainer.validate evaluates the student with use_relu=False
    method.eval()
    ref_s.eval()
    with torch.no_grad():
        torch.testing.assert_close(student(x), seed_forward(ref_s, x, use_relu=False))
    assert method.record()["variant"] == "seed"
    assert "ReLU-less" in method.record()["student_forward"]
    # the teacher is ReLU-less only inside the loss: its accuracy is measured as it is
    assert teacher.relu_after_stem and teacher.relu_between_stages


def test_oh_original_variant_keeps_the_relus_and_a_frozen_teacher() -> None:
    student, teacher = _models()
    method = create_method("oh", student, teacher)
    method.train()
    assert not teacher.training
    x, _ = reference_batch()
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(student(x), seed_forward(student, x, use_relu=True))
