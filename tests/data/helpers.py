"""Shared by the data tests: a tiny synthetic CIFAR-10 (3 train and 2 test images per
class), written as an ImageFolder tree, a manifest or archive parts, and loaded back.

The fixtures that build them (``c10``, ``tree``, ``archives``) are in conftest.py.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from kdlib.data import load_dataset

PER_CLASS = {"train": 3, "test": 2}


def synthetic(classes: list[str], seed: int) -> dict[str, list[tuple[int, str, np.ndarray]]]:
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


def expected_arrays(data: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Arrays in kdlib's canonical order: by label, then file stem."""
    out = {}
    for split, recs in data.items():
        recs = sorted(recs, key=lambda r: (r[0], r[1]))
        out[split] = (np.stack([r[2] for r in recs]), np.array([r[0] for r in recs]))
    return out


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


def load(data_dir: Path, cache: Path, name: str = "cifar10"):
    return load_dataset(name, data_dir=data_dir, cache_dir=cache, progress=False)


def assert_matches(d, expected: dict) -> None:
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(d, f"{split}_images"), expected[split][0])
        np.testing.assert_array_equal(getattr(d, f"{split}_labels"), expected[split][1])
        assert getattr(d, f"{split}_labels").dtype == np.int64
