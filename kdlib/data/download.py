"""Optional download of the official release through torchvision.

torchvision is not a kdlib dependency: it is imported only here, only when the user asks
for ``download=True``, and its absence is a clear error with the manual alternative.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from kdlib.data.registry import DatasetSpec
from kdlib.errors import DataError


def download(spec: DatasetSpec, data_dir: Path) -> None:
    """Fetch ``spec``'s official python release into ``data_dir`` (both splits)."""
    manual = (
        f"or download {spec.url} yourself and unpack it into {data_dir} "
        f"(giving {data_dir / spec.pickle_dir})"
    )
    try:
        datasets = importlib.import_module("torchvision.datasets")
    except ImportError:
        raise DataError(
            f"downloading {spec.title} needs torchvision: `pip install torchvision` "
            f"(or `pip install kdlib[download]`), {manual}"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    cls = getattr(datasets, spec.torchvision_class)
    try:
        for train in (True, False):
            cls(root=str(data_dir), train=train, download=True)
    except Exception as exc:  # network, checksum and disk errors all end the same way
        raise DataError(
            f"downloading {spec.title} failed ({exc}); check the network, {manual}"
        ) from None
