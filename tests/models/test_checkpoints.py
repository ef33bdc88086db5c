"""Checkpoints (kdlib/models/checkpoints.py): loading the released files, safe and strict
loading with errors that say what does not fit, and saving."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from kdlib.errors import CheckpointError
from kdlib.models import create_model, load_state_dict, load_weights, save_weights

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
