"""The planner: a request becomes its runs, prerequisites first, each once."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlib.config import TrainConfig
from kdlib.errors import KdlibError
from kdlib.plan import PlannedRun, plan, run_key
from kdlib.sweep import Sweep


def _cfg(**settings) -> TrainConfig:
    return TrainConfig(student="resnet8", epochs=3, seed=1, **settings)


def _shape(planned: list[PlannedRun]) -> list[tuple[str, str, str, str | None]]:
    return [(p.role, p.cfg.method, p.cfg.student, p.cfg.teacher) for p in planned]


def test_a_run_with_a_checkpoint_is_one_run(teacher_checkpoints: dict[str, str]) -> None:
    ckpt = teacher_checkpoints["resnet14"]
    (only,) = plan(_cfg(method="kd", teacher="resnet14", teacher_checkpoint=ckpt))
    assert only.role == "run"
    assert [(t.model, t.checkpoint, t.run) for t in only.teachers] == [("resnet14", ckpt, None)]


def test_a_teacher_without_checkpoint_is_trained_first() -> None:
    teacher, run = plan(_cfg(method="kd", teacher="resnet14", teacher_epochs=2))
    assert _shape([teacher, run]) == [
        ("teacher", "nokd", "resnet14", None),
        ("run", "kd", "resnet8", "resnet14"),
    ]
    assert (teacher.cfg.epochs, teacher.cfg.seed) == (2, 1)  # teacher_epochs, same seed
    assert teacher.cfg.teacher_epochs is None and teacher.cfg.method_params == {}
    assert run.needs() == [teacher.key()]
    assert run.teachers[0].run == teacher.cfg


def test_takd_trains_its_assistant_from_the_teacher_first(
    teacher_checkpoints: dict[str, str],
) -> None:
    ckpt = teacher_checkpoints["resnet20"]
    request = _cfg(method="takd", teacher="resnet20", teacher_checkpoint=ckpt,
                   method_params={"ta": "resnet14", "T": 4})  # fmt: skip
    assistant, run = plan(request)
    assert _shape([assistant, run]) == [
        ("assistant", "kd", "resnet14", "resnet20"),
        ("run", "takd", "resnet8", "resnet20"),
    ]
    assert assistant.cfg.method_params == {"T": 4.0, "lambda": 0.5}
    assert assistant.teachers[0].checkpoint == ckpt
    assert [(t.model, t.run) for t in run.teachers] == [("resnet14", assistant.cfg)]


def test_takd_without_a_checkpoint_trains_teacher_then_assistant_then_student() -> None:
    planned = plan(_cfg(method="takd", teacher="resnet20", method_params={"ta": "resnet14"}))
    assert [p.role for p in planned] == ["teacher", "assistant", "run"]
    assert planned[1].needs() == [planned[0].key()]
    assert planned[2].needs() == [planned[1].key()]


def test_a_grid_shares_its_teacher_and_keeps_the_cell_order() -> None:
    request = _cfg(
        method="kdparam",
        teacher="resnet14",
        method_params={"T_values": "1,4", "lambda_values": "0.5,1"},
    )
    planned = plan(request)
    assert [p.role for p in planned] == ["teacher", "run", "run", "run", "run"]
    cells = [(p.cfg.method_params["T"], p.cfg.method_params["lambda"]) for p in planned[1:]]
    assert cells == [(1.0, 0.5), (1.0, 1.0), (4.0, 0.5), (4.0, 1.0)]
    assert all(p.cfg.grid == "kdparam" and p.needs() == [planned[0].key()] for p in planned[1:])


def test_multi_teacher_trains_only_the_teachers_without_checkpoint(
    teacher_checkpoints: dict[str, str],
) -> None:
    request = _cfg(method="mkd", teacher="resnet14,resnet20",
                   teacher_checkpoint=f"{teacher_checkpoints['resnet14']},")  # fmt: skip
    teacher, run = plan(request)
    assert (teacher.role, teacher.cfg.student) == ("teacher", "resnet20")
    assert [(t.model, t.checkpoint is not None, t.run is not None) for t in run.teachers] == [
        ("resnet14", True, False),
        ("resnet20", False, True),
    ]


def test_a_teacher_free_method_drops_the_teacher_it_was_given(
    teacher_checkpoints: dict[str, str],
) -> None:
    (only,) = plan(_cfg(method="nokd", teacher="resnet14",
                        teacher_checkpoint=teacher_checkpoints["resnet14"]))  # fmt: skip
    assert (only.cfg.teacher, only.cfg.teacher_checkpoint, only.teachers) == (None, None, ())


def test_a_bad_request_is_refused_before_any_plan() -> None:
    with pytest.raises(KdlibError, match="needs a teacher"):
        plan(_cfg(method="kd"))
    with pytest.raises(KdlibError, match="--epochs=0"):
        plan(TrainConfig(epochs=0))


def test_a_sweep_plans_each_shared_run_once(tmp_path: Path) -> None:
    sweep = Sweep.from_dict(
        {
            "name": "s",
            "base": {"teacher": "resnet14", "epochs": 2, "runs_dir": str(tmp_path)},
            "grid": {"method": ["kd", "takd", "nokd"], "seed": [0]},
        }
    )
    planned = sweep.planned()
    assert [(p.role, p.cfg.method, p.cfg.student) for p in planned] == [
        ("teacher", "nokd", "resnet14"),  # trained first once, for kd and for takd's assistant
        ("run", "kd", "resnet8"),
        ("assistant", "kd", "resnet20"),
        ("run", "takd", "resnet8"),
        ("run", "nokd", "resnet8"),
    ]
    assert len({run_key(p.cfg) for p in planned}) == len(planned)
