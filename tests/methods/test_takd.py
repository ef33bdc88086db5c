"""TAKD (kdlib/methods/takd.py): the teacher-assistant stage, the student stage, the link
between their runs, and early errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlib.config import TrainConfig
from kdlib.methods import create_method, method_class, resolve_params
from kdlib.plan import check
from tests.methods.helpers import INDEX, LABELS, STUDENT, TEACHER, Fixed, hand_ce, hand_kd
from tests.methods.helpers import cli_error as _cli_error
from tests.methods.helpers import total as _total


def test_takd_teacher_stage_is_kd_from_the_teacher_into_the_ta(ckpt: str) -> None:
    cfg = TrainConfig(
        method="takd",
        student="resnet8",
        teacher="resnet20",
        teacher_checkpoint=ckpt,
        epochs=7,
        seed=3,
        method_params={"ta": "resnet14", "T": "4", "lambda": "0.7"},
        save_weights=True,
    )
    check(cfg)
    cls = method_class("takd")
    stage = cls.teacher_stage(cfg, resolve_params(cls, cfg.method_params))
    assert stage.method == "kd"
    assert (stage.student, stage.teacher, stage.teacher_checkpoint) == (
        "resnet14",
        "resnet20",
        ckpt,
    )
    assert stage.method_params == {"T": 4.0, "lambda": 0.7}
    assert (stage.epochs, stage.seed, stage.dataset) == (7, 3, cfg.dataset)
    assert stage.grid is None
    check(stage)


def test_takd_default_ta_is_resnet20() -> None:
    cls = method_class("takd")
    cfg = TrainConfig(method="takd", teacher="resnet56")
    assert cls.teacher_stage(cfg, resolve_params(cls, {})).student == "resnet20"


def test_takd_student_stage_is_kd_and_records_the_ta() -> None:
    method = create_method("takd", Fixed(STUDENT), Fixed(TEACHER), ta="resnet14", T=4.0)
    _, losses = method(INDEX, torch.tensor(LABELS))
    expected = 0.5 * hand_ce(STUDENT, LABELS) + 0.5 * hand_kd(STUDENT, TEACHER, 4.0)
    assert _total(losses) == pytest.approx(expected, rel=1e-5)
    record = method.record()
    assert record["teacher_assistant"] == "resnet14" and record["teacher_frozen"]


@pytest.mark.parametrize(
    ("param", "message"),
    [("ta=resnet999", "resnet999"), ("ta=", "needs a teacher assistant")],
)
def test_takd_without_a_valid_ta_fails_early(
    param: str, message: str, ckpt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    argv = ["train", "--method", "takd", "--teacher", "resnet20", "--teacher-checkpoint", ckpt]
    err = _cli_error(argv + ["-p", param, "--runs-dir", str(runs), "--quiet"], capsys)
    assert message in err
    assert not runs.exists()


def test_takd_records_both_stages_and_links_them(tiny_data: dict, tmp_path: Path) -> None:
    from kdlib.models import create_model, save_weights
    from kdlib.runs import RunRecord
    from kdlib.train import run_method

    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pt"
    save_weights(create_model("resnet8", 10), teacher)
    runs_dir = tmp_path / "runs"
    cfg = TrainConfig(
        method="takd",
        student="resnet8",
        teacher="resnet8",
        teacher_checkpoint=str(teacher),
        epochs=1,
        val_size=100,
        train_limit=50,
        batch_size=50,
        eval_batch_size=200,
        device="cpu",
        runs_dir=str(runs_dir),
        method_params={"ta": "resnet8", "T": 4.0},
        **tiny_data,
    )
    (student_dir,) = run_method(cfg, progress=False)
    student = RunRecord(student_dir).config()
    ta_dir = Path(student["teacher_run"])
    assert ta_dir.parent == runs_dir and ta_dir != student_dir
    run_names = [p.name for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert sorted(run_names) == sorted([ta_dir.name, student_dir.name])
    ta = RunRecord(ta_dir).config()
    assert (ta["method"], ta["student"], ta["teacher"]) == ("kd", "resnet8", "resnet8")
    assert ta["method_hparams"] == {"T": 4.0, "lambda": 0.5}
    assert student["method"] == "takd" and student["teacher"] == "resnet8"
    assert student["method_record"]["teacher_assistant"] == "resnet8"
    assert RunRecord(ta_dir).metrics()["status"] == "completed"
    assert RunRecord(student_dir).metrics()["status"] == "completed"
