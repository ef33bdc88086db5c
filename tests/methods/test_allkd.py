"""allkd (kdlib/methods/allkd.py): one KD run per teacher, and its early errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlib.config import TrainConfig
from tests.methods.helpers import cli_error as _cli_error
from tests.methods.helpers import expand as _expand


def test_allkd_default_is_one_kd_run_per_paper_teacher() -> None:
    runs = _expand(TrainConfig(method="allkd", student="resnet8"))
    assert [r.teacher for r in runs] == [
        "resnet8",
        "resnet14",
        "resnet20",
        "resnet26",
        "resnet32",
        "resnet44",
        "resnet56",
    ]
    for run in runs:
        assert (run.method, run.grid, run.student) == ("kd", "allkd", "resnet8")
        assert run.teacher_checkpoint is None  # trained first by the loop
        assert run.method_params == {"T": 5.0, "lambda": 0.5}


def test_allkd_takes_teachers_and_checkpoints_from_the_flags(
    teacher_checkpoints: dict[str, str],
) -> None:
    names = ["resnet14", "resnet20", "wrn16_1"]
    paths = [teacher_checkpoints[n] for n in names]
    cfg = TrainConfig(
        method="allkd",
        teacher=",".join(names),
        teacher_checkpoint=",".join(paths),
        method_params={"T": "4", "lambda": "0.7"},
    )
    runs = _expand(cfg)
    assert [(r.teacher, r.teacher_checkpoint) for r in runs] == list(zip(names, paths, strict=True))
    assert all(r.method_params == {"T": 4.0, "lambda": 0.7} for r in runs)
    assert all(r.grid == "allkd" and r.method == "kd" for r in runs)


def test_allkd_teachers_param() -> None:
    cfg = TrainConfig(method="allkd", method_params={"teachers": "resnet20, resnet32"})
    assert [r.teacher for r in _expand(cfg)] == ["resnet20", "resnet32"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-p", "teachers=resnet8,resnet999"], "resnet999"),
        (["-p", "teachers=resnet8,resnet8"], "duplicates"),
        (["--teacher", "resnet8,resnet14", "-p", "teachers=resnet20"], "not both"),
    ],
)
def test_allkd_bad_teachers_fail_early(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--method", "allkd", "--runs-dir", str(tmp_path / "r"), "--quiet", *extra]
    assert message in _cli_error(argv, capsys)
