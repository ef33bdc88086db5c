"""DKD (kdlib/methods/dkd.py): TCKD and NCKD against the authors' formula and by hand,
and the linear warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlib.methods import create_method
from tests.methods.helpers import (
    INDEX,
    LABELS,
    STUDENT,
    TEACHER,
    Fixed,
    hand_kl,
    np_ce,
    np_log_softmax,
    softmax,
)


def _np_dkd(s: np.ndarray, t: np.ndarray, y: np.ndarray, alpha: float, beta: float, T: float):
    """TCKD and NCKD the way the authors' code computes them (masking with -1000)."""
    b = len(y)
    gt = np.zeros_like(s)
    gt[np.arange(b), y] = 1.0

    def binary(z: np.ndarray) -> np.ndarray:
        p = np.exp(np_log_softmax(z / T))
        return np.stack([(p * gt).sum(1), (p * (1 - gt)).sum(1)], axis=1)

    bs, bt = binary(s), binary(t)
    tckd = (bt * (np.log(bt) - np.log(bs))).sum() * T**2 / b
    ls, lt = np_log_softmax(s / T - 1000.0 * gt), np_log_softmax(t / T - 1000.0 * gt)
    nckd = (np.exp(lt) * (lt - ls)).sum() * T**2 / b
    return alpha * tckd, beta * nckd


@pytest.mark.parametrize(("alpha", "beta", "T"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)])
def test_dkd_matches_the_reference_formula(alpha: float, beta: float, T: float) -> None:
    rng = np.random.default_rng(2)
    s, t = rng.normal(0, 3, (6, 10)), rng.normal(0, 3, (6, 10))
    y = rng.integers(0, 10, 6)
    method = create_method(
        "dkd", Fixed(s.tolist()), Fixed(t.tolist()), alpha=alpha, beta=beta, T=T, warmup=0
    )
    _, losses = method(torch.arange(6), torch.from_numpy(y))
    tckd, nckd = _np_dkd(s, t, y, alpha, beta, T)
    s32 = s.astype(np.float32).astype(float)  # the model holds float32 logits
    assert losses["ce"].item() == pytest.approx(np_ce(s32, y), rel=1e-5)
    assert losses["tckd"].item() == pytest.approx(tckd, rel=1e-4)
    assert losses["nckd"].item() == pytest.approx(nckd, rel=1e-4)


def test_dkd_hand_computation_on_three_classes() -> None:
    """TCKD and NCKD written out with plain floats for the 3-class example."""
    T = 2.0
    method = create_method("dkd", Fixed(STUDENT), Fixed(TEACHER), T=T, alpha=1.0, beta=1.0)
    method.on_epoch_start(20)
    _, losses = method(INDEX, torch.tensor(LABELS))
    tckd = nckd = 0.0
    for s, t, y in zip(STUDENT, TEACHER, LABELS, strict=True):
        ps, pt = softmax(s, T), softmax(t, T)
        tckd += hand_kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        others = [c for c in range(3) if c != y]
        nckd += hand_kl(softmax([t[c] for c in others], T), softmax([s[c] for c in others], T))
    assert losses["tckd"].item() == pytest.approx(T * T * tckd / 2, rel=1e-5)
    assert losses["nckd"].item() == pytest.approx(T * T * nckd / 2, rel=1e-5)


def test_dkd_warms_the_kd_terms_up_linearly() -> None:
    method = create_method("dkd", Fixed(STUDENT), Fixed(TEACHER))
    assert method.hparams == {"alpha": 1.0, "beta": 8.0, "T": 4.0, "warmup": 20, "ce_weight": 1.0}
    method.on_epoch_start(20)
    _, full = method(INDEX, torch.tensor(LABELS))
    for epoch, factor in [(1, 0.05), (10, 0.5), (20, 1.0), (150, 1.0)]:
        method.on_epoch_start(epoch)
        _, losses = method(INDEX, torch.tensor(LABELS))
        assert losses["ce"].item() == pytest.approx(full["ce"].item())
        for term in ("tckd", "nckd"):
            assert losses[term].item() == pytest.approx(factor * full[term].item(), rel=1e-6)
    no_warmup = create_method("dkd", Fixed(STUDENT), Fixed(TEACHER), warmup=0)
    no_warmup.on_epoch_start(1)
    assert no_warmup(INDEX, torch.tensor(LABELS))[1]["nckd"].item() == pytest.approx(
        full["nckd"].item()
    )


def test_dkd_is_zero_kd_when_student_equals_teacher() -> None:
    method = create_method("dkd", Fixed(TEACHER), Fixed(TEACHER), warmup=0)
    _, losses = method(INDEX, torch.tensor(LABELS))
    assert losses["tckd"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["nckd"].item() == pytest.approx(0.0, abs=1e-6)
