"""Read ``<dataset>-part*.tar.gz`` archives directly, streaming, without unpacking them.

Members are laid out like the ImageFolder tree (``cifar10/train/deer/x.webp``). Reading
the compressed stream overlaps with decoding in the worker pool.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from kdlib.data.decode import Item, decode_many, is_hidden, is_image_name
from kdlib.data.raw import RawDataset, tree_splits
from kdlib.data.registry import SPLITS, DatasetSpec
from kdlib.errors import DataError

_PART = re.compile(r"-part(\d+)\.tar\.gz$")


def find_archives(spec: DatasetSpec, folder: Path) -> list[Path]:
    """The dataset's archives in ``folder``: ``<name>-part<k>.tar.gz`` or ``<name>.tar.gz``."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob(f"{spec.name}-part*.tar.gz") if _PART.search(p.name)]
    found.sort(key=lambda p: int(_PART.search(p.name).group(1)))
    single = folder / f"{spec.name}.tar.gz"
    return found + ([single] if single.is_file() else [])


def part_number(archive: Path) -> int | None:
    """The ``k`` of ``<name>-part<k>.tar.gz``, or None for an archive without a part number."""
    m = _PART.search(archive.name)
    return int(m.group(1)) if m else None


def _members(spec: DatasetSpec, archives: list[Path], classes: set[str]) -> Iterator[Item]:
    seen: dict[str, Path] = {}
    for archive in archives:
        try:
            with tarfile.open(archive, "r|gz") as tf:
                for member in tf:
                    parts = PurePosixPath(member.name).parts
                    if parts and parts[0] == ".":
                        parts = parts[1:]
                    if (
                        not member.isfile()
                        or len(parts) != 4
                        or parts[0] != spec.name
                        or parts[1] not in SPLITS
                        or is_hidden(parts[2])
                        or not is_image_name(parts[3])
                    ):
                        continue
                    key = "/".join(parts)
                    if key in seen:
                        raise DataError(f"{key} appears in both {seen[key]} and {archive}")
                    seen[key] = archive
                    classes.add(parts[2])
                    yield key, f"{archive}:{member.name}", tf.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"cannot read archive {archive}: {exc}") from None


def read_archives(
    spec: DatasetSpec,
    archives: list[Path],
    *,
    workers: int | None = None,
    progress: bool | None = None,
) -> RawDataset:
    """Decode every image in ``archives`` (all parts of one dataset)."""
    classes: set[str] = set()
    decoded = decode_many(
        _members(spec, archives, classes),
        workers=workers,
        desc=f"decoding {spec.name}",
        progress=progress,
    )
    if not decoded:
        names = ", ".join(str(a) for a in archives)
        raise DataError(f"no {spec.name}/{{train,test}}/<class>/<image> members in {names}")
    class_list = sorted(classes)
    splits = tree_splits(spec.name, decoded, class_list)
    parts = {part_number(a): a for a in archives if part_number(a) is not None}
    return RawDataset(spec.name, class_list, splits, "archives", archives[0].parent, parts=parts)
