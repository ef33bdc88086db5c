"""The prepared cache (kdlib/data/cache.py): reused without the source, written atomically
with meta.json last, a flipped byte reported with a command that repairs it, and the
real CIFAR-10 prepared from ../shared/data."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import kdlib.data.cache as cache_mod
from kdlib.data import load_dataset, prepare_dataset
from kdlib.errors import DataError
from tests.conftest import CIFAR10_CLASSES
from tests.data.helpers import assert_matches as _assert_matches
from tests.data.helpers import expected_arrays as _expected
from tests.data.helpers import load as _load


def test_cache_is_reused_without_reading_the_source(tree, c10: dict, monkeypatch) -> None:
    data_dir, _ = tree
    cache = data_dir.parent / "cache"
    first = _load(data_dir, cache)
    shutil.rmtree(data_dir)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr("kdlib.data.discover.read_place", no_decoding)
    again = _load(data_dir, cache)
    _assert_matches(again, _expected(c10))
    assert again.fingerprint == first.fingerprint
    assert prepare_dataset("cifar10", data_dir=data_dir, cache_dir=cache) == cache / "cifar10"


def test_cache_writes_atomically_meta_last(tree, monkeypatch) -> None:
    data_dir, _ = tree
    cache = data_dir.parent / "cache"
    written: list[str] = []
    real = cache_mod.atomic_write

    def spy(path, mode="w"):
        written.append(Path(path).name)
        return real(path, mode)

    monkeypatch.setattr(cache_mod, "atomic_write", spy)
    folder = prepare_dataset("cifar10", data_dir=data_dir, cache_dir=cache, progress=False)
    assert written[-1] == "meta.json"
    assert sorted(written[:-1]) == sorted(f"{n}.npy" for n in cache_mod.ARRAY_NAMES)
    assert sorted(p.name for p in folder.iterdir()) == sorted(written)  # no .tmp left
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["counts"] == {"train": 30, "test": 20}
    assert meta["class_counts"]["train"] == [3] * 10
    assert meta["manifest"]["verified"] is True and meta["complete"] is False
    assert meta["source"] == {"kind": "imagefolder", "path": str(data_dir / "cifar10"), "parts": {}}
    for name in cache_mod.ARRAY_NAMES:
        arr = np.load(folder / f"{name}.npy")
        assert meta["arrays"][name]["sha256"] == hashlib.sha256(arr.tobytes()).hexdigest()
    assert len(meta["fingerprint"]) == 64


def test_flipped_byte_in_cache_is_reported(tree) -> None:
    data_dir, _ = tree
    cache = data_dir.parent / "cache"
    folder = prepare_dataset("cifar10", data_dir=data_dir, cache_dir=cache, progress=False)
    target = folder / "train_images.npy"
    raw = bytearray(target.read_bytes())
    raw[-100] ^= 0x10
    target.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"corrupt.*train_images\.npy.*kdlib data prepare") as e:
        _load(data_dir, cache)
    # The command the message names is one that works: it replaces the corrupt cache.
    from kdlib.cli import main

    hint = str(e.value).split("`")[1].split()
    assert hint[:3] == ["kdlib", "data", "prepare"]
    where = ["--data-dir", str(data_dir), "--cache-dir", str(cache)]
    assert main([*hint[1:], *where]) == 0
    assert _load(data_dir, cache).train_images.shape == (30, 32, 32, 3)


@pytest.mark.shared_data
def test_prepare_real_cifar10(real_cifar10_cache: Path) -> None:
    folder = real_cifar10_cache / "cifar10"  # prepared once per session by conftest
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["counts"] == {"train": 50_000, "test": 10_000}
    assert meta["class_counts"] == {"train": [5000] * 10, "test": [1000] * 10}
    assert meta["manifest"]["verified"] is True and meta["manifest"]["rows"] == 60_000
    assert meta["complete"] is True and meta["classes"] == CIFAR10_CLASSES
    d = load_dataset("cifar10", cache_dir=real_cifar10_cache)
    assert d.train_images.shape == (50_000, 32, 32, 3) and d.test_images.dtype == np.uint8
    assert d.fingerprint == meta["fingerprint"]
