"""Atomic file writes: a crash never leaves a half-written file under the final name.

Every file kdlib writes (run records, data caches, checkpoints) goes through here:
write to a temporary file in the same directory, flush and fsync it, then rename it
over the target, which POSIX guarantees to be atomic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def claim_dir(parent: str | os.PathLike, name: str) -> Path:
    """Create and return a new directory ``parent/name`` (``name-2``, ``name-3``... if taken).

    ``mkdir`` either creates the directory or fails, so two processes never claim the same
    one, whatever they race for.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    path, k = parent / name, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            k += 1
            path = parent / f"{name}-{k}"


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_yaml(path: str | os.PathLike, label: str) -> Any:
    """A YAML file's content; a missing or malformed file is a one-line ``KdlibError``
    starting with ``label`` (e.g. ``--config='x.yaml'``)."""
    import yaml

    from kdlib.errors import KdlibError

    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise KdlibError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise KdlibError(f"{label}: a directory, not a YAML file") from None
    except UnicodeDecodeError:
        raise KdlibError(f"{label}: not a text file (binary data), not YAML") from None
    except OSError as e:
        raise KdlibError(f"{label}: cannot be read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise KdlibError(f"{label}: not valid YAML{line}") from None


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)
