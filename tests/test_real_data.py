"""On the real lossless CIFAR-10: the released checkpoints score their published accuracies,
and a short KD run from the released teacher learns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdlib.cli import main
from kdlib.runs import RunRecord

pytestmark = pytest.mark.slow  # the real CIFAR-10 and the released checkpoints

# Reported CIFAR-10 test accuracies of the seed paper's released checkpoints.
REPORTED = {
    "resnet8_cifar10.pth": ("resnet8", 89.59),
    "resnet14_cifar10.pth": ("resnet14", 92.18),
    "resnet20_cifar10.pth": ("resnet20", 93.02),
    "resnet26_cifar10.pth": ("resnet26", 93.41),
    "resnet32_cifar10.pth": ("resnet32", 93.69),
    "WRN10_1_cifar10.pth": ("wrn10_1", 88.06),
    "WRN16_1_cifar10.pth": ("wrn16_1", 91.75),
    "WRN28_1_cifar10.pth": ("wrn28_1", 92.89),
}
# Each costs a forward pass over all 10,000 test images (15-20 s on CI's CPU), so the
# suite scores one of each kind: the study's student and teacher, and a wide ResNet. The
# other depths run the same block code, every one of the eight loads strictly
# (tests/models/test_checkpoints.py), and every study run records its teachers' accuracy.
SCORED = ["resnet8_cifar10.pth", "resnet26_cifar10.pth", "WRN16_1_cifar10.pth"]


@pytest.fixture
def real_cache(real_cifar10_cache: Path) -> str:
    return str(real_cifar10_cache)


@pytest.mark.parametrize("filename", SCORED)
def test_released_checkpoint_scores_its_reported_accuracy(
    filename: str, shared_data: Path, real_cache: str, capsys: pytest.CaptureFixture
) -> None:
    model, reported = REPORTED[filename]
    ckpt = shared_data / "reference-checkpoints" / filename
    capsys.readouterr()
    code = main(
        [
            "eval",
            "--model",
            model,
            "--checkpoint",
            str(ckpt),
            "--dataset",
            "cifar10",
            "--device",
            "cpu",
            "--data-dir",
            str(shared_data),
            "--cache-dir",
            real_cache,
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 10000
    assert round(result["accuracy"], 2) == reported


def test_short_kd_run_from_the_released_teacher_learns(
    shared_data: Path, real_cache: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = shared_data / "reference-checkpoints" / "resnet8_cifar10.pth"
    code = main(
        [
            "train",
            "--method",
            "kd",
            "--student",
            "resnet8",
            "--teacher",
            "resnet8",
            "--teacher-checkpoint",
            str(ckpt),
            "--epochs",
            "2",
            "--train-limit",
            "2000",
            "--val-size",
            "1000",
            "--device",
            "cpu",
            "--quiet",
            "--runs-dir",
            str(tmp_path),
            "--data-dir",
            str(shared_data),
            "--cache-dir",
            real_cache,
        ]
    )
    assert code == 0
    rec = RunRecord(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = rec.metrics()
    assert metrics["status"] == "completed"
    assert metrics["teacher_test_acc"] == pytest.approx(89.59)
    assert metrics["final_test_acc"] > 25.0  # chance is 10%
    assert rec.config()["dataset_fingerprint"] and rec.config()["train_size"] == 2000
