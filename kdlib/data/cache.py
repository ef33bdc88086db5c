"""Prepared cache: decode once, then load four .npy arrays in well under a second.

Layout of ``<cache_dir>/<name>/``: ``train_images.npy`` (N, 32, 32, 3) uint8,
``train_labels.npy`` (N,) int64, ``test_images.npy``, ``test_labels.npy`` and ``meta.json``.
Every file is written atomically and ``meta.json`` last, so a cache with a meta.json is
complete; the arrays' sha256 recorded there is checked on every load, so bit rot or a
half-copied cache is reported instead of silently training on damaged data.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdlib import __version__
from kdlib.data import discover
from kdlib.data.download import download as fetch
from kdlib.data.manifest import verify_manifest
from kdlib.data.raw import RawDataset, check_split, require_splits
from kdlib.data.registry import SPLITS, DatasetSpec, get_spec
from kdlib.errors import DataError
from kdlib.io import UnreadableRecord, atomic_write, ensure_writable_dir, read_json_object
from kdlib.paths import resolve_cache_dir, resolve_data_dir

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
META_FILE = "meta.json"
ARRAY_NAMES: tuple[str, ...] = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass
class CifarData:
    """A whole dataset in memory: uint8 HWC images, int64 labels, and how to normalize them."""

    name: str
    classes: list[str]
    num_classes: int
    train_images: np.ndarray = field(repr=False)
    train_labels: np.ndarray = field(repr=False)
    test_images: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    fingerprint: str
    mean: np.ndarray
    std: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict, repr=False)


def array_sha256(arr: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (independent of the .npy header)."""
    return hashlib.sha256(np.ascontiguousarray(arr).data).hexdigest()


def fingerprint(hashes: dict[str, dict[str, Any]]) -> str:
    """One sha256 naming the whole dataset: over each array's name, shape, dtype and hash."""
    h = hashlib.sha256()
    for name in ARRAY_NAMES:
        a = hashes[name]
        h.update(f"{name} {list(a['shape'])} {a['dtype']} {a['sha256']}\n".encode())
    return h.hexdigest()


def _check_structure(spec: DatasetSpec, raw: RawDataset) -> None:
    require_splits(raw)
    if len(raw.classes) != spec.num_classes:
        raise DataError(
            f"{raw.location}: found {len(raw.classes)} classes, {spec.title} has "
            f"{spec.num_classes}: {', '.join(raw.classes[:12])}"
            + (" ..." if len(raw.classes) > 12 else "")
        )
    for split in SPLITS:
        s = raw.splits[split]
        check_split(spec.name, split, s.images, s.labels, spec.num_classes)
        empty = [raw.classes[c] for c in range(spec.num_classes) if not (s.labels == c).any()]
        if empty:
            raise DataError(f"{raw.location}: no {split} images for class(es) {', '.join(empty)}")


def _read_source(
    spec: DatasetSpec,
    data_dir: str | os.PathLike | None,
    download: bool,
    workers: int | None,
    progress: bool | None,
) -> tuple[RawDataset, dict[str, Any]]:
    root, origin = resolve_data_dir(data_dir)
    place = discover.find_place(spec, root)
    if place is None and download:
        fetch(spec, root)
        place = discover.find_place(spec, root)
    if place is None:
        raise discover.not_found(spec, root, origin)
    start = time.perf_counter()
    raw = discover.read_place(place, workers=workers, progress=progress)
    manifest: dict[str, Any] = {"verified": False, "path": None}
    if raw.manifest is not None:
        manifest = verify_manifest(raw, raw.manifest)
    _check_structure(spec, raw)
    log.info("read %s from %s in %.1f s", spec.name, raw.location, time.perf_counter() - start)
    return raw, manifest


def _write_cache(
    spec: DatasetSpec, folder: Path, raw: RawDataset, manifest: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    # An old meta.json must not vouch for arrays that are being replaced.
    (folder / META_FILE).unlink(missing_ok=True)
    arrays = {}
    for split in SPLITS:
        arrays[f"{split}_images"] = raw.splits[split].images
        arrays[f"{split}_labels"] = raw.splits[split].labels.astype(np.int64, copy=False)
    hashes = {}
    for name, arr in arrays.items():
        with atomic_write(folder / f"{name}.npy", "wb") as f:
            np.save(f, arr, allow_pickle=False)
        hashes[name] = {
            "file": f"{name}.npy",
            "shape": list(arr.shape),
            "dtype": str(arr.dtype),
            "sha256": array_sha256(arr),
        }
    counts = {s: len(raw.splits[s].labels) for s in SPLITS}
    meta = {
        "format": CACHE_FORMAT,
        "dataset": spec.name,
        "classes": raw.classes,
        "num_classes": len(raw.classes),
        "source": {
            "kind": raw.kind,
            "path": str(raw.location),
            "parts": {str(k): str(v) for k, v in sorted(raw.parts.items())},
        },
        "counts": counts,
        "class_counts": {
            s: np.bincount(raw.splits[s].labels, minlength=spec.num_classes).tolist()
            for s in SPLITS
        },
        "complete": counts == spec.counts,
        "manifest": manifest,
        "arrays": hashes,
        "fingerprint": fingerprint(hashes),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kdlib_version": __version__,
    }
    with atomic_write(folder / META_FILE, "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    return arrays, meta


def _corrupt(folder: Path, name: str, detail: str) -> DataError:
    return DataError(
        f"the prepared cache {folder} is corrupt: {detail}; rebuild it from the source data "
        f"with `kdlib data prepare --dataset {name} --force`"
    )


def _read_cache(spec: DatasetSpec, folder: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        meta = read_json_object(folder / META_FILE)
        recorded = {n: meta["arrays"][n] for n in ARRAY_NAMES}
        if meta["format"] != CACHE_FORMAT or meta["dataset"] != spec.name:
            raise ValueError(f"it holds format {meta['format']} of {meta['dataset']!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _corrupt(folder, spec.name, f"unreadable {META_FILE} ({exc})") from None
    arrays = {}
    for name in ARRAY_NAMES:
        path = folder / f"{name}.npy"
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise _corrupt(folder, spec.name, f"cannot load {path.name} ({exc})") from None
        want = recorded[name]
        if list(arr.shape) != want["shape"] or str(arr.dtype) != want["dtype"]:
            raise _corrupt(
                folder,
                spec.name,
                f"{path.name} has shape {list(arr.shape)} {arr.dtype}, "
                f"expected {want['shape']} {want['dtype']}",
            )
        if array_sha256(arr) != want["sha256"]:
            raise _corrupt(folder, spec.name, f"{path.name} does not match its recorded sha256")
        arrays[name] = arr
    if fingerprint(recorded) != meta.get("fingerprint"):
        raise _corrupt(folder, spec.name, f"the fingerprint in {META_FILE} does not match")
    return arrays, meta


def _prepare(
    spec: DatasetSpec,
    folder: Path,
    data_dir: str | os.PathLike | None,
    download: bool,
    workers: int | None,
    progress: bool | None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    # Checked before decoding: a cache that cannot be written would waste the whole decode.
    ensure_writable_dir(folder.parent, "the cache folder (--cache-dir or $KDLIB_CACHE_DIR)")
    raw, manifest = _read_source(spec, data_dir, download, workers, progress)
    arrays, meta = _write_cache(spec, folder, raw, manifest)
    log.info("prepared %s in %s (fingerprint %s)", spec.name, folder, meta["fingerprint"][:12])
    return arrays, meta


def prepare_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    *,
    force: bool = False,
    workers: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Decode, verify and cache ``name``; returns the cache folder.

    An intact existing cache is kept (unless ``force``); a corrupt one is rebuilt.
    ``workers`` sets the decoding processes (default: the cores, at most 8).
    """
    spec = get_spec(name)
    folder = resolve_cache_dir(cache_dir) / spec.name
    if not force and (folder / META_FILE).is_file():
        try:
            _read_cache(spec, folder)
            return folder
        except DataError as exc:
            log.warning("%s; rebuilding it", exc)
    _prepare(spec, folder, data_dir, download, workers, progress)
    return folder


def cached_meta(name: str, cache_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The prepared cache's ``meta.json`` (classes, counts, fingerprint), read without
    loading or verifying the arrays; None when there is no usable one.

    Enough to compute a run's identity, so a finished run is found before any data is
    loaded; training itself always goes through ``load_dataset``, which verifies.
    """
    folder = resolve_cache_dir(cache_dir) / get_spec(name).name
    try:
        meta = read_json_object(folder / META_FILE)
    except UnreadableRecord:
        return None
    ok = isinstance(meta.get("classes"), list) and isinstance(meta.get("fingerprint"), str)
    counts = meta.get("counts")
    ok = ok and isinstance(counts, dict) and all(isinstance(counts.get(s), int) for s in SPLITS)
    return meta if ok else None


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    *,
    workers: int | None = None,
    progress: bool | None = None,
) -> CifarData:
    """Load ``name`` from its prepared cache, preparing the cache first if there is none.

    The cache is found by dataset name alone, so once prepared ``data_dir`` is not read.
    A cache that fails its checksums is an error (never silently rebuilt mid-experiment).
    """
    spec = get_spec(name)
    folder = resolve_cache_dir(cache_dir) / spec.name
    if (folder / META_FILE).is_file():
        arrays, meta = _read_cache(spec, folder)
    else:
        arrays, meta = _prepare(spec, folder, data_dir, download, workers, progress)
    return CifarData(
        name=spec.name,
        classes=list(meta["classes"]),
        num_classes=len(meta["classes"]),
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        fingerprint=meta["fingerprint"],
        mean=np.asarray(spec.mean, dtype=np.float32),
        std=np.asarray(spec.std, dtype=np.float32),
        meta=meta,
    )
