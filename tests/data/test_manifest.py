"""Manifest verification (kdlib/data/manifest.py): changed pixels, lossy and lossless
re-encodings, missing, extra and mislabelled files, and missing archive parts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kdlib.errors import DataError
from tests.data.helpers import assert_matches as _assert_matches
from tests.data.helpers import expected_arrays as _expected
from tests.data.helpers import load as _load
from tests.data.helpers import write_manifest


def test_manifest_catches_changed_pixel(tree) -> None:
    data_dir, rows = tree
    victim = rows[5]["path"]
    arr = np.asarray(Image.open(data_dir / victim).convert("RGB")).copy()
    arr[7, 9, 1] ^= 1
    Image.fromarray(arr).save(data_dir / victim, lossless=True)
    with pytest.raises(DataError, match=f"{victim}: pixels differ"):
        _load(data_dir, data_dir.parent / "cache")
    assert not (data_dir.parent / "cache" / "cifar10").exists()


def test_manifest_names_a_lossy_re_encoding_not_a_missing_part(tree) -> None:
    # Every image saved again as JPEG (new suffix, beside the manifest): the check must
    # say the pixels differ and name the first file, not call the parts missing.
    data_dir, rows = tree
    for r in rows:
        src = data_dir / r["path"]
        Image.open(src).convert("RGB").save(src.with_suffix(".jpg"), quality=90)
        src.unlink()
    first = sorted(r["path"] for r in rows if r["split"] == "train")[0]
    found = first.rsplit(".", 1)[0] + ".jpg"
    with pytest.raises(
        DataError, match=f"first bad file {first} \\(found as {found}\\): pixels differ"
    ) as e:
        _load(data_dir, data_dir.parent / "cache")
    assert "missing" not in str(e.value)


def test_manifest_accepts_a_lossless_re_encoding(tree, c10: dict) -> None:
    data_dir, rows = tree
    for r in rows[:7]:
        src = data_dir / r["path"]
        other = ".webp" if src.suffix == ".png" else ".png"
        Image.open(src).convert("RGB").save(src.with_suffix(other), lossless=True)
        src.unlink()
    _assert_matches(_load(data_dir, data_dir.parent / "cache"), _expected(c10))


def test_manifest_catches_missing_file(tree) -> None:
    data_dir, rows = tree
    victim = rows[2]["path"]
    (data_dir / victim).unlink()
    with pytest.raises(DataError, match=f"{victim}: listed in the manifest but missing"):
        _load(data_dir, data_dir.parent / "cache")


def test_manifest_catches_extra_file(tree) -> None:
    data_dir, rows = tree
    extra = data_dir / "cifar10" / "train" / "dog" / "stray_000001.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(extra)
    with pytest.raises(DataError, match="cifar10/train/dog/stray_000001.png: extra file"):
        _load(data_dir, data_dir.parent / "cache")


def test_manifest_catches_wrong_label(tree) -> None:
    data_dir, rows = tree
    rows[4] = rows[4] | {"label": (rows[4]["label"] + 1) % 10}
    write_manifest(data_dir / "cifar10" / "manifest.csv.gz", rows)
    with pytest.raises(DataError, match=f"{rows[4]['path']}: has label"):
        _load(data_dir, data_dir.parent / "cache")


def test_manifest_reports_first_bad_file_in_order(tree) -> None:
    data_dir, rows = tree
    train = sorted(r["path"] for r in rows if r["split"] == "train")
    for victim in (train[-1], train[1]):
        (data_dir / victim).unlink()
    with pytest.raises(DataError, match=f"first bad file {train[1]}: .*and 1 more problem"):
        _load(data_dir, data_dir.parent / "cache")


def test_missing_archive_part_is_named(archives) -> None:
    data_dir, rows = archives
    (data_dir / "cifar10" / "cifar10-part2.tar.gz").unlink()
    with pytest.raises(DataError, match=r"archive part 2 is missing.*cifar10-part2\.tar\.gz"):
        _load(data_dir, data_dir.parent / "cache")


def test_tree_missing_a_whole_part_names_it(tree) -> None:
    data_dir, rows = tree
    for r in rows:
        if r["part"] == 2:
            (data_dir / r["path"]).unlink()
    with pytest.raises(DataError, match=r"every file of archive part 2 is missing.*15 files"):
        _load(data_dir, data_dir.parent / "cache")


def test_missing_part_without_manifest_is_still_an_error(archives) -> None:
    data_dir, _ = archives
    (data_dir / "cifar10" / "cifar10-part2.tar.gz").unlink()
    (data_dir / "cifar10" / "manifest.csv.gz").unlink()
    with pytest.raises(DataError, match="no train images for class"):
        _load(data_dir, data_dir.parent / "cache")
