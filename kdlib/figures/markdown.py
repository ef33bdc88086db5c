"""The paper's tables beside ours as Markdown, for the README and ``figures/``."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from kdlib.figures.selection import TABLE_TEACHER_FROM, col, is_synthetic, missing
from kdlib.figures.style import SYNTHETIC_NOTE, tell_apart
from kdlib.figures.tables import summary_table
from kdlib.paper import TABLES, method_label, model_label


def format_summary(summary: pd.DataFrame, digits: int = 2) -> str:
    """A Markdown table of :func:`summary_table` for the README (mean +- std over seeds).

    Rows that would read the same but are different settings say what tells them apart
    (``KD (teacher trained)``, their method parameters, else their setting hash).
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
        "| method | teacher → student | epochs | seeds | final epoch | validation-chosen "
        "| best epoch | paper | Δ (best − paper) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    same = [
        f"{method_label(r['method'])}|{r['teacher']}|{r['student']}|{r['dataset']}|{r['epochs']}"
        for _, r in summary.iterrows()
    ]
    names = tell_apart(
        same,
        [str(v) for v in col(summary, "setting")],
        [None if missing(v) else v for v in col(summary, "teacher_from")],
        ["" if missing(v) else str(v) for v in col(summary, "params")],
    )
    for key, name, (_, r) in zip(same, names, summary.iterrows(), strict=True):
        method = method_label(r["method"]) + name[len(key) :]  # what tell_apart added
        lines.append(
            f"| {method} | {model_label(r['teacher'])} → "
            f"{model_label(r['student'])} | {r['epochs']} | {r['n_seeds']} "
            f"| {pm(r['final_mean'], r['final_std'])} | {pm(r['sel_mean'], r['sel_std'])} "
            f"| {pm(r['best_mean'], r['best_std'])} | {num(r['paper'])} "
            f"| {num(r['delta'], sign=True)} |"
        )
    return "\n".join(lines) + "\n"


def summary_markdown(df: pd.DataFrame, tables: Iterable[str] = tuple(TABLES)) -> str:
    """Markdown summary of each paper table (heading + :func:`format_summary`), for README."""
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
    return "\n".join(parts)
