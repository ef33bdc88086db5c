"""Model zoo: names, parameter counts, feature outputs and safe checkpoint loading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdlib.errors import CheckpointError, KdlibError
from kdlib.models import (
    create_model,
    list_models,
    load_state_dict,
    load_weights,
    model_description,
    save_weights,
)

# Parameter counts for 10 classes. The paper ResNets and WRN-10/16/28-1 are the counts the
# seed paper reports for its released checkpoints; the rest are the usual published sizes.
PARAMS = {
    "resnet8": 89_322,
    "resnet14": 186_538,
    "resnet20": 283_754,
    "resnet26": 380_970,
    "resnet32": 478_186,
    "resnet44": 672_618,
    "resnet56": 867_050,
    "resnet10": 4_903_242,
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "resnet10_seed": 4_903_242,  # the same modules as resnet10/18/34: another forward
    "resnet18_seed": 11_173_962,
    "resnet34_seed": 21_282_122,
    "wrn10_1": 77_850,
    "wrn16_1": 175_066,
    "wrn16_2": 691_674,
    "wrn16_4": 2_748_890,
    "wrn22_4": 4_298_970,
    "wrn28_1": 369_498,
    "wrn28_2": 1_467_610,
    "wrn40_1": 563_930,
    "wrn40_2": 2_243_546,
}

# Released checkpoint file -> (model name, number of classes).
REFERENCE = {
    **{
        f"resnet{d}_cifar{c}.pth": (f"resnet{d}", c) for d in (8, 14, 20, 26, 32) for c in (10, 100)
    },
    "resnet8_cifar10_distilled.pth": ("resnet8", 10),
    "WRN10_1_cifar10.pth": ("wrn10_1", 10),
    "WRN16_1_cifar10.pth": ("wrn16_1", 10),
    "WRN28_1_cifar10.pth": ("wrn28_1", 10),
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- registry ---------------------------------------------------------------------------


def test_registry_lists_exactly_the_known_models() -> None:
    assert sorted(list_models()) == sorted(PARAMS)
    for name in list_models():
        desc = model_description(name)
        assert desc and "\n" not in desc


def test_paper_resnet_description() -> None:
    assert model_description("resnet8") == (
        "paper ResNet, 3 stages x 1 BasicBlock (16/32/64 ch), 64-ch stem"
    )


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_count(name: str) -> None:
    assert n_params(create_model(name)) == PARAMS[name]


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(KdlibError) as info:
        create_model("resnet9000")
    msg = str(info.value)
    assert "resnet9000" in msg and "see `kdlib models`" in msg
    for name in PARAMS:
        assert name in msg
    with pytest.raises(KdlibError, match="valid names"):
        model_description("nope")


def test_names_are_case_insensitive() -> None:
    assert n_params(create_model("WRN10_1")) == PARAMS["wrn10_1"]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_num_classes(bad: object) -> None:
    with pytest.raises(KdlibError, match="num_classes"):
        create_model("resnet8", num_classes=bad)  # type: ignore[arg-type]


# --- forward and features ---------------------------------------------------------------


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


def test_paper_resnet_has_no_relu_between_blocks() -> None:
    """Within a stage the paper's blocks add without a ReLU; only the stage output is ReLU'd."""
    model = create_model("resnet14").eval()
    x = torch.randn(2, 64, 32, 32)
    with torch.no_grad():
        first = model.layer1[0](x)
        assert (first < 0).any()
        torch.testing.assert_close(model.layer1[1](first), model.layer1[1].preact(first))


# --- checkpoint loading against the released files ----------------------------------------


@pytest.mark.shared_data
def test_reference_checkpoint_list_is_complete(reference_checkpoints: Path) -> None:
    assert sorted(p.name for p in reference_checkpoints.glob("*.pth")) == sorted(REFERENCE)


@pytest.mark.shared_data
@pytest.mark.parametrize("filename", sorted(REFERENCE))
def test_reference_checkpoint_loads_strictly(reference_checkpoints: Path, filename: str) -> None:
    name, num_classes = REFERENCE[filename]
    path = reference_checkpoints / filename
    model = load_weights(create_model(name, num_classes), path, strict=True)

    raw = torch.load(path, map_location="cpu", weights_only=True)["model_state_dict"]
    expected = {k.removeprefix("module."): v for k, v in raw.items()}
    assert load_state_dict(path).keys() == expected.keys()
    loaded = model.state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.shared_data
def test_reference_wrong_class_count(reference_checkpoints: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        load_weights(create_model("resnet8", 10), reference_checkpoints / "resnet8_cifar100.pth")
    msg = str(info.value)
    assert "checkpoint has 100 classes but the model has 10" in msg
    assert "architecture" not in msg


@pytest.mark.shared_data
def test_reference_wrong_architecture(reference_checkpoints: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        load_weights(create_model("resnet20"), reference_checkpoints / "WRN16_1_cifar10.pth")
    msg = str(info.value)
    assert "wrong architecture: the checkpoint is `wrn16_1`, the model is `resnet20`" in msg


# --- checkpoint loading: safety, formats and errors (no shared data needed) ------------------

_UNPICKLED: list[str] = []


def _record_unpickling() -> object:
    _UNPICKLED.append("ran")
    return object()


class Evil:
    """Unpickling this would run ``_record_unpickling``: a stand-in for malicious code."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_record_unpickling, ())


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": create_model("resnet8").state_dict(), "evil": Evil()}, path)
    _UNPICKLED.clear()
    with pytest.raises(CheckpointError, match="arbitrary Python objects") as info:
        load_weights(create_model("resnet8"), path)
    assert "for safety" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="arbitrary Python objects"):
        load_state_dict(path)
    assert _UNPICKLED == []


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "model.pth"
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_state_dict(path)


@pytest.mark.parametrize("content", [b"", b"definitely not a checkpoint" * 20])
def test_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_state_dict(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    save_weights(create_model("resnet8"), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_state_dict(path)


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "_orig_mod.module."])
@pytest.mark.parametrize("wrapper", [None, "model_state_dict", "state_dict", "model"])
def test_wrappers_and_prefixes(tmp_path: Path, wrapper: str | None, prefix: str) -> None:
    source = create_model("wrn10_1")
    state = {prefix + k: v for k, v in source.state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    assert list(load_state_dict(path)) == list(source.state_dict())
    target = load_weights(create_model("wrn10_1"), path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_no_state_dict_inside(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_state_dict(path)
    torch.save({"state_dict": {"conv.weight": torch.zeros(1), "step": 7}}, path)
    with pytest.raises(CheckpointError, match="not a plain state dict"):
        load_state_dict(path)


def test_wrong_class_count(tmp_path: Path) -> None:
    path = tmp_path / "c100.pth"
    save_weights(create_model("wrn16_1", 100), path)
    with pytest.raises(CheckpointError) as info:
        load_weights(create_model("wrn16_1", 10), path)
    msg = str(info.value)
    assert "checkpoint has 100 classes but the model has 10" in msg
    assert "num_classes=100" in msg
    assert "architecture" not in msg


def test_wrong_registered_architecture(tmp_path: Path) -> None:
    path = tmp_path / "wrn.pth"
    save_weights(create_model("wrn16_2", 100), path)
    with pytest.raises(CheckpointError) as info:
        load_weights(create_model("resnet8"), path)
    msg = str(info.value)
    assert "wrong architecture: the checkpoint is `wrn16_2`, the model is `resnet8`" in msg
    assert "checkpoint has 100 classes but the model has 10" in msg
    assert "missing keys (54)" in msg and "unexpected keys" in msg


def test_same_keys_other_width(tmp_path: Path) -> None:
    """WRN-16-2 and WRN-16-4 share key names; the shapes tell them apart."""
    path = tmp_path / "wrn.pth"
    save_weights(create_model("wrn16_4"), path)
    with pytest.raises(CheckpointError) as info:
        load_weights(create_model("wrn16_2"), path)
    msg = str(info.value)
    assert "the checkpoint is `wrn16_4`, the model is `wrn16_2`" in msg
    assert "shape mismatches" in msg and "missing keys" not in msg


def test_unregistered_architecture(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).state_dict(), path)
    with pytest.raises(CheckpointError, match="probably from a different architecture"):
        load_weights(create_model("resnet8"), path)


def test_strict_false_tolerates_missing_keys_not_shapes(tmp_path: Path) -> None:
    source = create_model("resnet8")
    path = tmp_path / "backbone.pth"
    torch.save({k: v for k, v in source.state_dict().items() if not k.startswith("linear")}, path)
    with pytest.raises(CheckpointError, match=r"missing keys \(2\): linear.weight, linear.bias"):
        load_weights(create_model("resnet8"), path)
    target = load_weights(create_model("resnet8", 100), path, strict=False)
    assert torch.equal(target.conv1.weight, source.conv1.weight)

    save_weights(create_model("resnet8", 100), path)
    with pytest.raises(CheckpointError, match="100 classes"):
        load_weights(create_model("resnet8"), path, strict=False)


# --- saving -------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create_model("resnet14")
    source.train()(torch.randn(4, 3, 32, 32))  # move BN running stats off their defaults
    path = tmp_path / "sub" / "dir" / "resnet14.pth"
    save_weights(source, path)
    assert [p.name for p in path.parent.iterdir()] == ["resnet14.pth"]  # no temp files left

    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert list(raw) == list(source.state_dict())

    torch.manual_seed(2)
    target = load_weights(create_model("resnet14"), path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(x), source.eval()(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compile imports
def test_save_and_load_wrapped_models(tmp_path: Path) -> None:
    source = create_model("wrn10_1")
    compiled = torch.compile(source)  # compiles lazily: nothing is compiled here
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    path = tmp_path / "compiled.pth"
    save_weights(compiled, path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert list(raw) == list(source.state_dict())

    path2 = tmp_path / "dp.pth"
    save_weights(nn.DataParallel(source), path2)
    assert list(torch.load(path2, weights_only=True)) == list(source.state_dict())

    target = torch.compile(create_model("wrn10_1"))
    load_weights(target, path)
    assert torch.equal(target.conv1.weight, source.conv1.weight)
