"""AB (kdlib/methods/ab.py): the activation-boundary loss by hand, the initialisation
phase, KD training afterwards, and the seed variant against the seed's code."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdlib.methods import create_method, method_class, resolve_params
from kdlib.methods._features import prerelu_features, stage_weights
from kdlib.methods.ab import INIT_SCALE, ab_loss
from kdlib.methods.kd import kd_loss
from tests.methods.helpers import make_batch as _batch
from tests.methods.helpers import make_models as _models
from tests.methods.helpers import train_context as _ctx
from tests.seed_reference import TOL, reference_batch, seed_forward, seed_layer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is fastest


def test_ab_loss_by_hand() -> None:
    source = torch.tensor([0.5, -2.0, 0.5, 2.0, -0.5])
    target = torch.tensor([-1.0, -1.0, 1.0, 1.0, 0.0])
    # off & s > -1: 1.5^2; off & s <= -1: 0; on & s <= 1: 0.5^2; on & s > 1: 0; t=0 is off
    assert ab_loss(source, target, 1.0).item() == pytest.approx(2.25 + 0.25 + 0.25)


def test_ab_loss_is_zero_when_boundaries_agree_by_the_margin() -> None:
    target = torch.tensor([-3.0, 2.0, 0.0])
    assert ab_loss(torch.tensor([-1.5, 1.0, -1.0]), target, 1.0).item() == 0.0


def test_ab_init_phase_trains_student_and_connectors_then_drops_them() -> None:
    student, teacher = _models("resnet8", "wrn16_2")  # 16/32/64 -> 32/64/128: connectors
    method = create_method("ab", student, teacher, init_epochs=2)
    x, y = _batch(8)
    loss, agree = method.init_loss(x)
    expected = 0.0
    _, sf = student(x, features=True)
    _, tf = teacher(x, features=True)
    s_pre, t_pre = prerelu_features(student, sf), prerelu_features(teacher, tf)
    for i, w in enumerate(stage_weights(3)):
        expected += w * ab_loss(method.connectors[i](s_pre[i]), t_pre[i]).item()
    assert loss.item() == pytest.approx(INIT_SCALE * expected / 8, rel=1e-4)
    assert agree.shape == (3,) and bool(((agree >= 0) & (agree <= 1)).all())

    conv_before = student.conv1.weight.detach().clone()
    conn_before = method.connectors[0][0].weight.detach().clone()
    teacher_before = [p.detach().clone() for p in teacher.parameters()]
    method.setup(_ctx([_batch(8, seed=2), _batch(8, seed=3)]))
    assert not torch.equal(conv_before, student.conv1.weight)
    assert not torch.equal(conn_before, method.connectors[0][0].weight)
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, teacher.parameters(), strict=True))
    trainable = {id(p) for p in method.trainable_parameters()}
    assert trainable == {id(p) for p in student.parameters()}  # no connectors, no teacher
    record = method.record()
    assert record["init_epochs_done"] == 2 and len(record["init_last_epoch_agreement"]) == 3
    assert record["connectors"] == [True, True, True] and record["teacher_frozen"] is True


def test_ab_training_is_kd_and_no_connectors_for_equal_channels() -> None:
    student, teacher = _models()
    method = create_method("ab", student, teacher, init_epochs=0).eval()
    assert all(isinstance(c, nn.Identity) for c in method.connectors)
    x, y = _batch()
    logits, losses = method(x, y)
    t_logits = teacher(x)
    assert set(losses) == {"ce", "kd"}
    assert losses["kd"].item() == pytest.approx(0.5 * kd_loss(logits, t_logits, 5.0).item())
    method.setup(_ctx([]))
    assert method.record()["init_epochs_done"] == 0


# -- the seed variant (distillers/ab_distiller.py), against the seed's code -----------


def seed_alt_l2(source: Tensor, target: Tensor, margin: float) -> Tensor:
    loss = (source + margin) ** 2 * ((source > -margin) & (target <= 0)).float() + (
        source - margin
    ) ** 2 * ((source <= margin) & (target > 0)).float()
    return torch.abs(loss).sum()


def seed_ab_init_loss(s_net: nn.Module, t_net: nn.Module, x: Tensor) -> Tensor:
    """AB_distill_Resnet.forward + DistillTrainer.calculate_loss (equal channels: the
    connectors are empty Sequentials)."""
    res0_t = F.relu(t_net.bn1(t_net.conv1(x)))
    res1_t = seed_layer(t_net.layer1, res0_t)
    res2_t = seed_layer(t_net.layer2, res1_t)
    res3_t = seed_layer(t_net.layer3, res2_t)
    res0_s = F.relu(s_net.bn1(s_net.conv1(x)))
    res1_s = seed_layer(s_net.layer1, res0_s)
    res2_s = seed_layer(s_net.layer2, res1_s)
    res3_s = seed_layer(s_net.layer3, res2_s)
    n = x.shape[0]
    loss = seed_alt_l2(res3_s, res3_t.detach(), 1.0) / n
    loss = loss + seed_alt_l2(res2_s, res2_t.detach(), 1.0) / n / 2
    loss = loss + seed_alt_l2(res1_s, res1_t.detach(), 1.0) / n / 4
    return loss / 1000 * 3


def test_ab_seed_variant_initialises_with_the_seed_loss_and_schedule() -> None:
    student, teacher = _models("resnet8", "resnet26")  # 64 = 64 channels: no connectors
    teacher.eval()
    ref_s, ref_t = copy.deepcopy(student).train(), copy.deepcopy(teacher)
    x, y = reference_batch()
    with torch.no_grad():
        expected = seed_ab_init_loss(ref_s, ref_t, x).item()

    hparams = resolve_params(method_class("ab"), {"variant": "seed"})
    assert hparams["init_epochs"] == 10  # the seed's DISTILL_EPOCHS
    method = create_method("ab", student, teacher, variant="seed", init_epochs=1)
    method.setup(_ctx([(x, y)]))
    # one batch, one epoch: the recorded loss is the seed's on the initial weights
    assert method.init_stats["init_last_epoch_loss"] == pytest.approx(expected, **TOL)
    # afterwards KD trains with the models' own forward again
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(student(x), seed_forward(student, x))

    # the seed's MultiStepLR over its 10 init epochs: x0.1 after int(3.3) and int(6.6)
    method = create_method("ab", *_models("resnet8", "resnet26"), variant="seed")
    method.setup(_ctx([(x[:2], y[:2])]))
    assert method.init_stats["init_lrs"] == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 4)
    original = create_method("ab", *_models("resnet8", "resnet26"), init_epochs=3)
    original.setup(_ctx([(x[:2], y[:2])]))
    assert original.init_stats["init_lrs"] == pytest.approx([0.1] * 3)
