"""Every registered model: forward, feature outputs, FX tracing and torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdlib.models import create_model
from tests.models.helpers import PARAMS


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", list(PARAMS))
def test_forward_and_features(name: str, num_classes: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        logits2, feats = model(x, features=True)
    assert logits.shape == (2, num_classes)
    torch.testing.assert_close(logits, logits2)
    assert set(feats) == {"stages", "preact", "embedding"} | (
        set() if name.startswith("wrn") else {"stem"}
    )

    channels = model.stage_channels
    assert len(feats["stages"]) == len(feats["preact"]) == len(channels)
    for i, (stage, pre, ch) in enumerate(
        zip(feats["stages"], feats["preact"], channels, strict=True)
    ):
        side = 32 // 2**i  # first stage keeps the resolution, each later one halves it
        assert stage.shape == pre.shape == (2, ch, side, side)
        if name.startswith("wrn"):
            # pre-activation: no ReLU at the end of a stage, both are the raw stage output
            assert pre is stage
        else:
            torch.testing.assert_close(stage, F.relu(pre))
            assert (pre < 0).any()

    emb = feats["embedding"]
    assert emb.shape == (2, model.embedding_dim)
    assert model.linear.in_features == model.embedding_dim
    torch.testing.assert_close(model.linear(emb), logits)


def test_feature_sizes_per_family() -> None:
    assert create_model("resnet20").embedding_dim == 256  # 64 channels x 2 x 2
    assert create_model("resnet20").stage_channels == [16, 32, 64]
    assert create_model("resnet10").stage_channels == [64, 128, 256, 512]
    assert create_model("resnet10").embedding_dim == 512
    assert create_model("wrn16_2").stage_channels == [32, 64, 128]
    assert create_model("wrn16_2").embedding_dim == 128


@pytest.mark.parametrize("name", ["resnet14", "resnet10", "wrn16_2"])
def test_forward_traces_without_python_control_flow(name: str) -> None:
    """FX symbolic tracing fails on data-dependent Python branches and .item() calls."""
    model = create_model(name).eval()
    traced = torch.fx.symbolic_trace(model, concrete_args={"features": True})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, feats = traced(x, True)
        torch.testing.assert_close(logits, model(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compile imports
def test_forward_compiles_to_one_graph() -> None:
    """No graph breaks under torch.compile (dynamo tracing only: the eager backend)."""
    x = torch.randn(2, 3, 32, 32)
    for name in ("resnet14", "wrn10_1"):
        model = create_model(name).eval()
        compiled = torch.compile(model, backend="eager", fullgraph=True)
        with torch.no_grad():
            logits, _ = compiled(x, features=True)
            torch.testing.assert_close(logits, model(x))
            torch.testing.assert_close(compiled(x), model(x))
