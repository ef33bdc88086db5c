"""Deterministic, class-stratified index splits: validation hold-out and small subsets.

Both use their own numpy Generator seeded from ``seed`` alone, so the same call always
returns the same indices whatever the global or run seed is: every run of a study sees
the same validation set.
"""

from __future__ import annotations

import numpy as np

from kdlib.config import TrainConfig
from kdlib.errors import KdlibError


def _labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise KdlibError(f"labels must be one-dimensional, got shape {labels.shape}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise KdlibError("labels must be non-negative integers")
    return labels.astype(np.int64, copy=False)


def _proportional(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder, exact)."""
    n = int(counts.sum())
    base = total * counts // n
    rem = total * counts % n
    extra = total - int(base.sum())
    # Largest remainders first; ties go to the lower class index (stable sort).
    order = np.argsort(-rem, kind="stable")
    base[order[:extra]] += 1
    return base


def split_validation(
    labels: np.ndarray, val_size: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``val_size`` examples, stratified by class: returns sorted (train_idx, val_idx).

    Each class gives up its proportional share (rounded by largest remainder), so class
    balance matches the full set as closely as integers allow.
    """
    labels = _labels(labels)
    n = len(labels)
    if val_size < 0:
        raise KdlibError(f"--val-size={val_size}: must be >= 0")
    if val_size >= n:
        raise KdlibError(
            f"--val-size={val_size}: leaves no training data, the training set has {n} "
            "images; use a smaller --val-size"
        )
    empty = np.empty(0, dtype=np.int64)
    if val_size == 0:
        return np.arange(n, dtype=np.int64), empty
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels)
    take = _proportional(counts, val_size)
    val = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in enumerate(take)]
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx


def _balanced(counts: np.ndarray, limit: int) -> np.ndarray:
    """Split ``limit`` as evenly as possible over classes, none taking more than it has."""
    alloc = np.zeros_like(counts)
    left = limit
    while left > 0:
        open_ = np.flatnonzero(alloc < counts)
        share = left // len(open_)
        if share == 0:  # fewer left than open classes: one more each to the first ones
            alloc[open_[:left]] += 1
            break
        add = np.minimum(share, counts[open_] - alloc[open_])
        alloc[open_] += add
        left -= int(add.sum())
    return alloc


def subset_indices(labels: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """A deterministic class-balanced subset of ``limit`` indices (sorted), for quick runs.

    Every class contributes the same number of examples (differing by at most one) unless
    it runs out. ``limit`` at or above the set size returns every index.
    """
    labels = _labels(labels)
    n = len(labels)
    if limit <= 0:
        raise KdlibError(f"subset size must be positive, got {limit}")
    if limit >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels)
    take = _balanced(counts, limit)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in enumerate(take)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def split_sizes(cfg: TrainConfig, n_train: int, n_test: int) -> tuple[int, int, int]:
    """Images that train, validate and test a run, from the split sizes alone; limits
    above what a split holds are refused (one rule for both limits)."""
    if cfg.val_size >= n_train:
        raise KdlibError(
            f"--val-size={cfg.val_size}: leaves no training data, the training set has "
            f"{n_train} images; use a smaller --val-size"
        )
    remain = n_train - cfg.val_size
    if cfg.train_limit is not None and cfg.train_limit > remain:
        raise KdlibError(
            f"--train-limit={cfg.train_limit}: only {remain} training images "
            f"remain after the {cfg.val_size}-image validation split"
        )
    if cfg.test_limit is not None and cfg.test_limit > n_test:
        raise KdlibError(f"--test-limit={cfg.test_limit}: the test split has only {n_test} images")
    train = remain if cfg.train_limit is None else cfg.train_limit
    test = n_test if cfg.test_limit is None else cfg.test_limit
    return train, cfg.val_size, test
