"""The official python release (kdlib/data/pickles.py): CIFAR-100's fine labels, and
pickles that cannot run code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from kdlib.errors import DataError
from tests.conftest import pickle_batch, write_cifar10_pickles
from tests.data.helpers import assert_matches as _assert_matches
from tests.data.helpers import expected_arrays as _expected
from tests.data.helpers import load as _load
from tests.data.helpers import synthetic as _synthetic


def test_cifar100_pickles_use_fine_labels(tmp_path: Path) -> None:
    classes = [f"class{i:03d}" for i in range(100)]
    data = _synthetic(classes, seed=2)
    folder = tmp_path / "data" / "cifar-100-python"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        batch = pickle_batch(data[split], b"fine_labels")
        (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"fine_label_names": [c.encode() for c in classes], b"coarse_label_names": []}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    d = _load(tmp_path / "data", tmp_path / "cache", "cifar100")
    assert d.classes == classes and d.num_classes == 100
    _assert_matches(d, _expected(data))
    np.testing.assert_allclose(d.mean, [0.507, 0.487, 0.441], rtol=1e-6)
    np.testing.assert_allclose(d.std, [0.267, 0.256, 0.276], rtol=1e-6)


def test_pickles_cannot_run_code(tmp_path: Path, c10: dict) -> None:
    folder = write_cifar10_pickles(tmp_path / "data", records=c10) / "cifar-10-batches-py"
    (folder / "data_batch_2").write_bytes(
        b"cos\nsystem\n(S'echo owned'\ntR."  # os.system('echo owned'), protocol 0
    )
    with pytest.raises(DataError, match="refusing to load"):
        _load(tmp_path / "data", tmp_path / "cache")
