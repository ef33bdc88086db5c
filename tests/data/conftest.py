"""Fixtures of the data tests: the synthetic CIFAR-10 and its tree and archive layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CIFAR10_CLASSES
from tests.data.helpers import synthetic as _synthetic
from tests.data.helpers import write_manifest, write_parts, write_tree


@pytest.fixture(scope="module")
def c10() -> dict:
    return _synthetic(CIFAR10_CLASSES, seed=1)


@pytest.fixture
def tree(tmp_path: Path, c10: dict) -> tuple[Path, list[dict]]:
    """An ImageFolder tree at data/cifar10 with its manifest; returns (data dir, rows)."""
    data_dir = tmp_path / "data"
    rows = write_tree(data_dir, c10, CIFAR10_CLASSES)
    write_manifest(data_dir / "cifar10" / "manifest.csv.gz", rows)
    return data_dir, rows


@pytest.fixture
def archives(tmp_path: Path, c10: dict) -> tuple[Path, list[dict]]:
    """Two archive parts plus manifest in data/cifar10/; returns (data dir, rows)."""
    staging = tmp_path / "staging"
    rows = write_tree(staging, c10, CIFAR10_CLASSES)
    data_dir = tmp_path / "archived"
    write_parts(staging, data_dir / "cifar10", rows)
    write_manifest(data_dir / "cifar10" / "manifest.csv.gz", rows)
    return data_dir, rows
