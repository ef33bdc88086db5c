"""Shared references for the method tests: plain-Python / NumPy losses and a fixed 'model'.

Imported as ``from tests.method_helpers import ...`` (pytest puts the repo root on the path).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

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
