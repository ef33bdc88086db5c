"""Shared by the method tests: plain-Python / NumPy losses, a fixed 'model', real models on
small batches, and the CLI and grid helpers.

Imported as ``from tests.methods.helpers import ...`` (pytest puts the repo root on the path).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from kdlib.cli import main
from kdlib.config import TrainConfig
from kdlib.methods import TrainContext, method_class, resolve_params
from kdlib.models import create_model
from kdlib.plan import check

# ---------------------------------------------------------------- plain-Python references


def softmax(row: list[float], T: float) -> list[float]:
    e = [math.exp(v / T) for v in row]
    return [v / sum(e) for v in e]


def hand_kl(p: list[float], q: list[float]) -> float:
    """KL(p || q) for probability lists."""
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def hand_kd(student: list[list[float]], teacher: list[list[float]], T: float) -> float:
    """T^2 * batch mean of KL(softmax(teacher/T) || softmax(student/T))."""
    pairs = zip(student, teacher, strict=True)
    total = sum(hand_kl(softmax(t, T), softmax(s, T)) for s, t in pairs)
    return T * T * total / len(student)


def hand_ce(logits: list[list[float]], labels: list[int]) -> float:
    """Batch mean of -log softmax(logits)[label]."""
    return -sum(math.log(softmax(r, 1.0)[y]) for r, y in zip(logits, labels, strict=True)) / len(
        labels
    )


# ---------------------------------------------------------------- NumPy references


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def np_kd(student: np.ndarray, teacher: np.ndarray, T: float) -> float:
    """T^2 * batch mean of KL(softmax(teacher/T) || softmax(student/T))."""
    ls, lt = np_log_softmax(student / T), np_log_softmax(teacher / T)
    return float(T * T * (np.exp(lt) * (lt - ls)).sum(axis=1).mean())


def np_ce(logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Cross-entropy in float64: -log_softmax gathered at the labels, batch mean."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().double().cpu().numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    return float(-np_log_softmax(logits)[np.arange(len(labels)), labels].mean())


# ---------------------------------------------------------------- a hand-checkable 'model'


class Fixed(nn.Module):
    """A 'model' mapping input row i to fixed logits row i (hand-checkable losses)."""

    def __init__(self, logits: list[list[float]], trainable: bool = True):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits), requires_grad=trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x.long().flatten()]


STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
TEACHER = [[2.0, 1.0, 0.0], [0.5, 0.5, 4.0]]
LABELS = [1, 2]
INDEX = torch.tensor([0, 1])  # the inputs: rows 0 and 1 of the Fixed logits


# ---------------------------------------------------------------- real models, small batches


def np64(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().numpy()


def make_models(student: str = "resnet8", teacher: str = "resnet14") -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return create_model(student, 10), create_model(teacher, 10)


def make_batch(n: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def train_context(loader: list, epochs: int = 1) -> TrainContext:
    return TrainContext(
        epochs=epochs,
        steps_per_epoch=len(loader),
        num_classes=10,
        mean=torch.zeros(3),
        std=torch.ones(3),
        device=torch.device("cpu"),
        seed=0,
        train_loader=loader,
    )


def total(losses: dict[str, torch.Tensor]) -> float:
    return float(sum(losses.values()).item())


# ---------------------------------------------------------------- the CLI and grid methods


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``kdlib`` expecting exit code 2; return its one-line message."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdlib: error:") and "\n" not in err, err
    return err


def expand(cfg: TrainConfig) -> list[TrainConfig]:
    cls = method_class(cfg.method)
    check(cfg)
    return cls.expand(cfg, resolve_params(cls, cfg.method_params))
