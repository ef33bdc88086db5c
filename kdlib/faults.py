"""Crash injection for the resume tests: ``KDLIB_FAULT=<point>`` kills the process there.

Only the reliability tests set the variable; with it unset each point costs one
comparison. Points: ``epoch-end:<E>`` (after epoch E's record is written, before its
checkpoint), ``checkpoint-write:<E>`` (checkpoint bytes written to the temporary file but
not yet renamed), ``step:<E>:<S>`` (inside epoch E, before step S). ``raise:<point>``
raises a ``RuntimeError`` there instead, for tests of how failures are recorded.
"""

from __future__ import annotations

import os
import signal

_FAULT = os.environ.get("KDLIB_FAULT") or None


def enabled() -> bool:
    """Whether any crash point is armed (lets hot loops skip building point names)."""
    return _FAULT is not None


class InjectedFault(RuntimeError):
    """The failure ``KDLIB_FAULT=raise:<point>`` asked for."""


def fault_point(name: str) -> None:
    """SIGKILL this process (or raise) if ``name`` is the armed crash point."""
    if _FAULT is None:
        return
    if name == _FAULT:
        os.kill(os.getpid(), signal.SIGKILL)
    if f"raise:{name}" == _FAULT:
        raise InjectedFault(f"fault injected at {name} (KDLIB_FAULT)")
