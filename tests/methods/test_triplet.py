"""Triplet (kdlib/methods/triplet.py): KD plus a cosine embedding term, and the seed variant."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlib.methods import create_method
from tests.methods.helpers import INDEX, LABELS, STUDENT, TEACHER, Fixed, hand_ce, hand_kd
from tests.methods.helpers import make_models as _models
from tests.methods.helpers import total as _total
from tests.seed_reference import TOL, reference_total, seed_forward
from tests.seed_reference import reference_batch as _batch

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is fastest


def _hand_one_minus_cos(a: list[list[float]], b: list[list[float]]) -> float:
    total = 0.0
    for u, v in zip(a, b, strict=True):
        dot = sum(x * y for x, y in zip(u, v, strict=True))
        total += 1 - dot / (math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v)))
    return total / len(a)


@pytest.mark.parametrize(("T", "lam", "weight"), [(5.0, 0.5, 0.5), (4.0, 0.3, 2.0)])
def test_triplet_is_kd_plus_weighted_cosine_embedding_loss(
    T: float, lam: float, weight: float
) -> None:
    method = create_method(
        "triplet", Fixed(STUDENT), Fixed(TEACHER), T=T, weight=weight, **{"lambda": lam}
    )
    _, losses = method(INDEX, torch.tensor(LABELS))
    cos = _hand_one_minus_cos(STUDENT, TEACHER)
    assert losses["cosine"].item() == pytest.approx(weight * cos, rel=1e-5)
    expected = (1 - lam) * hand_ce(STUDENT, LABELS) + lam * hand_kd(STUDENT, TEACHER, T)
    assert _total(losses) == pytest.approx(expected + weight * cos, rel=1e-5)
    reference = nn.CosineEmbeddingLoss()(
        torch.tensor(STUDENT), torch.tensor(TEACHER), torch.ones(2)
    )
    assert cos == pytest.approx(reference.item(), rel=1e-5)


def test_triplet_seed_code_variant_replaces_ce_with_the_cosine_term() -> None:
    method = create_method("triplet", Fixed(STUDENT), Fixed(TEACHER), variant="seed")
    _, losses = method(INDEX, torch.tensor(LABELS))
    assert set(losses) == {"cosine", "kd"}
    expected = 0.5 * _hand_one_minus_cos(STUDENT, TEACHER) + 0.5 * hand_kd(STUDENT, TEACHER, 5.0)
    assert _total(losses) == pytest.approx(expected, rel=1e-5)
    assert "no CE" in method.record()["loss"]


# -- the seed variant (trainer.py TripletTrainer), against the seed's code ------------


def test_triplet_seed_variant_is_the_seed_loss() -> None:
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("triplet", student, teacher, variant="seed").eval()
    x, y = _batch()
    _, losses = method(x, y)
    out_s, out_t = seed_forward(student, x), seed_forward(teacher, x)
    lam, T = 0.5, 5.0
    cos = F.cosine_embedding_loss(out_s, out_t, torch.ones(y.shape[0]))
    kl = F.kl_div(F.log_softmax(out_s / T, dim=1), F.softmax(out_t / T, dim=1), reduction="sum")
    expected = (1 - lam) * cos + lam * T * T * kl / y.shape[0]
    assert reference_total(losses) == pytest.approx(expected.item(), **TOL)
