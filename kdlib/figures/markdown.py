"""The paper's tables beside ours as Markdown, for the README and ``figures/``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from kdlib.figures.compute import compute_table
from kdlib.figures.selection import TABLE_TEACHER_FROM, col, is_synthetic, missing
from kdlib.figures.style import SYNTHETIC_NOTE, tell_apart
from kdlib.figures.tables import gain_table, summary_table
from kdlib.paper import TABLES, method_key, method_label, model_label


def format_summary(summary: pd.DataFrame, digits: int = 2) -> str:
    """A Markdown table of :func:`summary_table` for the README (mean +- std over seeds).

    Each row names its precision: bf16 and fp32 runs never pool, and a paper table's row
    shows one setting, which may be of either. Rows that would read the same but are
    different settings say what tells them apart (``KD (teacher trained)``, their method
    parameters, else their setting hash).
    """

    def pm(m: float, s: float) -> str:
        if missing(m):
            return "–"
        return f"{m:.{digits}f}" + ("" if missing(s) else f" ± {s:.{digits}f}")

    def num(v: float, sign: bool = False) -> str:
        if missing(v):
            return "–"
        return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"

    head = (
        "| method | teacher → student | epochs | precision | seeds | final epoch "
        "| validation-chosen | best epoch | paper | Δ (best − paper) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    precisions = ["–" if missing(v) else str(v) for v in col(summary, "precision")]
    same = [
        f"{method_label(r['method'])}|{r['teacher']}|{r['student']}|{r['dataset']}|{r['epochs']}"
        f"|{precision}"
        for precision, (_, r) in zip(precisions, summary.iterrows(), strict=True)
    ]
    names = tell_apart(
        same,
        [str(v) for v in col(summary, "setting")],
        [None if missing(v) else v for v in col(summary, "teacher_from")],
        ["" if missing(p) else str(p) for p in col(summary, "params")],
    )
    rows = zip(same, names, precisions, summary.iterrows(), strict=True)
    for key, name, precision, (_, r) in rows:
        method = method_label(r["method"]) + name[len(key) :]  # what tell_apart added
        lines.append(
            f"| {method} | {model_label(r['teacher'])} → "
            f"{model_label(r['student'])} | {r['epochs']} | {precision} | {r['n_seeds']} "
            f"| {pm(r['final_mean'], r['final_std'])} | {pm(r['sel_mean'], r['sel_std'])} "
            f"| {pm(r['best_mean'], r['best_std'])} | {num(r['paper'])} "
            f"| {num(r['delta'], sign=True)} |"
        )
    return "\n".join(lines) + "\n"


def gains_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """:func:`gain_table` as Markdown: each method's gain over nokd per budget and setting,
    with its seeds, 95% Welch interval and p beside the paper's gain (Table 3's pair)."""

    def num(v: float, sign: bool = False) -> str:
        if missing(v):
            return "–"
        return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"

    gains = gain_table(df)
    lines = [
        "| method | teacher → student | teacher from | epochs | precision | seeds (method/nokd) "
        "| gain | 95% interval | Welch p | paper's gain (200 epochs) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in gains.iterrows():
        interval = (
            "–"
            if missing(r["ci_low"])
            else f"[{num(r['ci_low'], True)}, {num(r['ci_high'], True)}]"
        )
        precision = "–" if missing(r["precision"]) else r["precision"]
        source = "–" if missing(r["teacher_from"]) else r["teacher_from"]
        lines.append(
            f"| {method_label(r['method'])} | {model_label(r['teacher'])} → "
            f"{model_label(r['student'])} | {source} | {r['epochs']} | {precision} "
            f"| {r['n']}/{r['baseline_n']} | {num(r['gain'], True)} | {interval} "
            f"| {num(r['p'])} | {num(r['paper_gain'], True)} |"
        )
    return "\n".join(lines) + "\n"


def compute_markdown(df: pd.DataFrame) -> str:
    """:func:`compute_table` as Markdown: what the completed runs cost, per machine kind,
    precision and budget, with a total."""
    table = compute_table(df)
    lines = [
        "| device | precision | epochs | completed runs | wall-clock hours | CPU-hours |",
        "|---|---|---|---|---|---|",
    ]

    def hours(v: float) -> str:
        return "–" if missing(v) else f"{v:.2f}"

    for _, r in table.iterrows():
        lines.append(
            f"| {r['device']} | {r['precision']} | {int(r['epochs'])} | {r['runs']} "
            f"| {hours(r['wall_hours'])} | {hours(r['cpu_hours'])} |"
        )
    cpu = table["cpu_hours"].sum(min_count=1)
    lines.append(
        f"| all | | | {table['runs'].sum()} | {hours(table['wall_hours'].sum())} | {hours(cpu)} |"
    )
    return "\n".join(lines) + "\n"


def diverged_note(df: pd.DataFrame) -> str:
    """What the means leave out: only completed runs count, so a method that diverged on
    some seeds would show only its survivors; this names every diverged run. (Running and
    failed runs are left out too; they are never committed, so they are not listed.)"""
    div = df[col(df, "status") == "diverged"]
    if div.empty:
        return "Only completed runs count; no run diverged."
    names = []

    def whole(value: Any) -> str:  # a column with gaps holds floats: 1.0 -> "1"
        return "?" if missing(value) else str(int(value))

    for _, r in div.sort_values("run_id").iterrows():
        key = method_key(r.get("method"), r.get("method_hparams.variant"))
        precision = r.get("speed.precision")
        what = f"{whole(r.get('epochs'))} epochs" + ("" if missing(precision) else f", {precision}")
        names.append(f"{method_label(key)} seed {whole(r.get('seed'))} ({what}; `{r['run_id']}`)")
    return (
        f"Only completed runs count: {len(names)} diverged run"
        f"{'s are' if len(names) > 1 else ' is'} left out of the means: " + "; ".join(names) + "."
    )


def summary_markdown(
    df: pd.DataFrame, tables: Iterable[str] = tuple(TABLES), every_setting: bool = False
) -> str:
    """Markdown summary of each paper table (heading + :func:`format_summary`), for README;
    ``every_setting``: also every setting we ran, at every budget (the CPU campaign's short
    ones included), each method's gain over nokd, and what the runs cost."""
    parts = []
    for table in tables:
        heading = TABLES[table]
        if is_synthetic(df):
            heading += f" [{SYNTHETIC_NOTE}]"
        how = {"checkpoint": "loaded from its checkpoint", "trained": "trained first here"}
        note = (
            f"Runs whose teacher was {how[TABLE_TEACHER_FROM[table]]}, one setting per row "
            "(`figures.summary_table(runs)` lists every setting).\n\n"
            if table in TABLE_TEACHER_FROM
            else ""
        )
        summary = format_summary(summary_table(df, table=table))
        parts.append(f"### {heading}\n\n{note}{summary}")
    if every_setting:
        note = " [" + SYNTHETIC_NOTE + "]" if is_synthetic(df) else ""
        parts.append(
            f"### Every setting we ran, at every budget{note}\n\nOne row per setting "
            "(seeds pooled only within one setting); accuracies are mean ± std over seeds; "
            "the paper's number stands beside a row only where its setting is the paper's "
            f"(its budget included). {diverged_note(df)}\n\n" + format_summary(summary_table(df))
        )
        parts.append(
            f"### Gain over nokd{note}\n\nFinal-epoch accuracy minus the nokd baseline "
            "trained the same way (same budget, precision, data); the interval is Welch's "
            "95% interval over seeds (none below 2 seeds each).\n\n" + gains_markdown(df)
        )
        parts.append(
            f"### Compute{note}\n\nWhat the completed runs cost: wall-clock hours as each "
            "run recorded them, CPU-hours = wall-clock hours x the torch threads the run had, "
            "segment by segment for a run resumed with other threads (CPU runs; runs "
            "sharing a machine each count their own time).\n\n" + compute_markdown(df)
        )
    return "\n".join(parts)
