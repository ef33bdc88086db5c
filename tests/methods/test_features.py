"""What the feature-based methods share (kdlib/methods/_features.py): gradients reach the
student and connectors but never the frozen teacher, and stage checks that reject bad
student/teacher combinations early."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlib.cli import main
from kdlib.config import TrainConfig
from kdlib.errors import KdlibError
from kdlib.methods import create_method
from kdlib.methods._features import model_info
from kdlib.plan import check
from tests.methods.helpers import make_batch as _batch
from tests.methods.helpers import make_models as _models

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is fastest


@pytest.mark.parametrize(
    ("method", "teacher", "params", "connector_attr"),
    [
        ("sfd", "resnet14", {}, None),
        ("sfd", "wrn16_2", {"projection": "true"}, "projections"),
        ("oh", "wrn16_2", {}, "connectors"),
        ("rkd", "resnet14", {}, None),
        ("pkd", "resnet14", {}, None),
        ("ab", "resnet14", {"init_epochs": 0}, None),
        ("fitnet", "resnet14", {}, "regressor"),
        ("at", "wrn16_2", {}, None),
    ],
)
def test_gradients_reach_student_and_connectors_not_the_frozen_teacher(
    method: str, teacher: str, params: dict, connector_attr: str | None
) -> None:
    student, t_model = _models("resnet8", teacher)
    distiller = create_method(method, student, t_model, **params)
    distiller.train()
    x, y = _batch()
    _, losses = distiller(x, y)
    feature_terms = [k for k in losses if k not in ("ce", "kd")]
    sum(losses.values()).backward()
    assert student.conv1.weight.grad is not None and student.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in t_model.parameters())
    assert not t_model.training
    if connector_attr is not None:
        module = getattr(distiller, connector_attr)
        assert all(p.grad is not None for p in module.parameters())
    # the feature term alone also reaches the student's first convolution
    if feature_terms:
        student.zero_grad(set_to_none=True)
        _, losses = distiller(x, y)
        sum(losses[k] for k in feature_terms).backward()
        assert student.conv1.weight.grad is not None
        assert student.conv1.weight.grad.abs().sum() > 0


BAD = [
    ("sfd", "resnet8", "resnet18", {}, "same number of stages"),
    ("sfd", "resnet8", "resnet18", {"projection": "true"}, "same number of stages"),
    ("sfd", "resnet8", "wrn16_2", {}, "projection=true"),
    ("oh", "resnet8", "resnet18", {}, "same number of stages"),
    ("pkd", "resnet8", "resnet18", {}, "same number of stages"),
    ("pkd", "resnet8", "wrn16_2", {}, "equal channel counts"),
    ("ab", "resnet8", "resnet34", {}, "same number of stages"),
    ("at", "wrn16_1", "resnet10", {}, "same number of stages"),
    ("fitnet", "resnet8", "resnet18", {"hint_stage": "3"}, "hint_stage=3 is out of range"),
    ("sfd", "resnet8", "resnet14", {"variant": "paper"}, "allowed: original or seed"),
    ("oh", "wrn16_1", "wrn16_2", {"variant": "seed"}, "seed paper's ResNets only"),
    ("sfd", "wrn16_1", "wrn28_1", {"variant": "seed"}, "seed paper's ResNets only"),
]


@pytest.mark.parametrize(("method", "student", "teacher", "params", "message"), BAD)
def test_bad_combination_fails_validation(
    method: str, student: str, teacher: str, params: dict, message: str
) -> None:
    cfg = TrainConfig(method=method, student=student, teacher=teacher, method_params=params)
    with pytest.raises(KdlibError, match=message) as e:
        check(cfg)
    assert method in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("method", "student", "teacher", "params", "message"), BAD[:3] + BAD[5:6])
def test_bad_combination_exits_2_from_the_cli(
    method: str,
    student: str,
    teacher: str,
    params: dict,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    argv = ["train", "--method", method, "--student", student, "--teacher", teacher]
    for key, value in params.items():
        argv += ["-p", f"{key}={value}"]
    runs = tmp_path / "runs"
    code = main([*argv, "--epochs", "1", "--quiet", "--runs-dir", str(runs)])
    _, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not runs.exists()


@pytest.mark.parametrize(
    ("method", "student", "teacher", "params"),
    [
        ("sfd", "resnet8", "wrn16_2", {"projection": "true"}),
        ("oh", "resnet8", "wrn40_2", {}),
        ("rkd", "resnet8", "resnet18", {}),
        ("ab", "wrn16_1", "resnet26", {}),
        ("fitnet", "resnet8", "resnet34", {}),
        ("at", "resnet8", "wrn16_4", {}),
        ("pkd", "resnet8", "resnet26", {}),
    ],
)
def test_good_combinations_validate(method: str, student: str, teacher: str, params: dict) -> None:
    check(TrainConfig(method=method, student=student, teacher=teacher, method_params=params))


def test_model_info_shapes() -> None:
    info = model_info("resnet18")
    assert info.channels == [64, 128, 256, 512]
    assert info.sizes == [(32, 32), (16, 16), (8, 8), (4, 4)]
    assert info.post_relu == (True,) * 4 and model_info("wrn16_1").post_relu == (False,) * 3
