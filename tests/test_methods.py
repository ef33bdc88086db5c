"""Distillation methods: losses against hand computations, registry, parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlib.errors import KdlibError
from kdlib.methods import create_method, kd_loss, list_methods, method_class
from tests.method_helpers import INDEX, LABELS, STUDENT, TEACHER, Fixed, hand_ce, hand_kd


@pytest.mark.parametrize("T", [1.0, 4.0, 5.0])
def test_kd_loss_matches_hand_computation(T: float) -> None:
    got = kd_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), T).item()
    assert got == pytest.approx(hand_kd(STUDENT, TEACHER, T), rel=1e-5)


def test_kd_loss_is_zero_when_student_equals_teacher() -> None:
    x = torch.randn(8, 10)
    assert kd_loss(x, x.clone(), 5.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("T", "lam"), [(5.0, 0.5), (2.0, 0.0), (10.0, 1.0), (5.0, 0.7)])
def test_kd_method_total_loss(T: float, lam: float) -> None:
    method = create_method("kd", Fixed(STUDENT), Fixed(TEACHER), T=T, **{"lambda": lam})
    logits, losses = method(INDEX, torch.tensor(LABELS))
    expected = (1 - lam) * hand_ce(STUDENT, LABELS) + lam * hand_kd(STUDENT, TEACHER, T)
    assert set(losses) == {"ce", "kd"}
    assert sum(losses.values()).item() == pytest.approx(expected, rel=1e-5)
    assert torch.equal(logits, torch.tensor(STUDENT))


def test_kd_defaults_are_the_papers() -> None:
    method = create_method("kd", Fixed(STUDENT), Fixed(TEACHER))
    assert method.hparams == {"T": 5.0, "lambda": 0.5}


def test_nokd_is_cross_entropy() -> None:
    method = create_method("nokd", Fixed(STUDENT))
    _, losses = method(INDEX, torch.tensor(LABELS))
    assert losses["ce"].item() == pytest.approx(hand_ce(STUDENT, LABELS), rel=1e-6)


def test_teacher_is_frozen_and_stays_in_eval_mode() -> None:
    teacher = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    student = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    method = create_method("kd", student, teacher)
    method.train()
    assert student.training and not teacher.training
    trainable = {id(p) for p in method.trainable_parameters()}
    assert trainable == {id(p) for p in student.parameters()}
    running_mean = teacher[1].running_mean.clone()
    _, losses = method(torch.randn(6, 3), torch.randint(0, 3, (6,)))
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert torch.equal(teacher[1].running_mean, running_mean)  # eval mode: stats untouched


def test_registry_lists_methods_with_descriptions() -> None:
    assert {"nokd", "kd"} <= set(list_methods())
    for name in list_methods():
        assert method_class(name).description


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(KdlibError, match="unknown method 'kdd'.*kd, nokd|valid methods: .*kd"):
        method_class("kdd")


def test_kd_without_teacher_is_an_error() -> None:
    with pytest.raises(KdlibError, match="needs a teacher"):
        create_method("kd", Fixed(STUDENT))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"T": 0}, "T=0 is out of range"),
        ({"T": -1.0}, "out of range"),
        ({"T": "hot"}, "is not a float"),
        ({"lambda": 1.5}, "0 <= lambda <= 1"),
        ({"lambda": -0.1}, "0 <= lambda <= 1"),
        ({"alpha": 1.0}, "has no parameter 'alpha'"),
    ],
)
def test_bad_parameters_are_rejected(params: dict, message: str) -> None:
    with pytest.raises(KdlibError, match=message):
        create_method("kd", Fixed(STUDENT), Fixed(TEACHER), **params)


def test_string_parameters_from_the_cli_are_converted() -> None:
    method = create_method("kd", Fixed(STUDENT), Fixed(TEACHER), T="4", **{"lambda": "0.7"})
    assert method.hparams == {"T": 4.0, "lambda": 0.7}


def test_the_method_catalogue_agrees_with_the_registry() -> None:
    # The torch-free catalogue (labels, figure order) must describe every registered
    # method as the registry defines it: teacher or not, variants or not, grid or not.
    from kdlib.method_catalogue import BY_NAME
    from kdlib.methods import GridMethod

    assert sorted(BY_NAME) == sorted(list_methods())
    for name, info in BY_NAME.items():
        cls = method_class(name)
        assert info.grid == issubclass(cls, GridMethod), name
        if not info.grid:
            assert info.needs_teacher == cls.needs_teacher, name
        assert info.has_variants == ("variant" in cls.params), name
