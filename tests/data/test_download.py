"""The optional download (kdlib/data/download.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kdlib.data import prepare_dataset
from kdlib.errors import DataError


def test_download_without_torchvision_says_how(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails, no network used
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(DataError, match="needs torchvision"):
        prepare_dataset("cifar10", data_dir=tmp_path, cache_dir=tmp_path / "c", download=True)
