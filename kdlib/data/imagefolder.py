"""Read an ImageFolder tree ``DIR/<dataset>/{train,test}/<class>/<image>``.

The label of an image is the index of its class folder in sorted order (the torchvision
ImageFolder convention), taken over the class folders of both splits together so that a
class missing from one split cannot shift the labels of the others.
"""

from __future__ import annotations

from pathlib import Path

from kdlib.data.decode import Item, decode_many, is_hidden, is_image_name
from kdlib.data.raw import RawDataset, tree_splits
from kdlib.data.registry import SPLITS, DatasetSpec


def is_tree(dataset_dir: Path) -> bool:
    """Whether ``dataset_dir`` looks like an ImageFolder dataset (has train/ and test/)."""
    return all((dataset_dir / split).is_dir() for split in SPLITS)


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def list_tree(spec: DatasetSpec, dataset_dir: Path) -> tuple[list[str], list[Item]]:
    """Class names (sorted) and one decode item per image file, keyed by its tree path."""
    classes: set[str] = set()
    items: list[Item] = []
    for split in SPLITS:
        for class_dir in _visible_dirs(dataset_dir / split):
            classes.add(class_dir.name)
            for f in sorted(class_dir.iterdir()):
                if is_image_name(f.name) and f.is_file():
                    key = f"{spec.name}/{split}/{class_dir.name}/{f.name}"
                    items.append((key, str(f), str(f)))
    return sorted(classes), items


def read_image_folder(
    spec: DatasetSpec,
    dataset_dir: Path,
    *,
    workers: int | None = None,
    progress: bool | None = None,
) -> RawDataset:
    """Decode every image under ``dataset_dir`` (the folder holding train/ and test/)."""
    classes, items = list_tree(spec, dataset_dir)
    decoded = decode_many(
        items, total=len(items), workers=workers, desc=f"decoding {spec.name}", progress=progress
    )
    splits = tree_splits(spec.name, decoded, classes)
    return RawDataset(spec.name, classes, splits, "imagefolder", dataset_dir)
