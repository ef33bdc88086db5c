"""User-facing errors: the CLI turns these into one line on stderr and exit code 2."""

from __future__ import annotations


class KdlibError(Exception):
    """Bad input the user can fix (unknown name, missing file, wrong shape, corrupt data).

    The message must say what is wrong and what to do or what is allowed.
    """


class DataError(KdlibError):
    """The dataset is missing, incomplete or does not match its manifest."""


class CheckpointError(KdlibError):
    """A checkpoint file is missing, unsafe to load, or does not fit the model."""
