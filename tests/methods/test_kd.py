"""KD (kdlib/methods/kd.py): the loss and the method against hand computations."""

from __future__ import annotations

import pytest
import torch

from kdlib.methods import create_method, kd_loss
from tests.methods.helpers import INDEX, LABELS, STUDENT, TEACHER, Fixed, hand_ce, hand_kd


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
