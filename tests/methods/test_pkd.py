"""PKD (kdlib/methods/pkd.py): the patience loss against loops, the method, and the seed
variant against the seed's code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdlib.methods import create_method
from kdlib.methods.kd import kd_loss
from kdlib.methods.pkd import patience_loss
from tests.methods.helpers import make_batch as _batch
from tests.methods.helpers import make_models as _models
from tests.methods.helpers import np64 as _np
from tests.seed_reference import TOL, reference_batch, seed_forward, seed_kd_loss
from tests.seed_reference import reference_total as _total

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is fastest


def _ref_patience(s: list[np.ndarray], t: list[np.ndarray], normalize: bool) -> float:
    def vec(stages: list[np.ndarray], n: int) -> list[float]:
        out: list[float] = []
        for x in stages:
            v = [float(x[n, c].mean()) for c in range(x.shape[1])]
            norm = math.sqrt(sum(a * a for a in v)) if normalize else 1.0
            out += [a / norm for a in v]
        return out

    diffs = [
        (a - b) ** 2
        for n in range(s[0].shape[0])
        for a, b in zip(vec(s, n), vec(t, n), strict=True)
    ]
    return sum(diffs) / len(diffs)


@pytest.mark.parametrize("normalize", [True, False])
def test_pkd_patience_loss_matches_loops(normalize: bool) -> None:
    torch.manual_seed(0)
    s = [torch.randn(3, 2, 4, 4), torch.randn(3, 5, 2, 2)]
    t = [torch.randn(3, 2, 4, 4), torch.randn(3, 5, 2, 2)]
    ref = _ref_patience([_np(a) for a in s], [_np(a) for a in t], normalize)
    assert patience_loss(s, t, normalize).item() == pytest.approx(ref, rel=1e-5)


def test_pkd_method_is_kd_plus_ten_times_patience() -> None:
    student, teacher = _models()
    method = create_method("pkd", student, teacher).eval()
    x, y = _batch()
    logits, losses = method(x, y)
    _, sf = student(x, features=True)
    t_logits, tf = teacher(x, features=True)
    ref = _ref_patience([_np(a) for a in sf["stages"]], [_np(a) for a in tf["stages"]], True)
    assert set(losses) == {"ce", "kd", "patience"}
    assert losses["patience"].item() == pytest.approx(10 * ref, rel=1e-4)
    assert losses["kd"].item() == pytest.approx(0.5 * kd_loss(logits, t_logits, 5.0).item())


# -- the seed variant (distillers/pkd_distiller.py), against the seed's code ----------


def test_pkd_seed_variant_is_kd_plus_ten_times_mse_of_the_flat_maps() -> None:
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("pkd", student, teacher, variant="seed").eval()
    x, y = reference_batch()
    _, losses = method(x, y)
    s_feats, _, s_out = seed_forward(student, x, is_feat=True)
    t_feats, _, t_out = seed_forward(teacher, x, is_feat=True)
    s_pat = torch.cat([f.view(f.size(0), -1) for f in s_feats], dim=1)
    t_pat = torch.cat([f.view(f.size(0), -1) for f in t_feats], dim=1)
    expected = seed_kd_loss(s_out, t_out, y) + 10 * F.mse_loss(t_pat.float(), s_pat.float())
    assert _total(losses) == pytest.approx(expected.item(), **TOL)
