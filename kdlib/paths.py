"""Where kdlib looks for data and keeps its caches (prepared arrays, model weights)."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The data folder and where that choice came from: argument, environment, default."""
    if data_dir is not None:
        return Path(data_dir).expanduser().absolute(), "given as data_dir / --data-dir"
    env = os.environ.get("KDLIB_DATA_DIR")
    if env:
        return Path(env).expanduser().absolute(), "from KDLIB_DATA_DIR"
    return Path("data").absolute(), "the default ./data"


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    """The cache root: argument, else ``KDLIB_CACHE_DIR``, else ``~/.cache/kdlib``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser().absolute()
    env = os.environ.get("KDLIB_CACHE_DIR")
    if env:
        return Path(env).expanduser().absolute()
    return Path.home() / ".cache" / "kdlib"


def weights_root(cache_dir: str | os.PathLike | None) -> Path:
    """Where runs keep their training checkpoints and weights: in the cache, outside
    ``runs/`` (kept small). Each run claims its own folder below it (``state_dir``)."""
    return resolve_cache_dir(cache_dir) / "weights"
