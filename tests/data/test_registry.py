"""The data sets kdlib knows (kdlib/data/registry.py): names and normalization constants."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlib.data import DATASETS, dataset_stats, load_dataset
from kdlib.errors import KdlibError


def test_unknown_dataset_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(KdlibError, match="cifar10, cifar100"):
        load_dataset("mnist", data_dir=tmp_path, cache_dir=tmp_path)
    with pytest.raises(KdlibError, match="valid datasets"):
        dataset_stats("svhn")
    assert set(DATASETS) == {"cifar10", "cifar100"}
    assert dataset_stats("cifar10") == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
