"""MKD (kdlib/methods/mkd.py): several frozen teachers, per-teacher or averaged targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from kdlib.methods import create_method
from tests.methods.helpers import (
    INDEX,
    LABELS,
    STUDENT,
    TEACHER,
    Fixed,
    hand_ce,
    hand_kd,
    hand_kl,
    softmax,
)
from tests.methods.helpers import cli_error as _cli_error
from tests.methods.helpers import total as _total

TEACHER2 = [[-1.0, 0.0, 2.5], [1.5, 0.0, 0.0]]


@pytest.mark.parametrize(("T", "lam"), [(5.0, 0.5), (2.0, 0.0), (4.0, 1.0)])
def test_mkd_is_ce_plus_the_mean_of_per_teacher_kd(T: float, lam: float) -> None:
    teachers = nn.ModuleList([Fixed(TEACHER, False), Fixed(TEACHER2, False)])
    method = create_method("mkd", Fixed(STUDENT), teachers, T=T, **{"lambda": lam})
    logits, losses = method(INDEX, torch.tensor(LABELS))
    kd = (hand_kd(STUDENT, TEACHER, T) + hand_kd(STUDENT, TEACHER2, T)) / 2
    expected = (1 - lam) * hand_ce(STUDENT, LABELS) + lam * kd
    assert set(losses) == {"ce", "kd"}
    assert _total(losses) == pytest.approx(expected, rel=1e-5)
    assert torch.equal(logits, torch.tensor(STUDENT))


def test_mkd_mean_probs_variant_distils_the_averaged_teacher() -> None:
    T = 3.0
    method = create_method(
        "mkd", Fixed(STUDENT), [Fixed(TEACHER), Fixed(TEACHER2)], T=T, target="mean_probs"
    )
    _, losses = method(INDEX, torch.tensor(LABELS))
    kl = 0.0
    for s, t1, t2 in zip(STUDENT, TEACHER, TEACHER2, strict=True):
        mean = [(a + b) / 2 for a, b in zip(softmax(t1, T), softmax(t2, T), strict=True)]
        kl += hand_kl(mean, softmax(s, T))
    assert losses["kd"].item() == pytest.approx(0.5 * T * T * kl / 2, rel=1e-5)


def test_mkd_teachers_are_frozen() -> None:
    t1, t2 = nn.Linear(4, 3), nn.Linear(4, 3)
    method = create_method("mkd", nn.Linear(4, 3), nn.ModuleList([t1, t2]))
    method.train()
    assert not t1.training and not t2.training
    _, losses = method(torch.randn(5, 4), torch.randint(0, 3, (5,)))
    sum(losses.values()).backward()
    assert all(p.grad is None and not p.requires_grad for p in [*t1.parameters(), *t2.parameters()])
    assert method.record()["num_teachers"] == 2


@pytest.mark.parametrize("teachers", [["--teacher", "resnet20"], []])
def test_mkd_without_two_teachers_fails_early(
    teachers: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--method", "mkd", *teachers, "--runs-dir", str(tmp_path / "r"), "--quiet"]
    assert "teacher" in _cli_error(argv, capsys)


def test_mkd_with_one_teacher_names_the_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--method", "mkd", "--teacher", "resnet20", "--runs-dir", str(tmp_path)]
    assert "at least two teachers, got 1" in _cli_error(argv, capsys)
