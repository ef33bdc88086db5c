"""Validation split and subsets (kdlib/data/split.py): stratified, disjoint, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdlib.data import split_validation, subset_indices
from kdlib.errors import KdlibError


def test_split_validation_is_stratified_disjoint_and_deterministic() -> None:
    labels = np.repeat(np.arange(10), [100, 100, 100, 100, 100, 50, 50, 50, 50, 50])
    labels = np.random.default_rng(0).permutation(labels)
    train, val = split_validation(labels, 150, seed=0)
    assert len(val) == 150 and len(train) == len(labels) - 150
    assert not set(train) & set(val)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert np.bincount(labels[val]).tolist() == [20] * 5 + [10] * 5
    torch.manual_seed(123)
    np.random.seed(123)  # global seeds must not matter
    t2, v2 = split_validation(labels, 150, seed=0)
    np.testing.assert_array_equal(val, v2)
    np.testing.assert_array_equal(train, t2)
    assert not np.array_equal(split_validation(labels, 150, seed=1)[1], val)


def test_split_validation_edges() -> None:
    labels = np.arange(20) % 3
    train, val = split_validation(labels, 0)
    assert len(val) == 0 and val.dtype == np.int64 and len(train) == 20
    _, val = split_validation(labels, 7)  # not divisible: largest remainder rounding
    assert len(val) == 7 and np.abs(np.bincount(labels[val]) - 7 / 3).max() < 1
    with pytest.raises(KdlibError, match="no training data"):
        split_validation(labels, 20)


def test_subset_indices_balanced() -> None:
    labels = np.repeat(np.arange(5), [40, 40, 40, 40, 3])
    idx = subset_indices(labels, 53, seed=0)
    assert len(idx) == 53 and len(set(idx)) == 53
    assert np.bincount(labels[idx]).tolist() == [13, 13, 12, 12, 3]
    np.testing.assert_array_equal(idx, subset_indices(labels, 53, seed=0))
    assert len(subset_indices(labels, 10_000)) == len(labels)
    with pytest.raises(KdlibError):
        subset_indices(labels, 0)
