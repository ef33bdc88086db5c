"""FitNet (kdlib/methods/fitnet.py): the hint loss through the regressor, and the regressor
against RepDistiller's ConvReg."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from torch import nn

from kdlib.methods import create_method
from tests.methods.helpers import make_batch as _batch
from tests.methods.helpers import make_models as _models
from tests.methods.helpers import np64 as _np
from tests.seed_reference import TOL, reference_batch, seed_forward
from tests.seed_reference import reference_total as _total

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny batches: one thread is fastest


@pytest.mark.parametrize(("teacher", "relu"), [("resnet14", True), ("wrn16_2", False)])
def test_fitnet_hint_is_beta_times_mse_of_regressed_middle_stage(teacher: str, relu: bool) -> None:
    student, t_model = _models("resnet8", teacher)
    method = create_method("fitnet", student, t_model).eval()
    assert isinstance(method.regressor[-1], nn.ReLU) is relu
    x, y = _batch()
    _, losses = method(x, y)
    _, sf = student(x, features=True)
    _, tf = t_model(x, features=True)
    r = _np(method.regressor(sf["stages"][1]))
    h = _np(tf["stages"][1])
    assert r.shape == h.shape == (4, t_model.stage_channels[1], 16, 16)
    assert losses["hint"].item() == pytest.approx(100 * float(((r - h) ** 2).mean()), rel=1e-5)


# -- against RepDistiller's ConvReg ---------------------------------------------------


def test_fitnet_regressor_is_repdistillers_convreg() -> None:
    """RepDistiller's ConvReg for equal spatial sizes: Conv2d(s_C, t_C, kernel_size=(1 + s_H
    - t_H, 1 + s_W - t_W)) with its default bias, BN, ReLU; loss CE + 100 * MSE."""
    student, teacher = _models("resnet8", "resnet26")
    method = create_method("fitnet", student, teacher).eval()
    conv, bn = method.regressor[0], method.regressor[1]
    assert conv.kernel_size == (1, 1) and conv.bias is not None
    assert (conv.in_channels, conv.out_channels) == (32, 32)
    x, y = reference_batch()
    _, losses = method(x, y)
    s_feats, _, s_out = seed_forward(student, x, is_feat=True)
    t_feats, _, _ = seed_forward(teacher, x, is_feat=True)
    regressed = F.relu(bn(F.conv2d(s_feats[1], conv.weight, conv.bias)))
    expected = F.cross_entropy(s_out, y) + 100.0 * F.mse_loss(regressed, t_feats[1])
    assert _total(losses) == pytest.approx(expected.item(), **TOL)
