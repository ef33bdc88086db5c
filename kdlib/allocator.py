"""glibc's malloc, tuned for training on a CPU.

A training step frees and allocates the same few-megabyte activation buffers hundreds of
times an epoch. With glibc's defaults, freed memory at the top of the heap goes back to
the kernel (trimmed) and large buffers are mapped and unmapped, so the next step faults
every page in again: on a 2-core AVX2 EPYC that was 2.5 million page faults and a quarter
of the time of 10 KD steps. Keeping freed memory in the process (buffers up to 32 MiB,
glibc's largest mmap threshold, come from the heap; the heap grows by 256 MiB and is
trimmed only above 2 GiB free) removes most of them (docs/performance.md).

It changes no result, only where freed memory waits; so it is no part of a run's
identity. It is process-wide and glibc reads it from calls (``mallopt``), not only from
the ``MALLOC_*_`` environment variables or ``GLIBC_TUNABLES``; where those set malloc, or
another allocator is preloaded, the environment's choice is left as it is. Recorded with
each run (``allocator_state``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import warnings

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

TUNED = {
    M_MMAP_THRESHOLD: 32 << 20,  # glibc refuses more on 64-bit (HEAP_MAX_SIZE / 2)
    M_TRIM_THRESHOLD: 2**31 - 1,  # mallopt takes an int
    M_TOP_PAD: 256 << 20,  # each growth of the heap asks for this much more
}
# glibc's defaults (malloc.h), put back where tuning fails halfway
DEFAULTS = {M_MMAP_THRESHOLD: 128 << 10, M_TRIM_THRESHOLD: 128 << 10, M_TOP_PAD: 128 << 10}
ENV_KNOBS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
MODES = ("tuned", "default")

_state = "glibc default"


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's C library where it is glibc (mallopt exists), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def _preloaded_malloc() -> bool:
    """Whether the malloc this process calls is not glibc's own (jemalloc, tcmalloc, ...
    preloaded through LD_PRELOAD or /etc/ld.so.preload)."""
    libc = _glibc()
    if libc is None:
        return False
    try:
        own = ctypes.CDLL("libc.so.6").malloc
    except (OSError, AttributeError):  # pragma: no cover - glibc names it so
        return False
    address = ctypes.cast(libc.malloc, ctypes.c_void_p).value
    return address != ctypes.cast(own, ctypes.c_void_p).value


def _environment_choice() -> str | None:
    """What the environment chose for malloc, if anything (glibc read it at start-up)."""
    if _preloaded_malloc():
        return f"preloaded ({os.environ.get('LD_PRELOAD') or '/etc/ld.so.preload'})"
    knobs = [f"{k}={os.environ[k]}" for k in ENV_KNOBS if k in os.environ]
    knobs += [
        t for t in os.environ.get("GLIBC_TUNABLES", "").split(":") if t.startswith("glibc.malloc.")
    ]
    if knobs:
        return "glibc, set by the environment (" + ", ".join(knobs) + ")"
    return None


def tune_allocator(mode: str = "tuned") -> str:
    """Apply ``mode`` (``tuned`` or ``default``) to this process's malloc and return what
    it now is (``allocator_state``). ``default`` takes effect only in a process not tuned
    before (glibc's dynamic thresholds cannot be switched back on): such a process warns
    and says it is tuned."""
    global _state
    if mode not in MODES:
        raise ValueError(f"cpu_allocator={mode!r}: one of {', '.join(MODES)}")
    libc = _glibc()
    if mode == "default" and _state == "glibc tuned":
        warnings.warn(
            "cpu_allocator=default: this process's malloc was tuned by an earlier run and "
            "stays so (start a new process for glibc's default)",
            stacklevel=2,
        )
    elif mode == "tuned" and _state == "glibc default" and libc and not _environment_choice():
        if all(libc.mallopt(param, value) == 1 for param, value in TUNED.items()):
            _state = "glibc tuned"
        else:  # pragma: no cover - a glibc that refuses these values
            for param, value in DEFAULTS.items():
                libc.mallopt(param, value)
            _state = "glibc default (mallopt refused the tuning)"
    return allocator_state()


def allocator_state() -> str:
    """What this process's malloc is: ``glibc tuned``, ``glibc default``, or what the
    environment chose."""
    chosen = _environment_choice()
    if chosen is not None:
        return chosen
    return _state if _glibc() is not None else "not glibc (left as it is)"
