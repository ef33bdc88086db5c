"""Finding a data set (kdlib/data/discover.py): every accepted source gives the same
arrays, hidden files are skipped, default folders come from the environment, and no
data at all names the places searched."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdlib.data import load_dataset, prepare_dataset
from kdlib.errors import DataError
from tests.conftest import CIFAR10_CLASSES, write_cifar10_pickles
from tests.data.helpers import assert_matches as _assert_matches
from tests.data.helpers import expected_arrays as _expected
from tests.data.helpers import load as _load


def test_every_source_gives_identical_arrays(tmp_path: Path, c10: dict, tree, archives) -> None:
    expected = _expected(c10)
    pickle_dir = tmp_path / "pickles"
    folder = write_cifar10_pickles(pickle_dir, records=c10) / "cifar-10-batches-py"
    official = tmp_path / "official"
    official.mkdir()
    with tarfile.open(official / "cifar-10-python.tar.gz", "w:gz") as tf:
        tf.add(folder, arcname="cifar-10-batches-py")

    sources = {
        "pickle": pickle_dir,
        "pickle-archive": official,
        "imagefolder": tree[0],
        "archives": archives[0],
    }
    fingerprints = set()
    for kind, data_dir in sources.items():
        d = _load(data_dir, tmp_path / f"cache-{kind}")
        assert d.meta["source"]["kind"] == kind
        assert d.classes == CIFAR10_CLASSES and d.num_classes == 10
        _assert_matches(d, expected)
        fingerprints.add(d.fingerprint)
        assert d.meta["manifest"]["verified"] is (kind in ("imagefolder", "archives"))
    assert len(fingerprints) == 1


def _hidden_junk() -> dict[str, bytes]:
    """What macOS and file browsers leave in a tree: AppleDouble ``._*`` files beside the
    images, thumbnails, and a hidden folder holding a perfectly valid image."""
    png = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(png, format="PNG")
    return {
        "cifar10/train/.hidden/x.png": png.getvalue(),
        "cifar10/train/deer/._deer_s_000004.png": b"\x00\x05\x16\x07" + bytes(78),
        "cifar10/test/cat/.thumb.webp": b"not an image",
        "cifar10/test/._cat": b"\x00\x05\x16\x07",
    }


@pytest.mark.parametrize("kind", ["imagefolder", "archives"])
def test_hidden_files_and_folders_are_skipped(
    kind: str, c10: dict, request: pytest.FixtureRequest
) -> None:
    data_dir, _ = request.getfixturevalue("tree" if kind == "imagefolder" else "archives")
    if kind == "imagefolder":
        for rel, payload in _hidden_junk().items():
            (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (data_dir / rel).write_bytes(payload)
    else:  # junk first, as tar on macOS puts each ._x right before x
        part = data_dir / "cifar10" / "cifar10-part1.tar.gz"
        with tarfile.open(part, "r:gz") as tf:
            members = [(m.name, tf.extractfile(m).read()) for m in tf if m.isfile()]
        with tarfile.open(part, "w:gz") as tf:
            for name, payload in [*_hidden_junk().items(), *members]:
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    d = _load(data_dir, data_dir.parent / "cache")
    assert d.meta["source"]["kind"] == kind and d.meta["manifest"]["verified"] is True
    assert d.classes == CIFAR10_CLASSES
    _assert_matches(d, _expected(c10))


def test_no_data_lists_places_searched(tmp_path: Path) -> None:
    data_dir = tmp_path / "nothing"
    with pytest.raises(DataError) as err:
        prepare_dataset("cifar10", data_dir=data_dir, cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "\n" not in msg and str(data_dir) in msg  # one line, naming the folder
    for needle in (
        "cifar-10-batches-py",
        "cifar10/cifar10",
        "cifar10-part*.tar.gz",
        "cifar-10-python.tar.gz",
        "--data-dir",
        "KDLIB_DATA_DIR",
        "--download",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ):
        assert needle in msg
    assert not (tmp_path / "cache" / "cifar10" / "meta.json").exists()


def test_env_vars_give_default_folders(tree, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KDLIB_DATA_DIR", str(tree[0]))
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "envcache"))
    d = load_dataset("cifar10", progress=False)
    assert d.meta["source"]["path"] == str(tree[0] / "cifar10")
    assert (tmp_path / "envcache" / "cifar10" / "meta.json").is_file()
