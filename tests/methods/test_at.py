"""AT (kdlib/methods/at.py): the attention loss by hand and against loops, the method, and
the method against its authors' formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from kdlib.methods import create_method
from kdlib.methods.at import at_loss, attention_map
from tests.methods.helpers import make_batch as _batch
from tests.methods.helpers import make_models as _models
from tests.methods.helpers import np64 as _np
from tests.seed_reference import TOL, reference_batch, seed_forward
from tests.seed_reference import reference_total as _total

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is fastest


def test_at_loss_by_hand() -> None:
    # student map mean_c f^2 = (1, 2) -> (1, 2)/sqrt5; teacher (2, 0) -> (1, 0)
    s = torch.tensor([[[[1.0, 0.0]], [[1.0, 2.0]]]])
    t = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]]])
    assert attention_map(s).flatten().tolist() == pytest.approx([1 / 5**0.5, 2 / 5**0.5])
    assert at_loss(s, t).item() == pytest.approx(1 - 1 / 5**0.5, rel=1e-6)


def test_at_loss_matches_loops_with_different_channel_counts() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(3, 4, 5, 5), torch.randn(3, 7, 5, 5)

    def amap(f: np.ndarray, n: int) -> list[float]:
        a = [(f[n, :, i, j] ** 2).mean() for i in range(5) for j in range(5)]
        norm = math.sqrt(sum(v * v for v in a))
        return [v / norm for v in a]

    sq = [
        (a - b) ** 2
        for n in range(3)
        for a, b in zip(amap(_np(s), n), amap(_np(t), n), strict=True)
    ]
    assert at_loss(s, t).item() == pytest.approx(sum(sq) / len(sq), rel=1e-5)


def test_at_method_is_beta_times_sum_over_stages() -> None:
    student, teacher = _models()
    method = create_method("at", student, teacher).eval()
    x, y = _batch()
    _, losses = method(x, y)
    _, sf = student(x, features=True)
    _, tf = teacher(x, features=True)
    total = sum(at_loss(s, t).item() for s, t in zip(sf["stages"], tf["stages"], strict=True))
    assert losses["at"].item() == pytest.approx(1000 * total, rel=1e-5)


# -- against the authors' formula (szagoruyko/attention-transfer) ---------------------


def test_at_is_ce_plus_1000_times_the_authors_at_loss() -> None:
    """szagoruyko/attention-transfer: at(x) = normalize(x.pow(2).mean(1).view(n, -1)),
    at_loss = (at(x) - at(y)).pow(2).mean(), loss = CE + beta * sum(at_losses)."""
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("at", student, teacher).eval()
    x, y = reference_batch()
    _, losses = method(x, y)
    s_feats, _, s_out = seed_forward(student, x, is_feat=True)  # stage outputs
    t_feats, _, _ = seed_forward(teacher, x, is_feat=True)

    def at(f: Tensor) -> Tensor:
        return F.normalize(f.pow(2).mean(1).view(f.size(0), -1))

    at_losses = [(at(s) - at(t)).pow(2).mean() for s, t in zip(s_feats, t_feats, strict=True)]
    expected = F.cross_entropy(s_out, y) + 1000.0 * sum(at_losses)
    assert _total(losses) == pytest.approx(expected.item(), **TOL)
