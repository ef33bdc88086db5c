"""Shared fixtures. Tests that need the real data read it from ../shared/data (CI has it)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KDLIB_SHARED_DATA", REPO.parent / "shared" / "data"))

# One thread per pytest-xdist worker (`make test` runs one worker per core), two alone.
_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads())
torch.set_num_threads(_THREADS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, start the slow tests first: the workers then end on short unit
    tests together, instead of one worker finishing a long end-to-end test alone."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only ../shared/data folder; tests using it are skipped where it is absent."""
    if not (SHARED_DATA / "cifar10").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_cifar10_cache(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir holding the real CIFAR-10, decoded and verified once per test session:
    under pytest-xdist the workers share it (a lock serialises the first preparation, the
    others find it intact)."""
    from filelock import FileLock

    from kdlib.data import prepare_dataset

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the folder every worker's base temp dir sits in
    cache = base / "real-cifar10-cache"
    with FileLock(str(base / "real-cifar10-cache.lock")):
        prepare_dataset("cifar10", data_dir=shared_data, cache_dir=cache, progress=False)
    return cache


@pytest.fixture(scope="session")
def reference_checkpoints(shared_data: Path) -> Path:
    """The seed paper's released checkpoints."""
    return shared_data / "reference-checkpoints"


CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

Record = tuple[int, str, np.ndarray]
"""One image to write: (label, file stem, (32, 32, 3) uint8 HWC array)."""


def pickle_batch(records: list[Record], label_key: bytes = b"labels") -> dict:
    """An official CIFAR batch dict (CHW rows, labels, file names ``<stem>.png``)."""
    chw = np.stack([r[2] for r in records]).transpose(0, 3, 1, 2).reshape(len(records), 3072)
    return {
        b"batch_label": b"synthetic",
        label_key: [r[0] for r in records],
        b"data": chw,
        b"filenames": [f"{r[1]}.png".encode() for r in records],
    }


def _colour_batches(n_train: int, n_test: int, seed: int) -> list[dict]:
    """Five train batches and a test batch; each class a distinct colour plus noise."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(10, 3))

    def batch(n: int) -> dict:
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        img = colours[labels][:, :, None, None] + rng.normal(0, 25, size=(n, 3, 32, 32))
        data = np.clip(img, 0, 255).astype(np.uint8).reshape(n, 3072)
        return {b"data": data, b"labels": labels.tolist()}

    return [batch(n_train // 5) for _ in range(5)] + [batch(n_test)]


def write_cifar10_pickles(
    root: Path,
    n_train: int = 400,
    n_test: int = 200,
    seed: int = 0,
    *,
    records: dict[str, list[Record]] | None = None,
) -> Path:
    """A CIFAR-10 in the official ``root/cifar-10-batches-py`` layout; returns ``root``.

    By default a tiny, learnable dataset of ``n_train`` + ``n_test`` images: each class a
    distinct colour plus noise, so a small net learns it in a few epochs. With ``records``
    (``{"train": [...], "test": [...]}``) exactly those images instead, with their file
    names; the train records are dealt round-robin into the five train batches.
    """
    if records is None:
        batches = _colour_batches(n_train, n_test, seed)
    else:
        train = records["train"]
        batches = [pickle_batch(train[i::5]) for i in range(5)] + [pickle_batch(records["test"])]
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, batch in zip(names, batches, strict=True):
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``data_dir`` and ``cache_dir`` of a tiny synthetic CIFAR-10 (400 train, 200 test)."""
    root = tmp_path_factory.mktemp("tiny")
    write_cifar10_pickles(root / "data")
    return {"data_dir": str(root / "data"), "cache_dir": str(root / "cache")}


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A synthetic CIFAR-10 of 640 train (512, four batches, after a 128 validation split),
    128 test: enough for every method's step, its evaluation and its record."""
    root = tmp_path_factory.mktemp("small")
    write_cifar10_pickles(root / "data", n_train=640, n_test=128, seed=1)
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
