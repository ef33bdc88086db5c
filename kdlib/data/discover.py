"""Find a dataset under a data folder, in any accepted layout, and read it.

The places are tried in a fixed order (fastest to read first). When nothing is found the
error lists every place searched and how to provide the data, since that is the first
thing a new user runs into.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdlib.data.archives import find_archives, read_archives
from kdlib.data.imagefolder import is_tree, read_image_folder
from kdlib.data.manifest import find_manifest
from kdlib.data.pickles import read_pickle_archive, read_pickle_dir
from kdlib.data.raw import RawDataset
from kdlib.data.registry import DatasetSpec
from kdlib.errors import DataError


@dataclass(frozen=True)
class Place:
    """One location a dataset may be in, and how to read it from there."""

    kind: str
    path: Path  # what is shown in the "searched" list
    found: Callable[[], bool]
    read: Callable[..., RawDataset]
    manifest_dirs: tuple[Path, ...] = ()


def _unique(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


def places(spec: DatasetSpec, data_dir: Path) -> list[Place]:
    """Every place searched for ``spec`` under ``data_dir``, in order of preference."""
    n = spec.name
    roots = _unique([data_dir, data_dir / n])
    trees = _unique([data_dir / n, data_dir / n / n] + ([data_dir] if data_dir.name == n else []))
    out: list[Place] = []
    for root in roots:
        d = root / spec.pickle_dir
        out.append(Place("pickle", d, d.is_dir, lambda d=d, **kw: read_pickle_dir(spec, d)))
    for tree in trees:
        out.append(
            Place(
                "imagefolder",
                tree,
                lambda t=tree: is_tree(t),
                lambda t=tree, **kw: read_image_folder(spec, t, **kw),
                (tree, tree.parent),
            )
        )
    for root in roots:
        out.append(
            Place(
                "archives",
                root / f"{n}-part*.tar.gz",
                lambda r=root: bool(find_archives(spec, r)),
                lambda r=root, **kw: read_archives(spec, find_archives(spec, r), **kw),
                (root,),
            )
        )
    for root in roots:
        a = root / spec.pickle_archive
        out.append(
            Place("pickle-archive", a, a.is_file, lambda a=a, **kw: read_pickle_archive(spec, a))
        )
    return out


def find_place(spec: DatasetSpec, data_dir: Path) -> Place | None:
    """The first place under ``data_dir`` that holds ``spec``, or None."""
    return next((p for p in places(spec, data_dir) if p.found()), None)


def read_place(
    place: Place, *, workers: int | None = None, progress: bool | None = None
) -> RawDataset:
    """Read the dataset at ``place`` and note the manifest lying next to it, if any."""
    raw = place.read(workers=workers, progress=progress)
    raw.manifest = find_manifest(place.manifest_dirs)
    return raw


_DESCRIBE = {
    "pickle": "official python release, unpacked",
    "imagefolder": "ImageFolder tree: train/ and test/ with one folder per class",
    "archives": "archives of that tree",
    "pickle-archive": "official python release, as downloaded",
}


def not_found(spec: DatasetSpec, data_dir: Path, origin: str) -> DataError:
    """The error for a dataset that is nowhere, in one line: where it looked and what to do
    (the README's "Data" section lists the accepted layouts)."""
    where = f"data folder {data_dir} ({origin}"
    where += ", which does not exist)" if not data_dir.exists() else ")"
    searched = ", ".join(str(p.path.relative_to(data_dir)) for p in places(spec, data_dir))
    return DataError(
        f"{spec.title} ({spec.name}) not found in {where}; looked for {searched}; point "
        f"--data-dir (or KDLIB_DATA_DIR) at the folder with the official python release, "
        f"an ImageFolder tree or its archives, or add --download (or fetch {spec.url} by "
        "hand; README: Data)"
    )
