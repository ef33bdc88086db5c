"""What the completed runs cost (:func:`compute_table`): runs, wall-clock hours and
CPU-hours per kind of machine, precision and budget, as the summary reports them."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pandas as pd

from kdlib.figures.selection import col, missing, numeric

COMPUTE_COLUMNS = ["device", "precision", "epochs", "runs", "wall_hours", "cpu_hours"]


def _machine(row: pd.Series) -> str:
    """Where a run trained, as the compute table groups it: the accelerator's name, or the
    CPU's model and whether it computes bf16 natively (the two kinds of CPU differ ~5x);
    ``mixed: A + B`` for a run resumed on another kind of machine (``resumed_on``)."""
    first = _machine_label(
        row.get("env.device"), row.get("env.device_name"),
        row.get("env.cpu.cpu_name"), row.get("env.cpu.native_bf16"),
    )  # fmt: skip
    kinds = {first}
    resumed = row.get("resumed_on")
    if isinstance(resumed, str):
        with contextlib.suppress(ValueError):
            resumed = json.loads(resumed)
    for seg in resumed if isinstance(resumed, list) else []:
        if isinstance(seg, dict):
            kinds.add(
                _machine_label(
                    seg.get("device"),
                    seg.get("device_name"),
                    seg.get("cpu_name"),
                    seg.get("native_bf16"),
                )
            )
    return first if len(kinds) == 1 else "mixed: " + " + ".join(sorted(kinds))


def _machine_label(device: Any, name: Any, cpu_name: Any, native: Any) -> str:
    if device not in (None, "cpu") and not missing(device):
        return str(name if not missing(name) else device)
    kind = "" if missing(native) else (", native bf16" if native else ", no native bf16")
    return f"CPU ({'unknown model' if missing(cpu_name) else cpu_name}{kind})"


def compute_table(df: pd.DataFrame) -> pd.DataFrame:
    """What the completed runs cost, per machine kind, precision and budget: their number,
    wall-clock hours, and CPU-hours (wall time x the torch threads each had; CPU runs)."""
    runs = df[col(df, "status") == "completed"]
    if runs.empty:
        return pd.DataFrame(columns=COMPUTE_COLUMNS)
    wall = numeric(runs, "wall_seconds") / 3600.0
    on_cpu = col(runs, "env.device").fillna("cpu") == "cpu"
    cpu = (wall * numeric(runs, "env.torch_threads")).where(on_cpu)
    table = pd.DataFrame(
        {
            "device": [_machine(r) for _, r in runs.iterrows()],
            "precision": col(runs, "speed.precision").fillna("–").astype(str),
            "epochs": numeric(runs, "epochs"),
            "wall_hours": wall,
            "cpu_hours": cpu,
        }
    )
    keys = ["device", "precision", "epochs"]
    out = table.groupby(keys, sort=True).agg(
        runs=("wall_hours", "size"),
        wall_hours=("wall_hours", "sum"),
        cpu_hours=("cpu_hours", lambda s: s.sum(min_count=1)),
    )
    return out.reset_index()[COMPUTE_COLUMNS]
