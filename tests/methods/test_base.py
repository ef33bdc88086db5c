"""The method interface (kdlib/methods/base.py): the registry, parameters (Param) and what
every Distiller does (a frozen teacher in eval mode, a teacher where one is needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlib.errors import KdlibError
from kdlib.methods import create_method, list_methods, method_class
from tests.methods.helpers import STUDENT, TEACHER, Fixed

NEW_METHODS = ("kdparam", "allkd", "takd", "mkd", "uda", "uda_nokd", "triplet", "dkd")


def test_registry_lists_methods_with_descriptions() -> None:
    assert {"nokd", "kd"} <= set(list_methods())
    for name in list_methods():
        assert method_class(name).description


def test_new_methods_are_registered_with_one_line_descriptions() -> None:
    assert set(NEW_METHODS) <= set(list_methods())
    for name in NEW_METHODS:
        description = method_class(name).description
        assert description and "\n" not in description and len(description) <= 100


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(KdlibError, match="unknown method 'kdd'.*kd, nokd|valid methods: .*kd"):
        method_class("kdd")


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


def test_kd_without_teacher_is_an_error() -> None:
    with pytest.raises(KdlibError, match="needs a teacher"):
        create_method("kd", Fixed(STUDENT))


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
