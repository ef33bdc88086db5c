"""No distillation (kdlib/methods/nokd.py): plain cross-entropy."""

from __future__ import annotations

import pytest
import torch

from kdlib.methods import create_method
from tests.methods.helpers import INDEX, LABELS, STUDENT, Fixed, hand_ce


def test_nokd_is_cross_entropy() -> None:
    method = create_method("nokd", Fixed(STUDENT))
    _, losses = method(INDEX, torch.tensor(LABELS))
    assert losses["ce"].item() == pytest.approx(hand_ce(STUDENT, LABELS), rel=1e-6)
