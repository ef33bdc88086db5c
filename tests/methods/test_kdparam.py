"""kdparam (kdlib/methods/kdparam.py): the T x lambda grid of KD runs, and its early errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from kdlib.config import TrainConfig
from kdlib.methods import create_method
from tests.methods.helpers import INDEX, LABELS, STUDENT, TEACHER, Fixed, hand_ce, hand_kd
from tests.methods.helpers import cli_error as _cli_error
from tests.methods.helpers import expand as _expand
from tests.methods.helpers import total as _total


def test_kdparam_expands_to_the_full_t_by_lambda_product(ckpt: str) -> None:
    cfg = TrainConfig(method="kdparam", student="resnet8", teacher="resnet20", epochs=3)
    cfg.teacher_checkpoint = ckpt
    runs = _expand(cfg)
    temps, lambdas = [1.0, 5.0, 10.0, 15.0, 20.0], [0.1, 0.4, 0.5, 0.7, 1.0]
    assert [r.method_params for r in runs] == [
        {"T": T, "lambda": lam} for T, lam in itertools.product(temps, lambdas)
    ]
    assert len({(r.method_params["T"], r.method_params["lambda"]) for r in runs}) == 25
    for run in runs:
        assert (run.method, run.grid) == ("kd", "kdparam")
        assert (run.student, run.teacher, run.teacher_checkpoint, run.epochs) == (
            "resnet8",
            "resnet20",
            ckpt,
            3,
        )
        # each cell really is a KD run with its own T and lambda (the seed code's sweep
        # never set T): its loss is the hand-computed KD loss of that cell
        kd = create_method("kd", Fixed(STUDENT), Fixed(TEACHER), **run.method_params)
        T, lam = run.method_params["T"], run.method_params["lambda"]
        want = (1 - lam) * hand_ce(STUDENT, LABELS) + lam * hand_kd(STUDENT, TEACHER, T)
        assert _total(kd(INDEX, torch.tensor(LABELS))[1]) == pytest.approx(want, rel=1e-4)
    assert cfg.method == "kdparam" and cfg.grid is None  # the grid's own config is untouched


def test_kdparam_custom_lists() -> None:
    cfg = TrainConfig(
        method="kdparam",
        teacher="resnet20",
        method_params={"T_values": "2, 4", "lambda_values": "0,1"},
    )
    runs = _expand(cfg)
    assert [(r.method_params["T"], r.method_params["lambda"]) for r in runs] == [
        (2.0, 0.0),
        (2.0, 1.0),
        (4.0, 0.0),
        (4.0, 1.0),
    ]


@pytest.mark.parametrize(
    ("param", "field"),
    [
        ("T_values=0,5", "T_values"),
        ("T_values=-1", "T_values"),
        ("T_values=hot,5", "T_values"),
        ("T_values=", "T_values"),
        ("T_values=5,5", "T_values"),
        ("lambda_values=0.5,1.5", "lambda_values"),
        ("lambda_values=-0.1", "lambda_values"),
    ],
)
def test_kdparam_bad_values_fail_early(
    param: str, field: str, ckpt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    err = _cli_error(
        ["train", "--method", "kdparam", "--teacher", "resnet20", "--teacher-checkpoint", ckpt]
        + ["-p", param, "--runs-dir", str(runs), "--quiet"],
        capsys,
    )
    assert field in err
    assert not runs.exists()
