"""Read the official CIFAR python release: pickled batches with bytes keys, CHW rows.

Accepts the unpacked folder (``cifar-10-batches-py/``, ``cifar-100-python/``) or the
downloaded ``.tar.gz`` itself, streamed without unpacking. Unpickling is restricted to
the few numpy constructors these files need, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from kdlib.data.raw import RawDataset, RawSplit, check_split, sort_key
from kdlib.data.registry import SPLITS, DatasetSpec
from kdlib.errors import DataError

# The numpy constructors an array or scalar pickle refers to, under old and new names.
_NUMPY = {
    "_reconstruct": np.empty(0).__reduce__()[0],
    "scalar": np.int64(0).__reduce__()[0],
    "_frombuffer": np.arange(2).__reduce_ex__(5)[0],  # protocol 5 arrays
}
_ALLOWED = {
    (f"numpy.{core}.{mod}", name): _NUMPY[name]
    for core in ("core", "_core")
    for mod, name in (
        ("multiarray", "_reconstruct"),
        ("multiarray", "scalar"),
        ("numeric", "_frombuffer"),
    )
}
_ALLOWED |= {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if (module, name) == ("_codecs", "encode"):  # protocol-2 pickles encode bytes this way
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(data: bytes, display: str) -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # any failure means a damaged or foreign file
        raise DataError(f"cannot read CIFAR batch {display}: {exc}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{display} is not a CIFAR batch (expected a dict)")
    return obj


def _field(batch: dict, key: bytes, display: str) -> Any:
    if key in batch:
        return batch[key]
    if key.decode() in batch:  # tolerate str keys (re-pickled under Python 3)
        return batch[key.decode()]
    raise DataError(f"{display} has no {key.decode()!r} entry")


def _build(spec: DatasetSpec, blobs: dict[str, bytes], where: str) -> tuple[list[str], dict]:
    meta = _unpickle(blobs[spec.pickle_meta], f"{where}/{spec.pickle_meta}")
    raw_names = _field(meta, spec.names_key, where)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw_names]
    if len(names) != spec.num_classes:
        raise DataError(f"{where}: {len(names)} class names, expected {spec.num_classes}")
    splits = {}
    for split in SPLITS:
        images, labels, files = [], [], []
        for fname in spec.pickle_files[split]:
            display = f"{where}/{fname}"
            batch = _unpickle(blobs[fname], display)
            data = np.asarray(_field(batch, b"data", display), dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3072:
                raise DataError(f"{display}: data has shape {data.shape}, expected (N, 3072)")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(_field(batch, spec.label_key, display), dtype=np.int64))
            got = batch.get(b"filenames", batch.get("filenames"))
            files += [f.decode() if isinstance(f, bytes) else str(f) for f in got or []]
        img = np.ascontiguousarray(np.concatenate(images))
        lab = np.concatenate(labels)
        check_split(spec.name, split, img, lab, spec.num_classes)
        if len(files) != len(lab):
            files = [""] * len(lab)  # no usable file names: keep the release order per class
        order = sorted(range(len(lab)), key=lambda i: sort_key(int(lab[i]), files[i]))
        splits[split] = RawSplit(np.ascontiguousarray(img[order]), lab[order])
    return names, splits


def _needed(spec: DatasetSpec) -> list[str]:
    return [spec.pickle_meta, *(f for split in SPLITS for f in spec.pickle_files[split])]


def read_pickle_dir(spec: DatasetSpec, folder: Path) -> RawDataset:
    """Read an unpacked official release folder such as ``DIR/cifar-10-batches-py``."""
    missing = [f for f in _needed(spec) if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"{folder} is incomplete: missing {', '.join(missing)}; "
            f"re-download {spec.url} and unpack it"
        )
    blobs = {f: (folder / f).read_bytes() for f in _needed(spec)}
    classes, splits = _build(spec, blobs, str(folder))
    return RawDataset(spec.name, classes, splits, "pickle", folder)


def read_pickle_archive(spec: DatasetSpec, archive: Path) -> RawDataset:
    """Read the official ``cifar-10-python.tar.gz`` (or CIFAR-100) directly, streaming."""
    wanted = set(_needed(spec))
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r|gz") as tf:
            for member in tf:
                parts = PurePosixPath(member.name).parts
                wanted_member = len(parts) >= 2 and parts[-2] == spec.pickle_dir
                if member.isfile() and wanted_member and parts[-1] in wanted:
                    blobs[parts[-1]] = tf.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read archive {archive}: {exc}") from None
    missing = sorted(wanted - set(blobs))
    if missing:
        raise DataError(f"{archive} lacks {spec.pickle_dir}/{{{', '.join(missing)}}}")
    classes, splits = _build(spec, blobs, f"{archive}:{spec.pickle_dir}")
    return RawDataset(spec.name, classes, splits, "pickle-archive", archive)
