"""What the completed runs cost (:func:`compute_table`): runs, wall-clock hours and
CPU-hours per kind of machine, precision and budget, as the summary reports them."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pandas as pd

from kdlib.figures.selection import col, missing, numeric

COMPUTE_COLUMNS = ["device", "precision", "epochs", "runs", "wall_hours", "cpu_hours"]


def _segments(row: pd.Series) -> list[dict[str, Any]]:
    """Where a resumed run continued (``resumed_on``, one entry per resume, in order)."""
    resumed = row.get("resumed_on")
    if isinstance(resumed, str):
        with contextlib.suppress(ValueError):
            resumed = json.loads(resumed)
    return [seg for seg in resumed if isinstance(seg, dict)] if isinstance(resumed, list) else []


def _machine(row: pd.Series) -> str:
    """Where a run trained, as the compute table groups it: the accelerator's name, or the
    CPU's model and whether it computes bf16 natively (the two kinds of CPU differ ~5x);
    ``mixed: A + B`` for a run resumed on another kind of machine (``resumed_on``)."""
    first = _machine_label(
        row.get("env.device"), row.get("env.device_name"),
        row.get("env.cpu.cpu_name"), row.get("env.cpu.native_bf16"),
    )  # fmt: skip
    kinds = {first}
    for seg in _segments(row):
        kinds.add(
            _machine_label(
                seg.get("device"),
                seg.get("device_name"),
                seg.get("cpu_name"),
                seg.get("native_bf16"),
            )
        )
    return first if len(kinds) == 1 else "mixed: " + " + ".join(sorted(kinds))


def _cpu_hours(row: pd.Series) -> float:
    """A CPU run's wall time x its torch threads, segment by segment when it was resumed
    with another thread count (each resume records the wall time it continued from); NaN
    when that split is unknown, rather than a guess."""
    wall, threads = row.get("wall_seconds"), row.get("env.torch_threads")
    if missing(wall) or missing(threads):
        return float("nan")
    segments = _segments(row)
    if all(seg.get("torch_threads") == threads for seg in segments):
        return float(wall) * float(threads) / 3600.0
    starts = [0.0] + [seg.get("from_wall_seconds") for seg in segments]
    if any(missing(s) for s in starts):
        return float("nan")
    ends = [*starts[1:], float(wall)]
    counts = [threads] + [seg.get("torch_threads") for seg in segments]
    if any(missing(n) for n in counts):
        return float("nan")
    cpu = sum((end - start) * float(n) for start, end, n in zip(starts, ends, counts, strict=True))
    return cpu / 3600.0


def _machine_label(device: Any, name: Any, cpu_name: Any, native: Any) -> str:
    if device not in (None, "cpu") and not missing(device):
        return str(name if not missing(name) else device)
    kind = "" if missing(native) else (", native bf16" if native else ", no native bf16")
    return f"CPU ({'unknown model' if missing(cpu_name) else cpu_name}{kind})"


def compute_table(df: pd.DataFrame) -> pd.DataFrame:
    """What the completed runs cost, per machine kind, precision and budget: their number,
    wall-clock hours, and CPU-hours (wall time x the torch threads each segment had; CPU
    runs)."""
    runs = df[col(df, "status") == "completed"]
    if runs.empty:
        return pd.DataFrame(columns=COMPUTE_COLUMNS)
    wall = numeric(runs, "wall_seconds") / 3600.0
    on_cpu = col(runs, "env.device").fillna("cpu") == "cpu"
    cpu = pd.Series([_cpu_hours(r) for _, r in runs.iterrows()], index=runs.index)
    cpu = cpu.where(on_cpu)
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
        # unknown for a group with any run whose CPU time is unknown (or not on a CPU)
        cpu_hours=("cpu_hours", lambda s: s.sum() if s.notna().all() else float("nan")),
    )
    return out.reset_index()[COMPUTE_COLUMNS]
