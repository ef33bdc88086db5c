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
the ``MALLOC_*_`` environment variables; where those are set, or another allocator is
preloaded, the environment's choice is left as it is. Recorded with each run
(``allocator_state``).
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

TUNED = {
    M_MMAP_THRESHOLD: 32 << 20,  # glibc refuses more on 64-bit (HEAP_MAX_SIZE / 2)
    M_TRIM_THRESHOLD: 2**31 - 1,  # mallopt takes an int
    M_TOP_PAD: 256 << 20,
}
ENV_KNOBS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
MODES = ("tuned", "default")

_state = "glibc default"


def _glibc() -> ctypes.CDLL | None:
    """This process's C library where it is glibc (mallopt exists), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def _environment_choice() -> str | None:
    """What the environment already chose for malloc, if anything."""
    preload = os.environ.get("LD_PRELOAD", "")
    if "malloc" in preload:
        return f"preloaded ({preload})"
    knobs = [k for k in ENV_KNOBS if k in os.environ]
    if knobs:
        return (
            "glibc, set by the environment ("
            + ", ".join(f"{k}={os.environ[k]}" for k in knobs)
            + ")"
        )
    return None


def tune_allocator(mode: str = "tuned") -> str:
    """Apply ``mode`` (``tuned`` or ``default``) to this process's malloc and return what
    it now is (``allocator_state``). ``default`` changes nothing: glibc cannot be put
    back once tuned, so a process tuned earlier says so."""
    global _state
    if mode not in MODES:
        raise ValueError(f"cpu_allocator={mode!r}: one of {', '.join(MODES)}")
    libc = _glibc()
    if mode == "tuned" and _state != "glibc tuned" and libc and not _environment_choice():
        if all(libc.mallopt(param, value) == 1 for param, value in TUNED.items()):
            _state = "glibc tuned"
        else:  # pragma: no cover - a glibc that refuses these values
            _state = "glibc default (mallopt refused the tuning)"
    return allocator_state()


def allocator_state() -> str:
    """What this process's malloc is: ``glibc tuned``, ``glibc default``, or what the
    environment chose."""
    chosen = _environment_choice()
    if chosen is not None:
        return chosen
    return _state if _glibc() is not None else "not glibc (left as it is)"
