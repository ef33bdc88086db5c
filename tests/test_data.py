"""Tests for kdlib.data: sources, manifest checks, the cache, splits, augmentation, loader.

Everything runs on tiny synthetic datasets built in tmp_path, except one test that
prepares the real CIFAR-10 from ../shared/data.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import pickle
import shutil
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import kdlib.data.cache as cache_mod
from kdlib.data import (
    DATASETS,
    DeviceLoader,
    dataset_stats,
    load_dataset,
    normalize,
    prepare_dataset,
    random_crop_flip,
    split_validation,
    subset_indices,
)
from kdlib.errors import DataError, KdlibError
from tests.conftest import CIFAR10_CLASSES, pickle_batch, write_cifar10_pickles

PER_CLASS = {"train": 3, "test": 2}

# ---------------------------------------------------------------------------------------
# Synthetic fixtures
# ---------------------------------------------------------------------------------------


def _synthetic(classes: list[str], seed: int) -> dict[str, list[tuple[int, str, np.ndarray]]]:
    """Per split: (label, file stem, image) records, in a scrambled order."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, k in PER_CLASS.items():
        recs = []
        for label, cls in enumerate(classes):
            for i in range(k):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                recs.append((label, f"{cls}_s_{i * 7 + label:06d}", img))
        order = rng.permutation(len(recs))
        data[split] = [recs[i] for i in order]
    return data


def _expected(data: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Arrays in kdlib's canonical order: by label, then file stem."""
    out = {}
    for split, recs in data.items():
        recs = sorted(recs, key=lambda r: (r[0], r[1]))
        out[split] = (np.stack([r[2] for r in recs]), np.array([r[0] for r in recs]))
    return out


@pytest.fixture(scope="module")
def c10() -> dict:
    return _synthetic(CIFAR10_CLASSES, seed=1)


def write_tree(root: Path, data: dict, classes: list[str], name: str = "cifar10") -> list[dict]:
    """Write ``root/name/split/class/stem.{png,webp}``; returns the manifest rows."""
    rows = []
    for split, recs in data.items():
        for j, (label, stem, img) in enumerate(recs):
            ext = "png" if j % 2 else "webp"
            rel = f"{name}/{split}/{classes[label]}/{stem}.{ext}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / rel, lossless=True)
            md5 = hashlib.md5(img.tobytes()).hexdigest()
            part = 1 if split == "test" or label < 5 else 2
            rows.append(
                {"split": split, "label": label, "class": classes[label], "path": rel}
                | {"pixel_md5": md5, "part": part}
            )
    return rows


def write_manifest(path: Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["split", "label", "class", "path", "pixel_md5", "part"])
    w.writeheader()
    w.writerows(rows)
    path.write_bytes(gzip.compress(buf.getvalue().encode()))
    return path


def write_parts(tree_root: Path, out: Path, rows: list[dict], name: str = "cifar10") -> None:
    """Pack the tree into ``name-part{1,2}.tar.gz`` by each row's part, like the real data."""
    out.mkdir(parents=True, exist_ok=True)
    for part in (1, 2):
        with tarfile.open(out / f"{name}-part{part}.tar.gz", "w:gz") as tf:
            for r in rows:
                if r["part"] == part:
                    tf.add(tree_root / r["path"], arcname=r["path"])


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


def _load(data_dir: Path, cache: Path, name: str = "cifar10"):
    return load_dataset(name, data_dir=data_dir, cache_dir=cache, progress=False)


def _assert_matches(d, expected: dict) -> None:
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(d, f"{split}_images"), expected[split][0])
        np.testing.assert_array_equal(getattr(d, f"{split}_labels"), expected[split][1])
        assert getattr(d, f"{split}_labels").dtype == np.int64


# ---------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------


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


def test_parallel_decoding_matches_and_reports_bad_files(archives, c10: dict, monkeypatch) -> None:
    monkeypatch.setattr("kdlib.data.decode.PARALLEL_MIN_ITEMS", 4)  # use the pool on tiny data
    data_dir, rows = archives
    cache = data_dir.parent / "cache"
    d = load_dataset("cifar10", data_dir=data_dir, cache_dir=cache, workers=2, progress=False)
    _assert_matches(d, _expected(c10))
    tree_dir = data_dir.parent / "staging"
    bad = tree_dir / rows[-1]["path"]
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"cannot decode image .*{bad.name}"):
        load_dataset("cifar10", data_dir=tree_dir, cache_dir=cache / "2", workers=2)


def _png_items(n: int) -> list[tuple[str, str, bytes]]:
    rng = np.random.default_rng(7)
    items = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
        items.append((f"k{i}", f"img{i}.png", buf.getvalue()))
    return items


@pytest.mark.parametrize("failure", ["killed", "stuck"])
def test_a_stalled_decoding_pool_falls_back_to_this_process(monkeypatch, failure: str) -> None:
    # CI once hung for 88 minutes inside a decoding pool: a worker that dies or hangs must
    # cost at most STALL_SECONDS, then the rest is decoded here, in input order.
    import os
    import signal

    import kdlib.data.decode as decode

    items = _png_items(12)
    expected = [decode._decode_item(it) for it in items]
    parent, real = os.getpid(), decode._decode_item

    def flaky(item):
        if os.getpid() != parent and item[0] == "k5":
            if failure == "killed":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(600)
        return real(item)

    monkeypatch.setattr(decode, "_decode_item", flaky)  # forked workers inherit it
    monkeypatch.setattr(decode, "PARALLEL_MIN_ITEMS", 4)
    monkeypatch.setattr(decode, "CHUNK_ITEMS", 2)
    monkeypatch.setattr(decode, "STALL_SECONDS", 3.0)
    start = time.perf_counter()
    with pytest.warns(decode.PoolStalledWarning, match="stopped answering"):
        got = decode.decode_many(items, workers=2, progress=False)
    assert time.perf_counter() - start < 30
    assert [k for k, _ in got] == [k for k, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_default_workers_counts_the_cores_this_process_may_use(monkeypatch) -> None:
    import os

    import kdlib.data.decode as decode

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert decode.default_workers() == 2


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


def test_pickles_cannot_run_code(tmp_path: Path, c10: dict) -> None:
    folder = write_cifar10_pickles(tmp_path / "data", records=c10) / "cifar-10-batches-py"
    (folder / "data_batch_2").write_bytes(
        b"cos\nsystem\n(S'echo owned'\ntR."  # os.system('echo owned'), protocol 0
    )
    with pytest.raises(DataError, match="refusing to load"):
        _load(tmp_path / "data", tmp_path / "cache")


def test_unknown_dataset_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(KdlibError, match="cifar10, cifar100"):
        load_dataset("mnist", data_dir=tmp_path, cache_dir=tmp_path)
    with pytest.raises(KdlibError, match="valid datasets"):
        dataset_stats("svhn")
    assert set(DATASETS) == {"cifar10", "cifar100"}
    assert dataset_stats("cifar10") == ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


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


def test_download_without_torchvision_says_how(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails, no network used
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(DataError, match="needs torchvision"):
        prepare_dataset("cifar10", data_dir=tmp_path, cache_dir=tmp_path / "c", download=True)


def test_env_vars_give_default_folders(tree, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KDLIB_DATA_DIR", str(tree[0]))
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "envcache"))
    d = load_dataset("cifar10", progress=False)
    assert d.meta["source"]["path"] == str(tree[0] / "cifar10")
    assert (tmp_path / "envcache" / "cifar10" / "meta.json").is_file()


def test_image_of_wrong_size_names_the_file(tree) -> None:
    data_dir, rows = tree
    bad = data_dir / rows[3]["path"]
    Image.new("RGB", (31, 32)).save(bad, lossless=True)
    with pytest.raises(DataError, match=f"{bad.name}.* 31x32"):
        _load(data_dir, data_dir.parent / "cache")


# ---------------------------------------------------------------------------------------
# Manifest verification
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Prepared cache
# ---------------------------------------------------------------------------------------


def test_cache_is_reused_without_reading_the_source(tree, c10: dict, monkeypatch) -> None:
    data_dir, _ = tree
    cache = data_dir.parent / "cache"
    first = _load(data_dir, cache)
    shutil.rmtree(data_dir)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr("kdlib.data.discover.read_place", no_decoding)
    again = _load(data_dir, cache)
    _assert_matches(again, _expected(c10))
    assert again.fingerprint == first.fingerprint
    assert prepare_dataset("cifar10", data_dir=data_dir, cache_dir=cache) == cache / "cifar10"


def test_cache_writes_atomically_meta_last(tree, monkeypatch) -> None:
    data_dir, _ = tree
    cache = data_dir.parent / "cache"
    written: list[str] = []
    real = cache_mod.atomic_write

    def spy(path, mode="w"):
        written.append(Path(path).name)
        return real(path, mode)

    monkeypatch.setattr(cache_mod, "atomic_write", spy)
    folder = prepare_dataset("cifar10", data_dir=data_dir, cache_dir=cache, progress=False)
    assert written[-1] == "meta.json"
    assert sorted(written[:-1]) == sorted(f"{n}.npy" for n in cache_mod.ARRAY_NAMES)
    assert sorted(p.name for p in folder.iterdir()) == sorted(written)  # no .tmp left
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["counts"] == {"train": 30, "test": 20}
    assert meta["class_counts"]["train"] == [3] * 10
    assert meta["manifest"]["verified"] is True and meta["complete"] is False
    assert meta["source"] == {"kind": "imagefolder", "path": str(data_dir / "cifar10"), "parts": {}}
    for name in cache_mod.ARRAY_NAMES:
        arr = np.load(folder / f"{name}.npy")
        assert meta["arrays"][name]["sha256"] == hashlib.sha256(arr.tobytes()).hexdigest()
    assert len(meta["fingerprint"]) == 64


def test_flipped_byte_in_cache_is_reported(tree) -> None:
    data_dir, _ = tree
    cache = data_dir.parent / "cache"
    folder = prepare_dataset("cifar10", data_dir=data_dir, cache_dir=cache, progress=False)
    target = folder / "train_images.npy"
    raw = bytearray(target.read_bytes())
    raw[-100] ^= 0x10
    target.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"corrupt.*train_images\.npy.*kdlib data prepare") as e:
        _load(data_dir, cache)
    # The command the message names is one that works: it replaces the corrupt cache.
    from kdlib.cli import main

    hint = str(e.value).split("`")[1].split()
    assert hint[:3] == ["kdlib", "data", "prepare"]
    where = ["--data-dir", str(data_dir), "--cache-dir", str(cache)]
    assert main([*hint[1:], *where]) == 0
    assert _load(data_dir, cache).train_images.shape == (30, 32, 32, 3)


# ---------------------------------------------------------------------------------------
# Validation split and subsets
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------


def _coded_batch(b: int, seed: int = 0) -> torch.Tensor:
    """Images whose channel 0 is row+1 and channel 1 is column+1 (0 marks padding)."""
    ramp = torch.arange(1, 33, dtype=torch.uint8)
    x = torch.empty(b, 3, 32, 32, dtype=torch.uint8)
    x[:, 0] = ramp[:, None]
    x[:, 1] = ramp[None, :]
    gen = torch.Generator().manual_seed(seed)
    x[:, 2] = torch.randint(0, 256, (b, 32, 32), generator=gen, dtype=torch.uint8)
    return x


def _offsets(out: torch.Tensor, padding: int = 4) -> tuple[torch.Tensor, ...]:
    """Recover each sample's crop offset (dy, dx in the padded image) and flip."""
    centre_row = out[:, 0, 16, 16].long()
    flipped = out[:, 1, 16, 17].long() < out[:, 1, 16, 16].long()
    dy = centre_row - 17 + padding
    dx = torch.where(
        flipped, out[:, 1, 16, 16].long() + padding - 16, out[:, 1, 16, 16].long() - 17 + padding
    )
    return dy, dx, flipped


def test_crop_flip_keeps_shape_dtype_device() -> None:
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.device == x.device
    assert out.is_contiguous()


def test_crop_without_padding_is_identity_up_to_flip() -> None:
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and same.any() and mirrored.any()


def test_crop_offsets_uniform_and_content_is_padded_window() -> None:
    reps = 100
    x = _coded_batch(81 * reps)
    out = random_crop_flip(x, padding=4, generator=torch.Generator().manual_seed(1))
    dy, dx, flipped = _offsets(out)
    assert int(dy.min()) == 0 and int(dy.max()) == 8 and int(dx.min()) == 0 and int(dx.max()) == 8
    counts = torch.bincount(dy * 9 + dx, minlength=81)
    assert counts.numel() == 81 and int(counts.min()) > 55 and int(counts.max()) < 145
    assert abs(flipped.float().mean().item() - 0.5) < 0.03
    # Every output is exactly its window of the zero-padded input, flipped if flipped.
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(0, len(x), 97):
        window = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        want = window.flip(-1) if flipped[i] else window
        assert torch.equal(out[i], want)


def test_crop_offsets_differ_within_a_batch() -> None:
    out = random_crop_flip(_coded_batch(32), generator=torch.Generator().manual_seed(2))
    dy, dx, flipped = _offsets(out)
    assert len(set(zip(dy.tolist(), dx.tolist(), strict=True))) > 10
    assert 0 < int(flipped.sum()) < 32


def test_normalize_values() -> None:
    x = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    mean, std = dataset_stats("cifar10")
    out = normalize(x, mean, std)
    want = (np.array([0, 128, 255]) / 255 - np.array(mean)) / np.array(std)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), want, rtol=1e-5)
    assert normalize(x, mean, std, dtype=torch.bfloat16).dtype == torch.bfloat16


# ---------------------------------------------------------------------------------------
# DeviceLoader
# ---------------------------------------------------------------------------------------


def _loader(n: int = 103, **kw) -> DeviceLoader:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    opts = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "shuffle": True, "augment": True}
    return DeviceLoader(images, np.arange(n), 10, **(opts | kw))


def test_loader_covers_each_example_once_per_epoch() -> None:
    loader = _loader()
    assert len(loader) == 11
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [len(y) for _, y in batches] == [10] * 10 + [3]
        seen = torch.cat([y for _, y in batches])
        assert sorted(seen.tolist()) == list(range(103))
        x, y = batches[0]
        assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        epochs.append(seen)
    assert not torch.equal(epochs[0], epochs[1])
    replay = torch.cat([y for _, y in _loader()])
    assert torch.equal(replay, epochs[0])
    assert not torch.equal(torch.cat([y for _, y in _loader(seed=1)]), epochs[0])


def test_loader_drop_last_and_plain_order() -> None:
    loader = _loader(drop_last=True, shuffle=False, augment=False)
    assert len(loader) == 10
    ys = torch.cat([y for _, y in loader])
    assert ys.tolist() == list(range(100))


def test_loader_normalizes_and_formats() -> None:
    images = np.random.default_rng(3).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    mean, std = dataset_stats("cifar10")
    loader = DeviceLoader(
        images,
        np.zeros(7),
        4,
        mean=mean,
        std=std,
        shuffle=False,
        augment=False,
        channels_last=True,
    )
    x, _ = next(iter(loader))
    want = (images[:4].astype(np.float32) / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), want, rtol=1e-5, atol=1e-6)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_batches_equal_contiguous_ones() -> None:
    for augment in (False, True):
        plain = list(_loader(augment=augment))
        cl = list(_loader(augment=augment, channels_last=True))
        for (xp, yp), (xc, yc) in zip(plain, cl, strict=True):
            assert torch.equal(xp, xc) and torch.equal(yp, yc)
            assert xp.is_contiguous() and xc.is_contiguous(memory_format=torch.channels_last)


def test_crop_flip_memory_format() -> None:
    x = _coded_batch(6)
    gen = torch.Generator().manual_seed(3)
    out = random_crop_flip(x, generator=gen, memory_format=torch.channels_last)
    gen.manual_seed(3)
    assert torch.equal(out, random_crop_flip(x, generator=gen))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_loader_augments_with_its_own_generator() -> None:
    a = [x for x, _ in _loader(shuffle=False)]
    b = [x for x, _ in _loader(shuffle=False)]
    c = [x for x, _ in _loader(shuffle=False, augment=False)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))


# ---------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_prepare_real_cifar10(shared_data: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    folder = prepare_dataset("cifar10", data_dir=shared_data, cache_dir=tmp_path, progress=False)
    elapsed = time.perf_counter() - start
    print(f"prepared real CIFAR-10 in {elapsed:.1f} s")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["counts"] == {"train": 50_000, "test": 10_000}
    assert meta["class_counts"] == {"train": [5000] * 10, "test": [1000] * 10}
    assert meta["manifest"]["verified"] is True and meta["manifest"]["rows"] == 60_000
    assert meta["complete"] is True and meta["classes"] == CIFAR10_CLASSES
    d = load_dataset("cifar10", cache_dir=tmp_path)
    assert d.train_images.shape == (50_000, 32, 32, 3) and d.test_images.dtype == np.uint8
    assert d.fingerprint == meta["fingerprint"]
