"""What every source reader returns: decoded splits plus where they came from.

All readers put images in one canonical order, by (label, original file name), so the
same data read from pickles, an image tree or archives gives byte-identical arrays and
therefore the same fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from kdlib.data.registry import IMAGE_SHAPE, SPLITS
from kdlib.errors import DataError


@dataclass
class RawSplit:
    """One split as decoded from a source."""

    images: np.ndarray  # (N, 32, 32, 3) uint8, HWC RGB
    labels: np.ndarray  # (N,) int64
    paths: list[str] | None = None  # per image, path inside the tree: cifar10/train/deer/x.webp


@dataclass
class RawDataset:
    """A dataset read from one source, before verification and caching."""

    name: str
    classes: list[str]
    splits: dict[str, RawSplit]
    kind: str  # "pickle", "pickle-archive", "imagefolder", "archives"
    location: Path
    manifest: Path | None = None  # manifest.csv(.gz) found next to the source
    parts: dict[int, Path] = field(default_factory=dict)  # archive part number -> file read


def sort_key(label: int, file_name: str) -> tuple[int, str, str]:
    """Canonical position of an image: by label, then file name without its extension."""
    return (label, PurePosixPath(file_name).stem, file_name)


def check_split(name: str, split: str, images: np.ndarray, labels: np.ndarray, n_cls: int) -> None:
    """Reject arrays of the wrong shape or with labels outside ``[0, n_cls)``."""
    where = f"{name} {split}"
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{where}: images have shape {images.shape} and dtype {images.dtype}, "
            "expected (N, 32, 32, 3) uint8"
        )
    if labels.shape != (len(images),):
        raise DataError(f"{where}: {len(labels)} labels for {len(images)} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_cls):
        raise DataError(
            f"{where}: labels range over [{labels.min()}, {labels.max()}], "
            f"expected [0, {n_cls - 1}]"
        )


def tree_split(
    name: str, split: str, decoded: list[tuple[str, np.ndarray]], classes: list[str]
) -> RawSplit:
    """Build a split from ``(path in tree, image)`` pairs laid out as ``name/split/class/file``."""
    index = {c: i for i, c in enumerate(classes)}
    rows = []
    for path, img in decoded:
        parts = PurePosixPath(path).parts
        rows.append((sort_key(index[parts[2]], parts[3]), path, img))
    rows.sort(key=lambda r: r[0])
    n = len(rows)
    images = np.empty((n, *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for i, (key, _, img) in enumerate(rows):
        images[i] = img
        labels[i] = key[0]
    return RawSplit(images, labels, [r[1] for r in rows])


def tree_splits(
    name: str, decoded: list[tuple[str, np.ndarray]], classes: list[str]
) -> dict[str, RawSplit]:
    """Every split from ``(path in tree, image)`` pairs of both splits, grouped by the
    ``split`` part of ``name/split/class/file``."""
    by_split: dict[str, list[tuple[str, np.ndarray]]] = {split: [] for split in SPLITS}
    for path, img in decoded:
        by_split[PurePosixPath(path).parts[1]].append((path, img))
    return {s: tree_split(name, s, rows, classes) for s, rows in by_split.items()}


def require_splits(raw: RawDataset) -> None:
    """Every split must be present and non-empty: a missing half is never silently accepted."""
    for split in SPLITS:
        got = raw.splits.get(split)
        if got is None or len(got.labels) == 0:
            raise DataError(f"{raw.name}: no {split} images found in {raw.location}")
