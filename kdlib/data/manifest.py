"""Check decoded data against a ``manifest.csv(.gz)``: every file, label and pixel.

A manifest row is ``split,label,class,path,pixel_md5[,part]`` where ``pixel_md5`` is the
md5 of the decoded (32, 32, 3) uint8 HWC array's bytes. Any difference is an error naming
the first bad file, so a damaged or partial copy can never become a smaller dataset.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kdlib.data.raw import RawDataset
from kdlib.data.registry import SPLITS
from kdlib.errors import DataError

MANIFEST_NAMES: tuple[str, ...] = ("manifest.csv.gz", "manifest.csv")
REQUIRED_COLUMNS: tuple[str, ...] = ("split", "label", "class", "path", "pixel_md5")


@dataclass(frozen=True)
class ManifestRow:
    split: str
    label: int
    cls: str
    path: str
    pixel_md5: str
    part: int | None


def find_manifest(folders: Iterable[Path]) -> Path | None:
    """The first manifest file in ``folders``, or None."""
    for folder in folders:
        for fname in MANIFEST_NAMES:
            if (folder / fname).is_file():
                return folder / fname
    return None


def read_manifest(path: Path, name: str) -> dict[tuple[str, str], ManifestRow]:
    """Rows for dataset ``name`` (paths starting with ``name/``), keyed by (split, path)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read manifest {path}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"manifest {path} lacks column(s) {', '.join(missing)}")
    rows: dict[tuple[str, str], ManifestRow] = {}
    for lineno, rec in enumerate(reader, start=2):
        if not rec["path"].startswith(f"{name}/"):
            continue
        try:
            part = rec.get("part")
            row = ManifestRow(
                rec["split"],
                int(rec["label"]),
                rec["class"],
                rec["path"],
                rec["pixel_md5"].lower(),
                int(part) if part not in (None, "") else None,
            )
        except (TypeError, ValueError) as exc:
            raise DataError(f"manifest {path} line {lineno} is malformed: {exc}") from None
        key = (row.split, row.path)
        if key in rows:
            raise DataError(f"manifest {path} lists {row.path} twice (line {lineno})")
        rows[key] = row
    if not rows:
        raise DataError(f"manifest {path} has no rows for {name} (paths starting {name}/)")
    return rows


def _pixel_md5(img) -> str:
    return hashlib.md5(img.tobytes(), usedforsecurity=False).hexdigest()


def _missing_parts(raw: RawDataset, rows: dict, present: dict, manifest: Path) -> None:
    """Name whole archive parts that are absent, rather than their first missing file."""
    needed = Counter(r.part for r in rows.values() if r.part is not None)
    if raw.kind == "archives" and raw.parts:
        lost = sorted(set(needed) - set(raw.parts))
    else:  # a tree: a part counts as lost when none of its files is there
        seen = Counter(rows[k].part for k in present.keys() & rows.keys())
        lost = sorted(k for k in needed if seen[k] == 0)
    if not lost:
        return
    first = min((r for r in rows.values() if r.part in lost), key=_order)
    names = ", ".join(f"{raw.name}-part{k}.tar.gz" for k in lost)
    count = sum(needed[k] for k in lost)
    if raw.kind == "archives":
        where = f"archive part {', '.join(map(str, lost))} is missing (expected {names} in "
        where += f"{raw.location}); copy every part next to the manifest"
    else:
        where = f"every file of archive part {', '.join(map(str, lost))} is missing from "
        where += f"{raw.location}; unpack {names} there too"
    raise DataError(
        f"{raw.name} is incomplete: {where}. {manifest.name} lists {count} files from it, "
        f"the first being {first.path}."
    )


def _stem(key: tuple[str, str]) -> tuple[str, str]:
    split, path = key
    return split, str(PurePosixPath(path).with_suffix(""))


def _order(row: ManifestRow) -> tuple[int, str]:
    return (SPLITS.index(row.split) if row.split in SPLITS else len(SPLITS), row.path)


def verify_manifest(raw: RawDataset, manifest: Path) -> dict:
    """Check ``raw`` against ``manifest``; returns a summary, raises DataError on any mismatch."""
    # Files are matched by path without the suffix, so a copy re-encoded to another format
    # (x.webp saved as x.jpg) is compared by its pixels, not reported as missing.
    rows = {_stem(key): row for key, row in read_manifest(manifest, raw.name).items()}
    present: dict[tuple[str, str], tuple[str, int]] = {}
    paths: dict[tuple[str, str], str] = {}
    for split, data in raw.splits.items():
        if data.paths is None:
            raise DataError(f"{raw.kind} source has no file paths to check against {manifest}")
        for i, path in enumerate(data.paths):
            present[_stem((split, path))] = (split, i)
            paths[_stem((split, path))] = path
    _missing_parts(raw, rows, present, manifest)

    problems: list[tuple[tuple[int, str], str]] = []
    for key in rows.keys() - present.keys():
        row = rows[key]
        problems.append((_order(row), f"{row.path}: listed in the manifest but missing"))
    for key in present.keys() - rows.keys():
        split, path = key[0], paths[key]
        problems.append(((SPLITS.index(split), path), f"{path}: extra file, not in the manifest"))
    for key in rows.keys() & present.keys():
        row = rows[key]
        split, i = present[key]
        label = int(raw.splits[split].labels[i])
        if label != row.label or raw.classes[label] != row.cls:
            problems.append(
                (
                    _order(row),
                    f"{row.path}: has label {label} ({raw.classes[label]}) but the manifest "
                    f"says {row.label} ({row.cls})",
                )
            )
            continue
        got = _pixel_md5(raw.splits[split].images[i])
        if got != row.pixel_md5:
            found = paths[key]
            as_ = f" (found as {found})" if found != row.path else ""
            problems.append(
                (
                    _order(row),
                    f"{row.path}{as_}: pixels differ from the manifest (md5 {got}, expected "
                    f"{row.pixel_md5}); the file was changed or re-encoded lossily",
                )
            )
    if problems:
        problems.sort()
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        all_missing = all("missing" in p[1] for p in problems)
        hint = " Some files were not copied or unpacked." if all_missing else ""
        raise DataError(
            f"{raw.name} does not match {manifest}: first bad file {problems[0][1]}{more}.{hint}"
        )

    # With every file matched these always agree; kept as a cheap guard on the counts.
    for split in SPLITS:
        want = Counter(r.label for r in rows.values() if r.split == split)
        have = Counter(raw.splits[split].labels.tolist()) if split in raw.splits else Counter()
        if want != have:
            raise DataError(f"{raw.name} {split}: per-class counts differ from {manifest}")
    return {
        "path": str(manifest),
        "rows": len(rows),
        "verified": True,
    }
