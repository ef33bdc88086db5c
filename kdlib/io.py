"""Reading and writing files: atomic writes, and the one reader of each kind of file.

Every file kdlib writes (run records, data caches, checkpoints) goes through here:
write to a temporary file in the same directory, flush and fsync it, then rename it
over the target, which POSIX guarantees to be atomic.

Every file a user hands kdlib (YAML settings and sweeps, JSON run records, PyTorch
checkpoints) is read here too, so each way it can fail becomes one ``KdlibError`` that
names the file and says what was wrong, never a traceback.
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

from kdlib.errors import KdlibError

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


class NotWritable(KdlibError):
    """A folder kdlib must write into is a file, read-only or otherwise unwritable."""


def ensure_writable_dir(path: str | os.PathLike, label: str) -> Path:
    """Check, before any work that would be lost, that ``path`` is (or can become) a
    folder kdlib can write into; ``NotWritable`` (one line naming ``label``) otherwise.
    Nothing is created: the check writes and removes a probe file in the nearest folder
    that exists."""
    path = Path(path).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        part = "" if existing == path else f" (a part of {path})"
        raise NotWritable(f"{label}: {existing} is a file, not a folder{part}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise NotWritable(
            f"{label}: cannot write into {existing} ({e.strerror or e}); give a writable folder"
        ) from None
    return path


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
    """Read a JSON file (``OSError``/``ValueError`` on failure; see ``read_json_object``)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class UnreadableRecord(KdlibError, ValueError):
    """A JSON record (a run's config.json, metrics.json, ...) cannot be read as an object.

    Also a ``ValueError``, as a malformed record always was for the code that reads runs.
    """


class MissingRecord(UnreadableRecord, FileNotFoundError):
    """The record's file does not exist (yet): a run that has not written it."""


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file that must hold an object; anything else is an ``UnreadableRecord``."""
    try:
        obj = read_json(path)
    except FileNotFoundError:
        raise MissingRecord(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise UnreadableRecord(f"{path}: binary data, not JSON") from None
    except OSError as e:
        raise UnreadableRecord(f"{path}: cannot be read ({e.strerror or e})") from None
    except ValueError as e:
        raise UnreadableRecord(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise UnreadableRecord(f"{path}: a JSON {type(obj).__name__}, not an object")
    return obj


class UnreadableTorchFile(KdlibError):
    """``read_torch`` could not read a file; ``unsafe`` when it asks for Python objects."""

    def __init__(self, message: str, *, unsafe: bool = False) -> None:
        super().__init__(message)
        self.unsafe = unsafe


def read_torch(path: str | os.PathLike) -> Any:
    """What ``torch.save`` wrote to ``path``, read with the weights-only unpickler.

    Raises ``UnreadableTorchFile`` saying why: empty, a raw ``pickle.dump``, corrupt or
    truncated, or (``unsafe``) a pickle of classes or functions, which could run code.
    torch's own warnings about the file are not shown: the error says what matters.
    """
    import pickle
    import warnings

    import torch

    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UnreadableTorchFile(f"{p}: no such file") from None
    except IsADirectoryError:
        raise UnreadableTorchFile(f"{p}: a directory, not a checkpoint file") from None
    except pickle.UnpicklingError as e:
        text = str(e).lower()
        if "unsupported global" in text or "unsupported class" in text:
            raise UnreadableTorchFile(
                f"refusing to load {p}: it contains arbitrary Python objects (pickled classes "
                "or functions, which can run code when unpickled), so it was not loaded for "
                "safety; re-save just the weights "
                "(torch.save(model.state_dict(), path)) where the file is trusted",
                unsafe=True,
            ) from None
        raise UnreadableTorchFile(_unreadable_torch(p, e)) from None
    except Exception as e:  # garbage makes the unpickler fail in any way (IndexError, ...)
        raise UnreadableTorchFile(_unreadable_torch(p, e)) from None


def _unreadable_torch(path: Path, error: Exception) -> str:
    head = b""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        head = f.read(4)
    if not head:
        detail = "the file is empty"
    elif head[:1] == b"\x80" and head[2:4] != b"\x8a\x0a":  # a pickle, not torch's legacy
        detail = (
            "it is a plain pickle (pickle.dump), not a torch.save file; save it with "
            "torch.save(state_dict, path)"
        )
    else:
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        if "unsupported operand" in first.lower() or not first:
            first = "its bytes are neither a zip archive nor a pickle"
        detail = f"{type(error).__name__}: {first[:160]}"
    return (
        f"{path} is not a readable PyTorch checkpoint (corrupt, truncated or not written by "
        f"torch.save): {detail}"
    )
