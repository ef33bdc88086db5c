"""Optional TensorBoard scalars of each run (``--tensorboard DIR``), as users of other
distillation codebases expect: one folder per run below ``DIR``, one scalar per number of
its history row (losses, accuracies, lr, seconds) at each epoch.

The run's own record (``history.csv``) stays the one source of the study; these are a
view of it for TensorBoard. The ``tensorboard`` package is optional
(``pip install kdlib[tensorboard]``).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from kdlib.errors import KdlibError
from kdlib.runs import RunRecord


def check_available() -> None:
    """``KdlibError`` saying what to install when TensorBoard cannot be written."""
    if importlib.util.find_spec("tensorboard") is None:
        raise KdlibError(
            "--tensorboard needs the tensorboard package: pip install tensorboard "
            "(or drop --tensorboard; history.csv has the same numbers)"
        )


class ScalarWriter:
    """Writes the newest history row of a run as TensorBoard scalars, epoch by epoch
    (an ``on_epoch`` callback of the training loop)."""

    def __init__(self, log_dir: str | Path, run_id: str) -> None:
        check_available()
        from torch.utils.tensorboard import SummaryWriter  # optional: imported when asked for

        self.writer = SummaryWriter(log_dir=str(Path(log_dir) / run_id))

    def __call__(self, record: RunRecord, history: list[dict[str, Any]]) -> None:
        row = history[-1]
        for name, value in row.items():
            if name == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(name, value, global_step=row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
