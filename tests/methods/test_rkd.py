"""RKD (kdlib/methods/rkd.py): distance and angle losses against loops, their float32
under autocast, the method's terms, and the seed variant against the seed's code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.methods import create_method
from kdlib.methods.kd import kd_loss
from kdlib.methods.rkd import rkd_angle_loss, rkd_distance_loss
from tests.methods.helpers import make_batch as _batch
from tests.methods.helpers import make_models as _models
from tests.methods.helpers import np64 as _np
from tests.methods.helpers import np_ce
from tests.seed_reference import TOL, reference_batch, seed_forward, seed_kd_loss
from tests.seed_reference import reference_total as _total

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is fastest


def _huber_mean(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.where(d < 1, 0.5 * d * d, d - 0.5).mean())


def _ref_rkd_distance(s: np.ndarray, t: np.ndarray) -> float:
    def dists(e: np.ndarray) -> np.ndarray:
        n = len(e)
        d = np.array(
            [[math.dist(e[i], e[j]) if i != j else 0.0 for j in range(n)] for i in range(n)]
        )
        return d / d[~np.eye(n, dtype=bool)].mean()

    return _huber_mean(dists(s), dists(t))


def _ref_rkd_angle(s: np.ndarray, t: np.ndarray) -> float:
    def unit(v: np.ndarray) -> np.ndarray:
        return v / max(np.linalg.norm(v), 1e-12)

    def angles(e: np.ndarray) -> np.ndarray:
        n = len(e)
        return np.array(
            [
                unit(e[j] - e[i]) @ unit(e[k] - e[i])
                for i in range(n)
                for j in range(n)
                for k in range(n)
            ]
        )

    return _huber_mean(angles(s), angles(t))


def test_rkd_losses_match_loops() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(5, 3), torch.randn(5, 4) * 3  # embedding sizes may differ
    assert rkd_distance_loss(s, t).item() == pytest.approx(
        _ref_rkd_distance(_np(s), _np(t)), rel=1e-5
    )
    assert rkd_angle_loss(s, t).item() == pytest.approx(_ref_rkd_angle(_np(s), _np(t)), rel=1e-5)


def test_rkd_is_invariant_to_scale_and_translation() -> None:
    torch.manual_seed(0)
    t = torch.randn(6, 8)
    s = 3.0 * t + 1.0
    assert rkd_distance_loss(s, t).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_angle_loss(s, t).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss", [rkd_distance_loss, rkd_angle_loss])
def test_rkd_losses_are_float32_under_bf16_autocast(loss) -> None:
    """Training runs under bf16 autocast; the RKD terms must still be computed in float32
    (bf16 matmuls lose ~20% on distances of offset, post-ReLU-like embeddings)."""
    torch.manual_seed(0)
    s = torch.relu(torch.randn(8, 64)) + 3.0
    t = 2 * torch.relu(torch.randn(8, 256)) + 3.0
    expected = loss(s, t).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(s, t)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-3)


def test_rkd_distance_loss_of_a_single_sample_is_zero() -> None:
    assert rkd_distance_loss(torch.randn(1, 4), torch.randn(1, 6)).item() == 0.0


def test_rkd_method_terms_and_seed_kd_variant() -> None:
    student, teacher = _models()
    method = create_method("rkd", student, teacher).eval()
    x, y = _batch()
    logits, losses = method(x, y)
    _, sf = student(x, features=True)
    t_logits, tf = teacher(x, features=True)
    s_e, t_e = _np(sf["embedding"]), _np(tf["embedding"])
    assert set(losses) == {"ce", "rkd_dist", "rkd_angle"}
    assert losses["rkd_dist"].item() == pytest.approx(25 * _ref_rkd_distance(s_e, t_e), rel=1e-4)
    assert losses["rkd_angle"].item() == pytest.approx(50 * _ref_rkd_angle(s_e, t_e), rel=1e-4)

    seed = create_method("rkd", student, teacher, variant="seed").eval()
    assert seed.hparams["lambda"] == 0.5  # the seed variant's default
    _, losses = seed(x, y)
    assert losses["kd"].item() == pytest.approx(0.5 * kd_loss(logits, t_logits, 5.0).item())
    assert losses["ce"].item() == pytest.approx(0.5 * np_ce(logits, y), rel=1e-5)
    assert seed.record()["variant"] == "seed"


# -- the seed variant (distillers/rkd_distiller.py), against the seed's code ----------


def seed_pdist(e: Tensor, eps: float = 1e-12) -> Tensor:
    e_square = e.pow(2).sum(dim=1)
    prod = e @ e.t()
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * prod).clamp(min=eps).sqrt()
    res = res.clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def seed_rkd_distance(student: Tensor, teacher: Tensor) -> Tensor:
    t_d = seed_pdist(teacher)
    t_d = t_d / t_d[t_d > 0].mean()
    d = seed_pdist(student)
    d = d / d[d > 0].mean()
    return F.smooth_l1_loss(d, t_d)


def seed_rkd_angle(student: Tensor, teacher: Tensor) -> Tensor:
    td = teacher.unsqueeze(0) - teacher.unsqueeze(1)
    norm_td = F.normalize(td, p=2, dim=2)
    t_angle = torch.bmm(norm_td, norm_td.transpose(1, 2)).view(-1)
    sd = student.unsqueeze(0) - student.unsqueeze(1)
    norm_sd = F.normalize(sd, p=2, dim=2)
    s_angle = torch.bmm(norm_sd, norm_sd.transpose(1, 2)).view(-1)
    return F.smooth_l1_loss(s_angle, t_angle)


def test_rkd_seed_variant_is_kd_plus_distance_and_angle_without_at() -> None:
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("rkd", student, teacher, variant="seed").eval()
    x, y = reference_batch()
    _, losses = method(x, y)
    _, s_pool, s_out = seed_forward(student, x, is_feat=True)
    _, t_pool, t_out = seed_forward(teacher, x, is_feat=True)
    expected = (
        seed_kd_loss(s_out, t_out, y)
        + 25.0 * seed_rkd_distance(s_pool, t_pool)
        + 50.0 * seed_rkd_angle(s_pool, t_pool)
    )  # its at_loss is computed, never added
    assert _total(losses) == pytest.approx(expected.item(), **TOL)
