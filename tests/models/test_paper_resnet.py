"""The seed paper's ResNets (kdlib/models/paper_resnet.py), also against the seed's code."""

from __future__ import annotations

import torch

from kdlib.models import create_model, model_description
from tests.methods.helpers import make_models as _models
from tests.seed_reference import reference_batch as _batch
from tests.seed_reference import seed_forward


def test_paper_resnet_description() -> None:
    assert model_description("resnet8") == (
        "paper ResNet, 3 stages x 1 BasicBlock (16/32/64 ch), 64-ch stem"
    )


def test_paper_resnet_has_no_relu_between_blocks() -> None:
    """Within a stage the paper's blocks add without a ReLU; only the stage output is ReLU'd."""
    model = create_model("resnet14").eval()
    x = torch.randn(2, 64, 32, 32)
    with torch.no_grad():
        first = model.layer1[0](x)
        assert (first < 0).any()
        torch.testing.assert_close(model.layer1[1](first), model.layer1[1].preact(first))


def test_the_seed_forward_transcription_matches_the_released_architecture() -> None:
    """Sanity of the reference: kdlib's paper ResNets compute the seed's ``forward``."""
    student, _ = _models()
    x, _ = _batch()
    student.eval()
    with torch.no_grad():
        torch.testing.assert_close(student(x), seed_forward(student, x))
