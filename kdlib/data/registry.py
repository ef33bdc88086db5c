"""The datasets kdlib knows: names, class counts, file layouts and normalization constants.

Everything dataset-specific lives here so the readers, the cache and the error messages
all agree on one description of each dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdlib.errors import KdlibError

SPLITS: tuple[str, ...] = ("train", "test")
IMAGE_SHAPE: tuple[int, int, int] = (32, 32, 3)


@dataclass(frozen=True)
class DatasetSpec:
    """How one CIFAR variant is laid out on disk and how the paper normalizes it."""

    name: str
    title: str
    num_classes: int
    counts: dict[str, int]  # images per split in the official release
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pickle_dir: str  # folder inside the official archive
    pickle_archive: str  # the official download
    pickle_files: dict[str, tuple[str, ...]]  # split -> batch files inside pickle_dir
    pickle_meta: str
    label_key: bytes
    names_key: bytes
    url: str
    torchvision_class: str


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        num_classes=10,
        counts={"train": 50_000, "test": 10_000},
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2023, 0.1994, 0.2010),
        pickle_dir="cifar-10-batches-py",
        pickle_archive="cifar-10-python.tar.gz",
        pickle_files={
            "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
            "test": ("test_batch",),
        },
        pickle_meta="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        torchvision_class="CIFAR10",
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        title="CIFAR-100",
        num_classes=100,
        counts={"train": 50_000, "test": 10_000},
        mean=(0.507, 0.487, 0.441),
        std=(0.267, 0.256, 0.276),
        pickle_dir="cifar-100-python",
        pickle_archive="cifar-100-python.tar.gz",
        pickle_files={"train": ("train",), "test": ("test",)},
        pickle_meta="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        torchvision_class="CIFAR100",
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """Look a dataset up by name, failing with the list of valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        valid = ", ".join(sorted(DATASETS))
        raise KdlibError(f"unknown dataset {name!r}; valid datasets: {valid}") from None


def dataset_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The paper's per-channel (mean, std) for ``name``, used to normalize inputs."""
    spec = get_spec(name)
    return spec.mean, spec.std
