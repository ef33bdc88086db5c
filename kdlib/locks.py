"""One lock per run configuration, so concurrent sweeps never run the same run twice.

The lock is an ``flock`` on ``<runs_dir>/.locks/<config_hash>.lock``: the kernel releases
it when the holder dies, even by SIGKILL, so a crashed run never blocks its resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from kdlib.errors import KdlibError
from kdlib.io import NotWritable


class RunLocked(KdlibError):
    """Another process is running this configuration right now."""


@contextlib.contextmanager
def run_lock(runs_dir: str | os.PathLike, config_hash: str) -> Iterator[Path]:
    """Hold the lock of ``config_hash`` for the duration of the block, or raise ``RunLocked``."""
    path = Path(runs_dir) / ".locks" / f"{config_hash}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise NotWritable(
            f"--runs-dir: cannot write into {runs_dir} ({e.strerror or e}); give a writable "
            "folder (a finished run there is still found without writing)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(
                f"a run with this configuration (hash {config_hash}) is in progress in another "
                f"process (lock {path}); wait for it or stop it first"
            ) from None
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def is_locked(runs_dir: str | os.PathLike, config_hash: str) -> bool:
    """Whether a process holds the lock of ``config_hash`` now: the one sure sign that a
    run is training (its recorded pid may be reused by another process, or not written
    yet while the run is set up). Reads Linux's ``/proc/locks``, which asks nothing of the
    lock; elsewhere a shared non-blocking ``flock`` probe, held for an instant."""
    path = Path(runs_dir) / ".locks" / f"{config_hash}.lock"
    try:
        st = path.stat()
    except OSError:
        return False  # never locked here
    held = _held_in_proc_locks(st.st_dev, st.st_ino)
    if held is not None:
        return held
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _held_in_proc_locks(dev: int, ino: int) -> bool | None:
    """Whether ``/proc/locks`` lists a lock on the file (device, inode); None without it."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5466259 0 EOF"; blocked waiters say "->"
        if "->" not in fields and len(fields) >= 6 and fields[5] == want:
            return True
    return False
