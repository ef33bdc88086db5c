"""Shared fixtures. Tests that need the real data read it from ../shared/data (CI has it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KDLIB_SHARED_DATA", REPO.parent / "shared" / "data"))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only ../shared/data folder; tests using it are skipped where it is absent."""
    if not (SHARED_DATA / "cifar10").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def reference_checkpoints(shared_data: Path) -> Path:
    """The seed paper's released checkpoints."""
    return shared_data / "reference-checkpoints"


def write_cifar10_pickles(root: Path, n_train: int = 400, n_test: int = 200, seed: int = 0) -> Path:
    """A tiny, learnable dataset in the official ``cifar-10-batches-py`` layout.

    Each class is a distinct colour plus noise, so a small net learns it in a few epochs.
    """
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(10, 3))

    def batch(n: int) -> dict:
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        img = colours[labels][:, :, None, None] + rng.normal(0, 25, size=(n, 3, 32, 32))
        data = np.clip(img, 0, 255).astype(np.uint8).reshape(n, 3072)
        return {b"data": data, b"labels": labels.tolist()}

    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(n_train // 5), f)
    with open(d / "test_batch", "wb") as f:
        pickle.dump(batch(n_test), f)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names}, f)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``data_dir`` and ``cache_dir`` of a tiny synthetic CIFAR-10 (400 train, 200 test)."""
    root = tmp_path_factory.mktemp("tiny")
    write_cifar10_pickles(root / "data")
    return {"data_dir": str(root / "data"), "cache_dir": str(root / "cache")}


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A synthetic CIFAR-10 of 2,500 train (2,000 after a 500 validation split), 500 test."""
    root = tmp_path_factory.mktemp("small")
    write_cifar10_pickles(root / "data", n_train=2500, n_test=500, seed=1)
    return {"data_dir": str(root / "data"), "cache_dir": str(root / "cache")}


@pytest.fixture(scope="session")
def teacher_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Randomly initialised 10-class checkpoints of a few small teachers, by model name."""
    from kdlib.models import create_model, save_weights

    root = tmp_path_factory.mktemp("teachers")
    out = {}
    for i, name in enumerate(["resnet8", "resnet14", "resnet20", "wrn16_1"]):
        torch.manual_seed(100 + i)
        out[name] = str(root / f"{name}.pt")
        save_weights(create_model(name, 10), out[name])
    return out
