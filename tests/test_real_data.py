"""On the real lossless CIFAR-10: the released checkpoints score their published accuracies,
and a short KD run from the released teacher learns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdlib.cli import main
from kdlib.runs import RunRecord

pytestmark = pytest.mark.slow  # the real CIFAR-10 and the released checkpoints

# Reported CIFAR-10 test accuracies of released checkpoints, one of each kind: the study's
# student and teacher, and a wide ResNet. Each costs a forward pass over all 10,000 test
# images (15-20 s on CI's CPU); the other five depths run the same block code, all eight
# load strictly (tests/models/test_checkpoints.py), and every study run records its
# teachers' accuracy (README lists all eight).
REPORTED = {
    "resnet8_cifar10.pth": ("resnet8", 89.59),
    "resnet26_cifar10.pth": ("resnet26", 93.41),
    "WRN16_1_cifar10.pth": ("wrn16_1", 91.75),
}


@pytest.mark.parametrize("filename", sorted(REPORTED))
def test_released_checkpoint_scores_its_reported_accuracy(
    filename: str, shared_data: Path, real_cifar10_cache: Path, capsys: pytest.CaptureFixture
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
            str(real_cifar10_cache),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 10000
    assert round(result["accuracy"], 2) == reported


def test_short_kd_run_from_the_released_teacher_learns(
    shared_data: Path, real_cifar10_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture
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
            str(real_cifar10_cache),
        ]
    )
    assert code == 0
    rec = RunRecord(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = rec.metrics()
    assert metrics["status"] == "completed"
    assert metrics["teacher_test_acc"] == pytest.approx(89.59)
    assert metrics["final_test_acc"] > 25.0  # chance is 10%
    assert rec.config()["dataset_fingerprint"] and rec.config()["train_size"] == 2000
